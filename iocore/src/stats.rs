//! Named metrics: counters, gauges and latency histograms.
//!
//! The hot path holds an `Arc` to its metric and touches one cache-padded atomic; names
//! are looked up only when a metric is created or when a snapshot is read. Histograms are
//! sharded per thread so recording never contends, and merged on read. Every method runs
//! on its caller's thread, whichever it is.

use crossbeam_utils::CachePadded;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A monotonically increasing count, sharded per thread: incrementing touches only the
/// calling thread's cache line (no bouncing between cores on the request path); reading
/// sums the shards.
#[derive(Debug, Default)]
pub struct Counter([CachePadded<AtomicU64>; SHARDS]);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0[shard()].fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(CachePadded<AtomicI64>);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Adds `n` (which may be negative) and returns the new value.
    pub fn add(&self, n: i64) -> i64 {
        self.0.fetch_add(n, Ordering::AcqRel) + n
    }
    /// Replaces the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }
}

const SHARDS: usize = 16;

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// The calling thread's shard index.
fn shard() -> usize {
    SHARD.with(|s| *s)
}

/// A latency histogram (values in any unit the name states; iocore uses microseconds),
/// exposed as `NAME.p50`, `NAME.p99` and `NAME.max`.
pub struct Histogram {
    shards: Vec<CachePadded<Mutex<hdrhistogram::Histogram<u64>>>>,
    /// Samples counted by a previous process (an upgrade carries counts over), added to
    /// the count so that it never goes back.
    carried: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                // Three significant digits, auto-resizing: recording never fails.
                let h = hdrhistogram::Histogram::new(3).expect("3 significant digits is valid");
                CachePadded::new(Mutex::new(h))
            })
            .collect();
        Histogram {
            shards,
            carried: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one value. Uncontended unless more than 16 threads record at once.
    pub fn record(&self, v: u64) {
        let mut h = self.shards[shard()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // `record` grows the auto-resizing histogram; `saturating_record` would clamp
        // everything past the initial range (2047) instead.
        if h.record(v).is_err() {
            h.saturating_record(v);
        }
    }

    /// Merges the shards: `(p50, p99, max, count)`.
    pub fn summary(&self) -> (u64, u64, u64, u64) {
        let mut all =
            hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits is valid");
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(|e| e.into_inner());
            // Both auto-resize, so adding cannot fail for range reasons.
            let _ = all.add(&*h);
        }
        (
            all.value_at_quantile(0.50),
            all.value_at_quantile(0.99),
            all.max(),
            all.len() + self.carried.load(Ordering::Relaxed),
        )
    }

    /// Adds `n` samples counted elsewhere to the count (not to the quantiles): an
    /// upgrade's new process continues its predecessor's count.
    pub fn carry(&self, n: u64) {
        self.carried.fetch_add(n, Ordering::Relaxed);
    }
}

/// One registered metric.
#[derive(Clone, Debug)]
pub enum Metric {
    /// A monotonic count.
    Counter(Arc<Counter>),
    /// A value that goes up and down.
    Gauge(Arc<Gauge>),
    /// A latency histogram.
    Histogram(Arc<Histogram>),
}

/// The set of named metrics of one process.
#[derive(Debug, Default)]
pub struct Registry {
    metrics: RwLock<BTreeMap<String, Metric>>,
}

