//! Each accept mode delivers connections to a handler on an ET_NET thread, stops within
//! 100 ms when cancelled, and keeps the acceptor gauges exact.

mod util;

use iocore::{AcceptMode, NetTuning};
use std::sync::atomic::Ordering;
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
