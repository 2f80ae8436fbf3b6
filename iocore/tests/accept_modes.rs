//! Each accept mode delivers connections to a handler on an ET_NET thread, stops within
//! 100 ms when cancelled, and keeps the acceptor gauges exact.

mod util;

use iocore::{AcceptMode, NetTuning};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::{all_modes, echo_port, echo_roundtrip, wait_until, Rig};

#[test]
fn every_mode_delivers_connections_to_a_handler_on_an_et_net_thread() {
    for (name, mode) in all_modes() {
        let rig = Rig::new(2, NetTuning::default());
        let (l, action, on_et, off_et) = echo_port(&rig, mode);
        for _ in 0..50 {
            echo_roundtrip(l.local_addr()).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(on_et.load(Ordering::SeqCst), 50, "{name}");
        assert_eq!(off_et.load(Ordering::SeqCst), 0, "{name}");
        assert_eq!(rig.metric("proxy.process.tcp.total_accepts"), 50, "{name}");
        assert_eq!(
            rig.metric("proxy.process.net.port.test.total_accepts"),
            50,
            "{name}"
        );
        assert!(
            wait_until(Duration::from_secs(5), || rig
                .metric("proxy.process.net.connections_currently_open")
                == 0),
            "{name}"
        );
        assert!(
            rig.metric("proxy.process.net.accept_queue_delay_us.max")
                >= rig.metric("proxy.process.net.accept_queue_delay_us.p50")
        );
        action.cancel();
        assert!(action.wait_done(Duration::from_secs(1)), "{name}");
    }
}

#[test]
fn accepts_currently_open_counts_accept_loops_per_mode() {
    for (name, mode) in all_modes() {
        let rig = Rig::new(2, NetTuning::default());
        let expected = match mode {
            AcceptMode::Threads { count, .. } => count as i64,
            _ => 2, // one per ET_NET thread
        };
        let (_l, action, _, _) = echo_port(&rig, mode);
        assert!(
            wait_until(Duration::from_secs(5), || rig
                .metric("proxy.process.net.accepts_currently_open")
                == expected),
            "{name}: {}",
            rig.metric("proxy.process.net.accepts_currently_open")
        );
        assert_eq!(
            rig.metric("proxy.process.net.port.test.accepts_currently_open"),
            expected,
            "{name}"
        );
        action.cancel();
        assert!(action.wait_done(Duration::from_secs(1)), "{name}");
        assert_eq!(
            rig.metric("proxy.process.net.accepts_currently_open"),
            0,
            "{name}"
        );
        assert_eq!(
            rig.metric("proxy.process.net.port.test.accepts_currently_open"),
            0,
            "{name}"
        );
    }
}

#[test]
fn cancel_stops_every_mode_within_100ms() {
    for (name, mode) in all_modes() {
        let rig = Rig::new(2, NetTuning::default());
        let (l, action, on_et, _) = echo_port(&rig, mode);
        echo_roundtrip(l.local_addr()).unwrap();
        let t0 = Instant::now();
        action.cancel();
        assert!(
            action.wait_done(Duration::from_millis(100)),
            "{name}: not stopped after {:?}",
            t0.elapsed()
        );
        assert_eq!(
            rig.metric("proxy.process.net.accepts_currently_open"),
            0,
            "{name}"
        );
        // The listening socket is still ours (we hold the Arc) and still listening, but
        // nobody accepts on it any more.
        let before = on_et.load(Ordering::SeqCst);
        let _c = std::net::TcpStream::connect(l.local_addr()).expect("kernel still queues");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            on_et.load(Ordering::SeqCst),
            before,
            "{name}: accepted after cancel"
        );
    }
}

#[test]
fn cancel_then_restart_on_the_same_listener_refuses_no_one() {
    // The reload swap: new acceptors start on the socket before the old ones stop.
    let rig = Rig::new(2, NetTuning::default());
    let modes = all_modes();
    let l = util::reuseport_listener();
    let mut current: Option<iocore::Action> = None;
    for round in 0..8 {
        let (_, mode) = &modes[round % modes.len()];
        let mode = match mode {
            AcceptMode::Event { .. } => AcceptMode::Event {
                listener_per_thread: false,
            },
            m => m.clone(),
        };
        let acceptor = |conn: iocore::NetConnection, t: &mut iocore::EThread| {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&conn);
            let _ = t.register(
                fd,
                iocore::Interest::READ,
                Box::new(util::EchoOnce { conn }),
            );
        };
        let next = rig
            .net
            .main_accept(
                std::sync::Arc::new(acceptor),
                l.clone(),
                &iocore::AcceptOptions::new("swap", mode),
            )
            .unwrap();
        if let Some(old) = current.replace(next) {
            old.cancel();
        }
        for _ in 0..20 {
            echo_roundtrip(l.local_addr()).unwrap();
        }
    }
    current.unwrap().cancel();
    assert!(wait_until(Duration::from_secs(1), || rig
        .metric("proxy.process.net.accepts_currently_open")
        == 0));
}

