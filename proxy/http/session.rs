//! Client sessions: HTTP/1.1 transactions and blind tunnels, as one state machine per
//! client connection on the ET_NET thread that accepted (or was handed) it.
//!
//! Every function here runs on that ET_NET thread. A session is shared by the two I/O
//! registrations it owns (client and origin) as `Rc<RefCell<Session>>`; a per-thread sweep
//! event enforces timeouts. Sockets are edge-triggered, so each side remembers whether it
//! is readable/writable and `drive` moves bytes until nothing can progress. Buffers are
//! bounded (`BUF_LIMIT` a direction) and released when a connection goes idle.

use super::caching::{self, Stored};
use super::codec::{
    self, BodyFraming, ChunkedScanner, ForwardRequest, ForwardResponse, HeadError, RequestHead,
};
use super::shared::{Claim, HttpShared, OriginSlot, OriginWaiter};
use crate::cache::Lookup;
use crate::stats_http::{self, Format};
use iocore::stats::Gauge;
use iocore::{EThread, Event, Interest, NetConnection, Ready, Socket, Token, Verdict};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes buffered per direction before the reading side is paused.
const BUF_LIMIT: usize = 64 * 1024;
/// Read size.
const READ_CHUNK: usize = 16 * 1024;
/// Idle origin connections kept per origin per thread, at most. The pool keeps what a
/// burst needed (until `keep_alive_no_activity_timeout_out`, as ATS does), so the next
/// burst does not open them again: with 64, every 6,000-connection burst opened about
/// 1,100–1,400 new origin connections; with the pool kept, none after the first.
const POOL_PER_ORIGIN: usize = 1024;
/// How long an idle client keeps its origin connection attached before it goes back to
/// the thread's pool.
const ATTACHED_ORIGIN_IDLE: Duration = Duration::from_secs(1);
/// How long after opening an origin connection this thread's pool counts as short.
const POOL_SHORT_FOR: Duration = Duration::from_secs(1);
/// How long a closing connection is drained so the peer receives our last bytes.
const LINGER: Duration = Duration::from_secs(2);

/// What a port does with a connection.
#[derive(Clone, Debug)]
pub enum PortRole {
    /// HTTP proxying and the stats endpoint.
    Http,
    /// Byte relay to a fixed address.
    Blind(SocketAddr),
}

thread_local! {
    static SESSIONS: RefCell<Vec<Weak<RefCell<Session>>>> = const { RefCell::new(Vec::new()) };
    static POOL: RefCell<HashMap<SocketAddr, Vec<Pooled>>> = RefCell::new(HashMap::new());
    /// Until when this thread's pool counts as short: a request opened a new origin
    /// connection less than `POOL_SHORT_FOR` ago. Meanwhile finished transactions give
    /// their connection back to the pool instead of keeping it attached to their idle
    /// client: in a burst, a connection pinned that way made another request open one
    /// more (638 opened over two 6,000-connection bursts with pinning, 286 without).
    static POOL_SHORT_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    static WAITERS: RefCell<Vec<Weak<RefCell<Session>>>> = const { RefCell::new(Vec::new()) };
    /// Sessions waiting for another thread's answer (a cache disk read, a name
    /// lookup), by ticket (`await_answer`).
    static AWAITING: RefCell<Awaiting> = RefCell::new(Awaiting::default());
    /// Sessions whose request bytes for their origin wait for the end of the thread's
    /// current batch of events (`drive_batched`).
    static ORIGIN_FLUSH: RefCell<Vec<Rc<RefCell<Session>>>> = const { RefCell::new(Vec::new()) };
}

/// Runs a session after readiness (or a new connection) inside the thread's batch of
/// events, holding what it has for its origin until the whole batch has been dispatched
/// (`flush_origins`, an `after_io` hook). The requests of a batch then reach their
/// origins back to back, and an origin that was asleep finds several at once instead of
/// waking for each (HAProxy gets the same effect from running its streams after the
/// poll's I/O callbacks). Sending at once, nginx as origin woke once every 2 requests
/// and spent 40 % more CPU per request behind Turnstile than behind HAProxy; held, it
/// wakes once every 4-6 and spends the same. Client writes are not held: holding them
/// too was slower (the client waits longer for its answer and wakes just as often).
fn drive_batched(t: &mut EThread, rc: &Rc<RefCell<Session>>) {
    let mut s = rc.borrow_mut();
    s.hold_origin = true;
    s.drive(t);
    s.hold_origin = false;
    if s.flush_queued {
        return; // already held in this batch: settled after its flush
    }
    if s.dead || !s.origin_writable() {
        s.settle(t);
        return;
    }
    s.flush_queued = true;
    drop(s);
    let first = ORIGIN_FLUSH.with(|q| {
        let mut q = q.borrow_mut();
        q.push(rc.clone());
        q.len() == 1
    });
    if first {
        t.after_io(flush_origins);
    }
}

/// Sends what the batch's sessions held for their origins, in the order they were held,
/// and lets each go on from there.
fn flush_origins(t: &mut EThread) {
    let queued = ORIGIN_FLUSH.with(|q| std::mem::take(&mut *q.borrow_mut()));
    for rc in queued {
        let mut s = rc.borrow_mut();
        s.flush_queued = false;
        s.drive(t);
        s.settle(t);
    }
}

/// The last ticket given, and the sessions holding one.
#[derive(Default)]
struct Awaiting(u64, HashMap<u64, Weak<RefCell<Session>>>);

/// A ticket for `me`, about to wait for another thread's answer; the answer, run on
/// this thread, finds the session again with `answered`.
fn await_answer(me: &Weak<RefCell<Session>>) -> u64 {
    AWAITING.with(|a| {
        let Awaiting(next, waiting) = &mut *a.borrow_mut();
        *next += 1;
        waiting.insert(*next, me.clone());
        *next
    })
}

/// The session that waited with `ticket`, if it is still alive and in `phase`.
fn answered(ticket: u64, phase: Phase) -> Option<Rc<RefCell<Session>>> {
    let waiter = AWAITING.with(|a| a.borrow_mut().1.remove(&ticket))?;
    let rc = waiter.upgrade()?; // the session ended meanwhile
    let alive = {
        let s = rc.borrow();
        !s.dead && s.phase == phase
    };
    alive.then_some(rc) // else it timed out or moved on
}

/// How often a request waiting on another's cache fill checks whether it ended.
const CACHE_WAIT_POLL: Duration = Duration::from_millis(2);

thread_local! {
    /// Whether this thread's waiter poll is scheduled.
    static POLLING: Cell<bool> = const { Cell::new(false) };
}

/// Parks the session `me` until the fill it waits for ends, starting this thread's poll
/// if it is not running: the poll runs only while someone waits.
fn park(t: &mut EThread, me: &Rc<RefCell<Session>>) {
    WAITERS.with(|w| w.borrow_mut().push(Rc::downgrade(me)));
    start_poll(t, &POLLING, poll_cache_waiters, CACHE_WAIT_POLL);
}

/// Schedules this thread's poll `f` every `period`, unless `running` says it is.
fn start_poll(
    t: &mut EThread,
    running: &'static std::thread::LocalKey<Cell<bool>>,
    f: fn(&mut EThread),
    period: Duration,
) {
    if !running.with(|r| r.replace(true)) {
        t.schedule_in(Event::new(f), period);
    }
}

/// Ends a turn of a poll started by `start_poll`: it runs again after `period` while
/// `more` is left to poll for, else it stops.
fn rearm_poll(
    t: &mut EThread,
    running: &'static std::thread::LocalKey<Cell<bool>>,
    more: bool,
    period: Duration,
) {
    if more {
        t.set_period(period);
    } else {
        running.with(|r| r.set(false));
    }
}

/// Resumes this thread's sessions whose awaited cache fill ended; re-arms itself every
/// `CACHE_WAIT_POLL` while any remain.
fn poll_cache_waiters(t: &mut EThread) {
    let waiters: Vec<Rc<RefCell<Session>>> = WAITERS.with(|w| {
        let mut w = w.borrow_mut();
        if w.is_empty() {
            return Vec::new();
        }
        let all: Vec<_> = w.drain(..).filter_map(|x| x.upgrade()).collect();
        all
    });
    for rc in waiters {
        let mut s = rc.borrow_mut();
        if s.phase != Phase::CacheWait || s.dead {
            continue;
        }
        s.parked = false;
        s.poll_wait(t);
        if s.phase == Phase::CacheWait {
            if !s.parked {
                s.parked = true;
                WAITERS.with(|w| w.borrow_mut().push(Rc::downgrade(&rc)));
            }
        } else {
            s.drive(t);
        }
        s.settle(t);
    }
    let more = WAITERS.with(|w| !w.borrow().is_empty());
    rearm_poll(t, &POLLING, more, CACHE_WAIT_POLL);
}

thread_local! {
    /// Requests waiting for a place under `per_server.connection.max`, per origin, in
    /// arrival order.
    static ORIGIN_QUEUE: RefCell<HashMap<SocketAddr, std::collections::VecDeque<Weak<RefCell<Session>>>>> =
        RefCell::new(HashMap::new());
    /// Whether this thread's queue poll is scheduled.
    static QUEUE_POLLING: Cell<bool> = const { Cell::new(false) };
}

/// How often queued requests look for places on their own. A place given back (or left
/// by a waiter) wakes the oldest waiter's thread at once (`OriginLoad::wake_oldest`);
/// this poll only catches a reload that raised or lifted the limit.
const ORIGIN_QUEUE_POLL: Duration = Duration::from_millis(10);

/// This thread's periodic queue poll: runs every `ORIGIN_QUEUE_POLL` while requests wait.
fn poll_origin_queue(t: &mut EThread) {
    resume_queued(t);
    let more = ORIGIN_QUEUE.with(|q| !q.borrow().is_empty());
    rearm_poll(t, &QUEUE_POLLING, more, ORIGIN_QUEUE_POLL);
}

