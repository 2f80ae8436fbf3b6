//! What outside probes found, pinned through the real binary: a client that pipelines
//! cache hits and never reads holds one answer, not all of them; a slow upload is the
//! client's time, not the origin's; framing lists, trailers, underscore fields and later
//! HTTP/1 minor versions reach the origin in one meaning only; and from a second probe,
//! an unasked-for 101, framing fields on a 204, an early answer's Connection, fields
//! the client's Connection names, and the status of bad hosts, fragments, codings and
//! long targets.

mod util;

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::http::{self, Conn};
use util::origin::{ok, Origin};
use util::{log_lines, read_all, wait_until, Daemon, TempDir};

/// Peak resident memory of `pid`, KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A connection to `addr` whose receive buffer is `rcvbuf` bytes, set before the
/// handshake so the window it offers stays small.
fn small_window_conn(addr: SocketAddr, rcvbuf: i32) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("test daemons listen on IPv4")
    };
    // SAFETY: a fresh socket descriptor, owned by the TcpStream made from it below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: the option value is a live i32 of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sa` is a valid sockaddr_in of the size passed.
    let r = unsafe {
        libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a connected socket nothing else owns.
    unsafe { TcpStream::from_raw_fd(fd) }
}

#[test]
fn pipelined_hits_to_a_client_that_never_reads_hold_one_answer_per_connection() {
    const OBJECT: usize = 1 << 20;
    const CONNS: usize = 4;
    const PIPELINED: usize = 2_000;
    let body: &'static [u8] = Box::leak(vec![b'x'; OBJECT].into_boxed_slice());
    let origin = Origin::start(move |_| Some(ok(body, &[("Cache-Control", "max-age=600")])));
    let span = TempDir::new("pipelined-hits");
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 1\n[proxy.config.cache]\n\
             storage = [{{ path = \"{}\", size = \"32M\" }}]\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            span.0.display(),
            origin.addr
        ))
        .start();
    // Cached, and a hit once.
    for _ in 0..2 {
        let r = http::get(d.addr(), "t", "/big").unwrap();
        assert_eq!((r.status, r.body.len()), (200, OBJECT));
    }
    assert_eq!(origin.request_count(), 1);
    let pid = d.child.as_ref().unwrap().id();
    let before = vm_hwm_kib(pid);
    let hits_before = d.metric("proxy.process.cache.hits");
    let request = b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n";
    let all: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * PIPELINED)
        .collect();
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let s = small_window_conn(d.addr(), 1024);
        // The kernel takes what fits; a writer thread pushes the rest as the daemon
        // reads, and stops when it no longer does.
        let mut w = s.try_clone().unwrap();
        w.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        let all = all.clone();
        std::thread::spawn(move || {
            let _ = w.write_all(&all);
        });
        conns.push(s);
    }
    // Every connection gets its first answer under way; then the daemon has as much as
    // the unread clients let it have: watch until the hits stop moving (3 s at most).
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.cache.hits")
        >= hits_before + CONNS as i64));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = d.metric("proxy.process.cache.hits");
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = d.metric("proxy.process.cache.hits");
        if now == last {
            break;
        }
        last = now;
    }
    let grown_kib = vm_hwm_kib(pid).saturating_sub(before);
    assert!(
        grown_kib < 48 * 1024,
        "peak RSS grew by {grown_kib} KiB for {CONNS} unread clients"
    );
    // Far fewer answers than requests were made: the rest wait unread.
    let answered = d.metric("proxy.process.cache.hits") - hits_before;
    assert!(answered < (CONNS * PIPELINED) as i64 / 4, "{answered} hits");
    // Everyone else is served meanwhile.
    let t = Instant::now();
    let r = http::get(d.addr(), "t", "/big").unwrap();
    assert_eq!((r.status, r.body.len()), (200, OBJECT));
    assert!(t.elapsed() < Duration::from_secs(5));
    // A client that reads again gets its pipelined answers, whole and in order.
    let mut c = Conn {
        reader: std::io::BufReader::new(conns.pop().unwrap()),
    };
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for _ in 0..3 {
        let r = c.read_response("GET").unwrap();
        assert_eq!((r.status, r.body.len()), (200, OBJECT));
    }
}

#[test]
fn a_hit_to_a_client_that_closes_after_it_is_sent_whole_however_slowly_it_reads() {
    const OBJECT: usize = 1 << 20;
    let body: Vec<u8> = (0..OBJECT).map(|i| (i % 251) as u8).collect();
    let served = body.clone();
    let origin = Origin::start(move |_| Some(ok(&served, &[("Cache-Control", "max-age=600")])));
    let span = TempDir::new("slow-hit-close");
    let d = caching_proxy_to(origin.addr, &span);
    let r = http::get(d.addr(), "t", "/big").unwrap();
    assert_eq!((r.status, r.body.len()), (200, OBJECT));
    // A hit to a client that asks for the close, reads nothing for longer than the
    // lingering close's 2 s, then reads slowly: its connection closes once the whole
    // answer is out, not at a deadline counted from when it was queued.
    let mut s = small_window_conn(d.addr(), 4096);
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Not synchronisation: the pause is the slow reader this test is about.
    std::thread::sleep(Duration::from_millis(3000));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("after {} bytes: {e}", got.len()),
        }
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got.starts_with(b"HTTP/1.1 200 "));
    assert_eq!(got.len() - head_end, OBJECT, "the body was cut short");
    assert!(got[head_end..] == body[..], "the body differs");
}

