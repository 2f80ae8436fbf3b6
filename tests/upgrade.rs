//! Zero-downtime upgrades, the stop that refuses at once, systemd notifications and
//! ports turned off and on, as an operator drives them: signals, `turnstile ctl`, and
//! clients that must not notice.
//!
//! An upgrade's new process is the old one's child and outlives it: this test process
//! makes itself a child subreaper, so the new processes become its children when their
//! parent exits, and are reaped (and killed at the end) here.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use util::http;
use util::origin::{ok, Origin};
use util::{wait_until, Daemon, TempDir};

/// These tests put load on the machine and one of them times a refusal: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn remap_to(origin: &Origin) -> String {
    format!(
        "[[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n",
        origin.addr
    )
}

/// Processes an upgrade started: killed and reaped at the end of a test.
#[derive(Default)]
struct Successors(Vec<i32>);

impl Successors {
    /// Whether `pid` has exited (reaping it if it is our child): a new process stays a
    /// zombie until its parent, the old one, exits, and counts as exited.
    fn exited(pid: i32) -> bool {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a live local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        // Not our child (yet): gone, or a zombie its parent has not reaped.
        let gone_or_zombie = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        r == pid || (r < 0 && gone_or_zombie())
    }
}

impl Drop for Successors {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !Successors::exited(pid) {
                // SAFETY: sending a signal to a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                wait_until(Duration::from_secs(5), || Successors::exited(pid));
            }
        }
    }
}

/// `ctl server upgrade`, which must succeed: (old pid, new pid).
fn upgrade(d: &Daemon, successors: &mut Successors) -> (i32, i32) {
    let (code, out, err) = d.ctl(&["server", "upgrade"]);
    assert_eq!(code, 0, "upgrade failed: {out}{err}\n{}", d.log_text());
    let line = out.trim();
    let pids: Vec<i32> = line
        .strip_prefix("upgraded: pid ")
        .unwrap_or_else(|| panic!("unexpected answer {line:?}"))
        .split(" -> ")
        .map(|p| p.parse().unwrap())
        .collect();
    successors.0.push(pids[1]);
    (pids[0], pids[1])
}

/// Outcomes of a client loop.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    other: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// Connection-per-request clients on a few threads, until [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let clients = (0..threads)
            .map(|_| {
                let (stop, tally) = (stop.clone(), tally.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        one_request(addr, &tally);
                    }
                })
            })
            .collect();
        Load {
            stop,
            tally,
            clients,
        }
    }

    fn ok(&self) -> u64 {
        self.tally.ok.load(Ordering::SeqCst)
    }

    /// Waits (up to 20 s) for `n` more requests to succeed.
    fn wait_for(&self, n: u64) {
        let target = self.ok() + n;
        assert!(
            wait_until(Duration::from_secs(20), || self.ok() >= target),
            "no progress: {:?}",
            self.tally.failures.lock().unwrap()
        );
    }

    /// Stops the clients; every request they made must have succeeded.
    fn finish(self) {
        self.stop.store(true, Ordering::Release);
        for c in self.clients {
            c.join().unwrap();
        }
        let t = &self.tally;
        let failures = t.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{} ok, {} refused, {} reset, {} other: {:?}",
            t.ok.load(Ordering::SeqCst),
            t.refused.load(Ordering::SeqCst),
            t.reset.load(Ordering::SeqCst),
            t.other.load(Ordering::SeqCst),
            &failures[..failures.len().min(5)]
        );
    }
}

fn one_request(addr: SocketAddr, tally: &Tally) {
    let fail = |counter: &AtomicU64, what: String| {
        counter.fetch_add(1, Ordering::SeqCst);
        tally.failures.lock().unwrap().push(what);
    };
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return fail(&tally.refused, format!("connect: {e}"))
        }
        Err(e) => return fail(&tally.other, format!("connect: {e}")),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    let sent = s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    let read = sent.and_then(|()| s.read_to_end(&mut buf));
    match read {
        Ok(_) if buf.starts_with(b"HTTP/1.1 200") => {
            tally.ok.fetch_add(1, Ordering::SeqCst);
        }
        Ok(_) => fail(
            &tally.other,
            format!(
                "answer {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(60)])
            ),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            fail(&tally.reset, format!("reset: {e}"))
        }
        Err(e) => fail(&tally.other, format!("read: {e}")),
    }
}

/// Upgrades `d` `rounds` times under a connection-per-request load: every request must
/// succeed, and the counters never go back. Returns the processes started.
fn upgrades_under_load(d: &Daemon, rounds: usize) -> Successors {
    let mut successors = Successors::default();
    let addr = d.addr();
    let load = Load::start(addr, 4);
    load.wait_for(50);
    let mut last = d.metric("proxy.process.http.completed_requests");
    let mut last_accepts = d.metric("proxy.process.tcp.total_accepts");
    let mut old = d.child.as_ref().unwrap().id() as i32;
    for _ in 0..rounds {
        let (from, to) = upgrade(d, &mut successors);
        assert_eq!(from, old);
        old = to;
        // Counters go on from the old process's values.
        let now = d.metric("proxy.process.http.completed_requests");
        assert!(now >= last, "completed_requests went back: {last} -> {now}");
        let accepts = d.metric("proxy.process.tcp.total_accepts");
        assert!(accepts >= last_accepts, "total_accepts went back");
        (last, last_accepts) = (now, accepts);
        load.wait_for(30);
    }
    load.finish();
    // Every process but the last drained and exited 0 by itself.
    let all: Vec<i32> = successors.0.clone();
    for &pid in &all[..all.len() - 1] {
        assert!(
            wait_until(Duration::from_secs(10), || Successors::exited(pid)),
            "pid {pid} did not exit after handing over"
        );
    }
    let text = d.log_text();
    assert_eq!(
        text.matches("transactions drained").count(),
        rounds,
        "every old process says what it drained:\n{text}"
    );
    let end = d.metric("proxy.process.http.completed_requests");
    assert!(end >= last);
    successors
}

