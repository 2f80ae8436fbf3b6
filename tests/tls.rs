//! TLS through the real binary (SPEC §9): certificates by SNI, ALPN, resumption, live
//! certificate reload under load, bad files, TLS to origins under each verification
//! policy, stats over TLS, and bad input on a TLS port.

mod util;

use rustls::pki_types::CertificateDer;
use rustls::HandshakeKind;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::origin::Origin;
use util::tls::{self as tls, Ca, Leaf, TlsOrigin};
use util::{wait_until, Daemon};

static V13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
static V12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// records.toml for an `ssl` port (first) and a plain one, remapping to `origin`, with
/// `extra` appended.
fn config(origin: SocketAddr, extra: &str) -> String {
    format!(
        "[proxy.config]\naccept_threads = 0\n\
         [proxy.config.http]\nserver_ports = \"0:ssl 0\"\n\
         [[remap]]\nfrom = \"/\"\nto = \"http://{origin}/\"\n{extra}"
    )
}

fn multicert(name: &str, dest_ip: Option<&str>) -> String {
    let dest = dest_ip.map_or(String::new(), |d| format!("dest_ip = \"{d}\"\n"));
    format!(
        "[[ssl_multicert]]\nssl_cert_name = \"{name}.pem\"\nssl_key_name = \"{name}.key\"\n{dest}"
    )
}

/// Starts a daemon whose directory holds `certs` (written before the start).
fn daemon_with(certs: &[(&Leaf, &str)], text: &str) -> Daemon {
    daemon_env(certs, text, &[])
}

fn daemon_env(certs: &[(&Leaf, &str)], text: &str, env: &[(&str, &str)]) -> Daemon {
    let dir = util::TempDir::new("certs");
    for (leaf, name) in certs {
        leaf.write(&dir.0, name);
    }
    let mut b = Daemon::builder().env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0:ssl 0");
    for (k, v) in env {
        b = b.env(k, v);
    }
    let d = b
        .env(
            "PROXY_CONFIG_SSL_SERVER_CERT_PATH",
            &dir.0.display().to_string(),
        )
        .env(
            "PROXY_CONFIG_SSL_SERVER_PRIVATE_KEY_PATH",
            &dir.0.display().to_string(),
        )
        .config(text)
        .start();
    // Keep the files as long as the daemon (reloads read them again).
    std::mem::forget(dir);
    d
}

fn cert_dir(d: &Daemon) -> std::path::PathBuf {
    let dir = d
        .env
        .iter()
        .find(|(k, _)| k == "PROXY_CONFIG_SSL_SERVER_CERT_PATH")
        .map(|(_, v)| v.clone())
        .unwrap();
    dir.into()
}

/// A client trusting `ca`, asking for ALPN `http/1.1`.
fn trusting(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(tls::provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// The certificate the server presents to a client asking for `name`.
fn presented(addr: SocketAddr, name: &str) -> CertificateDer<'static> {
    let (cfg, rec) = tls::recording_client(V13);
    let s = tls::connect(&cfg, addr, name).expect("handshake");
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "ALPN");
    let seen = rec.seen.lock().unwrap().clone().unwrap();
    seen
}

