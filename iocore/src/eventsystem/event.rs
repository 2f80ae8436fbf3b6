//! Events: a callback, an optional [`ProxyMutex`] it runs under, and a cancellable handle.

use super::ethread::{EThread, Shared};
use super::mutex::ProxyMutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

pub(crate) type Callback = Box<dyn FnMut(&mut EThread) + Send>;

/// Work for an event thread: a callback, run on the thread it is scheduled on, optionally
/// under a [`ProxyMutex`] that the thread try-locks first.
pub struct Event {
    pub(crate) callback: Callback,
    pub(crate) mutex: Option<Arc<ProxyMutex>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("mutex", &self.mutex.is_some())
            .finish_non_exhaustive()
    }
}

impl Event {
    /// An event that runs `f` on the thread it is scheduled on.
    pub fn new(f: impl FnMut(&mut EThread) + Send + 'static) -> Event {
        Event {
            callback: Box::new(f),
            mutex: None,
        }
    }

    /// Runs the callback only while holding `mutex`. When the thread cannot take it at
    /// once, the event is retried later on the same thread (a periodic event at its next
    /// tick), and the loop goes on with other work: it never blocks on the lock.
    pub fn with_mutex(mut self, mutex: Arc<ProxyMutex>) -> Event {
        self.mutex = Some(mutex);
        self
    }
}

pub(crate) struct EventState {
    cancelled: AtomicBool,
    thread: Weak<Shared>,
}

/// The handle to a scheduled event. Cancelling it is safe from any thread, including from
/// inside the event's own callback; a cancelled event never runs again and its callback
/// (with whatever it owns) is dropped on its thread shortly after.
#[derive(Clone)]
pub struct EventHandle(Arc<EventState>);

impl std::fmt::Debug for EventHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl EventHandle {
    /// Stops the event. Idempotent.
    pub fn cancel(&self) {
        if !self.0.cancelled.swap(true, Ordering::AcqRel) {
            if let Some(shared) = self.0.thread.upgrade() {
                shared.request_purge();
            }
        }
    }

    /// Whether [`cancel`](EventHandle::cancel) has been called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }
}

/// An event placed on a thread's timer heap or inbound queue.
pub(crate) struct Scheduled {
    pub(crate) event: Event,
    pub(crate) state: Arc<EventState>,
    pub(crate) at: Instant,
    pub(crate) period: Option<Duration>,
}

impl Scheduled {
    pub(crate) fn new(
        event: Event,
        thread: &Arc<Shared>,
        at: Instant,
        period: Option<Duration>,
    ) -> (Scheduled, EventHandle) {
        let state = Arc::new(EventState {
            cancelled: AtomicBool::new(false),
            thread: Arc::downgrade(thread),
        });
        let handle = EventHandle(state.clone());
        (
            Scheduled {
                event,
                state,
                at,
                period,
            },
            handle,
        )
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.cancelled.load(Ordering::Acquire)
    }
}
