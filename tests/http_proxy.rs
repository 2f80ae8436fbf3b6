//! HTTP/1.1 proxying through the real binary to a real origin: remap, keep-alive and
//! pooling, bodies both ways, error statuses, smuggling, blind tunnels.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;
use util::http::{self, Conn};
use util::origin::{ok, Gate, Origin};
use util::{log_lines, read_all, wait_until, Daemon, TempDir};

fn proxy_to(origin: &Origin, extra: &str) -> Daemon {
    Daemon::builder()
        .config(&format!(
            "{extra}\n[[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start()
}

/// As `proxy_to`, with one ET_NET thread: every session shares its pool and queues.
fn proxy_on_one_thread(origin: &Origin, extra: &str) -> Daemon {
    Daemon::builder()
        .env("PROXY_CONFIG_EXEC_THREAD_LIMIT", "1")
        .config(&format!(
            "{extra}\n[[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start()
}

/// A daemon with `per_server.connection.max = 1` (and `extra` records of
/// `[proxy.config.http]`) in front of an origin that holds `/hold`, whose one place a
/// client's `GET /hold` already takes: the gate, the origin, the daemon, that client.
fn one_place_taken(one_thread: bool, extra: &str) -> (Gate, Origin, Daemon, Conn) {
    let (gate, origin) = origin_holding("/hold");
    let records = format!("[proxy.config.http]\nper_server.connection.max = 1\n{extra}");
    let d = if one_thread {
        proxy_on_one_thread(&origin, &records)
    } else {
        proxy_to(&origin, &records)
    };
    let first = http::send_get(d.addr(), "/hold");
    assert!(origin.wait_for_requests(1));
    (gate, origin, d, first)
}

/// Waits until `n` requests wait in the daemon's origin queue.
fn queue_holds(d: &Daemon, n: i64) -> bool {
    wait_until(Duration::from_secs(10), || {
        d.metric("proxy.process.http.current_origin_queue") == n
    })
}

/// An origin answering each request with its path, holding answers to `held` until the
/// returned gate opens.
fn origin_holding(held: &'static str) -> (Gate, Origin) {
    let gate = Gate::default();
    let g = gate.clone();
    let origin = Origin::start(move |req| {
        if req.path == held {
            g.wait();
        }
        Some(ok(req.path.as_bytes(), &[]))
    });
    (gate, origin)
}

#[test]
fn remaps_longest_match_and_404s_the_rest() {
    let a = Origin::start(|r| Some(ok(format!("a{}", r.path).as_bytes(), &[])));
    let b = Origin::start(|r| Some(ok(format!("b{}", r.path).as_bytes(), &[])));
    let d = Daemon::builder()
        .config(&format!(
            "[[remap]]\nfrom = \"http://www.example.com/\"\nto = \"http://{}/\"\n\
             [[remap]]\nfrom = \"http://www.example.com/img/\"\nto = \"http://{}/static/\"\n",
            a.addr, b.addr
        ))
        .start();
    assert_eq!(
        http::get(d.addr(), "www.example.com", "/x").unwrap().text(),
        "a/x"
    );
    assert_eq!(
        http::get(d.addr(), "www.example.com", "/img/p.png")
            .unwrap()
            .text(),
        "b/static/p.png"
    );
    assert_eq!(
        http::get(d.addr(), "other.example", "/x").unwrap().status,
        404
    );
}

#[test]
fn keep_alive_reuses_origin_connections_and_adds_via_and_xff() {
    let origin = Origin::start(|r| {
        let via = r.header("via").unwrap_or("").to_string();
        let xff = r.header("x-forwarded-for").unwrap_or("").to_string();
        Some(ok(format!("{via}|{xff}").as_bytes(), &[]))
    });
    let d = proxy_to(&origin, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for _ in 0..20 {
        let r = c.get("test", "/k").unwrap();
        assert_eq!(r.status, 200);
        // `1.1 NAME (turnstile/VERSION; id=TOKEN)`: proxy_name, the host name by default.
        assert!(r.text().starts_with("1.1 "), "{}", r.text());
        assert!(r.text().contains(" (turnstile/"), "{}", r.text());
        assert!(r.text().ends_with("|127.0.0.1"), "{}", r.text());
        assert!(r.header("via").is_some());
    }
    assert_eq!(origin.request_count(), 20);
    assert!(origin.connections.load(std::sync::atomic::Ordering::SeqCst) < 20);
    assert_eq!(d.metric("proxy.process.http.2xx_responses"), 20);
}

#[test]
fn accept_to_first_byte_covers_the_wait_for_the_origin() {
    // The origin takes 150 ms to answer: the one connection's time from accept to the
    // first response byte includes it, and nothing is recorded before that byte.
    let origin = Origin::start(|_| {
        std::thread::sleep(std::time::Duration::from_millis(150));
        Some(ok(b"late", &[]))
    });
    let d = proxy_to(&origin, "");
    assert_eq!(
        d.metric("proxy.process.http.accept_to_first_byte_us.max"),
        0
    );
    assert_eq!(http::get(d.addr(), "test", "/slow").unwrap().text(), "late");
    let max = d.metric("proxy.process.http.accept_to_first_byte_us.max");
    assert!((150_000..10_000_000).contains(&max), "{max} µs");
    assert!(d.metric("proxy.process.http.accept_to_first_byte_us.p50") >= 140_000);
}

#[test]
fn a_request_in_pieces_and_the_next_one_on_the_same_connection_are_answered() {
    // The client socket joins the epoll only when the session waits on it: here first
    // for the rest of a head, then, after the answer, for the next request.
    let origin = Origin::start(|r| Some(ok(r.path.as_bytes(), &[])));
    let d = proxy_to(&origin, "");
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"GET /first HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_millis(100)); // the proxy has read the piece by now
    c.send(b"st: t\r\n\r\n").unwrap();
    assert_eq!(c.read_response("GET").unwrap().text(), "/first");
    std::thread::sleep(Duration::from_millis(100)); // idle between requests
    assert_eq!(c.get("t", "/second").unwrap().text(), "/second");
}

#[test]
fn a_client_gone_while_the_origin_answers_late_leaves_nothing_open() {
    // While the session waits only for the origin, the client socket is not watched; a
    // client that leaves meanwhile is found when the answer is written to it.
    let origin = Origin::start(|_| {
        std::thread::sleep(Duration::from_millis(300));
        Some(ok(b"late", &[]))
    });
    let d = proxy_to(&origin, "");
    for close_with_rst in [false, true] {
        let before = origin.request_count();
        let mut c = TcpStream::connect(d.addr()).unwrap();
        if close_with_rst {
            assert!(util::set_linger0(&c), "SO_LINGER");
        }
        c.write_all(b"GET /gone HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert!(wait_until(Duration::from_secs(5), || origin
            .request_count()
            > before));
        drop(c);
        assert!(
            wait_until(Duration::from_secs(10), || d
                .metric("proxy.process.http.current_client_connections")
                == 0
                && d.metric("proxy.process.net.connections_currently_open") == 0),
            "rst={close_with_rst}: {} client connections still open",
            d.metric("proxy.process.http.current_client_connections")
        );
    }
    // And the port still serves.
    assert_eq!(http::get(d.addr(), "t", "/after").unwrap().text(), "late");
}

#[test]
fn a_last_response_leaves_whole_with_the_close() {
    // The last response of a connection is written with MSG_MORE and its tail leaves
    // with the FIN; the close must follow at once, for a fresh and a pooled origin
    // connection, and for a local error.
    let origin = Origin::fixed(b"last one");
    let d = proxy_to(&origin, "");
    for (request, expect) in [
        (
            "GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "last one",
        ),
        (
            "GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "last one",
        ),
        ("GET /c HTTP/1.0\r\nHost: t\r\n\r\n", "last one"),
        ("BAD\r\n\r\n", "HTTP/1.1 400"),
    ] {
        let mut c = TcpStream::connect(d.addr()).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let t0 = std::time::Instant::now();
        // read_all returns at EOF, or at the 10 s limit if the close never came.
        let got = String::from_utf8_lossy(&read_all(&mut c, Duration::from_secs(10))).to_string();
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{request:?}: no close"
        );
        assert!(got.contains(expect), "{request:?}: {got:?}");
        if expect == "last one" {
            assert!(got.ends_with("last one"), "{request:?}: {got:?}");
        }
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let origin = Origin::start(|r| Some(ok(r.path.as_bytes(), &[])));
    let d = proxy_to(&origin, "");
    let mut c = Conn::open(d.addr()).unwrap();
    let mut raw = String::new();
    for i in 0..5 {
        raw.push_str(&format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    c.send(raw.as_bytes()).unwrap();
    for i in 0..5 {
        assert_eq!(c.read_response("GET").unwrap().text(), format!("/{i}"));
    }
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let origin = Origin::start(|r| {
        let seen: Vec<String> = r
            .headers
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect();
        Some(ok(
            seen.join(",").as_bytes(),
            &[("Keep-Alive", "timeout=5"), ("X-End", "1")],
        ))
    });
    let d = proxy_to(&origin, "");
    let r = http::request(
        d.addr(),
        "GET",
        "/h",
        &[
            ("Connection", "X-Secret"),
            ("X-Secret", "1"),
            ("Keep-Alive", "1"),
            ("TE", "trailers"),
            ("X-Keep", "1"),
        ],
        b"",
    )
    .unwrap();
    let seen = r.text();
    assert!(seen.contains("x-keep"), "{seen}");
    for gone in ["x-secret", "keep-alive", ",te,", "te,"] {
        assert!(
            !seen.contains(gone) || gone == "te," && seen.contains("x-keep"),
            "{gone} in {seen}"
        );
    }
    assert!(r.header("keep-alive").is_none());
    assert_eq!(r.header("x-end"), Some("1"));
}

#[test]
fn request_and_response_bodies_stream_both_ways_with_content_intact() {
    let origin = Origin::start(|r| {
        // Echo the body back, chunked, reversed in blocks to prove it was all seen.
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for chunk in r.body.chunks(100_000) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        Some(out)
    });
    let d = proxy_to(&origin, "");
    let body: Vec<u8> = (0..100u32 << 20)
        .map(|i| (i % 251) as u8)
        .step_by(1)
        .take(100 << 20)
        .collect();
    let r = http::request(d.addr(), "PUT", "/big", &[], &body).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "body corrupted");
    // A chunked request body.
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n").unwrap();
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.text(), "hello world");
}

#[test]
fn head_204_and_304_carry_no_body_and_close_delimited_responses_work() {
    let origin = Origin::start(|r| match r.path.as_str() {
        "/204" => Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
        "/304" => Some(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n".to_vec()),
        "/close" => Some(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end".to_vec()),
        _ => Some(ok(b"body", &[])),
    });
    let d = proxy_to(&origin, "");
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = c.read_response("HEAD").unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("4")));
    assert_eq!(c.get("t", "/204").unwrap().status, 204);
    assert_eq!(c.get("t", "/304").unwrap().status, 304);
    assert_eq!(c.get("t", "/x").unwrap().text(), "body");
    let r = http::get(d.addr(), "t", "/close").unwrap();
    assert_eq!(r.text(), "until the end");
}

#[test]
fn expect_100_continue_works() {
    let origin = Origin::start(|r| Some(ok(&r.body, &[])));
    let d = proxy_to(&origin, "");
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"PUT /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let interim = c.read_one("PUT").unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"hello").unwrap();
    assert_eq!(c.read_response("PUT").unwrap().text(), "hello");
}

#[test]
fn malformed_oversized_and_smuggling_requests_get_4xx_and_close() {
    let origin = Origin::fixed(b"never");
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nrequest_header_max_size = 2048\n[[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n".to_vec(),
            400,
        ),
        (b"GET / HTTP/1.1\nHost: t\n\n".to_vec(), 400),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            400,
        ),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
                "a".repeat(4096)
            )
            .into_bytes(),
            431,
        ),
    ];
    for (raw, want) in cases {
        let mut s = TcpStream::connect(d.addr()).unwrap();
        s.write_all(&raw).unwrap();
        let resp = read_all(&mut s, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&resp);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {want} ")),
            "{:?} → {text:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    assert_eq!(origin.request_count(), 0);
    assert!(d.metric("proxy.process.http.4xx_responses") >= 8);
}

#[test]
fn origin_refused_is_502_and_origin_silent_is_504() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = closed.local_addr().unwrap();
    drop(closed);
    let silent = Origin::start(|_| {
        std::thread::sleep(Duration::from_secs(10));
        None
    });
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\ntransaction_no_activity_timeout_out = 1\n\
             [[remap]]\nfrom = \"/dead\"\nto = \"http://{dead_addr}/\"\n\
             [[remap]]\nfrom = \"/silent\"\nto = \"http://{}/\"\n",
            silent.addr
        ))
        .start();
    assert_eq!(http::get(d.addr(), "t", "/dead").unwrap().status, 502);
    assert_eq!(http::get(d.addr(), "t", "/silent").unwrap().status, 504);
    assert!(d.metric("proxy.process.http.5xx_responses") >= 2);
}

