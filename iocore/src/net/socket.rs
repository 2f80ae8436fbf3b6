//! Outbound sockets (origin connections): non-blocking connect, and the recv/send/
//! shutdown primitives that accepted connections share.

use crate::sys::{cvt, from_socket_addr, getsockopt_int, setsockopt_int, tcp_socket};
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
        let (storage, len) = from_socket_addr(&addr);
        // SAFETY: `storage` holds a valid sockaddr of length `len`.
        match cvt(unsafe {
            libc::connect(raw, (&storage as *const libc::sockaddr_storage).cast(), len)
        }) {
            Ok(_) => Ok(sock),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(sock),
            Err(e) => Err(e),
        }
    }

    /// Whether the connection is established (TCP_INFO). A connect to a loopback or
    /// otherwise near peer has often completed by the time `connect` returns, so a
    /// caller that checks can send at once instead of waiting a loop turn for
    /// writability. False when it cannot tell.
    pub fn is_established(&self) -> bool {
        // SAFETY: tcp_info is plain old data; all-zero is valid.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` and `len` describe a live buffer the kernel fills.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        const TCP_ESTABLISHED: u8 = 1; // include/net/tcp_states.h
        r == 0 && info.tcpi_state == TCP_ESTABLISHED
    }

    /// The pending socket error (SO_ERROR), if any: a failed connect shows here.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let v = getsockopt_int(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((v != 0).then(|| io::Error::from_raw_os_error(v)))
    }

    /// Reads without blocking; `Ok(0)` is end of stream.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        recv(self.fd.as_raw_fd(), buf)
    }

    /// Writes without blocking and without raising SIGPIPE.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        send(self.fd.as_raw_fd(), buf)
    }

    /// Half-closes the write side (sends FIN).
    pub fn shutdown_write(&self) -> io::Result<()> {
        shutdown_write(self.fd.as_raw_fd())
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

pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    cvt(n).map(|n| n as usize)
}

pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    send_flags(fd, buf, 0)
}

pub(crate) fn send_flags(fd: RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is a live buffer of `buf.len()` bytes.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | flags,
        )
    };
    cvt(n).map(|n| n as usize)
}

pub(crate) fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a socket the caller owns.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}
