//! HTTP caching as RFC 9111 says (with RFC 9110's conditional and range requests, RFC
//! 5861, RFC 8246 and RFC 9213), through the real binary against an origin each test
//! scripts. Each test names the section it pins.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::http::{Conn, Response};
use util::origin::{ok, Origin, Request};
use util::{wait_until, Daemon, TempDir};

/// A caching daemon in front of `origin` (one span), with `extra` records under
/// `[proxy.config.http]`.
fn daemon(origin: &Origin, span: &TempDir, extra: &str) -> Daemon {
    Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 1\n{extra}\n[proxy.config.cache]\n\
             storage = [{{ path = \"{}\", size = \"8M\" }}]\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            span.0.display(),
            origin.addr
        ))
        .start()
}

/// Sends `GET path` (or `method`) with `fields` on `c` and reads the answer.
fn ask(c: &mut Conn, method: &str, path: &str, fields: &str) -> Response {
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{fields}\r\n").as_bytes())
        .unwrap();
    c.read_response(method).unwrap()
}

fn get(c: &mut Conn, path: &str) -> Response {
    ask(c, "GET", path, "")
}

/// The current HTTP date, and one `secs` ago.
fn http_date(secs_ago: u64) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(secs_ago))
}

/// Requests the origin received for `path`.
fn seen(origin: &Origin, path: &str) -> Vec<Request> {
    let reqs = origin.requests.lock().unwrap();
    reqs.iter().filter(|r| r.path == path).cloned().collect()
}

fn age(r: &Response) -> u64 {
    r.header("age")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no Age: {r:?}"))
}

#[test]
fn rfc9111_4_2_3_age_counts_what_the_origin_said_and_an_old_object_is_stale_on_arrival() {
    let origin = Origin::start(|r| {
        let etag = ("ETag", "\"e\"");
        Some(match (r.path.as_str(), r.header("if-none-match")) {
            (_, Some(_)) => {
                b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nCache-Control: max-age=60\r\n\r\n"
                    .to_vec()
            }
            ("/aged", _) => ok(b"aged", &[("Cache-Control", "max-age=60"), ("Age", "30")]),
            ("/old", _) => ok(
                b"old",
                &[("Cache-Control", "max-age=60"), ("Age", "100"), etag],
            ),
            ("/junk-age", _) => ok(b"j", &[("Cache-Control", "max-age=60"), ("Age", "x1")]),
            _ => ok(b"?", &[]),
        })
    });
    let span = TempDir::new("rfc-age");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    get(&mut c, "/aged");
    let hit = get(&mut c, "/aged");
    // The Age the origin sent, plus what passed since (at least 30).
    assert!((30..40).contains(&age(&hit)), "{hit:?}");
    assert_eq!(seen(&origin, "/aged").len(), 1);
    // §5.1: a malformed Age is ignored.
    get(&mut c, "/junk-age");
    assert!(age(&get(&mut c, "/junk-age")) < 10);
    // Older than its lifetime on arrival: stale, revalidated by the next request.
    get(&mut c, "/old");
    let r = get(&mut c, "/old");
    assert_eq!((r.status, r.text().as_str()), (200, "old"));
    let reqs = seen(&origin, "/old");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("if-none-match"), Some("\"e\""));
    // The 304 reset its age: fresh again.
    get(&mut c, "/old");
    assert_eq!(seen(&origin, "/old").len(), 2);
}

#[test]
fn rfc9111_4_2_1_expires_in_all_three_date_forms_and_invalid_means_expired() {
    let date = http_date(0);
    let origin = Origin::start(move |r| {
        let now = std::time::SystemTime::now() + Duration::from_secs(3600);
        let fixdate = httpdate::fmt_http_date(now);
        // The same instant as RFC 850 and asctime (RFC 9110 §5.6.7).
        let parsed: Vec<&str> = fixdate.split_whitespace().collect();
        // The weekday of that instant, as each form spells it (a date whose weekday is
        // not its own is no date).
        let day = parsed[0].trim_end_matches(',');
        let long = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ]
        .into_iter()
        .find(|l| l.starts_with(day))
        .unwrap();
        let rfc850 = format!(
            "{long}, {}-{}-{} {} GMT",
            parsed[1],
            parsed[2],
            &parsed[3][2..],
            parsed[4]
        );
        let asctime = format!(
            "{day} {} {:>2} {} {}",
            parsed[2],
            parsed[1].trim_start_matches('0'),
            parsed[4],
            parsed[3]
        );
        let expires = match r.path.as_str() {
            "/fix" => fixdate,
            "/850" => rfc850,
            "/asc" => asctime,
            _ => "soon".to_string(),
        };
        Some(ok(
            b"x",
            &[("Date", &date), ("Expires", &expires), ("ETag", "\"v\"")],
        ))
    });
    let span = TempDir::new("rfc-expires");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/fix", "/850", "/asc", "/bad"] {
        get(&mut c, path);
        get(&mut c, path);
    }
    for path in ["/fix", "/850", "/asc"] {
        assert_eq!(seen(&origin, path).len(), 1, "{path} served from the cache");
    }
    // Invalid: stored but already expired, so the next request revalidates.
    let bad = seen(&origin, "/bad");
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[1].header("if-none-match"), Some("\"v\""));
}

#[test]
fn rfc9111_3_any_final_status_with_freshness_heuristics_and_must_understand() {
    let lm = http_date(20 * 3600); // 20 hours ago: 10 % is 2 hours
    let origin = Origin::start(move |r| {
        Some(match r.path.as_str() {
            "/302" => b"HTTP/1.1 302 Found\r\nLocation: /x\r\nCache-Control: max-age=60\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "/heuristic" => ok(b"h", &[("Last-Modified", &lm)]),
            "/heuristic-302" => b"HTTP/1.1 302 Found\r\nLast-Modified: Sat, 01 Jan 2000 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "/understand" => ok(b"u", &[("Cache-Control", "must-understand, no-store, max-age=60")]),
            _ => ok(b"?", &[]),
        })
    });
    let span = TempDir::new("rfc-storable");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/302", "/heuristic", "/heuristic-302", "/understand"] {
        let first = get(&mut c, path);
        let second = get(&mut c, path);
        assert_eq!(first.status, second.status);
    }
    assert_eq!(seen(&origin, "/302").len(), 1);
    assert_eq!(
        seen(&origin, "/heuristic").len(),
        1,
        "§4.2.2 heuristic freshness"
    );
    assert_eq!(
        seen(&origin, "/heuristic-302").len(),
        2,
        "302 is not heuristically cacheable"
    );
    assert_eq!(
        seen(&origin, "/understand").len(),
        1,
        "§5.2.2.3 must-understand"
    );
}

