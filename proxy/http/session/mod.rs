//! Client sessions: HTTP/1.1 transactions and blind tunnels, as one state machine per
//! client connection on the ET_NET thread that accepted (or was handed) it.
//!
//! Every function in this module and its files runs on that ET_NET thread: each takes
//! `&mut EThread` or is called from one that does. Work that runs elsewhere (a cache
//! disk read, a name lookup) is handed back to this thread with [`iocore::ThreadRef`]
//! and finds its session again by ticket (`batch.rs`). A session is shared by the I/O
//! registrations it owns (client and origin) as `Rc<RefCell<Session>>`; a per-thread
//! sweep event enforces timeouts. Sockets are edge-triggered, so each side remembers
//! whether it is readable/writable and [`Session::drive`] moves bytes until nothing can
//! progress. Buffers are bounded (`BUF_LIMIT` a direction) and released when a
//! connection goes idle, to the thread's few spares (`state.rs`) that the next buffer
//! to fill from nothing takes.
//!
//! The phases, one file each for what happens in them:
//!
//! ```text
//!            ┌─────────────────── next request on a kept connection ◄─────────────┐
//!            ▼                                                                      │
//! start ─► ReadRequest ─► route ─┬─► Resolve ─ answer ─► route          (dns.rs)    │
//! (mod.rs)  (request.rs)         ├─► stats, local answers ──────────────────────────┤
//!            │                   ├─► lookup ─┬─ fresh hit ──────────────────────────┤
//!            │                   │ (cache.rs)├─► CacheRead ─ value ─► decide        │
//!            │                   │           ├─► CacheWait ─ fill ends ─► lookup    │
//!            │                   │           └─ miss / stale ─┐                     │
//!            │                   └─► forward ─┬─► OriginWait ─┤ (queue.rs)          │
//!            │                   (exchange.rs)└───────────────┴─► Exchange ─────────┤
//!            │                                                    (origin.rs: the   │
//!            │                                                     connection)      │
//!            ├─► Tunnel: CONNECT, and blind ports from the start (tunnel.rs)        │
//!            └────────────────────────────────────► Closing (close.rs) ◄────────────┘
//! ```
//!
//! `io.rs` moves the bytes of both sides, `log.rs` writes the access log line of each
//! request, `batch.rs` holds the thread's state and sends the requests of one batch of
//! events to their origins together.

mod batch;
mod cache;
mod close;
mod dns;
mod exchange;
mod hit;
mod io;
mod log;
mod origin;
mod parent;
mod pool;
mod proxy_protocol;
mod queue;
mod request;
mod state;
mod store;
mod tunnel;

use self::batch::drive_batched;
use self::cache::Waiting;
use self::dns::Resolving;
use self::exchange::Tx;
use self::io::Transport;
use self::log::LogReq;
use self::origin::Origin;
use self::state::with_state;
use self::tunnel::Pipe;
use super::codec::RequestHead;
use super::parent::ParentRoute;
use super::shared::HttpShared;
use iocore::stats::Gauge;
use iocore::{EThread, NetConnection};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes buffered per direction before the reading side is paused.
const BUF_LIMIT: usize = 64 * 1024;
/// Read size.
const READ_CHUNK: usize = 16 * 1024;
/// How long a closing connection is drained so the peer receives our last bytes.
const LINGER: Duration = Duration::from_secs(2);
/// While draining (stop, upgrade), how long a connection accepted just before, or just
/// answered with a promise of keep-alive, may take to send its next request before it
/// is closed as idle.
const DRAIN_FIRST_REQUEST: Duration = Duration::from_secs(1);
/// Turns of [`Session::drive`] in one go. A session that still makes progress after
/// them (a large body streaming both ways at full speed) yields to the thread's other
/// events and is driven again on the next loop turn; each yield is counted.
const DRIVE_TURNS: usize = 10_000;

/// One unit of a gauge for as long as it lives.
///
/// A transaction holds one of `current_active_transactions` from the moment its request
/// first waits (for the cache or a place at its origin) or goes to its origin until the
/// exchange ends, whichever way. A stop drains until that gauge reaches zero, so a
/// request parked on a cache read or fill is waited for like one at its origin; the
/// guard moves from the parked request into its `Tx`, so the count never dips in between.
pub(super) struct Counted(Arc<Gauge>);

