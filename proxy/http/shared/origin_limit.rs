//! `per_server.connection.max`: transactions in flight per origin address over every
//! thread, a place for each ([`OriginSlot`]), and the queue of requests waiting for one
//! ([`OriginWaiter`]), served oldest first whichever thread it is on. Any thread; the
//! queue's turns are run on the waiters' own threads.

use iocore::{EThread, ThreadRef};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Origin addresses whose load is kept at most: beyond, those nobody holds a place or a
/// turn at are forgotten (a forward proxy meets unbounded addresses).
const ORIGINS_KEPT: usize = 4096;

/// What a new request may do under its origin's limit ([`OriginLimits::admit`]).
pub(crate) enum Admission {
    /// The origin has no limit.
    Unlimited,
    /// A place, held until the transaction ends.
    Admitted(OriginSlot),
    /// No place now: wait, counted as waiting from now.
    Wait(OriginWaiter),
}

/// The load of every limited origin address.
#[derive(Default)]
pub(crate) struct OriginLimits {
    origins: Mutex<HashMap<SocketAddr, Arc<OriginLoad>>>,
}

impl OriginLimits {
    /// A new request's place among the `max` transactions in flight to `addr` (0: no
    /// limit); when none is free (or others wait), a turn on `t`'s queue, which
    /// `resume` (run there when a place may be free) serves.
    pub(crate) fn admit(
        &self,
        addr: SocketAddr,
        max: usize,
        t: &EThread,
        resume: fn(&mut EThread),
    ) -> Admission {
        if max == 0 {
            return Admission::Unlimited;
        }
        let load = {
            let mut origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
            if origins.len() >= ORIGINS_KEPT && !origins.contains_key(&addr) {
                // Only the map holds an idle one: no place taken, nobody waiting.
                origins.retain(|_, load| Arc::strong_count(load) > 1);
            }
            origins
                .entry(addr)
                .or_insert_with(|| {
                    Arc::new(OriginLoad {
                        busy: AtomicUsize::new(0),
                        waiting: AtomicUsize::new(0),
                        max: AtomicUsize::new(max),
                        turns: Mutex::new(VecDeque::new()),
                        resume,
                    })
                })
                .clone()
        };
        if let Some(slot) = load.take(max, false) {
            return Admission::Admitted(slot);
        }
        {
            let mut turns = load.turns();
            turns.push_back(t.handle());
            load.waiting.store(turns.len(), Ordering::SeqCst);
        }
        load.wake_oldest();
        Admission::Wait(OriginWaiter {
            load,
            thread: t.id(),
        })
    }

    /// Origin addresses whose load is kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.origins.lock().unwrap().len()
    }
}

/// Transactions in flight to one origin address, and requests waiting for a place
/// among them, over every thread.
pub(crate) struct OriginLoad {
    busy: AtomicUsize,
    /// Requests waiting: `turns.len()`, readable without the lock.
    waiting: AtomicUsize,
    /// The limit as last asked for, to tell whether a place is free.
    max: AtomicUsize,
    /// The event thread of each waiting request, oldest first. Each thread serves its own
    /// waiters in arrival order, so the front names the thread of the oldest request.
    turns: Mutex<VecDeque<ThreadRef>>,
    /// Run on a waiter's thread to give places to its queued requests.
    resume: fn(&mut EThread),
}

impl OriginLoad {
    /// A place if fewer than `max` are in flight, and no request waits for one (unless
    /// `queued`: it is one of those waiting). Newcomers never pass the queue.
    fn take(self: &Arc<Self>, max: usize, queued: bool) -> Option<OriginSlot> {
        self.max.store(max, Ordering::SeqCst);
        if !queued && self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                (b < max).then_some(b + 1)
            })
            .ok()
            .map(|_| OriginSlot(self.clone()))
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, VecDeque<ThreadRef>> {
        self.turns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// If a request waits and a place is free, has the oldest waiter's thread hand it
    /// over. Runs on any thread, whenever one of the two may have become true: a place
    /// given back, a waiter gone, a waiter come (which closes the race with a place given
    /// back just before it was counted).
    fn wake_oldest(&self) {
        if self.waiting.load(Ordering::SeqCst) == 0
            || self.busy.load(Ordering::SeqCst) >= self.max.load(Ordering::SeqCst)
        {
            return;
        }
        let front = self.turns().front().cloned();
        if let Some(thread) = front {
            thread.run(self.resume);
        }
    }
}

/// A request waiting for a place at its origin, on the event thread it was counted for;
/// it leaves the queue when dropped.
pub(crate) struct OriginWaiter {
    load: Arc<OriginLoad>,
    thread: usize,
}

impl OriginWaiter {
    /// A place under `max` for this waiting request, if one is free now and the oldest
    /// waiting request is on this thread (each thread serves its own in order, so that is
    /// this one when its thread's queue asks for its front).
    pub(crate) fn take(&self, max: usize) -> Option<OriginSlot> {
        if self.load.turns().front().map(ThreadRef::id) != Some(self.thread) {
            return None;
        }
        self.load.take(max, true)
    }
}

impl Drop for OriginWaiter {
    fn drop(&mut self) {
        {
            let mut turns = self.load.turns();
            if let Some(i) = turns.iter().position(|t| t.id() == self.thread) {
                turns.remove(i);
            }
            self.load.waiting.store(turns.len(), Ordering::SeqCst);
        }
        // Served or given up: either way a place may be left for the next.
        self.load.wake_oldest();
    }
}

/// A transaction's place among the `Live::origin_max` in flight to its origin; given
/// back when dropped, to the oldest waiting request if any.
pub(crate) struct OriginSlot(Arc<OriginLoad>);

impl Drop for OriginSlot {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.wake_oldest();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iocore::{EventProcessor, EventProcessorOptions};
    use std::time::Duration;

    #[test]
    fn the_map_of_origin_loads_is_bounded() {
        let ep = EventProcessor::start(&EventProcessorOptions {
            threads: 1,
            ..Default::default()
        })
        .unwrap();
        let (done, result) = std::sync::mpsc::channel();
        ep.threads()[0].run(move |t| {
            let limits = OriginLimits::default();
            let mut slots = Vec::new();
            for port in 0..ORIGINS_KEPT as u16 {
                let addr = SocketAddr::from(([127, 0, 0, 1], 1000 + port));
                let Admission::Admitted(slot) = limits.admit(addr, 1, t, |_| {}) else {
                    panic!("a free place")
                };
                // Every other one is given back at once: that origin's load is idle.
                if port % 2 == 1 {
                    slots.push(slot);
                }
            }
            let full = limits.kept();
            let addr = SocketAddr::from(([127, 0, 0, 2], 1));
            let admitted = matches!(limits.admit(addr, 1, t, |_| {}), Admission::Admitted(_));
            let _ = done.send((full, admitted, limits.kept()));
            drop(slots);
        });
        let (full, admitted, after) = result.recv_timeout(Duration::from_secs(10)).unwrap();
        ep.shutdown();
        assert_eq!(full, ORIGINS_KEPT);
        assert!(admitted);
        // The idle half went; those with a place taken stayed, and the newcomer.
        assert_eq!(after, ORIGINS_KEPT / 2 + 1);
    }
}