#[test]
fn sni_picks_exact_then_wildcard_then_the_default_and_http_flows_over_tls() {
    let ca = Ca::new("Test CA");
    let exact = ca.leaf(&["exact.test", "www.exact.test"], "exact");
    let wild = ca.leaf(&["*.wild.test"], "wild");
    let default = ca.leaf(&["default.test"], "default");
    let cn_only = ca.leaf(&[], "cn.test");
    let rsa = ca.rsa_leaf(&["rsa.test"], "rsa");
    let origin = Origin::fixed(b"hello over tls");
    let log_dir = util::TempDir::new("tlslog");
    let access = log_dir.0.join("access.log");
    let text = config(
        origin.addr,
        &format!(
            "[proxy.config.log]\naccess_log = \"{}\"\n{}{}{}{}{}",
            access.display(),
            multicert("wild", None),
            multicert("exact", None),
            multicert("default", Some("*")),
            multicert("cn", None),
            multicert("rsa", None),
        ),
    );
    let d = daemon_with(
        &[
            (&exact, "exact"),
            (&wild, "wild"),
            (&default, "default"),
            (&cn_only, "cn"),
            (&rsa, "rsa"),
        ],
        &text,
    );
    let addr = d.addrs()[0];
    assert_eq!(presented(addr, "exact.test"), exact.der, "exact name");
    assert_eq!(presented(addr, "rsa.test"), rsa.der, "an RSA key");
    assert_eq!(
        presented(addr, "WWW.Exact.Test"),
        exact.der,
        "names ignore case"
    );
    assert_eq!(presented(addr, "a.wild.test"), wild.der, "wildcard");
    assert_eq!(
        presented(addr, "a.b.wild.test"),
        default.der,
        "a wildcard covers one label"
    );
    assert_eq!(
        presented(addr, "cn.test"),
        cn_only.der,
        "CN without subjectAltName"
    );
    assert_eq!(
        presented(addr, "unknown.test"),
        default.der,
        "no match: the default"
    );
    assert_eq!(
        presented(addr, "127.0.0.1"),
        default.der,
        "no SNI: the default"
    );

    // HTTP over TLS, keep-alive, verified against the test CA.
    let cfg = trusting(&ca);
    let mut s = tls::connect(&cfg, addr, "exact.test").unwrap();
    for _ in 0..3 {
        assert_eq!(
            tls::get(&mut s, "exact.test", "/x").unwrap(),
            (200, "hello over tls".to_string())
        );
    }
    // The stats endpoint answers over TLS too.
    let (status, body) = tls::get(&mut s, "exact.test", "/_stats").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"proxy.process.ssl.total_success_handshake_count_in\": "));
    drop(s);
    assert!(d.metric("proxy.process.ssl.total_success_handshake_count_in") >= 8);
    assert_eq!(d.metric("proxy.process.ssl.certificates_loaded"), 5);
    let lines = util::log_lines(&access, 4);
    assert!(
        lines.iter().any(|l| l.contains("https://exact.test/x")),
        "access log shows https:// URLs: {lines:?}"
    );
}

#[test]
fn sessions_resume_with_tickets_and_session_ids_and_are_counted() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["resume.test"], "resume");
    let origin = Origin::fixed(b"ok");
    let d = daemon_with(
        &[(&leaf, "r")],
        &config(origin.addr, &multicert("r", Some("*"))),
    );
    let addr = d.addrs()[0];
    for versions in [V13, V12] {
        let (cfg, _) = tls::resuming_client(versions);
        let first = tls::connect(&cfg, addr, "resume.test").unwrap();
        assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
        let mut first = first;
        // TLS 1.3 tickets come after the handshake: read a response so they arrive.
        assert_eq!(tls::get(&mut first, "resume.test", "/").unwrap().0, 200);
        drop(first);
        let mut again = tls::connect(&cfg, addr, "resume.test").unwrap();
        assert_eq!(
            again.conn.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{versions:?}"
        );
        assert_eq!(tls::get(&mut again, "resume.test", "/").unwrap().0, 200);
    }
    assert_eq!(
        d.metric("proxy.process.ssl.total_resumed_handshake_count_in"),
        2
    );
}

