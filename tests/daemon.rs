//! The daemon as an operator runs it: start-up, `check`, env overrides, ctl, reload with
//! live accept-thread swaps, graceful stop.

mod util;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::http;
use util::origin::Origin;
use util::{run, wait_until, Daemon, TempDir};

fn remap_to(origin: &Origin) -> String {
    format!(
        "[[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
        origin.addr
    )
}

#[test]
fn starts_with_no_config_file_and_serves_stats() {
    let d = Daemon::start();
    assert!(
        d.log_text().contains("<embedded records.toml>"),
        "{}",
        d.log_text()
    );
    let r = http::get(d.addr(), "test", "/_stats").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("{\"global\": {"), "{}", r.text());
    assert_eq!(d.metric("proxy.process.proxy.ports_ready"), 1);
}

#[test]
fn check_names_the_bad_key_and_line_and_exits_2() {
    let dir = TempDir::new("check");
    let path = dir.0.join("bad.toml");
    std::fs::write(
        &path,
        "[proxy.config.net]\naccept_period = 10\nthrottle_delay = -5\nnope = 1\n",
    )
    .unwrap();
    let (code, _out, err) = run(&dir.0, &["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml:3: proxy.config.net.throttle_delay"),
        "{err}"
    );
    assert!(err.contains("bad.toml:4: proxy.config.net.nope"), "{err}");
}

/// `turnstile check` of a file holding `text`: (exit code, stderr).
fn check_file(text: &str) -> (i32, String) {
    let dir = TempDir::new("check");
    let path = dir.0.join("m.toml");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = run(&dir.0, &["check", "--config", path.to_str().unwrap()], &[]);
    (code, err)
}

#[test]
fn check_names_the_record_of_a_number_too_large_for_toml() {
    let (code, err) = check_file("[proxy.config.net]\naccept_period = 9223372036854775808\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("m.toml:2: proxy.config.net.accept_period: TOML syntax error"),
        "{err}"
    );
}

#[test]
fn check_reports_a_duplicate_remap_at_the_duplicates_line() {
    let (code, err) = check_file(
        "[[remap]]\nfrom = \"http://a/\"\nto = \"http://127.0.0.1:9/\"\n\n\
         [[remap]]\nfrom = \"http://a/\"\nto = \"http://127.0.0.1:8/\"\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("m.toml:6: remap: entry 2: from \"http://a/\" is already mapped"),
        "{err}"
    );
}

#[test]
fn check_refuses_a_socket_path_too_long_and_a_span_too_small() {
    let long = format!("/tmp/{}.sock", "x".repeat(120));
    let (code, err) = check_file(&format!("[proxy.config.admin]\nsocket = {long:?}\n"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("m.toml:2: proxy.config.admin.socket: a socket path is at most 107 bytes"),
        "{err}"
    );
    let (code, err) =
        check_file("[proxy.config.cache]\nstorage = [{ path = \"/tmp/s\", size = \"1K\" }]\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "m.toml:2: proxy.config.cache.storage: entry 1: size: a span needs a size ≥ 1M"
        ),
        "{err}"
    );
}