impl Counted {
    pub(super) fn new(gauge: &Arc<Gauge>) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A background fill under way: its unit of `current_background_fills`, and the origin
/// bytes it has read since its client left (held until stored, leased from the fills'
/// read-ahead budget: `exchange.rs`, `origin_room`).
pub(super) struct Alone {
    _counted: Counted,
    read: usize,
}

/// A request resolved to its origin, not yet sent.
pub(super) struct Pending {
    pub(super) head: RequestHead,
    pub(super) addr: SocketAddr,
    /// The origin speaks TLS, with this name (an `https://` remap target).
    pub(super) tls: Option<rustls::pki_types::ServerName<'static>>,
    /// The Host header for the origin: the remap rule's (shared with the rule), or the
    /// request's authority when it is proxied forward.
    pub(super) host_header: Arc<str>,
    pub(super) path: String,
    /// `per_server.connection.max` when the request came.
    pub(super) origin_max: usize,
    /// Set once the request waits: it is in flight from then on.
    pub(super) active: Option<Counted>,
    /// Its way through the parents of its `[[parent]]` rule, when it has one and is on
    /// a parent (`addr` is then the parent's). Boxed: rare, and moved along.
    pub(super) parent: Option<Box<ParentRoute>>,
}

impl Pending {
    /// Counts the request in flight (once) before it is parked.
    pub(super) fn hold(&mut self, gauge: &Arc<Gauge>) {
        self.active.get_or_insert_with(|| Counted::new(gauge));
    }
}

/// What a port does with a connection.
#[derive(Clone, Debug)]
pub enum PortRole {
    /// HTTP proxying and the stats endpoint.
    Http,
    /// As `Http`, each connection starting with a PROXY protocol header (`pp`).
    HttpProxyProtocol,
    /// Byte relay to a fixed address.
    Blind(SocketAddr),
}

/// Where a session is, with what only that phase needs.
enum Phase {
    /// Waiting for (the rest of) a request head.
    ReadRequest,
    /// A transaction with an origin (`Session::tx`).
    Exchange,
    /// Waiting for a place under `per_server.connection.max` to its origin.
    OriginWait,
    /// Waiting for a resolver thread to look its origin's name up.
    Resolve(Box<Resolving>),
    /// Waiting for the cache's disk read of what this one asked for.
    CacheRead(Box<Waiting>),
    /// Waiting for another connection to fill the cache with what this one asked for.
    CacheWait(Box<Waiting>),
    /// A byte relay: a CONNECT tunnel or a blind port.
    Tunnel(Pipe),
    /// Flushing our last bytes, then (unless `quick`) half-closing and draining the
    /// client until EOF or the linger limit; `shut` once our FIN is sent. `reset`: the
    /// close is abortive (a body cut short), so the last bytes are not held back for a
    /// FIN that never comes (no MSG_MORE: the reset would drop them unsent).
    Closing {
        quick: bool,
        shut: bool,
        reset: bool,
    },
}

impl Phase {
    /// Closing, not yet half-closed.
    fn closing(quick: bool) -> Phase {
        Phase::Closing {
            quick,
            shut: false,
            reset: false,
        }
    }