#[test]
fn silent_and_slowloris_clients_are_closed_after_the_timeout() {
    let d = Daemon::builder()
        .config("[proxy.config.http]\naccept_no_activity_timeout = 1\n")
        .start();
    let mut silent = TcpStream::connect(d.addr()).unwrap();
    let mut slow = TcpStream::connect(d.addr()).unwrap();
    let t0 = std::time::Instant::now();
    // The slow client trickles a head that never ends.
    let slow_writer = {
        let mut s = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = s.write_all(b"GET / HTTP/1.1\r\n");
            for _ in 0..40 {
                if s.write_all(b"X: y\r\n").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let _ = read_all(&mut silent, Duration::from_secs(10));
    let _ = read_all(&mut slow, Duration::from_secs(10));
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "closed after {:?}",
        t0.elapsed()
    );
    slow_writer.join().unwrap();
    assert!(wait_until(Duration::from_secs(5), || d
        .metric("proxy.process.net.connections_currently_open")
        == 0));
}

#[test]
fn forward_proxy_serves_absolute_form_when_remap_is_not_required() {
    let origin = Origin::start(|r| {
        Some(ok(
            format!("fwd {}", r.header("host").unwrap_or("")).as_bytes(),
            &[],
        ))
    });
    let d = Daemon::builder()
        .config("[proxy.config.url_remap]\nremap_required = false\n")
        .start();
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(
        format!(
            "GET http://{}/p HTTP/1.1\r\nHost: ignored\r\n\r\n",
            origin.addr
        )
        .as_bytes(),
    )
    .unwrap();
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.text(), format!("fwd {}", origin.addr));
}