#[test]
fn check_prints_the_effective_toml_and_env_overrides_win() {
    let dir = TempDir::new("check");
    let path = dir.0.join("records.toml");
    std::fs::write(&path, "[proxy.config]\naccept_threads = 1\n").unwrap();
    let (code, out, err) = run(&dir.0, &["check"], &[("PROXY_CONFIG_ACCEPT_THREADS", "3")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("accept_threads = 3"), "{out}");
    assert!(out.contains("PROXY_CONFIG_ACCEPT_THREADS"), "{out}");
    // The output is itself a valid configuration.
    std::fs::write(&path, &out).unwrap();
    let (code, again, err) = run(&dir.0, &["check"], &[("PROXY_CONFIG_ACCEPT_THREADS", "3")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        again
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_taken_port_exits_1_naming_the_port_and_errno() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut d = Daemon::builder()
        .env(
            "PROXY_CONFIG_HTTP_SERVER_PORTS",
            &format!("{port}:ip-in=127.0.0.1"),
        )
        .no_wait()
        .start();
    let status = d.wait_exit(Duration::from_secs(20)).expect("daemon exits");
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    assert!(
        log.contains(&port.to_string()) && log.contains("os error 98"),
        "{log}"
    );
}

#[test]
fn accepts_currently_open_is_the_sum_of_accept_threads_over_ports() {
    let d = Daemon::builder()
        .env(
            "PROXY_CONFIG_HTTP_SERVER_PORTS",
            "0:accept_threads=2 0:accept_threads=3",
        )
        .start();
    assert!(wait_until(Duration::from_secs(5), || d
        .metric("proxy.process.net.accepts_currently_open")
        == 5));
    let addrs = d.addrs();
    assert_eq!(addrs.len(), 2, "{}", d.log_text());
    let (code, out, _) = d.ctl(&[
        "metric",
        "match",
        r"^proxy\.process\.net\.port\.\d+\.accept_threads$",
    ]);
    assert_eq!(code, 0);
    let mut threads: Vec<i64> = out
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    threads.sort();
    assert_eq!(threads, vec![2, 3], "{out}");
    let (code, _, err) = d.ctl(&["metric", "get", "no.such.metric"]);
    assert_eq!(code, 1);
    assert!(err.contains("no such metric"), "{err}");
}

#[test]
fn reload_swaps_accept_threads_twenty_times_without_refusing_a_client() {
    let d = Daemon::builder()
        .config("[proxy.config]\naccept_threads = 1\n")
        .start();
    let addr = d.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                match http::get(addr, "test", "/_stats/csv") {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("client failure: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    let et_net = d.metric("proxy.process.exec_thread.count");
    for threads in [1, 4, 0, 2, 3, 0, 1, 4, 2, 0, 3, 1, 0, 4, 2, 1, 0, 3, 2, 1] {
        d.write_config(&format!("[proxy.config]\naccept_threads = {threads}\n"));
        let before = ok.load(Ordering::Relaxed);
        let (code, out, err) = d.ctl(&["config", "reload"]);
        assert_eq!(code, 0, "reload: {out}{err}");
        let want = if threads == 0 { et_net } else { threads };
        assert!(
            wait_until(Duration::from_secs(5), || d
                .metric("proxy.process.net.accepts_currently_open")
                == want),
            "accept_threads={threads}: gauge {}",
            d.metric("proxy.process.net.accepts_currently_open")
        );
        // Some requests went through on this configuration.
        assert!(wait_until(Duration::from_secs(5), || ok
            .load(Ordering::Relaxed)
            > before + 5));
    }
    stop.store(true, Ordering::Release);
    client.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "refused or reset during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 100);
}

#[test]
fn a_bad_file_on_reload_is_refused_and_the_daemon_keeps_serving() {
    let d = Daemon::builder()
        .config("[proxy.config]\naccept_threads = 2\n")
        .start();
    let (code, out, err) = d.reload("[proxy.config]\naccept_threads = -1\nbogus = 1\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("proxy.config.accept_threads") && err.contains("proxy.config.bogus"),
        "{err}"
    );
    assert_eq!(d.metric("proxy.process.net.accepts_currently_open"), 2);
    assert_eq!(http::get(d.addr(), "test", "/_stats").unwrap().status, 200);
}

#[test]
fn ctl_reload_of_a_broken_file_finds_the_files_socket_and_shows_the_refusal() {
    // The socket comes from the file alone, under a name that is not the default.
    let good = "[proxy.config.admin]\nsocket = \"from-file.sock\"\n";
    let d = Daemon::builder()
        .config(good)
        .unset("PROXY_CONFIG_ADMIN_SOCKET")
        .start();
    let bad = format!("[proxy.config.net]\naccept_period = 0\n{good}");
    let (code, out, err) = d.reload(&bad);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("reload refused") && err.contains("proxy.config.net.accept_period"),
        "{err}"
    );
    // Not TOML at all, or a key set twice: the socket's own line still reads.
    for broken in [
        "accept_period = 10ms",
        "accept_period = 1\naccept_period = 2",
    ] {
        let (code, out, err) = d.reload(&format!("[proxy.config.net]\n{broken}\n{good}"));
        assert_eq!(code, 1, "{out}");
        assert!(err.contains("reload refused"), "{broken}: {err}");
    }
    assert_eq!(d.reload(good).0, 0);
}

#[test]
fn accept_coalesce_applies_on_reload_and_the_port_keeps_serving() {
    let d = Daemon::builder()
        .config("[proxy.config.net]\naccept_coalesce = 0\n")
        .start();
    let (code, out, err) = d.reload("[proxy.config.net]\naccept_coalesce = 10000\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("needs a restart"), "{out}");
    // Back to back: each connection after the first waits out the 10 ms window.
    for _ in 0..5 {
        assert_eq!(http::get(d.addr(), "test", "/_stats").unwrap().status, 200);
    }
    let (code, _, err) = d.reload("[proxy.config.net]\naccept_coalesce = 10001\n");
    assert_eq!(code, 1);
    assert!(err.contains("proxy.config.net.accept_coalesce"), "{err}");
}

#[test]
fn a_reload_that_shortens_accept_period_reaches_a_periodic_port_without_the_old_wait() {
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0:periodic")
        .config("[proxy.config.net]\naccept_period = 60000\n")
        .start();
    // A minute between accepts: the first tick of each thread comes within a second of
    // the start (a long period is waited out in ticks of a second), then none for a
    // minute.
    assert_eq!(http::get(d.addr(), "test", "/_stats").unwrap().status, 200);
    let (code, out, err) = d.reload("[proxy.config.net]\naccept_period = 10\n");
    assert_eq!(code, 0, "{out}{err}");
    // Every connection is accepted within the new period's ticks, not after the old
    // minute (each read gives up after 30 s).
    let t = Instant::now();
    for _ in 0..5 {
        assert_eq!(http::get(d.addr(), "test", "/_stats").unwrap().status, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(d.metric("proxy.process.net.accepts_currently_open"), 2);
}

#[test]
fn reload_reports_records_that_need_a_restart() {
    let d = Daemon::builder()
        .config("[proxy.config.http]\nrequest_header_max_size = 131072\n")
        .start();
    let (code, out, _) = d.reload("[proxy.config.http]\nrequest_header_max_size = 65536\n");
    assert_eq!(code, 0);
    assert!(
        out.contains("needs a restart")
            && out.contains("proxy.config.http.request_header_max_size"),
        "{out}"
    );
}

#[test]
fn sigterm_lets_a_slow_transaction_finish_and_exits_0() {
    let origin = Origin::start(|_| {
        std::thread::sleep(Duration::from_millis(1500));
        Some(util::origin::ok(b"slow but complete", &[]))
    });
    let mut d = Daemon::builder().config(&remap_to(&origin)).start();
    let addr = d.addr();
    let client = std::thread::spawn(move || http::get(addr, "test", "/slow"));
    assert!(wait_until(Duration::from_secs(5), || origin
        .request_count()
        == 1));
    d.signal(libc::SIGTERM);
    let r = client.join().unwrap().expect("response");
    assert_eq!((r.status, r.text().as_str()), (200, "slow but complete"));
    let st = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    // No longer accepting once the stop began.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let origin = Origin::start(|_| {
        std::thread::sleep(Duration::from_secs(30));
        None
    });
    let mut d = Daemon::builder().config(&remap_to(&origin)).start();
    let addr = d.addr();
    std::thread::spawn(move || http::get(addr, "test", "/hang"));
    assert!(wait_until(Duration::from_secs(5), || origin
        .request_count()
        == 1));
    d.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(st.code(), Some(0));
}

#[test]
fn ctl_server_stop_stops_the_daemon() {
    let mut d = Daemon::start();
    let (code, out, _) = d.ctl(&["server", "stop"]);
    assert_eq!((code, out.trim()), (0, "stopping"));
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn sigterm_stops_the_daemon_after_its_admin_socket_file_was_removed() {
    // A tmp cleaner (or an operator) removing the socket file must not keep the daemon
    // from stopping: its control thread used to be woken through that path.
    let mut d = Daemon::start();
    let sock = d.dir.0.join("ctl.sock");
    std::fs::remove_file(&sock).unwrap();
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
}

#[test]
fn a_stopping_daemon_leaves_a_socket_file_that_is_not_its_own() {
    let mut d = Daemon::start();
    let sock = d.dir.0.join("ctl.sock");
    std::fs::remove_file(&sock).unwrap();
    std::fs::write(&sock, b"someone else's").unwrap();
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
    assert_eq!(std::fs::read(&sock).unwrap(), b"someone else's");
}

#[test]
fn an_admin_socket_path_that_holds_a_file_is_refused_and_the_file_kept() {
    // The record naming the configuration file itself, by a slip: the daemon used to
    // unlink it and bind its socket there.
    let text = "[proxy.config]\naccept_threads = 1\n";
    let mut d = Daemon::builder()
        .config(text)
        .env("PROXY_CONFIG_ADMIN_SOCKET", "records.toml")
        .no_wait()
        .start();
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("the daemon exits");
    let log = d.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("records.toml exists and is not a socket"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(d.dir.0.join("records.toml")).unwrap(),
        text
    );
}

#[test]
fn admin_socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();
    let mode = std::fs::metadata(d.dir.0.join("ctl.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn inherited_fd_ports_accept() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = TempDir::new("fd");
    let log = dir.0.join("log");
    let mut cmd = std::process::Command::new(util::bin());
    cmd.current_dir(&dir.0)
        .env(
            "PROXY_CONFIG_HTTP_SERVER_PORTS",
            format!("{}:fd=7", l.local_addr().unwrap().port()),
        )
        .env("PROXY_CONFIG_ADMIN_SOCKET", dir.0.join("s.sock"));
    assert!(
        serves_on_inherited_socket(cmd, l, 7, &log),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn systemd_socket_activation_is_matched_by_bound_address() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = TempDir::new("systemd");
    let log = dir.0.join("log");
    // `exec` keeps the shell's pid, so LISTEN_PID=$$ names the daemon, as systemd's would.
    // Had the daemon bound a socket of its own, the port would have been taken
    // (EADDRINUSE with the inherited socket open in it): serving proves it adopted fd 3.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\"")
        .arg(util::bin())
        .current_dir(&dir.0)
        .env(
            "PROXY_CONFIG_HTTP_SERVER_PORTS",
            format!("{port}:ip-in=127.0.0.1"),
        )
        .env("PROXY_CONFIG_ADMIN_SOCKET", dir.0.join("s.sock"));
    assert!(
        serves_on_inherited_socket(cmd, l, 3, &log),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Spawns `cmd` with `listener` at descriptor `target` in the child (inherited, as systemd
/// or a supervisor would pass it), logging to `log`; returns whether the daemon came up
/// and served the stats page on the listener's address.
fn serves_on_inherited_socket(
    mut cmd: std::process::Command,
    listener: TcpListener,
    target: i32,
    log: &std::path::Path,
) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let addr = listener.local_addr().unwrap();
    let raw = listener.as_raw_fd();
    cmd.stderr(std::fs::File::create(log).unwrap());
    // SAFETY: dup2/fcntl in the child between fork and exec, on descriptors we own.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it explicitly.
            if libc::dup2(raw, target) < 0 || libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let ready = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("ports accepting")
    });
    let served = ready && http::get(addr, "t", "/_stats").map(|r| r.status).ok() == Some(200);
    let _ = child.kill();
    let _ = child.wait();
    served
}

#[test]
fn reload_refuses_a_missing_ca_file_as_check_and_start_do() {
    let good = "[proxy.config]\naccept_threads = 2\n";
    let d = Daemon::builder().config(good).start();
    // No remap goes to an `https://` origin, so nothing would read the file until one did.
    let bad = format!(
        "{good}[proxy.config.ssl]\nclient.CA.cert.filename = \"{}\"\n",
        d.dir.0.join("no-such-ca.pem").display()
    );
    let dir = TempDir::new("check-ca");
    let path = dir.0.join("records.toml");
    std::fs::write(&path, &bad).unwrap();
    let (code, out, check_err) = run(&dir.0, &["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "check accepted it: {out}");
    // It names the file and line of the record, as the records' own errors do.
    let why = check_err.trim();
    let place = ":4: proxy.config.ssl.client.CA.cert.filename: ";
    assert!(
        why.starts_with(&format!("{}{place}", path.display())),
        "{why}"
    );
    let what = &why[why.find(place).unwrap()..];

    let (code, out, err) = d.reload(&bad);
    assert_eq!(code, 1, "reload accepted it: {out}");
    assert!(
        err.contains("reload refused; the running configuration stays") && err.contains(what),
        "check said {why:?}; reload said {err}"
    );
    // The running configuration stays: a good file reloads with nothing changed.
    let (code, out, err) = d.reload(good);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "reloaded\n");
}

#[test]
fn reload_matches_equal_ports_by_rank_and_keeps_each_ports_accept_threads() {
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0 0:accept_threads=2")
        .config("[proxy.config]\naccept_threads = 1\n")
        .start();
    let threads = || {
        let (code, out, err) = d.ctl(&["port", "list"]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| l.split_whitespace().nth(2).unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(threads(), ["threads×1", "threads×2"]);
    // The same file: nothing to swap.
    let (code, out, err) = d.reload("[proxy.config]\naccept_threads = 1\n");
    assert_eq!((code, out.as_str()), (0, "reloaded\n"), "{err}");
    assert_eq!(threads(), ["threads×1", "threads×2"]);
    // The default changes only the port without its own accept_threads.
    let (code, out, err) = d.reload("[proxy.config]\naccept_threads = 3\n");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(threads(), ["threads×3", "threads×2"], "{out}");
    assert!(
        wait_until(Duration::from_secs(5), || d
            .metric("proxy.process.net.accepts_currently_open")
            == 5),
        "gauge {}",
        d.metric("proxy.process.net.accepts_currently_open")
    );
}

#[test]
fn a_stop_cut_short_by_a_half_sent_head_counts_its_connection() {
    use std::io::Write;
    let mut d = Daemon::builder()
        .config("[proxy.config.stop]\nshutdown_timeout = 1\n")
        .start();
    let mut c = std::net::TcpStream::connect(d.addr()).unwrap();
    c.write_all(b"GET /_stats HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert!(wait_until(Duration::from_secs(5), || d
        .metric("proxy.process.net.connections_currently_open")
        == 1));
    d.signal(libc::SIGTERM);
    let st = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(st.code(), Some(0));
    // No transaction began, but a connection was open when the timeout cut the drain.
    let log = d.log_text();
    assert!(
        log.contains("0 cut at the shutdown timeout (1 connections)"),
        "{log}"
    );
}

#[test]
fn ctl_usage_errors_exit_2_before_the_daemon_is_asked() {
    let d = Daemon::start();
    // Usage errors (SPEC §2: exit 2), found before the daemon is asked.
    let (code, _, err) = d.ctl(&["metric", "match", ""]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("arguments cannot be empty"), "{err}");
    let (code, _, err) = d.ctl(&["metric", "get", "a\nb"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("arguments cannot contain newlines"), "{err}");
    let many = vec!["proxy.process.tcp.total_accepts"; 1100];
    let mut args = vec!["metric", "get"];
    args.extend(many);
    let (code, _, err) = d.ctl(&args);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("too many arguments"), "{err}");
    let long = "x".repeat(120_000);
    let mut args = vec!["metric", "get"];
    args.extend(std::iter::repeat_n(long.as_str(), 10));
    let (code, _, err) = d.ctl(&args);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("arguments too long"), "{err}");
    // A client that is not ctl and sends a stream with no newline is answered once it
    // has sent 1 MiB, not read on into the daemon's memory.
    let mut raw = std::os::unix::net::UnixStream::connect(d.dir.0.join("ctl.sock")).unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..48 {
        if std::io::Write::write_all(&mut raw, &chunk).is_err() {
            break; // the daemon answered and closed
        }
    }
    let _ = raw.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut raw, &mut answer).unwrap();
    assert!(answer.starts_with("2\nrequest too long"), "{answer:.200}");
    // No daemon needed to refuse them; a daemon that is not there is a runtime failure.
    let nowhere = d.dir.0.join("nobody.sock");
    let nowhere = nowhere.to_str().unwrap();
    let env = [("PROXY_CONFIG_ADMIN_SOCKET", nowhere)];
    let (code, _, err) = run(&d.dir.0, &["ctl", "metric", "get", "a\nb"], &env);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&d.dir.0, &["ctl", "metric", "get", "x"], &env);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach the daemon"), "{err}");
    // The daemon still answers.
    assert_eq!(
        d.ctl(&["metric", "get", "proxy.process.tcp.total_accepts"])
            .0,
        0
    );
}

/// `exec_thread.listen = true` in event mode: one SO_REUSEPORT socket per ET_NET thread.
const PER_THREAD_LISTEN: &str = "[proxy.config]\naccept_threads = 0\n\
     [proxy.config.exec_thread]\nlimit = 2\nlisten = true\n";

fn per_thread_daemon(ports: &str) -> util::DaemonBuilder {
    Daemon::builder()
        .config(PER_THREAD_LISTEN)
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", ports)
}

#[test]
fn a_second_daemon_with_per_thread_sockets_on_a_taken_port_exits_1() {
    let port = util::fixed_port();
    let first = per_thread_daemon(&port.to_string()).start();
    assert!(
        first.log_text().contains("event/reuseport"),
        "{}",
        first.log_text()
    );
    // Same configuration, its own admin socket: SO_REUSEPORT would let it join the first
    // daemon's group and take half the connections.
    let mut second = per_thread_daemon(&port.to_string()).no_wait().start();
    let status = second
        .wait_exit(Duration::from_secs(20))
        .expect("the second daemon exits");
    let log = second.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("bind 0.0.0.0:{port}: Address already in use")),
        "{log}"
    );
    assert!(http::get(first.addr(), "x", "/_stats").is_ok());
}

#[test]
fn a_reuseport_port_is_shared_by_a_second_daemon() {
    // The `reuseport` token asks for sharing: a second daemon joins the group.
    let ports = format!("{}:reuseport", util::fixed_port());
    let _first = per_thread_daemon(&ports).start();
    let second = per_thread_daemon(&ports).start();
    assert!(
        second.log_text().contains("event/reuseport"),
        "{}",
        second.log_text()
    );
}

/// User plus system CPU time of `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn the_admin_socket_pauses_rather_than_spins_when_descriptors_run_out() {
    // A daemon under a limit of 64 descriptors, run through a shell that sets it.
    let dir = TempDir::new("ctl-emfile");
    let wrapper = dir.0.join("few-fds.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -n 64 || exit 3\nexec '{}' \"$@\"\n",
            util::bin()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let d = Daemon::builder().program(&wrapper).start();
    let pid = d.child.as_ref().unwrap().id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    // Idle clients until the daemon holds every descriptor it may (the rest wait in
    // the backlog).
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(std::net::TcpStream::connect(d.addr()).unwrap());
    }
    // Every one taken: the port itself met EMFILE (a count of descriptors may catch one
    // on its way in or out).
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_text()
            .contains("Too many open files (os error 24); pausing")),
        "{} descriptors: {}",
        fds(),
        d.log_text()
    );
    // A ctl client now waits in the admin socket's queue, which stays readable.
    let _ctl = std::os::unix::net::UnixStream::connect(d.dir.0.join("ctl.sock")).unwrap();
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("admin socket: accept: Too many open files")));
    let before = cpu_ticks(pid);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ticks_per_s = 100; // USER_HZ
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_s as f64;
    assert!(used < 1.0, "{used:.2} s of CPU in 2 s: a thread spins");
    // Descriptors back: ctl answers again.
    drop(idle);
    assert!(wait_until(Duration::from_secs(20), || {
        let (code, _, _) = d.ctl(&["metric", "get", "proxy.process.net.accept_errors"]);
        code == 0
    }));
}

