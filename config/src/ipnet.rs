//! Address rules for `proxy.config.stats.allow_ip`: a single address or a CIDR block.
//!
//! The prefix arithmetic is the `ipnet` crate's; this wrapper adds what the records
//! need on top: a bare address as a single host, error messages that say what was
//! expected, and IPv4 clients seen through dual-stack sockets as IPv4-mapped IPv6.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address and a prefix length (`10.0.0.0/8`, `::1/128`).
/// Host bits below the prefix are kept as written and ignored when matching.
///
/// # Examples
/// ```
/// use std::net::IpAddr;
/// let net: config::IpNet = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains(&"10.1.2.3".parse::<IpAddr>().unwrap()));
/// // An IPv4 client on a dual-stack socket shows up IPv4-mapped; it still matches.
/// assert!(net.contains(&"::ffff:10.1.2.3".parse::<IpAddr>().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    /// A network; `None` if `prefix_len` exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<IpNet> {
        ipnet::IpNet::new(addr, prefix_len).ok().map(IpNet)
    }

    /// The single address `addr` (a /32 or /128).
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet(ipnet::IpNet::from(addr))
    }

    /// The address as written.
    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
    /// is treated as the IPv4 address it carries, and an IPv4 address matches an IPv6 rule
    /// in `::ffff:0:0/96` through its mapped form, so dual-stack sockets need no second rule.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
            IpAddr::V4(_) => *ip,
        };
        match (&self.0, ip) {
            (ipnet::IpNet::V6(net), IpAddr::V4(a)) => net.contains(&a.to_ipv6_mapped()),
            (net, ip) => net.contains(&ip),
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    /// `ADDR` or `ADDR/PREFIX`, IPv4 or IPv6.
    fn from_str(s: &str) -> Result<IpNet, String> {
        let bad = || {
            format!("expected an IPv4 or IPv6 address or CIDR block (\"10.0.0.0/8\", \"::1\"), got {s:?}")
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        match prefix {
            None => Ok(IpNet::host(addr)),
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let len: u8 = p.parse().map_err(|_| bad())?;
                IpNet::new(addr, len)
                    .ok_or_else(|| format!("prefix /{len} is longer than the address in {s:?}"))
            }
            Some(_) => Err(bad()),
        }
    }
}

impl fmt::Display for IpNet {
    /// The address alone for a single host, else `ADDR/PREFIX`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl From<Ipv4Addr> for IpNet {
    fn from(a: Ipv4Addr) -> IpNet {
        IpNet::host(IpAddr::V4(a))
    }
}

impl From<Ipv6Addr> for IpNet {
    fn from(a: Ipv6Addr) -> IpNet {
        IpNet::host(IpAddr::V6(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn v4_cidr_matches_inside_only() {
        let n = net("192.168.4.0/22");
        assert!(n.contains(&ip("192.168.4.1")));
        assert!(n.contains(&ip("192.168.7.255")));
        assert!(!n.contains(&ip("192.168.8.0")));
        assert!(!n.contains(&ip("192.168.3.255")));
    }

    #[test]
    fn single_address_and_zero_prefix() {
        assert!(net("127.0.0.1").contains(&ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(&ip("127.0.0.2")));
        assert!(net("0.0.0.0/0").contains(&ip("8.8.8.8")));
        assert!(net("::/0").contains(&ip("2001:db8::1")));
    }

    #[test]
    fn v6_cidr_matches_inside_only() {
        let n = net("2001:db8::/32");
        assert!(n.contains(&ip("2001:db8:ffff::1")));
        assert!(!n.contains(&ip("2001:db9::1")));
        assert!(net("::1").contains(&ip("::1")));
        assert!(!net("::1").contains(&ip("127.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_client_matches_ipv4_rule() {
        assert!(net("127.0.0.1").contains(&ip("::ffff:127.0.0.1")));
        assert!(net("10.0.0.0/8").contains(&ip("::ffff:10.9.9.9")));
        assert!(!net("10.0.0.0/8").contains(&ip("::ffff:11.0.0.1")));
        assert!(net("::ffff:10.0.0.0/104").contains(&ip("10.1.1.1")));
        assert!(
            !net("10.0.0.0/8").contains(&ip("::a00:1")),
            "IPv4-compatible is not mapped"
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "x",
            "10.0.0.0/8/8",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "10.0.0.0/8",
            "127.0.0.1",
            "::1",
            "2001:db8::/32",
            "10.1.2.3/8",
        ] {
            assert_eq!(net(s).to_string(), s);
            assert_eq!(net(&net(s).to_string()), net(s));
        }
        assert_eq!(net("127.0.0.1/32").to_string(), "127.0.0.1");
    }

    #[test]
    fn host_bits_are_kept_and_ignored_when_matching() {
        let n = net("10.1.2.3/8");
        assert_eq!(n.addr(), ip("10.1.2.3"));
        assert_eq!(n.prefix_len(), 8);
        assert!(n.contains(&ip("10.200.0.1")));
        assert_eq!(net("::1").prefix_len(), 128);
        assert_eq!(IpNet::new(ip("10.0.0.0"), 33), None);
        assert_eq!(IpNet::new(ip("::"), 129), None);
    }

    #[test]
    fn errors_say_what_was_expected() {
        assert_eq!(
            "10.0.0.0/33".parse::<IpNet>(),
            Err("prefix /33 is longer than the address in \"10.0.0.0/33\"".to_string())
        );
        assert_eq!(
            "x".parse::<IpNet>(),
            Err("expected an IPv4 or IPv6 address or CIDR block (\"10.0.0.0/8\", \"::1\"), got \"x\"".to_string())
        );
    }
}