#[test]
fn rfc9111_3_5_a_response_to_an_authenticated_request_only_with_public_s_maxage_or_must_revalidate()
{
    let origin = Origin::start(|r| {
        let cc = if r.path == "/public" {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        Some(ok(b"secret-ish", &[("Cache-Control", cc)]))
    });
    let span = TempDir::new("rfc-auth");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/public", "/plain"] {
        ask(&mut c, "GET", path, "Authorization: Basic dTpw\r\n");
        get(&mut c, path);
    }
    assert_eq!(seen(&origin, "/public").len(), 1);
    assert_eq!(seen(&origin, "/plain").len(), 2);
}

#[test]
fn rfc9111_5_2_response_directives_private_fields_immutable_and_must_revalidate() {
    let up = Arc::new(AtomicUsize::new(1));
    let up2 = up.clone();
    let origin = Origin::start(move |r| {
        if up2.load(Ordering::SeqCst) == 0 {
            return None; // the origin's connection closes without an answer
        }
        Some(match r.path.as_str() {
            "/private-field" => ok(
                b"p",
                &[
                    ("Cache-Control", "private=\"Set-Cookie\", max-age=60"),
                    ("Set-Cookie", "s=1"),
                ],
            ),
            "/immutable" => ok(b"i", &[("Cache-Control", "max-age=60, immutable")]),
            "/strict" => ok(
                b"s",
                &[
                    ("Cache-Control", "max-age=0, must-revalidate"),
                    ("ETag", "\"s\""),
                ],
            ),
            _ => ok(b"?", &[]),
        })
    });
    let span = TempDir::new("rfc-directives");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    // private="Set-Cookie": the miss carries it; the stored copy does not.
    assert_eq!(
        get(&mut c, "/private-field").header("set-cookie"),
        Some("s=1")
    );
    let hit = get(&mut c, "/private-field");
    assert!(
        hit.header("age").is_some() && hit.header("set-cookie").is_none(),
        "{hit:?}"
    );
    // RFC 8246: a fresh immutable object is not revalidated when the client reloads.
    get(&mut c, "/immutable");
    ask(&mut c, "GET", "/immutable", "Cache-Control: no-cache\r\n");
    ask(&mut c, "GET", "/immutable", "Cache-Control: max-age=0\r\n");
    assert_eq!(seen(&origin, "/immutable").len(), 1);
    // §4.2.4: stale and must-revalidate with the origin gone: 504, never the stale copy.
    get(&mut c, "/strict");
    up.store(0, Ordering::SeqCst);
    let r = get(&mut Conn::open(d.addr()).unwrap(), "/strict");
    assert_eq!(r.status, 504, "{r:?}");
}

#[test]
fn rfc9111_5_2_1_request_directives() {
    let origin = Origin::start(|_| {
        Some(ok(
            b"body",
            &[("Cache-Control", "max-age=60"), ("ETag", "\"v\"")],
        ))
    });
    let span = TempDir::new("rfc-request");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    // only-if-cached: 504 on a miss, the object on a hit, never the origin.
    let r = ask(&mut c, "GET", "/o", "Cache-Control: only-if-cached\r\n");
    assert_eq!(r.status, 504);
    assert!(seen(&origin, "/o").is_empty());
    // Nor with Authorization, which the cache never answers (§3.5).
    let auth = "Authorization: Basic eDp5\r\nCache-Control: only-if-cached\r\n";
    assert_eq!(ask(&mut c, "GET", "/o", auth).status, 504);
    assert!(seen(&origin, "/o").is_empty());
    get(&mut c, "/o");
    assert_eq!(
        ask(&mut c, "GET", "/o", "Cache-Control: only-if-cached\r\n").status,
        200
    );
    // max-age=0 and no-cache revalidate; min-fresh beyond what is left revalidates.
    ask(&mut c, "GET", "/o", "Cache-Control: max-age=0\r\n");
    ask(&mut c, "GET", "/o", "Cache-Control: no-cache\r\n");
    ask(&mut c, "GET", "/o", "Cache-Control: min-fresh=3600\r\n");
    ask(&mut c, "GET", "/o", "Cache-Control: min-fresh=5\r\n");
    let reqs = seen(&origin, "/o");
    assert_eq!(reqs.len(), 4, "one fill and three revalidations");
    assert!(reqs[1..]
        .iter()
        .all(|r| r.header("if-none-match") == Some("\"v\"")));
    // no-store: nothing of the exchange is kept.
    ask(&mut c, "GET", "/ns", "Cache-Control: no-store\r\n");
    get(&mut c, "/ns");
    assert_eq!(seen(&origin, "/ns").len(), 2);
}

