//! The event system: scheduling, cancellation, try-lock mutexes and I/O registration.

mod util;

use iocore::{Event, EventProcessor, EventProcessorOptions, ProxyMutex};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::wait_until;

fn processor(threads: usize) -> EventProcessor {
    EventProcessor::start(&EventProcessorOptions {
        threads,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn schedule_imm_runs_on_the_chosen_thread() {
    let ep = processor(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for t in ep.threads() {
        let seen = seen.clone();
        let want = t.id();
        t.schedule_imm(Event::new(move |et| {
            seen.lock().unwrap().push((want, et.id()))
        }));
    }
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .len()
        == 2));
    for (want, got) in seen.lock().unwrap().iter() {
        assert_eq!(want, got);
    }
}

#[test]
fn schedule_in_waits_at_least_the_delay() {
    let ep = processor(1);
    let fired = Arc::new(Mutex::new(None));
    let f = fired.clone();
    let start = Instant::now();
    ep.schedule_in(
        Event::new(move |_| *f.lock().unwrap() = Some(Instant::now())),
        Duration::from_millis(30),
    );
    assert!(wait_until(Duration::from_secs(5), || fired
        .lock()
        .unwrap()
        .is_some()));
    let at = fired.lock().unwrap().unwrap();
    assert!(
        at - start >= Duration::from_millis(30),
        "fired after {:?}",
        at - start
    );
}

#[test]
fn schedule_every_repeats_until_cancelled_from_another_thread() {
    let ep = processor(1);
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let h = ep.schedule_every(
        Event::new(move |_| {
            n2.fetch_add(1, Ordering::SeqCst);
        }),
        Duration::from_millis(2),
    );
    assert!(wait_until(Duration::from_secs(5), || n
        .load(Ordering::SeqCst)
        >= 5));
    h.cancel();
    // One run may be in flight when cancel lands; none after that.
    std::thread::sleep(Duration::from_millis(5));
    let after = n.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(n.load(Ordering::SeqCst), after);
}

#[test]
fn periodic_event_can_cancel_itself_and_its_state_is_dropped() {
    let ep = processor(1);
    let n = Arc::new(AtomicUsize::new(0));
    let owned = Arc::new(());
    let weak = Arc::downgrade(&owned);
    let slot: Arc<Mutex<Option<iocore::EventHandle>>> = Arc::default();
    let (n2, slot2) = (n.clone(), slot.clone());
    let h = ep.threads()[0].schedule_every(
        Event::new(move |_| {
            let _keep = &owned;
            if n2.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
                slot2.lock().unwrap().as_ref().unwrap().cancel();
            }
        }),
        Duration::from_millis(1),
    );
    *slot.lock().unwrap() = Some(h);
    assert!(wait_until(Duration::from_secs(5), || weak
        .upgrade()
        .is_none()));
    assert_eq!(n.load(Ordering::SeqCst), 3);
}

#[test]
fn cancel_of_a_long_timer_drops_it_promptly() {
    let ep = processor(1);
    let owned = Arc::new(());
    let weak = Arc::downgrade(&owned);
    let h = ep.schedule_in(
        Event::new(move |_| {
            let _keep = &owned;
        }),
        Duration::from_secs(3600),
    );
    h.cancel();
    assert!(wait_until(Duration::from_millis(100), || weak
        .upgrade()
        .is_none()));
}

#[test]
fn busy_mutex_retries_the_event_without_blocking_the_thread() {
    let ep = processor(1);
    let m = Arc::new(ProxyMutex::new());
    let ran = Arc::new(AtomicUsize::new(0));
    let other = Arc::new(AtomicUsize::new(0));
    let guard = m.try_lock().unwrap();
    let r = ran.clone();
    ep.schedule_imm(
        Event::new(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .with_mutex(m.clone()),
    );
    let o = other.clone();
    ep.schedule_imm(Event::new(move |_| {
        o.fetch_add(1, Ordering::SeqCst);
    }));
    // The unlocked event runs although the locked one cannot.
    assert!(wait_until(Duration::from_secs(5), || other
        .load(Ordering::SeqCst)
        == 1));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    drop(guard);
    assert!(wait_until(Duration::from_secs(5), || ran
        .load(Ordering::SeqCst)
        == 1));
}

#[test]
fn io_handler_sees_readiness_and_remove_closes_its_fd() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let ep = processor(1);
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let fd = a.as_raw_fd();
    ep.threads()[0].run(move |t| {
        let handler = move |_t: &mut iocore::EThread, _tok, r: iocore::Ready| {
            if r.is_readable() {
                let mut buf = [0u8; 8];
                let _ = (&a).read(&mut buf);
                g.fetch_add(1, Ordering::SeqCst);
                return iocore::Verdict::Remove;
            }
            iocore::Verdict::Keep
        };
        t.register(fd, iocore::Interest::READ, Box::new(handler))
            .unwrap();
    });
    b.write_all(b"hi").unwrap();
    assert!(wait_until(Duration::from_secs(5), || got
        .load(Ordering::SeqCst)
        == 1));
    // The handler owned `a`; once removed, `b` sees EOF.
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(b.read(&mut buf).unwrap(), 0);
}

#[test]
fn is_registered_holds_until_the_handler_removes_its_registration() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::sync::Mutex;
    let ep = processor(1);
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    // What the thread saw: the token, then is_registered before and after the removal.
    let seen: Arc<Mutex<(Option<iocore::Token>, Vec<bool>)>> = Arc::default();
    let ran = Arc::new(AtomicUsize::new(0));
    let (s, r) = (seen.clone(), ran.clone());
    let fd = a.as_raw_fd();
    ep.threads()[0].run(move |t| {
        let handler = move |_t: &mut iocore::EThread, _tok, ready: iocore::Ready| {
            let _owned = &a;
            if ready.is_readable() {
                r.fetch_add(1, Ordering::SeqCst);
                return iocore::Verdict::Remove;
            }
            iocore::Verdict::Keep
        };
        let token = t
            .register(fd, iocore::Interest::READ, Box::new(handler))
            .unwrap();
        let mut s = s.lock().unwrap();
        s.0 = Some(token);
        s.1.push(t.is_registered(token));
    });
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .0
        .is_some()));
    b.write_all(b"hi").unwrap();
    assert!(wait_until(Duration::from_secs(5), || ran
        .load(Ordering::SeqCst)
        == 1));
    let s = seen.clone();
    ep.threads()[0].run(move |t| {
        let mut s = s.lock().unwrap();
        let token = s.0.unwrap();
        s.1.push(t.is_registered(token));
    });
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .1
        .len()
        == 2));
    assert_eq!(seen.lock().unwrap().1, [true, false]);
}

