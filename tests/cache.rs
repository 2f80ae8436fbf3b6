//! The cache through the real binary: hits, persistence across restarts, revalidation,
//! what is not stored, collapsed misses, and ports gated by wait_for_cache (SPEC §5).

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::http::{self, Conn};
use util::origin::{ok, Gate, Origin};
use util::{log_lines, wait_until, Daemon, TempDir};

fn config(origin: &Origin, span: &std::path::Path, extra: &str) -> String {
    // wait_for_cache = 1: the ports open once the span is initialised, so requests do
    // not race it.
    format!(
        "[proxy.config.http]\nwait_for_cache = 1\n{extra}\n[proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"8M\" }}]\n\
         [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
        span.display(),
        origin.addr
    )
}

/// Whether `n` transactions are in flight in `d` (requests parked on a fill count)
/// within 10 s.
fn in_flight(d: &Daemon, n: i64) -> bool {
    wait_until(Duration::from_secs(10), || {
        d.metric("proxy.process.http.current_active_transactions") == n
    })
}

fn cached_origin() -> Origin {
    Origin::start(|r| {
        match r.path.as_str() {
        "/no-store" => Some(ok(b"secret", &[("Cache-Control", "no-store, max-age=60")])),
        "/vary" => {
            let lang = r.header("accept-language").unwrap_or("none");
            Some(ok(format!("in {lang}").as_bytes(), &[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")]))
        }
        "/vary-star" => Some(ok(b"varies", &[("Cache-Control", "max-age=60"), ("Vary", "*")])),
        "/plain" => Some(ok(b"no freshness", &[])),
        "/revalidate" => {
            if r.header("if-none-match") == Some("\"v1\"") {
                Some(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: no-cache\r\n\r\n".to_vec())
            } else {
                Some(ok(b"validated body", &[("ETag", "\"v1\""), ("Cache-Control", "no-cache")]))
            }
        }
        "/chunked" => Some(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".to_vec()),
        "/slow" => {
            std::thread::sleep(Duration::from_millis(300));
            Some(ok(b"slow and shared", &[("Cache-Control", "max-age=60")]))
        }
        p => Some(ok(format!("fresh {p}").as_bytes(), &[("Cache-Control", "max-age=60")])),
    }
    })
}

/// The scripted origin, a span directory, and a daemon caching in front of it.
fn cached_daemon() -> (Origin, TempDir, Daemon) {
    let origin = cached_origin();
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    (origin, dir, d)
}

#[test]
fn a_fresh_object_is_served_without_the_origin() {
    let (origin, _dir, d) = cached_daemon();
    let mut c = Conn::open(d.addr()).unwrap();
    for _ in 0..5 {
        let r = c.get("t", "/a").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "fresh /a"));
    }
    assert_eq!(origin.request_count(), 1);
    assert_eq!(d.metric("proxy.process.cache.misses"), 1);
    assert_eq!(d.metric("proxy.process.cache.hits"), 4);
    // Written to the span by its I/O thread, after the answer.
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.cache.span.0.objects")
        == 1));
    assert!(d.metric("proxy.process.cache.span.0.bytes_used") > 0);
    assert_eq!(d.metric("proxy.process.cache.spans_online"), 1);
    // Chunked responses are stored de-chunked.
    assert_eq!(c.get("t", "/chunked").unwrap().text(), "abcde");
    let hit = c.get("t", "/chunked").unwrap();
    assert_eq!(
        (hit.text().as_str(), hit.header("content-length")),
        ("abcde", Some("5"))
    );
    assert!(hit.header("age").is_some());
}

#[test]
fn a_hit_for_a_get_with_a_body_closes_and_never_reads_the_body_as_a_request() {
    use std::io::Read;
    let (origin, _dir, d) = cached_daemon();
    assert_eq!(http::get(d.addr(), "t", "/b").unwrap().status, 200); // stored
    let mut c = Conn::open(d.addr()).unwrap();
    let inner = "GET /inner HTTP/1.1\r\nHost: t\r\n\r\n";
    c.send(
        format!(
            "GET /b HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let r = c.read_response("GET").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "fresh /b"));
    assert_eq!(d.metric("proxy.process.cache.hits"), 1);
    assert_eq!(r.header("connection"), Some("close"));
    // The body was a body: no second response follows, and /inner went nowhere.
    let mut rest = Vec::new();
    c.reader.read_to_end(&mut rest).unwrap();
    assert_eq!(String::from_utf8_lossy(&rest), "");
    assert_eq!(origin.paths(), ["/b"]);
}

#[test]
fn a_restart_serves_a_cached_object_without_the_origin() {
    let dir = TempDir::new("cache");
    let addr_of_origin;
    {
        let origin = cached_origin();
        addr_of_origin = origin.addr;
        let mut d = Daemon::builder()
            .config(&config(&origin, &dir.0, ""))
            .start();
        assert_eq!(
            http::get(d.addr(), "t", "/keep").unwrap().text(),
            "fresh /keep"
        );
        d.signal(libc::SIGTERM);
        assert_eq!(
            d.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
            Some(0)
        );
    }
    // The origin is gone; the same remap points at a dead address.
    let text = format!(
        "[proxy.config.http]\nwait_for_cache = 1\n[proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"8M\" }}]\n[[remap]]\nfrom = \"/\"\nto = \"http://{addr_of_origin}/\"\n",
        dir.0.display()
    );
    let d = Daemon::builder().config(&text).start();
    let r = http::get(d.addr(), "t", "/keep").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "fresh /keep"));
    // Read from the span by its I/O thread, then kept in RAM.
    assert_eq!(d.metric("proxy.process.cache.disk_reads"), 1);
    let r = http::get(d.addr(), "t", "/keep").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "fresh /keep"));
    assert_eq!(d.metric("proxy.process.cache.disk_reads"), 1);
    assert_eq!(http::get(d.addr(), "t", "/other").unwrap().status, 502);
}

#[test]
fn a_stale_object_is_revalidated_and_served_from_the_cache_on_304() {
    let (origin, _dir, d) = cached_daemon();
    let mut c = Conn::open(d.addr()).unwrap();
    assert_eq!(c.get("t", "/revalidate").unwrap().text(), "validated body");
    let r = c.get("t", "/revalidate").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "validated body"));
    let reqs = origin.requests.lock().unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("if-none-match"), Some("\"v1\""));
    drop(reqs);
    assert_eq!(d.metric("proxy.process.cache.revalidated"), 1);
}

#[test]
fn the_access_log_tells_misses_hits_and_refreshes_apart() {
    let origin = cached_origin();
    let dir = TempDir::new("cache");
    let log = dir.0.join("access.log");
    let d = Daemon::builder()
        .env("PROXY_CONFIG_LOG_ACCESS_LOG", &log.display().to_string())
        .config(&config(&origin, &dir.0, ""))
        .start();
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/a", "/a", "/revalidate", "/revalidate"] {
        assert_eq!(c.get("t", path).unwrap().status, 200);
    }
    let lines = log_lines(&log, 4);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let results: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[3], f[8])
        })
        .collect();
    let direct = format!("DIRECT/{}", origin.addr);
    let expect = [
        ("TCP_MISS/200", direct.as_str()),
        ("TCP_HIT/200", "NONE/-"),
        ("TCP_MISS/200", direct.as_str()),
        ("TCP_REFRESH_HIT/200", direct.as_str()),
    ];
    for (got, want) in results.iter().zip(expect) {
        assert_eq!(*got, want, "{results:?}");
    }
}