#[test]
fn rfc9111_5_2_1_5_a_no_store_request_stores_nothing_over_a_stale_object_either() {
    let origin = Origin::start(|r| {
        let conditional = r.header("if-none-match").is_some();
        Some(match r.path.as_str() {
            // Stale at once; a revalidation's 304 would make it fresh for 600 s.
            "/refresh" if conditional => b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\
                  Cache-Control: max-age=600\r\n\r\n"
                .to_vec(),
            "/refresh" => ok(b"a", &[("Cache-Control", "max-age=0"), ("ETag", "\"a\"")]),
            // Stale at once, then replaced by a response fresh for 600 s.
            "/replace" if conditional => ok(b"b2", &[("Cache-Control", "max-age=600")]),
            "/replace" => ok(b"b1", &[("Cache-Control", "max-age=0"), ("ETag", "\"b\"")]),
            // Stale at once, and within its stale-while-revalidate window.
            "/swr" if conditional => b"HTTP/1.1 304 Not Modified\r\nETag: \"s\"\r\n\r\n".to_vec(),
            "/swr" => ok(
                b"s",
                &[
                    ("Cache-Control", "max-age=0, stale-while-revalidate=600"),
                    ("ETag", "\"s\""),
                ],
            ),
            _ => ok(b"p", &[("Cache-Control", "public, max-age=600")]),
        })
    });
    let span = TempDir::new("rfc-no-store");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    let no_store = "Cache-Control: no-store\r\n";
    for path in ["/refresh", "/replace"] {
        get(&mut c, path);
        assert_eq!(ask(&mut c, "GET", path, no_store).status, 200);
        // Neither the 304's refresh nor the new 200 was kept: still stale, revalidated.
        get(&mut c, path);
        assert_eq!(seen(&origin, path).len(), 3, "{path}");
    }
    // In a stale-while-revalidate window the stale object answers it, but the refresh
    // in the background that would store the origin's answer is not started by it
    // (counted when it is queued, before the answer); the next request starts it.
    get(&mut c, "/swr");
    let r = ask(&mut c, "GET", "/swr", no_store);
    assert_eq!((r.status, r.text().as_str()), (200, "s"));
    let swr = "proxy.process.http.cache_hit_stale_while_revalidate";
    assert_eq!(d.metric(swr), 1);
    let queued = "proxy.process.http.cache_revalidations_background";
    assert_eq!(d.metric(queued), 0);
    get(&mut c, "/swr");
    let done = "proxy.process.http.cache_revalidated_background";
    assert!(wait_until(Duration::from_secs(10), || d.metric(done) == 1));
    assert_eq!((d.metric(swr), d.metric(queued)), (2, 1));
    assert_eq!(seen(&origin, "/swr").len(), 2);
    // Nor a public response to an authenticated request (§3.5 would let it be stored).
    let auth = "Authorization: Basic eDp5\r\nCache-Control: no-store\r\n";
    ask(&mut c, "GET", "/auth", auth);
    assert_eq!(get(&mut c, "/auth").status, 200);
    assert_eq!(seen(&origin, "/auth").len(), 2);
}

#[test]
fn rfc5861_stale_while_revalidate_serves_at_once_and_revalidates_once_in_the_background() {
    let version = Arc::new(AtomicUsize::new(1));
    let v = version.clone();
    let origin = Origin::start(move |r| {
        std::thread::sleep(Duration::from_millis(200)); // a slow origin
        let n = v.load(Ordering::SeqCst);
        let fields = [
            ("Cache-Control", "max-age=1, stale-while-revalidate=600"),
            ("Age", "5"),
            ("X-Version", if n == 1 { "1" } else { "2" }),
        ];
        let _ = r;
        Some(ok(b"swr", &fields))
    });
    let span = TempDir::new("rfc-swr");
    let d = daemon(&origin, &span, "");
    assert_eq!(
        get(&mut Conn::open(d.addr()).unwrap(), "/s").header("x-version"),
        Some("1")
    );
    version.store(2, Ordering::SeqCst);
    // Stale on arrival (Age 5 > max-age 1), within the window: eight clients at once all
    // get the stale copy without waiting for the slow origin.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = d.addr();
            std::thread::spawn(move || {
                let t = std::time::Instant::now();
                let r = get(&mut Conn::open(addr).unwrap(), "/s");
                (r, t.elapsed())
            })
        })
        .collect();
    for c in clients {
        let (r, _) = c.join().unwrap();
        assert_eq!((r.status, r.header("x-version")), (200, Some("1")));
    }
    // One revalidation ran, and its answer replaced the object.
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.cache_revalidated_background")
        == 1));
    assert_eq!(seen(&origin, "/s").len(), 2);
    assert_eq!(
        d.metric("proxy.process.http.cache_revalidations_background"),
        1
    );
    assert!(d.metric("proxy.process.http.cache_hit_stale_while_revalidate") >= 8);
    assert_eq!(
        get(&mut Conn::open(d.addr()).unwrap(), "/s").header("x-version"),
        Some("2")
    );
}

