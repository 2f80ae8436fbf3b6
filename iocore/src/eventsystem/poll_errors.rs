//! Failures of the calls that put a thread to sleep or wake it: epoll_wait, the eventfd
//! writes and reads of the wake-up path, and the poll(2) of dedicated accept threads.
//!
//! None of them should ever fail. If one does, a thread may stop being woken, or return
//! from its wait at once, turn after turn. So every failure is counted in
//! [`METRIC`] (registered with the other iocore metrics by the `NetProcessor`), the first
//! at each place is logged, and a caller that would otherwise go straight back to a
//! failing wait sleeps [`BACKOFF`] first. Runs on whichever thread saw the failure.

use crate::stats::Counter;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The metric counting failed waits and wake-ups.
pub(crate) const METRIC: &str = "proxy.process.eventsystem.poll_errors";

/// How long a thread whose wait failed sleeps before waiting again: short enough that
/// its timers and inbound work still run, long enough that it cannot spin a core.
pub(crate) const BACKOFF: Duration = Duration::from_millis(10);

/// The failure count of one event processor, shared by its threads and by the accept
/// threads of its ports.
#[derive(Clone, Debug, Default)]
pub(crate) struct PollErrors {
    count: Arc<Counter>,
}

impl PollErrors {
    /// The counter, for the registry.
    pub(crate) fn counter(&self) -> &Arc<Counter> {
        &self.count
    }

    /// Counts a failure of `what`, and logs it if `logged` (the place's flag) was clear.
    pub(crate) fn record(&self, logged: &AtomicBool, what: std::fmt::Arguments<'_>, e: &io::Error) {
        self.count.inc();
        if !logged.swap(true, Ordering::Relaxed) {
            log::error!("{what} failed: {e} (logged once; every failure counts in {METRIC})");
        }
    }
}