/// A daemon run from `exe` (a copy an upgrade may replace) with one span of `size` in
/// `span`, remapping to `origin`, once its cache is ready.
fn cache_daemon(exe: &std::path::Path, span: &TempDir, size: &str, origin: &Origin) -> Daemon {
    let d = Daemon::builder()
        .program(exe)
        .config(&format!(
            "[proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"{size}\" }}]\n{}",
            span.0.display(),
            remap_to(origin)
        ))
        .start();
    assert!(wait_until(Duration::from_secs(30), || d
        .log_text()
        .contains("cache ready")));
    d
}

/// An origin answering `/slow` after `slow` (each such request announced on the
/// returned channel as it arrives), and every path with `body`.
fn slow_origin(slow: Duration, body: &'static [u8]) -> (Origin, std::sync::mpsc::Receiver<()>) {
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let seen_tx = Mutex::new(seen_tx);
    let origin = Origin::start(move |r| {
        if r.path == "/slow" {
            let _ = seen_tx.lock().unwrap().send(());
            std::thread::sleep(slow);
        }
        Some(ok(body, &[]))
    });
    (origin, seen_rx)
}

#[test]
fn ten_upgrades_in_threads_mode_refuse_and_reset_no_request() {
    let _serial = serial();
    let origin = Origin::fixed(b"hello");
    let dir = TempDir::new("pidfile");
    let pid_file = dir.0.join("turnstile.pid");
    let mut d = Daemon::builder()
        .config(&remap_to(&origin))
        .env("PROXY_CONFIG_ACCEPT_THREADS", "2")
        .env("PROXY_CONFIG_PID_FILE", pid_file.to_str().unwrap())
        .start();
    let read_pid = || std::fs::read_to_string(&pid_file).unwrap_or_default();
    let first = d.child.as_ref().unwrap().id();
    // Written once the ports accept, just after the line `start` waited for.
    assert!(
        wait_until(Duration::from_secs(10), || read_pid().trim()
            == first.to_string()),
        "pid file: {:?}",
        read_pid()
    );
    let _successors = upgrades_under_load(&d, 10);
    // The pid file names the process that serves now.
    let serving: i32 = read_pid().trim().parse().unwrap();
    assert_ne!(serving, first as i32);
    let (code, _, err) = d.ctl(&["server", "stop"]);
    assert_eq!(code, 0, "{err}");
    assert!(wait_until(Duration::from_secs(10), || Successors::exited(
        serving
    )));
    assert!(!pid_file.exists(), "the pid file is removed at a stop");
    assert_eq!(
        d.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn five_upgrades_in_event_mode_with_a_socket_per_thread_reset_no_request() {
    let _serial = serial();
    let origin = Origin::fixed(b"hello");
    let d = Daemon::builder()
        .config(&remap_to(&origin))
        .env("PROXY_CONFIG_ACCEPT_THREADS", "0")
        .env("PROXY_CONFIG_EXEC_THREAD_LISTEN", "true")
        .start();
    assert!(d.log_text().contains("event/reuseport"), "{}", d.log_text());
    let _successors = upgrades_under_load(&d, 5);
}

#[test]
fn a_cached_object_is_a_hit_from_the_new_process_without_the_origin() {
    let _serial = serial();
    let mut successors = Successors::default();
    let span = TempDir::new("upgrade-span");
    let origin = Origin::start(|_| Some(ok(b"kept", &[("Cache-Control", "max-age=600")])));
    let d = Daemon::builder()
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 1\n[proxy.config.cache]\nstorage = [{{ path = \"{}\", size = \"4M\" }}]\n{}",
            span.0.display(),
            remap_to(&origin)
        ))
        .start();
    let r = http::get(d.addr(), "t", "/obj").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "kept"));
    let (_, new) = upgrade(&d, &mut successors);
    assert!(
        d.log_text().contains("released 1 cache spans"),
        "{}",
        d.log_text()
    );
    let r = http::get(d.addr(), "t", "/obj").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "kept"));
    assert_eq!(
        origin.requests.lock().unwrap().len(),
        1,
        "served by the origin again"
    );
    assert_eq!(d.metric("proxy.process.cache.hits"), 1);
    // The answer came from the new process: the old one stopped serving the admin socket.
    let (_, out, _) = d.ctl(&["metric", "get", "proxy.process.cache.hits"]);
    assert!(out.contains(" 1"), "{out}");
    assert!(new > 0);
}

#[test]
fn the_upgraded_process_joins_its_predecessors_process_group() {
    // Started in a group of its own, the new process moves to the old one's once it
    // serves, so a Ctrl-C at the terminal that started the daemon reaches it.
    let _serial = serial();
    let mut successors = Successors::default();
    let origin = Origin::fixed(b"hello");
    let d = Daemon::builder().config(&remap_to(&origin)).start();
    let group = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid pgrp …: after the last ')'.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        after
            .split_whitespace()
            .nth(2)
            .and_then(|g| g.parse::<i32>().ok())
    };
    // SAFETY: getpgrp takes nothing and cannot fail.
    let ours = unsafe { libc::getpgrp() };
    for _ in 0..2 {
        let (_, new) = upgrade(&d, &mut successors);
        assert!(
            wait_until(Duration::from_secs(10), || group(new) == Some(ours)),
            "pid {new} in group {:?}, not {ours}",
            group(new)
        );
    }
}