#[test]
fn rfc5861_stale_if_error_serves_the_stale_object_on_5xx_or_an_unreachable_origin() {
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let origin = Origin::start(move |_| match m.load(Ordering::SeqCst) {
        0 => Some(ok(
            b"good",
            &[
                ("Cache-Control", "max-age=1, stale-if-error=600"),
                ("Age", "5"),
                ("ETag", "\"g\""),
            ],
        )),
        1 => Some(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy".to_vec()),
        _ => None,
    });
    let span = TempDir::new("rfc-sie");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    assert_eq!(get(&mut c, "/e").text(), "good");
    mode.store(1, Ordering::SeqCst);
    let r = get(&mut c, "/e");
    assert_eq!((r.status, r.text().as_str()), (200, "good"));
    // The 503's body went nowhere; the connection goes on.
    mode.store(2, Ordering::SeqCst);
    let r = get(&mut c, "/e");
    assert_eq!((r.status, r.text().as_str()), (200, "good"));
    assert_eq!(d.metric("proxy.process.http.cache_hit_stale_if_error"), 2);
}

#[test]
fn rfc9111_5_2_2_4_no_cache_is_never_served_without_validation_on_error_or_while_revalidating() {
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let origin = Origin::start(move |r| match m.load(Ordering::SeqCst) {
        0 | 3 => {
            let cc = match r.path.as_str() {
                "/nc" => "no-cache, stale-if-error=600",
                "/nc-fresh" => "no-cache, max-age=600, stale-if-error=600",
                _ => "no-cache, max-age=1, stale-while-revalidate=600",
            };
            let body: &[u8] = if m.load(Ordering::SeqCst) == 0 {
                b"old"
            } else {
                b"new"
            };
            Some(ok(
                body,
                &[("Cache-Control", cc), ("Age", "5"), ("ETag", "\"n\"")],
            ))
        }
        1 => Some(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy".to_vec()),
        _ => None,
    });
    let span = TempDir::new("rfc-nocache");
    let d = daemon(&origin, &span, "");
    for p in ["/nc", "/nc-fresh", "/nc-swr"] {
        assert_eq!(get(&mut Conn::open(d.addr()).unwrap(), p).text(), "old");
    }
    // stale-if-error does not apply: a 503 and an unreachable origin reach the client.
    for m in [1, 2] {
        mode.store(m, Ordering::SeqCst);
        for p in ["/nc", "/nc-fresh"] {
            let r = get(&mut Conn::open(d.addr()).unwrap(), p);
            assert!(r.status >= 500 && r.text() != "old", "{p} {m}: {r:?}");
        }
    }
    assert_eq!(d.metric("proxy.process.http.cache_hit_stale_if_error"), 0);
    // Nor stale-while-revalidate: the client waits for the validation's answer.
    mode.store(3, Ordering::SeqCst);
    let r = get(&mut Conn::open(d.addr()).unwrap(), "/nc-swr");
    assert_eq!((r.status, r.text().as_str()), (200, "new"), "{r:?}");
    assert_eq!(
        d.metric("proxy.process.http.cache_hit_stale_while_revalidate"),
        0
    );
}

#[test]
fn rfc9111_4_3_4_a_304_updates_the_stored_fields_and_the_update_survives_a_restart() {
    let origin = Origin::start(|r| {
        Some(if r.header("if-none-match").is_some() {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v\"\r\nX-Meta: new\r\nCache-Control: max-age=600\r\n\r\n".to_vec()
        } else {
            ok(
                b"kept body",
                &[
                    ("Cache-Control", "max-age=0"),
                    ("ETag", "\"v\""),
                    ("X-Meta", "old"),
                ],
            )
        })
    });
    let span = TempDir::new("rfc-304");
    let mut d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    assert_eq!(get(&mut c, "/u").header("x-meta"), Some("old"));
    let r = get(&mut c, "/u");
    assert_eq!(
        (r.text().as_str(), r.header("x-meta")),
        ("kept body", Some("new"))
    );
    assert_eq!(r.header("content-length"), Some("9"));
    // Now fresh for 600 s: a hit, with the new field.
    let r = get(&mut c, "/u");
    assert_eq!(r.header("x-meta"), Some("new"));
    assert_eq!(seen(&origin, "/u").len(), 2);
    drop(c);
    d.signal(libc::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
    let d = daemon(&origin, &span, "");
    let r = get(&mut Conn::open(d.addr()).unwrap(), "/u");
    assert_eq!(
        (r.text().as_str(), r.header("x-meta")),
        ("kept body", Some("new"))
    );
    assert_eq!(
        seen(&origin, "/u").len(),
        2,
        "served from the span after the restart"
    );
}

#[test]
fn rfc9111_3_2_a_304_with_content_range_leaves_the_stored_one_alone() {
    let origin = Origin::start(|r| {
        Some(if r.header("if-none-match").is_some() {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"c\"\r\nContent-Range: bytes 0-3/10\r\n\
              Cache-Control: max-age=600\r\n\r\n"
                .to_vec()
        } else {
            ok(
                b"0123456789",
                &[("Cache-Control", "max-age=0"), ("ETag", "\"c\"")],
            )
        })
    });
    let span = TempDir::new("rfc-304-range");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    get(&mut c, "/c");
    let r = get(&mut c, "/c");
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789"));
    assert_eq!(r.header("content-range"), None, "{r:?}");
    // Fresh now: the 206 is made from the cache, with its own Content-Range alone.
    let r = ask(&mut c, "GET", "/c", "Range: bytes=5-\r\n");
    let ranges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-range"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!((r.status, ranges), (206, vec!["bytes 5-9/10"]));
    assert_eq!(seen(&origin, "/c").len(), 2);
}

#[test]
fn rfc9110_13_and_14_conditionals_and_ranges_are_answered_from_the_cache() {
    let lm = http_date(3600);
    let body: Vec<u8> = (0..100u8).collect();
    let b = body.clone();
    let origin = Origin::start(move |_| {
        Some(ok(
            &b,
            &[
                ("Cache-Control", "max-age=600"),
                ("ETag", "\"r\""),
                ("Last-Modified", &lm),
            ],
        ))
    });
    let span = TempDir::new("rfc-cond");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    get(&mut c, "/r");
    let r = ask(&mut c, "GET", "/r", "If-None-Match: \"x\", W/\"r\"\r\n");
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"r\""));
    let since = http_date(0);
    assert_eq!(
        ask(
            &mut c,
            "GET",
            "/r",
            &format!("If-Modified-Since: {since}\r\n")
        )
        .status,
        304
    );
    // If-None-Match wins over If-Modified-Since.
    let both = format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {since}\r\n");
    assert_eq!(ask(&mut c, "GET", "/r", &both).status, 200);
    let r = ask(&mut c, "GET", "/r", "Range: bytes=10-19\r\n");
    assert_eq!(
        (r.status, r.header("content-range")),
        (206, Some("bytes 10-19/100"))
    );
    assert_eq!(r.body, body[10..20]);
    let r = ask(&mut c, "GET", "/r", "Range: bytes=-5\r\n");
    assert_eq!((r.status, r.body.as_slice()), (206, &body[95..]));
    let r = ask(&mut c, "GET", "/r", "Range: bytes=98-\r\n");
    assert_eq!((r.status, r.body.as_slice()), (206, &body[98..]));
    let r = ask(&mut c, "GET", "/r", "Range: bytes=100-\r\n");
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */100"))
    );
    // Made here, so dated here (RFC 9110 §6.6.1), as the 304 and 206 are.
    assert!(r.header("date").is_some(), "{r:?}");
    // If-Range that does not match, and several ranges: the whole 200.
    let r = ask(
        &mut c,
        "GET",
        "/r",
        "Range: bytes=0-0\r\nIf-Range: \"old\"\r\n",
    );
    assert_eq!((r.status, r.body.len()), (200, 100));
    let r = ask(&mut c, "GET", "/r", "Range: bytes=0-0,5-6\r\n");
    assert_eq!((r.status, r.body.len()), (200, 100));
    let r = ask(
        &mut c,
        "GET",
        "/r",
        "Range: bytes=0-0\r\nIf-Range: \"r\"\r\n",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &body[..1]));
    assert_eq!(seen(&origin, "/r").len(), 1, "all from the cache");
    assert_eq!(d.metric("proxy.process.http.cache_hit_not_modified"), 2);
    assert!(d.metric("proxy.process.http.cache_hit_partial") >= 5);
}

