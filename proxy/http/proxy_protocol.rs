//! The PROXY protocol header (HAProxy's, v1 text and v2 binary) that a load balancer
//! puts before the first byte of a connection to a `pp` port: where it ends, and the
//! client address it carries. The fields are read by the `ppp` crate; this module finds
//! the header's end in a buffer that may hold only part of it, or the request after it.
//! A pure function over bytes: any thread may call it.

use std::net::{IpAddr, SocketAddr};

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// A v1 header's longest form, CRLF included (the specification's 107 bytes).
const V1_MAX: usize = 107;
/// The v2 fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;

/// What the start of a connection holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// Not all of the header yet.
    Incomplete,
    /// No valid PROXY header: the connection is to be closed.
    Malformed,
    /// A whole header, `len` bytes; `client` is the address of the client it speaks for,
    /// `None` when it names none (v1 `UNKNOWN`, v2 `LOCAL` — the balancer's own health
    /// check — or a family without an IP address): then the connection's own address is
    /// the client's.
    Parsed {
        /// Bytes of the header, to drop before the request.
        len: usize,
        /// The client's address, if the header gives one.
        client: Option<SocketAddr>,
    },
}

/// Reads the PROXY header at the start of `buf`; `max_len` bounds a v2 header (its TLVs
/// included), longer being malformed.
///
/// # Examples
/// ```
/// use turnstile::http::proxy_protocol::{parse, Header};
/// let buf = b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nGET / HTTP/1.1\r\n";
/// assert_eq!(
///     parse(buf, 4096),
///     Header::Parsed { len: 40, client: Some("192.0.2.1:5000".parse().unwrap()) }
/// );
/// assert_eq!(parse(b"PROXY TCP4 192.0", 4096), Header::Incomplete);
/// assert_eq!(parse(b"GET / HTTP/1.1\r\n", 4096), Header::Malformed);
/// ```
pub fn parse(buf: &[u8], max_len: usize) -> Header {
    let prefix_of = |whole: &[u8]| buf.len() < whole.len() && whole.starts_with(buf);
    if buf.is_empty() || prefix_of(V2_SIGNATURE) || prefix_of(V1_PREFIX) {
        return Header::Incomplete;
    }
    if buf.starts_with(V2_SIGNATURE) {
        v2(buf, max_len)
    } else if buf.starts_with(V1_PREFIX) {
        v1(buf)
    } else {
        Header::Malformed
    }
}

fn v2(buf: &[u8], max_len: usize) -> Header {
    if buf.len() < V2_FIXED {
        return Header::Incomplete;
    }
    let len = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > max_len.max(V2_FIXED + 216) {
        return Header::Malformed;
    }
    if buf.len() < len {
        return Header::Incomplete;
    }
    use ppp::v2::{Addresses, Command};
    match ppp::v2::Header::try_from(&buf[..len]) {
        Ok(h) => {
            let client = match (h.command, h.addresses) {
                (Command::Proxy, Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (Command::Proxy, Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            };
            Header::Parsed { len, client }
        }
        Err(_) => Header::Malformed,
    }
}

fn v1(buf: &[u8]) -> Header {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX || window.contains(&b'\n') {
            Header::Malformed
        } else {
            Header::Incomplete
        };
    };
    if window[..cr].contains(&b'\n') {
        return Header::Malformed; // one line, ended by CRLF only
    }
    let len = cr + 2;
    use ppp::v1::Addresses;
    match ppp::v1::Header::try_from(&buf[..len]) {
        Ok(h) => {
            let client = match h.addresses {
                Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                Addresses::Unknown => None,
            };
            Header::Parsed { len, client }
        }
        Err(_) => Header::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(command: u8, family: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    #[test]
    fn v2_ipv4_and_ipv6_give_the_source_address() {
        let addrs = [192, 0, 2, 7, 10, 0, 0, 1, 0x1f, 0x90, 0, 80];
        let mut buf = v2_header(1, 0x11, &addrs, &[0x04, 0, 1, 0]);
        let len = buf.len();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            parse(&buf, 4096),
            Header::Parsed {
                len,
                client: Some("192.0.2.7:8080".parse().unwrap())
            }
        );
        // Every shorter prefix is incomplete.
        for cut in 0..len {
            assert_eq!(parse(&buf[..cut], 4096), Header::Incomplete, "{cut}");
        }
        let mut a6 = Vec::new();
        a6.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a6.extend_from_slice(&[0; 16]);
        a6.extend_from_slice(&[0, 99, 0, 80]);
        assert_eq!(
            parse(&v2_header(1, 0x21, &a6, &[]), 4096),
            Header::Parsed {
                len: 16 + 36,
                client: Some("[2001:db8::1]:99".parse().unwrap())
            }
        );
    }

    #[test]
    fn v2_local_and_v1_unknown_name_no_client() {
        assert_eq!(
            parse(&v2_header(0, 0x00, &[], &[]), 4096),
            Header::Parsed {
                len: 16,
                client: None
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n", 4096),
            Header::Parsed {
                len: 15,
                client: None
            }
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".as_slice(),
            b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"\r\n\r\n\0\r\nQUIX\n",
            b"PROXY UNKNOWN a\nb\r\n",
        ] {
            assert_eq!(parse(bad, 4096), Header::Malformed, "{bad:?}");
        }
        let long = format!("PROXY TCP4 {}", "1".repeat(200));
        assert_eq!(parse(long.as_bytes(), 4096), Header::Malformed);
        // A v2 address block shorter than its family needs.
        assert_eq!(
            parse(&v2_header(1, 0x11, &[1, 2, 3], &[]), 4096),
            Header::Malformed
        );
        // Version 1 in the binary form.
        let mut v = v2_header(1, 0x11, &[0; 12], &[]);
        v[12] = 0x11;
        assert_eq!(parse(&v, 4096), Header::Malformed);
        // Longer than the limit.
        let tlv = vec![0u8; 3000];
        assert_eq!(
            parse(&v2_header(1, 0x11, &[0; 12], &tlv), 1024),
            Header::Malformed
        );
    }
}
