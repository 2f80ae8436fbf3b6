//! PROXY protocol in on a `pp` port (SPEC §10), through the real binary: v1 and v2
//! headers give the client's address to X-Forwarded-For, the access log and
//! `stats.allow_ip`; a header split across packets still works; a connection without a
//! valid header, or from a peer off `proxy_protocol_allowlist`, is closed and counted.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use util::http::{self, Conn};
use util::origin::{ok, Origin};
use util::{log_lines, read_all, wait_until, Daemon, TempDir};

fn v2(src: std::net::Ipv6Addr, port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x21, 0, 36]); // v2 PROXY, TCP over IPv6, 36 bytes
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

fn v1(src: &str) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 5555 80\r\n").into_bytes()
}

/// Sends `bytes` in one write on a new connection and reads the response.
fn exchange(d: &Daemon, bytes: &[u8]) -> http::Response {
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(bytes).unwrap();
    c.read_response("GET").unwrap()
}

fn get(header: &[u8], path: &str) -> Vec<u8> {
    let mut b = header.to_vec();
    b.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    b
}

#[test]
fn the_address_in_the_header_is_the_clients_everywhere() {
    let origin = Origin::start(|r| {
        Some(ok(
            r.header("x-forwarded-for").unwrap_or("-").as_bytes(),
            &[],
        ))
    });
    let dir = TempDir::new("pp-log");
    let log = dir.0.join("access.log");
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0:pp")
        .config(&format!(
            "[proxy.config.stats]\nallow_ip = [\"192.0.2.1\"]\n\
             [proxy.config.log]\naccess_log = \"{}\"\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            log.display(),
            origin.addr
        ))
        .start();
    // v1, header and request in one packet.
    let r = exchange(&d, &get(&v1("192.0.2.1"), "/a"));
    assert_eq!((r.status, r.text().as_str()), (200, "192.0.2.1"));
    // v2 over IPv6.
    let r = exchange(&d, &get(&v2("2001:db8::7".parse().unwrap(), 4000), "/b"));
    assert_eq!((r.status, r.text().as_str()), (200, "2001:db8::7"));
    // The header in pieces, the request after it on the same connection, kept alive.
    let mut c = Conn::open(d.addr()).unwrap();
    let header = v1("192.0.2.9");
    for part in header.chunks(7) {
        c.send(part).unwrap();
        c.stream().flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    for path in ["/c", "/d"] {
        let r = c.get("t", path).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "192.0.2.9"));
    }
    // stats.allow_ip judges the address in the header, not the balancer's.
    assert_eq!(exchange(&d, &get(&v1("192.0.2.1"), "/_stats")).status, 200);
    assert_eq!(
        exchange(&d, &get(&v1("198.51.100.1"), "/_stats")).status,
        403
    );
    // A LOCAL v2 header (a balancer's health check) leaves the connection's address.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let r = exchange(&d, &get(&local, "/e"));
    assert_eq!((r.status, r.text().as_str()), (200, "127.0.0.1"));
    let lines = log_lines(&log, 7);
    // Lines come from two threads, in either order.
    let line = |url: &str| {
        lines
            .iter()
            .find(|l| l.contains(url))
            .cloned()
            .unwrap_or_default()
    };
    assert!(line("http://t/a ").contains(" 192.0.2.1 "), "{lines:?}");
    assert!(line("http://t/b ").contains(" 2001:db8::7 "), "{lines:?}");
    assert!(line("http://t/d ").contains(" 192.0.2.9 "), "{lines:?}");
    assert_eq!(d.metric("proxy.process.http.proxy_protocol.accepted"), 6);
    assert_eq!(d.metric("proxy.process.http.proxy_protocol.malformed"), 0);
}