#[test]
fn rfc9110_13_2_2_a_clients_conditions_set_aside_for_a_revalidation_are_answered_from_its_new_200()
{
    let changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = changed.clone();
    let origin = Origin::start(move |_| {
        Some(if flag.load(Ordering::SeqCst) {
            ok(
                b"ABCDEFGHIJ",
                &[("Cache-Control", "max-age=600"), ("ETag", "\"e2\"")],
            )
        } else {
            ok(
                b"0123456789",
                &[("Cache-Control", "max-age=0"), ("ETag", "\"e1\"")],
            )
        })
    });
    let span = TempDir::new("rfc-set-aside");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/im", "/inm", "/range"] {
        get(&mut c, path);
    }
    changed.store(true, Ordering::SeqCst);
    // Stale: revalidated with the cache's validators alone; the origin's new 200 is
    // stored, and answers what the client asked (all on one kept-alive connection).
    let r = ask(
        &mut c,
        "GET",
        "/im",
        "If-Match: \"e1\"\r\nRange: bytes=5-\r\n",
    );
    assert_eq!(r.status, 412, "{r:?}");
    let asked = &seen(&origin, "/im")[1];
    assert_eq!(asked.header("if-none-match"), Some("\"e1\""));
    assert_eq!(
        (asked.header("if-match"), asked.header("range")),
        (None, None)
    );
    let r = ask(&mut c, "GET", "/inm", "If-None-Match: \"e2\"\r\n");
    assert_eq!((r.status, r.header("etag")), (304, Some("\"e2\"")), "{r:?}");
    let r = ask(&mut c, "GET", "/range", "Range: bytes=0-1\r\n");
    assert_eq!(
        (r.status, r.header("content-range"), r.text().as_str()),
        (206, Some("bytes 0-1/10"), "AB"),
        "{r:?}"
    );
    // And it was stored: fresh now, from the cache.
    for path in ["/im", "/inm", "/range"] {
        assert_eq!(get(&mut c, path).text(), "ABCDEFGHIJ");
        assert_eq!(seen(&origin, path).len(), 2, "{path}");
    }
}

#[test]
fn a_range_of_a_large_object_streams_from_the_stored_value() {
    let body: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let b = body.clone();
    let origin = Origin::start(move |_| Some(ok(&b, &[("Cache-Control", "max-age=600")])));
    let span = TempDir::new("rfc-big-range");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    assert_eq!(get(&mut c, "/big").body.len(), body.len());
    let r = ask(&mut c, "GET", "/big", "Range: bytes=1000-600000\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body[1000..600_001]);
    assert_eq!(get(&mut c, "/big").body, body);
}

#[test]
fn rfc9111_4_1_vary_values_are_normalised_before_matching() {
    let origin = Origin::start(|r| {
        let lang = r.header("accept-language").unwrap_or("-").to_string();
        Some(ok(
            lang.as_bytes(),
            &[
                ("Cache-Control", "max-age=60"),
                ("Vary", "Accept-Language, Accept-Encoding"),
            ],
        ))
    });
    let span = TempDir::new("rfc-vary");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    ask(
        &mut c,
        "GET",
        "/v",
        "Accept-Language: en-US\r\nAccept-Encoding: gzip,br\r\n",
    );
    let r = ask(
        &mut c,
        "GET",
        "/v",
        "Accept-Language: EN-us\r\nAccept-Encoding: gzip , br\r\n",
    );
    assert_eq!(r.text(), "en-US");
    assert_eq!(seen(&origin, "/v").len(), 1);
}

#[test]
fn rfc9111_4_4_unsafe_requests_invalidate_location_and_content_location_and_purge_removes() {
    let origin = Origin::start(|r| {
        Some(match r.method.as_str() {
            "POST" => b"HTTP/1.1 201 Created\r\nLocation: /made\r\nContent-Location: /listing\r\nContent-Length: 0\r\n\r\n".to_vec(),
            _ => ok(r.path.as_bytes(), &[("Cache-Control", "max-age=600")]),
        })
    });
    let span = TempDir::new("rfc-invalidate");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/made", "/listing", "/other", "/made", "/listing", "/other"] {
        get(&mut c, path);
    }
    ask(&mut c, "POST", "/form", "Content-Length: 0\r\n");
    for path in ["/made", "/listing", "/other"] {
        get(&mut c, path);
    }
    assert_eq!(seen(&origin, "/made").len(), 2);
    assert_eq!(seen(&origin, "/listing").len(), 2);
    assert_eq!(seen(&origin, "/other").len(), 1);
    // PURGE: 200 and gone, then 404.
    assert_eq!(ask(&mut c, "PURGE", "/other", "").status, 200);
    assert_eq!(ask(&mut c, "PURGE", "/other", "").status, 404);
    get(&mut c, "/other");
    assert_eq!(seen(&origin, "/other").len(), 2);
    assert_eq!(d.metric("proxy.process.cache.purges"), 1);
    // Others may not purge.
    let span2 = TempDir::new("rfc-purge-denied");
    let d2 = daemon(&origin, &span2, "cache.purge_allow_ip = [\"10.0.0.0/8\"]");
    assert_eq!(
        ask(&mut Conn::open(d2.addr()).unwrap(), "PURGE", "/other", "").status,
        403
    );
}