/// An echo server for one connection that, after the client's FIN, sends
/// `bye after N` (N: bytes echoed) and closes.
fn echo_then_bye() -> std::net::SocketAddr {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = echo.accept().unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            s.write_all(&buf[..n]).unwrap();
        }
        s.write_all(format!("bye after {}", all.len()).as_bytes())
            .unwrap();
    });
    echo_addr
}

#[test]
fn a_forward_proxy_resolves_origin_names() {
    // Names go to the resolver threads (whose own tests show a slow name holding up
    // nothing) and the request resumes with the answer. An origin at the address
    // `localhost` resolves to, answering one request:
    // (IPv4 preferred, as the daemon does.)
    let all: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0))
        .unwrap()
        .collect();
    let ip = all.iter().find(|a| a.is_ipv4()).unwrap_or(&all[0]).ip();
    let origin = TcpListener::bind((ip, 0)).unwrap();
    let port = origin.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = origin.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before a whole head");
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got).to_string();
        let body = head.lines().next().unwrap_or_default().to_string();
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let echo = echo_then_bye();
    let d = forward_proxy("*");
    assert_eq!(d.metric("proxy.process.hostdb.total_lookups"), 0);
    let r = http::get(
        d.addr(),
        "ignored",
        &format!("http://localhost:{port}/by-name"),
    )
    .unwrap();
    assert_eq!(
        (r.status, r.text()),
        (200, "GET /by-name HTTP/1.1".to_string())
    );
    assert_eq!(d.metric("proxy.process.hostdb.total_lookups"), 1);
    // CONNECT by name too.
    if echo.ip() == ip {
        let mut s = connect_through(&d, &format!("localhost:{}", echo.port()), b"");
        s.shutdown(Shutdown::Write).unwrap();
        let rest = read_all(&mut s, Duration::from_secs(10));
        assert_eq!(String::from_utf8_lossy(&rest), "bye after 0");
        // The answer was kept: no second lookup.
        assert_eq!(d.metric("proxy.process.hostdb.total_lookups"), 1);
    }
    assert_eq!(d.metric("proxy.process.hostdb.lookup_failures"), 0);
    assert_eq!(
        d.metric("proxy.process.http.current_active_transactions"),
        0
    );
}

#[test]
fn blind_tunnel_relays_bytes_and_passes_half_close_on() {
    let echo_addr = echo_then_bye();
    let d = Daemon::builder()
        .env(
            "PROXY_CONFIG_HTTP_SERVER_PORTS",
            &format!("0 0:blind:tunnel=[{echo_addr}]"),
        )
        .start();
    let tunnel = d.addrs()[1];
    let mut s = TcpStream::connect(tunnel).unwrap();
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 256) as u8).collect();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let p = payload.clone();
        std::thread::spawn(move || {
            w.write_all(&p).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let got = read_all(&mut s, Duration::from_secs(20));
    writer.join().unwrap();
    assert_eq!(&got[..payload.len()], &payload[..]);
    assert_eq!(
        &got[payload.len()..],
        format!("bye after {}", payload.len()).as_bytes()
    );
    assert!(d.metric("proxy.process.tunnel.total_connections") >= 1);
}

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// A tunnel through `d` to `target` by CONNECT, `early` bytes sent with the request:
/// the stream once the 200 is read.
fn connect_through(d: &Daemon, target: &str, early: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes();
    request.extend_from_slice(early);
    s.write_all(&request).unwrap();
    let mut head = vec![0; ESTABLISHED.len()];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_exact(&mut head).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&head),
        String::from_utf8_lossy(ESTABLISHED)
    );
    s
}

/// A forward proxy allowing CONNECT to `ports`.
fn forward_proxy(ports: &str) -> Daemon {
    forward_proxy_builder(ports).start()
}

/// As `forward_proxy`, not started yet.
fn forward_proxy_builder(ports: &str) -> util::DaemonBuilder {
    Daemon::builder().config(&format!(
        "[proxy.config.url_remap]\nremap_required = false\n\
         [proxy.config.http]\nconnect_ports = \"{ports}\"\n"
    ))
}

#[test]
fn connect_opens_a_tunnel_that_relays_both_ways_and_passes_half_close_on() {
    let echo_addr = echo_then_bye();
    let dir = TempDir::new("connect");
    let log = dir.0.join("access.log");
    let d = forward_proxy_builder(&format!("443 {}", echo_addr.port()))
        .env("PROXY_CONFIG_LOG_ACCESS_LOG", &log.display().to_string())
        .start();
    // The first tunnel bytes ride with the request, as a TLS client's hello may.
    let mut s = connect_through(&d, &echo_addr.to_string(), b"early ");
    s.write_all(b"late").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let rest = read_all(&mut s, Duration::from_secs(10));
    assert_eq!(String::from_utf8_lossy(&rest), "early latebye after 10");
    assert_eq!(d.metric("proxy.process.http.connect_tunnels"), 1);
    assert_eq!(d.metric("proxy.process.http.2xx_responses"), 1);
    // Logged once the tunnel ended, with what went through it to the client.
    let lines = log_lines(&log, 1);
    let f: Vec<&str> = lines[0].split_whitespace().collect();
    let sent = ESTABLISHED.len() + "early latebye after 10".len();
    assert_eq!(
        (f[3], f[4], f[5], f[6]),
        (
            "TCP_TUNNEL/200",
            sent.to_string().as_str(),
            "CONNECT",
            echo_addr.to_string().as_str()
        )
    );
    assert_eq!(f[8], format!("DIRECT/{echo_addr}"));
}