#[test]
fn no_store_authorization_vary_star_and_unfresh_responses_are_not_cached() {
    let (origin, _dir, d) = cached_daemon();
    for path in ["/no-store", "/vary-star", "/plain"] {
        for _ in 0..2 {
            assert_eq!(http::get(d.addr(), "t", path).unwrap().status, 200);
        }
    }
    for _ in 0..2 {
        let r = http::request(
            d.addr(),
            "GET",
            "/auth",
            &[("Authorization", "Basic eDp5")],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(origin.request_count(), 8);
    assert_eq!(d.metric("proxy.process.cache.hits"), 0);
}

#[test]
fn a_varying_response_serves_only_requests_with_the_same_values_and_each_keeps_its_own() {
    // A request with other values of the `Vary` fields goes to the origin; its response
    // is kept beside the first, and each serves its own requests, after a restart too.
    let dir = TempDir::new("cache");
    let origin = cached_origin();
    let get = |d: &Daemon, lang: Option<&str>| {
        let headers: Vec<(&str, &str)> = lang.map(|l| ("Accept-Language", l)).into_iter().collect();
        let r = http::request(d.addr(), "GET", "/vary", &headers, b"").unwrap();
        assert_eq!(r.status, 200);
        r.text()
    };
    let mut d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    let steps = [
        (Some("en"), "in en", 1),
        (Some("en"), "in en", 1), // hit
        (Some("fr"), "in fr", 2), // other variant: fetched, kept beside en
        (Some("fr"), "in fr", 2), // hit
        (None, "in none", 3),     // no value is a value too
        (None, "in none", 3),     // hit
        (Some("en"), "in en", 3), // hit: en is still there
        (Some("fr"), "in fr", 3), // hit
    ];
    for (i, (lang, body, fetched)) in steps.into_iter().enumerate() {
        assert_eq!(get(&d, lang), body, "step {i}");
        assert_eq!(origin.request_count(), fetched, "step {i}");
    }
    assert_eq!(d.metric("proxy.process.cache.hits"), 5);
    d.signal(libc::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
    // From the span: the URL's object (the last variant fetched), then the right one.
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    for lang in [Some("fr"), None, Some("en")] {
        assert_eq!(get(&d, lang), format!("in {}", lang.unwrap_or("none")));
    }
    assert_eq!(origin.request_count(), 3);
    assert_eq!(d.metric("proxy.process.cache.hits"), 3);
    // fr: the URL's object (none), then fr's own; none: in RAM now; en: its own.
    assert_eq!(d.metric("proxy.process.cache.disk_reads"), 3);
}

#[test]
fn misses_for_different_variants_of_one_url_go_to_the_origin_side_by_side() {
    // Once the URL's variants are known, a miss waits only for a fill of its own
    // variant: two other variants are fetched at once (the origin holds both answers
    // until both requests have come), and a third request for one of them waits for it.
    let gate = Gate::default();
    let held = gate.clone();
    let origin = Origin::start(move |r| {
        let lang = r.header("accept-language").unwrap_or("none").to_string();
        if lang != "en" {
            held.wait();
        }
        Some(ok(
            format!("in {lang}").as_bytes(),
            &[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")],
        ))
    });
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    let addr = d.addr();
    let get = move |lang: &'static str| {
        std::thread::spawn(move || {
            let r = http::request(addr, "GET", "/v", &[("Accept-Language", lang)], b"").unwrap();
            (r.status, r.text())
        })
    };
    assert_eq!(get("en").join().unwrap(), (200, "in en".to_string()));
    let (fr, de) = (get("fr"), get("de"));
    assert!(
        origin.wait_for_requests(3),
        "the second variant's miss waited for the first's fill"
    );
    let fr_again = get("fr");
    assert!(in_flight(&d, 3));
    gate.open();
    assert_eq!(fr.join().unwrap(), (200, "in fr".to_string()));
    assert_eq!(de.join().unwrap(), (200, "in de".to_string()));
    assert_eq!(fr_again.join().unwrap(), (200, "in fr".to_string()));
    assert_eq!(
        origin.request_count(),
        3,
        "the second fr waited for the first's fill"
    );
}

#[test]
fn variants_beyond_max_alts_drop_the_oldest() {
    let dir = TempDir::new("cache");
    let origin = cached_origin();
    let d = Daemon::builder()
        .env("PROXY_CONFIG_CACHE_LIMITS_HTTP_MAX_ALTS", "2")
        .config(&config(&origin, &dir.0, ""))
        .start();
    let steps = [
        ("en", 1),
        ("fr", 2),
        ("de", 3), // a third: en, the oldest, goes
        ("fr", 3), // hit
        ("de", 3), // hit
        ("en", 4), // fetched again; fr is now the oldest and goes
        ("de", 4), // hit
        ("en", 4), // hit
        ("fr", 5),
    ];
    for (i, (lang, fetched)) in steps.into_iter().enumerate() {
        let r = http::request(d.addr(), "GET", "/vary", &[("Accept-Language", lang)], b"").unwrap();
        assert_eq!(
            (r.status, r.text()),
            (200, format!("in {lang}")),
            "step {i}"
        );
        assert_eq!(origin.request_count(), fetched, "step {i}");
    }
    assert_eq!(d.metric("proxy.process.cache.hits"), 4);
}

#[test]
fn requests_for_a_url_that_is_never_stored_do_not_queue_behind_each_other() {
    // The origin answers without freshness (nothing is stored) after 300 ms, and counts
    // how many requests it holds at once.
    let held = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (h, m) = (held.clone(), most.clone());
    let origin = Origin::start(move |_| {
        let now = h.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        h.fetch_sub(1, Ordering::SeqCst);
        Some(ok(b"dynamic", &[]))
    });
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    let addr = d.addr();
    let wave = |n: usize| {
        let clients: Vec<_> = (0..n)
            .map(|_| std::thread::spawn(move || http::get(addr, "t", "/dynamic").unwrap()))
            .collect();
        for c in clients {
            let r = c.join().unwrap();
            assert_eq!((r.status, r.text().as_str()), (200, "dynamic"));
        }
    };
    // The first wave coalesces behind one fill until its response shows that nothing
    // will be stored; the waiting requests then go to the origin together, not one
    // fill after another.
    wave(6);
    assert_eq!(origin.request_count(), 6);
    assert!(
        most.load(Ordering::SeqCst) >= 2,
        "the waiters were served one by one"
    );
    // The next wave knows the URL is not stored and does not coalesce at all.
    most.store(0, Ordering::SeqCst);
    wave(5);
    assert_eq!(origin.request_count(), 11);
    assert!(most.load(Ordering::SeqCst) >= 4, "{:?}", most);
    assert_eq!(d.metric("proxy.process.cache.hits"), 0);
}

#[test]
fn concurrent_misses_for_one_url_fetch_it_once() {
    let (origin, _dir, d) = cached_daemon();
    let addr = d.addr();
    let clients: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || http::get(addr, "t", "/slow").map(|r| (r.status, r.text())))
        })
        .collect();
    for c in clients {
        assert_eq!(
            c.join().unwrap().unwrap(),
            (200, "slow and shared".to_string())
        );
    }
    assert_eq!(origin.request_count(), 1, "origin fetches");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

/// A daemon in front of `origin` that has stored its answer for `/s` (a
/// [`stale_on_arrival`] one), and its span directory.
fn stale_stored_at_s(origin: &Origin) -> (TempDir, Daemon) {
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(&config(origin, &dir.0, ""))
        .start();
    assert_eq!(http::get(d.addr(), "t", "/s").unwrap().text(), "stale body");
    (dir, d)
}

/// "stale body" with entity tag "v1" and `cache_control`, whose `Age` (100) is beyond
/// its max-age (60): stale on arrival, with a lifetime.
fn stale_on_arrival(cache_control: &str) -> Vec<u8> {
    ok(
        b"stale body",
        &[
            ("ETag", "\"v1\""),
            ("Cache-Control", cache_control),
            ("Age", "100"),
        ],
    )
}

#[test]
fn concurrent_requests_for_one_stale_object_revalidate_it_once() {
    // Stale on arrival (an Age beyond its max-age) but with a lifetime: refreshed by a
    // 304 it is fresh again, so the requests that find it stale meanwhile wait for the
    // one revalidation under way, as misses wait for a fill.
    let origin = Origin::start(|r| {
        if r.header("if-none-match") == Some("\"v1\"") {
            std::thread::sleep(Duration::from_millis(300));
            return Some(
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: max-age=60\r\n\r\n"
                    .to_vec(),
            );
        }
        Some(stale_on_arrival("max-age=60"))
    });
    let (_dir, d) = stale_stored_at_s(&origin);
    let addr = d.addr();
    let clients: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || http::get(addr, "t", "/s").map(|r| (r.status, r.text())))
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().unwrap(), (200, "stale body".to_string()));
    }
    assert_eq!(origin.request_count(), 2, "one fetch and one revalidation");
    assert_eq!(d.metric("proxy.process.cache.revalidated"), 1);
    // Fresh after the 304: a hit.
    assert_eq!(http::get(addr, "t", "/s").unwrap().text(), "stale body");
    assert_eq!(origin.request_count(), 2);
}

