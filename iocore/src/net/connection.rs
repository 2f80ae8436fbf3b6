//! Accepted client connections and the table that counts them.
//!
//! Two phases, as in skynet: the accepting thread reserves a slot in the
//! [`ConnectionTable`] and wraps the socket in a [`NetConnection`] (counted, not started);
//! the ET_NET thread that will own it starts it by handing it to the port's acceptor.
//! The socket is an `OwnedFd` and the slot an RAII guard, so whichever path drops the
//! connection closes the socket once and `connections_currently_open` follows by
//! construction.
//!
//! The table is shared by every accepting thread (slots are reserved there); a
//! `NetConnection`'s methods run on the ET_NET thread that owns it, and its drop, which
//! releases the slot, on whichever thread drops it.

use super::options::ThrottleMode;
use crate::eventsystem::Hold;
use crate::stats::{Counter, Gauge};
use crate::sys::socket;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The count of open client connections, against an optional cap.
#[derive(Debug)]
pub(crate) struct ConnectionTable {
    open: Arc<Gauge>,
    cap: AtomicU64,
    /// A [`ThrottleMode`], as [`ThrottleMode::to_u8`] stores it.
    mode: AtomicU8,
    paused: AtomicBool,
    pauses: Arc<Counter>,
}

impl ConnectionTable {
    pub(crate) fn new(open: Arc<Gauge>, pauses: Arc<Counter>) -> ConnectionTable {
        ConnectionTable {
            open,
            cap: AtomicU64::new(0),
            mode: AtomicU8::new(ThrottleMode::Pause.to_u8()),
            paused: AtomicBool::new(false),
            pauses,
        }
    }

    /// Sets the cap (0: none) and what happens at it.
    pub(crate) fn set_limit(&self, cap: u64, mode: ThrottleMode) {
        self.cap.store(cap, Ordering::Relaxed);
        self.mode.store(mode.to_u8(), Ordering::Relaxed);
    }

    fn mode(&self) -> ThrottleMode {
        ThrottleMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// In pause mode: whether acceptors should hold off. Pauses at the cap and resumes
    /// below 90 % of it, so the port does not flap at the boundary.
    pub(crate) fn should_pause(&self) -> bool {
        let cap = self.cap.load(Ordering::Relaxed);
        if cap == 0 || self.mode() != ThrottleMode::Pause {
            return false;
        }
        let open = self.open.get().max(0) as u64;
        if self.paused.load(Ordering::Relaxed) {
            if open * 10 < cap * 9 {
                self.paused.store(false, Ordering::Relaxed);
                return false;
            }
            return true;
        }
        if open >= cap {
            if !self.paused.swap(true, Ordering::Relaxed) {
                self.pauses.inc();
            }
            return true;
        }
        false
    }

    /// Reserves a slot, or None when the table is at its cap in close mode. In pause
    /// mode the acceptors stop at the cap before they accept ([`Self::should_pause`]),
    /// so a connection accepted past it was accepted by one of several acceptors that
    /// looked at the same moment, or by the drain of a socket about to close: it is
    /// kept, the cap exceeded by at most one per acceptor, rather than reset.
    pub(crate) fn open(self: &Arc<Self>) -> Option<ConnSlot> {
        let now = self.open.add(1);
        let cap = self.cap.load(Ordering::Relaxed);
        if cap > 0 && now as u64 > cap && self.mode() == ThrottleMode::Close {
            self.open.add(-1);
            return None;
        }
        Some(ConnSlot(self.clone()))
    }
}

/// One reserved place in the connection table, released on drop.
#[derive(Debug)]
pub(crate) struct ConnSlot(Arc<ConnectionTable>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let left = self.0.open.add(-1);
        debug_assert!(left >= 0, "connections_currently_open went negative");
    }
}

/// An accepted client socket: non-blocking, close-on-exec, sock options applied, counted
/// in `connections_currently_open` until dropped. Dropping it closes the socket.
#[derive(Debug)]
pub struct NetConnection {
    // Field order matters: the socket closes before the slot is released, so the gauge
    // never reads lower than the descriptors actually held.
    fd: OwnedFd,
    _slot: ConnSlot,
    /// Counts the connection as held by the event thread it was handed to.
    held: Option<Hold>,
    peer: SocketAddr,
    local: SocketAddr,
    accepted_at: Instant,
}

impl NetConnection {
    pub(crate) fn new(
        fd: OwnedFd,
        slot: ConnSlot,
        peer: SocketAddr,
        local: SocketAddr,
        accepted_at: Instant,
    ) -> Self {
        NetConnection {
            fd,
            _slot: slot,
            held: None,
            peer,
            local,
            accepted_at,
        }
    }

    /// Counts the connection as held by the thread of `hold` while it lives.
    pub(crate) fn held_by(&mut self, hold: Hold) {
        self.held = Some(hold);
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The listening address the client connected to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// When accept() returned this socket.
    pub fn accepted_at(&self) -> Instant {
        self.accepted_at
    }

    /// Reads into `buf` without blocking; `Ok(0)` is end of stream.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        socket::recv(self.fd.as_raw_fd(), buf)
    }

    /// Reads into `buf` without taking the bytes from the socket (MSG_PEEK): the next
    /// read gets them again. Non-blocking, as [`recv`](Self::recv).
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        socket::peek(self.fd.as_raw_fd(), buf)
    }

    /// Writes from `buf` without blocking and without raising SIGPIPE.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        socket::send(self.fd.as_raw_fd(), buf, false)
    }

    /// Writes the last bytes before a close or [`shutdown_write`](Self::shutdown_write)
    /// that the caller makes next: with MSG_MORE the kernel holds a short tail until
    /// then, and it leaves in one segment with the FIN instead of two.
    pub fn send_last(&self, buf: &[u8]) -> io::Result<usize> {
        socket::send(self.fd.as_raw_fd(), buf, true)
    }

    /// Writes `head` then `tail` in one call (one segment when they fit), as
    /// [`send`](Self::send) of the two joined would; `last` as in
    /// [`send_last`](Self::send_last).
    pub fn send_pair(&self, head: &[u8], tail: &[u8], last: bool) -> io::Result<usize> {
        socket::send_pair(self.fd.as_raw_fd(), head, tail, last)
    }

    /// Half-closes the write side (sends FIN).
    pub fn shutdown_write(&self) -> io::Result<()> {
        socket::shutdown_write(self.fd.as_raw_fd())
    }

    /// Makes the close abortive (SO_LINGER 0): it sends a reset, not a FIN, and drops
    /// what the kernel has not sent yet. For a peer that must not take what it got for
    /// the whole message: a body delimited by the close, cut short.
    pub fn reset_on_close(&self) -> io::Result<()> {
        socket::set_linger(self.fd.as_raw_fd(), true, 0)
    }
}

impl AsRawFd for NetConnection {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for NetConnection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Registry;

    #[test]
    fn past_the_cap_close_mode_refuses_and_pause_mode_keeps_what_raced_past_it() {
        let r = Registry::new();
        let open = r.gauge("open");
        let table = Arc::new(ConnectionTable::new(open.clone(), r.counter("pauses")));
        table.set_limit(1, ThrottleMode::Close);
        let first = table.open().expect("below the cap");
        assert!(table.open().is_none() && open.get() == 1);
        table.set_limit(1, ThrottleMode::Pause);
        assert!(table.should_pause());
        // An acceptor that looked before another took the last place (or a drain of a
        // closing socket) keeps its connection.
        let raced = table.open().expect("kept past the cap in pause mode");
        assert_eq!(open.get(), 2);
        drop((first, raced));
        assert_eq!(open.get(), 0);
    }
}
