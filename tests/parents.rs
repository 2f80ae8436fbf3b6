//! A cache tier through the real binary (SPEC §10): a child without a cache sending every
//! URL by consistent hash to one of three caching parents (forward proxies), parents
//! stopped and restarted, every parent down with and without go_direct, weights, a Via
//! loop answered 508.

mod util;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use turnstile::http::parent::ring::Ring;
use util::http;
use util::origin::{ok, Origin};
use util::{wait_until, Daemon, TempDir};

/// An origin whose every answer may be cached for an hour and names its path.
fn cacheable_origin() -> Origin {
    Origin::start(|r| Some(ok(r.path.as_bytes(), &[("Cache-Control", "max-age=3600")])))
}

/// A loopback address where nothing listens and nothing can start to while the
/// returned sockets live: the local end of a connection this test holds. A connect to it
/// is refused, and no other socket can be bound to its port meanwhile; a port bound and
/// let go may be handed by the kernel to the next daemon that binds port 0, the child
/// itself among them, which then became its own parent (508).
fn dead_addr() -> (TcpListener, TcpStream, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let addr = c.local_addr().unwrap().to_string();
    (l, c, addr)
}

/// A caching forward proxy called `name` on `port` (0: any), its span in `span`.
fn parent(name: &str, port: u16, span: &TempDir) -> Daemon {
    Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", &format!("{port}"))
        .config(&format!(
            "[proxy.config]\nproxy_name = \"{name}\"\n\
             [proxy.config.http]\nwait_for_cache = 1\n\
             [proxy.config.url_remap]\nremap_required = false\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"8M\" }}]\n",
            span.0.display()
        ))
        .start()
}

/// A child without a cache: everything to `origin`, by way of `parents`.
fn child(origin: SocketAddr, parents: &[String], extra: &str) -> Daemon {
    let list: Vec<String> = parents.iter().map(|p| format!("\"{p}\"")).collect();
    Daemon::builder()
        .config(&format!(
            "[proxy.config]\nproxy_name = \"child\"\n\
             [proxy.config.http]\ncache.http = false\n\
             parent_proxy.fail_threshold = 2\nparent_proxy.retry_time = 1\n\
             {extra}\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{origin}/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [{}]\nround_robin = \"consistent_hash\"\n",
            list.join(", ")
        ))
        .start()
}

/// The parent (by `proxy_name`) that answered, from the response's Via.
fn served_by(r: &http::Response) -> String {
    let via = r.header("via").unwrap_or_default();
    via.split(',')
        .map(str::trim)
        .find_map(|e| {
            e.strip_prefix("1.1 p")
                .map(|rest| format!("p{}", &rest[..1]))
        })
        .unwrap_or_else(|| format!("none ({via})"))
}