#[test]
fn requests_waiting_for_a_revalidation_that_fails_get_the_stale_object_without_asking_again() {
    // Stale on arrival, stale-if-error allowed: the revalidation the first request sends
    // is held, the others wait for it, then the origin fails it (503). All are answered
    // with the stale object, and the waiters do not each ask the failing origin again.
    let gate = Gate::default();
    let held = gate.clone();
    let origin = Origin::start(move |r| {
        if r.header("if-none-match").is_some() {
            held.wait();
            return Some(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec());
        }
        Some(stale_on_arrival("max-age=60, stale-if-error=600"))
    });
    let (_dir, d) = stale_stored_at_s(&origin);
    let addr = d.addr();
    let get = move || http::get(addr, "t", "/s").map(|r| (r.status, r.text()));
    let first = std::thread::spawn(get);
    assert!(origin.wait_for_requests(2));
    let waiters: Vec<_> = (0..10).map(|_| std::thread::spawn(get)).collect();
    assert!(
        in_flight(&d, 11),
        "the requests do not wait for the revalidation"
    );
    gate.open();
    for c in std::iter::once(first).chain(waiters) {
        assert_eq!(c.join().unwrap().unwrap(), (200, "stale body".to_string()));
    }
    assert_eq!(origin.request_count(), 2, "one fetch and one revalidation");
    assert_eq!(d.metric("proxy.process.http.cache_hit_stale_if_error"), 11);
}

#[test]
fn requests_waiting_for_a_fill_whose_origin_cannot_be_reached_get_its_error_without_trying_again() {
    // Connects to it stay pending until `connect_attempts_timeout` (2 s) gives up.
    let (target, _held, _listener) = util::full_backlog();
    let dir = TempDir::new("cache-unreachable");
    let log = dir.0.join("access.log");
    let span = TempDir::new("cache-unreachable-span");
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 1\nconnect_attempts_timeout = 2\n\
             [proxy.config.log]\naccess_log = \"{}\"\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"8M\" }}]\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{target}/\"\n",
            log.display(),
            span.0.display()
        ))
        .start();
    let mut first = http::send_get(d.addr(), "/u");
    assert!(in_flight(&d, 1));
    // Waiters arrive a second into the fill's connect, so that their own wait (up to
    // the connect timeout from their arrival) outlasts it: they are woken by its end.
    std::thread::sleep(Duration::from_secs(1));
    let mut waiters: Vec<Conn> = (0..4).map(|_| http::send_get(d.addr(), "/u")).collect();
    assert!(in_flight(&d, 5));
    assert_eq!(first.read_response("GET").unwrap().status, 502);
    for w in &mut waiters {
        assert_eq!(w.read_response("GET").unwrap().status, 502);
    }
    // One connect tried: the fill's. Each waiter got its error without another (which
    // would have waited the connect timeout again, logged as a miss).
    let lines = log_lines(&log, 5);
    let said = |l: &String| l.split_whitespace().nth(3).unwrap_or("").to_string();
    let mut results: Vec<String> = lines.iter().map(said).collect();
    results.sort();
    assert_eq!(
        results,
        [
            "NONE/502",
            "NONE/502",
            "NONE/502",
            "NONE/502",
            "TCP_MISS/502"
        ],
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| l.ends_with(" NONE/- -")), "{lines:?}");
    assert_eq!(
        d.metric("proxy.process.http.current_active_transactions"),
        0
    );
}

#[test]
fn a_fill_cut_short_hands_the_url_to_one_waiter_which_stores_it() {
    // The origin's first answer stops halfway (it closes its connection): that fill
    // fails. Nothing says the URL is not storable, so its waiters do not all go to the
    // origin uncached: one fills it again, the others wait for that fill.
    let gate = Gate::default();
    let held = gate.clone();
    let answered = AtomicUsize::new(0);
    let origin = Origin::start(move |_| {
        let whole = |fill| ok(&[fill; 1000], &[("Cache-Control", "max-age=60")]);
        if answered.fetch_add(1, Ordering::SeqCst) > 0 {
            return Some(whole(b'y'));
        }
        held.wait();
        let mut cut = ok(
            &[b'x'; 1000],
            &[("Cache-Control", "max-age=60"), ("Connection", "close")],
        );
        cut.truncate(cut.len() - 500);
        Some(cut)
    });
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    let mut filler = http::send_get(d.addr(), "/cut");
    assert!(origin.wait_for_requests(1));
    let waiters: Vec<Conn> = (0..4).map(|_| http::send_get(d.addr(), "/cut")).collect();
    assert!(in_flight(&d, 5), "the waiters are not parked on the fill");
    gate.open();
    assert!(
        filler.read_response("GET").is_err(),
        "the cut body is not whole"
    );
    for mut w in waiters {
        let r = w.read_response("GET").unwrap();
        assert_eq!((r.status, r.body), (200, vec![b'y'; 1000]));
    }
    assert_eq!(
        origin.request_count(),
        2,
        "one fetch again, not one per waiter"
    );
    let r = http::get(d.addr(), "t", "/cut").unwrap();
    assert_eq!((r.status, r.body), (200, vec![b'y'; 1000]));
    assert_eq!(origin.request_count(), 2, "stored by the second fill");
    assert_eq!(d.metric("proxy.process.cache.writes"), 1);
}