#[test]
fn connect_is_refused_off_the_allowed_ports_and_without_forward_proxying() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let connect = |d: &Daemon, target: &str| {
        let r = http::request(d.addr(), "CONNECT", target, &[], b"").unwrap();
        (r.status, r.text())
    };
    // A reverse proxy serves no CONNECT.
    let reverse = Daemon::builder().start();
    assert_eq!(connect(&reverse, &target).0, 403);
    // A forward proxy only to connect_ports (443 by default; here `down`'s port).
    let d = forward_proxy(&down.port().to_string());
    let (status, text) = connect(&d, &target);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("connect_ports"), "{text}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a refused CONNECT reached its target"
    );
    // Allowed, but nothing listens there: 502. No port, or a body: 400.
    assert_eq!(connect(&d, &down.to_string()).0, 502);
    assert_eq!(connect(&d, "127.0.0.1").0, 400);
    let r = http::request(d.addr(), "CONNECT", &down.to_string(), &[], b"body").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(d.metric("proxy.process.http.connect_tunnels"), 0);
    // The record is reloadable: allowed now, the tunnel opens.
    let (code, out, err) = d.reload(
        "[proxy.config.url_remap]\nremap_required = false\n\
         [proxy.config.http]\nconnect_ports = \"*\"\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    connect_through(&d, &target, b"");
    assert!(wait_until(Duration::from_secs(10), || listener
        .accept()
        .is_ok()));
}

#[test]
fn the_access_log_has_a_line_per_request_and_reopens_on_reload() {
    let origin = Origin::start(|r| {
        if r.path == "/slow" {
            std::thread::sleep(Duration::from_millis(300));
        }
        Some(ok(r.path.as_bytes(), &[]))
    });
    let dir = TempDir::new("access");
    let log = dir.0.join("access.log");
    // A port nothing listens on: its connects are refused.
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "[proxy.config.log]\naccess_log = \"{}\"\n\
         [[remap]]\nfrom = \"http://proxied/\"\nto = \"http://{}/\"\n\
         [[remap]]\nfrom = \"http://refused/\"\nto = \"http://{refused}/\"\n",
        log.display(),
        origin.addr
    );
    let d = Daemon::builder().config(&config).start();
    let whole = r_len(&d, "proxied", "/a%20b?q");
    let r = http::get(d.addr(), "proxied", "/a%20b?q").unwrap();
    assert_eq!((r.status, r.text()), (200, "/a%20b?q".to_string()));
    let r = http::get(d.addr(), "elsewhere", "/nope").unwrap();
    assert_eq!(r.status, 404);
    // Never reached its origin: no hierarchy to log.
    assert_eq!(http::get(d.addr(), "refused", "/x").unwrap().status, 502);
    // A client that resets its connection before its answer is logged as aborted, with
    // no status: not a byte of the answer went.
    let mut c = TcpStream::connect(d.addr()).unwrap();
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: proxied\r\n\r\n")
        .unwrap();
    assert!(util::set_linger0(&c), "SO_LINGER");
    drop(c);
    let lines = log_lines(&log, 5);
    assert_eq!(lines.len(), 5, "{lines:?}");
    let fields: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for f in &fields {
        assert_eq!(f.len(), 10, "{f:?}");
        assert!(f[0].contains('.') && f[0].parse::<f64>().is_ok(), "{f:?}");
        assert!(f[1].parse::<u64>().is_ok(), "{f:?}");
        assert_eq!((f[2], f[5], f[7], f[9]), ("127.0.0.1", "GET", "-", "-"));
    }
    // Lines come in the order requests end, which threads may swap: sort them out by
    // what they say (result/status, URL, origin).
    let origin_field = format!("DIRECT/{}", origin.addr);
    let mut said: Vec<(&str, &str, &str)> = fields.iter().map(|f| (f[3], f[6], f[8])).collect();
    said.sort();
    let miss = (
        "TCP_MISS/200",
        "http://proxied/a%20b?q",
        origin_field.as_str(),
    );
    let aborted = (
        "TCP_MISS_ABORTED/000",
        "http://proxied/slow",
        origin_field.as_str(),
    );
    let mut want = vec![
        miss,
        miss,
        aborted,
        ("NONE/404", "http://elsewhere/nope", "NONE/-"),
        ("TCP_MISS/502", "http://refused/x", "NONE/-"),
    ];
    want.sort();
    assert_eq!(said, want);
    // The close-delimited fetch counted the bytes its client got.
    assert!(fields
        .iter()
        .any(|f| f[6] == miss.1 && f[4].parse::<usize>() == Ok(whole)));
    let slow = fields.iter().find(|f| f[6] == aborted.1).unwrap();
    assert!(slow[1].parse::<u64>().unwrap() >= 250, "{slow:?}");
    // Rotation: rename, reload, and the next line goes to a new file.
    // Each rotation: rename, `reopen`, and the next request's line is the new file's
    // first.
    let rotate = |n: usize, reopen: &dyn Fn(), path: &str| {
        let rotated = dir.0.join(format!("access.log.{n}"));
        std::fs::rename(&log, &rotated).unwrap();
        reopen();
        assert!(wait_until(Duration::from_secs(10), || log.exists()));
        assert_eq!(http::get(d.addr(), "proxied", path).unwrap().status, 200);
        let lines = log_lines(&log, 1);
        let url = format!(" http://proxied{path} ");
        assert!(lines.len() == 1 && lines[0].contains(&url), "{lines:?}");
        rotated
    };
    let rotated = rotate(
        1,
        &|| {
            let (code, out, err) = d.ctl(&["config", "reload"]);
            assert_eq!(code, 0, "{out}{err}");
        },
        "/after",
    );
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        5
    );
    // SIGUSR1, which rotation scripts written for nginx send, reopens it too (a reload),
    // and the daemon lives on.
    rotate(2, &|| d.signal(libc::SIGUSR1), "/after-usr1");
    // A mistake left in the file refuses the reload, but the rotation still takes: the
    // access log is reopened whatever becomes of the file.
    rotate(
        3,
        &|| {
            let (code, _, err) = d.reload(&format!("{config}bogus = 1\n"));
            assert_eq!(code, 1, "{err}");
        },
        "/after-refused",
    );
    d.write_config(&config);
    assert_eq!(d.metric("proxy.process.log.access_dropped"), 0);
    // A request just before a stop is in the file once the daemon has exited.
    let mut d = d;
    assert_eq!(http::get(d.addr(), "proxied", "/last").unwrap().status, 200);
    d.signal(libc::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(" http://proxied/last "), "{text}");
}