#[test]
fn a_renewed_certificate_is_served_after_reload_with_no_failed_client_and_a_bad_file_is_refused_by_name(
) {
    let ca = Ca::new("Test CA");
    let old = ca.leaf(&["live.test"], "old");
    let new = ca.leaf(&["live.test"], "new");
    let origin = Origin::fixed(b"ok");
    let d = daemon_with(
        &[(&old, "live")],
        &config(origin.addr, &multicert("live", Some("*"))),
    );
    let addr = d.addrs()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen_new = Arc::new(AtomicBool::new(false));
    let loop_thread = {
        let (stop, done, failed, seen_new) =
            (stop.clone(), done.clone(), failed.clone(), seen_new.clone());
        let new_der = new.der.clone();
        std::thread::spawn(move || {
            let (cfg, rec) = tls::recording_client(V13);
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let ok = tls::connect(&cfg, addr, "live.test")
                    .and_then(|mut s| tls::get(&mut s, "live.test", "/"))
                    .is_ok_and(|(st, _)| st == 200);
                if ok {
                    done.fetch_add(1, Ordering::SeqCst);
                    if rec.seen.lock().unwrap().as_ref() == Some(&new_der) {
                        seen_new.store(true, Ordering::SeqCst);
                    }
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    assert!(wait_until(Duration::from_secs(10), || done
        .load(Ordering::SeqCst)
        >= 20));
    // Renew: new files in place, then a reload.
    new.write(&cert_dir(&d), "live");
    let (code, out, err) = d.ctl(&["config", "reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(wait_until(Duration::from_secs(10), || seen_new.load(Ordering::SeqCst)));
    let before = done.load(Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(10), || done
        .load(Ordering::SeqCst)
        >= before + 20));
    // A bad file: the reload is refused naming it, and what is served stays.
    let key = cert_dir(&d).join("live.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let (code, out, err) = d.ctl(&["config", "reload"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("live.key"), "the error names the file: {err}");
    let before = done.load(Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(10), || done
        .load(Ordering::SeqCst)
        >= before + 20));
    stop.store(true, Ordering::SeqCst);
    loop_thread.join().unwrap();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no client failed");
    assert_eq!(presented(addr, "live.test"), new.der);
    assert_eq!(d.metric("proxy.process.ssl.certificate_reload_failures"), 1);
}

#[test]
fn check_and_start_name_a_missing_or_bad_certificate_file() {
    let dir = util::TempDir::new("badcert");
    std::fs::write(dir.0.join("bad.pem"), "not a certificate").unwrap();
    let write = |name: &str| {
        let p = dir.0.join("records.toml");
        std::fs::write(
            &p,
            format!(
                "[proxy.config.http]\nserver_ports = \"0:ssl\"\n{}",
                multicert(name, Some("*"))
            ),
        )
        .unwrap();
        p
    };
    for (name, file) in [("missing", "missing.pem"), ("bad", "bad.pem")] {
        let p = write(name);
        let (code, _, err) = util::run(&dir.0, &["check", "--config", p.to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{err}");
        // The file and line of the key that names it, as the records' own errors do.
        let place = format!("{}:4: ssl_multicert: entry 1: ssl_cert_name: ", p.display());
        assert!(err.starts_with(&place) && err.contains(file), "{err}");
    }
    // Set from the environment, the CA file's error names the variable instead.
    let p = write("missing");
    let var = "PROXY_CONFIG_SSL_CLIENT_CA_CERT_FILENAME";
    let (code, _, err) = util::run(
        &dir.0,
        &["check", "--config", p.to_str().unwrap()],
        &[(var, "no-ca.pem")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "environment variable {var}: proxy.config.ssl.client.CA.cert.filename: "
        )) && err.contains("no-ca.pem"),
        "{err}"
    );
    // An ssl port with no certificate at all.
    let p = dir.0.join("records.toml");
    std::fs::write(&p, "[proxy.config.http]\nserver_ports = \"0:ssl\"\n").unwrap();
    let (code, _, err) = util::run(&dir.0, &["check", "--config", p.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ssl_multicert"), "{err}");
}

/// A daemon remapping `/` to the TLS origin as `https://localhost:PORT/`, with `ssl`
/// records `extra`.
fn origin_daemon(origin: &TlsOrigin, extra: &str) -> Daemon {
    Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nserver_ports = \"0\"\n\
             [proxy.config.ssl]\n{extra}\n\
             [[remap]]\nfrom = \"/\"\nto = \"https://localhost:{0}/\"\n\
             [[remap]]\nfrom = \"/ip/\"\nto = \"https://127.0.0.1:{0}/\"\n",
            origin.addr.port()
        ))
        .start()
}

#[test]
fn origins_over_tls_follow_the_verification_policy_and_are_pooled() {
    let ca = Ca::new("Origin CA");
    let leaf = ca.leaf(&["localhost", "127.0.0.1"], "localhost");
    let origin = TlsOrigin::start(&leaf, "from a tls origin");
    let ca_file = util::TempDir::new("ca");
    let ca_path = ca_file.0.join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();

    // Trusted through the CA file: 200, and the connection is reused.
    let d = origin_daemon(
        &origin,
        &format!("client.CA.cert.filename = \"{}\"", ca_path.display()),
    );
    let mut c = util::http::Conn::open(d.addr()).unwrap();
    for _ in 0..3 {
        let r = c.get("x", "/a").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "from a tls origin"));
    }
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        1,
        "pooled and reused"
    );
    assert_eq!(
        d.metric("proxy.process.ssl.total_success_handshake_count_out"),
        1
    );
    drop(d);

    // Unknown CA under ENFORCED: 502, and a log line naming why.
    let d = origin_daemon(&origin, "client.verify.server.policy = \"ENFORCED\"");
    let r = util::http::Conn::open(d.addr())
        .unwrap()
        .get("x", "/b")
        .unwrap();
    assert_eq!(r.status, 502);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let log = d.log_text();
            log.contains("TLS failed") && log.contains("localhost") && log.contains("UnknownIssuer")
        }),
        "{}",
        d.log_text()
    );
    assert_eq!(d.metric("proxy.process.ssl.origin_server_bad_cert"), 1);
    drop(d);

    // PERMISSIVE: logged, served.
    let d = origin_daemon(&origin, "client.verify.server.policy = \"PERMISSIVE\"");
    let r = util::http::Conn::open(d.addr())
        .unwrap()
        .get("x", "/c")
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "from a tls origin"));
    assert!(wait_until(Duration::from_secs(5), || {
        d.log_text().contains("does not verify")
    }));
}