/// A daemon that stores objects of up to 32 MiB (`http` goes after its
/// `[proxy.config.http]` records, `cache` after its `[proxy.config.cache]` line) in front
/// of an origin answering every path with `body`, fresh for a minute.
fn big_object_daemon(body: &[u8], http: &str, cache: &str) -> (Origin, TempDir, Daemon) {
    let served = body.to_vec();
    let origin = Origin::start(move |_| Some(ok(&served, &[("Cache-Control", "max-age=60")])));
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(
            &config(&origin, &dir.0, http)
                .replace("\"8M\"", "\"64M\"")
                .replace(
                    "[proxy.config.cache]\n",
                    &format!(
                        "[proxy.config.cache]\nram_cache.size = \"64M\"\nmax_doc_size = \"32M\"\n{cache}"
                    ),
                ),
        )
        .start();
    (origin, dir, d)
}

/// A connection that has sent `GET path` and reads nothing yet, with a receive buffer
/// of its own size, so that the kernel holds little of the answer for it.
fn slow_reader(d: &Daemon, path: &str) -> Conn {
    let mut c = Conn::open(d.addr()).unwrap();
    set_receive_buffer(&mut c, 64 << 10);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    c
}

/// A body of `len` bytes that a shifted copy does not match.
fn patterned(len: u32) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The fill of a 24 MiB object under way (`cache` as for [`big_object_daemon`]) for a
/// client that reads nothing yet: the body, the origin (asked once), the span
/// directory, the daemon and that client.
fn slow_fill(cache: &str) -> (Vec<u8>, Origin, TempDir, Daemon, Conn) {
    let body = patterned(24 << 20);
    let (origin, dir, d) = big_object_daemon(&body, "", cache);
    let slow = slow_reader(&d, "/big");
    assert!(origin.wait_for_requests(1));
    (body, origin, dir, d, slow)
}

/// The slow client of [`slow_fill`] reads at last: it gets `body` whole, and the fills'
/// read-ahead goes back to nothing.
fn read_at_last(mut slow: Conn, d: &Daemon, body: &[u8]) {
    set_receive_buffer(&mut slow, 4 << 20);
    let r = slow.read_response("GET").unwrap();
    assert!(
        r.status == 200 && r.body == body,
        "the slow client gets it whole"
    );
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.cache.fill_read_ahead_bytes")
        == 0));
}

#[test]
fn a_fill_goes_at_the_origins_pace_not_at_its_slow_clients() {
    // The first client asks for a large object and does not read: its fill still takes
    // the whole body from the origin (held for that client within the read-ahead
    // budget) and stores it, so a second request waiting for the fill is answered from
    // the cache at once, not once the first client has taken it all.
    let (body, origin, _dir, d, slow) = slow_fill("");
    let addr = d.addr();
    let (done, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(http::get(addr, "t", "/big").map(|r| (r.status, r.body)));
    });
    let (status, got) = answered
        .recv_timeout(Duration::from_secs(20))
        .expect("the waiting request is answered while the first client reads nothing")
        .unwrap();
    assert_eq!(status, 200);
    assert!(got == body, "the waiter's body is the origin's");
    assert_eq!(origin.request_count(), 1);
    assert_eq!(d.metric("proxy.process.cache.writes"), 1);
    assert!(d.metric("proxy.process.cache.fill_read_ahead_bytes") > 0);
    read_at_last(slow, &d, &body);
    assert_eq!(d.metric("proxy.process.cache.fill_read_ahead_refused"), 0);
}

#[test]
fn fills_hold_no_more_ahead_of_their_clients_than_fill_read_ahead() {
    // With 1 MiB of read-ahead for all fills, the fill of a large object to a client
    // that reads nothing holds that much for it, then goes at its pace (and says so).
    let (body, _origin, _dir, d, slow) = slow_fill("fill_read_ahead = \"1M\"\n");
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.cache.fill_read_ahead_refused")
        > 0));
    // Polled: while the kernel's buffers take in the last bytes queued, the session may
    // give its lease back and take it again.
    let held = || d.metric("proxy.process.cache.fill_read_ahead_bytes");
    assert!(
        wait_until(Duration::from_secs(10), || held() == 1 << 20),
        "{}",
        held()
    );
    assert_eq!(d.metric("proxy.process.cache.writes"), 0);
    read_at_last(slow, &d, &body);
    assert_eq!(d.metric("proxy.process.cache.writes"), 1);
}

#[test]
fn a_hit_whose_client_resets_midway_is_logged_aborted_with_the_bytes_it_took() {
    let body = vec![b'h'; 8 << 20];
    let logs = TempDir::new("hit-log");
    let log = logs.0.join("access.log");
    let (_origin, _dir, d) = big_object_daemon(
        &body,
        &format!("[proxy.config.log]\naccess_log = \"{}\"", log.display()),
        "",
    );
    assert!(http::get(d.addr(), "t", "/big").unwrap().body == body);
    let mut c = slow_reader(&d, "/big");
    let mut some = vec![0; 100_000];
    std::io::Read::read_exact(&mut c.reader, &mut some).unwrap();
    assert!(util::set_linger0(c.stream()), "SO_LINGER");
    drop(c);
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.current_client_connections")
        == 0));
    let lines = log_lines(&log, 2);
    let fields: Vec<&str> = lines[1].split_whitespace().collect();
    let at = fields
        .iter()
        .position(|f| f.starts_with("TCP_HIT"))
        .unwrap();
    assert_eq!(fields[at], "TCP_HIT_ABORTED/200", "{lines:?}");
    let bytes: usize = fields[at + 1].parse().unwrap();
    assert!(
        (100_000..body.len()).contains(&bytes),
        "the bytes the client took, not the whole answer: {lines:?}"
    );
}

