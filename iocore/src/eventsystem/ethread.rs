//! `EThread`: one event loop on one OS thread, and the work it runs.
//!
//! Each turn of the loop waits in epoll_wait (bounded by the next timer), runs the I/O
//! handlers epoll reported, runs due timers, then runs a batch of the inbound queue (work
//! other threads sent). Everything in `impl EThread` runs on that thread: the type is
//! `!Send`, so only its own OS thread ever holds `&mut EThread`, and any function taking
//! `&mut EThread` says by its signature that it runs there. Everything in
//! `impl ThreadRef` may run on any thread and only queues work for it.
//!
//! This file ties the event system together. The I/O table (`io.rs`), the timer heap
//! (`timer.rs`), the cross-thread half (`remote.rs`) and the cancel handle (`event.rs`)
//! know nothing of `EThread`; the types whose callbacks take `&mut EThread` —
//! [`IoHandler`], [`Event`] and the inbound jobs — are defined here, with it.

use super::event::{CancelState, EventHandle};
use super::io::{self, Interest, IoTable, Ready, Reported, Token, Verdict};
use super::mutex::ProxyMutex;
use super::poll_errors::{PollErrors, BACKOFF};
use super::remote::{Purge, Shared};
use super::timer::{next_tick, Deadline, Timers};
use crate::sys::epoll::{Epoll, Events};
use crossbeam_deque::Steal;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a one-shot event whose mutex was busy waits before its next try.
const MUTEX_RETRY: Duration = Duration::from_millis(2);
/// Inbound jobs handled per loop turn, so a flood of hand-offs cannot starve I/O.
const INBOX_BATCH: usize = 64;
/// Events taken from epoll per wait.
const MAX_EVENTS: usize = 256;

/// Code run on an event thread when a registered descriptor is ready.
pub trait IoHandler {
    /// Handles readiness of the registration `token`. Runs on the owning thread.
    fn ready(&mut self, thread: &mut EThread, token: Token, ready: Ready) -> Verdict;
}

impl<F: FnMut(&mut EThread, Token, Ready) -> Verdict> IoHandler for F {
    fn ready(&mut self, thread: &mut EThread, token: Token, ready: Ready) -> Verdict {
        self(thread, token, ready)
    }
}

/// Work for an event thread: a callback, run on the thread it is scheduled on, optionally
/// under a [`ProxyMutex`] that the thread try-locks first.
pub struct Event {
    callback: Box<dyn FnMut(&mut EThread) + Send>,
    mutex: Option<Arc<ProxyMutex>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("mutex", &self.mutex.is_some())
            .finish_non_exhaustive()
    }
}

impl Event {
    /// An event that runs `f` on the thread it is scheduled on.
    pub fn new(f: impl FnMut(&mut EThread) + Send + 'static) -> Event {
        Event {
            callback: Box::new(f),
            mutex: None,
        }
    }

    /// Runs the callback only while holding `mutex`. When the thread cannot take it at
    /// once, the event is retried later on the same thread (a periodic event at its next
    /// tick), and the loop goes on with other work: it never blocks on the lock.
    pub fn with_mutex(mut self, mutex: Arc<ProxyMutex>) -> Event {
        self.mutex = Some(mutex);
        self
    }
}

/// Work sent to a thread from elsewhere.
enum Job {
    Timer(Scheduled),
    Run(Box<dyn FnOnce(&mut EThread) + Send>),
}

/// An event placed on a thread's timer heap or inbound queue.
struct Scheduled {
    event: Event,
    state: Arc<CancelState>,
    at: Instant,
    period: Option<Duration>,
}

impl Scheduled {
    #[inline]
    fn new(
        event: Event,
        thread: &Arc<Shared<Job>>,
        at: Instant,
        period: Option<Duration>,
    ) -> (Scheduled, EventHandle) {
        let thread: Weak<Shared<Job>> = Arc::downgrade(thread);
        let thread: Weak<dyn Purge> = thread;
        let state = Arc::new(CancelState::new(thread));
        let handle = EventHandle::new(state.clone());
        let s = Scheduled {
            event,
            state,
            at,
            period,
        };
        (s, handle)
    }

    fn is_cancelled(&self) -> bool {
        self.state.is_cancelled()
    }
}

impl Deadline for Scheduled {
    fn deadline(&self) -> Instant {
        self.at
    }
}

/// A handle to an event thread, usable from any thread: it can only queue work there.
#[derive(Clone)]
pub struct ThreadRef {
    shared: Arc<Shared<Job>>,
}