/// Reads until EOF or `limit`: true if the server closed (EOF or reset) in time.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(bytes);
    s
}

#[test]
fn bad_input_on_a_tls_port_is_closed_and_counted() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["bad.test"], "bad");
    let origin = Origin::fixed(b"ok");
    let d = daemon_env(
        &[(&leaf, "b")],
        &config(origin.addr, &multicert("b", Some("*"))),
        &[("PROXY_CONFIG_HTTP_ACCEPT_NO_ACTIVITY_TIMEOUT", "1")],
    );
    let addr = d.addrs()[0];
    let m = |reason: &str| d.metric(&format!("proxy.process.ssl.failure.{reason}.handshakes_in"));
    let limit = Duration::from_secs(5);

    let mut s = raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed_within(&mut s, limit), "plain HTTP closed");
    assert!(wait_until(limit, || m("plain_http") == 1));

    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8 | 1).collect();
    // A record holding a ClientHello of the right length whose body is noise.
    let mut s = raw(
        addr,
        &[&[0x16, 3, 1, 0, 200, 1, 0, 0, 196][..], &garbage[..196]].concat(),
    );
    assert!(closed_within(&mut s, limit), "garbage ClientHello closed");
    assert!(
        wait_until(limit, || m("bad_client_hello") == 1),
        "{:?}",
        d.ctl(&["metric", "match", "ssl.failure"])
    );

    // A truncated ClientHello, then the client leaves.
    let s = raw(addr, &[0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3, 0, 0]);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut s = s;
    assert!(closed_within(&mut s, limit));
    assert!(wait_until(limit, || m("eof") == 1));

    // A ClientHello that claims 128 KiB: refused once rustls's 64 KiB limit is reached.
    let mut hello = vec![1u8, 0x02, 0x00, 0x00];
    hello.resize(70_000, 0x41);
    let mut s = TcpStream::connect(addr).unwrap();
    for chunk in hello.chunks(16_000) {
        let mut rec = vec![0x16, 3, 1, (chunk.len() >> 8) as u8, chunk.len() as u8];
        rec.extend_from_slice(chunk);
        if s.write_all(&rec).is_err() {
            break;
        }
    }
    assert!(closed_within(&mut s, limit), "oversized ClientHello closed");
    assert!(wait_until(limit, || m("oversized") == 1));

    // A client that stops mid-handshake: closed after accept_no_activity_timeout.
    let mut s = raw(addr, &[0x16, 3, 1]);
    assert!(closed_within(&mut s, limit), "stalled handshake closed");
    assert!(wait_until(limit, || m("timeout") == 1));

    // Renegotiation (TLS 1.2) needs a client that does it: openssl s_client.
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok()
    {
        let mut child = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string(), "-tls1_2"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Wait for the handshake before asking to renegotiate.
        assert!(wait_until(limit, || d
            .metric("proxy.process.ssl.total_success_handshake_count_in")
            >= 1));
        let _ = stdin.write_all(b"R\n");
        assert!(
            wait_until(limit, || m("renegotiation") == 1),
            "renegotiation counted"
        );
        drop(stdin);
        let _ = child.kill();
        let _ = child.wait();
    } else {
        eprintln!("openssl not found: the renegotiation case is covered by the unit tests only");
    }
    // Never stuck: nothing is left open but what clients hold.
    assert!(wait_until(limit, || d
        .metric("proxy.process.ssl.user_agent_sessions")
        == 0));
    assert!(d.metric("proxy.process.ssl.total_handshake_failures_in") >= 5);
}