fn fetch(d: &Daemon, path: &str) -> http::Response {
    let r = http::get(d.addr(), "t", path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(r.text(), path);
    r
}

#[test]
fn a_tier_fetches_each_url_once_and_moves_only_a_stopped_parents_share() {
    let origin = cacheable_origin();
    let spans = [TempDir::new("p1"), TempDir::new("p2"), TempDir::new("p3")];
    // p2 restarts on its port below: one no daemon binding port 0 can take meanwhile.
    let mut parents: Vec<Daemon> = ["p1", "p2", "p3"]
        .iter()
        .zip(&spans)
        .map(|(n, s)| parent(n, if *n == "p2" { util::fixed_port() } else { 0 }, s))
        .collect();
    let addrs: Vec<String> = parents.iter().map(|p| p.addr().to_string()).collect();
    // Weights 1, 1, 2: the third parent holds half of the ring.
    let listed: Vec<String> = addrs
        .iter()
        .zip([1, 1, 2])
        .map(|(a, w)| format!("{a}|{w}"))
        .collect();
    let c = child(origin.addr, &listed, "");
    let ring = Ring::build(addrs.iter().map(String::as_str).zip([1, 1, 2]));
    let urls: Vec<String> = (0..90).map(|i| format!("/obj/{i}")).collect();
    let home = |u: &String| format!("p{}", ring.parent_of(u.as_bytes()).unwrap() + 1);

    // Every URL, asked three times, reaches the origin once, through its ring parent.
    for _ in 0..3 {
        for u in &urls {
            assert_eq!(served_by(&fetch(&c, u)), home(u), "{u}");
        }
    }
    assert_eq!(origin.request_count(), urls.len());
    let share = |p: &str| urls.iter().filter(|u| home(u) == p).count();
    let (s1, s2, s3) = (share("p1"), share("p2"), share("p3"));
    assert!(s1 > 0 && s2 > 0 && s3 > s1 && s3 > s2, "{s1} {s2} {s3}");
    for (i, a) in addrs.iter().enumerate() {
        let n = c.metric(&format!("proxy.process.http.parent.{a}.requests"));
        assert_eq!(n as usize, 3 * share(&format!("p{}", i + 1)), "{a}");
    }
    // The parents saw absolute-form requests, the origin the child's and parents' Via.
    assert!(origin.requests.lock().unwrap().iter().all(|r| {
        let via = r.header("via").unwrap_or_default();
        via.contains("1.1 child (turnstile/") && via.contains(", 1.1 p")
    }));

    // p2 stops: only its URLs move (to the next parent on the ring), and none fails.
    let p2_port = parents[1].addr().port();
    parents[1].signal(libc::SIGTERM);
    assert!(parents[1].wait_exit(Duration::from_secs(10)).is_some());
    let before = origin.request_count();
    for u in &urls {
        let by = served_by(&fetch(&c, u));
        if home(u) == "p2" {
            assert_ne!(by, "p2", "{u}");
        } else {
            assert_eq!(by, home(u), "{u}: a URL of a parent still up moved");
        }
    }
    assert_eq!(
        origin.request_count() - before,
        s2,
        "only p2's URLs were fetched again"
    );
    let p2 = &addrs[1];
    assert_eq!(c.metric(&format!("proxy.process.http.parent.{p2}.up")), 0);
    assert_eq!(
        c.metric(&format!("proxy.process.http.parent.{p2}.marked_down")),
        1
    );
    assert!(c.metric("proxy.process.http.parent_failovers") >= 2);

    // p2 comes back on its port with its span: once retry_time passes, its URLs go back
    // to it, answered from its cache.
    parents[1] = parent("p2", p2_port, &spans[1]);
    let first = urls.iter().find(|u| home(u) == "p2").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || served_by(&fetch(&c, first))
            == "p2"),
        "p2 was not tried again"
    );
    let before = origin.request_count();
    for u in &urls {
        assert_eq!(served_by(&fetch(&c, u)), home(u), "{u}");
    }
    assert_eq!(origin.request_count(), before, "p2 answered from its span");
    assert_eq!(c.metric(&format!("proxy.process.http.parent.{p2}.up")), 1);
}

#[test]
fn with_every_parent_down_go_direct_serves_and_otherwise_502() {
    let origin = cacheable_origin();
    let held: Vec<_> = (0..3).map(|_| dead_addr()).collect();
    let dead: Vec<String> = held.iter().map(|(_, _, a)| a.clone()).collect();
    let list: Vec<String> = dead.iter().map(|p| format!("\"{p}\"")).collect();
    // 127.0.0.1 goes direct; "localhost" (the same origin by name) may not.
    let c = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\ncache.http = false\nparent_proxy.fail_threshold = 1\n\
             [[remap]]\nfrom = \"http://direct.test/\"\nto = \"http://{o}/\"\n\
             [[remap]]\nfrom = \"http://strict.test/\"\nto = \"http://localhost:{p}/\"\n\
             [[parent]]\ndest_domain = \"127.0.0.1\"\nparents = [{l}]\nround_robin = \"strict\"\ngo_direct = true\n\
             [[parent]]\ndest_domain = \"localhost\"\nparents = [{l}]\ngo_direct = false\n",
            o = origin.addr,
            p = origin.addr.port(),
            l = list.join(", ")
        ))
        .start();
    for i in 0..4 {
        let r = http::get(c.addr(), "direct.test", &format!("/d{i}")).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let r = http::get(c.addr(), "strict.test", &format!("/s{i}")).unwrap();
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(r.text().contains("no parent"), "{}", r.text());
    }
    let paths = origin.paths();
    assert_eq!(paths, ["/d0", "/d1", "/d2", "/d3"]);
    assert_eq!(c.metric("proxy.process.http.parent_direct"), 4);
    for p in &dead {
        assert_eq!(c.metric(&format!("proxy.process.http.parent.{p}.up")), 0);
    }
}