/// Reads an integer socket option.
fn sockopt(fd: std::os::fd::RawFd, level: i32, name: i32) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live locals sized for a c_int.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
    assert_eq!(r, 0, "getsockopt: {}", std::io::Error::last_os_error());
    v
}

#[test]
fn accepted_sockets_carry_the_sock_options_in_every_mode() {
    use iocore::{AcceptOptions, EThread, NetConnection, SockOptions};
    use std::os::fd::AsRawFd;
    use std::sync::{Arc, Mutex};
    for (name, mode) in all_modes() {
        let rig = Rig::new(2, NetTuning::default());
        let l = if matches!(
            mode,
            AcceptMode::Event {
                listener_per_thread: true
            }
        ) {
            util::reuseport_listener()
        } else {
            util::listener()
        };
        // (nodelay, keepalive, linger on, linger secs, rcvbuf) of each accepted socket.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let acceptor = move |conn: NetConnection, _t: &mut EThread| {
            let fd = conn.as_raw_fd();
            let mut lg = libc::linger {
                l_onoff: 0,
                l_linger: -1,
            };
            let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
            // SAFETY: `lg` and `len` are live locals sized for a linger struct.
            unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&mut lg as *mut libc::linger).cast(),
                    &mut len,
                )
            };
            record.lock().unwrap().push((
                sockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY),
                sockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
                lg.l_onoff,
                lg.l_linger,
                sockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF),
                sockopt(fd, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT),
            ));
        };
        let mut options = AcceptOptions::new("test", mode);
        options.sock = SockOptions {
            nodelay: true,
            keepalive: true,
            linger0: true,
            recv_buffer: 96 * 1024,
            send_buffer: 0,
            notsent_lowat: 64 * 1024,
        };
        let action = rig
            .net
            .main_accept(Arc::new(acceptor), l.clone(), &options)
            .expect("main_accept");
        // The first connection decides how the port applies them; the later ones follow.
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(std::net::TcpStream::connect(l.local_addr()).expect("connect"));
        }
        assert!(
            wait_until(Duration::from_secs(5), || seen.lock().unwrap().len() == 8),
            "{name}: {} of 8 accepted",
            seen.lock().unwrap().len()
        );
        for &(nodelay, keepalive, on, secs, rcvbuf, lowat) in seen.lock().unwrap().iter() {
            assert_eq!(lowat, 64 * 1024, "{name}: TCP_NOTSENT_LOWAT");
            assert_ne!(nodelay, 0, "{name}: TCP_NODELAY");
            assert_ne!(keepalive, 0, "{name}: SO_KEEPALIVE");
            assert_eq!((on, secs), (1, 0), "{name}: SO_LINGER 0");
            assert!(rcvbuf >= 96 * 1024, "{name}: SO_RCVBUF {rcvbuf}");
        }
        action.cancel();
        assert!(action.wait_done(Duration::from_secs(1)), "{name}");
    }
}

#[test]
fn threads_mode_counts_each_handed_off_connection_as_held_by_its_thread_until_dropped() {
    let (rig, l, action, kept) = keeping_port(NetTuning::default().accept_coalesce);
    let held = || rig.events.threads().iter().map(|t| t.held()).sum::<usize>();
    let clients: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(l.local_addr()).unwrap())
        .collect();
    assert!(kept_reaches(&kept, 20));
    assert_eq!(held(), 20);
    kept.lock().unwrap().clear();
    assert_eq!(held(), 0);
    drop(clients);
    action.cancel();
    assert!(action.wait_done(Duration::from_secs(1)));
}

#[test]
fn accept_threads_run_under_sched_batch() {
    let rig = Rig::new(1, NetTuning::default());
    let (_l, action) = threads_port(&rig, "sbtest", 2, |_c, _t| {});
    assert!(wait_until(Duration::from_secs(5), || {
        let p = accept_thread_policies("[ACCEPT sbtest");
        p.len() == 2 && p.iter().all(|&p| p == libc::SCHED_BATCH)
    }));
    action.cancel();
    assert!(action.wait_done(Duration::from_secs(1)));
}

#[test]
fn accept_threads_keep_a_policy_the_operator_chose() {
    let rig = Rig::new(1, NetTuning::default());
    // Accept threads inherit the policy of the thread that starts them: SCHED_IDLE here
    // (any thread may lower its own policy), as systemd's CPUSchedulingPolicy would set.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is this thread; `param` outlives the call.
    let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    assert_eq!(set, 0);
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let (l, action) = threads_port(&rig, "idletest", 1, move |_c, _t| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    // Once the thread has accepted, it is past the point where it would change policy.
    let _client = std::net::TcpStream::connect(l.local_addr()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || accepted
        .load(Ordering::SeqCst)
        == 1));
    assert_eq!(
        accept_thread_policies("[ACCEPT idletes"),
        vec![libc::SCHED_IDLE]
    );
    action.cancel();
    assert!(action.wait_done(Duration::from_secs(1)));
}