#[test]
fn handshake_counters_add_up_when_a_client_resets_mid_hello_and_a_tcp_check_counts_nowhere() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["sum.test"], "sum");
    let origin = Origin::fixed(b"ok");
    let d = daemon_with(
        &[(&leaf, "s")],
        &config(origin.addr, &multicert("s", Some("*"))),
    );
    let addr = d.addrs()[0];
    let m = |n: &str| d.metric(&format!("proxy.process.ssl.{n}"));
    let limit = Duration::from_secs(5);
    let all_closed = || wait_until(limit, || m("user_agent_sessions") == 0);

    // Part of a ClientHello, then a reset: an attempt that failed (the client left).
    let s = raw(addr, &[0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3]);
    assert!(wait_until(limit, || m("total_attempts_handshake_count_in") == 1));
    assert!(util::set_linger0(&s), "SO_LINGER");
    drop(s);
    assert!(all_closed());
    assert_eq!(
        m("total_handshake_failures_in"),
        1,
        "the reset is a failure"
    );
    assert_eq!(m("failure.eof.handshakes_in"), 1);

    // A balancer's TCP check, closed with a FIN or a reset before any byte: counted
    // nowhere, as on a `pp` port.
    for reset in [false, true] {
        let s = TcpStream::connect(addr).unwrap();
        assert!(wait_until(limit, || m("user_agent_sessions") == 1));
        if reset {
            assert!(util::set_linger0(&s), "SO_LINGER");
        }
        drop(s);
        assert!(all_closed());
    }
    assert_eq!(m("total_attempts_handshake_count_in"), 1);
    assert_eq!(m("total_handshake_failures_in"), 1);
    assert_eq!(m("failure.eof.handshakes_in"), 1);
    assert_eq!(m("total_success_handshake_count_in"), 0);
}

