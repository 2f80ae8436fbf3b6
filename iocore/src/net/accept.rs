//! The accept step every mode shares: accept4, classify the error, throttle, count,
//! apply sock options, and hand the connection to the ET_NET thread that starts it.
//!
//! Sock options are set once, on the listening socket: Linux clones a listener's socket
//! and TCP options into every socket it accepts. The first socket a port accepts is
//! checked; if anything did not carry over, every later one gets the options set itself.
//!
//! `PortAccept::accept_batch` runs on whichever thread the mode accepts on (an accept
//! thread, or an ET_NET thread); `PortAccept::start` always runs on the ET_NET thread
//! that owns the connection.

use super::connection::NetConnection;
use super::options::{Dispatch, SockOptions};
use super::shared::NetShared;
use crate::eventsystem::{Action, ActionGuard, EThread};
use crate::stats::{Counter, Gauge};
use crate::sys::socket;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a port does with an accepted connection: the continuation of `main_accept`.
pub trait Acceptor: Send + Sync + 'static {
    /// Starts `conn`. Runs on the ET_NET thread that now owns it, which may register the
    /// socket with its epoll (`thread.register`). Dropping `conn` closes it.
    fn accept(&self, conn: NetConnection, thread: &mut EThread);
}

impl<F: Fn(NetConnection, &mut EThread) + Send + Sync + 'static> Acceptor for F {
    fn accept(&self, conn: NetConnection, thread: &mut EThread) {
        self(conn, thread)
    }
}

/// What one accept4 call gave.
enum Outcome {
    Accepted(OwnedFd, SocketAddr),
    Empty,
    Retry,
    Resource(io::Error),
    Fatal(io::Error),
}

fn accept_one(listen_fd: RawFd) -> Outcome {
    let e = match socket::accept(listen_fd) {
        Ok((fd, Some(peer))) => return Outcome::Accepted(fd, peer),
        Ok((_, None)) => return Outcome::Retry, // not an IP peer: drop it
        Err(e) => e,
    };
    match e.raw_os_error().unwrap_or(0) {
        libc::EAGAIN => Outcome::Empty,
        // The connection died in the queue, a signal, or a network-level hiccup that
        // concerns one connection, not the port (the ENETDOWN class, as libevent does).
        libc::ECONNABORTED
        | libc::EINTR
        | libc::EPROTO
        | libc::ENETDOWN
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::ENONET
        | libc::EHOSTUNREACH
        | libc::EOPNOTSUPP
        | libc::ENETUNREACH
        | libc::EPERM
        | libc::ETIMEDOUT => Outcome::Retry,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => Outcome::Resource(e),
        _ => Outcome::Fatal(e),
    }
}

/// How soon a port paused at the `connections_throttle` cap looks again.
const CAP_RECHECK: Duration = Duration::from_millis(10);

/// How a batch of accepts ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// The queue is empty: wait for readiness. Holds how many sockets the batch accepted.
    Drained(usize),
    /// The batch limit was hit with more maybe waiting: let other work run, come back.
    Yielded,
    /// Stop accepting on this port for this long (resource error or throttle).
    Pause(Duration),
    /// The acceptor was cancelled (by us on a fatal error, or by its owner).
    Stop,
}

/// Counts an open acceptor in the global and per-port gauges while it lives.
pub(crate) struct OpenAcceptor {
    global: Arc<Gauge>,
    port: Arc<Gauge>,
    _running: ActionGuard,
}

impl Drop for OpenAcceptor {
    fn drop(&mut self) {
        self.global.dec();
        self.port.dec();
    }
}

/// One `main_accept` call: the acceptor, its options and its counters.
pub(crate) struct PortAccept {
    pub(crate) label: String,
    pub(crate) action: Action,
    pub(crate) net: Arc<NetShared>,
    acceptor: Arc<dyn Acceptor>,
    sock: SockOptions,
    /// Whether accepted sockets inherit `sock` from the listener: UNCHECKED until the
    /// first accept, then INHERITED or APPLY_EACH.
    sock_inherit: AtomicU8,
    dispatch: Dispatch,
    local: SocketAddr,
    total_accepts: Arc<Counter>,
    open_acceptors: Arc<Gauge>,
    last_warning: Mutex<Option<Instant>>,
    /// A drain of a socket about to close (`AcceptMode::Drain`): it accepts past a
    /// pause at the `connections_throttle` cap, since what it leaves in the queue would
    /// be reset at the close.
    drains: bool,
}

const WARN_EVERY: Duration = Duration::from_secs(60);

const UNCHECKED: u8 = 0;
const INHERITED: u8 = 1;
const APPLY_EACH: u8 = 2;

impl PortAccept {
    pub(crate) fn new(
        net: Arc<NetShared>,
        acceptor: Arc<dyn Acceptor>,
        label: String,
        local: SocketAddr,
        sock: SockOptions,
        dispatch: Dispatch,
        drains: bool,
    ) -> PortAccept {
        let prefix = format!("proxy.process.net.port.{label}");
        PortAccept {
            total_accepts: net.registry.counter(&format!("{prefix}.total_accepts")),
            open_acceptors: net
                .registry
                .gauge(&format!("{prefix}.accepts_currently_open")),
            label,
            action: Action::new(),
            net,
            acceptor,
            sock,
            sock_inherit: AtomicU8::new(UNCHECKED),
            dispatch,
            local,
            last_warning: Mutex::new(None),
            drains,
        }
    }

    /// Registers one more running accept loop (thread, registration or periodic event).
    pub(crate) fn open_acceptor(&self) -> OpenAcceptor {
        self.net.stats.accepts_open.inc();
        self.open_acceptors.inc();
        OpenAcceptor {
            global: self.net.stats.accepts_open.clone(),
            port: self.open_acceptors.clone(),
            _running: self.action.enter(),
        }
    }