impl Registry {
    /// A new, empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn get_or_insert(&self, name: &str, make: impl FnOnce() -> Metric) -> Metric {
        if let Some(m) = self
            .metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return m.clone();
        }
        let mut map = self.metrics.write().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string()).or_insert_with(make).clone()
    }

    /// The counter called `name`, created at zero if new.
    ///
    /// # Panics
    /// If `name` is registered as another kind of metric: a programming error.
    pub fn counter(&self, name: &str) -> Arc<Counter> {
        match self.get_or_insert(name, || Metric::Counter(Arc::default())) {
            Metric::Counter(c) => c,
            other => panic!("metric {name} is not a counter: {other:?}"),
        }
    }

    /// The gauge called `name`, created at zero if new.
    ///
    /// # Panics
    /// If `name` is registered as another kind of metric: a programming error.
    pub fn gauge(&self, name: &str) -> Arc<Gauge> {
        match self.get_or_insert(name, || Metric::Gauge(Arc::default())) {
            Metric::Gauge(g) => g,
            other => panic!("metric {name} is not a gauge: {other:?}"),
        }
    }

    /// The histogram called `name`, created empty if new.
    ///
    /// # Panics
    /// If `name` is registered as another kind of metric: a programming error.
    pub fn histogram(&self, name: &str) -> Arc<Histogram> {
        match self.get_or_insert(name, || Metric::Histogram(Arc::default())) {
            Metric::Histogram(h) => h,
            other => panic!("metric {name} is not a histogram: {other:?}"),
        }
    }

    /// Registers `counter`, made elsewhere, as `name` (replacing whatever had that name):
    /// for a count that starts before there is a registry to hand it, such as the event
    /// threads' failed waits.
    pub(crate) fn adopt_counter(&self, name: &str, counter: Arc<Counter>) {
        self.metrics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Metric::Counter(counter));
    }

    /// Unregisters the metric called `name` (whoever holds it may go on updating it,
    /// unseen): for a series whose subject is gone, such as a parent a reload removed.
    pub fn remove(&self, name: &str) {
        self.metrics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Every metric's current value, sorted by name. A histogram `NAME` appears as
    /// `NAME.p50`, `NAME.p99` and `NAME.max`.
    pub fn snapshot(&self) -> Vec<(String, i64)> {
        let map = self.metrics.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(map.len() + 8);
        for (name, m) in map.iter() {
            match m {
                Metric::Counter(c) => out.push((name.clone(), c.get() as i64)),
                Metric::Gauge(g) => out.push((name.clone(), g.get())),
                Metric::Histogram(h) => {
                    let (p50, p99, max, _) = h.summary();
                    out.push((format!("{name}.max"), max as i64));
                    out.push((format!("{name}.p50"), p50 as i64));
                    out.push((format!("{name}.p99"), p99 as i64));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every metric with its name, sorted by name, for exporters that need each one's
    /// kind: a histogram is one entry here, not its `.p50`, `.p99` and `.max`.
    pub fn metrics(&self) -> Vec<(String, Metric)> {
        let map = self.metrics.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(n, m)| (n.clone(), m.clone())).collect()
    }

    /// The current value of one metric by its snapshot name, if it exists.
    pub fn value(&self, name: &str) -> Option<i64> {
        if let Some(m) = self
            .metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return match m {
                Metric::Counter(c) => Some(c.get() as i64),
                Metric::Gauge(g) => Some(g.get()),
                Metric::Histogram(_) => None,
            };
        }
        self.snapshot()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_snapshot_names_quantiles() {
        let r = Registry::default();
        let h = r.histogram("x.delay_us");
        for v in 1..=100 {
            h.record(v);
        }
        let snap = r.snapshot();
        let get = |n: &str| snap.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
        assert_eq!(get("x.delay_us.max"), Some(100));
        assert_eq!(get("x.delay_us.p50"), Some(50));
        assert_eq!(get("x.delay_us.p99"), Some(99));
    }

    #[test]
    fn histogram_keeps_values_beyond_its_initial_range() {
        let r = Registry::default();
        let h = r.histogram("d_us");
        for v in [10, 2047, 2048, 5000, 1_000_000] {
            h.record(v);
        }
        let (p50, _, max, n) = h.summary();
        assert_eq!(n, 5);
        assert!((2040..=2060).contains(&p50), "p50 {p50}");
        assert!(max >= 999_000, "max {max}");
    }

    #[test]
    fn same_name_same_metric() {
        let r = Registry::default();
        r.counter("a").inc();
        r.counter("a").add(2);
        r.gauge("g").add(-3);
        assert_eq!(r.value("a"), Some(3));
        assert_eq!(r.value("g"), Some(-3));
    }
}