#[test]
fn an_upgrade_to_a_binary_that_fails_leaves_the_old_process_serving() {
    let _serial = serial();
    let origin = Origin::fixed(b"hello");
    let dir = TempDir::new("badbin");
    let exe = dir.0.join("turnstile");
    std::fs::copy(util::bin(), &exe).unwrap();
    let d = Daemon::builder()
        .program(&exe)
        .config(&remap_to(&origin))
        .env("PROXY_CONFIG_UPGRADE_READY_TIMEOUT", "2")
        .start();
    let pid = d.child.as_ref().unwrap().id();
    // A package upgrade replaces the file: here with a program that never gets ready...
    let replace = |script: &str| {
        let tmp = dir.0.join("next");
        std::fs::write(&tmp, script).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::rename(&tmp, &exe).unwrap();
    };
    replace("#!/bin/sh\nexec sleep 10\n");
    let first = {
        let mut cmd = d.ctl_command(&["server", "upgrade"]);
        std::thread::spawn(move || cmd.output().unwrap())
    };
    // ...and while it runs, a second upgrade is refused.
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("upgrade: started")));
    let (code, _, err) = d.ctl(&["server", "upgrade"]);
    assert_eq!(code, 1);
    assert!(err.contains("already in progress"), "{err}");
    let out = first.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not ready within 2 s"), "{err}");
    assert_eq!(http::get(d.addr(), "t", "/").unwrap().status, 200);

    // One that exits at once.
    replace("#!/bin/sh\necho 'cannot start' >&2\nexit 1\n");
    let (code, _, err) = d.ctl(&["server", "upgrade"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exited with status 1"), "{err}");
    // The old process serves on, untouched, and still answers ctl.
    assert_eq!(http::get(d.addr(), "t", "/").unwrap().status, 200);
    assert_eq!(d.metric("proxy.process.proxy.ports_ready"), 1);
    assert_eq!(
        std::fs::read_to_string(d.log.clone())
            .unwrap()
            .matches("ports accepting")
            .count(),
        1
    );
    assert!(d.child.as_ref().unwrap().id() == pid);

    // The real binary again: the upgrade goes through.
    std::fs::remove_file(&exe).unwrap();
    std::fs::copy(util::bin(), &exe).unwrap();
    let mut successors = Successors::default();
    upgrade(&d, &mut successors);
    assert_eq!(http::get(d.addr(), "t", "/").unwrap().status, 200);
}

#[test]
fn stop_refuses_new_connects_at_once_and_finishes_the_request_in_flight() {
    let _serial = serial();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let seen_tx = Mutex::new(seen_tx);
    let origin = Origin::start(move |_| {
        let _ = seen_tx.lock().unwrap().send(());
        std::thread::sleep(Duration::from_millis(1500));
        Some(ok(b"late", &[]))
    });
    let mut d = Daemon::builder().config(&remap_to(&origin)).start();
    let addr = d.addr();
    let mut c = http::send_get(addr, "/slow");
    seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    d.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let refused = wait_until(
        Duration::from_millis(100),
        || matches!(TcpStream::connect(addr), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
    );
    let took = t0.elapsed();
    assert!(
        refused,
        "a new connect was not refused {took:?} after SIGTERM"
    );
    let r = c.read_response("GET").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "late"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    let text = d.log_text();
    assert!(
        text.contains("stop: 1 transactions drained, 0 cut at the shutdown timeout"),
        "{text}"
    );
}

#[test]
fn stop_cuts_what_outlives_the_shutdown_timeout_and_says_so() {
    let _serial = serial();
    let origin = Origin::start(|_| {
        std::thread::sleep(Duration::from_secs(5));
        Some(ok(b"too late", &[]))
    });
    let mut d = Daemon::builder()
        .config(&remap_to(&origin))
        .env("PROXY_CONFIG_STOP_SHUTDOWN_TIMEOUT", "1")
        .start();
    let _c = http::send_get(d.addr(), "/slow");
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.http.current_active_transactions")
        > 0));
    d.signal(libc::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    let text = d.log_text();
    assert!(text.contains("0 transactions drained, 1 cut"), "{text}");
}

/// Reads datagrams from the notify socket until one contains `want`.
fn expect_notify(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if msg.contains(want) {
                return;
            }
        }
    }
    panic!("no {want:?} on the notify socket; got {seen:?}");
}

#[test]
fn systemd_hears_ready_reloading_mainpid_and_stopping() {
    let _serial = serial();
    let mut successors = Successors::default();
    let dir = TempDir::new("notify");
    let path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let d = Daemon::builder()
        .config("")
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .start();
    let mut seen = Vec::new();
    expect_notify(&sock, "READY=1", &mut seen);
    let (code, _, err) = d.ctl(&["config", "reload"]);
    assert_eq!(code, 0, "{err}");
    expect_notify(&sock, "RELOADING=1", &mut seen);
    assert!(seen.last().unwrap().contains("MONOTONIC_USEC="));
    expect_notify(&sock, "READY=1", &mut seen);
    let (_, new) = upgrade(&d, &mut successors);
    expect_notify(&sock, &format!("MAINPID={new}"), &mut seen);
    assert!(seen.last().unwrap().contains("READY=1"));
    let (code, _, err) = d.ctl(&["server", "stop"]);
    assert_eq!(code, 0, "{err}");
    expect_notify(&sock, "STOPPING=1", &mut seen);
}