/// The bytes of a whole response to `GET path` through `d` (head and body), as the
/// access log should count them.
fn r_len(d: &Daemon, host: &str, path: &str) -> usize {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_all(&mut s, Duration::from_secs(10)).len()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_512_mib_body_streams_through_with_bounded_memory() {
    const SIZE: usize = 512 << 20;
    // The origin writes a Content-Length body in 1 MiB pieces as fast as it can.
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = origin.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes())
            .unwrap();
        let piece = vec![7u8; 1 << 20];
        for _ in 0..SIZE >> 20 {
            if s.write_all(&piece).is_err() {
                return;
            }
        }
    });
    let d = Daemon::builder()
        .config(&format!(
            "[[remap]]\nfrom = \"/\"\nto = \"http://{origin_addr}/\"\n"
        ))
        .start();
    let pid = d.child.as_ref().unwrap().id();
    let before = vm_hwm_kib(pid);
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // A client that stalls while the origin pushes: with unbounded buffering the proxy
    // would read the origin's output into memory meanwhile.
    std::thread::sleep(Duration::from_secs(1));
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("read after {total} bytes: {e}"),
        }
    }
    assert!(total > SIZE, "got {total} bytes");
    let grown = vm_hwm_kib(pid).saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "peak RSS grew by {grown} KiB while streaming 512 MiB"
    );
}

#[test]
fn while_the_pool_runs_short_an_idle_client_does_not_pin_its_origin_connection() {
    let origin = Origin::start(|_| Some(ok(b"shared", &[])));
    // One event thread: both clients' sessions share its pool.
    let d = proxy_on_one_thread(&origin, "");
    // The first client's request opens the origin connection; the client stays, idle.
    let mut first = Conn::open(d.addr()).unwrap();
    assert_eq!(first.get("t", "/1").unwrap().text(), "shared");
    // Right after an open the pool counts as short, so that connection went back to the
    // pool rather than staying attached to the idle client: the next client takes it.
    let mut second = Conn::open(d.addr()).unwrap();
    assert_eq!(second.get("t", "/2").unwrap().text(), "shared");
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // Both keep working, one after the other, still on one origin connection.
    assert_eq!(first.get("t", "/3").unwrap().text(), "shared");
    assert_eq!(second.get("t", "/4").unwrap().text(), "shared");
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn origin_connections_outlive_the_clients_that_used_them() {
    let origin = Origin::start(|_| Some(ok(b"pooled", &[])));
    let d = proxy_to(&origin, "[proxy.config]\naccept_threads = 0\n");
    // Keep-alive clients that each make one request and leave, one after another.
    for _ in 0..20 {
        let mut c = Conn::open(d.addr()).unwrap();
        assert_eq!(c.get("t", "/p").unwrap().text(), "pooled");
    }
    assert_eq!(origin.request_count(), 20);
    // A new client may arrive before the previous one's close is processed (and on the
    // other event thread), so a few connections are opened; without pooling it is 20.
    let opened = origin.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(opened <= 6, "{opened} origin connections for 20 clients");
}

#[test]
fn pooled_origin_connections_are_closed_after_keep_alive_no_activity_timeout_out() {
    // A raw origin that answers one keep-alive request, then waits for the proxy to
    // close the idle connection: it reports how long after its answer that came.
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap();
    let idle = std::thread::spawn(move || {
        let (mut s, _) = origin.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "request head");
            head.push(b[0]);
        }
        s.write_all(&ok(b"once", &[])).unwrap();
        let answered = std::time::Instant::now();
        let n = s.read(&mut b).expect("closed before the read timeout");
        (n, answered.elapsed())
    });
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nkeep_alive_no_activity_timeout_out = 1\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{origin_addr}/\"\n"
        ))
        .start();
    assert_eq!(http::get(d.addr(), "t", "/").unwrap().text(), "once");
    let (n, after) = idle.join().unwrap();
    assert_eq!(n, 0, "the proxy sent bytes on an idle connection");
    // Kept for the timeout (1 s), closed by the next sweep after it (every 200 ms).
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(10)).contains(&after),
        "closed {after:?} after the answer"
    );
}

#[test]
fn reloaded_remap_rules_apply_to_new_requests_on_every_thread() {
    let a = Origin::start(|_| Some(ok(b"a", &[])));
    let b = Origin::start(|_| Some(ok(b"b", &[])));
    let rule = |o: &Origin| {
        format!(
            "[proxy.config]\naccept_threads = 0\n[[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            o.addr
        )
    };
    let d = Daemon::builder().config(&rule(&a)).start();
    // Connections land on both event threads.
    for _ in 0..8 {
        assert_eq!(http::get(d.addr(), "t", "/").unwrap().text(), "a");
    }
    let (code, out, err) = d.reload(&rule(&b));
    assert_eq!(code, 0, "{out}{err}");
    for _ in 0..8 {
        assert_eq!(http::get(d.addr(), "t", "/").unwrap().text(), "b");
    }
}

#[test]
fn pooled_connections_the_origin_closed_are_never_used() {
    // An origin that answers as if keep-alive, then closes every connection.
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in origin.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                // Read a small body too, if any (the tests send at most 5 bytes).
                if req.starts_with(b"POST") && !req.ends_with(b"hello") {
                    let _ = s.read(&mut buf);
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                // Closes a moment after answering, as an origin whose keep-alive timer
                // fires does: the proxy has pooled the connection by then.
                std::thread::sleep(Duration::from_millis(5));
            });
        }
    });
    // One ET_NET thread: every request meets the one pool.
    let d = Daemon::builder()
        .env("PROXY_CONFIG_EXEC_THREAD_LIMIT", "1")
        .config(&format!("[proxy.config]\naccept_threads = 0\n[[remap]]\nfrom = \"/\"\nto = \"http://{origin_addr}/\"\n"))
        .start();
    for i in 0..20 {
        let r = if i % 2 == 0 {
            http::get(d.addr(), "t", "/g").unwrap()
        } else {
            // Not retryable: the dead pooled connection must be noticed before use.
            std::thread::sleep(Duration::from_millis(20));
            http::request(d.addr(), "POST", "/p", &[], b"hello").unwrap()
        };
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "request {i}");
    }
    // The pool's watcher saw each close and dropped that connection: no GET took a dead
    // one (which its retry would hide). Without the watcher every GET after the first
    // reuses one (9 or 10 of 10). Each GET comes 20 ms after the close it must have seen;
    // a machine slower than that may let one or two through.
    let reused = d.metric("proxy.process.http.origin_connections_reused");
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(20));
        let r = http::get(d.addr(), "t", "/g").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "GET {i}");
    }
    let taken_dead = d.metric("proxy.process.http.origin_connections_reused") - reused;
    assert!(
        taken_dead <= 2,
        "{taken_dead} of 10 GETs took a dead pooled connection"
    );
}

