//! eventfd(2): a counter descriptor that one thread makes readable to wake another out of
//! epoll_wait or poll.
//!
//! `signal` runs on whichever thread wakes; `drain` on the thread that was woken.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking, close-on-exec eventfd, closed when dropped.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd with its counter at zero (not readable).
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: no pointers are passed.
        let raw = syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?;
        // SAFETY: `raw` is a descriptor eventfd just returned; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    /// Adds one to the counter, making the descriptor readable. EINTR is retried. A full
    /// counter (EAGAIN) is already readable, which is all a signal is for: not an error.
    #[inline]
    pub(crate) fn signal(&self) -> io::Result<()> {
        let one: u64 = 1;
        settle(|| {
            // SAFETY: writes the 8 bytes of a live u64, the size eventfd requires.
            syscall!(write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8))
        })
    }

    /// Resets the counter to zero, so the descriptor is no longer readable. EINTR is
    /// retried. A counter already at zero (EAGAIN: a spurious wake-up) leaves nothing to
    /// do: not an error.
    #[inline]
    pub(crate) fn drain(&self) -> io::Result<()> {
        let mut count: u64 = 0;
        settle(|| {
            // SAFETY: reads at most 8 bytes into a live, writable u64.
            syscall!(read(
                self.fd.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                8
            ))
        })
    }
}

/// Runs one eventfd read or write until a signal does not interrupt it. EAGAIN means the
/// counter is already where the caller wants it (see `signal` and `drain`).
#[inline]
fn settle(mut op: impl FnMut() -> io::Result<isize>) -> io::Result<()> {
    loop {
        match op() {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_an_unsignalled_eventfd_is_not_an_error() {
        let efd = EventFd::new().unwrap();
        efd.drain().unwrap();
        efd.signal().unwrap();
        efd.drain().unwrap();
        efd.drain().unwrap();
    }

    #[test]
    fn signalling_a_full_counter_is_not_an_error() {
        let efd = EventFd::new().unwrap();
        let almost_full: u64 = u64::MAX - 1;
        // SAFETY: writes the 8 bytes of a live u64, the size eventfd requires.
        syscall!(write(
            efd.as_raw_fd(),
            (&almost_full as *const u64).cast(),
            8
        ))
        .unwrap();
        // The kernel refuses to go past the maximum: EAGAIN, already readable.
        efd.signal().unwrap();
        efd.drain().unwrap();
    }
}
