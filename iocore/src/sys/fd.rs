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
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: `pfds` is a live, writable array of exactly `N` pollfd structs.
    let n = syscall!(poll(pfds.as_mut_ptr(), N as libc::nfds_t, ms))?;
    Ok(n as usize)
}