#[test]
fn replace_handler_hands_a_registration_over_even_from_the_running_handler() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let ep = processor(1);
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let fd = a.as_raw_fd();
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    // Reads whatever is there (edge-triggered registration).
    fn drain(a: &std::os::unix::net::UnixStream) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&*a).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
    let a = Arc::new(a);
    let (s1, a1) = (seen.clone(), a.clone());
    ep.threads()[0].run(move |t| {
        let (s2, a2) = (s1.clone(), a1.clone());
        let second = move |_t: &mut iocore::EThread, _tok, _r: iocore::Ready| {
            drain(&a2);
            s2.lock().unwrap().push("second");
            iocore::Verdict::Keep
        };
        let mut second = Some(second);
        let first = move |t: &mut iocore::EThread, tok, _r: iocore::Ready| {
            drain(&a1);
            s1.lock().unwrap().push("first");
            // Give the registration away while running.
            if let Some(h) = second.take() {
                assert!(t.replace_handler(tok, Box::new(h)));
            }
            iocore::Verdict::Keep
        };
        t.register(
            fd,
            iocore::Interest::READ | iocore::Interest::EDGE,
            Box::new(first),
        )
        .unwrap();
    });
    b.write_all(b"1").unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .len()
        == 1));
    b.write_all(b"2").unwrap();
    assert!(wait_until(Duration::from_secs(5), || seen
        .lock()
        .unwrap()
        .len()
        == 2));
    assert_eq!(*seen.lock().unwrap(), vec!["first", "second"]);
}

#[test]
fn after_io_hook_runs_once_the_whole_batch_was_dispatched() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    // A hook is a plain fn: what it sees goes through a static.
    static ORDER: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    fn hook(_t: &mut iocore::EThread) {
        ORDER.lock().unwrap().push("hook");
    }
    let ep = processor(1);
    let (a, mut a_peer) = UnixStream::pair().unwrap();
    let (b, mut b_peer) = UnixStream::pair().unwrap();
    // Both readable before they are registered: one epoll_wait reports both.
    a_peer.write_all(b"a").unwrap();
    b_peer.write_all(b"b").unwrap();
    ep.threads()[0].run(move |t| {
        for (sock, name) in [(a, "a"), (b, "b")] {
            sock.set_nonblocking(true).unwrap();
            let fd = sock.as_raw_fd();
            let handler = move |t: &mut iocore::EThread, _tok, _r: iocore::Ready| {
                let mut buf = [0u8; 8];
                let _ = (&sock).read(&mut buf);
                ORDER.lock().unwrap().push(name);
                t.after_io(hook);
                iocore::Verdict::Remove
            };
            t.register(fd, iocore::Interest::READ, Box::new(handler))
                .unwrap();
        }
    });
    assert!(wait_until(Duration::from_secs(5), || ORDER
        .lock()
        .unwrap()
        .len()
        == 4));
    let order = ORDER.lock().unwrap().clone();
    // Asked by both handlers, it ran twice, and only after both had run.
    assert_eq!(&order[2..], ["hook", "hook"], "{order:?}");
    assert!(
        order[..2].contains(&"a") && order[..2].contains(&"b"),
        "{order:?}"
    );
}

