//! `NetProcessor`: the accept subsystem's front door. `main_accept` starts a port's
//! accepting in the mode its options name and returns the [`Action`] that stops it.

use super::accept::{Acceptor, PortAccept, Table};
use super::connection::{MODE_CLOSE, MODE_PAUSE};
use super::listener::{ListenError, Listener};
use super::{accept_event, accept_periodic, accept_threads};
use crate::eventsystem::{Action, EventProcessor, ProxyMutex};
use crate::stats::{Counter, Gauge, Histogram, Registry};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a port accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptMode {
    /// `count` dedicated accept threads blocking on the socket. With `avoid_event_cores`,
    /// they are pinned to cores no ET_NET thread is pinned to, when such cores exist.
    Threads {
        /// Number of threads (at least 1).
        count: usize,
        /// Pin accept threads away from the ET_NET threads' cores.
        avoid_event_cores: bool,
    },
    /// The socket on every ET_NET thread's epoll (EPOLLEXCLUSIVE); with
    /// `listener_per_thread`, one SO_REUSEPORT socket per thread instead.
    Event {
        /// One SO_REUSEPORT listening socket per ET_NET thread (`exec_thread.listen`).
        listener_per_thread: bool,
    },
    /// A NetAccept event every `accept_period` on each ET_NET thread, under a try-lock.
    Periodic,
}

/// Which ET_NET thread gets a connection accepted on a dedicated accept thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dispatch {
    /// The next thread in turn.
    #[default]
    RoundRobin,
    /// The thread with the fewest registrations.
    LeastLoaded,
}

/// Options set on every accepted socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockOptions {
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// SO_KEEPALIVE.
    pub keepalive: bool,
    /// SO_LINGER with a zero timeout: close sends RST.
    pub linger0: bool,
    /// SO_RCVBUF bytes; 0 = OS default.
    pub recv_buffer: usize,
    /// SO_SNDBUF bytes; 0 = OS default.
    pub send_buffer: usize,
}

impl Default for SockOptions {
    fn default() -> Self {
        SockOptions {
            nodelay: true,
            keepalive: false,
            linger0: false,
            recv_buffer: 0,
            send_buffer: 0,
        }
    }
}

/// Options of one `main_accept` call.
#[derive(Clone, Debug)]
pub struct AcceptOptions {
    /// The port's name in per-port metrics (`proxy.process.net.port.<label>.…`), usually
    /// the configured port number.
    pub label: String,
    /// How to accept.
    pub mode: AcceptMode,
    /// Options for accepted sockets.
    pub sock: SockOptions,
    /// Hand-off policy for connections accepted off the ET_NET threads.
    pub dispatch: Dispatch,
    /// The acceptor's mutex, which periodic NetAccept events try-lock before accepting
    /// (a new one when None). Other modes do not take it.
    pub mutex: Option<Arc<ProxyMutex>>,
}

impl AcceptOptions {
    /// Options for `label` in `mode`, with default sock options and dispatch.
    pub fn new(label: impl Into<String>, mode: AcceptMode) -> AcceptOptions {
        AcceptOptions {
            label: label.into(),
            mode,
            sock: SockOptions::default(),
            dispatch: Dispatch::default(),
            mutex: None,
        }
    }
}

/// What to do at the connection cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThrottleMode {
    /// Stop accepting at the cap, resume below 90 % of it.
    #[default]
    Pause,
    /// Accept and close at once (ATS's behaviour).
    Close,
}

/// Process-wide accept tuning; every field can change at run time (reload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetTuning {
    /// Period of periodic NetAccept events.
    pub accept_period: Duration,
    /// Accepts per wake-up beyond the first; -1 = until EAGAIN.
    pub additional_accepts: i64,
    /// Pause after a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM) or at the cap.
    pub throttle_delay: Duration,
    /// Cap on open client connections; 0 = none.
    pub connections_throttle: u64,
    /// What to do at the cap.
    pub throttle_mode: ThrottleMode,
}

impl Default for NetTuning {
    fn default() -> Self {
        NetTuning {
            accept_period: Duration::from_millis(10),
            additional_accepts: -1,
            throttle_delay: Duration::from_millis(50),
            connections_throttle: 30000,
            throttle_mode: ThrottleMode::Pause,
        }
    }
}

/// The accept metrics of SPEC §6 that are not per port.
pub(crate) struct NetStats {
    pub(crate) accepts_open: Arc<Gauge>,
    pub(crate) total_accepts: Arc<Counter>,
    pub(crate) throttled: Arc<Counter>,
    pub(crate) accept_errors: Arc<Counter>,
    pub(crate) accept_pauses: Arc<Counter>,
    pub(crate) queue_delay_us: Arc<Histogram>,
}

/// State every port's accept loops share.
pub(crate) struct NetShared {
    pub(crate) events: Arc<EventProcessor>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) stats: NetStats,
    pub(crate) table: Arc<Table>,
    accept_period_us: AtomicU64,
    additional_accepts: AtomicI64,
    throttle_delay_us: AtomicU64,
}

impl NetShared {
    /// Accepts per wake-up: `additional_accepts + 1`, unbounded for -1.
    pub(crate) fn batch_limit(&self) -> usize {
        match self.additional_accepts.load(Ordering::Relaxed) {
            n if n < 0 => usize::MAX,
            n => (n as usize).saturating_add(1),
        }
    }

    pub(crate) fn throttle_delay(&self) -> Duration {
        Duration::from_micros(self.throttle_delay_us.load(Ordering::Relaxed).max(1000))
    }

    pub(crate) fn accept_period(&self) -> Duration {
        Duration::from_micros(self.accept_period_us.load(Ordering::Relaxed).max(1000))
    }
}

