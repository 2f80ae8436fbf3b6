//! epoll(7): the readiness set of one event thread and the buffer it reads events into.
//!
//! An [`Epoll`] is created by the event processor on its own thread, then moved to the
//! event thread it belongs to, which alone adds, removes and waits.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Readable (or, for a listening socket, a connection is waiting).
pub(crate) const IN: u32 = libc::EPOLLIN as u32;
/// Writable.
pub(crate) const OUT: u32 = libc::EPOLLOUT as u32;
/// The peer shut down its writing side.
pub(crate) const RDHUP: u32 = libc::EPOLLRDHUP as u32;
/// Both sides are shut down.
pub(crate) const HUP: u32 = libc::EPOLLHUP as u32;
/// An error is pending on the descriptor.
pub(crate) const ERR: u32 = libc::EPOLLERR as u32;
/// Edge-triggered.
pub(crate) const ET: u32 = libc::EPOLLET as u32;
/// Of the epoll sets waiting on one descriptor, wake only one (or a few).
pub(crate) const EXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;

/// An epoll set, closed when dropped.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new, empty, close-on-exec epoll set.
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers are passed.
        let raw = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: `raw` is a descriptor epoll_create1 just returned; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Epoll { fd })
    }

    /// Adds `fd`, waiting for `events` (the constants above); epoll reports `data` with
    /// each of its events.
    pub(crate) fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: `ev` is a live epoll_event for the whole call; the kernel copies it.
        syscall!(epoll_ctl(
            self.fd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd,
            &mut ev
        ))
        .map(drop)
    }

    /// Removes `fd`, which must still be open.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        // Kernels before 2.6.9 wanted a non-null event even for a delete.
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `ev` is a live epoll_event for the whole call; the kernel ignores it.
        syscall!(epoll_ctl(
            self.fd.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd,
            &mut ev
        ))
        .map(drop)
    }

    /// Waits up to `timeout_ms` (-1: no limit, 0: do not block) for events and puts them in
    /// `events`. On an error (EINTR included) `events` is left empty.
    #[inline]
    pub(crate) fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<()> {
        events.len = 0;
        let max = events.buf.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events.buf` is a live, writable array of at least `max` epoll_event
        // structs, and the kernel writes at most `max` of them.
        let n = syscall!(epoll_wait(
            self.fd.as_raw_fd(),
            events.buf.as_mut_ptr(),
            max,
            timeout_ms
        ))?;
        events.len = n as usize;
        Ok(())
    }
}

/// A reusable buffer of events from one [`Epoll::wait`]: allocated once per thread, so
/// waiting allocates nothing.
pub(crate) struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// Room for up to `capacity` events per wait.
    pub(crate) fn with_capacity(capacity: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            len: 0,
        }
    }

    /// The events of the last wait, as `(data, events)`.
    #[inline]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        // Copies the fields out: `epoll_event` is packed on x86-64.
        self.buf[..self.len].iter().map(|ev| (ev.u64, ev.events))
    }
}

#[cfg(test)]
impl Epoll {
    /// An `Epoll` over a descriptor that is not an epoll set, so every wait fails with
    /// EINVAL: for tests of what a failing wait does.
    pub(crate) fn not_an_epoll_set() -> Epoll {
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        Epoll {
            fd: OwnedFd::from(file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_wait_leaves_no_events_behind() {
        let ep = Epoll::new().unwrap();
        let efd = crate::sys::eventfd::EventFd::new().unwrap();
        ep.add(efd.as_raw_fd(), IN, 7).unwrap();
        efd.signal().unwrap();
        let mut events = Events::with_capacity(4);
        ep.wait(&mut events, 1000).unwrap();
        assert_eq!(events.iter().collect::<Vec<_>>(), vec![(7, IN)]);
        let err = Epoll::not_an_epoll_set().wait(&mut events, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(events.iter().count(), 0);
    }
}