#[test]
fn a_disabled_port_keeps_its_socket_and_stays_disabled_across_reload_and_upgrade() {
    let _serial = serial();
    let mut successors = Successors::default();
    let origin = Origin::fixed(b"hello");
    let d = Daemon::builder()
        .config(&remap_to(&origin))
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0 0")
        .start();
    let addrs = d.addrs();
    let label = addrs[0].port().to_string();
    let gauge = format!("proxy.process.net.port.{label}.accepts_currently_open");
    let list = |d: &Daemon| d.ctl(&["port", "list"]).1;
    assert!(
        list(&d).contains(&format!("{label} {} threads×1 enabled", addrs[0])),
        "{}",
        list(&d)
    );

    let (code, out, err) = d.ctl(&["port", "disable", &label]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("port {label} disabled").as_str()),
        "{err}"
    );
    assert_eq!(d.metric(&gauge), 0);
    assert_eq!(d.metric("proxy.process.net.accepts_currently_open"), 1);
    assert!(list(&d).contains(&format!("{label} {} threads×1 disabled", addrs[0])));
    // A connect still completes (into the backlog) but nobody answers...
    let mut waiting = http::send_get(addrs[0], "/");
    waiting
        .stream()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        waiting.read_response("GET").is_err(),
        "answered while disabled"
    );
    // ...the other port serves, and after enable the waiting client is answered.
    assert_eq!(http::get(addrs[1], "t", "/").unwrap().status, 200);
    let (code, _, err) = d.ctl(&["port", "enable", &label]);
    assert_eq!(code, 0, "{err}");
    waiting
        .stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(waiting.read_response("GET").unwrap().status, 200);
    assert_eq!(d.metric(&gauge), 1);

    // Disabled survives a reload and an upgrade.
    assert_eq!(d.ctl(&["port", "disable", &label]).0, 0);
    assert_eq!(d.ctl(&["config", "reload"]).0, 0);
    assert!(list(&d).contains(&format!("{label} {} threads×1 disabled", addrs[0])));
    upgrade(&d, &mut successors);
    assert!(
        list(&d).contains(&format!("{label} {} threads×1 disabled", addrs[0])),
        "{}",
        list(&d)
    );
    assert_eq!(d.metric(&gauge), 0);
    assert_eq!(d.ctl(&["port", "enable", &label]).0, 0);
    assert_eq!(http::get(addrs[0], "t", "/").unwrap().status, 200);
    // An unknown port is a usage error.
    let (code, _, err) = d.ctl(&["port", "disable", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("no port 1"), "{err}");
}

#[test]
fn a_reload_out_of_per_thread_mode_resets_no_connection_queued_on_a_closed_socket() {
    let _serial = serial();
    let origin = Origin::fixed(b"hello");
    let config = |threads: u32, throttle: u32| {
        format!(
            "[proxy.config]\naccept_threads = {threads}\n[proxy.config.exec_thread]\nlisten = true\n\
             [proxy.config.net]\nconnections_throttle = {throttle}\n{}",
            remap_to(&origin)
        )
    };
    let d = Daemon::builder().config(&config(0, 1)).start();
    let addr = d.addr();
    // One idle connection holds the cap of 1: accepting pauses, and what comes next
    // waits in the queues of the port's two SO_REUSEPORT sockets.
    let hold = http::Conn::open(addr).unwrap();
    assert!(wait_until(Duration::from_secs(5), || d
        .metric("proxy.process.net.connections_currently_open")
        == 1));
    let queued: Vec<http::Conn> = (0..32).map(|_| http::send_get(addr, "/")).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.metric("proxy.process.net.connections_currently_open"), 1);
    // Threads mode uses the main socket only: the sibling is retired by the reload.
    let (code, out, err) = d.reload(&config(1, 0));
    assert_eq!(code, 0, "{out}{err}");
    for (i, mut c) in queued.into_iter().enumerate() {
        let r = c.read_response("GET");
        assert!(
            matches!(&r, Ok(r) if r.status == 200),
            "queued connection {i}: {r:?}\n{}",
            d.log_text()
        );
    }
    drop(hold);
    assert!(
        d.log_text().contains("retiring 1 socket(s)"),
        "{}",
        d.log_text()
    );
}

#[test]
fn a_socket_from_systemd_survives_an_upgrade() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let _serial = serial();
    let mut successors = Successors::default();
    let origin = Origin::fixed(b"activated");
    let dir = TempDir::new("socket-activation");
    // Like systemd, this process holds the listening socket: nobody else can bind it,
    // and the daemon gets it as fd 3 with LISTEN_FDS=1 and LISTEN_PID set to its pid.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = dir.0.join("records.toml");
    std::fs::write(&config, remap_to(&origin)).unwrap();
    let log = dir.0.join("turnstile.log");
    let socket = dir.0.join("ctl.sock");
    let fd = listener.as_raw_fd();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args([
        "-c",
        "LISTEN_PID=$$ exec \"$0\" \"$@\"",
        util::bin(),
        "--config",
    ])
    .arg(&config)
    .current_dir(&dir.0)
    .env("LISTEN_FDS", "1")
    .env(
        "PROXY_CONFIG_HTTP_SERVER_PORTS",
        format!("{}:ip-in=127.0.0.1", addr.port()),
    )
    .env("PROXY_CONFIG_ADMIN_SOCKET", &socket)
    .env("PROXY_CONFIG_EXEC_THREAD_AUTOCONFIG_ENABLED", "false")
    .env("PROXY_CONFIG_EXEC_THREAD_LIMIT", "2")
    .env_remove("TURNSTILE_LOG")
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: between fork and exec the hook only calls dup2 or fcntl (async-signal-safe)
    // on a descriptor this process holds open.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would leave FD_CLOEXEC set.
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    let d = Daemon {
        child: Some(child),
        dir,
        log,
        config: Some(config),
        env: vec![(
            "PROXY_CONFIG_ADMIN_SOCKET".into(),
            socket.display().to_string(),
        )],
    };
    assert!(
        wait_until(Duration::from_secs(20), || d
            .log_text()
            .contains("ports accepting")),
        "{}",
        d.log_text()
    );
    assert_eq!(d.addr(), addr);
    assert_eq!(http::get(addr, "t", "/").unwrap().text(), "activated");
    let (old, _) = upgrade(&d, &mut successors);
    // The new process took the socket (binding it anew would fail: it is taken).
    assert!(wait_until(Duration::from_secs(10), || Successors::exited(
        old
    )));
    assert_eq!(http::get(addr, "t", "/").unwrap().text(), "activated");
    assert!(
        !d.log_text().contains("matches no configured port"),
        "{}",
        d.log_text()
    );
    drop(listener);
}