#[test]
fn an_origin_that_resets_closes_or_stalls_the_handshake_counts_as_a_failure_out() {
    // Four origins that never finish a handshake, one route each.
    let modes = ["reset", "close", "hello-reset", "stall"];
    let mut routes = String::new();
    for mode in modes {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        routes += &format!(
            "[[remap]]\nfrom = \"/{mode}/\"\nto = \"https://localhost:{}/\"\n",
            l.local_addr().unwrap().port()
        );
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                match mode {
                    "reset" => {
                        util::set_linger0(&s);
                    }
                    "close" => {}
                    "hello-reset" => {
                        let _ = s.read(&mut [0u8; 100]);
                        util::set_linger0(&s);
                    }
                    _ => {
                        held.push(s);
                        continue;
                    }
                }
                drop(s);
            }
        });
    }
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_TRANSACTION_NO_ACTIVITY_TIMEOUT_OUT", "1")
        .config(&format!(
            "[proxy.config.http]\nserver_ports = \"0\"\n\
             [proxy.config.ssl]\nclient.verify.server.policy = \"DISABLED\"\n{routes}"
        ))
        .start();
    let m = |n: &str| d.metric(&format!("proxy.process.ssl.{n}"));
    let reason = |r: &str| m(&format!("failure.{r}.handshakes_out"));
    for mode in modes {
        let r = util::http::get(d.addr(), "x", &format!("/{mode}/a")).unwrap();
        let want = if mode == "stall" { 504 } else { 502 };
        assert_eq!(r.status, want, "{mode}");
        // Every handshake begun ends in a success or a failure (one the origin reset
        // before the ClientHello went may not have begun).
        assert!(
            wait_until(Duration::from_secs(5), || {
                m("total_attempts_handshake_count_out")
                    == m("total_success_handshake_count_out") + m("total_handshake_failures_out")
            }),
            "{mode}: {:?}",
            d.ctl(&["metric", "match", "ssl.*_out"])
        );
    }
    assert_eq!(m("total_success_handshake_count_out"), 0);
    assert!(
        reason("eof") >= 1,
        "the origin that read the hello, then reset"
    );
    assert_eq!(reason("timeout"), 1, "the origin that stalled");
    assert_eq!(
        m("total_handshake_failures_out"),
        reason("eof") + reason("timeout")
    );
}

#[test]
fn a_blind_ssl_port_terminates_tls_then_relays_bytes() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["blind.test"], "blind");
    let origin = Origin::fixed(b"relayed");
    let d = daemon_env(
        &[(&leaf, "b")],
        &config(origin.addr, &multicert("b", Some("*"))),
        &[(
            "PROXY_CONFIG_HTTP_SERVER_PORTS",
            &format!("0:blind:tunnel=[{}]:ssl", origin.addr),
        )],
    );
    let addr = d.addrs()[0];
    let (cfg, _) = tls::recording_client(V13);
    let mut s = tls::connect(&cfg, addr, "blind.test").unwrap();
    // The origin sees the client's plaintext, and its answer comes back encrypted.
    assert_eq!(
        tls::get(&mut s, "blind.test", "/").unwrap(),
        (200, "relayed".to_string())
    );
    assert_eq!(origin.request_count(), 1);
    assert_eq!(
        d.metric("proxy.process.ssl.total_success_handshake_count_in"),
        1
    );
}

#[test]
fn a_close_notify_sent_with_the_request_gets_the_whole_answer_then_the_close() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["half.test"], "half");
    const LEN: usize = 1 << 21;
    let body: &'static [u8] = Box::leak(vec![b'x'; LEN].into_boxed_slice());
    let origin = Origin::fixed(body);
    let d = daemon_with(
        &[(&leaf, "half")],
        &config(origin.addr, &multicert("half", Some("*"))),
    );
    for (round, small) in [(0, false), (1, true), (2, false), (3, true)] {
        let (cfg, _) = tls::recording_client(V13);
        let mut s = tls::connect(&cfg, d.addrs()[0], "half.test").unwrap();
        let path = if small { "/_stats" } else { "/big" };
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        // The client's close_notify right behind its request, no FIN: it still reads
        // (RFC 8446 §6.1 closes only its write side).
        s.conn.send_close_notify();
        s.flush().unwrap();
        if !small {
            // A client slow to read: the answer backs up into the socket and the TLS
            // layer while the proxy reads the close_notify.
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut got = Vec::new();
        // The close must follow the answer at once: a stranded close_notify held the
        // connection to the keep-alive timeout (the read times out after 10 s).
        let r = s.read_to_end(&mut got);
        assert!(r.is_ok(), "round {round}: {r:?} after {} bytes", got.len());
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(got.starts_with(b"HTTP/1.1 200 "), "round {round}");
        if !small {
            assert_eq!(
                got.len() - head_end,
                LEN,
                "round {round}: the answer was cut"
            );
        }
    }
}