#[test]
fn rfc3986_6_2_2_equal_spellings_of_a_url_are_one_object_and_invalidate_each_other() {
    // Percent-encodings differing in case, or encoding an unreserved character, name one
    // URL: one object, and a Location in either spelling invalidates it.
    let origin = Origin::start(|r| {
        Some(match r.method.as_str() {
            "POST" => {
                b"HTTP/1.1 201 Created\r\nLocation: /a~b%2fc?q=%3a\r\nContent-Length: 0\r\n\r\n"
                    .to_vec()
            }
            _ => ok(b"x", &[("Cache-Control", "max-age=600")]),
        })
    });
    let span = TempDir::new("rfc-pct");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/a%7Eb%2Fc?q=%3A", "/a%7eb%2fc?q=%3a", "/%61~b%2Fc?q=%3A"] {
        get(&mut c, path);
    }
    let fetched = || {
        let reqs = origin.requests.lock().unwrap();
        reqs.iter().filter(|r| r.method == "GET").count()
    };
    assert_eq!(fetched(), 1, "three spellings, one object");
    ask(&mut c, "POST", "/form", "Content-Length: 0\r\n");
    get(&mut c, "/a%7Eb%2Fc?q=%3A");
    assert_eq!(fetched(), 2, "the Location invalidated it");
    // Reserved characters stay encoded: %2F is not "/".
    get(&mut c, "/a~b/c?q=%3A");
    assert_eq!(fetched(), 3);
}

#[test]
fn rfc9112_9_3_an_answer_that_leaves_a_body_unread_closes_and_never_takes_it_as_a_request() {
    // PURGE and only-if-cached answer without reading the request's body: its bytes
    // must not be read as the next request (a CL.0 smuggle), so the connection closes.
    let origin = Origin::start(|r| Some(ok(r.path.as_bytes(), &[])));
    let span = TempDir::new("rfc-cl0");
    let d = daemon(&origin, &span, "");
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let n = smuggled.len();
    for (method, head) in [
        (
            "PURGE",
            format!("PURGE /absent HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n"),
        ),
        (
            "GET",
            format!(
                "GET /absent HTTP/1.1\r\nHost: t\r\nCache-Control: only-if-cached\r\n\
                 Content-Length: {n}\r\n"
            ),
        ),
        (
            "PURGE",
            "PURGE /absent HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n".to_string(),
        ),
    ] {
        let body = if head.contains("chunked") {
            format!("{n:x}\r\n{smuggled}\r\n0\r\n\r\n")
        } else {
            smuggled.to_string()
        };
        let mut c = Conn::open(d.addr()).unwrap();
        c.send(format!("{head}\r\n{body}").as_bytes()).unwrap();
        let r = c.read_response(method).unwrap();
        assert!([404, 504].contains(&r.status), "{r:?}");
        assert_eq!(r.header("connection"), Some("close"), "{head}");
        let next = c.read_response("GET");
        assert!(next.is_err(), "{head}: a second answer {next:?}");
    }
    assert!(seen(&origin, "/smuggled").is_empty());
}

#[test]
fn rfc9213_cdn_cache_control_replaces_cache_control_for_this_cache() {
    let origin = Origin::start(|_| {
        Some(ok(
            b"cdn",
            &[
                ("Cache-Control", "no-store"),
                ("CDN-Cache-Control", "max-age=600"),
            ],
        ))
    });
    let span = TempDir::new("rfc-cdn");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    get(&mut c, "/c");
    let hit = get(&mut c, "/c");
    // Stored by its targeted field, and the field still goes on to the client.
    assert_eq!(hit.header("cdn-cache-control"), Some("max-age=600"));
    assert_eq!(seen(&origin, "/c").len(), 1);
    // Without targeted fields, Cache-Control rules: not stored.
    let span2 = TempDir::new("rfc-cdn-off");
    let d2 = daemon(
        &origin,
        &span2,
        "cache.targeted_cache_control_headers = \"\"",
    );
    let mut c2 = Conn::open(d2.addr()).unwrap();
    get(&mut c2, "/c2");
    get(&mut c2, "/c2");
    assert_eq!(seen(&origin, "/c2").len(), 2);
}

#[test]
fn rfc9110_7_6_1_fields_named_by_connection_are_neither_forwarded_nor_stored() {
    let origin = Origin::start(|_| {
        Some(ok(
            b"x",
            &[
                ("Cache-Control", "max-age=60"),
                ("Connection", "X-Secret"),
                ("X-Secret", "1"),
                ("X-Kept", "2"),
            ],
        ))
    });
    let span = TempDir::new("rfc-connection");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    let miss = get(&mut c, "/h");
    let hit = get(&mut c, "/h");
    for r in [&miss, &hit] {
        assert!(r.header("x-secret").is_none(), "{r:?}");
        assert_eq!(r.header("x-kept"), Some("2"));
    }
    assert!(hit.header("age").is_some());
}

#[test]
fn rfc9110_9_3_2_head_is_answered_from_a_stored_get_and_a_head_refreshes_it() {
    let origin = Origin::start(|r| {
        Some(if r.header("if-none-match").is_some() {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"h\"\r\nCache-Control: max-age=600\r\nX-Fresh: yes\r\n\r\n".to_vec()
        } else {
            ok(
                b"twelve bytes",
                &[("Cache-Control", "max-age=600"), ("ETag", "\"h\"")],
            )
        })
    });
    let span = TempDir::new("rfc-head");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    get(&mut c, "/g");
    let head = ask(&mut c, "HEAD", "/g", "");
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("12"))
    );
    assert!(head.body.is_empty() && head.header("age").is_some());
    assert_eq!(seen(&origin, "/g").len(), 1);
    // A conditional HEAD revalidation (the client reloads) refreshes the stored GET.
    let r = ask(&mut c, "HEAD", "/g", "Cache-Control: no-cache\r\n");
    assert_eq!((r.status, r.header("x-fresh")), (200, Some("yes")));
    let r = get(&mut c, "/g");
    assert_eq!(
        (r.text().as_str(), r.header("x-fresh")),
        ("twelve bytes", Some("yes"))
    );
    let reqs = seen(&origin, "/g");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].method, "HEAD");
}