#[test]
fn http10_clients_get_no_chunked_coding_and_no_interim_responses() {
    let origin = Origin::start(|r| match r.path.as_str() {
        "/chunked" => Some(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n1;ext=x\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
                .to_vec(),
        ),
        "/interim" => Some(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
        _ => Some(ok(b"plain", &[])),
    });
    let d = proxy_to(&origin, "");
    for keep_alive in ["", "Connection: keep-alive\r\n"] {
        let mut s = TcpStream::connect(d.addr()).unwrap();
        write!(s, "GET /chunked HTTP/1.0\r\nHost: t\r\n{keep_alive}\r\n").unwrap();
        // The body runs to the close: reading to EOF (not a timeout) proves the close.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .expect("the proxy closes after a close-delimited body");
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("a complete head");
        let lower = head.to_ascii_lowercase();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(!lower.contains("transfer-encoding"), "{head}");
        assert!(!lower.contains("content-length"), "{head}");
        assert!(lower.contains("connection: close"), "{head}");
        assert_eq!(body, "hello world", "{keep_alive:?}");
    }
    // A 1.1 client still gets the chunks as they came, on a kept-alive connection.
    let mut c = Conn::open(d.addr()).unwrap();
    let r = c.get("t", "/chunked").unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "hello world");
    assert_eq!(c.get("t", "/x").unwrap().text(), "plain");
    // No 100 Continue for a 1.0 client: the final response comes first.
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.write_all(b"GET /interim HTTP/1.0\r\nHost: t\r\n\r\n")
        .unwrap();
    let raw = String::from_utf8(read_all(&mut s, Duration::from_secs(10))).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 "), "{raw}");
    assert!(raw.ends_with("\r\n\r\nok"), "{raw}");
}

#[test]
fn per_server_connection_max_queues_requests_beyond_it() {
    // The origin takes 150 ms a request and records how many it holds at once.
    let held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (h, m) = (held.clone(), most.clone());
    let origin = Origin::start(move |r| {
        use std::sync::atomic::Ordering::SeqCst;
        m.fetch_max(h.fetch_add(1, SeqCst) + 1, SeqCst);
        std::thread::sleep(Duration::from_millis(150));
        h.fetch_sub(1, SeqCst);
        Some(ok(r.path.as_bytes(), &[]))
    });
    let d = proxy_to(
        &origin,
        "[proxy.config.http]\nper_server.connection.max = 2\n",
    );
    let addr = d.addr();
    // Distinct URLs: no two of them wait on one cache fill.
    let clients: Vec<_> = (0..8)
        .map(|i| std::thread::spawn(move || http::get(addr, "t", &format!("/{i}")).unwrap()))
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let r = c.join().unwrap();
        assert_eq!((r.status, r.text()), (200, format!("/{i}")));
    }
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most <= 2, "{most} requests at the origin at once");
    assert!(d.metric("proxy.process.http.origin_requests_queued") >= 1);
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.current_origin_queue")
        == 0
        && d.metric("proxy.process.http.current_active_transactions")
            == 0));
}

#[test]
fn requests_queued_for_an_origin_go_in_arrival_order() {
    queued_requests_go_in_arrival_order(true);
}

#[test]
fn requests_queued_on_two_threads_go_in_arrival_order() {
    // Clients are spread over both event threads: a place given back on one goes to the
    // oldest waiting request, whichever thread it is on.
    queued_requests_go_in_arrival_order(false);
}

fn queued_requests_go_in_arrival_order(one_thread: bool) {
    let (gate, origin, d, mut first) = one_place_taken(one_thread, "");
    // Five more queue behind it, one after another.
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(http::send_get(d.addr(), &format!("/q{i}")));
        assert!(queue_holds(&d, i + 1));
    }
    // Not synchronisation: a wait of known length for the histogram to show.
    std::thread::sleep(Duration::from_millis(50));
    gate.open();
    assert_eq!(first.read_response("GET").unwrap().text(), "/hold");
    for (i, c) in queued.iter_mut().enumerate() {
        assert_eq!(c.read_response("GET").unwrap().text(), format!("/q{i}"));
    }
    assert_eq!(origin.paths(), ["/hold", "/q0", "/q1", "/q2", "/q3", "/q4"]);
    assert_eq!(d.metric("proxy.process.http.origin_requests_queued"), 5);
    // Each waited at least the 50 ms the gate stayed shut after the last one queued.
    assert!(d.metric("proxy.process.http.origin_queue_wait_us.p50") >= 50_000);
}

#[test]
fn requests_queued_for_an_origin_are_answered_through_a_stop() {
    let (gate, _origin, mut d, mut first) = one_place_taken(false, "");
    let mut queued = http::send_get(d.addr(), "/queued");
    assert!(queue_holds(&d, 1));
    // Both are in flight for the drain: the queued one is answered once the first ends.
    assert_eq!(
        d.metric("proxy.process.http.current_active_transactions"),
        2
    );
    d.signal(libc::SIGTERM);
    gate.open();
    assert_eq!(first.read_response("GET").unwrap().text(), "/hold");
    assert_eq!(queued.read_response("GET").unwrap().text(), "/queued");
    let status = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_keep_alive_clients_next_request_waits_its_turn_despite_its_attached_connection() {
    let gate = Gate::default();
    let g = gate.clone();
    let origin = Origin::start(move |req| {
        match req.path.as_str() {
            "/hold" => g.wait(),
            // Past the second after a new origin connection in which a finished
            // transaction gives its connection back to the pool rather than keep it.
            "/k1" => std::thread::sleep(Duration::from_millis(1200)),
            _ => {}
        }
        Some(ok(req.path.as_bytes(), &[]))
    });
    let d = proxy_on_one_thread(
        &origin,
        "[proxy.config.http]\nper_server.connection.max = 1\n",
    );
    // A keep-alive client's first request is answered; its origin connection stays
    // attached to it.
    let mut k = http::Conn::open(d.addr()).unwrap();
    assert_eq!(k.get("t", "/k1").unwrap().text(), "/k1");
    // Another client takes the one place, and the first asks again: its request waits
    // in the queue, and the connection still attached to it does not carry it past.
    let mut first = http::send_get(d.addr(), "/hold");
    assert!(origin.wait_for_requests(2));
    k.send(b"GET /k2 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(queue_holds(&d, 1));
    // Not synchronisation: time for a request sent past the queue to reach the origin.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(origin.paths(), ["/k1", "/hold"]);
    gate.open();
    assert_eq!(first.read_response("GET").unwrap().text(), "/hold");
    assert_eq!(k.read_response("GET").unwrap().text(), "/k2");
    assert_eq!(origin.paths(), ["/k1", "/hold", "/k2"]);
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.current_active_transactions")
        == 0));
}

