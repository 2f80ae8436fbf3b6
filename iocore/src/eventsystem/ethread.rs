//! `EThread`: one event loop on one OS thread.
//!
//! Everything in `impl EThread` runs on that thread (the type is `!Send`); everything in
//! `impl ThreadRef` may run on any thread and only queues work for it.

use super::event::{Event, EventHandle, Scheduled};
use crate::sys::{cvt, eventfd_drain, eventfd_signal};
use crossbeam_deque::{Injector, Steal};
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a one-shot event whose mutex was busy waits before its next try.
const MUTEX_RETRY: Duration = Duration::from_millis(2);
/// Inbound jobs handled per loop turn, so a flood of hand-offs cannot starve I/O.
const INBOX_BATCH: usize = 64;
const WAKER_TOKEN: u64 = u64::MAX;
const MAX_EVENTS: usize = 256;

/// Readiness a handler asks epoll for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest(u32);

impl Interest {
    /// Readable, including the peer's half-close.
    pub const READ: Interest = Interest((libc::EPOLLIN | libc::EPOLLRDHUP) as u32);
    /// Readable, nothing else: for listening sockets, the only read interest
    /// EPOLLEXCLUSIVE accepts.
    pub const ACCEPT: Interest = Interest(libc::EPOLLIN as u32);
    /// Writable.
    pub const WRITE: Interest = Interest(libc::EPOLLOUT as u32);
    /// Edge-triggered: reported once per change, the handler must drain to EAGAIN.
    pub const EDGE: Interest = Interest(libc::EPOLLET as u32);
    /// EPOLLEXCLUSIVE: of the threads waiting on one fd, wake only one (or a few).
    pub const EXCLUSIVE: Interest = Interest(libc::EPOLLEXCLUSIVE as u32);

    fn bits(self) -> u32 {
        self.0
    }
}

impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

/// What epoll reported for a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready(u32);

impl Ready {
    /// Readable (or at EOF).
    pub fn is_readable(self) -> bool {
        self.0 & (libc::EPOLLIN as u32) != 0
    }
    /// Writable.
    pub fn is_writable(self) -> bool {
        self.0 & (libc::EPOLLOUT as u32) != 0
    }
    /// The peer closed its side (or both sides are closed).
    pub fn is_hup(self) -> bool {
        self.0 & ((libc::EPOLLRDHUP | libc::EPOLLHUP) as u32) != 0
    }
    /// An error is pending on the socket.
    pub fn is_error(self) -> bool {
        self.0 & (libc::EPOLLERR as u32) != 0
    }
    /// All readiness: what a handler assumes when it is first started.
    pub const ALL: Ready = Ready((libc::EPOLLIN | libc::EPOLLOUT) as u32);
}

/// Names one I/O registration on one thread; stale tokens never reach a new handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(u64);

impl Token {
    fn new(index: u32, generation: u32) -> Token {
        Token(((generation as u64) << 32) | index as u64)
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// What an I/O handler wants after handling readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stay registered.
    Keep,
    /// Deregister and drop the handler (closing whatever descriptors it owns).
    Remove,
}

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

/// Work sent to a thread from elsewhere.
pub(crate) enum Job {
    Timer(Scheduled),
    Run(Box<dyn FnOnce(&mut EThread) + Send>),
}

/// The part of a thread other threads can touch.
pub(crate) struct Shared {
    id: usize,
    inbox: Injector<Job>,
    waker: OwnedFd,
    sleeping: AtomicBool,
    purge: AtomicBool,
    stop: AtomicBool,
    load: AtomicUsize,
}

impl Shared {
    fn push(&self, job: Job) {
        self.inbox.push(job);
        self.wake();
    }

    /// Wakes the thread if it is (about to be) blocked in epoll_wait. Pairs with the
    /// fence in `EThread::wait`: either the thread sees our job, or we see it sleeping.
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            eventfd_signal(self.waker.as_raw_fd());
        }
    }

    pub(crate) fn request_purge(&self) {
        self.purge.store(true, Ordering::Release);
        self.wake();
    }
}

/// A handle to an event thread, usable from any thread: it can only queue work there.
#[derive(Clone)]
pub struct ThreadRef {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ThreadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadRef({})", self.shared.id)
    }
}

impl ThreadRef {
    /// The thread's index in its [`EventProcessor`](super::EventProcessor).
    pub fn id(&self) -> usize {
        self.shared.id
    }

    /// How many I/O registrations the thread holds: its load, for least-loaded dispatch.
    pub fn load(&self) -> usize {
        self.shared.load.load(Ordering::Relaxed)
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

    fn schedule_at(&self, event: Event, at: Instant, period: Option<Duration>) -> EventHandle {
        let (s, handle) = Scheduled::new(event, &self.shared, at, period);
        self.shared.push(Job::Timer(s));
        handle
    }

    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        eventfd_signal(self.shared.waker.as_raw_fd());
    }
}

