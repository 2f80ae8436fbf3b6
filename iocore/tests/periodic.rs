//! Periodic NetAccept events: a busy acceptor mutex never blocks the event loop.

mod util;

use iocore::{AcceptMode, AcceptOptions, EThread, Event, NetConnection, NetTuning, ProxyMutex};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::{listener, wait_until, Rig};

#[test]
fn held_acceptor_mutex_never_delays_the_threads_other_timers() {
    let tuning = NetTuning {
        accept_period: Duration::from_millis(10),
        ..Default::default()
    };
    let rig = Rig::new(1, tuning);
    let l = listener();
    let mutex = Arc::new(ProxyMutex::new());
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    let mut opts = AcceptOptions::new("p", AcceptMode::Periodic);
    opts.mutex = Some(mutex.clone());
    let action = rig
        .net
        .main_accept(
            Arc::new(move |_c: NetConnection, _t: &mut EThread| {
                a.fetch_add(1, Ordering::SeqCst);
            }),
            l.clone(),
            &opts,
        )
        .unwrap();

    // Another timer on the same (only) ET_NET thread, ticking every 5 ms.
    let ticks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t2 = ticks.clone();
    let timer = rig.events.threads()[0].schedule_every(
        Event::new(move |_| t2.lock().unwrap().push(Instant::now())),
        Duration::from_millis(5),
    );

    // Hold the acceptor's mutex from this thread for 200 ms, with a client waiting.
    let guard = mutex.lock();
    let held_from = Instant::now();
    let _client = std::net::TcpStream::connect(l.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "accepted without the mutex"
    );
    let held_until = Instant::now();
    drop(guard);

    // Once the mutex is free, the next tick accepts.
    assert!(wait_until(Duration::from_secs(2), || accepted
        .load(Ordering::SeqCst)
        == 1));
    timer.cancel();
    action.cancel();
    assert!(action.wait_done(Duration::from_millis(100)));

    let ticks = ticks.lock().unwrap();
    let during: Vec<Instant> = ticks
        .iter()
        .copied()
        .filter(|t| *t >= held_from && *t <= held_until)
        .collect();
    // A loop blocked on the mutex would show one 200 ms gap; a try-lock loop keeps
    // ticking. 5 ms ticks, allowing generously for a loaded 2-core machine.
    assert!(
        during.len() >= 10,
        "only {} ticks while the mutex was held",
        during.len()
    );
    let max_gap = during.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        max_gap < Duration::from_millis(100),
        "timer gap {max_gap:?}"
    );
}