#[test]
fn a_failed_upgrade_gives_the_cache_spans_back_with_the_purges_made_meanwhile() {
    let _serial = serial();
    let span = TempDir::new("upgrade-span-back");
    let origin = Origin::start(|_| Some(ok(b"kept", &[("Cache-Control", "max-age=600")])));
    let dir = TempDir::new("span-back-bin");
    let exe = dir.0.join("turnstile");
    std::fs::copy(util::bin(), &exe).unwrap();
    let d = cache_daemon(&exe, &span, "4M", &origin);
    for path in ["/a", "/b"] {
        assert_eq!(http::get(d.addr(), "t", path).unwrap().status, 200);
    }
    // A new binary that takes the spans, then fails.
    let script = "#!/bin/bash\nfd=$TURNSTILE_UPGRADE_FD\nread -r hello <&$fd\n\
                  echo '{\"msg\":\"want_spans\"}' >&$fd\nread -r released <&$fd\nsleep 1\nexit 3\n";
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, script).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let upgrading = {
        let mut cmd = d.ctl_command(&["server", "upgrade"]);
        std::thread::spawn(move || cmd.output().unwrap())
    };
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_text()
            .contains("released 1 cache spans")),
        "{}",
        d.log_text()
    );
    // Without its spans the old process serves from RAM, and a PURGE is remembered.
    let r = http::get(d.addr(), "t", "/a").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "kept"));
    let r = http::request(d.addr(), "PURGE", "/b", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let out = upgrading.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("exited with status 3"), "{err}");
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_text()
            .contains("back in use")),
        "{}",
        d.log_text()
    );
    let before = origin.requests.lock().unwrap().len();
    // The purged object stays purged (the span still had it); the other is still a hit.
    assert_eq!(http::get(d.addr(), "t", "/b").unwrap().status, 200);
    assert_eq!(origin.requests.lock().unwrap().len(), before + 1);
    assert_eq!(http::get(d.addr(), "t", "/a").unwrap().status, 200);
    assert_eq!(origin.requests.lock().unwrap().len(), before + 1);
}

#[test]
fn an_upgrade_that_drops_a_port_and_a_thread_resets_nothing_queued() {
    let _serial = serial();
    let mut successors = Successors::default();
    let origin = Origin::fixed(b"hello");
    let config = |ports: &str, threads: u32| {
        format!(
            "[proxy.config]\naccept_threads = 0\n[proxy.config.exec_thread]\n\
             autoconfig.enabled = false\nlimit = {threads}\nlisten = true\n\
             [proxy.config.http]\nserver_ports = \"{ports}\"\n{}",
            remap_to(&origin)
        )
    };
    let d = Daemon::builder()
        .config(&config("0 0", 2))
        .unset("PROXY_CONFIG_HTTP_SERVER_PORTS")
        .unset("PROXY_CONFIG_EXEC_THREAD_LIMIT")
        .unset("PROXY_CONFIG_EXEC_THREAD_AUTOCONFIG_ENABLED")
        .start();
    let (kept, dropped) = (d.addrs()[0], d.addrs()[1]);
    // Clients on the port that stays, through the upgrade.
    let load = Load::start(kept, 3);
    // Connections waiting in the queues of the port that goes.
    let label = dropped.port().to_string();
    assert_eq!(d.ctl(&["port", "disable", &label]).0, 0);
    let queued: Vec<http::Conn> = (0..16).map(|_| http::send_get(dropped, "/")).collect();
    load.wait_for(50);
    // The new configuration has one port and one event thread: the old process retires
    // the dropped port's two sockets and the kept port's second one.
    d.write_config(&config("0", 1));
    let (old, _) = upgrade(&d, &mut successors);
    for (i, mut c) in queued.into_iter().enumerate() {
        let r = c.read_response("GET");
        assert!(
            matches!(&r, Ok(r) if r.status == 200),
            "queued connection {i}: {r:?}\n{}",
            d.log_text()
        );
    }
    load.wait_for(50);
    load.finish();
    let text = d.log_text();
    assert!(text.contains("retiring 2 socket(s)"), "{text}");
    assert!(text.contains("retiring 1 socket(s)"), "{text}");
    // Once the old process is gone, the dropped port refuses.
    assert!(wait_until(Duration::from_secs(15), || Successors::exited(
        old
    )));
    assert!(matches!(
        TcpStream::connect(dropped),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    ));
    assert_eq!(http::get(kept, "t", "/").unwrap().status, 200);
}