/// The accept subsystem.
#[derive(Clone)]
pub struct NetProcessor {
    shared: Arc<NetShared>,
}

impl std::fmt::Debug for NetProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetProcessor").finish_non_exhaustive()
    }
}

impl NetProcessor {
    /// A processor accepting onto `events`' threads, counting into `registry`.
    pub fn new(
        events: Arc<EventProcessor>,
        registry: Arc<Registry>,
        tuning: &NetTuning,
    ) -> NetProcessor {
        let r = &registry;
        let stats = NetStats {
            accepts_open: r.gauge("proxy.process.net.accepts_currently_open"),
            total_accepts: r.counter("proxy.process.tcp.total_accepts"),
            throttled: r.counter("proxy.process.net.connections_throttled_in"),
            accept_errors: r.counter("proxy.process.net.accept_errors"),
            accept_pauses: r.counter("proxy.process.net.accept_pauses"),
            queue_delay_us: r.histogram("proxy.process.net.accept_queue_delay_us"),
        };
        r.gauge("proxy.process.exec_thread.count")
            .set(events.threads().len() as i64);
        let table = Arc::new(Table::new(
            r.gauge("proxy.process.net.connections_currently_open"),
            stats.accept_pauses.clone(),
        ));
        let shared = Arc::new(NetShared {
            events,
            registry,
            stats,
            table,
            accept_period_us: AtomicU64::new(0),
            additional_accepts: AtomicI64::new(-1),
            throttle_delay_us: AtomicU64::new(0),
        });
        let np = NetProcessor { shared };
        np.set_tuning(tuning);
        np
    }

    /// Applies new tuning to every port at once, live.
    pub fn set_tuning(&self, tuning: &NetTuning) {
        let s = &self.shared;
        s.accept_period_us
            .store(tuning.accept_period.as_micros() as u64, Ordering::Relaxed);
        s.additional_accepts
            .store(tuning.additional_accepts, Ordering::Relaxed);
        s.throttle_delay_us
            .store(tuning.throttle_delay.as_micros() as u64, Ordering::Relaxed);
        let mode = match tuning.throttle_mode {
            ThrottleMode::Pause => MODE_PAUSE,
            ThrottleMode::Close => MODE_CLOSE,
        };
        s.table.set_limit(tuning.connections_throttle, mode);
    }

    /// The event threads connections are handed to.
    pub fn events(&self) -> &Arc<EventProcessor> {
        &self.shared.events
    }

    /// The metrics registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.shared.registry
    }

    /// Client connections open now (`proxy.process.net.connections_currently_open`).
    pub fn connections_open(&self) -> i64 {
        self.shared
            .registry
            .gauge("proxy.process.net.connections_currently_open")
            .get()
    }

    /// Starts accepting on `listener` and returns the action that stops it.
    ///
    /// Cancelling the action stops every accept loop of this call within 100 ms in every
    /// mode and decrements `accepts_currently_open` once per loop. The listening socket
    /// closes when its last owner drops it: the caller keeps it open by keeping its `Arc`
    /// (so a reload can start new acceptors on it before cancelling these).
    pub fn main_accept(
        &self,
        acceptor: Arc<dyn Acceptor>,
        listener: Arc<Listener>,
        options: &AcceptOptions,
    ) -> Result<Action, ListenError> {
        let net = self.shared.clone();
        let port = Arc::new(PortAccept::new(
            net.clone(),
            acceptor,
            options.label.clone(),
            listener.local_addr(),
            options.sock.clone(),
            options.dispatch,
        ));
        let threads_gauge = net.registry.gauge(&format!(
            "proxy.process.net.port.{}.accept_threads",
            options.label
        ));
        let threads = net.events.threads();
        // Accepted sockets inherit these (see accept.rs); reuseport siblings get theirs
        // below.
        options.sock.apply(listener.as_raw_fd());
        match &options.mode {
            AcceptMode::Threads {
                count,
                avoid_event_cores,
            } => {
                let cores = if *avoid_event_cores {
                    self.free_cores()
                } else {
                    Vec::new()
                };
                accept_threads::start(&port, &listener, (*count).max(1), &cores).map_err(
                    |source| ListenError {
                        op: "spawn accept thread for",
                        addr: listener.local_addr().to_string(),
                        source,
                    },
                )?;
                // Configured threads of this port's live accepts: dual-stack ports share a
                // label, and a reload swap briefly runs old and new side by side.
                let n = (*count).max(1) as i64;
                threads_gauge.add(n);
                port.action.on_cancel(move || {
                    threads_gauge.add(-n);
                });
            }
            AcceptMode::Event {
                listener_per_thread,
            } => {
                let mut listeners = vec![Arc::new(listener.try_clone()?)];
                if *listener_per_thread {
                    for _ in 1..threads.len() {
                        let sibling = listener.reuseport_sibling()?;
                        options.sock.apply(sibling.as_raw_fd());
                        listeners.push(Arc::new(sibling));
                    }
                }
                accept_event::start(&port, &listeners, threads);
            }
            AcceptMode::Periodic => {
                let mutex = options.mutex.clone().unwrap_or_default();
                accept_periodic::start(&port, &listener, threads, mutex);
            }
        }
        Ok(port.action.clone())
    }

    /// Cores no ET_NET thread is pinned to (all cores when they are not pinned).
    fn free_cores(&self) -> Vec<usize> {
        let pinned = self.shared.events.pinned_cores();
        if pinned.is_empty() {
            return Vec::new();
        }
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .filter(|c| !pinned.contains(c))
            .collect()
    }
}

impl From<io::Error> for ListenError {
    fn from(source: io::Error) -> Self {
        ListenError {
            op: "accept",
            addr: String::new(),
            source,
        }
    }
}