/// A daemon in front of `origin` on `ports`, with `connections_throttle = 4` in pause
/// mode (and `net` lines more under `[proxy.config.net]`): four idle clients hold the
/// cap, and three more wait in the listen queue with their requests (`GET /wN`) sent.
fn queued_at_the_cap(
    origin: &Origin,
    ports: &str,
    net: &str,
) -> (Daemon, Vec<std::net::TcpStream>, Vec<http::Conn>) {
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", ports)
        .config(&format!(
            "[proxy.config.net]\nconnections_throttle = 4\nthrottle_mode = \"pause\"\n{net}\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
            origin.addr
        ))
        .start();
    let open = || d.metric("proxy.process.net.connections_currently_open");
    let idle: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(d.addr()).unwrap())
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || open() == 4),
        "{ports}"
    );
    // Connected, so in the listen queue, with their requests sent.
    let waiting = (0..3)
        .map(|i| {
            let mut c = http::Conn::open(d.addr()).unwrap();
            c.send(format!("GET /w{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
                .unwrap();
            c
        })
        .collect();
    (d, idle, waiting)
}

#[test]
fn clients_queued_at_the_throttle_cap_wait_through_a_disable_and_are_served_once_below_it() {
    // Pause mode in event mode: those waiting in the listen queue when the cap is
    // reached stay there, through a disable and enable, and are served as soon as the
    // count falls below 90 % of the cap; a long throttle_delay (for resource errors) does
    // not hold them.
    let origin = Origin::start(|_| Some(util::origin::ok(b"served", &[])));
    let (d, idle, waiting) =
        queued_at_the_cap(&origin, "0:accept_threads=0", "throttle_delay = 60000\n");
    let label = d.addr().port().to_string();
    assert_eq!(d.ctl(&["port", "disable", &label]).0, 0);
    assert_eq!(d.ctl(&["port", "enable", &label]).0, 0);
    drop(idle);
    for mut c in waiting {
        c.stream()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let r = c.read_response("GET").expect("served, not reset");
        assert_eq!(r.text(), "served");
    }
    assert_eq!(d.metric("proxy.process.net.connections_throttled_in"), 0);
}

#[test]
fn clients_queued_at_the_throttle_cap_are_answered_through_a_stop_in_every_mode() {
    let origin = Origin::start(|_| Some(util::origin::ok(b"served", &[])));
    for ports in ["0", "0:accept_threads=0", "0:periodic"] {
        let (mut d, idle, waiting) = queued_at_the_cap(&origin, ports, "");
        d.signal(libc::SIGTERM);
        for mut c in waiting {
            let r = c.read_response("GET").expect("answered, not reset");
            assert_eq!(r.text(), "served", "{ports}");
        }
        let status = d.wait_exit(Duration::from_secs(20));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{ports}");
        drop(idle);
    }
}

#[test]
fn a_stop_while_waiting_for_the_cache_logs_no_accept_error() {
    // The span file is under this test's read lease, so the daemon's open of it waits
    // (until the lease is let go, or the kernel's lease-break-time passes): the stop
    // comes while the daemon waits for its cache, its ports bound but not listening.
    let dir = util::TempDir::new("stop-waiting-span");
    let span = dir.0.join("span");
    let _lease = lease(&span);
    let mut d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 1\nserver_ports = \"0 0\"\n\
             [proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"64M\" }}]\n",
            span.display()
        ))
        .unset("PROXY_CONFIG_HTTP_SERVER_PORTS")
        .no_wait()
        .start();
    assert!(util::wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("waiting for cache")));
    d.signal(libc::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
    let text = d.log_text();
    assert!(!text.contains("ports accepting"), "{text}");
    assert!(!text.contains("accept:"), "{text}");
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");
}

/// Creates the file at `path` and takes a read lease on it: another process's open of
/// it for writing blocks until the returned file is dropped (or the kernel's
/// `fs.lease-break-time` passes). The break is signalled to this process with SIGURG,
/// which is ignored unless handled (SIGIO, the default, would end the test process).
fn lease(path: &std::path::Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    std::fs::write(path, b"").unwrap();
    let f = std::fs::File::open(path).unwrap();
    const F_SETSIG: libc::c_int = 10; // Linux's <fcntl.h>; not in the libc crate
    for (cmd, arg) in [(F_SETSIG, libc::SIGURG), (libc::F_SETLEASE, libc::F_RDLCK)] {
        // SAFETY: fcntl takes a descriptor `f` owns and keeps open for the call, and ints.
        let rc = unsafe { libc::fcntl(f.as_raw_fd(), cmd, arg) };
        assert_eq!(rc, 0, "fcntl {cmd}: {}", std::io::Error::last_os_error());
    }
    f
}
