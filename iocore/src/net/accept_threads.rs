//! Threads mode (`accept_threads = N > 0`): N dedicated threads per port, each blocked in
//! the kernel until a connection (or cancellation) arrives, then accepting a batch and
//! handing each connection to an ET_NET thread.
//!
//! Every line of `run` executes on a `[ACCEPT port:i]` thread. The listening socket stays
//! non-blocking (another mode may share it during a reload swap), so "blocked" is poll(2)
//! on the socket and the acceptor's cancel eventfd: no timeout, no periodic wake-ups, and
//! cancellation wakes every thread at once.

use super::accept::{Batch, OpenAcceptor, PortAccept};
use super::listener::Listener;
use crate::sys::{eventfd, eventfd_signal};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Spawns `count` accept threads, pinned round-robin to `cores` if any are given.
/// Runs on the caller's thread.
pub(crate) fn start(
    port: &Arc<PortAccept>,
    listener: &Arc<Listener>,
    count: usize,
    cores: &[usize],
) -> io::Result<()> {
    let cancel = Arc::new(eventfd()?);
    let waker = cancel.clone();
    // The eventfd is never read: once signalled it stays readable for every thread.
    port.action
        .on_cancel(move || eventfd_signal(waker.as_raw_fd()));
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    for i in 0..count {
        let open = port.open_acceptor();
        let (mine, listener, cancel) = (port.clone(), listener.clone(), cancel.clone());
        let core = (!cores.is_empty())
            .then(|| cores[i % cores.len()])
            .and_then(|c| core_ids.iter().find(|id| id.id == c).copied());
        let spawned = std::thread::Builder::new()
            .name(format!("[ACCEPT {}:{i}]", port.label))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                run(&mine, &listener, &cancel, open);
            });
        if let Err(e) = spawned {
            port.action.cancel();
            return Err(e);
        }
    }
    Ok(())
}

/// The accept loop of one dedicated thread.
fn run(port: &Arc<PortAccept>, listener: &Listener, cancel: &OwnedFd, _open: OpenAcceptor) {
    let fd = listener.as_raw_fd();
    loop {
        match port.accept_batch(fd, None) {
            Batch::Stop => return,
            Batch::Yielded => continue,
            Batch::Drained => wait(&[fd, cancel.as_raw_fd()], None),
            Batch::Pause(d) => wait(&[cancel.as_raw_fd()], Some(d)),
        }
        if port.action.cancelled() {
            return;
        }
    }
}

/// Blocks until one of `fds` is readable or `timeout` passes.
fn wait(fds: &[RawFd], timeout: Option<Duration>) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: `pfds` is a live array of `pfds.len()` pollfd structs.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
}