#[test]
fn rfc9111_4_3_5_a_head_with_other_validators_or_length_outdates_the_stored_get() {
    let lm = http_date(86400);
    let changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = changed.clone();
    let origin = Origin::start(move |r| {
        // The origin changes its GET body once it has answered a HEAD. What each
        // path's HEAD says, against the GET stored first ("e1", 8 bytes, one
        // Last-Modified): another tag with the same date, another length, the same.
        let (etag, len) = match r.path.as_str() {
            "/etag" => ("\"e2\"", 8),
            "/length" => ("\"e1\"", 9),
            _ => ("\"e1\"", 8),
        };
        if r.method == "HEAD" {
            flag.store(true, Ordering::SeqCst);
            return Some(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: {etag}\r\n\
                     Last-Modified: {lm}\r\nCache-Control: max-age=600\r\nX-Head: yes\r\n\r\n"
                )
                .into_bytes(),
            );
        }
        let body: &[u8] = if flag.load(Ordering::SeqCst) {
            b"new-body"
        } else {
            b"old-body"
        };
        let fields = [
            ("Cache-Control", "max-age=0"),
            ("ETag", "\"e1\""),
            ("Last-Modified", &lm),
        ];
        Some(ok(body, &fields))
    });
    let span = TempDir::new("rfc-head-outdates");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/etag", "/length", "/same"] {
        changed.store(false, Ordering::SeqCst);
        assert_eq!(get(&mut c, path).text(), "old-body");
        // Stale: the HEAD goes to the origin, and its 200 is relayed.
        let r = ask(&mut c, "HEAD", path, "");
        assert_eq!((r.status, r.header("x-head")), (200, Some("yes")), "{path}");
        let r = get(&mut c, path);
        let reqs = seen(&origin, path);
        if path == "/same" {
            // Refreshed by the HEAD: a hit, with its fields.
            assert_eq!(
                (r.text().as_str(), r.header("x-head")),
                ("old-body", Some("yes"))
            );
            assert_eq!(reqs.len(), 2);
        } else {
            // Outdated: the GET went to the origin, unconditionally, for what it has.
            assert_eq!((reqs.len(), r.text().as_str()), (3, "new-body"), "{path}");
            assert_eq!(reqs[2].header("if-none-match"), None, "{path}");
        }
    }
}

#[test]
fn rfc9111_4_1_a_304_that_adds_vary_refreshes_nothing_and_the_response_is_fetched_anew() {
    let varies = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let v = varies.clone();
    let origin = Origin::start(move |r| {
        // One entity tag per value of X-V; `Vary` (X-V, or `*` on /star) once `varies`.
        let xv = r.header("x-v").unwrap_or("-").to_string();
        let tag = format!("\"t{xv}\"");
        let vary = match (v.load(Ordering::SeqCst), r.path.as_str()) {
            (false, _) => String::new(),
            (true, "/star") => "Vary: *\r\n".to_string(),
            (true, _) => "Vary: X-V\r\n".to_string(),
        };
        if r.header("if-none-match")
            .is_some_and(|inm| inm.contains(&tag))
        {
            return Some(
                format!(
                    "HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\n{vary}\
                     Cache-Control: max-age=600\r\n\r\n"
                )
                .into_bytes(),
            );
        }
        let age = if vary.is_empty() {
            "max-age=0"
        } else {
            "max-age=600"
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {tag}\r\n{vary}\
             Cache-Control: {age}\r\n\r\n{xv}",
            xv.len()
        );
        Some(head.into_bytes())
    });
    let span = TempDir::new("rfc-304-vary");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for (path, other) in [("/add", "2"), ("/star", "3")] {
        varies.store(false, Ordering::SeqCst);
        assert_eq!(ask(&mut c, "GET", path, "X-V: 1\r\n").text(), "1");
        varies.store(true, Ordering::SeqCst);
        // Stale: revalidated; the 304 says Vary now, and refreshes nothing: the request
        // went again without validators.
        assert_eq!(ask(&mut c, "GET", path, "X-V: 1\r\n").text(), "1");
        let reqs = seen(&origin, path);
        assert_eq!(reqs.len(), 3, "{path}");
        assert_eq!(reqs[2].header("if-none-match"), None, "{path}");
        // So the object of X-V: 1 never answers another value.
        let r = ask(&mut c, "GET", path, &format!("X-V: {other}\r\n"));
        assert_eq!(r.text(), other, "{path}: {r:?}");
        assert_eq!(seen(&origin, path).len(), 4, "{path}");
    }
}