/// A daemon in front of `origin` with extra records.
fn proxy_to(origin: SocketAddr, records: &str) -> Daemon {
    Daemon::builder()
        .config(&format!(
            "{records}\n[[remap]]\nfrom = \"/\"\nto = \"http://{origin}/\"\n"
        ))
        .start()
}

/// A daemon in front of `origin` that caches, in an 8M span under `dir`.
fn caching_proxy_to(origin: SocketAddr, dir: &TempDir) -> Daemon {
    proxy_to(
        origin,
        &format!(
            "[proxy.config.http]\nwait_for_cache = 1\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"8M\" }}]",
            dir.0.join("span").display()
        ),
    )
}

#[test]
fn a_slow_upload_under_a_short_origin_timeout_is_delivered_whole() {
    let origin = Origin::start(|r| Some(ok(format!("got {}", r.body.len()).as_bytes(), &[])));
    // The origin may be silent 2 s; the upload takes 3.6 s, a piece every 0.6 s.
    let d = proxy_to(
        origin.addr,
        "[proxy.config.http]\ntransaction_no_activity_timeout_out = 2",
    );
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 6000\r\n\r\n")
        .unwrap();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(600));
        c.send(&[b'u'; 1000]).unwrap();
    }
    let r = c.read_response("POST").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "got 6000"));
}

#[test]
fn a_client_silent_mid_body_gets_408_and_is_logged_as_aborted() {
    let origin = Origin::start(|r| Some(ok(format!("got {}", r.body.len()).as_bytes(), &[])));
    let dir = TempDir::new("mid-body");
    let log = dir.0.join("access.log");
    let d = proxy_to(
        origin.addr,
        &format!(
            "[proxy.config.http]\ntransaction_no_activity_timeout_in = 1\n\
             transaction_no_activity_timeout_out = 30\n\
             [proxy.config.log]\naccess_log = \"{}\"",
            log.display()
        ),
    );
    let mut c = Conn::open(d.addr()).unwrap();
    let started = Instant::now();
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhalf")
        .unwrap();
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection"), Some("close"));
    // After the client's timeout, long before the origin's.
    assert!(started.elapsed() < Duration::from_secs(20));
    let lines = log_lines(&log, 1);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("TCP_MISS_ABORTED/408") && l.contains(" POST ")),
        "{lines:?}"
    );
    assert_eq!(d.metric("proxy.process.http.5xx_responses"), 0);
}

/// An origin that records each request's raw bytes (head and body) up to the end of
/// its body, and answers 200 with a close.
fn raw_origin() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let keep = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let seen = keep.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                while !complete(&raw) {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock().unwrap().push(raw);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    (addr, seen)
}

/// Whether `raw` holds a whole request: a head, then its Content-Length body or a
/// chunked body up to its last chunk and blank line.
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let head = text[..end].to_ascii_lowercase();
    let body = &text[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with("0\r\n\r\n");
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.split(',').next()?.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

/// The payload of a chunked body whose chunk-size lines carry no extensions, checking
/// that nothing follows its last chunk but the blank line.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk-size line");
        let n = usize::from_str_radix(size, 16).expect("a bare hex size");
        if n == 0 {
            assert_eq!(rest, "\r\n", "trailers forwarded");
            return out;
        }
        out.push_str(&rest[..n]);
        assert_eq!(&rest[n..n + 2], "\r\n");
        body = &rest[n + 2..];
    }
}

/// Sends `raw` through `d` on a fresh connection and returns the status.
fn send_raw(d: &Daemon, raw: &[u8]) -> u16 {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.write_all(raw).unwrap();
    let got = read_all(&mut s, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got);
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_content_length_list_reaches_the_origin_as_one_value() {
    let (addr, seen) = raw_origin();
    let d = proxy_to(addr, "");
    for raw in [
        &b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello"[..],
        b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    ] {
        assert_eq!(send_raw(&d, raw), 200);
    }
    // Lists that disagree are refused, as before: nothing reaches the origin.
    let refused = b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello";
    assert_eq!(send_raw(&d, refused), 400);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for raw in seen.iter() {
        let text = String::from_utf8_lossy(raw);
        let lengths: Vec<&str> = text
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-length"))
            .collect();
        assert_eq!(lengths, ["Content-Length: 5"], "{text}");
        assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    }
}

#[test]
fn chunked_trailers_underscore_fields_and_http_1_2_are_normalised() {
    let (addr, seen) = raw_origin();
    let d = proxy_to(addr, "");
    // Trailers (one without a colon, framing fields among them) and chunk extensions
    // never reach the origin; the payload does, in chunks of the proxy's own.
    let chunked = b"POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
        3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nContent-Length: 99\r\nTransfer-Encoding: x\r\nnocolon\r\n\r\n";
    assert_eq!(send_raw(&d, chunked), 200);
    let underscore = b"GET /u HTTP/1.1\r\nHost: t\r\nTransfer_Encoding: chunked\r\nX_Y: 1\r\nConnection: close\r\n\r\n";
    assert_eq!(send_raw(&d, underscore), 200);
    // RFC 9110 §2.5: processed as HTTP/1.1, not refused with 505.
    let later = b"GET /v HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(send_raw(&d, later), 200);
    let seen = seen.lock().unwrap();
    let texts: Vec<String> = seen
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    let find = |path: &str| {
        texts
            .iter()
            .find(|t| t.contains(&format!(" {path} HTTP/1.1\r\n")))
            .unwrap_or_else(|| panic!("{path} not forwarded: {texts:?}"))
    };
    let t = find("/t");
    let body = &t[t.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(dechunk(body), "abcde", "{t}");
    assert!(body.ends_with("\r\n0\r\n\r\n"), "{t}");
    // (The body only: the head's Via carries a random instance token.)
    assert!(!body.contains("ext=") && !body.contains("99") && !body.contains("nocolon"));
    assert!(!t.contains("nocolon") && !t.contains("Content-Length: 99"));
    let u = find("/u");
    assert!(!u.contains('_'), "{u}");
    assert!(!u.to_ascii_lowercase().contains("transfer"), "{u}");
    find("/v");
}

/// The raw response to `raw` sent through `d` on a fresh connection (the request should
/// say `Connection: close`).
fn exchange_raw(d: &Daemon, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.write_all(raw).unwrap();
    String::from_utf8_lossy(&read_all(&mut s, Duration::from_secs(10))).into_owned()
}

/// The lines of a raw response's head that name `field` (any case).
fn fields_named<'a>(response: &'a str, field: &str) -> Vec<&'a str> {
    let head = &response[..response.find("\r\n\r\n").unwrap_or(response.len())];
    head.lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(field))
        })
        .collect()
}