/// Gives places under `per_server.connection.max` to this thread's queued requests, first
/// come first served per origin, and sends them on. Requests that left the queue (timed
/// out, client gone) are dropped from it on the way.
fn resume_queued(t: &mut EThread) {
    let mut ready = Vec::new();
    ORIGIN_QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        for (addr, waiting) in q.iter_mut() {
            while let Some(front) = waiting.front() {
                let Some(rc) = front.upgrade() else {
                    waiting.pop_front();
                    continue;
                };
                let s = rc.borrow();
                if s.dead || s.phase != Phase::OriginWait {
                    drop(s);
                    waiting.pop_front();
                    continue;
                }
                let max = s.shared.with_live(|live| live.origin_max);
                let turn = s.tx.as_ref().and_then(|tx| tx.queued.as_deref());
                // A limit lifted by a reload lets everyone through.
                let slot = match turn {
                    Some((waiter, ..)) if max > 0 => match waiter.take(max) {
                        Some(slot) => Some(slot),
                        None => break,
                    },
                    _ => None,
                };
                drop(s);
                waiting.pop_front();
                ready.push((rc, *addr, slot));
            }
        }
        q.retain(|_, waiting| !waiting.is_empty());
    });
    for (rc, addr, slot) in ready {
        let mut s = rc.borrow_mut();
        if let Some(tx) = s.tx.as_mut() {
            tx.slot = slot;
            if let Some(turn) = tx.queued.take() {
                let waited = turn.2.elapsed().as_micros() as u64;
                s.shared.metrics.origin_queue_wait_us.record(waited);
            }
        }
        s.phase = Phase::Exchange;
        s.send_to_origin(t, addr);
        s.drive(t);
        s.settle(t);
    }
}

/// Routes again the request that waited for lookup `id` of `host:port`, with its answer.
/// Runs on the session's ET_NET thread, queued there by a resolver thread.
fn name_resolved(
    t: &mut EThread,
    id: u64,
    host: String,
    port: u16,
    answer: super::resolve::Answer,
) {
    let Some(rc) = answered(id, Phase::Resolve) else {
        return;
    };
    let mut s = rc.borrow_mut();
    let Some(parked) = s.resolving.take() else {
        return;
    };
    let (head, active) = *parked;
    s.phase = Phase::ReadRequest;
    s.resolved = Some((host, port, Box::new(answer)));
    s.route(t, head, Some(active));
    s.resolved = None;
    s.drive(t);
    s.settle(t);
}

/// Resumes the session that waited for cache disk read `read`, with what it found. Runs
/// on the session's ET_NET thread, queued there by the span's I/O thread.
fn cache_read_done(t: &mut EThread, read: u64, value: Option<Arc<[u8]>>) {
    let Some(rc) = answered(read, Phase::CacheRead) else {
        return;
    };
    let mut s = rc.borrow_mut();
    let Some(w) = s.waiting.take() else { return };
    s.phase = Phase::ReadRequest;
    let stored = value.and_then(|b| Stored::decode(&b));
    s.resolve(t, w.pending, w.query, stored);
    s.drive(t);
    s.settle(t);
}

/// Starts a session for `conn`. Runs on the ET_NET thread that owns `conn`.
pub fn start(conn: NetConnection, shared: Arc<HttpShared>, role: &PortRole, t: &mut EThread) {
    let m = &shared.metrics;
    m.current_client_connections.inc();
    m.total_client_connections.inc();
    let now = Instant::now();
    let deadline = now + shared.settings.timeouts.accept_no_activity;
    let session = Rc::new_cyclic(|me| {
        RefCell::new(Session {
            me: me.clone(),
            client: Side::new(),
            conn,
            origin: None,
            inbuf: Vec::new(),
            out_c: Vec::new(),
            out_o: Vec::new(),
            phase: Phase::ReadRequest,
            tx: None,
            deadline,
            dead: false,
            shut_client: false,
            waiting: None,
            idle_since: now,
            head_searched: 0,
            quick_close: false,
            parked: false,
            answered: false,
            connect_reply: false,
            resolving: None,
            resolved: None,
            sent_c: 0,
            log_req: None,
            hold_origin: false,
            flush_queued: false,
            shared,
        })
    });
    // The client socket joins the epoll only once the session waits on it (`settle`): a
    // request that is already there is read at once, and a connection answered and
    // closed without ever waiting on its client costs no epoll_ctl.
    SESSIONS.with(|s| s.borrow_mut().push(Rc::downgrade(&session)));
    if let PortRole::Blind(target) = role {
        let mut s = session.borrow_mut();
        s.shared.metrics.tunnels.inc();
        s.phase = Phase::Tunnel;
        s.deadline = now + s.shared.settings.timeouts.connect;
        if let Err(e) = s.connect_origin(t, *target, false) {
            log::debug!("tunnel to {target}: {e}");
            s.dead = true;
        }
    }
    drive_batched(t, &session);
}

/// Enforces timeouts on this thread's sessions. Runs on each ET_NET thread periodically.
pub fn sweep(t: &mut EThread) {
    let now = Instant::now();
    let sessions: Vec<Rc<RefCell<Session>>> = SESSIONS.with(|s| {
        let mut list = s.borrow_mut();
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    });
    for rc in sessions {
        let mut s = rc.borrow_mut();
        if s.dead {
            continue;
        }
        let idle_drain = s.shared.draining() && s.is_idle();
        if s.is_idle() && s.origin.is_some() && s.idle_since.elapsed() >= ATTACHED_ORIGIN_IDLE {
            // An idle client should not pin an origin connection: back to the pool.
            s.release_origin(t, true);
        }
        if now >= s.deadline || idle_drain {
            s.on_timeout(t, idle_drain);
            s.drive(t);
        }
        s.settle(t);
    }
    // Drop pooled origin connections the origin closed meanwhile, or idle too long.
    let dead: Vec<Pooled> = POOL.with(|p| {
        let mut dead = Vec::new();
        for conns in p.borrow_mut().values_mut() {
            let (keep, gone): (Vec<Pooled>, Vec<Pooled>) = conns
                .drain(..)
                .partition(|c| !c.dead.get() && c.expires > now);
            *conns = keep;
            dead.extend(gone);
        }
        dead
    });
    for c in dead {
        drop(t.deregister(c.token));
    }
    POOL.with(|p| {
        p.borrow_mut().retain(|_, conns| !conns.is_empty());
    });
}

/// An idle origin connection in this thread's pool. It stays registered with the
/// thread's epoll under a [`PoolWatch`], so taking it costs no epoll_ctl.
struct Pooled {
    sock: Socket,
    token: Token,
    dead: Rc<std::cell::Cell<bool>>,
    /// When it is closed unless taken before (`keep_alive_no_activity_timeout_out`).
    expires: Instant,
}

/// Watches a pooled connection: anything from the origin while idle (its close, or bytes
/// nobody asked for, or an error) makes it unusable.
struct PoolWatch {
    dead: Rc<std::cell::Cell<bool>>,
}

impl iocore::IoHandler for PoolWatch {
    fn ready(&mut self, _t: &mut EThread, _tok: Token, ready: Ready) -> Verdict {
        // Writability alone is no news: an edge-triggered socket reports it again when
        // the origin acknowledges the last request, possibly after it was pooled.
        if ready.is_readable() || ready.is_hup() || ready.is_error() {
            self.dead.set(true);
        }
        Verdict::Keep
    }
}

/// Takes the most recently pooled connection to `addr`, if any.
fn pool_take(addr: SocketAddr) -> Option<Pooled> {
    POOL.with(|p| p.borrow_mut().get_mut(&addr)?.pop())
}

/// Readiness flags of one socket (edge-triggered: remembered until EAGAIN).
struct Side {
    token: Option<Token>,
    readable: bool,
    writable: bool,
    eof: bool,
    /// epoll reported the peer's FIN (RDHUP/HUP): read until EOF.
    hup: bool,
}

impl Side {
    fn new() -> Side {
        Side {
            token: None,
            readable: true,
            writable: true,
            eof: false,
            hup: false,
        }
    }

    fn mark(&mut self, r: Ready) {
        self.readable |= r.is_readable() || r.is_hup() || r.is_error();
        self.hup |= r.is_hup() || r.is_error();
        self.writable |= r.is_writable() || r.is_error();
    }
}

struct Origin {
    sock: Socket,
    side: Side,
    addr: SocketAddr,
    connected: bool,
    reused: bool,
    inbuf: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    ReadRequest,
    /// A transaction with an origin.
    Exchange,
    /// Blind relay.
    Tunnel,
    /// Flushing our last bytes, then draining the client until EOF or the linger limit.
    Closing,
    /// Waiting for another connection to fill the cache with what this one asked for.
    CacheWait,
    /// Waiting for a place under `per_server.connection.max` to its origin.
    OriginWait,
    /// Waiting for the cache's disk read of what this one asked for.
    CacheRead,
    /// Waiting for a resolver thread to look its origin's name up.
    Resolve,
}

/// How much of a message body is left.
enum Body {
    Done,
    Length(u64),
    Chunked(Box<ChunkedScanner>),
    UntilClose,
}

impl Body {
    fn from(f: BodyFraming) -> Body {
        match f {
            BodyFraming::None | BodyFraming::Length(0) => Body::Done,
            BodyFraming::Length(n) => Body::Length(n),
            BodyFraming::Chunked => Body::Chunked(Box::default()),
            BodyFraming::UntilClose => Body::UntilClose,
        }
    }

    fn done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many bytes of `input` belong to the body; becomes Done at its end.
    fn take(&mut self, input: &[u8]) -> Result<usize, HeadError> {
        self.take_into(input, None)
    }

    /// As [`Body::take`]; with `dechunked`, a chunked body's payload (its coding removed)
    /// is appended there in the same pass.
    fn take_into(
        &mut self,
        input: &[u8],
        dechunked: Option<&mut Vec<u8>>,
    ) -> Result<usize, HeadError> {
        let (n, done) = match self {
            Body::Done => (0, true),
            Body::Length(left) => {
                let k = (*left).min(input.len() as u64);
                *left -= k;
                (k as usize, *left == 0)
            }
            Body::Chunked(s) => {
                let r = match dechunked {
                    Some(out) => s.decode(input, out)?,
                    None => s.scan(input)?,
                };
                (r.consumed, r.done)
            }
            Body::UntilClose => (input.len(), false),
        };
        if done {
            *self = Body::Done;
        }
        Ok(n)
    }
}

