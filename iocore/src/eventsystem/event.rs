//! `EventHandle`: what any thread may do to a scheduled event, which is to cancel it.
//!
//! The handle and the timer entry share a [`CancelState`]. Cancelling sets its flag,
//! which the owning thread checks before every run, and asks that thread (through
//! [`Purge`], its cross-thread half) to drop its cancelled timers, so a long timer's
//! callback and what it owns are dropped promptly, on their own thread. Everything here
//! runs on any thread.
//!
//! The `Event` itself is a callback over `&mut EThread`, so it is defined with `EThread`
//! in `ethread.rs`; this file needs only `remote.rs`.

use super::remote::Purge;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// The cancel flag of one scheduled event, and the thread to tell about a cancel.
pub(crate) struct CancelState {
    cancelled: AtomicBool,
    thread: Weak<dyn Purge>,
}

impl CancelState {
    /// A live event's state, scheduled on `thread`.
    #[inline]
    pub(crate) fn new(thread: Weak<dyn Purge>) -> CancelState {
        CancelState {
            cancelled: AtomicBool::new(false),
            thread,
        }
    }

    /// Whether the event was cancelled.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

/// The handle to a scheduled event. Cancelling it is safe from any thread, including from
/// inside the event's own callback; a cancelled event never runs again and its callback
/// (with whatever it owns) is dropped on its thread shortly after.
#[derive(Clone)]
pub struct EventHandle(Arc<CancelState>);

impl std::fmt::Debug for EventHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl EventHandle {
    /// The handle of the event whose timer entry holds `state`.
    #[inline]
    pub(crate) fn new(state: Arc<CancelState>) -> EventHandle {
        EventHandle(state)
    }

    /// Stops the event. Idempotent.
    pub fn cancel(&self) {
        if !self.0.cancelled.swap(true, Ordering::AcqRel) {
            if let Some(thread) = self.0.thread.upgrade() {
                thread.request_purge();
            }
        }
    }

    /// Whether [`cancel`](EventHandle::cancel) has been called.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}