#[test]
fn rfc9111_4_3_1_revalidations_offer_every_variants_entity_tag_and_a_304_selects_one() {
    // The origin negotiates: fr-CA gets the French representation.
    let origin = Origin::start(|r| {
        let lang = r.header("accept-language").unwrap_or("en");
        let (body, tag) = if lang.starts_with("fr") {
            ("bonjour", "\"f\"")
        } else {
            ("hello", "\"e\"")
        };
        let offered = r.header("if-none-match").unwrap_or("");
        Some(if offered.contains(tag) {
            format!("HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\nCache-Control: max-age=0\r\n\r\n")
                .into_bytes()
        } else {
            ok(
                body.as_bytes(),
                &[
                    ("Cache-Control", "max-age=0"),
                    ("ETag", tag),
                    ("Vary", "Accept-Language"),
                ],
            )
        })
    });
    let span = TempDir::new("rfc-variant-tags");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    assert_eq!(
        ask(&mut c, "GET", "/n", "Accept-Language: en\r\n").text(),
        "hello"
    );
    assert_eq!(
        ask(&mut c, "GET", "/n", "Accept-Language: fr\r\n").text(),
        "bonjour"
    );
    // No variant stored for fr-CA: the request offers both tags, and the 304 selects the
    // stored French one, which answers it.
    let r = ask(&mut c, "GET", "/n", "Accept-Language: fr-CA\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "bonjour"));
    // A stale variant revalidates offering the others' tags too.
    let r = ask(&mut c, "GET", "/n", "Accept-Language: en\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    let reqs = seen(&origin, "/n");
    assert_eq!(reqs.len(), 4);
    let offered = |i: usize| reqs[i].header("if-none-match").unwrap_or("").to_string();
    assert!(offered(0).is_empty());
    assert_eq!(offered(1), "\"e\"");
    assert!(
        offered(2).contains("\"e\"") && offered(2).contains("\"f\""),
        "{}",
        offered(2)
    );
    assert!(
        offered(3).starts_with("\"e\"") && offered(3).contains("\"f\""),
        "{}",
        offered(3)
    );
    assert_eq!(d.metric("proxy.process.cache.revalidated"), 2);
}

#[test]
fn rfc9110_6_6_1_a_response_without_date_gets_one_forwarded_and_stored() {
    let origin = Origin::start(|r| {
        Some(match r.path.as_str() {
            "/undated" => ok(b"u", &[("Cache-Control", "max-age=100")]),
            _ => ok(
                b"d",
                &[("Cache-Control", "max-age=100"), ("Date", &http_date(5))],
            ),
        })
    });
    let span = TempDir::new("rfc-date");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    let near_now = |r: &Response| {
        let date = r.header("date").unwrap_or_else(|| panic!("no Date: {r:?}"));
        let at = httpdate::parse_http_date(date).unwrap();
        let off = std::time::SystemTime::now()
            .duration_since(at)
            .unwrap_or_default();
        off < Duration::from_secs(60)
    };
    let miss = get(&mut c, "/undated");
    assert!(near_now(&miss), "{miss:?}");
    let hit = get(&mut c, "/undated");
    assert!(near_now(&hit), "{hit:?}");
    assert_eq!(seen(&origin, "/undated").len(), 1);
    assert_eq!(hit.header("date"), miss.header("date"));
    // An origin's own Date is kept, not replaced.
    let dated = get(&mut c, "/dated");
    let want = dated.header("date").map(str::to_string);
    assert_eq!(
        get(&mut c, "/dated").header("date").map(str::to_string),
        want
    );
    // Turnstile's own answers are dated too.
    let own = get(&mut c, "/_stats");
    assert!(near_now(&own), "{own:?}");
}

#[test]
fn rfc9111_5_1_an_age_list_counts_its_first_member() {
    let origin = Origin::start(|_| {
        Some(ok(
            b"a",
            &[("Cache-Control", "max-age=100"), ("Age", "50, 60")],
        ))
    });
    let span = TempDir::new("rfc-age-list");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    get(&mut c, "/a");
    let hit = get(&mut c, "/a");
    assert_eq!(seen(&origin, "/a").len(), 1);
    assert!((50..60).contains(&age(&hit)), "{hit:?}");
}

#[test]
fn rfc9110_13_1_5_if_range_by_date_needs_a_strong_last_modified_and_ims_falls_back_to_date() {
    let origin = Origin::start(|r| {
        let weak = http_date(30);
        let strong_lm = http_date(40);
        Some(match r.path.as_str() {
            // Last-Modified equal to Date: weak (RFC 9110 §8.8.2.2).
            "/weak" => ok(
                b"0123456789",
                &[
                    ("Cache-Control", "max-age=100"),
                    ("Date", &weak),
                    ("Last-Modified", &weak),
                ],
            ),
            "/strong" => ok(
                b"0123456789",
                &[
                    ("Cache-Control", "max-age=100"),
                    ("Date", &weak),
                    ("Last-Modified", &strong_lm),
                ],
            ),
            _ => ok(
                b"no-lm",
                &[("Cache-Control", "max-age=100"), ("Date", &weak)],
            ),
        })
    });
    let span = TempDir::new("rfc-if-range");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    for path in ["/weak", "/strong", "/no-lm"] {
        get(&mut c, path);
    }
    let ranged = |c: &mut Conn, path: &str| {
        let stored = get(c, path);
        let lm = stored.header("last-modified").unwrap().to_string();
        ask(
            c,
            "GET",
            path,
            &format!("Range: bytes=0-1\r\nIf-Range: {lm}\r\n"),
        )
    };
    let weak = ranged(&mut c, "/weak");
    assert_eq!((weak.status, weak.body.len()), (200, 10), "{weak:?}");
    let strong = ranged(&mut c, "/strong");
    assert_eq!(
        (strong.status, strong.text().as_str()),
        (206, "01"),
        "{strong:?}"
    );
    // If-Modified-Since against a stored response without Last-Modified: its Date
    // (RFC 9111 §4.3.2).
    let r = ask(
        &mut c,
        "GET",
        "/no-lm",
        &format!("If-Modified-Since: {}\r\n", http_date(0)),
    );
    assert_eq!(r.status, 304, "{r:?}");
    let r = ask(
        &mut c,
        "GET",
        "/no-lm",
        &format!("If-Modified-Since: {}\r\n", http_date(90)),
    );
    assert_eq!(r.status, 200, "{r:?}");
    for path in ["/weak", "/strong", "/no-lm"] {
        assert_eq!(seen(&origin, path).len(), 1, "{path}");
    }
}

#[test]
fn rfc9111_4_1_a_vary_field_absent_from_the_request_matches_only_its_absence() {
    let origin = Origin::start(|r| {
        let body = format!("foo={:?}", r.header("x-foo"));
        Some(ok(
            body.as_bytes(),
            &[("Cache-Control", "max-age=100"), ("Vary", "X-Foo")],
        ))
    });
    let span = TempDir::new("rfc-vary-absent");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    assert_eq!(get(&mut c, "/v").text(), "foo=None");
    assert_eq!(
        ask(&mut c, "GET", "/v", "X-Foo:\r\n").text(),
        "foo=Some(\"\")"
    );
    assert_eq!(get(&mut c, "/v").text(), "foo=None");
    assert_eq!(seen(&origin, "/v").len(), 2);
}

#[test]
fn rfc9110_15_6_3_a_withheld_answer_cut_by_its_origin_is_a_502_not_a_silent_close() {
    // The new 200 of a revalidation, withheld to answer the client's set-aside
    // precondition once stored, is cut short: the client has had nothing yet, so it
    // gets the error a cut response before its head gets.
    let origin = Origin::start(|r| {
        Some(if r.header("if-none-match").is_some() {
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nETag: \"e2\"\r\n\
              Content-Length: 10\r\nConnection: close\r\n\r\nABC"
                .to_vec()
        } else {
            ok(
                b"0123456789",
                &[("Cache-Control", "max-age=0"), ("ETag", "\"e1\"")],
            )
        })
    });
    let span = TempDir::new("rfc-withheld-cut");
    let d = daemon(&origin, &span, "");
    let mut c = Conn::open(d.addr()).unwrap();
    get(&mut c, "/cut");
    let r = ask(&mut c, "GET", "/cut", "If-None-Match: \"zz\"\r\n");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(seen(&origin, "/cut").len(), 2);
}