struct Tx {
    /// The request's method, as far as response framing cares.
    method: &'static str,
    req_body: Body,
    resp_body: Option<Body>,
    client_keep_alive: bool,
    origin_keep_alive: bool,
    /// The client spoke HTTP/1.0: it gets no 1xx responses and no chunked coding.
    client_http10: bool,
    /// The response body's chunked coding is removed for an HTTP/1.0 client, which then
    /// reads the body up to the close.
    dechunk: bool,
    /// A reused origin connection failed before answering: resend this once on a new one.
    retry: Option<Vec<u8>>,
    /// What the cache has to do with this transaction.
    /// Boxed, as `Session::waiting`: a session holds a `Tx` inline, idle or not.
    cache: Option<Box<CacheTx>>,
    /// Counts this transaction in flight until it ends.
    active: Counted,
    /// Its place under `per_server.connection.max`, once it has one (None: no limit).
    slot: Option<OriginSlot>,
    /// While it waits for that place: its turn, its unit of `current_origin_queue`, and
    /// since when. Boxed: rare, and a `Tx` sits inline in every session.
    queued: Option<Box<(OriginWaiter, Counted, Instant)>>,
}

/// One unit of a gauge for as long as it lives.
///
/// A transaction holds one of `current_active_transactions` from the moment its request
/// first waits (for the cache or a place at its origin) or goes to its origin until the
/// exchange ends, whichever way. A stop drains until that gauge reaches zero, so a
/// request parked on a cache read or fill is waited for like one at its origin; the
/// guard moves from the parked request into its `Tx`, so the count never dips in between.
struct Counted(Arc<Gauge>);

impl Counted {
    fn new(gauge: &Arc<Gauge>) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A request resolved to its origin, not yet sent.
struct Pending {
    head: RequestHead,
    addr: SocketAddr,
    host_header: String,
    path: String,
    /// `per_server.connection.max` when the request came.
    origin_max: usize,
    /// Set once the request waits: it is in flight from then on.
    active: Option<Counted>,
}

impl Pending {
    /// Counts the request in flight (once) before it is parked.
    fn hold(&mut self, gauge: &Arc<Gauge>) {
        self.active.get_or_insert_with(|| Counted::new(gauge));
    }
}

/// A request parked on the cache: for a disk read, or until another connection's fill
/// of the same key ends.
struct Waiting {
    pending: Pending,
    query: CacheQuery,
}

/// What a request asks the cache.
struct CacheQuery {
    /// The URL's key: the object there, its fill, what a response is stored under.
    key: String,
    /// Set once the object at `key` turned out to be another variant (`Vary`): the key
    /// of this request's own (`caching::alternate_key`), read next.
    alternate: Option<String>,
    /// The variants the URL's key holds, when it holds one.
    variants: Option<UrlVariants>,
    /// The client asked to revalidate (`no-cache`).
    revalidate: bool,
    /// When the request first asked.
    since: Instant,
}

/// The cache's part of a transaction.
struct CacheTx {
    key: String,
    /// A stale object being revalidated.
    stale: Option<Stored>,
    /// The response being captured for storing.
    capture: Option<Capture>,
    /// Held while this transaction fills `key`; others wait for it.
    fill: Option<super::shared::Fill>,
    /// The client's request as it came, for the values of the fields a response's
    /// `Vary` names: the head `forward` sends, moved in there once sent (no copy), or a
    /// copy made before a revalidation replaces the client's conditional fields.
    request: Option<RequestHead>,
    /// The URL's variants a variant stored by this transaction joins; None: a new
    /// generation of them.
    variants: Option<UrlVariants>,
    /// An unsafe request: a non-error answer removes the URL's object instead.
    invalidate: bool,
    /// When it began: an invalidation of `key` after that keeps it from storing.
    began: Instant,
}

impl CacheTx {
    fn new(key: String, stale: Option<Stored>, fill: Option<super::shared::Fill>) -> CacheTx {
        CacheTx {
            key,
            stale,
            capture: None,
            fill,
            request: None,
            variants: None,
            invalidate: false,
            began: Instant::now(),
        }
    }
}

/// The variants (`Vary`) of a URL, as its key's object tells: their generation, and
/// which are kept (oldest first), for the limit on them (`cache.limits.http.max_alts`).
struct UrlVariants {
    generation: u64,
    kept: Vec<Vec<u8>>,
}

impl UrlVariants {
    /// What `obj`, a variant at its URL's key, tells.
    fn of(obj: &Stored) -> UrlVariants {
        UrlVariants {
            generation: obj.generation,
            kept: obj.kept_variants(),
        }
    }
}

/// A storable response's payload, gathered as it passes to the client.
struct Capture {
    head: codec::ResponseHead,
    /// The request's side of the response's `Vary` (`caching::variant`).
    variant: Vec<u8>,
    lifetime: u64,
    body: Vec<u8>,
    chunked: Option<ChunkedScanner>,
    limit: u64,
}

impl Capture {
    /// Adds framed body bytes; false when the object turns out too large (or broken).
    fn feed(&mut self, bytes: &[u8]) -> bool {
        match self.chunked.as_mut() {
            Some(sc) => {
                if sc.decode(bytes, &mut self.body).is_err() {
                    return false;
                }
            }
            None => self.body.extend_from_slice(bytes),
        }
        self.body.len() as u64 <= self.limit
    }
}

/// One client connection.
pub(crate) struct Session {
    me: Weak<RefCell<Session>>,
    shared: Arc<HttpShared>,
    conn: NetConnection,
    client: Side,
    origin: Option<Origin>,
    /// Client bytes not yet consumed (head being read, body, pipelined requests).
    inbuf: Vec<u8>,
    /// Bytes for the client, not yet written.
    out_c: Vec<u8>,
    /// Bytes for the origin, not yet written.
    out_o: Vec<u8>,
    phase: Phase,
    tx: Option<Tx>,
    deadline: Instant,
    dead: bool,
    shut_client: bool,
    /// Boxed: rare, and large (a whole request), it should not widen every session.
    waiting: Option<Box<Waiting>>,
    /// When the last transaction ended.
    idle_since: Instant,
    /// How much of `inbuf` the head parser has already searched for the end of head.
    head_searched: usize,
    /// Closing after a complete exchange: no lingering drain needed.
    quick_close: bool,
    /// In this thread's list of cache waiters (once).
    parked: bool,
    /// A response byte has been written (accept_to_first_byte_us is recorded once).
    answered: bool,
    /// A CONNECT tunnel whose origin connection is not established yet: its client gets
    /// 200 once it is, 502 if it fails.
    connect_reply: bool,
    /// A request waiting for its origin's name (`Phase::Resolve`), counted in flight.
    /// Boxed: rare, and large.
    resolving: Option<Box<(RequestHead, Counted)>>,
    /// The answer for the request being routed again after its lookup.
    resolved: Option<(String, u16, Box<super::resolve::Answer>)>,
    /// Bytes written to the client so far.
    sent_c: u64,
    /// The request in progress, for the access log (only with one).
    log_req: Option<Box<LogReq>>,
    /// Bytes for the origin wait for the end of the batch (`drive_batched`).
    hold_origin: bool,
    /// In this thread's `ORIGIN_FLUSH` queue.
    flush_queued: bool,
}

/// What the access log needs of the request in progress.
struct LogReq {
    started: std::time::SystemTime,
    at: Instant,
    /// `sent_c + out_c.len()` when it began: its bytes are what the client got beyond.
    mark: u64,
    method: String,
    url: String,
    /// The response status sent, once sent (0 before).
    status: u16,
    result: &'static str,
    origin: Option<SocketAddr>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // A request that never finished (client or origin gone, a tunnel's end).
        if let Some(l) = self.log_req.as_deref() {
            let result = match l.result {
                "TCP_TUNNEL" => l.result.to_string(),
                r => format!("{r}_ABORTED"),
            };
            self.write_log(&result, l.status);
        }
        self.shared.metrics.current_client_connections.dec();
    }
}

struct SideHandler {
    session: Rc<RefCell<Session>>,
    origin: bool,
}

impl iocore::IoHandler for SideHandler {
    fn ready(&mut self, t: &mut EThread, _tok: Token, ready: Ready) -> Verdict {
        let mut s = self.session.borrow_mut();
        if self.origin {
            match s.origin.as_mut() {
                Some(o) => o.side.mark(ready),
                None => return Verdict::Remove,
            }
        } else {
            s.client.mark(ready);
        }
        drop(s);
        drive_batched(t, &self.session);
        Verdict::Keep
    }
}

/// Reads once into `buf` (at most `max` bytes): Some(n) (0 = EOF), None = would block.
/// Updates `side`: a read that would block, or a short one, means the socket is drained
/// (edge-triggered: the next arrival is a new edge) — unless the peer's FIN was reported,
/// which must still be read as EOF. When `buf` has no room, the read goes through the
/// thread's scratch buffer and `buf` grows by what arrived, not by a whole read size, so
/// short-lived and idle connections hold only the bytes they have.
fn read_into(
    recv: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    buf: &mut Vec<u8>,
    max: usize,
    side: &mut Side,
) -> io::Result<Option<usize>> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
    }
    let want = max.clamp(1, READ_CHUNK);
    let len = buf.len();
    let r = if buf.capacity() - len >= want {
        buf.resize(len + want, 0);
        let r = recv(&mut buf[len..]);
        buf.truncate(len + *r.as_ref().unwrap_or(&0));
        r
    } else {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let r = recv(&mut scratch[..want]);
            if let Ok(n) = r {
                buf.extend_from_slice(&scratch[..n]);
            }
            r
        })
    };
    match r {
        Ok(n) => {
            if n == 0 {
                side.eof = true;
            } else if n < want && !side.hup {
                side.readable = false;
            }
            Ok(Some(n))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            side.readable = false;
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(e),
    }
}

