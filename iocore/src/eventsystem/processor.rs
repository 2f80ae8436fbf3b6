//! `EventProcessor`: starts, hands out and stops the ET_NET threads.
//!
//! Its methods run on the caller's thread (the main thread, a control thread, an accept
//! thread); each spawned ET_NET thread runs only [`EThread::run`].

use super::ethread::{EThread, Event, ThreadRef};
use super::event::EventHandle;
use super::poll_errors::PollErrors;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

/// Jobs waiting for a thread beyond which [`EventProcessor::assign_busy`] looks for
/// another: a connection's start takes tens of microseconds, so eight is a short wait,
/// and a burst spreads over the threads instead of queueing behind one.
pub const BUSY_QUEUE: usize = 8;

/// Threads [`EventProcessor::assign_busy`] looks at for one choice, starting with the
/// next in turn: all of them up to 4.
pub const BUSY_WINDOW: usize = 4;

/// The most a thread may [hold](ThreadRef::held) and still be preferred for being busy,
/// when the least held thread holds `least`: an eighth more, and 8 (so that a few
/// connections do not count as an imbalance).
pub fn fair_share(least: usize) -> usize {
    least + least / 8 + 8
}

/// How to start the event threads.
#[derive(Clone, Debug)]
pub struct EventProcessorOptions {
    /// Number of ET_NET threads (at least 1).
    pub threads: usize,
    /// Pin thread i to core i (mod the core count).
    pub pin_cores: bool,
    /// Thread name prefix, e.g. `"ET_NET"`: threads are named `ET_NET 0`, `ET_NET 1`, ….
    pub name: String,
}

impl Default for EventProcessorOptions {
    fn default() -> Self {
        EventProcessorOptions {
            threads: 1,
            pin_cores: false,
            name: "ET_NET".into(),
        }
    }
}

/// The set of ET_NET threads.
#[derive(Debug)]
pub struct EventProcessor {
    threads: Vec<ThreadRef>,
    joins: Mutex<Vec<JoinHandle<()>>>,
    next: AtomicUsize,
    pinned: Vec<usize>,
    errors: PollErrors,
}

impl EventProcessor {
    /// Starts `options.threads` event threads.
    pub fn start(options: &EventProcessorOptions) -> io::Result<EventProcessor> {
        let n = options.threads.max(1);
        let cores = if options.pin_cores {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut threads = Vec::with_capacity(n);
        let mut joins = Vec::with_capacity(n);
        let mut pinned = Vec::new();
        let errors = PollErrors::default();
        for id in 0..n {
            let (epoll, tref) = EThread::create(id, errors.clone())?;
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            if let Some(c) = core {
                pinned.push(c.id);
            }
            let for_thread = tref.clone();
            let join = std::thread::Builder::new()
                .name(format!("{} {id}", options.name))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    EThread::run(epoll, for_thread);
                })?;
            threads.push(tref);
            joins.push(join);
        }
        Ok(EventProcessor {
            threads,
            joins: Mutex::new(joins),
            next: AtomicUsize::new(0),
            pinned,
            errors,
        })
    }

    /// The threads, in index order.
    pub fn threads(&self) -> &[ThreadRef] {
        &self.threads
    }

    /// The cores the threads are pinned to (empty when not pinned).
    pub fn pinned_cores(&self) -> &[usize] {
        &self.pinned
    }

    /// The next thread in round-robin order.
    pub fn assign(&self) -> &ThreadRef {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.threads[i % self.threads.len()]
    }

    /// Among the next [`BUSY_WINDOW`] threads in round-robin order, the first that is
    /// [busy](ThreadRef::busy) with fewer than [`BUSY_QUEUE`] jobs waiting, so that
    /// handing it work costs no wake-up, and that [holds](ThreadRef::held) no more than
    /// [`fair_share`] allows over the least held of the window (a busy thread is busy
    /// because it holds work: without the bound it would draw every new connection
    /// while the others sleep); else the first of the window with fewer than
    /// `BUSY_QUEUE` waiting (woken for it); else the next in turn. The window keeps the
    /// cost of a choice the same on a machine of 128 threads as on one of 2: every
    /// thread looked at is a cache line its owner writes, and each thread's `held` is
    /// read once per choice.
    pub fn assign_busy(&self) -> &ThreadRef {
        let n = self.threads.len();
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let first = &self.threads[i % n];
        let mut window = [(first, 0); BUSY_WINDOW];
        let window = &mut window[..n.min(BUSY_WINDOW)];
        for (k, slot) in window.iter_mut().enumerate() {
            let t = &self.threads[(i + k) % n];
            *slot = (t, t.held());
        }
        let least = window.iter().map(|&(_, held)| held).min().unwrap_or(0);
        window
            .iter()
            .find(|&&(t, held)| t.busy() && t.queued() < BUSY_QUEUE && held <= fair_share(least))
            .or_else(|| window.iter().find(|(t, _)| t.queued() < BUSY_QUEUE))
            .map_or(first, |&(t, _)| t)
    }

    /// Where the threads count failed waits and wake-ups (for the metrics registry, and
    /// for accept threads, which wait too).
    pub(crate) fn poll_errors(&self) -> &PollErrors {
        &self.errors
    }

    /// Schedules `event` as soon as possible on the next round-robin thread.
    pub fn schedule_imm(&self, event: Event) -> EventHandle {
        self.assign().schedule_imm(event)
    }

    /// Schedules `event` after `delay` on the next round-robin thread.
    pub fn schedule_in(&self, event: Event, delay: Duration) -> EventHandle {
        self.assign().schedule_in(event, delay)
    }

    /// Schedules `event` every `period` on the next round-robin thread.
    pub fn schedule_every(&self, event: Event, period: Duration) -> EventHandle {
        self.assign().schedule_every(event, period)
    }

    /// Stops every thread and waits for each to finish its loop turn and drop what it
    /// holds. Idempotent.
    pub fn shutdown(&self) {
        for t in &self.threads {
            t.stop();
        }
        let joins = std::mem::take(&mut *self.joins.lock().unwrap_or_else(|e| e.into_inner()));
        for j in joins {
            let _ = j.join();
        }
    }
}

impl Drop for EventProcessor {
    fn drop(&mut self) {
        self.shutdown();
    }
}