#[test]
fn an_origin_101_the_request_never_asked_for_is_a_502() {
    let origin = Origin::start(|r| {
        match r.path.as_str() {
        "/up" => Some(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nRAW"
                .to_vec(),
        ),
        _ => Some(ok(b"fine", &[])),
    }
    });
    let d = proxy_to(origin.addr, "");
    // A client's Upgrade is never forwarded, so a 101 cannot be the origin's answer: the
    // client gets a final status, and the request after it its own answer.
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"GET /up HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 502);
    assert!(!r.text().contains("RAW"));
    let r = http::get(d.addr(), "t", "/next").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "fine"));
    assert_eq!(d.metric("proxy.process.http.5xx_responses"), 1);
}

#[test]
fn a_204_carries_no_content_length_missed_or_hit_and_a_length_list_goes_on_as_one() {
    let origin = Origin::start(|r| match r.path.as_str() {
        "/none" => Some(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nCache-Control: max-age=600\r\n\r\n"
                .to_vec(),
        ),
        _ => Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok".to_vec()),
    });
    let dir = TempDir::new("bodiless");
    let d = caching_proxy_to(origin.addr, &dir);
    let get = |path: &str| {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        exchange_raw(&d, raw.as_bytes())
    };
    // RFC 9110 §8.6: no Content-Length on a 204, from the origin (a miss) or the cache.
    for turn in ["miss", "hit"] {
        let r = get("/none");
        assert!(r.starts_with("HTTP/1.1 204 "), "{turn}: {r}");
        assert_eq!(
            fields_named(&r, "content-length"),
            Vec::<&str>::new(),
            "{turn}: {r}"
        );
        assert!(r.ends_with("\r\n\r\n"), "{turn}: {r}");
    }
    assert_eq!(
        origin.request_count(),
        1,
        "the 204 was not served from the cache"
    );
    let r = get("/list");
    assert_eq!(
        fields_named(&r, "content-length"),
        ["Content-Length: 2"],
        "{r}"
    );
    assert!(r.ends_with("\r\n\r\nok"), "{r}");
}

#[test]
fn a_forwarded_for_or_via_the_client_names_in_connection_is_not_carried_on() {
    let origin = Origin::start(|_| Some(ok(b"ok", &[])));
    let d = proxy_to(origin.addr, "");
    let raw = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: X-Forwarded-For, Via\r\n\
        X-Forwarded-For: 6.6.6.6\r\nVia: 1.1 elsewhere\r\n\r\n";
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(raw).unwrap();
    assert_eq!(c.read_response("GET").unwrap().status, 200);
    let seen = origin.requests.lock().unwrap();
    let r = &seen[0];
    assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
    let via = r.header("via").unwrap();
    assert!(!via.contains("elsewhere"), "{via}");
}

#[test]
fn an_answer_before_the_whole_request_body_says_close() {
    // An origin that answers as soon as it has the head, and never reads the body.
    let addr = scripted_origin(|_, mut s| {
        if read_head(&mut s).is_none() {
            return;
        }
        // Then a staged close of its own, as RFC 9112 §9.6 has it: half-closed, the
        // rest read and dropped.
        let _ = s.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope",
        );
        let _ = s.shutdown(Shutdown::Write);
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        while matches!(s.read(&mut [0u8; 4096]), Ok(n) if n > 0) {}
    });
    let d = proxy_to(addr, "");
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 35\r\n\r\n")
        .unwrap();
    let r = c.read_response("POST").unwrap();
    assert_eq!((r.status, r.text().as_str()), (401, "nope"));
    // The proxy stops reading the body once the answer is out, so it closes: the head
    // says so (RFC 9112 §9.6).
    assert_eq!(r.header("connection"), Some("close"));
    // A client still sending a large body, which reads the answer only later, gets it:
    // the close drains what it sent instead of resetting the connection under the
    // unread answer (§9.6's staged close).
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 52428800\r\n\r\n")
        .unwrap();
    let mut w = c.stream().try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&vec![b'x'; 256 * 1024]);
    });
    // Not synchronisation: the client reads late, as one busy sending does.
    std::thread::sleep(Duration::from_millis(300));
    let r = c.read_response("POST").unwrap();
    assert_eq!((r.status, r.text().as_str()), (401, "nope"));
    writer.join().unwrap();
}