fn origin_alive(s: &Socket) -> bool {
    let mut b = [0u8; 1];
    matches!(s.recv(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl Session {
    /// Moves bytes until nothing more can happen without new readiness.
    fn drive(&mut self, t: &mut EThread) {
        for _ in 0..10_000 {
            if self.dead {
                return;
            }
            let mut progress = self.flush_client();
            progress |= self.flush_origin();
            progress |= match self.phase {
                Phase::ReadRequest => self.read_request(t),
                Phase::Exchange => self.exchange(t),
                Phase::Tunnel => self.tunnel(t),
                Phase::Closing => self.closing(),
                Phase::OriginWait | Phase::Resolve => self.client_left(),
                Phase::CacheWait | Phase::CacheRead => false,
            };
            if !progress {
                return;
            }
        }
    }

    /// After the session ran: watches the client socket if the session now waits on it
    /// and it is not watched yet; releases both registrations of a dead session (which
    /// drops it).
    fn settle(&mut self, t: &mut EThread) {
        if !self.dead && self.client.token.is_none() && self.waits_on_client() {
            self.watch_client(t);
        }
        if !self.dead {
            return;
        }
        // An origin connection attached between transactions is healthy and idle: it goes
        // back to the pool when its client leaves. One mid-transaction is not reusable.
        let idle_origin = self.tx.is_none()
            && self.phase != Phase::Tunnel
            && self.origin.as_ref().is_some_and(|o| o.connected);
        self.release_origin(t, idle_origin);
        if let Some(tok) = self.client.token.take() {
            drop(t.deregister(tok));
        }
    }

    /// Whether the session needs the client socket's readiness. Not while it waits only
    /// for the origin (the request sent whole, nothing queued for the client): a client
    /// that leaves meanwhile is noticed at the first write to it, as before, since the
    /// exchange reads nothing from it then.
    fn waits_on_client(&self) -> bool {
        let origin_only = self.phase == Phase::Exchange
            && self.origin.is_some()
            && self.out_c.is_empty()
            && self.tx.as_ref().is_some_and(|tx| tx.req_body.done());
        !origin_only
    }

    /// Adds the client socket to this thread's epoll, edge-triggered. Readiness it already
    /// has is reported at once (EPOLL_CTL_ADD polls the socket), so nothing that arrived
    /// before is missed.
    fn watch_client(&mut self, t: &mut EThread) {
        let Some(me) = self.me.upgrade() else {
            self.dead = true;
            return;
        };
        let handler = SideHandler {
            session: me,
            origin: false,
        };
        // The session holds the client socket's only descriptor.
        match t.register_sole(
            self.conn.as_raw_fd(),
            Interest::READ | Interest::WRITE | Interest::EDGE,
            Box::new(handler),
        ) {
            Ok(tok) => self.client.token = Some(tok),
            Err(e) => {
                log::debug!("cannot register client socket: {e}");
                self.dead = true;
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.phase == Phase::ReadRequest && self.inbuf.is_empty() && self.out_c.is_empty()
    }

    /// Bytes for the origin that `flush_origin` would send now (were they not held).
    fn origin_writable(&self) -> bool {
        !self.out_o.is_empty()
            && self
                .origin
                .as_ref()
                .is_some_and(|o| o.connected && o.side.writable)
    }

    fn flush_client(&mut self) -> bool {
        let mut wrote = false;
        // The last bytes of the connection: the close or shutdown follows as soon as they
        // are out, and carries their tail with its FIN. (Only asked when there is
        // something to write: this runs on every turn of `drive`.)
        let last = !self.out_c.is_empty()
            && (self.phase == Phase::Closing
                || self.tx.as_ref().is_some_and(|tx| {
                    !tx.client_keep_alive && tx.resp_body.as_ref().is_some_and(Body::done)
                }));
        while !self.out_c.is_empty() && self.client.writable {
            let sent = if last {
                self.conn.send_last(&self.out_c)
            } else {
                self.conn.send(&self.out_c)
            };
            match sent {
                Ok(n) => {
                    self.out_c.drain(..n);
                    self.sent_c += n as u64;
                    wrote = true;
                    if !self.answered {
                        self.answered = true;
                        let us = self.conn.accepted_at().elapsed().as_micros();
                        self.shared.metrics.first_byte_us.record(us as u64);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.client.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    return true;
                }
            }
        }
        // Hold no buffer while idle (so an idle keep-alive connection costs little), and
        // none bigger than the limit ever.
        if self.out_c.is_empty()
            && (self.out_c.capacity() > BUF_LIMIT || self.phase == Phase::ReadRequest)
        {
            self.out_c = Vec::new();
        }
        if wrote && self.phase != Phase::Closing {
            self.deadline = self.deadline.max(
                Instant::now()
                    + self
                        .shared
                        .settings
                        .timeouts
                        .default_inactivity
                        .min(self.idle_limit()),
            );
        }
        wrote
    }

    fn flush_origin(&mut self) -> bool {
        if self.hold_origin {
            return false;
        }
        let mut wrote = false;
        while self.origin_writable() {
            let Some(o) = self.origin.as_mut() else {
                break;
            };
            match o.sock.send(&self.out_o) {
                Ok(n) => {
                    self.out_o.drain(..n);
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => o.side.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The origin went away; the read side will see it and answer 502.
                    o.side.eof = true;
                    self.out_o.clear();
                    return true;
                }
            }
        }
        wrote
    }

    fn idle_limit(&self) -> Duration {
        self.shared.settings.timeouts.transaction_no_activity_out
    }

    /// Reads client bytes into `inbuf`: true if anything happened (bytes or EOF).
    fn read_client(&mut self, max: usize) -> bool {
        if !self.client.readable || self.client.eof || max == 0 {
            return false;
        }
        let conn = &self.conn;
        match read_into(|b| conn.recv(b), &mut self.inbuf, max, &mut self.client) {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(_) => {
                self.dead = true;
                true
            }
        }
    }

    fn read_request(&mut self, t: &mut EThread) -> bool {
        if !self.inbuf.is_empty() {
            match codec::parse_request_from(
                &self.inbuf,
                self.shared.settings.max_head,
                self.head_searched,
            ) {
                Ok(Some((head, len))) => {
                    self.inbuf.drain(..len);
                    self.head_searched = 0;
                    self.begin(t, head);
                    return true;
                }
                Ok(None) => self.head_searched = self.inbuf.len(),
                Err(e) => {
                    self.shared.metrics.incoming_requests.inc();
                    self.local_response(e.status(), &e.to_string(), false, &[]);
                    return true;
                }
            }
        }
        if self.client.eof {
            // Closed between requests (or mid-head): nothing to answer.
            self.dead = self.out_c.is_empty() || !self.client.writable;
            if !self.dead {
                self.phase = Phase::Closing;
            }
            return true;
        }
        if self.inbuf.is_empty() && self.inbuf.capacity() > 0 && !self.client.readable {
            self.inbuf = Vec::new(); // idle: hold no buffer
        }
        let room =
            self.shared.settings.max_head + 1 - self.inbuf.len().min(self.shared.settings.max_head);
        self.read_client(room)
    }

    /// A local answer (error, stats): queued in order; closes afterwards unless `keep`.
    fn local_response(&mut self, status: u16, body: &str, keep: bool, headers: &[(&str, &str)]) {
        let keep = keep && !self.shared.draining();
        codec::simple_response(status, body, keep, headers, &mut self.out_c);
        self.shared.metrics.count_status(status);
        self.shared.metrics.completed_requests.inc();
        let went = self.log_req.as_ref().is_some_and(|l| l.origin.is_some());
        self.log_end(status, if went { "TCP_MISS" } else { "NONE" });
        if !keep {
            self.phase = Phase::Closing;
            self.deadline = Instant::now() + LINGER;
        }
    }

    fn begin(&mut self, t: &mut EThread, head: RequestHead) {
        self.shared.metrics.incoming_requests.inc();
        if self.shared.access_log().is_some() {
            self.log_begin(&head);
        }
        self.route(t, head, None);
    }

    /// Notes what the access log will need of `head`'s request.
    fn log_begin(&mut self, head: &RequestHead) {
        let target = head.target();
        let url = if head.is_absolute_form() || head.method() == "CONNECT" {
            target.to_string()
        } else {
            let host = head.header("host").map(String::from_utf8_lossy);
            format!("http://{}{target}", host.as_deref().unwrap_or("-"))
        };
        self.log_req = Some(Box::new(LogReq {
            started: std::time::SystemTime::now(),
            at: Instant::now(),
            mark: self.sent_c + self.out_c.len() as u64,
            method: head.method().to_string(),
            url,
            status: 0,
            result: "TCP_MISS",
            origin: None,
        }));
    }

    /// Writes the access log line of the request in progress (or of a bare answer
    /// to no request, as a 400 for a head that did not parse), now that it ended.
    fn log_end(&mut self, status: u16, result: &'static str) {
        self.write_log(result, status);
        self.log_req = None;
    }

    /// Queues the access log line of the request in progress (if any) with `result` and
    /// `status`; nothing without an access log.
    fn write_log(&self, result: &str, status: u16) {
        let Some(log) = self.shared.access_log() else {
            return;
        };
        let l = self.log_req.as_deref();
        let (started, elapsed, mark) = match l {
            Some(l) => (l.started, l.at.elapsed(), l.mark),
            None => (std::time::SystemTime::now(), Duration::ZERO, self.sent_c),
        };
        log.write(&crate::access_log::Entry {
            started,
            elapsed,
            client: self.conn.peer_addr().ip(),
            result,
            status,
            bytes: (self.sent_c + self.out_c.len() as u64).saturating_sub(mark),
            method: l.map_or("", |l| &l.method),
            url: l.map_or("", |l| &l.url),
            origin: l.and_then(|l| l.origin),
        });
    }

    /// Where a request goes: the stats endpoint, a remap rule's origin, a forward
    /// proxy's (once its name is resolved), a CONNECT tunnel, or a local error. `active`:
    /// the request is already counted in flight (it waited for a name).
    fn route(&mut self, t: &mut EThread, head: RequestHead, active: Option<Counted>) {
        let shared = self.shared.clone();
        let settings = &shared.settings;
        let has_body = head.has_body();
        let keep = head.keep_alive() && !has_body;
        if head.method() == "CONNECT" {
            return self.open_connect(t, head, has_body);
        }
        let target = match head.split_target() {
            Ok(t) => t,
            Err(e) => return self.local_response(e.status(), &e.to_string(), false, &[]),
        };
        let path = target.path_and_query.as_str();
        if target.scheme.is_none() {
            if let Some(rest) = path.strip_prefix(settings.stats_path.as_str()) {
                if let Some(format) = Format::select(rest, head.header("accept")) {
                    return self.stats(&head, format, keep);
                }
            }
        }
        let host = target.host.as_deref();
        // One look at the live settings per request: the rule, and the origin's limit.
        let (remapped, origin_max) = shared.with_live(|live| {
            let rule = live
                .remap
                .lookup(host, path)
                .map(|(rule, to_path)| (rule.to_addr, rule.to_host.clone(), to_path));
            (rule, live.origin_max)
        });
        let (addr, host_header, path) = match remapped {
            Some(found) => found,
            None if target.scheme.is_some() && !settings.remap_required => {
                let Some((h, port)) = host.and_then(super::remap::split_authority) else {
                    return self.local_response(400, "bad request target", false, &[]);
                };
                match self.address_of(&h, port.unwrap_or(80)) {
                    Some(Ok(a)) => (
                        a,
                        host.unwrap_or_default().to_string(),
                        target.path_and_query.clone(),
                    ),
                    Some(Err(_)) => {
                        return self.local_response(502, "cannot resolve origin", keep, &[])
                    }
                    None => return self.wait_for_name(t, h, port.unwrap_or(80), head),
                }
            }
            None => return self.local_response(404, "no remap rule for this request", keep, &[]),
        };
        let pending = Pending {
            head,
            addr,
            host_header,
            path,
            origin_max,
            active,
        };
        let Some(cache) = shared.cache().cloned() else {
            return self.forward(t, pending, None);
        };
        let policy = caching::request_policy(&pending.head);
        if !policy.cacheable {
            // A change to the target (PUT, POST, DELETE, …) invalidates what the cache
            // holds for it once the origin accepts it.
            let invalidate = caching::is_unsafe(pending.head.method()).then(|| {
                let mut c = CacheTx::new(
                    caching::key(&pending.host_header, &pending.path),
                    None,
                    None,
                );
                c.invalidate = true;
                c
            });
            return self.forward(t, pending, invalidate);
        }
        let query = CacheQuery {
            key: caching::key(&pending.host_header, &pending.path),
            alternate: None,
            variants: None,
            revalidate: policy.revalidate,
            since: Instant::now(),
        };
        self.lookup(t, pending, &cache, query);
    }

    /// CONNECT host:port: with forward proxying, to a port `connect_ports` allows, a
    /// tunnel (`Phase::Tunnel`) to the origin, answered 200 once its connection is
    /// established and 502 if it cannot be; bytes the client sent after the head go
    /// through it first. Refused (and the connection closed) otherwise.
    fn open_connect(&mut self, t: &mut EThread, head: RequestHead, has_body: bool) {
        let shared = self.shared.clone();
        if shared.settings.remap_required {
            let msg =
                "CONNECT is served only by a forward proxy (url_remap.remap_required = false)";
            return self.local_response(403, msg, false, &[]);
        }
        let authority = super::remap::split_authority(head.target());
        let Some((host, Some(port))) = authority.filter(|_| !has_body) else {
            return self.local_response(400, "CONNECT needs host:port and no body", false, &[]);
        };
        if !shared.with_live(|live| live.connect_ports.allows(port)) {
            let msg = "CONNECT to this port is not allowed (connect_ports)";
            return self.local_response(403, msg, false, &[]);
        }
        let addr = match self.address_of(&host, port) {
            Some(Ok(a)) => a,
            Some(Err(_)) => return self.local_response(502, "cannot resolve origin", false, &[]),
            None => return self.wait_for_name(t, host, port, head),
        };
        if let Err(e) = self.connect_origin(t, addr, false) {
            log::debug!("CONNECT {addr}: {e}");
            return self.local_response(502, "cannot connect to origin", false, &[]);
        }
        self.out_o = std::mem::take(&mut self.inbuf);
        self.phase = Phase::Tunnel;
        self.connect_reply = true;
        self.deadline = Instant::now() + shared.settings.timeouts.connect;
    }

    /// The address of `host:port` if known without waiting: an IP literal, a cached
    /// answer, or the one just looked up for this request. None: look it up.
    fn address_of(&mut self, host: &str, port: u16) -> Option<super::resolve::Answer> {
        if let Some((h, p, answer)) = self.resolved.take() {
            if h == host && p == port {
                return Some(*answer);
            }
        }
        self.shared.resolver().cached(host, port).map(Ok)
    }

    /// Parks the request until a resolver thread has looked `host:port` up
    /// (`Phase::Resolve`, at most the connect timeout); `name_resolved` then routes it
    /// again, here.
    fn wait_for_name(&mut self, t: &mut EThread, host: String, port: u16, head: RequestHead) {
        let id = await_answer(&self.me);
        let active = Counted::new(&self.shared.metrics.active_transactions);
        self.resolving = Some(Box::new((head, active)));
        self.phase = Phase::Resolve;
        self.deadline = Instant::now() + self.shared.settings.timeouts.connect;
        let here = t.handle();
        let name = host.clone();
        // Runs on a resolver thread: hands the answer back to this thread.
        let done = move |answer| here.run(move |t| name_resolved(t, id, name, port, answer));
        self.shared.resolver().resolve(&host, port, Box::new(done));
    }

    /// Looks the query's key (or the alternate one) up: in RAM at once, or on disk by
    /// the span's I/O thread, the session waiting meanwhile (`Phase::CacheRead`) until
    /// `cache_read_done` resumes it here.
    fn lookup(
        &mut self,
        t: &mut EThread,
        mut pending: Pending,
        cache: &Arc<crate::cache::Cache>,
        query: CacheQuery,
    ) {
        match cache.lookup(query.alternate.as_deref().unwrap_or(&query.key)) {
            Lookup::Done(value) => {
                let stored = value.and_then(|b| Stored::decode(&b));
                self.resolve(t, pending, query, stored);
            }
            Lookup::Disk(disk) => {
                let read = await_answer(&self.me);
                let here = t.handle();
                // Runs on the span's I/O thread: hands the value back to this thread.
                disk.then(move |value| here.run(move |t| cache_read_done(t, read, value)));
                self.shared.metrics.cache_disk_reads.inc();
                pending.hold(&self.shared.metrics.active_transactions);
                self.waiting = Some(Box::new(Waiting { pending, query }));
                self.phase = Phase::CacheRead;
            }
        }
    }

    /// Answers from the cache, or forwards with what the cache knows: a stale object to
    /// revalidate, or the right to fill it. A miss whose fill is already in flight on
    /// another connection waits for it (`Phase::CacheWait`) instead of fetching again.
    fn resolve(
        &mut self,
        t: &mut EThread,
        mut pending: Pending,
        mut query: CacheQuery,
        stored: Option<Stored>,
    ) {
        // Another variant (`Vary`): look for this request's own, once; not there, it is
        // a miss, and the response is stored beside the others.
        let stored = match stored {
            Some(obj) if !obj.serves(&pending.head) => {
                let own = obj.request_variant(&pending.head);
                if let (None, Some(variant), Some(cache)) =
                    (&query.alternate, own, self.shared.cache().cloned())
                {
                    query.variants = Some(UrlVariants::of(&obj));
                    query.alternate =
                        Some(caching::alternate_key(&query.key, obj.generation, &variant));
                    return self.lookup(t, pending, &cache, query);
                }
                None
            }
            other => other,
        };
        let m = &self.shared.metrics;
        let now = caching::now_s();
        match stored {
            Some(obj) if obj.is_fresh(now) && !query.revalidate => {
                m.cache_hits.inc();
                self.serve_hit(&pending.head, &obj, now);
            }
            Some(obj) => {
                // Stale: ask the origin whether it changed, with our validators in place
                // of the client's.
                let validators = obj.validators();
                let variants = query
                    .variants
                    .take()
                    .or_else(|| (!obj.variant.is_empty()).then(|| UrlVariants::of(&obj)));
                let mut ctx = CacheTx::new(query.key, Some(obj), None);
                ctx.variants = variants;
                ctx.request = Some(pending.head.clone());
                pending.head.headers.retain(|h| {
                    !h.name.eq_ignore_ascii_case("if-none-match")
                        && !h.name.eq_ignore_ascii_case("if-modified-since")
                });
                for (name, value) in validators {
                    pending.head.headers.push(&name, &value);
                }
                self.forward(t, pending, Some(ctx));
            }
            None => match self.shared.claim_fill(&query.key) {
                Claim::Fill(fill) => {
                    m.cache_misses.inc();
                    let mut ctx = CacheTx::new(query.key, None, Some(fill));
                    ctx.variants = query.variants;
                    self.forward(t, pending, Some(ctx));
                }
                Claim::InFlight
                    if query.since.elapsed() < self.shared.settings.timeouts.connect =>
                {
                    pending.hold(&m.active_transactions);
                    // When the fill ends, the lookup starts over from the URL's key.
                    query.alternate = None;
                    query.variants = None;
                    self.waiting = Some(Box::new(Waiting { pending, query }));
                    self.phase = Phase::CacheWait;
                    if let Some(me) = self.me.upgrade().filter(|_| !self.parked) {
                        self.parked = true;
                        park(t, &me);
                    }
                }
                // Not storable last time: fetch alongside the others instead of queueing
                // behind a fill, and without capturing; the hint expires, then the next
                // miss tries to fill again. Or the fill takes too long: fetch without
                // waiting any more.
                Claim::Unstorable | Claim::InFlight => {
                    m.cache_misses.inc();
                    self.forward(t, pending, None);
                }
            },
        }
    }

    fn serve_hit(&mut self, head: &RequestHead, obj: &Stored, now: u64) {
        // A body (a GET may have one) is not read: the connection closes after the
        // answer, as after a local response, and its bytes are never taken as a request.
        let keep = head.keep_alive() && !head.has_body() && !self.shared.draining();
        obj.write_hit(&mut self.out_c, &self.shared.settings.via, keep, now);
        let status = obj.response().map_or(0, |r| r.status);
        if status != 0 {
            self.shared.metrics.count_status(status);
        }
        self.shared.metrics.completed_requests.inc();
        self.log_end(status, "TCP_HIT");
        // An unread body is drained by the lingering close.
        self.after_answer(keep, !head.has_body(), Instant::now());
    }

    /// What follows a request answered whole: the next request on a kept connection, or
    /// the close. With the request `read_whole` and nothing after it, the close comes as
    /// soon as the answer is out, with no lingering drain (4 recvfrom, a shutdown and an
    /// epoll_ctl fewer per connection-per-request client).
    fn after_answer(&mut self, keep: bool, read_whole: bool, now: Instant) {
        if keep {
            self.phase = Phase::ReadRequest;
            self.deadline = now + self.shared.settings.timeouts.keep_alive_in;
        } else {
            self.phase = Phase::Closing;
            self.deadline = now + LINGER;
            self.quick_close = read_whole && self.inbuf.is_empty();
        }
    }

    /// Sends the request to its origin.
    fn forward(&mut self, t: &mut EThread, pending: Pending, cache: Option<CacheTx>) {
        let shared = self.shared.clone();
        let Pending {
            head,
            addr,
            host_header,
            path,
            origin_max,
            active,
        } = pending;
        let client_keep_alive = head.keep_alive() && !shared.draining();
        let mut out = Vec::with_capacity(512);
        codec::write_request_head(
            &head,
            &mut out,
            &ForwardRequest {
                path_and_query: &path,
                host: &host_header,
                via: &shared.settings.via,
                client_ip: Some(self.conn.peer_addr().ip()),
                keep_alive: true,
            },
        );
        let req_body = Body::from(head.body());
        let retry = req_body.done().then(|| out.clone());
        self.out_o = out;
        let active = active.unwrap_or_else(|| Counted::new(&shared.metrics.active_transactions));
        let method = codec::framing_method(head.method());
        let client_http10 = head.minor_version == 0;
        let cache = cache.map(|mut c| {
            c.request.get_or_insert(head);
            Box::new(c)
        });
        self.tx = Some(Tx {
            method,
            req_body,
            resp_body: None,
            client_keep_alive,
            origin_keep_alive: true,
            client_http10,
            dechunk: false,
            retry,
            cache,
            active,
            slot: None,
            queued: None,
        });
        self.phase = Phase::Exchange;
        if let Some(l) = self.log_req.as_mut() {
            l.origin = Some(addr);
        }
        match shared.origin_slot(addr, origin_max, t, resume_queued) {
            Ok(slot) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.slot = slot;
                }
                self.send_to_origin(t, addr);
            }
            Err(waiter) => self.queue_for_origin(t, addr, waiter),
        }
    }

    /// Waits for a place under `per_server.connection.max` to `addr`: in this thread's
    /// queue for it, until `resume_queued` gives it one or the connect timeout ends the
    /// wait with a 503.
    fn queue_for_origin(&mut self, t: &mut EThread, addr: SocketAddr, waiter: OriginWaiter) {
        let m = &self.shared.metrics;
        m.origin_queued.inc();
        if let Some(tx) = self.tx.as_mut() {
            let turn = (waiter, Counted::new(&m.origin_queue), Instant::now());
            tx.queued = Some(Box::new(turn));
        }
        self.phase = Phase::OriginWait;
        self.deadline = Instant::now() + self.shared.settings.timeouts.connect;
        ORIGIN_QUEUE.with(|q| {
            q.borrow_mut()
                .entry(addr)
                .or_default()
                .push_back(self.me.clone())
        });
        start_poll(t, &QUEUE_POLLING, poll_origin_queue, ORIGIN_QUEUE_POLL);
    }

    /// A request waiting for an origin place or a name lookup whose client closed or
    /// reset its connection is dropped: no place is spent on it, and a queue moves on.
    /// true: it was.
    fn client_left(&mut self) -> bool {
        if self.client.hup {
            self.dead = true;
        }
        self.dead
    }

    /// Sends the transaction's request on the attached connection to `addr`, a pooled
    /// one, or a new one.
    fn send_to_origin(&mut self, t: &mut EThread, addr: SocketAddr) {
        match self.origin.as_ref() {
            Some(o) if o.addr == addr && o.connected && !o.side.eof => {
                self.shared.metrics.origin_connections_reused.inc();
                self.deadline =
                    Instant::now() + self.shared.settings.timeouts.transaction_no_activity_out;
                return;
            }
            Some(_) => self.release_origin(t, true),
            None => {}
        }
        if let Err(e) = self.connect_origin(t, addr, true) {
            log::debug!("connect {addr}: {e}");
            self.fail_tx(502, "cannot connect to origin");
        }
    }

    /// Called by the per-thread poll while this session waits for another's cache fill.
    fn poll_wait(&mut self, t: &mut EThread) {
        let Some(w) = self.waiting.as_ref() else {
            return;
        };
        if self.shared.fill_in_flight(&w.query.key)
            && w.query.since.elapsed() < self.shared.settings.timeouts.connect
        {
            return;
        }
        let w = self.waiting.take().expect("checked");
        self.phase = Phase::ReadRequest;
        match self.shared.cache().cloned() {
            Some(cache) => self.lookup(t, w.pending, &cache, w.query),
            None => self.forward(t, w.pending, None),
        }
    }

    fn stats(&mut self, head: &RequestHead, format: Format, keep: bool) {
        let peer = self.conn.peer_addr().ip();
        if !self
            .shared
            .with_live(|live| live.allow.iter().any(|n| n.contains(&peer)))
        {
            return self.local_response(403, "forbidden", keep, &[]);
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let body = stats_http::render(
            format,
            &self.shared.registry,
            now_ms,
            &self.shared.settings.server,
        );
        let body = if head.method() == "HEAD" {
            ""
        } else {
            body.as_str()
        };
        self.local_response(
            200,
            body,
            keep,
            &[
                ("Content-Type", format.content_type()),
                ("Cache-Control", "no-cache"),
            ],
        );
    }

    /// Connects to `addr`, or takes a pooled connection to it (whose epoll registration
    /// this session's handler takes over), and registers it here.
    fn connect_origin(
        &mut self,
        t: &mut EThread,
        addr: SocketAddr,
        pooled: bool,
    ) -> io::Result<()> {
        let handler = || SideHandler {
            session: self.me.upgrade().expect("a running session is alive"),
            origin: true,
        };
        // A connection the origin closed while pooled is marked dead by its pool handler;
        // one closed just now is caught by the retry of a bodiless request, so only a
        // request that cannot be retried also pays for a health check.
        let verify = self.tx.as_ref().is_some_and(|tx| tx.retry.is_none());
        let mut reused = None;
        while let Some(p) = pooled.then(|| pool_take(addr)).flatten() {
            if p.dead.get() || (verify && !origin_alive(&p.sock)) {
                drop(t.deregister(p.token));
                continue;
            }
            if t.replace_handler(p.token, Box::new(handler())) {
                reused = Some(p);
                break;
            }
        }
        let (sock, token, was_reused) = match reused {
            Some(p) => {
                self.shared.metrics.origin_connections_reused.inc();
                (p.sock, p.token, true)
            }
            None => {
                if pooled {
                    // The pool had nothing for this request: it runs short.
                    POOL_SHORT_UNTIL.with(|p| p.set(Some(Instant::now() + POOL_SHORT_FOR)));
                }
                self.shared.metrics.origin_connections_opened.inc();
                let sock = Socket::connect(addr)?;
                let token = t.register(
                    sock.as_raw_fd(),
                    Interest::READ | Interest::WRITE | Interest::EDGE,
                    Box::new(handler()),
                )?;
                (sock, token, false)
            }
        };
        // A fresh connect to a near origin has usually completed already: then the
        // request goes out now rather than a loop turn later, on the writable event.
        let connected = was_reused || sock.is_established();
        let mut side = Side::new();
        side.token = Some(token);
        side.writable = connected;
        // Pooled, it had nothing to read (anything arriving marked it dead); fresh,
        // nothing has been asked yet.
        side.readable = false;
        self.origin = Some(Origin {
            sock,
            side,
            addr,
            connected,
            reused: was_reused,
            inbuf: Vec::new(),
        });
        let timeouts = &self.shared.settings.timeouts;
        self.deadline = Instant::now()
            + if connected {
                timeouts.transaction_no_activity_out
            } else {
                timeouts.connect
            };
        Ok(())
    }

    /// Lets the origin connection go: into this thread's pool, still registered, when
    /// `reuse` and it is clean; else deregistered and closed.
    fn release_origin(&mut self, t: &mut EThread, reuse: bool) {
        let Some(o) = self.origin.take() else { return };
        let Some(token) = o.side.token else { return };
        let room = POOL.with(|p| p.borrow().get(&o.addr).map_or(0, Vec::len) < POOL_PER_ORIGIN);
        if reuse && room && o.connected && o.inbuf.is_empty() && !o.side.eof {
            let dead = Rc::new(std::cell::Cell::new(false));
            let watcher = PoolWatch { dead: dead.clone() };
            if t.replace_handler(token, Box::new(watcher)) {
                POOL.with(|p| {
                    p.borrow_mut().entry(o.addr).or_default().push(Pooled {
                        sock: o.sock,
                        token,
                        dead,
                        expires: Instant::now() + self.shared.settings.timeouts.keep_alive_out,
                    });
                });
                return;
            }
        }
        drop(t.deregister(token));
    }

    /// Completes the connect when the socket turns writable. true: progress.
    fn finish_connect(&mut self) -> Result<bool, ()> {
        let Some(o) = self.origin.as_mut() else {
            return Err(());
        };
        if o.connected {
            return Ok(false);
        }
        if !o.side.writable {
            return Ok(false);
        }
        match o.sock.take_error() {
            Ok(None) => {
                o.connected = true;
                o.side.readable = true;
                self.deadline = Instant::now() + self.idle_limit();
                Ok(true)
            }
            _ => Err(()),
        }
    }

    fn exchange(&mut self, t: &mut EThread) -> bool {
        let mut progress = match self.finish_connect() {
            Ok(p) => p,
            Err(()) => {
                self.fail_tx(502, "cannot connect to origin");
                return true;
            }
        };
        if !self.origin.as_ref().is_some_and(|o| o.connected) {
            return progress;
        }
        progress |= self.pump_request_body();
        if self.dead || self.phase != Phase::Exchange {
            return true;
        }
        progress |= self.pump_response(t);
        progress
    }

    /// Client → origin body bytes, bounded.
    fn pump_request_body(&mut self) -> bool {
        let Some(tx) = self.tx.as_mut() else {
            return false;
        };
        if tx.req_body.done() {
            return false;
        }
        let mut progress = false;
        if !self.inbuf.is_empty() && self.out_o.len() < BUF_LIMIT {
            match tx.req_body.take(&self.inbuf) {
                Ok(n) => {
                    self.out_o.extend_from_slice(&self.inbuf[..n]);
                    self.inbuf.drain(..n);
                    progress = n > 0 || tx.req_body.done();
                }
                Err(e) => {
                    self.fail_tx(e.status(), &e.to_string());
                    return true;
                }
            }
        }
        if self.inbuf.is_empty() && !tx.req_body.done() && self.out_o.len() < BUF_LIMIT {
            progress |= self.read_client(BUF_LIMIT);
            if self.client.eof && self.inbuf.is_empty() {
                // The client gave up mid-body.
                self.dead = true;
                return true;
            }
        }
        progress
    }

    /// Origin → client: response head, interim responses, body.
    fn pump_response(&mut self, t: &mut EThread) -> bool {
        let mut progress = false;
        let Some(o) = self.origin.as_mut() else {
            return false;
        };
        if self.out_c.len() < BUF_LIMIT && o.side.readable && !o.side.eof {
            let sock = &o.sock;
            let room = BUF_LIMIT - self.out_c.len();
            match read_into(|b| sock.recv(b), &mut o.inbuf, room, &mut o.side) {
                Ok(Some(0)) | Err(_) => {
                    o.side.eof = true;
                    progress = true;
                }
                Ok(Some(_)) => {
                    progress = true;
                    self.deadline =
                        Instant::now() + self.shared.settings.timeouts.transaction_no_activity_out;
                }
                Ok(None) => {}
            }
        }
        let Some(tx) = self.tx.as_mut() else {
            return progress;
        };
        let o = self.origin.as_mut().expect("checked above");
        if tx.resp_body.is_none() {
            match codec::parse_response(&o.inbuf, self.shared.settings.max_head, tx.method) {
                Ok(Some((head, len))) => {
                    o.inbuf.drain(..len);
                    tx.retry = None;
                    if (100..200).contains(&head.status) && head.status != 101 {
                        // Interim (100 Continue): pass it on, wait for the final one. An
                        // HTTP/1.0 client must not get one (RFC 9110 §15.2).
                        if tx.client_http10 {
                            return true;
                        }
                        codec::write_response_head(
                            &head,
                            &mut self.out_c,
                            &ForwardResponse {
                                via: &self.shared.settings.via,
                                keep_alive: true,
                                framing_override: None,
                            },
                        );
                        return true;
                    }
                    let framing = head.body(tx.method);
                    tx.origin_keep_alive = head.keep_alive() && framing != BodyFraming::UntilClose;
                    if framing == BodyFraming::UntilClose {
                        tx.client_keep_alive = false;
                    }
                    if framing == BodyFraming::Chunked && tx.client_http10 {
                        // HTTP/1.0 has no chunked coding: send the payload until close.
                        tx.client_keep_alive = false;
                        tx.dechunk = true;
                    }
                    if tx.cache.as_ref().is_some_and(|c| c.invalidate) {
                        let c = tx.cache.take().expect("checked");
                        if let (true, Some(cache)) =
                            ((200..400).contains(&head.status), self.shared.cache())
                        {
                            // Its variants, if any, go with it: the next one stored starts
                            // a new generation.
                            cache.remove(&c.key);
                            self.shared.note_invalidation(&c.key);
                            self.shared.metrics.cache_invalidations.inc();
                        }
                    }
                    if let Some(c) = tx.cache.as_mut() {
                        let now = caching::now_s();
                        if head.status == 304 && c.stale.is_some() {
                            // Still valid: refresh it and answer from the cache.
                            let mut obj = c.stale.take().expect("checked");
                            let old_lifetime = obj.fresh_until.saturating_sub(obj.stored_at);
                            let lifetime = caching::freshness(&head, now).unwrap_or(old_lifetime);
                            obj.stored_at = now;
                            obj.fresh_until = now.saturating_add(lifetime);
                            if let Some(cache) = self.shared.cache() {
                                if !self.shared.invalidated_since(&c.key, c.began) {
                                    let kept = c.variants.as_ref().map(|v| v.kept.clone());
                                    let kept = kept.unwrap_or_else(|| obj.kept_variants());
                                    let max = self.shared.settings.max_alts;
                                    store(cache, &c.key, &mut obj, &kept, max);
                                }
                            }
                            self.shared.metrics.cache_revalidated.inc();
                            self.shared.metrics.cache_hits.inc();
                            if let Some(r) = obj.response() {
                                self.shared.metrics.count_status(r.status);
                                if let Some(l) = self.log_req.as_mut() {
                                    (l.status, l.result) = (r.status, "TCP_REFRESH_HIT");
                                }
                            }
                            obj.write_hit(
                                &mut self.out_c,
                                &self.shared.settings.via,
                                tx.client_keep_alive,
                                now,
                            );
                            tx.resp_body = Some(Body::from(framing));
                            return true;
                        }
                        let limit = self.shared.settings.max_doc_size;
                        let fits = !matches!(framing, BodyFraming::Length(n) if n > limit);
                        c.capture = caching::freshness(&head, now)
                            .filter(|_| fits)
                            .zip(c.request.as_ref().and_then(|r| caching::variant(&head, r)))
                            .map(|(lifetime, variant)| Capture {
                                head: head.clone(),
                                variant,
                                lifetime,
                                body: Vec::new(),
                                chunked: (framing == BodyFraming::Chunked)
                                    .then(ChunkedScanner::new),
                                limit,
                            });
                        if c.capture.is_none() {
                            // Nothing to store: let the requests waiting for this fill
                            // go to the origin now, not after this whole transfer.
                            c.fill = None;
                        }
                        // Replaced by something we may not keep: forget the old one.
                        if let (None, Some(old), Some(cache)) =
                            (&c.capture, &c.stale, self.shared.cache())
                        {
                            cache.remove(&c.key);
                            if let Some(alternate) = old.alternate_at(&c.key) {
                                cache.remove(&alternate);
                            }
                        }
                    }
                    self.shared.metrics.count_status(head.status);
                    if let Some(l) = self.log_req.as_mut() {
                        l.status = head.status;
                    }
                    codec::write_response_head(
                        &head,
                        &mut self.out_c,
                        &ForwardResponse {
                            via: &self.shared.settings.via,
                            keep_alive: tx.client_keep_alive,
                            framing_override: tx.dechunk.then_some(BodyFraming::UntilClose),
                        },
                    );
                    tx.resp_body = Some(Body::from(framing));
                    progress = true;
                }
                Ok(None) if o.side.eof => {
                    if o.reused && o.inbuf.is_empty() {
                        if let Some(req) = tx.retry.take() {
                            // A pooled connection the origin had closed: once more, fresh.
                            let addr = o.addr;
                            self.release_origin(t, false);
                            self.out_o = req;
                            if self.connect_origin(t, addr, false).is_err() {
                                self.fail_tx(502, "cannot connect to origin");
                            }
                            return true;
                        }
                    }
                    self.fail_tx(502, "origin closed the connection without a response");
                    return true;
                }
                Ok(None) => {}
                Err(_) => {
                    self.fail_tx(502, "invalid response from origin");
                    return true;
                }
            }
        }
        let o = self.origin.as_mut().expect("checked above");
        if let Some(body) = tx.resp_body.as_mut() {
            if !o.inbuf.is_empty() && !body.done() {
                // An HTTP/1.0 client gets the payload, decoded in the framing pass.
                let dechunked = tx.dechunk.then_some(&mut self.out_c);
                match body.take_into(&o.inbuf, dechunked) {
                    Ok(n) => {
                        if let Some(c) = tx.cache.as_mut() {
                            if c.capture
                                .as_mut()
                                .is_some_and(|cap| !cap.feed(&o.inbuf[..n]))
                            {
                                c.capture = None; // too large: streams through uncached
                                c.fill = None;
                            }
                        }
                        if !tx.dechunk {
                            self.out_c.extend_from_slice(&o.inbuf[..n]);
                        }
                        o.inbuf.drain(..n);
                        progress |= n > 0 || body.done();
                    }
                    Err(_) => {
                        // Broken framing mid-body: the client cannot trust the rest.
                        tx.client_keep_alive = false;
                        tx.origin_keep_alive = false;
                        o.side.eof = true;
                        o.inbuf.clear();
                        tx.resp_body = Some(Body::Done);
                        self.abort_after_flush();
                        return true;
                    }
                }
            }
            if o.side.eof && !body.done() {
                if matches!(body, Body::UntilClose) {
                    *body = Body::Done;
                } else {
                    // Truncated by the origin: pass on what we have, then close.
                    self.abort_after_flush();
                    return true;
                }
            }
            if body.done() && tx.req_body.done() && self.out_c.is_empty() {
                self.finish_tx(t);
                return true;
            }
            if body.done() && !tx.req_body.done() {
                // The origin answered before reading the whole body: stop here.
                tx.client_keep_alive = false;
                tx.origin_keep_alive = false;
                tx.req_body = Body::Done;
                return true;
            }
        }
        progress
    }

    fn finish_tx(&mut self, t: &mut EThread) {
        let Some(mut tx) = self.tx.take() else { return };
        if let Some(c) = tx.cache.as_mut() {
            if let (Some(cap), Some(cache)) = (c.capture.take(), self.shared.cache()) {
                let now = caching::now_s();
                let mut obj = Stored::new(&cap.head, cap.body, cap.lifetime, now, cap.variant);
                let kept = match (&c.variants, obj.variant.is_empty()) {
                    (_, true) => &[][..],
                    (Some(v), false) => {
                        obj.generation = v.generation;
                        &v.kept[..]
                    }
                    (None, false) => {
                        obj.generation = caching::new_generation();
                        &[][..]
                    }
                };
                // A change to the URL accepted while this was under way may postdate it:
                // not stored then, but the URL stays storable (the next miss fills it).
                if let Some(fill) = c.fill.as_mut() {
                    fill.stored();
                }
                if !self.shared.invalidated_since(&c.key, c.began) {
                    store(cache, &c.key, &mut obj, kept, self.shared.settings.max_alts);
                    self.shared.metrics.cache_writes.inc();
                    self.shared.note_cache_usage();
                }
            }
        }
        drop(tx.active);
        self.shared.metrics.completed_requests.inc();
        if let Some(l) = self.log_req.as_deref() {
            let (status, result) = (l.status, l.result);
            self.log_end(status, result);
        }
        let now = Instant::now();
        let keep_attached = tx.origin_keep_alive
            && tx.client_keep_alive
            && POOL_SHORT_UNTIL.with(|p| p.get().is_none_or(|until| now >= until))
            && !self.shared.draining();
        if keep_attached
            && self
                .origin
                .as_ref()
                .is_some_and(|o| o.inbuf.is_empty() && !o.side.eof)
        {
            // Stay attached: the client's next request most likely goes to the same
            // origin, and then costs no pool round trip (two handler swaps, two lookups).
            // Not while this thread's pool runs dry: then an idle client would pin a
            // connection that another request opens a new one for instead.
            if let Some(o) = self.origin.as_mut() {
                o.reused = true;
                o.inbuf = Vec::new();
            }
        } else {
            self.release_origin(t, tx.origin_keep_alive);
        }
        self.idle_since = now;
        self.out_o = Vec::new();
        // The request body, if any, went to the origin whole.
        self.after_answer(tx.client_keep_alive && !self.shared.draining(), true, now);
    }

    /// Ends the transaction with a local error response and closes afterwards.
    fn fail_tx(&mut self, status: u16, msg: &str) {
        let head_sent = self.tx.as_ref().is_some_and(|tx| tx.resp_body.is_some());
        if let Some(o) = self.origin.as_mut() {
            o.side.eof = true;
        }
        self.out_o.clear();
        self.tx = None;
        if head_sent {
            self.phase = Phase::Closing;
            self.deadline = Instant::now() + LINGER;
        } else {
            self.local_response(status, msg, false, &[]);
        }
    }

    /// The response cannot complete properly: send what we have, then close.
    fn abort_after_flush(&mut self) {
        self.tx = None;
        self.phase = Phase::Closing;
        self.deadline = Instant::now() + LINGER;
    }

    fn tunnel(&mut self, _t: &mut EThread) -> bool {
        let mut progress = match self.finish_connect() {
            Ok(p) => p,
            Err(()) if self.connect_reply => {
                self.connect_reply = false;
                self.fail_tx(502, "cannot connect to origin");
                return true;
            }
            Err(()) => {
                self.dead = true;
                return true;
            }
        };
        let Some(o) = self.origin.as_mut() else {
            self.dead = true;
            return true;
        };
        if !o.connected {
            return progress;
        }
        if self.connect_reply {
            self.connect_reply = false;
            self.out_c
                .extend_from_slice(b"HTTP/1.1 200 Connection Established\r\n\r\n");
            let m = &self.shared.metrics;
            m.connect_tunnels.inc();
            m.count_status(200);
            m.completed_requests.inc();
            // Logged when the tunnel ends, with what went through it.
            if let Some(l) = self.log_req.as_mut() {
                (l.status, l.result, l.origin) = (200, "TCP_TUNNEL", Some(o.addr));
            }
            progress = true;
        }
        // Client → origin.
        if self.out_o.len() < BUF_LIMIT && self.client.readable && !self.client.eof {
            let (conn, room) = (&self.conn, BUF_LIMIT - self.out_o.len());
            match read_into(|b| conn.recv(b), &mut self.out_o, room, &mut self.client) {
                Ok(Some(0)) | Err(_) => self.client.eof = true,
                Ok(Some(_)) | Ok(None) => {}
            }
            progress = true;
        }
        // Origin → client.
        if self.out_c.len() < BUF_LIMIT && o.side.readable && !o.side.eof {
            let (sock, room) = (&o.sock, BUF_LIMIT - self.out_c.len());
            match read_into(|b| sock.recv(b), &mut self.out_c, room, &mut o.side) {
                Ok(Some(0)) | Err(_) => o.side.eof = true,
                Ok(Some(_)) | Ok(None) => {}
            }
            progress = true;
        }
        if progress {
            self.deadline = Instant::now() + self.shared.settings.timeouts.default_inactivity;
        }
        // Half-close: pass each FIN on once the bytes before it are through.
        let mut o_done = false;
        if self.client.eof && self.out_o.is_empty() {
            if o.reused {
                // `reused` marks "FIN sent" for tunnels.
            } else {
                let _ = o.sock.shutdown_write();
                o.reused = true;
            }
            o_done = true;
        }
        if o.side.eof && self.out_c.is_empty() && !self.shut_client {
            let _ = self.conn.shutdown_write();
            self.shut_client = true;
        }
        if o_done && self.shut_client {
            self.dead = true;
            return true;
        }
        progress
    }

    fn closing(&mut self) -> bool {
        if !self.out_c.is_empty() {
            return false; // flush_client runs first and will bring us back
        }
        if self.quick_close {
            self.dead = true;
            return true;
        }
        if !self.shut_client {
            let _ = self.conn.shutdown_write();
            self.shut_client = true;
            return true;
        }
        // Drain so a late request byte does not turn our close into a reset.
        if self.client.eof {
            self.dead = true;
            return true;
        }
        let mut sink = [0u8; 4096];
        match self.conn.recv(&mut sink) {
            Ok(0) => {
                self.client.eof = true;
                true
            }
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.client.readable = false;
                false
            }
            Err(_) => {
                self.dead = true;
                true
            }
        }
    }

    fn on_timeout(&mut self, _t: &mut EThread, idle_drain: bool) {
        match self.phase {
            Phase::ReadRequest if self.inbuf.is_empty() || idle_drain => self.dead = true,
            Phase::ReadRequest => self.local_response(408, "request timeout", false, &[]),
            Phase::Exchange => {
                let connected = self.origin.as_ref().is_some_and(|o| o.connected);
                let answered = self.tx.as_ref().is_some_and(|tx| tx.resp_body.is_some());
                if !connected {
                    self.fail_tx(502, "origin connect timeout");
                } else if !answered {
                    self.fail_tx(504, "origin timeout");
                } else {
                    self.dead = true;
                }
            }
            Phase::OriginWait => {
                let m = &self.shared.metrics;
                m.origin_queue_timeouts.inc();
                if let Some(turn) = self.tx.as_ref().and_then(|tx| tx.queued.as_deref()) {
                    m.origin_queue_wait_us
                        .record(turn.2.elapsed().as_micros() as u64);
                }
                self.fail_tx(503, "origin busy: per_server.connection.max reached");
            }
            Phase::Resolve => {
                self.resolving = None;
                self.local_response(502, "cannot resolve origin in time", false, &[]);
            }
            Phase::Tunnel if self.connect_reply => {
                self.connect_reply = false;
                self.fail_tx(502, "origin connect timeout");
            }
            Phase::Tunnel | Phase::Closing | Phase::CacheWait | Phase::CacheRead => {
                self.dead = true
            }
        }
    }
}

/// Stores `obj` at `key`, and a variant (`Vary`) also at its alternate key, where
/// requests with its values find it once another variant has taken `key`. A variant
/// joins its URL's variants so far; those beyond `max_alts` (0: no limit), the oldest,
/// are dropped. The list is the one `key` holds now when it is in RAM: stores of one URL
/// are serialized by its fill, but a request read the list at its lookup, which may
/// precede the previous fill's store (the variant stored then would be missing from
/// the list, and never dropped). `seen` is that earlier list, for when `key` is not in
/// RAM.
fn store(
    cache: &crate::cache::Cache,
    key: &str,
    obj: &mut Stored,
    seen: &[Vec<u8>],
    max_alts: usize,
) {
    let varies = !obj.variant.is_empty() && max_alts > 0;
    let now = match varies.then(|| cache.lookup(key)) {
        Some(Lookup::Done(Some(bytes))) => Stored::decode_variants(&bytes)
            .filter(|(generation, _)| *generation == obj.generation)
            .map(|(_, list)| list),
        _ => None,
    };
    for old in obj.join(now.as_deref().unwrap_or(seen), max_alts) {
        cache.remove(&caching::alternate_key(key, obj.generation, &old));
    }
    let bytes = obj.encode();
    if let Some(alternate) = obj.alternate_at(key) {
        cache.put(&alternate, &bytes);
    }
    cache.put(key, &bytes);
}