/// Sets the connection's SO_RCVBUF (which also ends the kernel's tuning of it).
fn set_receive_buffer(c: &mut Conn, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads `bytes`, which lives across the call, as the int of its
    // length, on a descriptor the stream owns.
    let rc = unsafe {
        libc::setsockopt(
            c.stream().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

/// A span with enough objects that initialising it takes a while.
fn big_span(dir: &std::path::Path) -> String {
    let origin = Origin::start(|r| {
        Some(ok(
            &vec![b'x'; 2000 + r.path.len()],
            &[("Cache-Control", "max-age=600")],
        ))
    });
    let d = Daemon::builder()
        .config(&config(&origin, dir, "").replace("\"8M\"", "\"256M\""))
        .start();
    let addr = d.addr();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = Conn::open(addr).unwrap();
                for i in 0..5000 {
                    c.get("t", &format!("/obj/{w}/{i}")).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    format!(
        "[proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"256M\" }}]\n",
        dir.display()
    )
}

#[test]
fn wait_for_cache_1_refuses_clients_until_the_cache_is_ready() {
    let dir = TempDir::new("cache");
    let cache = big_span(&dir.0);
    let port = util::fixed_port();
    let mut d = Daemon::builder()
        .config(&format!("[proxy.config.http]\nwait_for_cache = 1\n{cache}"))
        .env(
            "PROXY_CONFIG_HTTP_SERVER_PORTS",
            &format!("{port}:ip-in=127.0.0.1"),
        )
        .no_wait()
        .start();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(wait_until(Duration::from_secs(20), || d
        .log_text()
        .contains("waiting for cache")));
    let mut refused_before_ready = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !d.log_text().contains("cache ready") {
        if std::net::TcpStream::connect(addr).is_err() {
            refused_before_ready = !d.log_text().contains("cache ready");
            if refused_before_ready {
                break;
            }
        }
    }
    assert!(
        refused_before_ready,
        "no refused connect before the cache was ready:\n{}",
        d.log_text()
    );
    assert!(wait_until(Duration::from_secs(30), || d
        .log_text()
        .contains("ports accepting")));
    assert_eq!(http::get(addr, "t", "/_stats").unwrap().status, 200);
    let log = d.log_text();
    let at = |s: &str| {
        log.find(s)
            .unwrap_or_else(|| panic!("{s} not logged:\n{log}"))
    };
    assert!(
        at("waiting for cache") < at("cache ready") && at("cache ready") < at("ports accepting"),
        "{log}"
    );
    assert!(d.metric("proxy.process.proxy.cache_ready_time") > 0);
    assert!(!d.exited());
}

#[test]
fn wait_for_cache_2_and_3_exit_1_naming_the_failed_span() {
    let dir = TempDir::new("cache");
    let bad = dir.0.join("not-a-dir-file");
    std::fs::write(&bad, b"x").unwrap();
    let bad_span = bad.join("span");
    let good_span = dir.0.join("good");
    std::fs::create_dir_all(&good_span).unwrap();
    let storage = |spans: &[&std::path::Path]| {
        let items: Vec<String> = spans
            .iter()
            .map(|p| format!("{{ path = \"{}\", size = \"4M\" }}", p.display()))
            .collect();
        format!("[proxy.config.cache]\nstorage = [{}]\n", items.join(", "))
    };
    // 2: no usable span → exit 1.
    let mut d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 2\n{}",
            storage(&[&bad_span])
        ))
        .no_wait()
        .start();
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(1)
    );
    assert!(
        d.log_text().contains(&bad_span.display().to_string()),
        "{}",
        d.log_text()
    );
    // 2 with one good span: runs.
    let d2 = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 2\n{}",
            storage(&[&bad_span, &good_span])
        ))
        .start();
    assert_eq!(d2.metric("proxy.process.cache.spans_failed"), 1);
    drop(d2);
    // 3: any failed span → exit 1.
    let mut d3 = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 3\n{}",
            storage(&[&bad_span, &good_span])
        ))
        .no_wait()
        .start();
    assert_eq!(
        d3.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(1)
    );
    assert!(
        d3.log_text().contains("wait_for_cache = 3"),
        "{}",
        d3.log_text()
    );
}

#[test]
fn ram_cache_size_0_is_a_disk_only_cache_and_max_doc_size_is_bounded_only_by_the_span() {
    let big = vec![7u8; 2 << 20];
    let body = big.clone();
    let origin = Origin::start(move |r| {
        let b: &[u8] = if r.path == "/big" {
            &body
        } else {
            b"small object"
        };
        Some(ok(b, &[("Cache-Control", "max-age=60")]))
    });
    let start = |dir: &TempDir, cache: &str| {
        Daemon::builder()
            .config(&format!(
                "[proxy.config.http]\nwait_for_cache = 1\n[proxy.config.cache]\n{cache}\n\
                 storage = [{{ path = \"{}\", size = \"8M\" }}]\n\
                 [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
                dir.0.display(),
                origin.addr
            ))
            .start()
    };
    // No RAM cache: objects, small and of 2 MiB (under max_doc_size, a quarter of the
    // span), are stored on the span and served from it.
    let dir = TempDir::new("ram0");
    let d = start(&dir, "ram_cache.size = \"0\"\nmax_doc_size = \"4M\"");
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/small", "/big"] {
        for _ in 0..2 {
            let r = c.get("t", path).unwrap();
            assert_eq!(r.status, 200, "{path}");
        }
    }
    let hit = c.get("t", "/big").unwrap();
    assert!(
        hit.body == big && hit.header("age").is_some(),
        "{path:?}",
        path = hit.headers
    );
    assert_eq!(origin.request_count(), 2, "one fill each, then hits");
    assert_eq!(d.metric("proxy.process.cache.ram_cache.objects"), 0);
    assert!(!d.log_text().contains("max_doc_size"), "{}", d.log_text());
    drop(d);
    // A max_doc_size beyond what one record of the span holds is lowered to that, and
    // the log says so, with the record, the value and the limit.
    let dir = TempDir::new("maxdoc");
    let d = start(&dir, "max_doc_size = \"16M\"");
    let limit = 8 * 1024 * 1024 - 4096 - 40 - 4096;
    let warned = |d: &Daemon| {
        d.log_text().lines().any(|l| {
            l.contains("WARN")
                && l.contains("proxy.config.cache.max_doc_size = 16777216")
                && l.contains(&format!("above {limit} bytes"))
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || warned(&d)),
        "{}",
        d.log_text()
    );
    let mut c = Conn::open(d.addr()).unwrap();
    c.get("t", "/big").unwrap();
    assert_eq!(c.get("t", "/big").unwrap().body, big);
    assert_eq!(origin.request_count(), 3);
}

#[test]
fn an_object_whose_record_does_not_fit_its_span_is_not_stored_and_its_misses_do_not_queue() {
    // A 2 MiB span holds a value of 2,088,920 bytes at most, the limit max_doc_size is
    // lowered to. A body of that size with a 12 kB head does not fit one record; nor
    // does an object under a key longer than a span's 4096 bytes. Without a RAM cache
    // neither is stored anywhere: no write is counted, and misses for them go to the
    // origin side by side, as for a response not storable, not one fill after another.
    const LIMIT: usize = 2 * 1024 * 1024 - 4096 - 40 - 4096;
    let long = format!("/long/{}", "k".repeat(5000));
    let gate = Gate::default();
    let held = gate.clone();
    let seen: std::sync::Mutex<std::collections::HashMap<String, usize>> = Default::default();
    let origin = Origin::start(move |r| {
        let nth = {
            let mut seen = seen.lock().unwrap();
            let n = seen.entry(r.path.clone()).or_default();
            *n += 1;
            *n
        };
        if nth == 2 {
            held.wait(); // the second request for each URL waits for the test
        }
        let fresh = ("Cache-Control", "max-age=60");
        Some(match r.path.as_str() {
            "/big-head" => ok(&vec![b'b'; LIMIT], &[fresh, ("X-Pad", &"p".repeat(12_000))]),
            _ => ok(b"long key", &[fresh]),
        })
    });
    let dir = TempDir::new("unfit");
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 1\n[proxy.config.cache]\n\
             ram_cache.size = \"0\"\nmax_doc_size = \"64M\"\n\
             storage = [{{ path = \"{}\", size = \"2M\" }}]\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            dir.0.display(),
            origin.addr
        ))
        .start();
    let paths = ["/big-head", long.as_str()];
    for path in paths {
        let r = http::get(d.addr(), "t", path).unwrap();
        assert_eq!(r.status, 200, "{}", &path[..10]);
    }
    assert_eq!(
        d.metric("proxy.process.cache.writes"),
        0,
        "nothing was stored"
    );
    // Each URL: one miss held at the origin, and another that goes there meanwhile
    // instead of waiting for the first one's fill.
    let mut clients = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        clients.push(http::send_get(d.addr(), path));
        assert!(origin.wait_for_requests(2 + 2 * i + 1));
        clients.push(http::send_get(d.addr(), path));
        assert!(
            origin.wait_for_requests(2 + 2 * i + 2),
            "a miss for {} waits for a fill that stores nothing",
            &path[..10]
        );
    }
    gate.open();
    for mut c in clients {
        assert_eq!(c.read_response("GET").unwrap().status, 200);
    }
    assert_eq!(d.metric("proxy.process.cache.writes"), 0);
    assert_eq!(d.metric("proxy.process.cache.span.0.objects"), 0);
}

