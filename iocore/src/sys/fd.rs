//! Operations on any descriptor: duplicating it, setting its flags, and blocking in
//! poll(2) until one of a few is readable. Run on the caller's thread.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A new close-on-exec descriptor for the same open file as `fd`.
pub(crate) fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer argument; no pointers are passed.
    let raw = syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, 0))?;
    // SAFETY: `raw` is a descriptor fcntl just created; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Makes `fd` non-blocking and close-on-exec, keeping its other status flags.
pub(crate) fn set_nonblocking_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument; no pointers are passed.
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    // SAFETY: F_SETFL takes an integer argument; no pointers are passed.
    syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    // SAFETY: F_SETFD takes an integer argument; no pointers are passed.
    syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
    Ok(())
}

/// Blocks until one of `fds` is readable (or hung up) or `timeout` passes (`None`: no
/// limit). Returns how many are ready; EINTR comes back as an error for the caller to
/// treat as a spurious wake-up.
pub(crate) fn poll_readable<const N: usize>(
    fds: [RawFd; N],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // ppoll, for a timeout finer than poll's milliseconds (an accept thread's coalescing).
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfds` is a live, writable array of exactly `N` pollfd structs; `ts_ptr` is
    // null or points at `ts`, which outlives the call; a null signal mask keeps the
    // thread's own.
    let n = syscall!(ppoll(
        pfds.as_mut_ptr(),
        N as libc::nfds_t,
        ts_ptr,
        std::ptr::null()
    ))?;
    Ok(n as usize)
}