    /// Closing with a reset once the last bytes are out.
    fn resetting() -> Phase {
        Phase::Closing {
            quick: true,
            shut: false,
            reset: true,
        }
    }
}

/// One client connection.
pub(crate) struct Session {
    me: Weak<RefCell<Session>>,
    shared: Arc<HttpShared>,
    /// The client connection and its readiness.
    client: Transport<NetConnection>,
    /// The origin connection, while one is attached.
    origin: Option<Origin>,
    /// Client bytes not yet consumed (head being read, body, pipelined requests).
    inbuf: Vec<u8>,
    /// Bytes for the client, not yet written.
    out_c: Vec<u8>,
    /// A stored body streaming to the client behind `out_c` (`hit.rs`).
    out_body: Option<hit::BodySlice>,
    /// Bytes of the fills' read-ahead budget this session holds: what `out_c` may hold
    /// beyond `BUF_LIMIT` while a response is captured for the cache (`exchange.rs`).
    read_ahead: usize,
    /// Bytes for the origin, not yet written.
    out_o: Vec<u8>,
    phase: Phase,
    /// The transaction with an origin, from `forward` until it ends.
    tx: Option<Tx>,
    deadline: Instant,
    dead: bool,
    /// When the last transaction ended.
    idle_since: Instant,
    /// How much of `inbuf` the head parser has already searched for the end of head.
    head_searched: usize,
    /// A response byte has been written (accept_to_first_byte_us is recorded once).
    first_byte_sent: bool,
    /// Bytes written to the client so far.
    sent_c: u64,
    /// The status of an answer queued from this offset of the client's stream: its
    /// class is counted once the answer's first byte is written (`io.rs`,
    /// `owe_status`).
    status_owed: Option<(u64, u16)>,
    /// The request in progress is a HEAD: a local answer to it frames its body without
    /// sending it (RFC 9110 §9.3.2).
    head_only: bool,
    /// The request in progress, for the access log (only with one).
    log_req: Option<Box<LogReq>>,
    /// Access log lines of answers queued whole, written as the client takes them.
    logs_owed: std::collections::VecDeque<log::OwedLog>,
    /// Where the session is in its thread's batch of events (`batch.rs`).
    batch: batch::Batch,
    /// A `pp` port's PROXY header is still to be read (`proxy_protocol.rs`).
    pp_pending: bool,
    /// The client's address as the PROXY header gave it, when it gave one.
    pp_client: Option<SocketAddr>,
    /// The client left while its response was being stored, which goes on without it
    /// (a background fill, `close.rs`).
    alone: Option<Alone>,
}

/// Starts a session for `conn` (`ssl`: TLS is terminated first). Runs on the ET_NET
/// thread that owns `conn`.
pub(crate) fn start(
    conn: NetConnection,
    shared: Arc<HttpShared>,
    role: &PortRole,
    ssl: bool,
    t: &mut EThread,
) {
    let m = &shared.metrics;
    m.current_client_connections.inc();
    m.total_client_connections.inc();
    let tls = if ssl {
        match tls_for(&conn, &shared) {
            Some(tls) => Some(tls),
            None => {
                m.current_client_connections.dec();
                return; // closed: counted as a failed handshake
            }
        }
    } else {
        None
    };
    let now = Instant::now();
    let deadline = now + shared.settings.timeouts.accept_no_activity;
    let session = Rc::new_cyclic(|me| {
        RefCell::new(Session {
            me: me.clone(),
            client: Transport::with_tls(conn, tls),
            origin: None,
            inbuf: Vec::new(),
            out_c: Vec::new(),
            out_body: None,
            read_ahead: 0,
            out_o: Vec::new(),
            phase: Phase::ReadRequest,
            tx: None,
            deadline,
            dead: false,
            idle_since: now,
            head_searched: 0,
            first_byte_sent: false,
            sent_c: 0,
            status_owed: None,
            head_only: false,
            log_req: None,
            logs_owed: std::collections::VecDeque::new(),
            batch: batch::Batch::default(),
            pp_pending: matches!(role, PortRole::HttpProxyProtocol),
            pp_client: None,
            alone: None,
            shared,
        })
    });
    // The client socket joins the epoll only once the session waits on it (`settle`): a
    // request that is already there is read at once, and a connection answered and
    // closed without ever waiting on its client costs no epoll_ctl.
    with_state(|st| st.sessions.push(Rc::downgrade(&session)));
    if let PortRole::Blind(target) = role {
        session.borrow_mut().open_blind(t, *target, now);
    }
    drive_batched(t, &session);
}

/// The TLS server side of a connection to an `ssl` port, with the certificates in
/// force now (a reload later does not change them for this connection).
#[cold]
fn tls_for(conn: &NetConnection, shared: &HttpShared) -> Option<Box<crate::tls::TlsLayer>> {
    let metrics = &shared.metrics.tls;
    let server = shared.with_live(|live| live.tls_server.clone());
    let Some(server) = server else {
        metrics.handshake_refused(crate::tls::Failure::NoCertificate);
        return None;
    };
    let local = local_ip(conn, &server);
    match server.accept(local) {
        Ok(c) => {
            metrics.current_in.inc();
            Some(Box::new(crate::tls::TlsLayer::new(
                rustls::Connection::Server(c),
                metrics.clone(),
            )))
        }
        Err(e) => {
            ::log::debug!("TLS from {}: {e}", conn.peer_addr());
            metrics.handshake_refused(crate::tls::Failure::Other);
            None
        }
    }
}

/// The local address `conn` was accepted on: asked of the socket only when a
/// certificate is kept for a particular address and the port listens on all of them.
fn local_ip(conn: &NetConnection, server: &crate::tls::TlsServer) -> std::net::IpAddr {
    use std::os::fd::AsRawFd;
    let bound = conn.local_addr().ip();
    if !bound.is_unspecified() || server.store().addrs().next().is_none() {
        return bound;
    }
    nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(conn.as_raw_fd())
        .ok()
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| std::net::IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
        })
        .unwrap_or(bound)
}

