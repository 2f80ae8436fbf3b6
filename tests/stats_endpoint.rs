//! The stats endpoint of SPEC §6: formats, negotiation, headers, access control.

mod util;

use util::http::{self, Conn};
use util::Daemon;

fn get_with(addr: std::net::SocketAddr, path: &str, accept: Option<&str>) -> http::Response {
    let mut c = Conn::open(addr).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{accept}\r\n").as_bytes())
        .unwrap();
    c.read_response("GET").unwrap()
}

const REQUIRED: &[&str] = &[
    "proxy.process.net.accepts_currently_open",
    "proxy.process.net.connections_currently_open",
    "proxy.process.tcp.total_accepts",
    "proxy.process.net.connections_throttled_in",
    "proxy.process.net.accept_errors",
    "proxy.process.net.accept_pauses",
    "proxy.process.net.accept_queue_delay_us.p50",
    "proxy.process.net.accept_queue_delay_us.p99",
    "proxy.process.net.accept_queue_delay_us.max",
    "proxy.process.exec_thread.count",
    "proxy.process.http.current_client_connections",
    "proxy.process.http.total_client_connections",
    "proxy.process.http.incoming_requests",
    "proxy.process.http.completed_requests",
    "proxy.process.http.2xx_responses",
    "proxy.process.http.3xx_responses",
    "proxy.process.http.4xx_responses",
    "proxy.process.http.5xx_responses",
    "proxy.process.cache.hits",
    "proxy.process.cache.misses",
    "proxy.process.proxy.cache_ready_time",
    "proxy.process.proxy.ports_ready",
];

#[test]
fn json_is_the_default_with_every_required_metric() {
    let d = Daemon::start();
    let r = http::get(d.addr(), "t", "/_stats").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let text = r.text();
    assert!(text.starts_with("{\"global\": {"));
    for name in REQUIRED {
        assert!(text.contains(&format!("\"{name}\": ")), "{name} missing");
    }
    assert!(text.contains("\"current_time_epoch_ms\": "));
    assert!(text.contains("\"server\": \"turnstile/"));
    let port = d.addr().port();
    assert!(text.contains(&format!(
        "\"proxy.process.net.port.{port}.total_accepts\": "
    )));
    assert_eq!(get_with(d.addr(), "/_stats/json", None).status, 200);
}

#[test]
fn csv_by_path_and_by_accept() {
    let d = Daemon::start();
    for r in [
        get_with(d.addr(), "/_stats/csv", None),
        get_with(d.addr(), "/_stats", Some("text/csv")),
    ] {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        for line in r.text().lines() {
            let (name, value) = line.split_once(',').expect("name,value");
            assert!(name.starts_with("proxy."), "{line}");
            value.parse::<i64>().expect("numeric");
        }
        assert!(r.text().contains("proxy.process.tcp.total_accepts,"));
    }
}

#[test]
fn prometheus_output_parses_line_by_line() {
    let d = Daemon::start();
    for r in [
        get_with(d.addr(), "/_stats/prometheus", None),
        get_with(d.addr(), "/_stats", Some("text/plain; version=0.0.4")),
    ] {
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().contains("version=0.0.4"));
        let mut typed = std::collections::HashSet::new();
        let mut samples = 0;
        for line in r.text().lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut p = rest.split(' ');
                let name = p.next().unwrap();
                assert!(matches!(p.next(), Some("counter" | "gauge")), "{line}");
                assert!(typed.insert(name.to_string()), "duplicate TYPE for {name}");
                continue;
            }
            let (name, value) = line.split_once(' ').expect("sample line");
            assert!(typed.contains(name), "sample before its TYPE: {line}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{name}"
            );
            assert!(!name.starts_with(|c: char| c.is_ascii_digit()));
            value.parse::<f64>().expect("numeric value");
            samples += 1;
        }
        assert_eq!(samples, typed.len());
        assert!(typed.contains("proxy_process_net_accepts_currently_open"));
    }
}

#[test]
fn a_client_outside_allow_ip_gets_403_and_nothing_else() {
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0:ip-in=0.0.0.0")
        .start();
    let port = d.addr().port();
    let from = |ip: &str| {
        let sock = std::net::TcpListener::bind((ip, 0)).ok().map(|_| ());
        sock?;
        // Bind the client to `ip` before connecting.
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor we create and own.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let mut sin: libc::sockaddr_in = std::mem::zeroed();
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_addr.s_addr = u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap()).to_be();
            if libc::bind(
                fd,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            ) != 0
            {
                return None;
            }
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            if libc::connect(
                fd,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            ) != 0
            {
                return None;
            }
            let s = std::net::TcpStream::from_raw_fd(fd);
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            Some(Conn {
                reader: std::io::BufReader::new(s),
            })
        }
    };
    let mut other = from("127.0.0.2").expect("127.0.0.2 is loopback on Linux");
    let r = other.get("t", "/_stats").unwrap();
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("proxy.process"), "{}", r.text());
    let mut allowed = from("127.0.0.1").unwrap();
    assert_eq!(allowed.get("t", "/_stats").unwrap().status, 200);
}