/// Something counted as held by an event thread until dropped (see [`ThreadRef::hold`]).
/// Dropped on any thread.
pub struct Hold(Arc<Shared<Job>>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hold({})", self.0.id())
    }
}

impl std::fmt::Debug for ThreadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadRef({})", self.shared.id())
    }
}

impl ThreadRef {
    /// The thread's index in its [`EventProcessor`](super::EventProcessor).
    pub fn id(&self) -> usize {
        self.shared.id()
    }

    /// Whether the thread is in a loop turn now: work queued for it is then taken up at
    /// the turn's end without an eventfd wake-up. A hint; it may change at once.
    pub fn busy(&self) -> bool {
        !self.shared.sleeping()
    }

    /// Jobs queued for the thread that it has not taken up yet (a hint, as
    /// [`busy`](Self::busy)).
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }

    /// Counts something the thread holds (a connection handed to it) until the guard
    /// drops: [`held`](Self::held) is what balances hand-offs across threads.
    pub fn hold(&self) -> Hold {
        self.shared.hold();
        Hold(self.shared.clone())
    }

    /// How many [`hold`](Self::hold) guards of this thread are alive (a hint, as
    /// [`busy`](Self::busy)).
    pub fn held(&self) -> usize {
        self.shared.held()
    }

    /// Runs `f` once on the thread, as soon as it gets to its inbound queue.
    pub fn run(&self, f: impl FnOnce(&mut EThread) + Send + 'static) {
        self.shared.push(Job::Run(Box::new(f)));
    }

    /// Schedules `event` to run on the thread as soon as possible.
    pub fn schedule_imm(&self, event: Event) -> EventHandle {
        self.schedule_at(event, Instant::now(), None)
    }

    /// Schedules `event` to run on the thread after `delay`.
    pub fn schedule_in(&self, event: Event, delay: Duration) -> EventHandle {
        self.schedule_at(event, Instant::now() + delay, None)
    }

    /// Schedules `event` to run on the thread every `period`, first after one period.
    pub fn schedule_every(&self, event: Event, period: Duration) -> EventHandle {
        self.schedule_at(event, Instant::now() + period, Some(period))
    }

    /// Schedules `event` to run on the thread first after `first`, then every `period`.
    pub fn schedule_every_from(
        &self,
        event: Event,
        first: Duration,
        period: Duration,
    ) -> EventHandle {
        self.schedule_at(event, Instant::now() + first, Some(period))
    }

    #[inline]
    fn schedule_at(&self, event: Event, at: Instant, period: Option<Duration>) -> EventHandle {
        let (s, handle) = Scheduled::new(event, &self.shared, at, period);
        self.shared.push(Job::Timer(s));
        handle
    }

    /// Asks the thread to leave its loop after the current turn.
    pub(crate) fn stop(&self) {
        self.shared.request_stop();
    }
}

/// An event thread (ET_NET). Only its own OS thread ever holds `&mut EThread`, so every
/// method here runs on that thread.
pub struct EThread {
    shared: Arc<Shared<Job>>,
    io: IoTable<dyn IoHandler>,
    timers: Timers<Scheduled>,
    rearm: Option<Duration>,
    /// Hooks asked for with `after_io`, run once the current batch has been dispatched.
    after_io: Vec<fn(&mut EThread)>,
    _not_send: PhantomData<*const ()>,
}

impl EThread {
    /// Creates thread `id`'s epoll set and shared half, counting failed waits and
    /// wake-ups in `errors`; the loop starts with [`EThread::run`] on the new thread.
    pub(crate) fn create(id: usize, errors: PollErrors) -> std::io::Result<(Epoll, ThreadRef)> {
        let shared = Arc::new(Shared::new(id, errors)?);
        let epoll = Epoll::new()?;
        io::watch_waker(&epoll, shared.waker_fd())?;
        Ok((epoll, ThreadRef { shared }))
    }

    /// Runs the loop until the processor stops the thread, then drops every handler,
    /// timer and queued job (closing what they own) on this thread.
    pub(crate) fn run(epoll: Epoll, thread: ThreadRef) {
        let mut t = EThread {
            shared: thread.shared,
            io: IoTable::new(epoll),
            timers: Timers::new(),
            rearm: None,
            after_io: Vec::new(),
            _not_send: PhantomData,
        };
        CURRENT.with(|c| c.set(Some(t.shared.id())));
        let mut events = Events::with_capacity(MAX_EVENTS);
        while !t.shared.stopping() {
            t.wait(&mut events);
            for reported in io::reported(&events) {
                match reported {
                    Reported::Waker => t.drain_waker(),
                    Reported::Io(token, ready) => t.dispatch_io(token, ready),
                }
            }
            t.run_after_io();
            t.run_due_timers();
            t.run_after_io();
            t.drain_inbox();
            t.run_after_io();
        }
        t.shutdown();
    }