#[test]
fn failed_waits_are_a_metric_registered_with_the_net_metrics() {
    let rig = util::Rig::new(1, iocore::NetTuning::default());
    assert_eq!(
        rig.registry.value("proxy.process.eventsystem.poll_errors"),
        Some(0)
    );
}

/// Holds `busy` inside a loop turn (a job that waits) until the returned sender sends or
/// drops, once both threads were seen asleep; returns when `busy` is in the job and
/// `idle` sleeps.
fn hold_in_a_turn(
    busy: &iocore::ThreadRef,
    idle: &iocore::ThreadRef,
) -> std::sync::mpsc::Sender<()> {
    assert!(wait_until(Duration::from_secs(5), || !busy.busy() && !idle.busy()));
    let (release, held) = std::sync::mpsc::channel::<()>();
    let inside = Arc::new(AtomicUsize::new(0));
    let flag = inside.clone();
    busy.run(move |_| {
        flag.store(1, Ordering::SeqCst);
        let _ = held.recv_timeout(Duration::from_secs(20));
    });
    assert!(wait_until(Duration::from_secs(5), || inside
        .load(Ordering::SeqCst)
        == 1));
    assert!(wait_until(Duration::from_secs(5), || !idle.busy()));
    release
}

#[test]
fn assign_busy_prefers_a_thread_in_a_turn_until_its_queue_is_long() {
    let ep = processor(2);
    let (busy, idle) = (&ep.threads()[0], &ep.threads()[1]);
    let release = hold_in_a_turn(busy, idle);
    // The busy thread is chosen, whoever's turn it is, while its queue is short.
    for _ in 0..iocore::BUSY_QUEUE {
        let chosen = ep.assign_busy();
        assert_eq!(chosen.id(), busy.id());
        chosen.run(|_| {});
    }
    // With BUSY_QUEUE jobs waiting on it, the sleeping thread gets the next one.
    assert_eq!(busy.queued(), iocore::BUSY_QUEUE);
    assert_eq!(ep.assign_busy().id(), idle.id());
    release.send(()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || busy.queued() == 0));
}

#[test]
fn assign_busy_stops_preferring_a_busy_thread_that_holds_more_than_its_share() {
    let ep = processor(2);
    let (busy, idle) = (&ep.threads()[0], &ep.threads()[1]);
    let release = hold_in_a_turn(busy, idle);
    let to_busy = |ep: &EventProcessor| {
        (0..10)
            .filter(|_| ep.assign_busy().id() == busy.id())
            .count()
    };
    // Within its share, the busy thread gets every connection.
    assert_eq!(to_busy(&ep), 10);
    // Holding more than its share over the idle thread, it gets its turn only.
    let holds: Vec<_> = (0..=iocore::fair_share(0)).map(|_| busy.hold()).collect();
    assert_eq!(busy.held(), iocore::fair_share(0) + 1);
    assert_eq!(to_busy(&ep), 5);
    drop(holds);
    assert_eq!(busy.held(), 0);
    assert_eq!(to_busy(&ep), 10);
    release.send(()).unwrap();
}

#[test]
fn assign_busy_looks_at_a_window_of_threads_only() {
    let ep = processor(8);
    let threads = ep.threads();
    let (busy, idle) = (&threads[7], &threads[0]);
    let release = hold_in_a_turn(busy, idle);
    assert!(wait_until(Duration::from_secs(5), || threads[..7]
        .iter()
        .all(|t| !t.busy())));
    // Eight choices start their windows at eight successive threads; thread 7 is in
    // BUSY_WINDOW of them and chosen there, the others go in turn.
    let to_busy = (0..8)
        .filter(|_| ep.assign_busy().id() == busy.id())
        .count();
    assert_eq!(to_busy, iocore::BUSY_WINDOW);
    release.send(()).unwrap();
}
