//! The option structs the [`NetProcessor`](super::NetProcessor) takes: how a port accepts
//! ([`AcceptOptions`], [`AcceptMode`], [`Dispatch`]), what accepted sockets get
//! ([`SockOptions`]), and the process-wide tuning that can change live ([`NetTuning`],
//! [`ThrottleMode`]).
//!
//! They are plain values. The only code here is `SockOptions` setting and checking itself
//! on a socket, which runs on the caller's thread: the thread starting a port (for the
//! listening socket) or the thread that accepted a connection.

use crate::eventsystem::ProxyMutex;
use crate::sys::socket::{getsockopt_int, linger, set_linger, setsockopt_int};
use std::os::fd::RawFd;
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
    /// Retiring a socket: one `[DRAIN port]` thread accepts until the socket's queue has
    /// stayed empty for `quiet` (zero: until it is empty once), then ends by itself, so
    /// that the socket can close without resetting a connection that waited in it. The
    /// caller first stops new connections from reaching the socket (steers its reuseport
    /// group away, or refuses new connections) and drops its own handle after the start.
    Drain {
        /// How long the queue must stay empty before the thread ends.
        quiet: Duration,
    },
}

/// Which ET_NET thread gets a connection accepted on a dedicated accept thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dispatch {
    /// The next thread in turn.
    RoundRobin,
    /// Of the next few threads in turn, one that is running a loop turn, so that the
    /// hand-off needs no wake-up, unless it holds more than its share of the
    /// connections handed off ([`EventProcessor::assign_busy`](crate::EventProcessor::assign_busy));
    /// the next in turn when none qualifies.
    #[default]
    BusyFirst,
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
    /// TCP_NOTSENT_LOWAT bytes: the kernel holds at most this much unsent data ahead of
    /// what the peer has received; 0 = off.
    pub notsent_lowat: usize,
}

impl Default for SockOptions {
    fn default() -> Self {
        SockOptions {
            nodelay: true,
            keepalive: false,
            linger0: false,
            recv_buffer: 0,
            send_buffer: 0,
            notsent_lowat: 0,
        }
    }
}

impl SockOptions {
    /// Sets the options on a socket: the listening socket (whose options accepted
    /// sockets inherit), or an accepted one when they did not. The flags are set both
    /// ways, as an adopted listener may come with its own. A failure affects only the
    /// tuning, so it is ignored.
    pub(crate) fn apply(&self, raw: RawFd) {
        let _ = setsockopt_int(
            raw,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            self.nodelay.into(),
        );
        let _ = setsockopt_int(
            raw,
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            self.keepalive.into(),
        );
        let _ = set_linger(raw, self.linger0, 0);
        // Sizes: 0 leaves the kernel's default.
        let sizes = [
            (libc::SOL_SOCKET, libc::SO_RCVBUF, self.recv_buffer),
            (libc::SOL_SOCKET, libc::SO_SNDBUF, self.send_buffer),
            (
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                self.notsent_lowat,
            ),
        ];
        for (level, name, size) in sizes {
            if size > 0 {
                let _ = setsockopt_int(raw, level, name, size.min(i32::MAX as usize) as i32);
            }
        }
    }

    /// Whether `raw` already has every option (buffer sizes at least as asked: the
    /// kernel doubles them).
    pub(crate) fn present_on(&self, raw: RawFd) -> bool {
        let int = |level, name| getsockopt_int(raw, level, name).ok();
        let buffer_ok = |name, want: usize| {
            want == 0 || int(libc::SOL_SOCKET, name).is_some_and(|v| v as usize >= want)
        };
        int(libc::IPPROTO_TCP, libc::TCP_NODELAY).map(|v| v != 0) == Some(self.nodelay)
            && int(libc::SOL_SOCKET, libc::SO_KEEPALIVE).map(|v| v != 0) == Some(self.keepalive)
            && linger(raw).is_ok_and(|(on, secs)| (on && secs == 0) == self.linger0)
            && buffer_ok(libc::SO_RCVBUF, self.recv_buffer)
            && buffer_ok(libc::SO_SNDBUF, self.send_buffer)
            && (self.notsent_lowat == 0
                || int(libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT)
                    .is_some_and(|v| v as usize == self.notsent_lowat))
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
    /// With `Event { listener_per_thread }`: the port's other SO_REUSEPORT sockets, one
    /// per ET_NET thread after the first, kept by the caller across acceptor swaps so that
    /// a swap closes none of them (a closed one would reset what waits in its queue).
    /// Missing ones are made here, and close with the acceptors.
    pub siblings: Vec<Arc<super::Listener>>,
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
            siblings: Vec::new(),
        }
    }
}

/// What to do at the connection cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum ThrottleMode {
    /// Stop accepting at the cap, resume below 90 % of it.
    #[default]
    Pause = 0,
    /// Accept and close at once (ATS's behaviour).
    Close = 1,
}

impl ThrottleMode {
    /// The mode as stored in an atomic by the connection table.
    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    /// The mode [`ThrottleMode::to_u8`] stored.
    pub(crate) fn from_u8(v: u8) -> ThrottleMode {
        if v == ThrottleMode::Close as u8 {
            ThrottleMode::Close
        } else {
            ThrottleMode::Pause
        }
    }
}

/// Process-wide accept tuning; every field can change at run time (reload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetTuning {
    /// Period of periodic NetAccept events.
    pub accept_period: Duration,
    /// Accepts per wake-up beyond the first; -1 = until EAGAIN.
    pub additional_accepts: i64,
    /// After a wake-up that accepted, how long a dedicated accept thread waits before it
    /// looks at the queue again (zero: at once).
    pub accept_coalesce: Duration,
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
            accept_coalesce: Duration::from_micros(100),
            throttle_delay: Duration::from_millis(50),
            connections_throttle: 30000,
            throttle_mode: ThrottleMode::Pause,
        }
    }
}
