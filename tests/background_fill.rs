//! Background fills through the real binary: a response being stored whose client
//! leaves midway is read on from its origin and stored, answering the requests that
//! waited for it, unless less than `http.background_fill_completed_threshold` of it had
//! come (a reloadable record).

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::http::{self, Conn};
use util::origin::Gate;
use util::{log_lines, wait_until, Daemon, TempDir};

/// The body every path is answered with: 1 MiB, fresh for a minute.
const BODY_LEN: usize = 1 << 20;

fn body() -> Vec<u8> {
    (0..BODY_LEN).map(|i| (i % 251) as u8).collect()
}

/// An origin answering every request with [`body`]: its head and first half at once,
/// the second half once the request's gate opens (the first request's is `gates[0]`,
/// and so on; none past the last). Returns its address and a count of its requests.
fn half_held_origin(gates: Vec<Gate>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let (gates, counted) = (gates.clone(), counted.clone());
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                // Keep-alive: the proxy may send its next request on this connection.
                while read_head(&mut s) {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    let body = body();
                    let (first, second) = body.split_at(BODY_LEN / 2);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {BODY_LEN}\r\nCache-Control: max-age=60\r\n\r\n"
                    );
                    if s.write_all(head.as_bytes()).is_err() || s.write_all(first).is_err() {
                        return;
                    }
                    if let Some(gate) = gates.get(n) {
                        gate.wait();
                    }
                    if s.write_all(second).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, requests)
}

/// Reads a request head (these requests have no body): false at EOF or an error.
fn read_head(s: &mut std::net::TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if !matches!(s.read(&mut byte), Ok(1)) {
            return false;
        }
        head.push(byte[0]);
    }
    true
}

/// What a test's daemon is configured with: its origin, span and access log.
struct Setup {
    origin: SocketAddr,
    span: TempDir,
    logs: TempDir,
}

impl Setup {
    fn new(origin: SocketAddr) -> Setup {
        Setup {
            origin,
            span: TempDir::new("bg-fill"),
            logs: TempDir::new("bg-fill-log"),
        }
    }

    fn log(&self) -> PathBuf {
        self.logs.0.join("access.log")
    }

    /// The records, with `threshold`, and `cache` after the cache table's storage.
    fn config(&self, threshold: &str, cache: &str) -> String {
        format!(
            "[proxy.config.http]\nwait_for_cache = 1\nbackground_fill_completed_threshold = {threshold}\n\
             [proxy.config.log]\naccess_log = \"{}\"\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"8M\" }}]\n{cache}\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            self.log().display(),
            self.span.0.display(),
            self.origin,
        )
    }

    /// A daemon started with [`Setup::config`].
    fn start(&self, threshold: &str, cache: &str) -> Daemon {
        Daemon::builder()
            .config(&self.config(threshold, cache))
            .start()
    }
}

/// A client asks for `path` and a second waits for its fill; the first takes some of
/// the answer and resets its connection while the origin holds the second half.
/// Returns the waiter, its answer still to come.
fn first_client_leaves_midway(d: &Daemon, path: &str) -> Conn {
    let active = d.metric("proxy.process.http.current_active_transactions");
    let first = taking_some(d, path);
    let waiter = http::send_get(d.addr(), path);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .metric("proxy.process.http.current_active_transactions")
            == active + 2),
        "the second request is not parked on the first's fill"
    );
    reset(first);
    waiter
}

/// Whether the origin got a second request (the waiter's own fetch) within 10 s.
fn origin_asked_twice(requests: &AtomicUsize) -> bool {
    wait_until(Duration::from_secs(10), || {
        requests.load(Ordering::SeqCst) == 2
    })
}

/// A client that asked for `path` and has read 100 kB of the answer.
fn taking_some(d: &Daemon, path: &str) -> Conn {
    let mut c = http::send_get(d.addr(), path);
    let mut some = vec![0; 100_000];
    c.reader.read_exact(&mut some).unwrap();
    c
}

/// Resets `c`'s connection.
fn reset(mut c: Conn) {
    assert!(util::set_linger0(c.stream()), "SO_LINGER");
    drop(c);
}