/// A daemon with a cache in front of the TLS origin `https://localhost:PORT/`, trusting
/// `ca`; its directory (span, CA file) lives as long as the returned one.
fn caching_daemon_of_tls_origin(ca: &Ca, port: u16, tag: &str) -> (Daemon, util::TempDir) {
    let dir = util::TempDir::new(tag);
    let ca_path = dir.0.join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 1\n\
             [proxy.config.ssl]\nclient.CA.cert.filename = \"{}\"\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"8M\" }}]\n\
             [[remap]]\nfrom = \"/\"\nto = \"https://localhost:{port}/\"\n",
            ca_path.display(),
            dir.0.display(),
        ))
        .start();
    (d, dir)
}

#[test]
fn a_stale_object_of_a_tls_origin_is_revalidated_in_the_background_over_tls() {
    // RFC 5861 §3: served stale at once, while the background revalidation asks the
    // origin, over TLS as the foreground would.
    let ca = Ca::new("Origin CA");
    let leaf = ca.leaf(&["localhost"], "localhost");
    let fields = "Cache-Control: max-age=1, stale-while-revalidate=60\r\n";
    let origin = TlsOrigin::with_fields(&leaf, fields, "fresh from tls");
    let (d, _dir) = caching_daemon_of_tls_origin(&ca, origin.addr.port(), "swr-tls");
    let get = || util::http::get(d.addr(), "x", "/swr").unwrap();
    assert_eq!(get().text(), "fresh from tls");
    // Stale after a second: each GET then answers at once, and one of them starts
    // the revalidation that reaches the origin.
    let revalidated = wait_until(Duration::from_secs(10), || {
        assert_eq!(get().text(), "fresh from tls");
        d.metric("proxy.process.http.cache_revalidated_background") >= 1
    });
    assert!(revalidated, "{}", d.log_text());
    assert_eq!(origin.requests.load(Ordering::SeqCst), 2);
}

/// A TLS origin answering each connection's request with a close-delimited cacheable
/// body, then closing: with its close_notify when the path is `/clean`, with a bare FIN
/// (a truncation, as an attacker could make one) otherwise.
fn close_delimited_origin(leaf: &Leaf) -> SocketAddr {
    let cfg = tls::server_config(leaf);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let clean = head.starts_with(b"GET /clean ");
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nConnection: close\r\n\r\nPARTIAL-BODY",
                );
                let _ = s.flush();
                if clean {
                    s.conn.send_close_notify();
                    let _ = s.conn.write_tls(&mut s.sock);
                }
                let _ = s.sock.shutdown(std::net::Shutdown::Write);
                let _ = s.sock.read(&mut b);
            });
        }
    });
    addr
}

#[test]
fn a_close_delimited_body_a_tls_origin_ends_without_close_notify_is_not_stored() {
    // RFC 9112 §9.8: over TLS, a body delimited by the close is whole only when a
    // close_notify came; a bare FIN may be a truncation, and is not stored as whole.
    let ca = Ca::new("Origin CA");
    let origin = close_delimited_origin(&ca.leaf(&["localhost"], "localhost"));
    let (d, _dir) = caching_daemon_of_tls_origin(&ca, origin.port(), "tls-trunc");
    for path in ["/clean", "/cut"] {
        let mut c = TcpStream::connect(d.addr()).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        // What came before the end: all of it (a cut one with a reset after it).
        let got = util::read_all(&mut c, Duration::from_secs(10));
        assert!(got.ends_with(b"PARTIAL-BODY"), "{path}: {got:?}");
    }
    let writes = || d.metric("proxy.process.cache.writes");
    assert!(wait_until(Duration::from_secs(5), || writes() >= 1));
    assert_eq!(
        writes(),
        1,
        "only the body ended by a close_notify is stored"
    );
    let hit = util::http::get(d.addr(), "x", "/clean").unwrap();
    assert_eq!((hit.status, hit.text().as_str()), (200, "PARTIAL-BODY"));
    assert_eq!(d.metric("proxy.process.cache.hits"), 1);
}