#[test]
fn bad_hosts_fragments_unknown_codings_and_long_targets_get_their_4xx_or_501() {
    let (addr, seen) = raw_origin();
    let d = proxy_to(addr, "[proxy.config.http]\nrequest_header_max_size = 4096");
    for (host, want) in [("a:xx", 400), ("a:1:2", 400), ("]]a[[", 400), ("a:81", 200)] {
        let raw = format!("GET /h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(send_raw(&d, raw.as_bytes()), want, "Host: {host}");
    }
    let fragment = b"GET /f#frag HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_eq!(send_raw(&d, fragment), 400);
    // RFC 9112 §6.1: chunked last, but a coding before it this proxy does not decode.
    let gzip = b"POST /g HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(send_raw(&d, gzip), 501);
    // RFC 9112 §3: a request line past the limit is a target too long, not a header
    // section too large.
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(5000));
    assert_eq!(send_raw(&d, long.as_bytes()), 414);
    let many = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(5000)
    );
    assert_eq!(send_raw(&d, many.as_bytes()), 431);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "only the good Host reached the origin"
    );
}

#[test]
fn an_error_answering_a_head_sends_no_body_and_the_next_answer_parses() {
    let origin = Origin::start(|_| Some(ok(b"ok", &[])));
    let d = Daemon::builder()
        .config(&format!(
            "[[remap]]\nfrom = \"/known\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start();
    let mut c = Conn::open(d.addr()).unwrap();
    c.send(b"HEAD /unknown HTTP/1.1\r\nHost: t\r\n\r\nGET /unknown HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = c.read_response("HEAD").unwrap();
    assert_eq!(head.status, 404);
    // The length a GET's answer has, and no body: the next answer follows at once.
    let get = c.read_response("GET").unwrap();
    assert_eq!(get.status, 404, "{get:?}");
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
}

/// Reads one request head from `s` (GETs and CONNECTs: no bodies); None at EOF, an
/// error or a read timeout.
fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut raw = Vec::new();
    let mut b = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => raw.push(b[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&raw).into_owned())
}

#[test]
fn bytes_an_idle_origin_connection_sends_unasked_answer_no_later_request() {
    // RFC 9112 §9.3: after its answer to /a the origin sends a second response nobody
    // asked for. It must never answer the client's next request (nor be cached as it).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = l.local_addr().unwrap();
    let (answered_tx, answered) = std::sync::mpsc::channel::<()>();
    let (closed_tx, closed) = std::sync::mpsc::channel::<bool>();
    let answered = Arc::new(Mutex::new(answered));
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let (answered, closed_tx) = (answered.clone(), closed_tx.clone());
            std::thread::spawn(move || {
                while let Some(head) = read_head(&mut s) {
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let body = format!("path={path}");
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if path != "/a" {
                        continue;
                    }
                    // Once the client has its answer, the unasked-for one; then the
                    // proxy should close this connection.
                    let _ = answered
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(10));
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nCache-Control: max-age=600\r\n\r\nEVIL!!",
                    );
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut b = [0u8; 1];
                    // Closed with its bytes unread: a reset, or a FIN.
                    let closed = match s.peek(&mut b) {
                        Ok(n) => n == 0,
                        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                    };
                    let _ = closed_tx.send(closed);
                    s.set_read_timeout(None).unwrap();
                }
            });
        }
    });
    let span = TempDir::new("unasked");
    let d = caching_proxy_to(origin, &span);
    let mut c = Conn::open(d.addr()).unwrap();
    let get = |c: &mut Conn, path: &str| {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        c.read_response("GET").unwrap().text()
    };
    assert_eq!(get(&mut c, "/warm"), "path=/warm");
    // A connection just opened goes to the pool, not attached to its client, while the
    // pool counts as short (1 s): wait that out, so /a's connection stays attached.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(get(&mut c, "/a"), "path=/a");
    answered_tx.send(()).unwrap();
    let eof = closed.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(get(&mut c, "/b"), "path=/b");
    assert_eq!(get(&mut c, "/c"), "path=/c");
    // Nor was it stored as /b.
    assert_eq!(get(&mut Conn::open(d.addr()).unwrap(), "/b"), "path=/b");
    assert!(eof, "the connection that spoke unasked was closed at once");
}

#[test]
fn a_connect_after_a_request_on_one_connection_is_released_when_the_client_leaves() {
    // The GET's origin connection stays attached to the client for a moment; the
    // CONNECT opens another. Both must go when the client does.
    let origin = Origin::start(|_| Some(ok(b"ok", &[])));
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in echo.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nconnect_ports = \"{echo_port}\"\n\
             [proxy.config.url_remap]\nremap_required = false\n"
        ))
        .start();
    // A connection opened now goes to the pool, not attached, while the pool counts as
    // short (1 s): wait that out, so the GETs below keep theirs attached.
    let warm = format!("http://{}/warm", origin.addr);
    assert_eq!(http::get(d.addr(), "x", &warm).unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(1200));
    for _ in 0..5 {
        let mut c = Conn::open(d.addr()).unwrap();
        c.send(
            format!(
                "GET http://{}/a HTTP/1.1\r\nHost: x\r\n\r\nCONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\nHost: x\r\n\r\n",
                origin.addr
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.read_response("GET").unwrap().status, 200);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            assert!(c.reader.read_line(&mut head).unwrap() > 0, "{head}");
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        c.send(b"ping").unwrap();
        let mut got = [0u8; 4];
        c.reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
    }
    let open = || d.metric("proxy.process.net.connections_currently_open");
    assert!(
        wait_until(Duration::from_secs(10), || open() == 0),
        "{} client connections still open",
        open()
    );
}