#[test]
fn the_old_process_closes_idle_keep_alive_connections_at_once_and_answers_busy_ones_with_close() {
    let _serial = serial();
    let mut successors = Successors::default();
    let (origin, seen_rx) = slow_origin(Duration::from_millis(800), b"hello");
    let d = Daemon::builder().config(&remap_to(&origin)).start();
    // An idle keep-alive connection, and a busy one, both on the old process.
    let mut idle = http::Conn::open(d.addr()).unwrap();
    assert_eq!(idle.get("t", "/").unwrap().status, 200);
    let mut busy = http::Conn::open(d.addr()).unwrap();
    assert_eq!(busy.get("t", "/").unwrap().status, 200);
    busy.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let t0 = Instant::now();
    upgrade(&d, &mut successors);
    // The busy one gets its answer, saying close; the idle one is closed.
    let r = busy.read_response("GET").unwrap();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    idle.stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    let n = idle.stream().read(&mut byte).unwrap_or(0);
    assert_eq!(n, 0, "the idle connection was not closed");
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_upgrade_that_adds_a_thread_with_a_socket_per_thread_refuses_no_request() {
    // The new process binds the added thread's socket into the group its predecessor
    // handed over (the port's first socket is bound without SO_REUSEPORT and joins
    // after, so that another daemon cannot: tests/daemon.rs).
    let _serial = serial();
    let mut successors = Successors::default();
    let origin = Origin::fixed(b"hello");
    let config = |threads: u32| {
        format!(
            "[proxy.config]\naccept_threads = 0\n[proxy.config.exec_thread]\n\
             autoconfig.enabled = false\nlimit = {threads}\nlisten = true\n\
             [proxy.config.http]\nserver_ports = \"0\"\n{}",
            remap_to(&origin)
        )
    };
    let d = Daemon::builder()
        .config(&config(1))
        .unset("PROXY_CONFIG_HTTP_SERVER_PORTS")
        .unset("PROXY_CONFIG_EXEC_THREAD_LIMIT")
        .unset("PROXY_CONFIG_EXEC_THREAD_AUTOCONFIG_ENABLED")
        .start();
    let addr = d.addr();
    let load = Load::start(addr, 2);
    load.wait_for(50);
    d.write_config(&config(2));
    upgrade(&d, &mut successors);
    // Two acceptors now, the added one on a socket of its own, and no client refused.
    assert!(wait_until(Duration::from_secs(10), || d
        .metric("proxy.process.net.accepts_currently_open")
        == 2));
    load.wait_for(50);
    load.finish();
    assert_eq!(http::get(addr, "t", "/").unwrap().status, 200);
}

#[test]
fn an_answer_that_promised_keep_alive_before_an_upgrade_gets_its_next_request_answered() {
    // An origin that sends /slow's head at once and its body when the test says: the
    // head goes to the client before the drain begins, saying keep-alive, the end after.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = l.local_addr().unwrap();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(go_rx));
    let (head_tx, head_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let (go_rx, head_tx) = (go_rx.clone(), head_tx.clone());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let slow = buf.starts_with(b"GET /slow ");
                    buf.drain(..end);
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
                    if slow {
                        let _ = head_tx.send(());
                        let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
                    }
                    let _ = s.write_all(b"hello");
                }
            });
        }
    });
    let _serial = serial();
    let mut successors = Successors::default();
    let d = Daemon::builder()
        .config(&format!(
            "[[remap]]\nfrom = \"/\"\nto = \"http://{origin}/\"\n"
        ))
        .start();
    let mut c = http::Conn::open(d.addr()).unwrap();
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    head_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // The head is on its way to the client; the old process drains from here.
    upgrade(&d, &mut successors);
    go_tx.send(()).unwrap();
    let r = c.read_response("GET").unwrap();
    assert_eq!(
        (r.status, r.header("connection")),
        (200, Some("keep-alive"))
    );
    // The client takes the promise at its word: its next request on that connection is
    // answered, with a close, not met by a closed socket.
    let r = c.get("t", "/next");
    assert!(
        matches!(&r, Ok(r) if r.status == 200 && r.header("connection") == Some("close")),
        "{r:?}\n{}",
        d.log_text()
    );
}

#[test]
fn an_upgrade_while_the_spans_are_being_reopened_is_refused() {
    let _serial = serial();
    let mut successors = Successors::default();
    let span = TempDir::new("upgrade-span-reopening");
    let origin = Origin::start(|_| Some(ok(b"kept", &[("Cache-Control", "max-age=600")])));
    let dir = TempDir::new("span-reopening-bin");
    let exe = dir.0.join("turnstile");
    let real = dir.0.join("turnstile.real");
    std::fs::copy(util::bin(), &exe).unwrap();
    std::fs::copy(util::bin(), &real).unwrap();
    let d = cache_daemon(&exe, &span, "64M", &origin);
    assert_eq!(http::get(d.addr(), "t", "/a").unwrap().status, 200);
    // A new binary that takes the spans, then fails once this test holds the span's lock
    // (as a process of the failed upgrade still exiting would): the old process tries
    // the span again until the lock is let go, and is reopening it all that time.
    let (released, go) = (dir.0.join("released"), dir.0.join("go"));
    let script = format!(
        "#!/bin/bash\nfd=$TURNSTILE_UPGRADE_FD\nread -r hello <&$fd\n\
         echo '{{\"msg\":\"want_spans\"}}' >&$fd\nread -r line <&$fd\ntouch {}\n\
         for i in $(seq 1000); do [ -e {} ] && exit 3; sleep 0.01; done\nexit 4\n",
        released.display(),
        go.display()
    );
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, script).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let holder = std::thread::spawn(move || {
        assert!(wait_until(Duration::from_secs(10), || released.exists()));
        let file = util::hold_span(&span.0.join("turnstile.span"));
        std::fs::write(go, b"").unwrap();
        (file, span)
    });
    let (code, _, err) = d.ctl(&["server", "upgrade"]);
    assert_eq!(code, 1, "{err}");
    let (lock, _span) = holder.join().unwrap();
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("still locked by another process")));
    // The real binary again, and an upgrade while the span is being reopened.
    std::fs::rename(&real, &exe).unwrap();
    d.signal(libc::SIGUSR2);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let text = d.log_text();
            text.contains("upgrade refused") || text.matches("upgrade: started").count() > 1
        }),
        "{}",
        d.log_text()
    );
    let text = d.log_text();
    assert!(
        text.contains("upgrade refused: the cache spans are being reopened"),
        "{text}"
    );
    assert!(!text.contains("released 0 cache spans"), "{text}");
    // Once the lock is let go the span is back, the upgrade goes through, and the new
    // process has the span and its object.
    drop(lock);
    assert!(wait_until(Duration::from_secs(20), || d
        .log_text()
        .contains(": back in use (1 objects)")));
    upgrade(&d, &mut successors);
    assert_eq!(d.log_text().matches("released 1 cache spans").count(), 2);
    assert!(wait_until(Duration::from_secs(20), || d
        .metric("proxy.process.cache.spans_online")
        == 1));
    assert_eq!(d.metric("proxy.process.cache.spans_failed"), 0);
}

