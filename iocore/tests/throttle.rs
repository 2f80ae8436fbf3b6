//! The connection cap in both policies, and the per-wake-up batch limit.

mod util;

use iocore::{AcceptMode, AcceptOptions, EThread, Event, NetConnection, NetTuning, ThrottleMode};
use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::{listener, wait_until, Rig};

/// A port whose acceptor keeps every connection it gets, so the test decides when each
/// one closes.
fn holding_port(
    rig: &Rig,
    mode: AcceptMode,
) -> (
    std::net::SocketAddr,
    iocore::Action,
    Arc<Mutex<Vec<NetConnection>>>,
) {
    let l = listener();
    let held: Arc<Mutex<Vec<NetConnection>>> = Arc::default();
    let h = held.clone();
    let action = rig
        .net
        .main_accept(
            Arc::new(move |c: NetConnection, _t: &mut EThread| h.lock().unwrap().push(c)),
            l.clone(),
            &AcceptOptions::new("cap", mode),
        )
        .unwrap();
    (l.local_addr(), action, held)
}

fn cap_tuning(cap: u64, mode: ThrottleMode) -> NetTuning {
    NetTuning {
        connections_throttle: cap,
        throttle_mode: mode,
        throttle_delay: Duration::from_millis(10),
        ..Default::default()
    }
}

#[test]
fn pause_mode_stops_at_the_cap_and_resumes_below_90_percent() {
    for mode in [
        AcceptMode::Threads {
            count: 1,
            avoid_event_cores: false,
        },
        AcceptMode::Event {
            listener_per_thread: false,
        },
        AcceptMode::Periodic,
    ] {
        let rig = Rig::new(2, cap_tuning(10, ThrottleMode::Pause));
        let (addr, action, held) = holding_port(&rig, mode.clone());
        let clients: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert!(
            wait_until(Duration::from_secs(5), || held.lock().unwrap().len() == 10),
            "{mode:?}"
        );
        let extra = TcpStream::connect(addr).unwrap(); // queued by the kernel, not accepted
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            held.lock().unwrap().len(),
            10,
            "{mode:?}: accepted past the cap"
        );
        assert_eq!(
            rig.metric("proxy.process.net.connections_currently_open"),
            10
        );
        assert!(rig.metric("proxy.process.net.accept_pauses") >= 1);
        // 9 open is not below 90 % of 10: still paused.
        held.lock().unwrap().pop();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(held.lock().unwrap().len(), 9, "{mode:?}: resumed at 90 %");
        // 8 is below 9: the queued client is accepted.
        held.lock().unwrap().pop();
        assert!(
            wait_until(Duration::from_secs(5), || held.lock().unwrap().len() == 9),
            "{mode:?}"
        );
        assert_eq!(rig.metric("proxy.process.net.connections_throttled_in"), 0);
        action.cancel();
        held.lock().unwrap().clear();
        drop((clients, extra));
        assert!(wait_until(Duration::from_secs(5), || rig
            .metric("proxy.process.net.connections_currently_open")
            == 0));
    }
}

#[test]
fn close_mode_accepts_and_closes_at_once_past_the_cap() {
    let rig = Rig::new(2, cap_tuning(5, ThrottleMode::Close));
    let (addr, action, held) = holding_port(
        &rig,
        AcceptMode::Threads {
            count: 1,
            avoid_event_cores: false,
        },
    );
    let _clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    assert!(wait_until(Duration::from_secs(5), || held
        .lock()
        .unwrap()
        .len()
        == 5));
    let mut extra = TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    // Closed by the daemon: EOF (or a reset), not a timeout.
    match extra.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected close, got {other:?}"),
    }
    assert_eq!(rig.metric("proxy.process.net.connections_throttled_in"), 1);
    assert_eq!(
        rig.metric("proxy.process.net.connections_currently_open"),
        5
    );
    assert_eq!(held.lock().unwrap().len(), 5);
    action.cancel();
}

/// Queues `clients` connections before anyone accepts, then accepts them on one ET_NET
/// thread (each costing 300 µs of start-up work) with `additional_accepts`, while a 1 ms
/// timer ticks on the same thread. Returns the timer's tick count seen at each accept.
fn flood(additional_accepts: i64, clients: usize) -> Vec<usize> {
    let rig = Rig::new(
        1,
        NetTuning {
            additional_accepts,
            ..Default::default()
        },
    );
    let l = listener();
    // Every client is queued by the kernel first: one wake-up could take them all if the
    // batch were unbounded.
    let queued: Vec<TcpStream> = (0..clients)
        .map(|_| TcpStream::connect(l.local_addr()).unwrap())
        .collect();
    let ticks = Arc::new(AtomicUsize::new(0));
    let t2 = ticks.clone();
    let timer = rig.events.threads()[0].schedule_every(
        Event::new(move |_| {
            t2.fetch_add(1, Ordering::SeqCst);
        }),
        Duration::from_millis(1),
    );
    let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
    let s2 = seen.clone();
    let action = rig
        .net
        .main_accept(
            Arc::new(move |_c: NetConnection, _t: &mut EThread| {
                let until = Instant::now() + Duration::from_micros(300);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                s2.lock().unwrap().push(ticks.load(Ordering::SeqCst));
            }),
            l.clone(),
            &AcceptOptions::new(
                "flood",
                AcceptMode::Event {
                    listener_per_thread: false,
                },
            ),
        )
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || seen
        .lock()
        .unwrap()
        .len()
        == clients));
    timer.cancel();
    action.cancel();
    drop(queued);
    let seen = seen.lock().unwrap().clone();
    seen
}

#[test]
fn batch_limit_lets_a_timer_on_the_same_thread_fire_during_an_accept_flood() {
    let seen = flood(0, 300);
    // ~90 ms of accept work: with one accept per wake-up the 1 ms timer interleaves.
    let during = seen[seen.len() - 1] - seen[0];
    assert!(during >= 5, "timer fired {during} times during the flood");
}

#[test]
fn unbounded_batch_takes_the_whole_queue_in_one_wake_up() {
    // The control for the test above: with additional_accepts = -1 the same flood is
    // accepted in one batch, with no timer in between. This shows the other test can fail.
    let seen = flood(-1, 100);
    assert_eq!(
        seen.first(),
        seen.last(),
        "a timer ran inside what should be one batch"
    );
}