/// Enforces timeouts on this thread's sessions and drops what its origin pool should
/// no longer hold. Runs on each ET_NET thread periodically.
pub(crate) fn sweep(t: &mut EThread) {
    let now = Instant::now();
    let sessions: Vec<Rc<RefCell<Session>>> = with_state(|st| {
        st.sessions.retain(|w| w.strong_count() > 0);
        st.sessions.iter().filter_map(Weak::upgrade).collect()
    });
    for rc in sessions {
        let mut s = rc.borrow_mut();
        if s.dead {
            continue;
        }
        // Draining: a connection idle for `DRAIN_FIRST_REQUEST` closes now. One that
        // was just accepted, or just answered with a promise of keep-alive, gets that
        // long for its next request, which is answered with a close: a client that
        // sends it as the drain begins is answered, not reset.
        let mut idle_drain =
            s.shared.draining() && s.is_idle() && s.idle_since.elapsed() >= DRAIN_FIRST_REQUEST;
        if idle_drain {
            // A request may wait unread in the kernel (no readiness edge reached us
            // yet): read before closing, so that it is answered rather than reset.
            s.client.readable = true;
            s.drive(t);
            idle_drain = s.is_idle() && !s.dead;
        }
        if s.is_idle() && s.origin.is_some() && s.idle_since.elapsed() >= origin::ATTACHED_IDLE {
            // An idle client should not pin an origin connection: back to the pool.
            s.release_origin(t, true);
        }
        if s.awaits_origin_unwatched() {
            s.watch_client(t);
        }
        if now >= s.deadline || idle_drain {
            s.on_timeout(t, idle_drain);
            s.drive(t);
        }
        s.settle(t);
    }
    with_state(|st| st.pool.sweep(t, now));
}

impl Session {
    /// Moves bytes until nothing more can happen without new readiness.
    fn drive(&mut self, t: &mut EThread) {
        for _ in 0..DRIVE_TURNS {
            if self.dead {
                return;
            }
            let mut progress = self.flush_client();
            progress |= self.flush_origin();
            progress |= match self.phase {
                Phase::ReadRequest => self.read_request(t),
                Phase::Exchange => self.exchange(t),
                Phase::Tunnel(_) => self.tunnel(),
                Phase::Closing { .. } => self.closing(),
                Phase::OriginWait | Phase::Resolve(_) => self.client_left(),
                // A FIN may be a half-close behind the request; a reset is the client
                // gone, and its wait with it.
                Phase::CacheWait(_) => {
                    self.dead |= self.client.reset;
                    self.dead
                }
                Phase::CacheRead(_) => false,
            };
            if !progress {
                return;
            }
        }
        // Every turn made progress: let the thread's other sessions run, then go on.
        ::log::debug!(
            "session from {} yields after {DRIVE_TURNS} turns",
            self.client.wire().peer_addr()
        );
        self.shared.metrics.drive_yields.inc();
        batch::drive_later(t, &self.me);
    }

    /// After the session ran: watches the client socket if the session now waits on it
    /// and it is not watched yet; releases both registrations of a dead session (which
    /// drops it).
    fn settle(&mut self, t: &mut EThread) {
        if self.dead && self.alone.is_none() {
            self.fill_alone(t);
        }
        if !self.dead && !self.client.watched() && self.waits_on_client() {
            self.watch_client(t);
        }
        if !self.dead {
            return;
        }
        // An origin connection attached between transactions is healthy and idle: it goes
        // back to the pool when its client leaves. One mid-transaction is not reusable.
        let idle_origin = self.origin_idle();
        self.release_origin(t, idle_origin);
        self.client.unwatch(t);
    }

    /// Counts a sweep that finds the exchange waiting for its origin (the response head,
    /// or more of a body the client has taken all of so far) with the client's socket
    /// unwatched; true once that has lasted about a second. A client that resets
    /// meanwhile is then seen to, rather than at the next write, which a stalled origin
    /// may hold off for as long as its timeout (and a fill being stored with it:
    /// `fill_alone`).
    fn awaits_origin_unwatched(&mut self) -> bool {
        if self.client.watched() || !matches!(self.phase, Phase::Exchange) || self.alone.is_some() {
            return false;
        }
        let Some(tx) = self.tx.as_mut() else {
            return false;
        };
        tx.waited = tx.waited.saturating_add(1);
        tx.waited >= exchange::WATCH_CLIENT_AFTER
    }

    /// Whether the origin connection is attached between transactions: connected, with
    /// no request on it and no tunnel through it.
    pub(super) fn origin_idle(&self) -> bool {
        self.tx.is_none()
            && !matches!(self.phase, Phase::Tunnel(_))
            && self.origin.as_ref().is_some_and(|o| o.connected)
    }

    /// Between requests, with nothing buffered either way.
    fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::ReadRequest)
            && self.inbuf.is_empty()
            && self.client_pending() == 0
    }
}
