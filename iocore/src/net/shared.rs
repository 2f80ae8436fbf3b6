//! `NetShared`: what every port's accept loops share (the event threads, the metrics, the
//! connection table and the live tuning), and `NetStats`, the accept metrics that are not
//! per port.
//!
//! Every accepting thread (dedicated accept threads and ET_NET threads) reads it;
//! `NetProcessor::set_tuning` writes the tuning from the caller's thread, with relaxed
//! atomics: a reload's new values need not reach every thread at the same instant.

use super::connection::ConnectionTable;
use super::options::NetTuning;
use crate::eventsystem::EventProcessor;
use crate::stats::{Counter, Gauge, Histogram, Registry};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The accept metrics of SPEC §6 that are not per port.
pub(crate) struct NetStats {
    pub(crate) accepts_open: Arc<Gauge>,
    pub(crate) total_accepts: Arc<Counter>,
    pub(crate) throttled: Arc<Counter>,
    pub(crate) accept_errors: Arc<Counter>,
    pub(crate) accept_pauses: Arc<Counter>,
    pub(crate) queue_delay_us: Arc<Histogram>,
}

/// State every port's accept loops share.
pub(crate) struct NetShared {
    pub(crate) events: Arc<EventProcessor>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) stats: NetStats,
    pub(crate) table: Arc<ConnectionTable>,
    accept_period_us: AtomicU64,
    additional_accepts: AtomicI64,
    accept_coalesce_us: AtomicU64,
    throttle_delay_us: AtomicU64,
}

impl NetShared {
    /// The shared state, with `tuning` applied.
    pub(crate) fn new(
        events: Arc<EventProcessor>,
        registry: Arc<Registry>,
        stats: NetStats,
        table: Arc<ConnectionTable>,
        tuning: &NetTuning,
    ) -> NetShared {
        let shared = NetShared {
            events,
            registry,
            stats,
            table,
            accept_period_us: AtomicU64::new(0),
            additional_accepts: AtomicI64::new(-1),
            accept_coalesce_us: AtomicU64::new(0),
            throttle_delay_us: AtomicU64::new(0),
        };
        shared.set_tuning(tuning);
        shared
    }

    /// Applies new tuning to every port at once, live.
    pub(crate) fn set_tuning(&self, tuning: &NetTuning) {
        self.accept_period_us
            .store(tuning.accept_period.as_micros() as u64, Ordering::Relaxed);
        self.additional_accepts
            .store(tuning.additional_accepts, Ordering::Relaxed);
        self.accept_coalesce_us
            .store(tuning.accept_coalesce.as_micros() as u64, Ordering::Relaxed);
        self.throttle_delay_us
            .store(tuning.throttle_delay.as_micros() as u64, Ordering::Relaxed);
        self.table
            .set_limit(tuning.connections_throttle, tuning.throttle_mode);
    }

    /// Accepts per wake-up: `additional_accepts + 1`, unbounded for -1.
    pub(crate) fn batch_limit(&self) -> usize {
        match self.additional_accepts.load(Ordering::Relaxed) {
            n if n < 0 => usize::MAX,
            n => (n as usize).saturating_add(1),
        }
    }

    /// How long to stop accepting after a resource error or at the cap (at least 1 ms).
    pub(crate) fn throttle_delay(&self) -> Duration {
        Duration::from_micros(self.throttle_delay_us.load(Ordering::Relaxed).max(1000))
    }

    /// How long a dedicated accept thread waits after a wake-up that accepted.
    pub(crate) fn accept_coalesce(&self) -> Duration {
        Duration::from_micros(self.accept_coalesce_us.load(Ordering::Relaxed))
    }

    /// The period of periodic NetAccept events (at least 1 ms).
    pub(crate) fn accept_period(&self) -> Duration {
        Duration::from_micros(self.accept_period_us.load(Ordering::Relaxed).max(1000))
    }
}