/// Replaces the file at `path` (atomically, as a package upgrade does) with a shell
/// script running `body`.
fn script_binary(path: &std::path::Path, body: &str) {
    let tmp = path.with_extension("next");
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_reload_during_an_upgrade_waits_for_its_end_and_resets_no_request() {
    let _serial = serial();
    let mut successors = Successors::default();
    let origin = Origin::fixed(b"hello");
    let config = |threads: u32| {
        format!(
            "[proxy.config]\naccept_threads = {threads}\n[proxy.config.exec_thread]\nlisten = true\n{}",
            remap_to(&origin)
        )
    };
    let dir = TempDir::new("reload-during-upgrade");
    let exe = dir.0.join("turnstile");
    std::fs::copy(util::bin(), &exe).unwrap();
    let d = Daemon::builder().program(&exe).config(&config(1)).start();
    let addr = d.addr();
    let load = Load::start(addr, 3);
    load.wait_for(50);
    // The next binary takes a second to start: the reload comes meanwhile, and moves the
    // port to event mode with a socket per thread.
    script_binary(&exe, &format!("sleep 1\nexec {} \"$@\"", util::bin()));
    d.write_config(&config(0));
    let upgrading = {
        let mut cmd = d.ctl_command(&["server", "upgrade"]);
        std::thread::spawn(move || cmd.output().unwrap())
    };
    assert!(wait_until(Duration::from_secs(10), || d
        .log_text()
        .contains("upgrade: started")));
    // A file with a mistake is refused at once, not deferred.
    d.write_config(&format!(
        "{}\n[proxy.config.net]\nlisten_backlog = \"x\"\n",
        config(0)
    ));
    let (code, out, err) = d.ctl(&["config", "reload"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("listen_backlog"),
        "{out}{err}"
    );
    d.write_config(&config(0));
    let (code, out, err) = d.ctl(&["config", "reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deferred"), "{out}");
    let out = upgrading.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let new: i32 = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    successors.0.push(new);
    load.wait_for(50);
    let old = d.child.as_ref().unwrap().id() as i32;
    assert!(wait_until(Duration::from_secs(10), || Successors::exited(
        old
    )));
    load.wait_for(50);
    load.finish();
    // The process that serves now applied the reload, passed on to it.
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_text()
            .split(&format!("reload deferred meanwhile goes to pid {new}"))
            .nth(1)
            .is_some_and(|after| after.contains("configuration reloaded"))),
        "{}",
        d.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || d
            .ctl(&["port", "list"])
            .1
            .contains("event/reuseport")),
        "{}",
        d.log_text()
    );
}

#[test]
fn stopping_the_new_process_while_the_old_one_drains_refuses_new_connects() {
    let _serial = serial();
    let mut successors = Successors::default();
    let (origin, seen_rx) = slow_origin(Duration::from_millis(2000), b"hello");
    let d = Daemon::builder().config(&remap_to(&origin)).start();
    let addr = d.addr();
    let mut busy = http::send_get(addr, "/slow");
    seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let (old, new) = upgrade(&d, &mut successors);
    // SAFETY: sending a signal to a process this test started.
    unsafe { libc::kill(new, libc::SIGTERM) };
    assert!(wait_until(Duration::from_secs(10), || Successors::exited(
        new
    )));
    // The old process still drains, and no longer holds the listening socket.
    assert!(!Successors::exited(old));
    let r = TcpStream::connect(addr);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{r:?}"
    );
    assert_eq!(busy.read_response("GET").unwrap().status, 200);
}

#[test]
fn an_upgrade_starts_the_binary_a_repointed_symlink_names() {
    let _serial = serial();
    let mut successors = Successors::default();
    let origin = Origin::fixed(b"hello");
    let dir = TempDir::new("symlink-exe");
    let v1 = dir.0.join("turnstile-1");
    std::fs::copy(util::bin(), &v1).unwrap();
    let link = dir.0.join("turnstile");
    std::os::unix::fs::symlink(&v1, &link).unwrap();
    let d = Daemon::builder()
        .program(&link)
        .config(&remap_to(&origin))
        .start();
    // Version 2 says it ran, then is the real binary; the link is repointed at once.
    let marker = dir.0.join("v2-started");
    let v2 = dir.0.join("turnstile-2");
    script_binary(
        &v2,
        &format!("touch {}\nexec {} \"$@\"", marker.display(), util::bin()),
    );
    let tmp = dir.0.join("turnstile.new");
    std::os::unix::fs::symlink(&v2, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    upgrade(&d, &mut successors);
    assert!(
        marker.exists(),
        "the upgrade did not start the link's new target"
    );
    assert_eq!(http::get(d.addr(), "t", "/").unwrap().status, 200);
}

#[test]
fn a_first_sigterm_to_the_draining_old_process_lets_its_requests_finish() {
    let _serial = serial();
    let mut successors = Successors::default();
    let (origin, seen_rx) = slow_origin(Duration::from_millis(1500), b"late");
    let mut d = Daemon::builder().config(&remap_to(&origin)).start();
    let mut busy = http::send_get(d.addr(), "/slow");
    seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    upgrade(&d, &mut successors);
    // The old process drains; a stop now is its first, not a second one.
    d.signal(libc::SIGTERM);
    let r = busy.read_response("GET").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "late"));
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    let text = d.log_text();
    assert!(!text.contains("second stop: exiting now"), "{text}");
    assert!(text.contains("1 transactions drained, 0 cut"), "{text}");
}