#[test]
fn a_request_that_comes_back_round_a_loop_gets_508() {
    let origin = cacheable_origin();
    // a's parent is b and b's parent is a: a request to a goes a → b → a. b learns a's
    // address by a reload once a is up (a port picked for a beforehand could be taken
    // meanwhile by any daemon binding port 0, b among them).
    let b_config = |parent: &str| {
        format!(
            "[proxy.config]\nproxy_name = \"b\"\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{parent}\"]\ngo_direct = false\n",
            origin.addr
        )
    };
    let (_l, _c, nowhere) = dead_addr();
    let b = Daemon::builder().config(&b_config(&nowhere)).start();
    let a = Daemon::builder()
        .config(&format!(
            "[proxy.config]\nproxy_name = \"a\"\n[proxy.config.url_remap]\nremap_required = false\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{}\"]\ngo_direct = false\n",
            origin.addr,
            b.addr()
        ))
        .start();
    let (code, out, err) = b.reload(&b_config(&a.addr().to_string()));
    assert_eq!(code, 0, "{out}{err}");
    let r = http::get(a.addr(), "t", "/x").unwrap();
    assert_eq!(r.status, 508, "{}", r.text());
    assert_eq!(origin.request_count(), 0, "a loop is never forwarded");
    assert_eq!(a.metric("proxy.process.http.loops_detected"), 1);
    assert_eq!(b.metric("proxy.process.http.loops_detected"), 0);

    // A Via naming another process of the same name is no loop; one with a's token is.
    let via = r.header("via").unwrap_or_default().to_string();
    assert!(via.contains("1.1 a (turnstile/"), "{via}");
    let token = via.split("id=").nth(1).unwrap()[..16].to_string();
    let other = format!("1.1 a (turnstile/0.1.0; id={})", "0".repeat(16));
    let mine = format!("1.1 x, 1.1 a (turnstile/0.1.0; id={token})");
    let direct = Daemon::builder()
        .config(&format!(
            "[proxy.config]\nproxy_name = \"a\"\n[[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start();
    let r = http::request(direct.addr(), "GET", "/y", &[("Via", &other)], b"").unwrap();
    assert_eq!(r.status, 200);
    let own = r.header("via").unwrap_or_default().to_string();
    let own_token = own.split("id=").nth(1).unwrap()[..16].to_string();
    assert_ne!(own_token, token, "two processes, two tokens");
    let looped = mine.replace(&token, &own_token);
    let r = http::request(direct.addr(), "GET", "/z", &[("Via", &looped)], b"").unwrap();
    assert_eq!(r.status, 508);
    // A looped CONNECT closes, as its other refusals do: the bytes behind it were meant
    // for the tunnel and are never read as a request.
    let mut c = http::Conn::open(direct.addr()).unwrap();
    c.send(
        format!(
            "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\nVia: {looped}\r\n\r\n\
             GET /tunnelled HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let r = c.read_response("CONNECT").unwrap();
    assert_eq!(r.status, 508);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.read_response("GET").is_err());
    assert_eq!(origin.paths(), ["/y"]);
}

#[test]
fn parent_rules_change_on_reload() {
    let origin = cacheable_origin();
    let relay = |name: &str| {
        Daemon::builder()
            .config(&format!(
                "[proxy.config]\nproxy_name = \"{name}\"\n[proxy.config.http]\ncache.http = false\n\
                 [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
                origin.addr
            ))
            .start()
    };
    let (pa, pb) = (relay("pa"), relay("pb"));
    let config = |p: &Daemon| {
        format!(
            "[proxy.config.http]\ncache.http = false\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{}\"]\n",
            origin.addr,
            p.addr()
        )
    };
    let c = Daemon::builder().config(&config(&pa)).start();
    let via = |path: &str| {
        let r = http::get(c.addr(), "t", path).unwrap();
        assert_eq!(r.status, 200);
        r.header("via").unwrap_or_default().to_string()
    };
    assert!(via("/1").starts_with("1.1 pa "));
    let up = |p: &Daemon| format!("proxy.process.http.parent.{}.up", p.addr());
    assert_eq!(c.metric(&up(&pa)), 1);
    let (code, out, err) = c.reload(&config(&pb));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("restart"), "{out}");
    assert!(via("/2").starts_with("1.1 pb "));
    // The parent the reload removed leaves the stats; the new one is there.
    assert_eq!(c.metric(&up(&pb)), 1);
    let (_, out, _) = c.ctl(&["metric", "match", "proxy.process.http.parent."]);
    assert!(!out.contains(&pa.addr().to_string()), "{out}");
    assert!(out.contains(&format!("{}.requests 1", pb.addr())), "{out}");
    // A parent whose name does not resolve refuses the reload, naming it.
    let (code, out, err) =
        c.reload(&config(&pb).replace(&pb.addr().to_string(), "no-such-host.invalid:80"));
    assert_eq!(code, 1);
    let said = format!("{out}{err}");
    assert!(
        said.contains("parent: entry 1: parent no-such-host.invalid:80"),
        "{said}"
    );
    assert!(via("/3").starts_with("1.1 pb "));
}

#[test]
fn parent_is_proxy_picks_the_request_form() {
    // The "parents" here are origin-side servers: they show the request line they got.
    let seen = Origin::start(|r| Some(ok(r.path.as_bytes(), &[])));
    let c = Daemon::builder()
        .config(&format!(
            "[[remap]]\nfrom = \"http://proxy.test/\"\nto = \"http://127.0.0.1:1/\"\n\
             [[remap]]\nfrom = \"http://server.test/\"\nto = \"http://localhost:1/\"\n\
             [[parent]]\ndest_domain = \"127.0.0.1\"\nparents = [\"{p}\"]\nparent_is_proxy = true\n\
             [[parent]]\ndest_domain = \"localhost\"\nparents = [\"{p}\"]\nparent_is_proxy = false\n",
            p = seen.addr
        ))
        .start();
    let r = http::get(c.addr(), "proxy.test", "/a?b").unwrap();
    assert_eq!(r.text(), "http://127.0.0.1:1/a?b");
    let r = http::get(c.addr(), "server.test", "/a?b").unwrap();
    assert_eq!(r.text(), "/a?b");
    let hosts: Vec<String> = seen
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.header("host").unwrap_or_default().to_string())
        .collect();
    assert_eq!(hosts, ["127.0.0.1:1", "localhost:1"]);
}

#[test]
fn a_parent_that_closes_the_retry_of_a_reused_connection_too_fails_over() {
    use std::io::{Read, Write};
    // A parent that answers its first connection's first request, keeps it open, and
    // closes every later request unanswered (a parent restarting, or shedding load).
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (n, s) in fake.incoming().enumerate() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let read_head = |s: &mut TcpStream, buf: &mut [u8]| {
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(buf) {
                            Ok(0) | Err(_) => return false,
                            Ok(k) => got.extend_from_slice(&buf[..k]),
                        }
                    }
                    true
                };
                if n == 0 && read_head(&mut s, &mut buf) {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
                }
                read_head(&mut s, &mut buf);
            });
        }
    });
    let origin = cacheable_origin();
    let span = TempDir::new("parent-retry");
    let p2 = parent("p2", 0, &span);
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config]\nproxy_name = \"child\"\n\
             exec_thread.autoconfig.enabled = false\nexec_thread.limit = 1\n\
             [proxy.config.http]\ncache.http = false\n\
             parent_proxy.fail_threshold = 10\nparent_proxy.total_connect_attempts = 2\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{fake_addr}\", \"{}\"]\n\
             round_robin = \"false\"\ngo_direct = false\n",
            origin.addr,
            p2.addr()
        ))
        .start();
    // One client connection: its second request goes on the parent connection the
    // first one used (kept, as the pool runs short).
    let mut c = http::Conn::open(d.addr()).unwrap();
    let r = c.get("t", "/first").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "first"));
    // That connection is reused and closed; its retry on a fresh connection is closed
    // too: the next parent answers, not a 502.
    let r = c.get("t", "/second").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "/second"), "{r:?}");
    assert_eq!(d.metric("proxy.process.http.parent_failovers"), 1);
}