#[test]
fn a_transfer_coding_besides_chunked_is_relayed_never_stored_and_a_502_for_http_1_0() {
    // Stands for gzip bytes: the proxy decodes no coding but chunked.
    const CODED: &str = "\x1f\u{8b}coded";
    let origin = Origin::start(|r| {
        let head = "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n";
        Some(
            match r.path.as_str() {
                "/gzchunked" => format!(
                    "{head}Transfer-Encoding: gzip, chunked\r\n\r\n{:x}\r\n{CODED}\r\n0\r\n\r\n",
                    CODED.len()
                ),
                "/gzclose" => {
                    format!("{head}Transfer-Encoding: gzip\r\nConnection: close\r\n\r\n{CODED}")
                }
                _ => format!("{head}Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
            }
            .into_bytes(),
        )
    });
    let dir = TempDir::new("te-coding");
    let d = caching_proxy_to(origin.addr, &dir);
    let get = |path: &str, version: &str| {
        let raw = format!("GET {path} HTTP/{version}\r\nHost: t\r\nConnection: close\r\n\r\n");
        exchange_raw(&d, raw.as_bytes())
    };
    // An HTTP/1.1 client gets the codings named, from the origin each time: the cache
    // holds no payload it cannot decode (RFC 9112 §6.1, §7).
    for (path, te) in [
        ("/gzchunked", "Transfer-Encoding: gzip, chunked"),
        ("/gzclose", "Transfer-Encoding: gzip"),
    ] {
        for turn in 0..2 {
            let r = get(path, "1.1");
            assert!(r.starts_with("HTTP/1.1 200 "), "{path} #{turn}: {r}");
            assert_eq!(
                fields_named(&r, "transfer-encoding"),
                [te],
                "{path} #{turn}: {r}"
            );
            assert_eq!(
                fields_named(&r, "content-length"),
                Vec::<&str>::new(),
                "{r}"
            );
            assert!(r.contains(CODED), "{path} #{turn}: {r}");
        }
    }
    assert_eq!(
        origin.request_count(),
        4,
        "a coded response was served from the cache"
    );
    // An HTTP/1.0 client knows no Transfer-Encoding: the coded payload cannot reach it
    // faithfully, so it gets a 502 (plain chunked is decoded for it, as before).
    for path in ["/gzchunked", "/gzclose"] {
        let r = get(path, "1.0");
        assert!(r.starts_with("HTTP/1.1 502 "), "{path}: {r}");
        assert!(!r.contains(CODED), "{path}: {r}");
    }
    let r = get("/plain", "1.0");
    assert!(
        r.starts_with("HTTP/1.1 200 ") && r.ends_with("\r\n\r\nok"),
        "{r}"
    );
    assert_eq!(
        fields_named(&r, "transfer-encoding"),
        Vec::<&str>::new(),
        "{r}"
    );
}

#[test]
fn relayed_1xx_responses_are_counted_and_a_status_past_599_is_a_502() {
    let origin = Origin::start(|r| match r.path.as_str() {
        "/999" => Some(b"HTTP/1.1 999 Library\r\nContent-Length: 2\r\n\r\nno".to_vec()),
        _ => Some(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        ),
    });
    let d = proxy_to(origin.addr, "");
    let get = |path: &str, version: &str| {
        let raw = format!("GET {path} HTTP/{version}\r\nHost: t\r\nConnection: close\r\n\r\n");
        exchange_raw(&d, raw.as_bytes())
    };
    let r = get("/hints", "1.1");
    let statuses: Vec<&str> = r
        .split("\r\n\r\n")
        .filter_map(|part| part.strip_prefix("HTTP/1.1 "))
        .map(|s| &s[..3])
        .collect();
    assert_eq!(statuses, ["100", "103", "200"], "{r}");
    // An HTTP/1.0 client gets no 1xx (RFC 9110 §15.2): nothing more to count.
    let r = get("/hints", "1.0");
    assert!(
        r.starts_with("HTTP/1.1 200 ") && r.matches("HTTP/1.1 ").count() == 1,
        "{r}"
    );
    assert!(wait_until(Duration::from_secs(10), || {
        d.metric("proxy.process.http.2xx_responses") == 2
    }));
    assert_eq!(d.metric("proxy.process.http.1xx_responses"), 2);
    // RFC 9110 §15: 100-599 are the valid codes; a client treats another as a server
    // error, so it is an invalid response, a 502 counted in 5xx.
    let r = get("/999", "1.1");
    assert!(
        r.starts_with("HTTP/1.1 502 ") && !r.ends_with("\r\n\r\nno"),
        "{r}"
    );
    assert!(wait_until(Duration::from_secs(10), || {
        d.metric("proxy.process.http.5xx_responses") == 1
    }));
}

#[test]
fn a_refused_origin_response_logs_its_origin_and_reason_and_too_many_fields_say_so() {
    let origin = Origin::start(|r| {
        Some(match r.path.as_str() {
            "/conflict" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec()
            }
            "/fields" => {
                let cookies: String = (0..200)
                    .map(|i| format!("Set-Cookie: c{i}=v\r\n"))
                    .collect();
                format!("HTTP/1.1 200 OK\r\n{cookies}Content-Length: 2\r\n\r\nok").into_bytes()
            }
            _ => format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
                "b".repeat(5000)
            )
            .into_bytes(),
        })
    });
    let d = Daemon::builder()
        .env("TURNSTILE_LOG", "debug")
        .config(&format!(
            "[proxy.config.http]\nrequest_header_max_size = 4096\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start();
    let reasons = [
        (
            "/conflict",
            "bad message: conflicting Content-Length values",
        ),
        ("/fields", "more than 128 header fields"),
        (
            "/big",
            "head larger than request_header_max_size (4096 bytes)",
        ),
    ];
    for (path, why) in reasons {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = exchange_raw(&d, raw.as_bytes());
        assert!(r.starts_with("HTTP/1.1 502 "), "{path}: {r}");
        // The operator learns which origin sent what, at the level connect failures
        // are logged at; the client only that the response was invalid.
        let line = format!("response from {}: {why}", origin.addr);
        assert!(!r.contains(why), "{path}: {r}");
        assert!(
            wait_until(Duration::from_secs(10), || d.log_text().contains(&line)),
            "{path}: no {line:?} in\n{}",
            d.log_text()
        );
    }
    // A small request head with more fields than the proxy parses: its 431 says so.
    let fields: String = (0..130).map(|i| format!("X-{i}: v\r\n")).collect();
    let raw = format!("GET /ok HTTP/1.1\r\nHost: t\r\n{fields}Connection: close\r\n\r\n");
    assert!(raw.len() < 4096);
    let r = exchange_raw(&d, raw.as_bytes());
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    assert!(r.contains("more than 128 header fields"), "{r}");
    assert_eq!(origin.request_count(), 3);
}

/// An origin that runs `serve` on each connection it accepts, with the connection's
/// number (from 0).
fn scripted_origin(serve: impl Fn(usize, TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for (n, s) in l.incoming().enumerate() {
            let Ok(s) = s else { continue };
            let serve = serve.clone();
            std::thread::spawn(move || serve(n, s));
        }
    });
    addr
}