#[test]
fn no_spans_means_the_cache_is_ready_at_once() {
    let d = Daemon::builder()
        .config("[proxy.config.http]\nwait_for_cache = 3\n")
        .start();
    assert!(d.metric("proxy.process.proxy.cache_ready_time") > 0);
    assert_eq!(d.metric("proxy.process.proxy.ports_ready"), 1);
}

#[test]
fn a_corrupted_span_tail_is_skipped_and_earlier_objects_are_served() {
    let dir = TempDir::new("cache");
    let origin = cached_origin();
    {
        let mut d = Daemon::builder()
            .config(&config(&origin, &dir.0, ""))
            .start();
        for i in 0..10 {
            assert_eq!(
                http::get(d.addr(), "t", &format!("/o{i}")).unwrap().status,
                200
            );
        }
        d.signal(libc::SIGTERM);
        assert_eq!(
            d.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
            Some(0)
        );
    }
    // Flip a byte inside the last object's body ("fresh /o9").
    let span = dir.0.join("turnstile.span");
    let mut bytes = std::fs::read(&span).unwrap();
    let at = bytes
        .windows(9)
        .rposition(|w| w == b"fresh /o9")
        .expect("last object on disk");
    bytes[at] ^= 0xff;
    std::fs::write(&span, &bytes).unwrap();
    let before = origin.request_count();
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    for i in 0..9 {
        assert_eq!(
            http::get(d.addr(), "t", &format!("/o{i}")).unwrap().text(),
            format!("fresh /o{i}")
        );
    }
    assert_eq!(
        origin.request_count(),
        before,
        "earlier objects came from the cache"
    );
    // The corrupt one is not served from the cache: it is fetched again, intact.
    assert_eq!(http::get(d.addr(), "t", "/o9").unwrap().text(), "fresh /o9");
    assert_eq!(origin.request_count(), before + 1);
}

/// An origin that holds every answer (`held`, fresh for a minute) until the returned
/// gate opens.
fn held_origin() -> (Gate, Origin) {
    let gate = Gate::default();
    let held = gate.clone();
    let origin = Origin::start(move |_| {
        held.wait();
        Some(ok(b"held", &[("Cache-Control", "max-age=60")]))
    });
    (gate, origin)
}

#[test]
fn a_request_waiting_for_another_fill_is_in_flight_and_answered_through_a_stop() {
    let (gate, origin) = held_origin();
    let dir = TempDir::new("cache");
    let mut d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    // The first client fills; the second waits for its fill, with nothing at its origin.
    let mut first = http::send_get(d.addr(), "/held");
    assert!(origin.wait_for_requests(1));
    let mut second = http::send_get(d.addr(), "/held");
    // Both are in flight: a stop's drain waits for the parked one too.
    assert!(
        in_flight(&d, 2),
        "the parked request is not counted in flight"
    );
    d.signal(libc::SIGTERM);
    gate.open();
    for c in [&mut first, &mut second] {
        let r = c.read_response("GET").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "held"));
    }
    assert_eq!(origin.request_count(), 1);
    let status = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_request_waiting_for_another_fill_whose_client_resets_is_let_go_at_once() {
    let (gate, origin) = held_origin();
    let dir = TempDir::new("cache");
    let log = dir.0.join("access.log");
    let d = Daemon::builder()
        .env("PROXY_CONFIG_LOG_ACCESS_LOG", &log.display().to_string())
        .config(&config(&origin, &dir.0, ""))
        .start();
    let mut first = http::send_get(d.addr(), "/held");
    assert!(origin.wait_for_requests(1));
    let second = http::send_get(d.addr(), "/held");
    assert!(in_flight(&d, 2));
    // The waiting client resets: its session goes while the fill is still under way,
    // logged as aborted with no status sent, not as a hit when the fill ends.
    assert!(util::set_linger0(second.reader.get_ref()));
    drop(second);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .metric("proxy.process.http.current_client_connections")
            == 1
            && d.metric("proxy.process.http.current_active_transactions") == 1),
        "the waiter's session outlived its client"
    );
    let lines = log_lines(&log, 1);
    assert!(
        lines[0].contains(" TCP_MISS_ABORTED/000 0 GET "),
        "{lines:?}"
    );
    gate.open();
    let r = first.read_response("GET").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "held"));
    assert_eq!(d.metric("proxy.process.cache.hits"), 0);
}

#[test]
fn a_successful_unsafe_request_invalidates_the_url_and_all_its_variants() {
    // /doc changes with every PUT; a DELETE is refused (403) and changes nothing.
    let version = Arc::new(AtomicUsize::new(0));
    let v = version.clone();
    let origin = Origin::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", _) => {
            v.fetch_add(1, Ordering::SeqCst);
            Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())
        }
        ("DELETE", _) => Some(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec()),
        (_, "/vary") => {
            let lang = r.header("accept-language").unwrap_or("none");
            let body = format!("{lang} v{}", v.load(Ordering::SeqCst));
            Some(ok(
                body.as_bytes(),
                &[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")],
            ))
        }
        _ => {
            let body = format!("v{}", v.load(Ordering::SeqCst));
            Some(ok(body.as_bytes(), &[("Cache-Control", "max-age=60")]))
        }
    });
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    let send = |method: &str, path: &str, lang: Option<&str>| {
        let headers: Vec<(&str, &str)> = lang.map(|l| ("Accept-Language", l)).into_iter().collect();
        let body: &[u8] = if method == "PUT" { b"new" } else { b"" };
        let r = http::request(d.addr(), method, path, &headers, body).unwrap();
        (r.status, r.text())
    };
    let get = |path: &str| send("GET", path, None);
    assert_eq!(get("/doc"), (200, "v0".into()));
    assert_eq!(get("/doc"), (200, "v0".into())); // hit
    assert_eq!(origin.request_count(), 1);
    // A refused change leaves the cached object alone.
    assert_eq!(send("DELETE", "/doc", None).0, 403);
    assert_eq!(get("/doc"), (200, "v0".into()));
    assert_eq!(origin.request_count(), 2);
    // An accepted one removes it: the next GET sees the new version.
    assert_eq!(send("PUT", "/doc", None).0, 204);
    assert_eq!(get("/doc"), (200, "v1".into()));
    assert_eq!(get("/doc"), (200, "v1".into())); // hit
    assert_eq!(origin.request_count(), 4);
    // Every variant goes, not only the one at the URL's key.
    assert_eq!(send("GET", "/vary", Some("en")), (200, "en v1".into()));
    assert_eq!(send("GET", "/vary", Some("fr")), (200, "fr v1".into()));
    assert_eq!(send("GET", "/vary", Some("en")), (200, "en v1".into())); // hit
    assert_eq!(origin.request_count(), 6);
    assert_eq!(send("PUT", "/vary", None).0, 204);
    assert_eq!(send("GET", "/vary", Some("fr")), (200, "fr v2".into()));
    assert_eq!(send("GET", "/vary", Some("en")), (200, "en v2".into()));
    assert_eq!(send("GET", "/vary", Some("en")), (200, "en v2".into())); // hit
    assert_eq!(send("GET", "/vary", Some("fr")), (200, "fr v2".into())); // hit
    assert_eq!(origin.request_count(), 9);
    assert_eq!(d.metric("proxy.process.cache.invalidations"), 2);
}