#[test]
fn an_https_origin_is_asked_of_a_proxy_parent_as_an_https_url_in_plain_http() {
    // RFC 9112 §3.2.2: the child sends the `https://` URL, in plain HTTP; the parent,
    // a forward proxy, speaks TLS to the origin and caches what it got.
    let ca = util::tls::Ca::new("Tier CA");
    let leaf = ca.leaf(&["localhost"], "localhost");
    let fields = "Cache-Control: max-age=3600\r\n";
    let origin = util::tls::TlsOrigin::with_fields(&leaf, fields, "over tls");
    let span = TempDir::new("tier-tls");
    let ca_path = span.0.join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let p = Daemon::builder()
        .config(&format!(
            "[proxy.config]\nproxy_name = \"p0\"\n\
             [proxy.config.http]\nwait_for_cache = 1\n\
             [proxy.config.log]\naccess_log = \"{0}/access.log\"\n\
             [proxy.config.url_remap]\nremap_required = false\n\
             [proxy.config.ssl]\nclient.verify.server.policy = \"ENFORCED\"\n\
             client.CA.cert.filename = \"{0}/ca.pem\"\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{0}\", size = \"8M\" }}]\n",
            span.0.display()
        ))
        .start();
    let c = Daemon::builder()
        .config(&format!(
            "[proxy.config]\nproxy_name = \"child\"\n\
             [proxy.config.http]\ncache.http = false\n\
             [[remap]]\nfrom = \"/\"\nto = \"https://localhost:{}/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{}\"]\n",
            origin.addr.port(),
            p.addr()
        ))
        .start();
    for _ in 0..2 {
        let r = http::get(c.addr(), "t", "/s").unwrap();
        let logs = || format!("child: {}\nparent: {}", c.log_text(), p.log_text());
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "over tls"),
            "{}",
            logs()
        );
        assert_eq!(served_by(&r), "p0");
    }
    assert_eq!(
        origin.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the second came from the parent's cache"
    );
    let log = util::log_lines(&span.0.join("access.log"), 2);
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("GET https://localhost:{}/s", origin.addr.port()))),
        "{log:?}"
    );
}

