//! Outbound sockets (origin connections): a non-blocking connect, then recv/send/shutdown.
//!
//! A `Socket` runs on its caller's thread: in the proxy, the ET_NET thread that owns the
//! origin connection.

use crate::sys::socket::{self, getsockopt_int, setsockopt_int, tcp_socket};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// A non-blocking, close-on-exec TCP socket opened towards a peer.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Starts a non-blocking connect with TCP_NODELAY set. Completion shows as
    /// writability; then [`Socket::take_error`] says whether it failed.
    pub fn connect(addr: SocketAddr) -> io::Result<Socket> {
        let sock = Socket {
            fd: tcp_socket(&addr)?,
        };
        let raw = sock.fd.as_raw_fd();
        let _ = setsockopt_int(raw, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        match socket::connect(raw, &addr) {
            Ok(()) => Ok(sock),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(sock),
            Err(e) => Err(e),
        }
    }

    /// Whether the connection is established (TCP_INFO). A connect to a loopback or
    /// otherwise near peer has often completed by the time `connect` returns, so a
    /// caller that checks can send at once instead of waiting a loop turn for
    /// writability. False when it cannot tell.
    pub fn is_established(&self) -> bool {
        socket::is_established(self.fd.as_raw_fd())
    }

    /// The pending socket error (SO_ERROR), if any: a failed connect shows here.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let v = getsockopt_int(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((v != 0).then(|| io::Error::from_raw_os_error(v)))
    }

    /// Reads without blocking; `Ok(0)` is end of stream.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        socket::recv(self.fd.as_raw_fd(), buf)
    }

    /// Writes without blocking and without raising SIGPIPE.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        socket::send(self.fd.as_raw_fd(), buf, false)
    }

    /// Half-closes the write side (sends FIN).
    pub fn shutdown_write(&self) -> io::Result<()> {
        socket::shutdown_write(self.fd.as_raw_fd())
    }

    /// Makes the close abortive (SO_LINGER 0): a reset, not a FIN, as
    /// [`NetConnection::reset_on_close`](super::connection::NetConnection::reset_on_close).
    pub fn reset_on_close(&self) -> io::Result<()> {
        socket::set_linger(self.fd.as_raw_fd(), true, 0)
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