#[test]
fn the_ram_cache_gauges_are_exact_after_each_purge_and_invalidation() {
    let (_origin, _dir, d) = cached_daemon();
    let gauges = || {
        [
            "proxy.process.cache.ram_cache.objects",
            "proxy.process.cache.ram_cache.bytes_used",
            "proxy.process.cache.span.0.objects",
        ]
        .map(|m| d.metric(m))
    };
    // The tombstone may reach the span before RAM lets the object go: the gauges must
    // still come back to 0, with no later write to refresh them.
    for round in 0..20 {
        let path = format!("/gauge{round}");
        let r = http::request(d.addr(), "GET", &path, &[], b"").unwrap();
        assert_eq!(r.status, 200);
        assert!(
            wait_until(Duration::from_secs(10), || {
                let [ram, bytes, span] = gauges();
                (ram, bytes > 0, span) == (1, true, 1)
            }),
            "round {round}: not stored: {:?}",
            gauges()
        );
        let method = if round % 2 == 0 { "PURGE" } else { "POST" };
        let r = http::request(d.addr(), method, &path, &[], b"").unwrap();
        assert_eq!(r.status, 200, "{method}");
        assert!(
            wait_until(Duration::from_secs(5), || gauges() == [0, 0, 0]),
            "round {round} ({method}): {:?}",
            gauges()
        );
    }
}

#[test]
fn the_ram_cache_gauges_count_objects_read_from_disk_and_what_they_evict() {
    // 10 kB objects and a RAM cache that holds two of them (max_doc_size set: its
    // default would be an eighth of that). After a restart RAM is empty; each object
    // read from the span goes into RAM, the older ones making room.
    let origin = Origin::start(|_| Some(ok(&[b'o'; 10_000], &[("Cache-Control", "max-age=600")])));
    let dir = TempDir::new("cache");
    let text = config(&origin, &dir.0, "").replace(
        "[proxy.config.cache]\n",
        "[proxy.config.cache]\nram_cache.size = \"25K\"\nmax_doc_size = \"1M\"\n",
    );
    let paths: Vec<String> = (0..5).map(|i| format!("/r{i}")).collect();
    {
        let mut d = Daemon::builder().config(&text).start();
        for path in &paths {
            assert_eq!(http::get(d.addr(), "t", path).unwrap().status, 200);
        }
        assert!(wait_until(Duration::from_secs(10), || d
            .metric("proxy.process.cache.span.0.objects")
            == 5));
        d.signal(libc::SIGTERM);
        assert!(d.wait_exit(Duration::from_secs(20)).is_some());
    }
    let d = Daemon::builder().config(&text).start();
    let gauges = || {
        [
            "proxy.process.cache.ram_cache.objects",
            "proxy.process.cache.ram_cache.bytes_used",
        ]
        .map(|m| d.metric(m))
    };
    assert_eq!(gauges(), [0, 0]);
    for (i, path) in paths.iter().enumerate() {
        let r = http::get(d.addr(), "t", path).unwrap();
        assert_eq!((r.status, r.body.len()), (200, 10_000));
        let held = (i + 1).min(2) as i64;
        assert!(
            wait_until(Duration::from_secs(10), || {
                let [objects, bytes] = gauges();
                objects == held && bytes > held * 10_000 && bytes <= 25 * 1024
            }),
            "after {} disk reads: {:?}",
            i + 1,
            gauges()
        );
    }
    assert_eq!(d.metric("proxy.process.cache.disk_reads"), 5);
    assert_eq!(origin.request_count(), 5);
}

#[test]
fn a_fetch_under_way_when_its_url_is_changed_does_not_store_what_it_got() {
    // The origin answers GET with the version of the moment it is asked, but holds the
    // answer until the test lets it go; meanwhile a PUT changes the version.
    let version = Arc::new(AtomicUsize::new(0));
    let gate = Gate::default();
    let (v, held) = (version.clone(), gate.clone());
    let origin = Origin::start(move |r| {
        if r.method == "PUT" {
            v.fetch_add(1, Ordering::SeqCst);
            return Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec());
        }
        let body = format!("v{}", v.load(Ordering::SeqCst));
        held.wait();
        Some(ok(body.as_bytes(), &[("Cache-Control", "max-age=60")]))
    });
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    let mut getter = http::send_get(d.addr(), "/doc");
    assert!(origin.wait_for_requests(1));
    let put = http::request(d.addr(), "PUT", "/doc", &[], b"new").unwrap();
    assert_eq!(put.status, 204);
    gate.open();
    // The old version reaches the client that asked before the change ...
    assert_eq!(getter.read_response("GET").unwrap().text(), "v0");
    // ... but is not served to anyone after it.
    assert_eq!(http::get(d.addr(), "t", "/doc").unwrap().text(), "v1");
    assert_eq!(http::get(d.addr(), "t", "/doc").unwrap().text(), "v1"); // hit
    assert_eq!(origin.request_count(), 3);
}

#[test]
fn a_304_whose_validator_matches_no_stored_response_updates_nothing() {
    // RFC 9111 §4.3.4. The origin first sends representation A; afterwards it has B,
    // yet answers any conditional request with a 304 carrying B's validators. Such a
    // 304 selects no stored response: A must not be relabelled as B and kept fresh, the
    // request goes again without validators and B is what is served (and stored).
    let origin = Origin::start(|r| {
        let first = |lm: bool| {
            let v = if lm {
                ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
            } else {
                ("ETag", "\"a\"")
            };
            Some(ok(
                b"representation-A",
                &[("Cache-Control", "max-age=0"), v],
            ))
        };
        let lm = r.path == "/r2";
        let b = if lm {
            ("Last-Modified", "Tue, 02 Jan 2024 00:00:00 GMT")
        } else {
            ("ETag", "\"b\"")
        };
        let conditional = r.header("if-none-match").or(r.header("if-modified-since"));
        match (conditional, r.header("x-first")) {
            (_, Some(_)) => first(lm),
            (Some(_), None) => Some(
                format!(
                    "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=100\r\n{}: {}\r\n\r\n",
                    b.0, b.1
                )
                .into_bytes(),
            ),
            (None, None) => Some(ok(
                b"representation-B",
                &[("Cache-Control", "max-age=100"), b],
            )),
        }
    });
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    for (path, validator, old, new) in [
        ("/r1", "etag", "\"a\"", "\"b\""),
        (
            "/r2",
            "last-modified",
            "Mon, 01 Jan 2024 00:00:00 GMT",
            "Tue, 02 Jan 2024 00:00:00 GMT",
        ),
    ] {
        let before = origin.request_count();
        let r = http::request(d.addr(), "GET", path, &[("X-First", "1")], b"").unwrap();
        assert_eq!(
            (r.text().as_str(), r.header(validator)),
            ("representation-A", Some(old))
        );
        // Stale at once: revalidated; the 304 names B, so B is fetched whole.
        let r = http::request(d.addr(), "GET", path, &[], b"").unwrap();
        assert_eq!(
            (r.status, r.text().as_str(), r.header(validator)),
            (200, "representation-B", Some(new)),
            "{path}"
        );
        let r = http::request(d.addr(), "GET", path, &[], b"").unwrap();
        assert_eq!(
            (r.text().as_str(), r.header(validator)),
            ("representation-B", Some(new)),
            "{path}"
        );
        let reqs = origin.requests.lock().unwrap();
        let sent: Vec<_> = reqs[before..]
            .iter()
            .map(|r| {
                (
                    r.header("if-none-match").is_some(),
                    r.header("if-modified-since").is_some(),
                )
            })
            .collect();
        // The first fetch, the revalidation with A's validator, the unconditional
        // fetch; the last GET is a hit on B.
        let conditional = if validator == "etag" {
            (true, false)
        } else {
            (false, true)
        };
        assert_eq!(
            sent,
            [(false, false), conditional, (false, false)],
            "{path}"
        );
    }
    assert_eq!(d.metric("proxy.process.cache.revalidated"), 0);
}