#[test]
fn stale_hits_during_one_background_revalidation_count_one_parent_request() {
    // A parent (here a plain server taking the proxy's absolute form) that is slow to
    // revalidate: the stale hits meanwhile start no revalidation of their own, and so
    // pick no parent and count no request to one.
    let p = Origin::start(|r| {
        if r.header("if-none-match").is_some() {
            std::thread::sleep(Duration::from_millis(1500));
        }
        let cc = ("Cache-Control", "max-age=1, stale-while-revalidate=60");
        Some(ok(b"tier", &[cc, ("ETag", "\"v\"")]))
    });
    let span = TempDir::new("swr-tier");
    let c = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 1\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"8M\" }}]\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://127.0.0.1:1/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{}\"]\ngo_direct = false\n",
            span.0.display(),
            p.addr
        ))
        .start();
    let get = || http::get(c.addr(), "t", "/swr").unwrap();
    assert_eq!(get().text(), "tier");
    let started = wait_until(Duration::from_secs(10), || {
        assert_eq!(get().text(), "tier");
        c.metric("proxy.process.http.cache_revalidations_background") >= 1
    });
    assert!(started);
    for _ in 0..5 {
        assert_eq!(get().text(), "tier");
    }
    let seen = || p.requests.lock().unwrap().len() as i64;
    assert!(wait_until(Duration::from_secs(10), || seen() == 2));
    let counted = c.metric(&format!("proxy.process.http.parent.{}.requests", p.addr));
    assert_eq!(
        (
            counted,
            c.metric("proxy.process.http.cache_revalidations_background")
        ),
        (2, 1)
    );
}

#[test]
fn a_parent_that_takes_a_request_and_falls_silent_fails_over() {
    // A parent that accepts and never answers is a failure as one that refuses is: the
    // GET goes to the next parent once `transaction_no_activity_timeout_out` passes,
    // and the silent one is counted against its health.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let over = done.clone();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        hung.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < until && !over.load(std::sync::atomic::Ordering::SeqCst) {
            match hung.accept() {
                Ok((s, _)) => conns.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        conns
    });
    let good = Origin::start(|r| Some(ok(r.path.as_bytes(), &[])));
    let c = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\ncache.http = false\n\
             transaction_no_activity_timeout_out = 1\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://127.0.0.1:1/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{hung_addr}\", \"{}\"]\n\
             round_robin = \"false\"\ngo_direct = false\n",
            good.addr
        ))
        .start();
    let r = http::get(c.addr(), "t", "/g").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "http://127.0.0.1:1/g"));
    let failures = c.metric(&format!(
        "proxy.process.http.parent.{hung_addr}.connect_failures"
    ));
    assert_eq!(failures, 1);
    assert_eq!(c.metric("proxy.process.http.parent_failovers"), 1);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(held.join());
}