#[test]
fn a_fill_whose_client_leaves_midway_is_stored_and_answers_its_waiters() {
    let gate = Gate::default();
    let (origin, requests) = half_held_origin(vec![gate.clone()]);
    let setup = Setup::new(origin);
    let d = setup.start("0.0", "");
    let mut waiter = first_client_leaves_midway(&d, "/big");
    assert!(
        wait_until(Duration::from_secs(10), || d
            .metric("proxy.process.http.current_background_fills")
            == 1),
        "the fill does not go on without its client"
    );
    // The client that left no longer counts; the waiter does.
    assert_eq!(d.metric("proxy.process.http.current_client_connections"), 1);
    gate.open();
    let r = waiter.read_response("GET").unwrap();
    assert!(
        r.status == 200 && r.body == body(),
        "the waiter gets it whole"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1, "fetched once");
    assert_eq!(d.metric("proxy.process.cache.writes"), 1);
    assert_eq!(d.metric("proxy.process.http.background_fills"), 1);
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.current_background_fills")
        == 0
        && d.metric("proxy.process.http.current_client_connections")
            == 1));
    // The client that left is logged once, aborted, with what it took.
    let lines = log_lines(&setup.log(), 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let left = lines.iter().find(|l| l.contains("ABORTED")).unwrap();
    assert!(left.contains("TCP_MISS_ABORTED/200"), "{lines:?}");
    // Stored: the next request is a hit.
    let r = http::get(d.addr(), "t", "/big").unwrap();
    assert!(r.status == 200 && r.body == body());
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[test]
fn below_the_threshold_a_fill_ends_with_its_client_until_a_reload_lowers_it() {
    let gates = vec![Gate::default(), Gate::default(), Gate::default()];
    let (origin, requests) = half_held_origin(gates.clone());
    let setup = Setup::new(origin);
    let d = setup.start("0.9", "");
    // About half had come when the client left: the fill ends, and the waiter fetches.
    let mut waiter = first_client_leaves_midway(&d, "/a");
    assert!(
        origin_asked_twice(&requests),
        "the waiter does not fetch the object itself"
    );
    gates[0].open();
    gates[1].open();
    let r = waiter.read_response("GET").unwrap();
    assert!(r.status == 200 && r.body == body());
    assert_eq!(d.metric("proxy.process.http.background_fills"), 0);
    // With the threshold at 0 the next such fill goes on without its client.
    let (code, out, err) = d.reload(&setup.config("0", ""));
    assert_eq!(code, 0, "{out}{err}");
    let mut waiter = first_client_leaves_midway(&d, "/b");
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.current_background_fills")
        == 1));
    gates[2].open();
    let r = waiter.read_response("GET").unwrap();
    assert!(r.status == 200 && r.body == body());
    assert_eq!(requests.load(Ordering::SeqCst), 3, "/b fetched once");
    assert_eq!(d.metric("proxy.process.http.background_fills"), 1);
}

#[test]
fn background_fills_hold_no_more_than_fill_read_ahead() {
    // A background fill keeps all it reads until it is stored, so what background fills
    // read is leased from the fills' read-ahead budget: with none, a fill whose client
    // leaves ends with it (as before background fills), and the waiter fetches.
    let gates = vec![Gate::default(), Gate::default()];
    let (origin, requests) = half_held_origin(gates.clone());
    let setup = Setup::new(origin);
    let d = setup.start("0", "fill_read_ahead = \"0\"");
    let mut waiter = first_client_leaves_midway(&d, "/big");
    assert!(
        origin_asked_twice(&requests),
        "the waiter does not fetch the object itself"
    );
    for g in &gates {
        g.open();
    }
    let r = waiter.read_response("GET").unwrap();
    assert!(r.status == 200 && r.body == body());
    assert_eq!(d.metric("proxy.process.http.background_fills"), 0);
    assert!(d.metric("proxy.process.cache.fill_read_ahead_refused") > 0);
    assert_eq!(d.metric("proxy.process.cache.fill_read_ahead_bytes"), 0);
}

#[test]
fn a_stop_lets_a_background_fill_finish_and_counts_it_drained() {
    let gate = Gate::default();
    let (origin, requests) = half_held_origin(vec![gate.clone()]);
    let setup = Setup::new(origin);
    let mut d = setup.start("0.0", "");
    reset(taking_some(&d, "/big"));
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.current_background_fills")
        == 1));
    d.signal(libc::SIGTERM);
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("stopping")));
    gate.open();
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    // The one transaction in flight at the stop (the fill whose client left) finished
    // within the drain, and is counted so.
    let text = d.log_text();
    assert!(
        text.contains("stop: 1 transactions drained, 0 cut"),
        "{text}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}