#[test]
fn back_to_back_upgrades_lose_no_count_of_the_first_process() {
    let _serial = serial();
    let mut successors = Successors::default();
    let (origin, seen_rx) = slow_origin(Duration::from_millis(1500), b"hello");
    let d = Daemon::builder().config(&remap_to(&origin)).start();
    for _ in 0..3 {
        assert_eq!(http::get(d.addr(), "t", "/").unwrap().status, 200);
    }
    let before = d.metric("proxy.process.http.completed_requests");
    let mut busy = http::send_get(d.addr(), "/slow");
    seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // A hands over to B, and B at once to C, while A still drains its slow request.
    let (a, b) = upgrade(&d, &mut successors);
    let mut c = None;
    assert!(wait_until(Duration::from_secs(10), || {
        let (code, out, err) = d.ctl(&["server", "upgrade"]);
        if code == 0 {
            c = out
                .trim()
                .rsplit(' ')
                .next()
                .and_then(|p| p.parse::<i32>().ok());
        }
        assert!(code == 0 || err.contains("still taking over"), "{err}");
        code == 0
    }));
    successors.0.push(c.unwrap());
    assert_eq!(busy.read_response("GET").unwrap().status, 200);
    for pid in [a, b] {
        assert!(wait_until(Duration::from_secs(10), || Successors::exited(
            pid
        )));
    }
    // C counts A's last request, which completed after C took over.
    let mut now = 0;
    let counted = wait_until(Duration::from_secs(5), || {
        now = d.metric("proxy.process.http.completed_requests");
        now > before
    });
    assert!(
        counted,
        "completed_requests {before} -> {now}\n{}",
        d.log_text()
    );
}

#[test]
fn the_pid_file_names_the_new_process_when_ctl_upgrade_returns() {
    let _serial = serial();
    let mut successors = Successors::default();
    let dir = TempDir::new("pidfile-at-answer");
    let pid_file = dir.0.join("turnstile.pid");
    let d = Daemon::builder()
        .config("")
        .env("PROXY_CONFIG_PID_FILE", pid_file.to_str().unwrap())
        .start();
    let first = d.child.as_ref().unwrap().id();
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim() == first.to_string())
    }));
    for _ in 0..10 {
        let (_, new) = upgrade(&d, &mut successors);
        let named = std::fs::read_to_string(&pid_file).unwrap_or_default();
        assert_eq!(
            named.trim(),
            new.to_string(),
            "right after `ctl server upgrade`"
        );
    }
}

#[test]
fn an_upgrade_moves_the_admin_socket_and_the_pid_file_to_their_new_paths() {
    let _serial = serial();
    let mut successors = Successors::default();
    let config = |name: &str| {
        format!("[proxy.config]\npid_file = \"{name}.pid\"\n[proxy.config.admin]\nsocket = \"{name}.sock\"\n")
    };
    let d = Daemon::builder()
        .config(&config("a"))
        .unset("PROXY_CONFIG_ADMIN_SOCKET")
        .start();
    let dir = d.dir.0.clone();
    let first = d.child.as_ref().unwrap().id();
    let names = |file: &str, pid: u32| {
        std::fs::read_to_string(dir.join(file)).is_ok_and(|s| s.trim() == pid.to_string())
    };
    assert!(wait_until(Duration::from_secs(10), || names(
        "a.pid", first
    )));
    d.write_config(&config("b"));
    // The file names the new socket already: the running process is asked at the old.
    let (code, out, err) = util::run(
        &dir,
        &["ctl", "server", "upgrade"],
        &[("PROXY_CONFIG_ADMIN_SOCKET", "a.sock")],
    );
    assert_eq!(code, 0, "{out}{err}\n{}", d.log_text());
    let new: u32 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();
    successors.0.push(new as i32);
    // The new process serves ctl at the new path, the old path is gone, and the pid
    // file is the new one alone.
    assert!(
        wait_until(Duration::from_secs(10), || util::run(
            &dir,
            &[
                "ctl",
                "metric",
                "get",
                "proxy.process.net.accepts_currently_open"
            ],
            &[("PROXY_CONFIG_ADMIN_SOCKET", "b.sock")]
        )
        .0 == 0),
        "{}",
        d.log_text()
    );
    assert!(!dir.join("a.sock").exists());
    assert!(wait_until(Duration::from_secs(10), || names("b.pid", new)));
    assert!(!dir.join("a.pid").exists());
}

#[test]
fn an_abandoned_upgrade_ends_the_children_of_a_wrapper_script_too() {
    let _serial = serial();
    let origin = Origin::fixed(b"hello");
    let dir = TempDir::new("wrapper-group");
    let exe = dir.0.join("turnstile");
    std::fs::copy(util::bin(), &exe).unwrap();
    let d = Daemon::builder()
        .program(&exe)
        .config(&remap_to(&origin))
        .env("PROXY_CONFIG_UPGRADE_READY_TIMEOUT", "1")
        .start();
    // A wrapper whose child (holding the inherited sockets) outlives a killed shell.
    let sleeper = dir.0.join("sleeper.pid");
    script_binary(
        &exe,
        &format!("sleep 20 &\necho $! > {}\nwait", sleeper.display()),
    );
    let (code, _, err) = d.ctl(&["server", "upgrade"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not ready within 1 s"), "{err}");
    let pid: i32 = std::fs::read_to_string(&sleeper)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = wait_until(Duration::from_secs(5), || Successors::exited(pid));
    // SAFETY: sending a signal to a process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    Successors::exited(pid);
    assert!(gone, "the wrapper's child outlived the abandoned upgrade");
    assert_eq!(http::get(d.addr(), "t", "/").unwrap().status, 200);
}