#[test]
fn a_queued_request_whose_client_leaves_is_dropped_from_the_queue() {
    let (gate, origin, d, mut first) = one_place_taken(false, "");
    let gone = http::send_get(d.addr(), "/gone");
    assert!(queue_holds(&d, 1));
    drop(gone);
    assert!(queue_holds(&d, 0));
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.current_client_connections")
        == 1));
    gate.open();
    assert_eq!(first.read_response("GET").unwrap().text(), "/hold");
    // The place went to nobody: the next request gets it, the one that left never ran.
    assert_eq!(http::get(d.addr(), "t", "/next").unwrap().text(), "/next");
    assert_eq!(origin.paths(), ["/hold", "/next"]);
}

#[test]
fn a_request_queued_past_connect_attempts_timeout_gets_503_and_a_reload_lifts_the_limit() {
    let (gate, origin, d, mut first) = one_place_taken(false, "connect_attempts_timeout = 1\n");
    let started = std::time::Instant::now();
    let r = http::get(d.addr(), "t", "/second").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        origin.request_count(),
        1,
        "the queued request reached the origin"
    );
    assert_eq!(d.metric("proxy.process.http.origin_queue_timeouts"), 1);
    assert_eq!(d.metric("proxy.process.http.5xx_responses"), 1);
    // It waited the whole timeout, and the histogram says so.
    assert!(d.metric("proxy.process.http.origin_queue_wait_us.max") >= 900_000);
    // The record is reloadable: with the limit lifted, a request passes the held one.
    let (code, out, err) = d.reload(&format!(
        "[proxy.config.http]\nper_server.connection.max = 0\nconnect_attempts_timeout = 1\n\
         [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
        origin.addr
    ));
    assert_eq!(code, 0, "{out}{err}");
    let r = http::get(d.addr(), "t", "/unlimited").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "/unlimited"));
    gate.open();
    let r = first.read_response("GET").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "/hold"));
    // The first transaction's place came back: the next request goes straight through.
    let r = http::get(d.addr(), "t", "/after").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "/after"));
    assert_eq!(d.metric("proxy.process.http.current_origin_queue"), 0);
}

/// Answers of one batch of events leave in one io_uring submission (`net.send_batch`),
/// counted by `batched_sends`; with the record off, or where the kernel has no io_uring,
/// each leaves by its own send and the answers are the same.
#[test]
fn a_batch_of_answers_leaves_in_one_submission_and_the_record_turns_it_off() {
    let origin = Origin::fixed(b"batched");
    let uring = iocore::SendBatch::new().is_ok();
    for on in [true, false] {
        let d = proxy_on_one_thread(&origin, &format!("[proxy.config.net]\nsend_batch = {on}\n"));
        let mut conns: Vec<Conn> = (0..8).map(|_| Conn::open(d.addr()).unwrap()).collect();
        // Eight requests at once, round after round: on one event thread their answers
        // come back within one batch of events now and then, at the latest after a few
        // rounds.
        let mut rounds = 0;
        let batched = wait_until(Duration::from_secs(20), || {
            rounds += 1;
            for c in conns.iter_mut() {
                c.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            }
            for c in conns.iter_mut() {
                let r = c.read_response("GET").unwrap();
                assert_eq!((r.status, r.body.as_slice()), (200, &b"batched"[..]));
            }
            d.metric("proxy.process.http.batched_sends") > 0 || rounds >= 50
        });
        assert!(batched, "rounds did not finish");
        let sends = d.metric("proxy.process.http.batched_sends");
        let batches = d.metric("proxy.process.http.send_batches");
        if on && uring {
            assert!(
                sends >= 2 && batches >= 1,
                "{sends} sends in {batches} batches"
            );
        } else {
            assert_eq!(
                (sends, batches),
                (0, 0),
                "send_batch = {on}, io_uring: {uring}"
            );
        }
    }
}

#[test]
fn max_forwards_0_is_answered_here_and_more_is_forwarded_one_less() {
    // RFC 9110 §7.6.2: TRACE and OPTIONS only.
    let origin = Origin::start(|r| Some(ok(r.method.as_bytes(), &[])));
    let d = Daemon::builder()
        .config(&format!(
            "[[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start();
    let ask = |method: &str, mf: &str| {
        let fields = [("Max-Forwards", mf), ("Cookie", "secret=1")];
        http::request(d.addr(), method, "/m", &fields, b"").unwrap()
    };
    let trace = ask("TRACE", "0");
    assert_eq!(trace.status, 200);
    assert_eq!(trace.header("content-type"), Some("message/http"));
    let echo = trace.text();
    assert!(echo.starts_with("TRACE /m HTTP/1.1\r\n"), "{echo}");
    assert!(echo.contains("Max-Forwards: 0\r\n"), "{echo}");
    assert!(
        !echo.contains("secret"),
        "credentials are not reflected: {echo}"
    );
    let options = ask("OPTIONS", "0");
    assert_eq!(options.status, 200);
    assert!(options.header("allow").unwrap().contains("GET"));
    assert!(origin.requests.lock().unwrap().is_empty());

    assert_eq!(ask("OPTIONS", "3").text(), "OPTIONS");
    assert_eq!(
        ask("GET", "0").text(),
        "GET",
        "only TRACE and OPTIONS heed it"
    );
    let seen = origin.requests.lock().unwrap();
    let mf: Vec<Option<&str>> = seen.iter().map(|r| r.header("max-forwards")).collect();
    assert_eq!(mf, [Some("2"), Some("0")]);
}

#[test]
fn options_asterisk_reaches_the_origin_as_asterisk() {
    // RFC 9110 §9.3.7: `OPTIONS *` asks about the server, not a resource; through a
    // proxy it is `OPTIONS http://host` with no path, sent on as `*` (RFC 9112 §3.2.4).
    let origin = Origin::start(|r| Some(ok(r.path.as_bytes(), &[("Allow", "GET")])));
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.url_remap]\nremap_required = false\n\
             [[remap]]\nfrom = \"http://site.test/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start();
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: site.test\r\n\r\n")
        .unwrap();
    let r = c.read_response("OPTIONS").unwrap();
    assert_eq!((r.status, r.text()), (200, "*".to_string()));
    assert_eq!(r.header("allow"), Some("GET"));
    let forward = format!("OPTIONS http://{} HTTP/1.1\r\nHost: x\r\n\r\n", origin.addr);
    c.send(forward.as_bytes()).unwrap();
    let r = c.read_response("OPTIONS").unwrap();
    assert_eq!((r.status, r.text()), (200, "*".to_string()));
    // A host no rule maps at its root has no server to ask.
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: other.test\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response("OPTIONS").unwrap().status, 404);
    let seen: Vec<String> = origin
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(seen, ["*", "*"]);
}