#[test]
fn a_childs_hit_keeps_the_parents_via_entry_and_its_log_names_the_parent() {
    // RFC 9110 §7.6.3: the Via of a stored response names the hops it came by; a hit
    // adds this proxy's entry after them, as the miss did.
    let origin = cacheable_origin();
    let span = TempDir::new("via-p0");
    let p = parent("p0", 0, &span);
    let child_span = TempDir::new("via-child");
    let c = Daemon::builder()
        .config(&format!(
            "[proxy.config]\nproxy_name = \"child\"\n\
             [proxy.config.http]\nwait_for_cache = 1\n\
             [proxy.config.log]\naccess_log = \"{0}/access.log\"\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{0}\", size = \"8M\" }}]\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{origin}/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{1}\"]\n",
            child_span.0.display(),
            p.addr(),
            origin = origin.addr
        ))
        .start();
    let miss = fetch(&c, "/v");
    let hit = fetch(&c, "/v");
    assert_eq!(c.metric("proxy.process.cache.hits"), 1);
    for r in [&miss, &hit] {
        // One field line or several: a list either way (RFC 9110 §5.3).
        let lines: Vec<&str> = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("via"))
            .map(|(_, v)| v.as_str())
            .collect();
        let via = lines.join(", ");
        let hops: Vec<&str> = via
            .split(',')
            .map(|e| e.trim().split(' ').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(hops, ["p0", "child"], "{via}");
    }
    // The access log tells a fetch from a parent from one from the origin.
    let lines = util::log_lines(&child_span.0.join("access.log"), 2);
    assert!(
        lines[0].ends_with(&format!(" - PARENT_HIT/{} -", p.addr())),
        "{lines:?}"
    );
    assert!(lines[1].contains("TCP_HIT/200") && lines[1].ends_with(" - NONE/- -"));
}

#[test]
fn a_name_only_the_parents_resolve_still_goes_to_them_under_go_direct() {
    // With go_direct, a forward proxy looks its origin's name up for the way direct;
    // a name it cannot resolve still goes to the parents, with no way direct.
    let p = Origin::start(|r| Some(ok(r.path.as_bytes(), &[])));
    let c = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\ncache.http = false\n\
             [proxy.config.url_remap]\nremap_required = false\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{}\"]\ngo_direct = true\n",
            p.addr
        ))
        .start();
    let mut conn = http::Conn::open(c.addr()).unwrap();
    conn.send(b"GET http://no-such-host.invalid/x HTTP/1.1\r\nHost: no-such-host.invalid\r\n\r\n")
        .unwrap();
    let r = conn.read_response("GET").unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "http://no-such-host.invalid/x")
    );
}

#[test]
fn a_request_failed_over_to_the_next_parent_takes_a_place_under_its_limit() {
    // per_server.connection.max holds for a parent a request fails over to, as for the
    // first: two requests moved from a refusing parent reach the next one by turns.
    let (_l, _c, refused) = dead_addr();
    let now = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (n, m) = (now.clone(), most.clone());
    let slow = Origin::start(move |r| {
        use std::sync::atomic::Ordering::SeqCst;
        let at = n.fetch_add(1, SeqCst) + 1;
        m.fetch_max(at, SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        n.fetch_sub(1, SeqCst);
        Some(ok(r.path.as_bytes(), &[("Connection", "close")]))
    });
    let c = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\ncache.http = false\nper_server.connection.max = 1\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://127.0.0.1:1/\"\n\
             [[parent]]\ndest_domain = \".\"\nparents = [\"{refused}\", \"{}\"]\n\
             round_robin = \"false\"\ngo_direct = false\n",
            slow.addr
        ))
        .start();
    let addr = c.addr();
    let clients: Vec<_> = (0..2)
        .map(|i| std::thread::spawn(move || http::get(addr, "t", &format!("/{i}")).unwrap()))
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap().status, 200);
    }
    assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(c.metric("proxy.process.http.parent_failovers"), 2);
}

#[test]
fn a_parents_bad_answer_is_worded_as_the_parents_not_the_origins() {
    use std::io::{Read, Write};
    // A parent that answers every request with a head no HTTP parser takes: a response
    // byte came, so the request does not fail over, and the client's 502 names the
    // parent as what failed.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut s in fake.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 999 Nonsense\r\nContent-Length: 0\r\n\r\n");
            });
        }
    });
    let origin = cacheable_origin();
    let d = child(origin.addr, &[fake_addr], "");
    let r = http::get(d.addr(), "t", "/x").unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("from parent proxy"), "{}", r.text());
}