#[test]
fn a_post_on_a_connection_the_origin_closes_unanswered_is_not_sent_again() {
    // RFC 9112 §9.3.1: the origin may have acted on it; a proxy must not retry a
    // non-idempotent request by itself. (A GET is retried: see the parents tests.)
    let posts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = posts.clone();
    let origin = scripted_origin(move |_, mut s| {
        while let Some(head) = read_head(&mut s) {
            if head.starts_with("POST")
                && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
            {
                return; // read, acted on, closed without a word
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let d = proxy_to(origin, "");
    let mut c = Conn::open(d.addr()).unwrap();
    assert_eq!(c.get("t", "/warm").unwrap().status, 200);
    c.send(b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn an_origin_reset_mid_body_is_no_end_and_the_cut_body_is_neither_whole_nor_stored() {
    // A body read to the close, cut by a reset: RFC 9112 §8 says the client must be
    // able to tell (so it gets a reset too), and RFC 9111 §3 that it is not stored.
    let fetched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = fetched.clone();
    let origin = scripted_origin(move |_, mut s| {
        let Some(head) = read_head(&mut s) else {
            return;
        };
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if head.contains("/chunked") {
            // An HTTP/1.0 client reads the payload to the close: the FIN after a cut
            // chunked body must not look like its end.
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
            return;
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n\r\npartial-");
        let _ = s.flush();
        assert!(util::set_linger0(&s), "SO_LINGER");
        drop(s);
    });
    let span = TempDir::new("reset-mid-body");
    let d = caching_proxy_to(origin, &span);
    let cut = |request: &[u8]| {
        let mut s = TcpStream::connect(d.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(request).unwrap();
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got);
        (
            r.map_err(|e| e.kind()),
            String::from_utf8_lossy(&got).into_owned(),
        )
    };
    for _ in 0..2 {
        let (r, got) = cut(b"GET /r HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(
            r,
            Err(std::io::ErrorKind::ConnectionReset),
            "a cut body ended as a whole one: {got:?}"
        );
    }
    assert_eq!(
        fetched.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "stored cut"
    );
    let (r, got) = cut(b"GET /chunked HTTP/1.0\r\nHost: t\r\n\r\n");
    assert_eq!(
        r,
        Err(std::io::ErrorKind::ConnectionReset),
        "a cut body ended as a whole one: {got:?}"
    );
}

#[test]
fn an_origin_silent_mid_body_past_its_timeout_is_no_end_either() {
    // As a reset: a body read to the close, cut by the origin falling silent past
    // `transaction_no_activity_timeout_out`, must not end with a FIN (RFC 9112 §8).
    let origin = scripted_origin(move |_, mut s| {
        let Some(head) = read_head(&mut s) else {
            return;
        };
        let part: &[u8] = if head.contains("/chunked") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n\r\npartial-"
        };
        let _ = s.write_all(part);
        // Silent, the connection open, until the proxy gives up on it.
        let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = s.read(&mut [0u8; 1]);
    });
    let span = TempDir::new("silent-mid-body");
    let d = proxy_to(
        origin,
        &format!(
            "[proxy.config.http]\nwait_for_cache = 1\ntransaction_no_activity_timeout_out = 1\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"8M\" }}]",
            span.0.join("span").display()
        ),
    );
    for request in [
        &b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET /chunked HTTP/1.0\r\nHost: t\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(d.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(request).unwrap();
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got).map_err(|e| e.kind());
        assert_eq!(
            r,
            Err(std::io::ErrorKind::ConnectionReset),
            "a cut body ended as a whole one: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(d.metric("proxy.process.cache.writes"), 0);
}

#[test]
fn a_head_cut_short_by_the_timeout_is_a_408_counted_as_a_request() {
    let origin = Origin::start(|_| Some(ok(b"ok", &[])));
    let d = proxy_to(
        origin.addr,
        "[proxy.config.http]\naccept_no_activity_timeout = 1",
    );
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.write_all(b"GET /half HTTP/1.1\r\nHost: t\r\n").unwrap();
    let got = String::from_utf8_lossy(&read_all(&mut s, Duration::from_secs(20))).into_owned();
    assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
    // Incoming and completed agree, as for a head that fails to parse.
    let incoming = d.metric("proxy.process.http.incoming_requests");
    assert_eq!(incoming, 1);
    assert_eq!(d.metric("proxy.process.http.completed_requests"), incoming);
}

#[test]
fn a_client_that_resets_while_its_origin_is_silent_is_let_go_without_waiting_for_it() {
    // The origin reads the request and says nothing for 30 s; the client resets after a
    // moment. Its session and the origin connection go within seconds, not at the
    // origin's timeout, and the line says aborted with no status sent.
    let (got_tx, got) = std::sync::mpsc::channel::<()>();
    let (closed_tx, closed) = std::sync::mpsc::channel::<()>();
    let got_tx = Mutex::new(got_tx);
    let closed_tx = Mutex::new(closed_tx);
    let origin = scripted_origin(move |_, mut s| {
        if read_head(&mut s).is_none() {
            return;
        }
        let _ = got_tx.lock().unwrap().send(());
        tell_when_closed(&mut s, &closed_tx);
    });
    let dir = TempDir::new("reset-waiting");
    let (d, log) = patient_logging_proxy_to(origin, &dir);
    reset_once_the_origin_has(&d, "/silent", &got);
    closed
        .recv_timeout(Duration::from_secs(10))
        .expect("the origin connection closed long before the origin's timeout");
    let_go_and_logged_aborted_with_no_status(&d, &log);
    assert_eq!(d.metric("proxy.process.http.5xx_responses"), 0);
}

#[test]
fn a_final_answer_whose_client_reset_after_an_interim_one_is_logged_with_no_status() {
    // The origin sends a 103, then (once told) its 200; the client reads the 103 and
    // resets. The 200's first write meets the reset: no byte of it went, so its line
    // says 000 (the 103's bytes went, and count), and 2xx_responses does not count it.
    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let go = Mutex::new(go);
    let origin = scripted_origin(move |_, mut s| {
        if read_head(&mut s).is_none() {
            return;
        }
        let _ = s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
        let _ = go.lock().unwrap().recv_timeout(Duration::from_secs(10));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal");
    });
    let dir = TempDir::new("reset-after-103");
    let (d, log) = patient_logging_proxy_to(origin, &dir);
    let mut c = TcpStream::connect(d.addr()).unwrap();
    c.write_all(b"GET /hints HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let got = read_through(&mut c, b"\r\n\r\n");
    assert!(got.starts_with(b"HTTP/1.1 103 "), "{got:?}");
    assert!(util::set_linger0(&c), "SO_LINGER");
    drop(c);
    go_tx.send(()).unwrap();
    let lines = log_lines(&log, 1);
    let f: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        (f[3], f[4]),
        ("TCP_MISS_ABORTED/000", got.len().to_string().as_str())
    );
    assert_eq!(d.metric("proxy.process.http.2xx_responses"), 0);
}

/// Reads from `c` until what came ends with `end` (panics if it closes first).
fn read_through(c: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(end) {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A daemon in front of `origin` that waits 30 s for a silent origin and logs each
/// request to `access.log` under `dir`, and the log's path.
fn patient_logging_proxy_to(origin: SocketAddr, dir: &TempDir) -> (Daemon, std::path::PathBuf) {
    let log = dir.0.join("access.log");
    let d = proxy_to(
        origin,
        &format!(
            "[proxy.config.http]\ntransaction_no_activity_timeout_out = 30\n\
             [proxy.config.log]\naccess_log = \"{}\"",
            log.display()
        ),
    );
    (d, log)
}

/// Origin side: says on `closed` when the proxy closes `s` (within 40 s).
fn tell_when_closed(s: &mut TcpStream, closed: &Mutex<std::sync::mpsc::Sender<()>>) {
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    if matches!(s.read(&mut [0u8; 1]), Ok(0) | Err(_)) {
        let _ = closed.lock().unwrap().send(());
    }
}

/// Sends `GET path` through `d`, waits until the origin says on `got` that it has it,
/// then resets the connection.
fn reset_once_the_origin_has(d: &Daemon, path: &str, got: &std::sync::mpsc::Receiver<()>) {
    let mut c = TcpStream::connect(d.addr()).unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    got.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(util::set_linger0(&c), "SO_LINGER");
    drop(c);
}

/// Waits until `d` holds no client connection, then checks that the one line in `log`
/// says the request was aborted with no status sent.
fn let_go_and_logged_aborted_with_no_status(d: &Daemon, log: &std::path::Path) {
    let open = || d.metric("proxy.process.http.current_client_connections");
    assert!(wait_until(Duration::from_secs(10), || open() == 0));
    let lines = log_lines(log, 1);
    assert!(
        lines.len() == 1 && lines[0].contains(" TCP_MISS_ABORTED/000 0 GET "),
        "{lines:?}"
    );
}

#[test]
fn an_answer_whose_client_reset_before_its_first_byte_is_logged_000_and_not_counted() {
    // The client resets while its origin thinks; the origin answers at once after, so
    // the reset is noticed only when the answer is written. Not one byte of it went:
    // the line says 000, and 2xx_responses does not count it.
    let (got_tx, got) = std::sync::mpsc::channel::<()>();
    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let got_tx = Mutex::new(got_tx);
    let go = Mutex::new(go);
    let origin = scripted_origin(move |_, mut s| {
        if read_head(&mut s).is_none() {
            return;
        }
        let _ = got_tx.lock().unwrap().send(());
        let _ = go.lock().unwrap().recv_timeout(Duration::from_secs(10));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let _ = s.read(&mut [0u8; 1]);
    });
    let dir = TempDir::new("reset-before-answer");
    let log = dir.0.join("access.log");
    let d = proxy_to(
        origin,
        &format!("[proxy.config.log]\naccess_log = \"{}\"", log.display()),
    );
    reset_once_the_origin_has(&d, "/late", &got);
    go_tx.send(()).unwrap();
    let_go_and_logged_aborted_with_no_status(&d, &log);
    assert_eq!(d.metric("proxy.process.http.2xx_responses"), 0);
}

/// Whether every thread of `d` is stopped (state `T` in `/proc/PID/task/*/stat`).
fn all_threads_stopped(d: &Daemon) -> bool {
    let pid = d.child.as_ref().unwrap().id();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name's closing parenthesis.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
        })
    })
}

#[test]
fn hits_and_local_answers_whose_client_reset_before_their_first_byte_are_not_counted() {
    // The daemon is stopped while a client connects, sends its request and resets; run
    // again, it reads the request and the reset together, queues its answer (a hit, then
    // a 400) and finds the connection gone at the first write. Not one byte went: the
    // answer is not counted in 2xx_responses or 4xx_responses.
    let origin = Origin::start(|_| Some(ok(b"stored", &[("Cache-Control", "max-age=600")])));
    let dir = TempDir::new("reset-before-hit");
    let d = caching_proxy_to(origin.addr, &dir);
    assert_eq!(http::get(d.addr(), "t", "/obj").unwrap().text(), "stored");
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.cache.writes")
        == 1));
    let requests: [(&[u8], &str); 2] = [
        (b"GET /obj HTTP/1.1\r\nHost: t\r\n\r\n", "2xx"),
        (b"NOT A REQUEST\r\n\r\n", "4xx"),
    ];
    for (request, class) in requests {
        let counted = format!("proxy.process.http.{class}_responses");
        let before = d.metric(&counted);
        let incoming = d.metric("proxy.process.http.incoming_requests");
        d.signal(libc::SIGSTOP);
        // kill(2) returns before every thread has stopped: one still running could take
        // the request before the reset comes.
        assert!(
            wait_until(Duration::from_secs(10), || all_threads_stopped(&d)),
            "SIGSTOP"
        );
        let mut c = TcpStream::connect(d.addr()).unwrap(); // the kernel completes it
        c.write_all(request).unwrap();
        assert!(util::set_linger0(&c), "SO_LINGER");
        drop(c);
        d.signal(libc::SIGCONT);
        assert!(
            wait_until(Duration::from_secs(10), || d
                .metric("proxy.process.http.incoming_requests")
                == incoming + 1),
            "the request is read ({class})"
        );
        assert!(wait_until(Duration::from_secs(10), || d
            .metric("proxy.process.http.current_client_connections")
            == 0));
        assert_eq!(d.metric(&counted), before, "{class} counted");
    }
    assert_eq!(origin.request_count(), 1, "the GET was a hit");
}

#[test]
fn a_client_that_resets_while_its_origin_stalls_mid_body_is_let_go_without_waiting_for_it() {
    // The origin sends the head and the start of a body, then falls silent; the client
    // reads what came and resets. The client took all that was queued, so no write of
    // the proxy's would find the reset: its socket is watched after about a second
    // without news from the origin, and the session and the origin connection go then,
    // not at the origin's timeout (30 s).
    let (closed_tx, closed) = std::sync::mpsc::channel::<()>();
    let closed_tx = Mutex::new(closed_tx);
    let origin = scripted_origin(move |_, mut s| {
        if read_head(&mut s).is_none() {
            return;
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part");
        tell_when_closed(&mut s, &closed_tx);
    });
    let dir = TempDir::new("reset-mid-body");
    let (d, log) = patient_logging_proxy_to(origin, &dir);
    let mut c = TcpStream::connect(d.addr()).unwrap();
    c.write_all(b"GET /stalls HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_through(&mut c, b"first part");
    assert!(util::set_linger0(&c), "SO_LINGER");
    drop(c);
    closed
        .recv_timeout(Duration::from_secs(10))
        .expect("the origin connection closed long before the origin's timeout");
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.current_client_connections")
        == 0));
    let lines = log_lines(&log, 1);
    assert!(
        lines.len() == 1 && lines[0].contains(" TCP_MISS_ABORTED/200 "),
        "{lines:?}"
    );
}