#[test]
fn content_location_and_location_references_are_resolved_against_the_target() {
    // RFC 9111 §4.4 with RFC 3986 §5.2: a relative reference in an unsafe request's
    // answer names a URL relative to the request's target; a network-path reference
    // naming the origin's own authority is the origin's; one naming another host is not.
    let version = Arc::new(AtomicUsize::new(0));
    let v = version.clone();
    let origin = Origin::start(move |r| {
        if r.method == "POST" {
            v.fetch_add(1, Ordering::SeqCst);
            let names = r.header("x-names").unwrap_or_default();
            return Some(
                format!("HTTP/1.1 201 Created\r\n{names}\r\nContent-Length: 0\r\n\r\n")
                    .into_bytes(),
            );
        }
        let body = format!("{} v{}", r.path, v.load(Ordering::SeqCst));
        Some(ok(body.as_bytes(), &[("Cache-Control", "max-age=100")]))
    });
    let dir = TempDir::new("cache");
    let d = Daemon::builder()
        .config(&config(&origin, &dir.0, ""))
        .start();
    let get = |path: &str| {
        http::request(d.addr(), "GET", path, &[], b"")
            .unwrap()
            .text()
    };
    let own = origin.addr.to_string();
    for (names, target, invalidated) in [
        ("Content-Location: target", "/dir/target", true),
        ("Location: ./sub/../target#f", "/dir/target", true),
        ("Content-Location: ../dir/target", "/dir/target", true),
        ("Content-Location: ?x=1", "/dir/post?x=1", true),
        (
            &format!("Location: //{own}/dir/target"),
            "/dir/target",
            true,
        ),
        (
            "Content-Location: //other.example/dir/target",
            "/dir/target",
            false,
        ),
        ("Location: other/target", "/dir/target", false),
    ] {
        let before = get(target); // cached (or already)
        assert_eq!(get(target), before, "{names}: a hit");
        let r = http::request(d.addr(), "POST", "/dir/post", &[("X-Names", names)], b"x").unwrap();
        assert_eq!(r.status, 201);
        let now = version.load(Ordering::SeqCst);
        let want = if invalidated {
            format!("{target} v{now}")
        } else {
            before
        };
        assert_eq!(get(target), want, "{names}");
    }
}

#[test]
fn a_span_missing_at_one_start_brings_back_nothing_purged_or_replaced_meanwhile() {
    // Each fetch of a path gets the next version of it.
    let versions = std::sync::Mutex::new(std::collections::HashMap::<String, usize>::new());
    let origin = Origin::start(move |r| {
        let mut v = versions.lock().unwrap();
        let n = v.entry(r.path.clone()).or_default();
        *n += 1;
        let body = format!("{} v{n}", r.path);
        Some(ok(body.as_bytes(), &[("Cache-Control", "max-age=600")]))
    });
    let dir = TempDir::new("span-back");
    let (a, b) = (dir.0.join("a"), dir.0.join("b"));
    let text = format!(
        "[proxy.config.http]\nwait_for_cache = 1\n[proxy.config.cache]\n\
         storage = [{{ path = \"{}\", size = \"4M\" }}, {{ path = \"{}\", size = \"4M\" }}]\n\
         [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
        a.display(),
        b.display(),
        origin.addr
    );
    let paths: Vec<String> = (0..30).map(|i| format!("/o{i}")).collect();
    let cached = |d: &Daemon, p: &str| {
        let r = http::request(
            d.addr(),
            "GET",
            p,
            &[("Cache-Control", "only-if-cached")],
            b"",
        )
        .unwrap();
        (r.status == 200).then(|| r.text())
    };
    // Fetches each of `ps`, which must come as version `v`.
    let fetch = |d: &Daemon, ps: &[&String], v: u32| {
        for p in ps {
            assert_eq!(
                http::get(d.addr(), "t", p).unwrap().text(),
                format!("{p} v{v}")
            );
        }
    };
    let stop = |mut d: Daemon| {
        d.signal(libc::SIGTERM);
        let code = d.wait_exit(Duration::from_secs(20)).and_then(|s| s.code());
        assert_eq!(code, Some(0), "{}", d.log_text());
    };
    let d = Daemon::builder().config(&text).start();
    fetch(&d, &paths.iter().collect::<Vec<_>>(), 1);
    stop(d);

    // Span a is unavailable at this start: its URLs move to b, are fetched again (v2),
    // and half of them purged.
    let held = util::hold_span(&a);
    let d = Daemon::builder().config(&text).start();
    assert_eq!(d.metric("proxy.process.cache.spans_failed"), 1);
    let moved: Vec<&String> = paths.iter().filter(|p| cached(&d, p).is_none()).collect();
    assert!(!moved.is_empty() && moved.len() < paths.len(), "{moved:?}");
    fetch(&d, &moved, 2);
    let purged = &moved[..moved.len() / 2];
    for p in purged {
        assert_eq!(
            http::request(d.addr(), "PURGE", p, &[], b"")
                .unwrap()
                .status,
            200
        );
    }
    stop(d);
    drop(held);

    // Back with a: nothing of what a held for the moved URLs is served (v1 purged or
    // replaced), nor b's v2; the URLs that stayed on b are hits.
    let d = Daemon::builder().config(&text).start();
    assert_eq!(d.metric("proxy.process.cache.spans_online"), 2);
    for p in &moved {
        assert_eq!(cached(&d, p), None, "{p}\n{}", d.log_text());
    }
    for p in paths.iter().filter(|p| !moved.contains(p)) {
        assert_eq!(cached(&d, p), Some(format!("{p} v1")));
    }
    fetch(&d, &moved, 3);
    stop(d);

    // Without a once more: b's v2 copies went when a came back, and do not return.
    let held = util::hold_span(&a);
    let d = Daemon::builder().config(&text).start();
    for p in &moved {
        assert_eq!(cached(&d, p), None, "{p}");
    }
    drop(held);
}