#[test]
fn a_reload_to_a_stricter_policy_applies_to_pooled_origin_connections_at_once() {
    // A connection made under PERMISSIVE to an origin whose certificate names another
    // host is not reused once a reload says ENFORCED: attached to its client or pooled,
    // the next request makes a new one, which fails verification (502).
    let ca = Ca::new("Origin CA");
    let origin = TlsOrigin::start(&ca.leaf(&["other.test"], "other.test"), "misnamed");
    let dir = util::TempDir::new("tls-policy");
    let ca_path = dir.0.join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let config = |policy: &str| {
        format!(
            "[proxy.config.ssl]\nclient.verify.server.policy = \"{policy}\"\n\
             client.CA.cert.filename = \"{}\"\n\
             [[remap]]\nfrom = \"/\"\nto = \"https://localhost:{}/\"\n",
            ca_path.display(),
            origin.addr.port()
        )
    };
    let d = Daemon::builder().config(&config("PERMISSIVE")).start();
    let mut kept = util::http::Conn::open(d.addr()).unwrap();
    assert_eq!(kept.get("x", "/a").unwrap().text(), "misnamed");
    // Each event thread's pool gets a connection too.
    for _ in 0..4 {
        let r = util::http::get(d.addr(), "x", "/b").unwrap();
        assert_eq!(r.text(), "misnamed");
    }
    let (code, _, err) = d.reload(&config("ENFORCED"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(kept.get("x", "/c").unwrap().status, 502, "the attached one");
    for _ in 0..4 {
        assert_eq!(util::http::get(d.addr(), "x", "/d").unwrap().status, 502);
    }
}

#[test]
fn a_tls_client_gets_close_notify_before_every_close_but_a_reset() {
    // RFC 8446 §6.1: each party sends close_notify before it closes its write side.
    // Here: after a body whose end only its origin's close told (the last bytes went
    // before that), after an idle timeout; and a connection silent till its timeout is
    // no handshake attempt.
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in origin.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                let _ = s.read(&mut b);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it");
                // The body is relayed before the close says it ended.
                std::thread::sleep(Duration::from_millis(200));
            });
        }
    });
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["exact.test"], "exact");
    let d = daemon_env(
        &[(&leaf, "exact")],
        &config(origin_addr, &multicert("exact", Some("*"))),
        &[("PROXY_CONFIG_HTTP_ACCEPT_NO_ACTIVITY_TIMEOUT", "1")],
    );
    let addr = d.addrs()[0];
    let cfg = trusting(&ca);

    // rustls reads a close without close_notify as UnexpectedEof.
    let mut s = tls::connect(&cfg, addr, "exact.test").unwrap();
    s.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /c HTTP/1.1\r\nHost: exact.test\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let end = s.read_to_end(&mut got);
    assert!(got.ends_with(b"all of it"), "{got:?}");
    assert!(
        end.is_ok(),
        "close_notify after a close-delimited body: {end:?}"
    );

    let mut idle = tls::connect(&cfg, addr, "exact.test").unwrap();
    idle.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let end = idle.read_to_end(&mut Vec::new());
    assert!(end.is_ok(), "close_notify before an idle close: {end:?}");

    let m = |n: &str| d.metric(&format!("proxy.process.ssl.{n}"));
    let attempts = m("total_attempts_handshake_count_in");
    let mut silent = TcpStream::connect(addr).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)));
    assert!(wait_until(Duration::from_secs(5), || {
        m("user_agent_sessions") == 0
    }));
    assert_eq!(
        (
            m("total_attempts_handshake_count_in"),
            m("total_handshake_failures_in")
        ),
        (attempts, 0),
        "a connection silent till its timeout is no attempt, as on a pp port"
    );
    assert_eq!(
        m("total_attempts_handshake_count_in"),
        m("total_success_handshake_count_in") + m("total_handshake_failures_in"),
    );
}