    /// Accepts from `listen_fd` until its queue is empty or the batch limit is reached.
    /// `here` is the ET_NET thread running the batch, if it runs on one: connections
    /// accepted there start there, with no hand-off.
    ///
    /// "Empty" is read from the queue's length (TCP_INFO) rather than learnt from an
    /// accept4 that fails with EAGAIN: that one allocates and frees a whole socket (3.9
    /// µs here, against 0.49 for the length), once per wake-up. The length is read when
    /// the batch begins and again when what it counted was taken. Where it cannot be
    /// read, the batch accepts until EAGAIN.
    pub(crate) fn accept_batch(
        self: &Arc<Self>,
        listen_fd: RawFd,
        mut here: Option<&mut EThread>,
    ) -> Batch {
        let queued = || socket::accept_queue_len(listen_fd).map_or(usize::MAX, |n| n as usize);
        // Counted down per accept; read when it reaches 0, the first time included.
        let mut left = 0;
        let limit = self.net.batch_limit();
        let mut taken = 0;
        while taken < limit {
            if left == 0 {
                left = queued();
                if left == 0 {
                    return Batch::Drained(taken);
                }
            }
            if self.action.cancelled() {
                return Batch::Stop;
            }
            if !self.drains && self.net.table.should_pause() {
                // At the cap: looked at again soon, to resume as soon as the count falls
                // below 90 % of it (`throttle_delay` is for resource errors).
                return Batch::Pause(CAP_RECHECK);
            }
            match accept_one(listen_fd) {
                Outcome::Accepted(fd, peer) => {
                    taken += 1;
                    left = left.saturating_sub(1);
                    self.take(fd, peer, here.as_deref_mut());
                }
                Outcome::Empty => return Batch::Drained(taken),
                Outcome::Retry => left = left.saturating_sub(1),
                Outcome::Resource(e) => {
                    self.net.stats.accept_errors.inc();
                    self.net.stats.accept_pauses.inc();
                    let delay = self.net.throttle_delay();
                    self.warn(format_args!(
                        "accept: {e}; pausing for {} ms",
                        delay.as_millis()
                    ));
                    return Batch::Pause(delay);
                }
                Outcome::Fatal(e) => {
                    self.net.stats.accept_errors.inc();
                    log::warn!("port {}: accept: {e}; this acceptor stops", self.label);
                    self.action.cancel();
                    return Batch::Stop;
                }
            }
        }
        Batch::Yielded
    }

    /// Accepts what waits in `listen_fd`'s queue now, whether or not the acceptor was
    /// cancelled: the last act of an event-mode registration being removed. With
    /// EPOLLEXCLUSIVE the kernel wakes one registration per connection; one that goes
    /// away without accepting would leave that connection waiting for the next wake-up
    /// of another (a reload swap's new acceptors, or the next process of an upgrade).
    pub(crate) fn drain_queue(self: &Arc<Self>, listen_fd: RawFd, mut here: Option<&mut EThread>) {
        // At most a full backlog: a socket still receiving connections is not drained
        // forever.
        for _ in 0..65_536 {
            // At the cap in pause mode they wait in the queue, as for any acceptor, for
            // the one that follows (a reload's, or this port's again on `enable`),
            // rather than push the count past the cap. (A drain of a socket about to
            // close takes them past it: `drains`.)
            if self.net.table.should_pause() {
                return;
            }
            match accept_one(listen_fd) {
                Outcome::Accepted(fd, peer) => self.take(fd, peer, here.as_deref_mut()),
                Outcome::Retry => continue,
                Outcome::Empty | Outcome::Resource(_) | Outcome::Fatal(_) => return,
            }
        }
    }

    /// Phase one, on the accepting thread: count, reserve a slot, configure, hand off.
    fn take(self: &Arc<Self>, fd: OwnedFd, peer: SocketAddr, here: Option<&mut EThread>) {
        let accepted_at = Instant::now();
        self.net.stats.total_accepts.inc();
        self.total_accepts.inc();
        let Some(slot) = self.net.table.open() else {
            // At the cap in close mode: close at once.
            self.net.stats.throttled.inc();
            return;
        };
        match self.sock_inherit.load(Ordering::Relaxed) {
            INHERITED => {}
            APPLY_EACH => self.sock.apply(fd.as_raw_fd()),
            _ => {
                // Several accept threads may race here; each checks its own socket and
                // any verdict is right for the socket it checked.
                let verdict = if self.sock.present_on(fd.as_raw_fd()) {
                    INHERITED
                } else {
                    self.sock.apply(fd.as_raw_fd());
                    APPLY_EACH
                };
                self.sock_inherit.store(verdict, Ordering::Relaxed);
            }
        }
        let mut conn = NetConnection::new(fd, slot, peer, self.local, accepted_at);
        match here {
            Some(t) => self.start(conn, t),
            None => {
                let target = match self.dispatch {
                    Dispatch::RoundRobin => self.net.events.assign(),
                    Dispatch::BusyFirst => self.net.events.assign_busy(),
                };
                conn.held_by(target.hold());
                let port = self.clone();
                target.run(move |t| port.start(conn, t));
            }
        }
    }

    /// Phase two, on the ET_NET thread that owns `conn`.
    fn start(&self, conn: NetConnection, t: &mut EThread) {
        let waited = conn.accepted_at().elapsed();
        self.net
            .stats
            .queue_delay_us
            .record(waited.as_micros() as u64);
        self.acceptor.accept(conn, t);
    }

    fn warn(&self, msg: std::fmt::Arguments<'_>) {
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            log::warn!("port {}: {msg}", self.label);
        }
    }
}
