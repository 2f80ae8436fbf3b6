//! `Shared`: the half of an event thread that other threads touch. It holds the thread's
//! inbound job queue, the eventfd that wakes it from epoll_wait, and the flags that ask
//! it to purge cancelled timers or to stop.
//!
//! `push`, `request_stop` and [`Purge::request_purge`] run on any thread. Everything else
//! here (the sleep handshake, `steal`, `drain_waker`) runs only on the owning event
//! thread. `Shared` is generic over the job type, so this file needs nothing from
//! `ethread.rs` (whose jobs carry callbacks over `&mut EThread`).

use super::poll_errors::PollErrors;
use crate::sys::eventfd::EventFd;
use crossbeam_deque::{Injector, Steal};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};

/// The cross-thread half of event thread `id`, carrying jobs of type `J`.
pub(crate) struct Shared<J> {
    id: usize,
    inbox: Injector<J>,
    waker: EventFd,
    sleeping: AtomicBool,
    purge: AtomicBool,
    stop: AtomicBool,
    /// What the thread holds for others ([`Shared::hold`]): connections handed to it.
    held: AtomicUsize,
    errors: PollErrors,
    /// Whether a failed wake-up (eventfd write, from any thread) was logged.
    signal_logged: AtomicBool,
    /// Whether a failed wait (epoll_wait or eventfd read, on the thread) was logged.
    wait_logged: AtomicBool,
}

impl<J> Shared<J> {
    /// The shared half of a new thread, counting failed waits and wake-ups in `errors`.
    pub(crate) fn new(id: usize, errors: PollErrors) -> io::Result<Shared<J>> {
        Ok(Shared {
            id,
            inbox: Injector::new(),
            waker: EventFd::new()?,
            sleeping: AtomicBool::new(false),
            purge: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            errors,
            signal_logged: AtomicBool::new(false),
            wait_logged: AtomicBool::new(false),
        })
    }

    /// The thread's index in its processor.
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// The eventfd to watch in the thread's epoll set.
    pub(crate) fn waker_fd(&self) -> RawFd {
        self.waker.as_raw_fd()
    }

    /// Queues `job` and wakes the thread if it sleeps. Any thread.
    pub(crate) fn push(&self, job: J) {
        self.inbox.push(job);
        self.wake();
    }

    /// Wakes the thread if it is (about to be) blocked in epoll_wait. Pairs with the
    /// fence in `prepare_sleep`: either the thread sees our job, or we see it sleeping.
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            self.signal();
        }
    }

    /// Asks the thread to leave its loop, waking it whether or not it sleeps. Any thread.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        self.signal();
    }

    fn signal(&self) {
        if let Err(e) = self.waker.signal() {
            // The thread may now sleep through this work until its next timer or I/O.
            self.errors.record(
                &self.signal_logged,
                format_args!("event thread {}: eventfd wake-up", self.id),
                &e,
            );
        }
    }

    /// Whether the thread was asked to stop. On the thread.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether a purge of cancelled timers was asked for since the last call (clearing
    /// the request). On the thread.
    pub(crate) fn take_purge(&self) -> bool {
        self.purge.swap(false, Ordering::AcqRel)
    }

    /// Announces that the thread is about to block in epoll_wait, so that other threads
    /// signal the eventfd. False when work arrived meanwhile: the thread must not block
    /// then. Call [`Shared::awake`] after the wait, blocking or not. On the thread.
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.inbox.is_empty()
            && !self.purge.load(Ordering::Relaxed)
            && !self.stop.load(Ordering::Relaxed)
    }

    /// Whether the thread is blocked (or about to block) in epoll_wait, so that a push
    /// must wake it. A hint for choosing a thread: it may change at once. Any thread.
    pub(crate) fn sleeping(&self) -> bool {
        self.sleeping.load(Ordering::Relaxed)
    }

    /// Counts one more thing held by the thread, until [`Shared::release`]. Any thread.
    pub(crate) fn hold(&self) {
        self.held.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends one [`Shared::hold`]. Any thread.
    pub(crate) fn release(&self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }

    /// Things held now. Any thread.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Jobs queued for the thread and not yet taken. Any thread.
    pub(crate) fn queued(&self) -> usize {
        self.inbox.len()
    }

    /// Ends the sleep that [`Shared::prepare_sleep`] announced. On the thread.
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Takes the next inbound job. On the thread.
    pub(crate) fn steal(&self) -> Steal<J> {
        self.inbox.steal()
    }

    /// Resets the eventfd after it woke the thread. On the thread.
    pub(crate) fn drain_waker(&self) -> io::Result<()> {
        self.waker.drain()
    }

    /// Counts (and logs, the first time) a failed wait of `what` on the thread.
    pub(crate) fn wait_failed(&self, what: &str, e: &io::Error) {
        self.errors.record(
            &self.wait_logged,
            format_args!("event thread {}: {what}", self.id),
            e,
        );
    }
}

/// What a cancelled event asks of the thread it is scheduled on.
pub(crate) trait Purge: Send + Sync {
    /// Asks the thread to drop its cancelled timers soon, waking it if it sleeps, so a
    /// cancelled timer's callback (and what it owns) does not wait for its deadline.
    /// Any thread.
    fn request_purge(&self);
}

impl<J: Send> Purge for Shared<J> {
    fn request_purge(&self) {
        self.purge.store(true, Ordering::Release);
        self.wake();
    }
}