struct TimerEntry {
    seq: u64,
    s: Scheduled,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    // BinaryHeap is a max-heap: the earliest deadline (then the oldest) must be greatest.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other
            .s
            .at
            .cmp(&self.s.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

struct IoSlot {
    generation: u32,
    live: bool,
    fd: RawFd,
    handler: Option<Box<dyn IoHandler>>,
    /// Set by `replace_handler` while the current handler runs; installed when it returns.
    replacement: Option<Box<dyn IoHandler>>,
    /// Registered with `register_sole`: closing the descriptor removes it from epoll.
    sole: bool,
}

/// An event thread (ET_NET). Only its own OS thread ever holds `&mut EThread`, so every
/// method here runs on that thread.
pub struct EThread {
    shared: Arc<Shared>,
    epoll: OwnedFd,
    timers: BinaryHeap<TimerEntry>,
    seq: u64,
    io: Vec<IoSlot>,
    free: Vec<u32>,
    rearm: Option<Duration>,
    /// Hooks asked for with `after_io`, run once the current batch has been dispatched.
    after_io: Vec<fn(&mut EThread)>,
    _not_send: PhantomData<*const ()>,
}

impl EThread {
    /// Creates the thread's epoll set and shared half; the loop starts with [`EThread::run`].
    pub(crate) fn create(id: usize) -> io::Result<(OwnedFd, ThreadRef)> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; on success we own the returned descriptor.
        let epfd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `epfd` was just created and is owned by nobody else.
        let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
        let waker = crate::sys::eventfd()?;
        epoll_ctl(
            epfd,
            libc::EPOLL_CTL_ADD,
            waker.as_raw_fd(),
            libc::EPOLLIN as u32,
            WAKER_TOKEN,
        )?;
        let shared = Arc::new(Shared {
            id,
            inbox: Injector::new(),
            waker,
            sleeping: AtomicBool::new(false),
            purge: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            load: AtomicUsize::new(0),
        });
        Ok((epoll, ThreadRef { shared }))
    }

    /// Runs the loop until the processor stops the thread, then drops every handler,
    /// timer and queued job (closing what they own) on this thread.
    pub(crate) fn run(epoll: OwnedFd, thread: ThreadRef) {
        let mut t = EThread {
            shared: thread.shared,
            epoll,
            timers: BinaryHeap::new(),
            seq: 0,
            io: Vec::new(),
            free: Vec::new(),
            rearm: None,
            after_io: Vec::new(),
            _not_send: PhantomData,
        };
        CURRENT.with(|c| c.set(Some(t.shared.id)));
        let mut events: Vec<libc::epoll_event> =
            vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        while !t.shared.stop.load(Ordering::Acquire) {
            let n = t.wait(&mut events);
            for ev in &events[..n] {
                let (bits, data) = (ev.events, ev.u64);
                if data == WAKER_TOKEN {
                    eventfd_drain(t.shared.waker.as_raw_fd());
                } else {
                    t.dispatch_io(Token(data), Ready(bits));
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
    fn wait(&mut self, events: &mut [libc::epoll_event]) -> usize {
        if self.shared.purge.swap(false, Ordering::AcqRel) {
            self.timers.retain(|e| !e.s.is_cancelled());
        }
        while self.timers.peek().is_some_and(|e| e.s.is_cancelled()) {
            self.timers.pop();
        }
        let mut timeout = match self.timers.peek() {
            None => -1,
            Some(e) => {
                let d = e.s.at.saturating_duration_since(Instant::now());
                // Round up: waking a little late is fine, waking early spins.
                d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        if timeout != 0 {
            self.shared.sleeping.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if !self.shared.inbox.is_empty()
                || self.shared.purge.load(Ordering::Relaxed)
                || self.shared.stop.load(Ordering::Relaxed)
            {
                timeout = 0;
            }
        }
        // SAFETY: `events` is a live buffer of `events.len()` epoll_event structs.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout,
            )
        };
        self.shared.sleeping.store(false, Ordering::Relaxed);
        n.max(0) as usize
    }

    fn dispatch_io(&mut self, token: Token, ready: Ready) {
        let idx = token.index();
        let Some(slot) = self.io.get_mut(idx) else {
            return;
        };
        if !slot.live || slot.generation != token.generation() {
            return; // stale: deregistered earlier in this batch
        }
        let Some(mut handler) = slot.handler.take() else {
            return;
        };
        let verdict = handler.ready(self, token, ready);
        let slot = &mut self.io[idx];
        if slot.live && slot.generation == token.generation() {
            if let Some(next) = slot.replacement.take() {
                // The handler gave its registration away while it ran.
                slot.handler = Some(next);
                drop(handler);
                return;
            }
            match verdict {
                Verdict::Keep => slot.handler = Some(handler),
                Verdict::Remove => {
                    self.release(token);
                    drop(handler);
                }
            }
        }
        // else: the handler deregistered itself while running; it is dropped here.
    }

    fn run_after_io(&mut self) {
        while let Some(hook) = self.after_io.pop() {
            hook(self);
        }
    }

    fn run_due_timers(&mut self) {
        let now = Instant::now();
        // Events scheduled while we run get later deadlines, so this loop ends.
        while self.timers.peek().is_some_and(|e| e.s.at <= now) {
            let entry = self.timers.pop().expect("peeked");
            self.fire(entry.s, now);
        }
    }

    fn drain_inbox(&mut self) {
        for _ in 0..INBOX_BATCH {
            match self.shared.inbox.steal() {
                Steal::Success(Job::Run(f)) => f(self),
                Steal::Success(Job::Timer(s)) => {
                    if s.at <= Instant::now() {
                        self.fire(s, Instant::now());
                    } else {
                        self.push_timer(s);
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
                    self.push_timer(s);
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
                self.push_timer(s);
            }
        }
    }

    fn push_timer(&mut self, s: Scheduled) {
        self.seq += 1;
        self.timers.push(TimerEntry { seq: self.seq, s });
    }

    fn shutdown(&mut self) {
        for slot in &mut self.io {
            if slot.live {
                slot.live = false;
                slot.handler = None;
            }
        }
        self.timers.clear();
        while let Steal::Success(_) | Steal::Retry = self.shared.inbox.steal() {}
        CURRENT.with(|c| c.set(None));
    }

    /// This thread's index in its processor.
    pub fn id(&self) -> usize {
        self.shared.id
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

    fn schedule_local(
        &mut self,
        event: Event,
        at: Instant,
        period: Option<Duration>,
    ) -> EventHandle {
        let (s, handle) = Scheduled::new(event, &self.shared, at, period);
        self.push_timer(s);
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
    ) -> io::Result<Token> {
        self.register_with(fd, interest, handler, false)
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
    ) -> io::Result<Token> {
        self.register_with(fd, interest, handler, true)
    }

    fn register_with(
        &mut self,
        fd: RawFd,
        interest: Interest,
        handler: Box<dyn IoHandler>,
        sole: bool,
    ) -> io::Result<Token> {
        let idx = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.io.push(IoSlot {
                    generation: 0,
                    live: false,
                    fd: -1,
                    handler: None,
                    replacement: None,
                    sole: false,
                });
                self.io.len() - 1
            }
        };
        let slot = &mut self.io[idx];
        let token = Token::new(idx as u32, slot.generation);
        if let Err(e) = epoll_ctl(
            self.epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd,
            interest.bits(),
            token.0,
        ) {
            self.free.push(idx as u32);
            return Err(e);
        }
        slot.live = true;
        slot.fd = fd;
        slot.handler = Some(handler);
        slot.sole = sole;
        self.shared.load.fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }

    /// Changes what a registration waits for (not valid with [`Interest::EXCLUSIVE`]).
    pub fn modify(&mut self, token: Token, interest: Interest) -> io::Result<()> {
        match self.io.get(token.index()) {
            Some(s) if s.live && s.generation == token.generation() => epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                s.fd,
                interest.bits(),
                token.0,
            ),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Hands a live registration to `handler` (the epoll registration stays as it is); the
    /// old handler is dropped, after it returns if it is the one running now. False (and
    /// `handler` dropped) when the token is stale.
    pub fn replace_handler(&mut self, token: Token, handler: Box<dyn IoHandler>) -> bool {
        match self.io.get_mut(token.index()) {
            Some(s) if s.live && s.generation == token.generation() => {
                if s.handler.is_some() {
                    s.handler = Some(handler);
                } else {
                    s.replacement = Some(handler);
                }
                true
            }
            _ => false,
        }
    }

    /// Removes a registration and returns its handler (None if the token is stale, or if
    /// the handler is the one running now: it is then dropped when it returns).
    pub fn deregister(&mut self, token: Token) -> Option<Box<dyn IoHandler>> {
        match self.io.get_mut(token.index()) {
            Some(s) if s.live && s.generation == token.generation() => {
                let handler = s.handler.take();
                self.release(token);
                handler
            }
            _ => None,
        }
    }

    fn release(&mut self, token: Token) {
        let slot = &mut self.io[token.index()];
        // The fd is still open here (its owner is the handler, not yet dropped). A sole
        // descriptor leaves epoll when it is closed.
        if !slot.sole {
            let _ = epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, slot.fd, 0, 0);
        }
        slot.live = false;
        slot.fd = -1;
        slot.replacement = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(token.index() as u32);
        self.shared.load.fetch_sub(1, Ordering::Relaxed);
    }

    /// How many I/O registrations this thread holds.
    pub fn registrations(&self) -> usize {
        self.shared.load.load(Ordering::Relaxed)
    }
}

thread_local! {
    static CURRENT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the event thread running the caller, if it is one.
pub fn current_thread_id() -> Option<usize> {
    CURRENT.with(|c| c.get())
}

fn next_tick(prev: Instant, period: Duration, now: Instant) -> Instant {
    let next = prev + period;
    // A late tick does not trigger a burst of catch-up runs.
    if next <= now {
        now + period
    } else {
        next
    }
}

fn epoll_ctl(epfd: RawFd, op: libc::c_int, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a live epoll_event; the kernel copies it.
    cvt(unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) }).map(drop)
}
