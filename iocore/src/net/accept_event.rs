//! Event mode (`accept_threads = 0`): the listening socket sits in every ET_NET thread's
//! epoll with EPOLLEXCLUSIVE (or, with one SO_REUSEPORT socket per thread, each thread
//! has its own), and the thread that wakes accepts a batch and starts those connections
//! itself, with no hand-off.
//!
//! Everything here after `start` runs on the ET_NET thread the registration belongs to:
//! the readiness handler, the pause timer that re-registers, and the cancel job.

use super::accept::{Batch, OpenAcceptor, PortAccept};
use super::listener::Listener;
use crate::eventsystem::{
    EThread, Event, EventHandle, Interest, IoHandler, Ready, ThreadRef, Token, Verdict,
};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

/// What the cancel job needs to find on its thread: the live registration, or the timer
/// that will re-register after a pause.
struct Armed {
    token: Option<Token>,
    resume: Option<EventHandle>,
    /// What the cancel job drains once the registration is gone (see
    /// [`PortAccept::drain_queue`]).
    drain: Option<(Arc<PortAccept>, Arc<Listener>)>,
}

/// One thread's accept registration.
struct EventAccept {
    port: Arc<PortAccept>,
    listener: Arc<Listener>,
    armed: Arc<Mutex<Armed>>,
    _open: OpenAcceptor,
}

/// Registers `listeners[i % len]` on thread i, for every thread. Runs on the caller's
/// thread; the registrations happen on each ET_NET thread.
pub(crate) fn start(port: &Arc<PortAccept>, listeners: &[Arc<Listener>], threads: &[ThreadRef]) {
    for (i, thread) in threads.iter().enumerate() {
        let listener = listeners[i % listeners.len()].clone();
        let armed = Arc::new(Mutex::new(Armed {
            token: None,
            resume: None,
            drain: Some((port.clone(), listener.clone())),
        }));
        let accept = EventAccept {
            port: port.clone(),
            listener,
            armed: armed.clone(),
            _open: port.open_acceptor(),
        };
        thread.run(move |t| arm(t, accept));
        let thread = thread.clone();
        port.action
            .on_cancel(move || thread.run(move |t| disarm(t, &armed)));
    }
}

/// On the ET_NET thread: add the listening socket to this thread's epoll.
fn arm(t: &mut EThread, accept: EventAccept) {
    if accept.port.action.cancelled() {
        return;
    }
    let fd = accept.listener.as_raw_fd();
    let armed = accept.armed.clone();
    let label = accept.port.label.clone();
    match t.register(fd, Interest::ACCEPT | Interest::EXCLUSIVE, Box::new(accept)) {
        Ok(token) => lock(&armed).token = Some(token),
        Err(e) => log::warn!(
            "port {label}: cannot watch the listening socket on ET_NET {}: {e}",
            t.id()
        ),
    }
}

/// On the ET_NET thread: the cancel job. First what waits in the queue is accepted, so
/// that no connection stays behind on a wake-up this registration took; then dropping
/// the registration's handler drops its `OpenAcceptor`, which decrements the gauges and
/// tells the action this acceptor stopped.
fn disarm(t: &mut EThread, armed: &Mutex<Armed>) {
    let drain = {
        let mut a = lock(armed);
        // Only while this acceptor still counts as running: once `ready` removed the
        // registration itself (and drained), the action may be reported stopped, and
        // its owner may have moved on (shut the threads down, at an upgrade's end).
        let live = a.token.is_some() || a.resume.is_some();
        a.drain.take().filter(|_| live)
    };
    if let Some((port, listener)) = drain {
        port.drain_queue(listener.as_raw_fd(), Some(t));
    }
    let mut a = lock(armed);
    if let Some(token) = a.token.take() {
        drop(t.deregister(token));
    }
    if let Some(timer) = a.resume.take() {
        timer.cancel();
    }
}

impl IoHandler for EventAccept {
    fn ready(&mut self, t: &mut EThread, _token: Token, _ready: Ready) -> Verdict {
        match self.port.accept_batch(self.listener.as_raw_fd(), Some(t)) {
            // Level-triggered: a yielded batch is reported again on the next loop turn,
            // after this thread's timers and queued work have run.
            Batch::Drained(_) | Batch::Yielded => Verdict::Keep,
            Batch::Stop => {
                if self.port.action.cancelled() {
                    // This wake-up may have been the only one for what waits (see
                    // `disarm`): take it before going.
                    self.port.drain_queue(self.listener.as_raw_fd(), Some(t));
                }
                lock(&self.armed).token = None;
                Verdict::Remove
            }
            Batch::Pause(delay) => {
                // Leave epoll (a level-triggered socket with a backlog would spin) and
                // come back after the pause with a fresh registration.
                let next = EventAccept {
                    port: self.port.clone(),
                    listener: self.listener.clone(),
                    armed: self.armed.clone(),
                    _open: self.port.open_acceptor(),
                };
                let mut slot = Some(next);
                let timer = t.schedule_in(
                    Event::new(move |t| {
                        if let Some(next) = slot.take() {
                            lock(&next.armed).resume = None;
                            arm(t, next);
                        }
                    }),
                    delay,
                );
                let mut a = lock(&self.armed);
                a.token = None;
                a.resume = Some(timer);
                Verdict::Remove
            }
        }
    }
}

fn lock(m: &Mutex<Armed>) -> std::sync::MutexGuard<'_, Armed> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
