//! Threads mode (`accept_threads = N > 0`): N dedicated threads per port, each blocked in
//! the kernel until a connection (or cancellation) arrives, then accepting a batch and
//! handing each connection to an ET_NET thread. Drain mode is one such thread that ends
//! by itself once the socket's queue has stayed empty for a while.
//!
//! Every line of `run` and `Cancel::wait` executes on a `[ACCEPT port:i]` thread; `start`
//! and the cancel hook run on the caller's thread. The listening socket stays non-blocking
//! (another mode may share it during a reload swap), so "blocked" is poll(2) on the socket
//! and the acceptor's cancel eventfd, with no timeout and no periodic wake-ups;
//! cancellation wakes every thread at once.
//!
//! Coalescing (`net.accept_coalesce`): a thread blocked on the socket is woken by the
//! kernel for each connection, in the connecting process's context (a client's connect
//! pays for the wake-up and the switch to this thread), and it usually finds that one
//! connection alone. So after a wake-up that accepted, the thread waits `accept_coalesce`
//! on the cancel eventfd only, then accepts what arrived meanwhile; a wait that finds the
//! queue empty blocks on the socket again. Under load one wake-up, by the thread's own
//! timer, takes an interval's connections; the first connection after a quiet moment is
//! accepted at once; no connection waits longer than the interval (plus timer slack) for
//! its accept. README, "Accept modes and tuning", has the figures.

use super::accept::{Batch, OpenAcceptor, PortAccept};
use super::listener::Listener;
use crate::eventsystem::poll_errors::{PollErrors, BACKOFF};
use crate::sys::eventfd::EventFd;
use crate::sys::fd::poll_readable;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// What a port's accept threads block on besides the listening socket, and where they
/// count failures to block.
struct Cancel {
    /// Signalled once when the port's action is cancelled, and never read: it then stays
    /// readable for every thread.
    fd: EventFd,
    errors: PollErrors,
    /// Whether a failed poll or signal of this port was logged.
    logged: AtomicBool,
    label: String,
}

/// Spawns `count` accept threads, pinned round-robin to `cores` if any are given; with
/// `quiet`, one `[DRAIN]` thread that ends once the queue has stayed empty that long.
/// Runs on the caller's thread.
pub(crate) fn start(
    port: &Arc<PortAccept>,
    listener: &Arc<Listener>,
    count: usize,
    cores: &[usize],
    quiet: Option<Duration>,
) -> io::Result<()> {
    let cancel = Arc::new(Cancel {
        fd: EventFd::new()?,
        errors: port.net.events.poll_errors().clone(),
        logged: AtomicBool::new(false),
        label: port.label.clone(),
    });
    let waker = cancel.clone();
    port.action.on_cancel(move || {
        if let Err(e) = waker.fd.signal() {
            // The accept threads now wait for their next connection before they stop.
            waker.failed("eventfd wake-up", &e);
        }
    });
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    for i in 0..count {
        let open = port.open_acceptor();
        let (mine, listener, cancel) = (port.clone(), listener.clone(), cancel.clone());
        let core = (!cores.is_empty())
            .then(|| cores[i % cores.len()])
            .and_then(|c| core_ids.iter().find(|id| id.id == c).copied());
        let name = match quiet {
            Some(_) => format!("[DRAIN {}]", port.label),
            None => format!("[ACCEPT {}:{i}]", port.label),
        };
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            // An accept thread blocked on the socket is woken by each connection: under
            // the default policy each wake-up preempts whatever runs on the CPU (an event thread, the
            // origin, a client), a context switch there and back. Under SCHED_BATCH it
            // waits for the next scheduling point (README, "Accept modes and tuning").
            // A policy the operator chose (systemd's CPUSchedulingPolicy) is kept.
            if let Err(e) = crate::sys::sched::set_batch_policy() {
                log::debug!("accept thread: SCHED_BATCH: {e}");
            }
            run(&mine, &listener, &cancel, open, quiet);
        });
        if let Err(e) = spawned {
            port.action.cancel();
            return Err(e);
        }
    }
    Ok(())
}

/// The accept loop of one dedicated thread; with `quiet`, it ends once the queue has
/// stayed empty that long.
fn run(
    port: &Arc<PortAccept>,
    listener: &Listener,
    cancel: &Cancel,
    _open: OpenAcceptor,
    quiet: Option<Duration>,
) {
    let fd = listener.as_raw_fd();
    let cancel_fd = cancel.fd.as_raw_fd();
    loop {
        match port.accept_batch(fd, None) {
            Batch::Stop => return,
            Batch::Yielded => continue,
            Batch::Drained(taken) => match quiet {
                Some(q) if q.is_zero() || !cancel.wait([fd, cancel_fd], Some(q)) => return,
                Some(_) => {}
                None => {
                    let coalesce = port.net.accept_coalesce();
                    if taken > 0 && !coalesce.is_zero() {
                        cancel.wait([cancel_fd], Some(coalesce));
                    } else {
                        cancel.wait([fd, cancel_fd], None);
                    }
                }
            },
            Batch::Pause(d) => {
                cancel.wait([cancel_fd], Some(d));
            }
        }
        if port.action.cancelled() {
            return;
        }
    }
}

impl Cancel {
    /// Blocks until one of `fds` is readable or `timeout` passes: false when it passed
    /// with none readable.
    fn wait<const N: usize>(&self, fds: [RawFd; N], timeout: Option<Duration>) -> bool {
        match poll_readable(fds, timeout) {
            Ok(n) => n > 0,
            // A signal: the loop looks at the socket and the cancel flag again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => {
                self.failed("poll", &e);
                // Polling again at once would fail again at once.
                std::thread::sleep(BACKOFF);
                true
            }
        }
    }

    fn failed(&self, what: &str, e: &io::Error) {
        self.errors.record(
            &self.logged,
            format_args!("port {} accept threads: {what}", self.label),
            e,
        );
    }
}
