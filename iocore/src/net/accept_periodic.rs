//! Periodic mode (`periodic` ports): ATS's NetAccept events. Every ET_NET thread runs one
//! event per port every `accept_period`; all of a port's events share one `ProxyMutex`.
//! The thread try-locks it: holding it, it accepts a batch without blocking and starts
//! those connections itself; failing, the event simply waits for its next tick. The loop
//! never blocks. A period read live (a reload changes it) and longer than a second is
//! waited out in ticks of a second.
//!
//! The event body runs on the ET_NET thread it was scheduled on; `start` runs on the
//! caller's thread.

use super::accept::{Batch, PortAccept};
use super::listener::Listener;
use crate::eventsystem::{Event, ProxyMutex, ThreadRef};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest an event sleeps: a longer period (or pause) is waited out in ticks of
/// this, each looking at the period again, so that a reload that shortens it takes
/// effect within this rather than after the old period.
const RECHECK: Duration = Duration::from_secs(1);

/// Schedules one NetAccept event per thread.
pub(crate) fn start(
    port: &Arc<PortAccept>,
    listener: &Arc<Listener>,
    threads: &[ThreadRef],
    mutex: Arc<ProxyMutex>,
) {
    for (i, thread) in threads.iter().enumerate() {
        let open = port.open_acceptor();
        let (port_ev, listener) = (port.clone(), listener.clone());
        // Set while a wait longer than RECHECK is under way: when the last batch ran,
        // and the pause it asked for (zero: the period's wait).
        let mut long_wait: Option<(Instant, Duration)> = None;
        let event = Event::new(move |t| {
            let _ = &open; // owned by the event: dropped, and counted down, when it is
            let period = port_ev.net.accept_period();
            let now = Instant::now();
            if let Some((ran, pause)) = long_wait {
                let due = ran + pause.max(period);
                if now < due {
                    return t.set_period((due - now).min(RECHECK));
                }
            }
            let pause = match port_ev.accept_batch(listener.as_raw_fd(), Some(t)) {
                Batch::Pause(delay) => delay,
                // Yielded: the rest of the queue waits for the next tick.
                Batch::Drained(_) | Batch::Yielded | Batch::Stop => Duration::ZERO,
            };
            let wait = pause.max(period);
            long_wait = (wait > RECHECK).then_some((now, pause));
            t.set_period(wait.min(RECHECK));
        })
        .with_mutex(mutex.clone());
        // Stagger the threads' ticks across the period: with one shared mutex, ticks
        // that coincide would leave all but one thread to find it taken.
        let period = port.net.accept_period().min(RECHECK);
        let first = period * (i as u32 + 1) / threads.len() as u32;
        let handle = thread.schedule_every_from(event, first, period);
        port.action.on_cancel(move || handle.cancel());
    }
}