    /// Blocks in epoll_wait until I/O, the next timer, or a wake-up from another thread.
    fn wait(&mut self, events: &mut Events) {
        if self.shared.take_purge() {
            self.timers.retain(|s| !s.is_cancelled());
        }
        self.timers.drop_front_while(Scheduled::is_cancelled);
        let mut timeout = match self.timers.next_deadline() {
            None => -1,
            Some(at) => {
                let d = at.saturating_duration_since(Instant::now());
                // Round up: waking a little late is fine, waking early spins.
                d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        if timeout != 0 && !self.shared.prepare_sleep() {
            timeout = 0;
        }
        let waited = self.io.wait(events, timeout);
        self.shared.awake();
        match waited {
            Ok(()) => {}
            // A signal cut the wait short: the turn goes on as if it had timed out.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                self.shared.wait_failed("epoll_wait", &e);
                // Waiting again at once would fail again at once. Sleep what the wait
                // would have (so timers still run on time), up to the back-off.
                let backoff = u64::try_from(timeout)
                    .map_or(BACKOFF, |ms| BACKOFF.min(Duration::from_millis(ms)));
                std::thread::sleep(backoff);
            }
        }
    }

    fn drain_waker(&mut self) {
        if let Err(e) = self.shared.drain_waker() {
            self.shared.wait_failed("eventfd read", &e);
            // The eventfd stays readable, so every wait would return at once.
            std::thread::sleep(BACKOFF);
        }
    }

    fn dispatch_io(&mut self, token: Token, ready: Ready) {
        let Some(mut handler) = self.io.lend(token) else {
            return; // stale: deregistered earlier in this batch
        };
        let verdict = handler.ready(self, token, ready);
        self.io.restore(token, handler, verdict);
    }

    fn run_after_io(&mut self) {
        while let Some(hook) = self.after_io.pop() {
            hook(self);
        }
    }

    fn run_due_timers(&mut self) {
        let now = Instant::now();
        // Events scheduled while we run get later deadlines, so this loop ends.
        while let Some(s) = self.timers.pop_due(now) {
            self.fire(s, now);
        }
    }

    fn drain_inbox(&mut self) {
        for _ in 0..INBOX_BATCH {
            match self.shared.steal() {
                Steal::Success(Job::Run(f)) => f(self),
                Steal::Success(Job::Timer(s)) => {
                    if s.at <= Instant::now() {
                        self.fire(s, Instant::now());
                    } else {
                        self.timers.push(s);
                    }
                }
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
    }

    /// Runs one event under its mutex, or puts it back for later when the mutex is busy.
    fn fire(&mut self, mut s: Scheduled, now: Instant) {
        if s.is_cancelled() {
            return;
        }
        let mutex = s.event.mutex.clone();
        let guard = match &mutex {
            Some(m) => match m.try_lock() {
                Some(g) => Some(g),
                None => {
                    s.at = match s.period {
                        Some(p) => next_tick(s.at, p, now),
                        None => now + MUTEX_RETRY,
                    };
                    self.timers.push(s);
                    return;
                }
            },
            None => None,
        };
        self.rearm = s.period;
        (s.event.callback)(self);
        drop(guard);
        if let Some(p) = self.rearm.take() {
            if !s.is_cancelled() {
                s.period = Some(p);
                s.at = next_tick(s.at, p, Instant::now());
                self.timers.push(s);
            }
        }
    }

    fn shutdown(&mut self) {
        self.io.clear();
        self.timers.clear();
        while let Steal::Success(_) | Steal::Retry = self.shared.steal() {}
        CURRENT.with(|c| c.set(None));
    }

    /// This thread's index in its processor.
    pub fn id(&self) -> usize {
        self.shared.id()
    }

    /// A handle other threads can use to send work here.
    pub fn handle(&self) -> ThreadRef {
        ThreadRef {
            shared: self.shared.clone(),
        }
    }

    /// Runs `event` on this thread at its next loop turn.
    pub fn schedule_imm(&mut self, event: Event) -> EventHandle {
        self.schedule_local(event, Instant::now(), None)
    }

    /// Runs `event` on this thread after `delay`.
    pub fn schedule_in(&mut self, event: Event, delay: Duration) -> EventHandle {
        self.schedule_local(event, Instant::now() + delay, None)
    }

    /// Runs `event` on this thread every `period`, first after one period.
    pub fn schedule_every(&mut self, event: Event, period: Duration) -> EventHandle {
        self.schedule_local(event, Instant::now() + period, Some(period))
    }

    #[inline]
    fn schedule_local(
        &mut self,
        event: Event,
        at: Instant,
        period: Option<Duration>,
    ) -> EventHandle {
        let (s, handle) = Scheduled::new(event, &self.shared, at, period);
        self.timers.push(s);
        handle
    }

    /// Runs `hook` on this thread once the handlers of the current batch of readiness
    /// (or of due timers, or of queued jobs) have all run, before the thread waits again.
    /// Asking twice in one batch runs it twice: callers keep their own "asked" flag.
    pub fn after_io(&mut self, hook: fn(&mut EThread)) {
        self.after_io.push(hook);
    }

    /// From inside a running event: run it again `period` after this run (changing a
    /// periodic event's period, or re-arming a one-shot event).
    pub fn set_period(&mut self, period: Duration) {
        self.rearm = Some(period);
    }

    /// Registers `fd` with this thread's epoll; `handler` runs here when it is ready and
    /// is dropped when it returns [`Verdict::Remove`] or is deregistered. The caller keeps
    /// `fd` open at least as long as the handler lives (usually the handler owns it).
    pub fn register(
        &mut self,
        fd: RawFd,
        interest: Interest,
        handler: Box<dyn IoHandler>,
    ) -> std::io::Result<Token> {
        self.io.register(fd, interest, handler, false)
    }

    /// As [`register`](Self::register), for a socket whose handler holds its only
    /// descriptor and closes it when dropped (no dup anywhere): removal then skips
    /// EPOLL_CTL_DEL, since the close takes it out of epoll — one syscall less per
    /// connection. Events arriving between removal and close carry a stale token and are
    /// ignored.
    pub fn register_sole(
        &mut self,
        fd: RawFd,
        interest: Interest,
        handler: Box<dyn IoHandler>,
    ) -> std::io::Result<Token> {
        self.io.register(fd, interest, handler, true)
    }

    /// Hands a live registration to `handler` (the epoll registration stays as it is); the
    /// old handler is dropped, after it returns if it is the one running now. False (and
    /// `handler` dropped) when the token is stale.
    pub fn replace_handler(&mut self, token: Token, handler: Box<dyn IoHandler>) -> bool {
        self.io.replace(token, handler)
    }

    /// Whether `token` still names a registration of this thread: false once it was
    /// deregistered, or its handler returned [`Verdict::Remove`].
    pub fn is_registered(&self, token: Token) -> bool {
        self.io.is_live(token)
    }

    /// Removes a registration and returns its handler (None if the token is stale, or if
    /// the handler is the one running now: it is then dropped when it returns).
    pub fn deregister(&mut self, token: Token) -> Option<Box<dyn IoHandler>> {
        self.io.deregister(token)
    }
}

thread_local! {
    static CURRENT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the event thread running the caller, if it is one.
pub fn current_thread_id() -> Option<usize> {
    CURRENT.with(|c| c.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_failing_epoll_wait_is_counted_and_backs_off_instead_of_spinning() {
        let errors = PollErrors::default();
        let (_, thread) = EThread::create(0, errors.clone()).unwrap();
        let broken = Epoll::not_an_epoll_set();
        let on_thread = thread.clone();
        let join = std::thread::spawn(move || EThread::run(broken, on_thread));

        // Inbound work still runs: the loop goes on, one back-off per turn.
        let (tx, rx) = mpsc::channel();
        thread.run(move |_| tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(5))
            .expect("a job ran on the thread whose epoll_wait fails");
        assert!(errors.counter().get() >= 1, "the failure was not counted");

        // A spinning loop would fail millions of times in this window; one that backs
        // off fails about once per BACKOFF.
        let (before, start) = (errors.counter().get(), Instant::now());
        std::thread::sleep(Duration::from_millis(200));
        let failed = errors.counter().get() - before;
        let turns = (start.elapsed().as_millis() / BACKOFF.as_millis()) as u64;
        assert!(
            failed <= turns + 2,
            "{failed} failed waits in {turns} back-offs"
        );

        thread.stop();
        join.join().unwrap();
    }
}