#[test]
fn an_access_log_on_a_full_disk_counts_its_lost_lines_and_warns_once() {
    let full = std::path::Path::new("/dev/full");
    assert!(full.exists(), "this test needs Linux's /dev/full");
    let origin = Origin::start(|_| Some(ok(b"ok", &[])));
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.log]\naccess_log = \"/dev/full\"\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start();
    let mut c = Conn::open(d.addr()).unwrap();
    // More than the writer's 64 KiB buffer holds, so writes reach the file and fail.
    for i in 0..1500 {
        assert_eq!(c.get("t", &format!("/{i:0>40}")).unwrap().status, 200);
    }
    let dropped = || d.metric("proxy.process.log.access_dropped");
    assert!(wait_until(Duration::from_secs(10), || dropped() > 0));
    let warnings = d.log_text().matches("access log /dev/full:").count();
    assert_eq!(warnings, 1, "{}", d.log_text());
}

/// A target that answers each connection with `n` bytes, then a reset.
fn bytes_then_reset(n: usize) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.write_all(&vec![b'x'; n]);
                // Let the bytes go before the reset drops what is still unsent.
                std::thread::sleep(Duration::from_millis(200));
                util::set_linger0(&s);
            });
        }
    });
    addr
}

/// Reads until the end: the bytes, and whether it ended in a reset.
fn read_to_reset(s: &mut TcpStream) -> (usize, bool) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0;
    let mut b = [0u8; 65536];
    loop {
        match s.read(&mut b) {
            Ok(0) => return (got, false),
            Ok(n) => got += n,
            Err(e) => return (got, e.kind() == std::io::ErrorKind::ConnectionReset),
        }
    }
}

#[test]
fn a_reset_on_one_side_of_a_tunnel_reaches_the_other_as_a_reset() {
    // A FIN would tell the client the stream ended whole (RFC 9112 §6.3's rule for a
    // cut body, and the README's for relays): a reset stays a reset, both ways.
    let target = bytes_then_reset(100_000);
    let d = forward_proxy_builder(&target.port().to_string())
        .env(
            "PROXY_CONFIG_HTTP_SERVER_PORTS",
            &format!("0 0:blind:tunnel=[{target}]"),
        )
        .start();
    let mut blind = TcpStream::connect(d.addrs()[1]).unwrap();
    assert_eq!(read_to_reset(&mut blind), (100_000, true), "blind port");
    let mut connect = connect_through(&d, &target.to_string(), b"");
    assert_eq!(read_to_reset(&mut connect), (100_000, true), "CONNECT");
    // The client's reset reaches the target as one.
    let (l, echo) = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    };
    let d = forward_proxy(&echo.port().to_string());
    let c = connect_through(&d, &echo.to_string(), b"some bytes");
    let (mut at_target, _) = l.accept().unwrap();
    let mut b = [0u8; 10];
    at_target
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    at_target.read_exact(&mut b).unwrap();
    assert!(util::set_linger0(&c));
    drop(c);
    assert_eq!(read_to_reset(&mut at_target), (0, true), "to the target");
    assert!(wait_until(Duration::from_secs(5), || {
        d.metric("proxy.process.net.connections_currently_open") == 0
    }));
}

#[test]
fn a_connect_by_name_with_its_fin_right_behind_is_tunnelled() {
    // `printf 'CONNECT localhost:P …\r\n\r\nDATA' | nc -N`: the client half-closes while
    // the name is looked up; its FIN is for the tunnel to pass on.
    let echo_addr = echo_then_bye();
    let d = forward_proxy(&echo_addr.port().to_string());
    // The first: its name is not in the resolver's answers yet.
    {
        let mut s = TcpStream::connect(d.addr()).unwrap();
        let target = format!("localhost:{}", echo_addr.port());
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nDATA");
        s.write_all(request.as_bytes()).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let got = read_all(&mut s, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200 Connection Established\r\n\r\nDATAbye after 4"),
            "{text}"
        );
    }
}

#[test]
fn a_connect_clients_reset_while_its_connect_is_pending_ends_it_at_once() {
    let (target, _held, _listener) = util::full_backlog();
    let dir = TempDir::new("connect-pending");
    let log = dir.0.join("access.log");
    let d = forward_proxy_builder(&target.port().to_string())
        .env("PROXY_CONFIG_LOG_ACCESS_LOG", &log.display().to_string())
        .start();
    let mut c = TcpStream::connect(d.addr()).unwrap();
    write!(c, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let open = || d.metric("proxy.process.net.connections_currently_open");
    assert!(wait_until(Duration::from_secs(5), || open() == 1));
    assert!(util::set_linger0(&c));
    drop(c);
    // Well before the 30 s connect timeout.
    assert!(wait_until(Duration::from_secs(5), || open() == 0));
    let lines = log_lines(&log, 1);
    assert!(lines[0].contains("_ABORTED/000"), "{lines:?}");
}

#[test]
fn a_refused_connect_is_no_origin_connection_opened() {
    // Nothing listens at the local end of a connection this test holds.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let dead = held.local_addr().unwrap();
    let d = Daemon::builder()
        .config(&format!(
            "[[remap]]\nfrom = \"/\"\nto = \"http://{dead}/\"\n"
        ))
        .start();
    let r = http::get(d.addr(), "t", "/").unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(d.metric("proxy.process.http.origin_connections_opened"), 0);
    // A connect that completes counts.
    let origin = Origin::start(|_| Some(ok(b"up", &[])));
    let d = proxy_to(&origin, "");
    assert_eq!(http::get(d.addr(), "t", "/").unwrap().text(), "up");
    assert_eq!(d.metric("proxy.process.http.origin_connections_opened"), 1);
    drop((l, held));
}