/// The scheduling policy of every thread of this process whose name (comm, cut at 15
/// bytes) starts with `prefix`.
fn accept_thread_policies(prefix: &str) -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let tid: i32 = t.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            // SAFETY: sched_getscheduler reads the policy of thread `tid`; no memory.
            comm.starts_with(prefix)
                .then(|| unsafe { libc::sched_getscheduler(tid) })
        })
        .collect()
}

/// A threads-mode port whose acceptor keeps every connection, with `coalesce` as the
/// accept threads' wait after a wake-up that accepted.
fn keeping_port(
    coalesce: Duration,
) -> (
    Rig,
    Arc<iocore::Listener>,
    iocore::Action,
    Arc<Mutex<Vec<iocore::NetConnection>>>,
) {
    let rig = Rig::new(
        2,
        NetTuning {
            accept_coalesce: coalesce,
            ..NetTuning::default()
        },
    );
    let kept = Arc::new(Mutex::new(Vec::new()));
    let k = kept.clone();
    let (l, action) = threads_port(&rig, "test", 1, move |conn, _t| {
        k.lock().unwrap().push(conn);
    });
    (rig, l, action, kept)
}

/// Starts `count` accept threads named after `label` on a fresh listener of `rig`,
/// handing connections to `acceptor`.
fn threads_port(
    rig: &Rig,
    label: &str,
    count: usize,
    acceptor: impl Fn(iocore::NetConnection, &mut iocore::EThread) + Send + Sync + 'static,
) -> (Arc<iocore::Listener>, iocore::Action) {
    let l = util::listener();
    let action = rig
        .net
        .main_accept(
            Arc::new(acceptor),
            l.clone(),
            &iocore::AcceptOptions::new(
                label,
                AcceptMode::Threads {
                    count,
                    avoid_event_cores: false,
                },
            ),
        )
        .unwrap();
    (l, action)
}

/// Whether `kept` holds `n` connections within 5 s.
fn kept_reaches(kept: &Mutex<Vec<iocore::NetConnection>>, n: usize) -> bool {
    wait_until(Duration::from_secs(5), || kept.lock().unwrap().len() == n)
}

#[test]
fn an_accept_thread_takes_what_arrives_during_its_coalescing_wait_in_one_batch() {
    let window = Duration::from_millis(300);
    let (_rig, l, action, kept) = keeping_port(window);
    let first = std::net::TcpStream::connect(l.local_addr()).unwrap();
    assert!(kept_reaches(&kept, 1));
    // The thread now waits out the window before it looks at the queue again: these two
    // queue in the kernel meanwhile and are accepted together once it ends.
    let later: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(l.local_addr()).unwrap())
        .collect();
    assert!(kept_reaches(&kept, 3));
    let at: Vec<Instant> = kept
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.accepted_at())
        .collect();
    for (i, t) in at[1..].iter().enumerate() {
        assert!(
            t.duration_since(at[0]) >= window,
            "connection {} accepted {:?} after the first",
            i + 1,
            t.duration_since(at[0])
        );
    }
    drop((first, later));
    action.cancel();
    assert!(action.wait_done(Duration::from_secs(1)));
}

#[test]
fn cancel_ends_an_accept_threads_coalescing_wait() {
    // A wait far longer than the test's deadline: only the cancel eventfd can end it.
    let (rig, l, action, kept) = keeping_port(Duration::from_secs(60));
    let _c = std::net::TcpStream::connect(l.local_addr()).unwrap();
    assert!(kept_reaches(&kept, 1));
    action.cancel();
    assert!(action.wait_done(Duration::from_secs(2)));
    assert_eq!(rig.metric("proxy.process.net.accepts_currently_open"), 0);
}

#[test]
fn with_no_coalescing_the_next_connection_is_accepted_without_waiting_a_window() {
    // The control for the two tests above: 0 turns the wait off, so the thread blocks
    // on the socket again after each batch and the next connection is taken when it
    // arrives, well inside a deadline a 60 s window would overrun.
    let (_rig, l, action, kept) = keeping_port(Duration::ZERO);
    let first = std::net::TcpStream::connect(l.local_addr()).unwrap();
    assert!(kept_reaches(&kept, 1));
    let second = std::net::TcpStream::connect(l.local_addr()).unwrap();
    assert!(kept_reaches(&kept, 2));
    drop((first, second));
    action.cancel();
    assert!(action.wait_done(Duration::from_secs(1)));
}