#[test]
fn no_header_a_bad_one_or_an_untrusted_peer_closes_the_connection() {
    let origin = Origin::fixed(b"x");
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0:pp")
        .config(&format!(
            "[[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start();
    let closed = |bytes: &[u8]| {
        let mut s = TcpStream::connect(d.addr()).unwrap();
        // The daemon may have closed (and reset) the connection already.
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        read_all(&mut s, Duration::from_secs(10))
    };
    assert!(closed(&get(b"", "/")).is_empty(), "plain HTTP on a pp port");
    assert!(closed(&get(b"PROXY TCP4 1.2.3.999 127.0.0.1 1 80\r\n", "/")).is_empty());
    assert!(
        closed(b"PROXY TCP4 1.2.3.4").is_empty(),
        "closed mid-header"
    );
    assert_eq!(d.metric("proxy.process.http.proxy_protocol.malformed"), 3);
    // Reset mid-header: malformed as well.
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
    assert!(util::set_linger0(&s));
    drop(s);
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.proxy_protocol.malformed")
        == 4));
    assert_eq!(origin.request_count(), 0);

    // Off the allowlist (changed by a reload): a valid header is not believed.
    let (code, out, err) = d.reload(&format!(
        "[proxy.config.http]\nproxy_protocol_allowlist = [\"10.0.0.0/8\"]\n\
         [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
        origin.addr
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert!(closed(&get(&v1("192.0.2.1"), "/")).is_empty());
    assert_eq!(d.metric("proxy.process.http.proxy_protocol.refused"), 1);
    assert_eq!(d.metric("proxy.process.http.proxy_protocol.accepted"), 0);
    assert_eq!(origin.request_count(), 0);
}

/// A daemon with one `pp:ssl` port (a certificate for `pp.test` signed by `ca`), its
/// accept timeout `accept_timeout` seconds, remapping to `origin`.
fn pp_ssl_daemon(ca: &util::tls::Ca, origin: &Origin, accept_timeout: &str) -> (Daemon, TempDir) {
    let dir = TempDir::new("pp-tls");
    ca.leaf(&["pp.test"], "pp.test").write(&dir.0, "pp");
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0:pp:ssl")
        .env(
            "PROXY_CONFIG_HTTP_ACCEPT_NO_ACTIVITY_TIMEOUT",
            accept_timeout,
        )
        .config(&format!(
            "[[ssl_multicert]]\nssl_cert_name = \"{0}/pp.pem\"\n\
             ssl_key_name = \"{0}/pp.key\"\ndest_ip = \"*\"\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{1}/\"\n",
            dir.0.display(),
            origin.addr
        ))
        .start();
    (d, dir)
}

#[test]
fn on_a_pp_ssl_port_a_close_mid_header_ends_the_connection_at_once() {
    // A peek never reads the FIN behind the bytes: the hang-up does. Well before the
    // accept timeout (here an hour), the connection is closed and counted.
    let origin = Origin::start(|_| Some(ok(b"-", &[])));
    let (d, _dir) = pp_ssl_daemon(&util::tls::Ca::new("PP CA"), &origin, "3600");
    let mut c = TcpStream::connect(d.addr()).unwrap();
    c.write_all(b"PROXY TCP4 10.1.2.3").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_all(&mut c, Duration::from_secs(10)).is_empty());
    assert!(util::wait_until(Duration::from_secs(10), || {
        d.metric("proxy.process.net.connections_currently_open") == 0
    }));
    assert_eq!(d.metric("proxy.process.http.proxy_protocol.malformed"), 1);
}

#[test]
fn on_a_pp_ssl_port_the_header_comes_in_plain_text_before_the_tls_handshake_and_silence_is_no_bad_header(
) {
    // As a balancer's `send-proxy` on a TLS port sends it (HAProxy, ATS's `pp:ssl`):
    // the header first, then the ClientHello; whole or in pieces.
    use std::io::Read;
    use std::sync::Arc;
    let origin = Origin::start(|r| {
        Some(ok(
            r.header("x-forwarded-for").unwrap_or("-").as_bytes(),
            &[],
        ))
    });
    let ca = util::tls::Ca::new("PP CA");
    let (d, _dir) = pp_ssl_daemon(&ca, &origin, "1");
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(util::tls::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth(),
    );
    for (i, split) in [None, Some(9)].into_iter().enumerate() {
        let mut tcp = TcpStream::connect(d.addr()).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let header = v1(&format!("192.0.2.{}", 10 + i));
        if let Some(at) = split {
            tcp.write_all(&header[..at]).unwrap();
            // Shapes the input into two segments; nothing waits on it.
            std::thread::sleep(Duration::from_millis(50));
            tcp.write_all(&header[at..]).unwrap();
        } else {
            tcp.write_all(&header).unwrap();
        }
        let name = rustls::pki_types::ServerName::try_from("pp.test").unwrap();
        let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with(&format!("192.0.2.{}", 10 + i)), "{text}");
    }
    assert_eq!(d.metric("proxy.process.http.proxy_protocol.accepted"), 2);
    assert_eq!(
        d.metric("proxy.process.ssl.total_success_handshake_count_in"),
        2
    );
    // A connection that sends nothing (a balancer's TCP check) is closed at the
    // accept timeout, and is no malformed header.
    let mut silent = TcpStream::connect(d.addr()).unwrap();
    assert!(read_all(&mut silent, Duration::from_secs(10)).is_empty());
    assert_eq!(d.metric("proxy.process.http.proxy_protocol.malformed"), 0);
}
