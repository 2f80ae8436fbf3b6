//! What every HTTP session shares, by job: the settings (`settings.rs`), the metrics
//! (`metrics.rs`), the per-origin connection limit (`origin_limit.rs`) and the cache's
//! fills and invalidations (`fills.rs`); [`HttpShared`] holds them with the cache, the
//! resolver and the access log. Any thread reads it; what changes is behind atomics or
//! short locks.

mod fills;
mod metrics;
mod origin_limit;
mod settings;

pub(crate) use fills::{Claim, Fill, Wake};
pub(crate) use metrics::HttpMetrics;
pub(crate) use origin_limit::{Admission, OriginSlot, OriginWaiter};
pub use settings::{HttpSettings, Live, Timeouts};

use fills::FillTable;
use iocore::eventsystem::EThread;
use iocore::Registry;
use origin_limit::OriginLimits;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Shared by all sessions of all ports.
pub struct HttpShared {
    /// Fixed settings.
    pub settings: HttpSettings,
    live: RwLock<Live>,
    /// Bumped by every `set_live`, so threads know their copy is out of date.
    live_generation: AtomicU64,
    pub(crate) metrics: HttpMetrics,
    pub(crate) registry: Arc<Registry>,
    draining: AtomicBool,
    cache: OnceLock<Arc<crate::cache::Cache>>,
    /// Fills in flight and recent invalidations.
    fills: Arc<FillTable>,
    /// Transactions in flight per origin address, for `Live::origin_max`.
    origins: OriginLimits,
    /// Tells this daemon's `HttpShared` from another one's in a thread's copy of the
    /// live settings (an address could be reused).
    id: u64,
    /// Looks up a forward proxy's origin names; started on first use.
    resolver: OnceLock<super::resolve::Resolver>,
    /// Runs background revalidations (`stale-while-revalidate`); started on first use.
    revalidator: OnceLock<super::revalidate::Revalidator>,
    /// The access log, when configured.
    access_log: OnceLock<crate::access_log::AccessLog>,
    /// Held while the cache's gauges are read and set: the event thread that changed
    /// RAM and the I/O thread that wrote the span both report, and without it the one
    /// that read the older state could set the gauges last.
    usage: std::sync::Mutex<()>,
}

/// The next [`HttpShared::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl HttpShared {
    /// Shared state counting into `registry`.
    pub fn new(settings: HttpSettings, live: Live, registry: Arc<Registry>) -> Arc<HttpShared> {
        Arc::new(HttpShared {
            metrics: HttpMetrics::new(&registry),
            settings,
            live: RwLock::new(live),
            live_generation: AtomicU64::new(0),
            registry,
            draining: AtomicBool::new(false),
            cache: OnceLock::new(),
            fills: Arc::default(),
            origins: OriginLimits::default(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            resolver: OnceLock::new(),
            revalidator: OnceLock::new(),
            access_log: OnceLock::new(),
            usage: std::sync::Mutex::new(()),
        })
    }

    /// Starts the access log at `path` (`proxy.config.log.access_log`); the error names
    /// the file.
    pub fn open_access_log(&self, path: &std::path::Path) -> crate::error::Result<()> {
        let log = crate::access_log::AccessLog::open(path, self.metrics.access_dropped.clone())?;
        let _ = self.access_log.set(log);
        Ok(())
    }

    /// The access log, if there is one.
    pub(crate) fn access_log(&self) -> Option<&crate::access_log::AccessLog> {
        self.access_log.get()
    }

    /// Writes out what the access log has queued (at a stop), waiting at most 2 s.
    pub fn flush_access_log(&self) {
        if let Some(log) = self.access_log.get() {
            log.flush(Duration::from_secs(2));
        }
    }

    /// Reopens the access log file (after it was renamed, for rotation).
    pub fn reopen_access_log(&self) {
        if let Some(log) = self.access_log.get() {
            log.reopen();
        }
    }

    /// The resolver threads (two: a slow name does not hold up the others), started the
    /// first time a name needs looking up.
    pub(crate) fn resolver(&self) -> &super::resolve::Resolver {
        self.resolver.get_or_init(|| {
            super::resolve::Resolver::new(2, super::remap::resolve, self.metrics.hostdb.clone())
        })
    }

    /// The background revalidation thread, started the first time a stale object is
    /// served while it revalidates.
    pub(crate) fn revalidator(&self) -> &super::revalidate::Revalidator {
        self.revalidator.get_or_init(|| {
            let done = self.metrics.revalidated_in_background.clone();
            super::revalidate::Revalidator::new(move |outcome| {
                if outcome != super::revalidate::Outcome::Failed {
                    done.inc();
                }
            })
        })
    }

    /// The live settings now (cheap: two `Arc` clones).
    pub fn live(&self) -> Live {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` with the live settings through this thread's copy, refreshed only when a
    /// reload changed them: the request path reads one shared atomic and takes no lock.
    pub fn with_live<R>(&self, f: impl FnOnce(&Live) -> R) -> R {
        thread_local! {
            static COPY: std::cell::RefCell<Option<(u64, u64, Live)>> = const { std::cell::RefCell::new(None) };
        }
        let me = self.id;
        let generation = self.live_generation.load(Ordering::Acquire);
        COPY.with(|c| {
            let mut c = c.borrow_mut();
            if !matches!(&*c, Some((who, g, _)) if *who == me && *g == generation) {
                *c = Some((me, generation, self.live()));
            }
            f(&c.as_ref().expect("just filled").2)
        })
    }

    /// Replaces the live settings (reload).
    pub fn set_live(&self, live: Live) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = live;
        self.live_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Makes the cache available to sessions (once, when it is ready).
    pub fn install_cache(self: &Arc<Self>, cache: Arc<crate::cache::Cache>) {
        // Disk writes land on the spans' I/O threads after the put: refresh then too.
        let me = Arc::downgrade(self);
        cache.on_disk_change(move || {
            if let Some(shared) = me.upgrade() {
                shared.note_cache_usage();
            }
        });
        let _ = self.cache.set(cache);
        self.note_cache_usage();
    }

    /// Refreshes the cache usage gauges: per span (in configured order of the spans
    /// online), the RAM cache, and the total on disk.
    pub(crate) fn note_cache_usage(&self) {
        let Some(cache) = self.cache.get() else {
            return;
        };
        let _one_at_a_time = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let r = &self.registry;
        let mut total = 0;
        for (i, (_, objects, used, capacity)) in cache.span_stats().into_iter().enumerate() {
            r.gauge(&format!("proxy.process.cache.span.{i}.bytes_used"))
                .set(used as i64);
            r.gauge(&format!("proxy.process.cache.span.{i}.objects"))
                .set(objects as i64);
            r.gauge(&format!("proxy.process.cache.span.{i}.capacity"))
                .set(capacity as i64);
            total += used;
        }
        r.gauge("proxy.process.cache.bytes_used").set(total as i64);
        // A counter (writes are shed, never unshed): what the cache counted since the
        // last report is added, under the lock above, so it only ever rises.
        let shed = r.counter("proxy.process.cache.writes_shed");
        shed.add(cache.writes_shed().saturating_sub(shed.get()));
        r.gauge("proxy.process.cache.ram_cache.bytes_used")
            .set(cache.ram().bytes() as i64);
        r.gauge("proxy.process.cache.ram_cache.objects")
            .set(cache.ram().len() as i64);
    }

    /// Whether the cache finished opening (with or without spans).
    pub fn cache_ready(&self) -> bool {
        self.cache.get().is_some()
    }

    /// The cache, once it finished opening.
    pub fn cache_store(&self) -> Option<Arc<crate::cache::Cache>> {
        self.cache.get().cloned()
    }

    /// Waits until every cache write queued so far is on its span's device.
    ///
    /// # Errors
    ///
    /// The first span whose flush failed.
    pub fn flush_cache(&self) -> std::io::Result<()> {
        self.cache.get().map_or(Ok(()), |c| c.sync())
    }

    /// The cache, once it is ready (and when HTTP caching is on).
    pub(crate) fn cache(&self) -> Option<&Arc<crate::cache::Cache>> {
        if self.settings.cache_http {
            self.cache.get()
        } else {
            None
        }
    }

    /// What a miss for `key` may do: fill it, wait for the fill in flight, or fetch
    /// without filling because the last fill, not long ago, was not storable.
    pub(crate) fn claim_fill(&self, key: &str) -> Claim {
        self.fills.claim(key)
    }

    /// Whether the last revalidation of `key` failed at its origin just now.
    pub(crate) fn revalidation_failed_recently(&self, key: &str) -> bool {
        self.fills.failed_recently(key)
    }

    /// The error the last fill of `key` met just now when its origin could not be
    /// reached, for the requests that waited for it.
    pub(crate) fn fill_unreachable(&self, key: &str) -> Option<crate::error::ErrorKind> {
        self.fills.unreachable(key)
    }

    /// Has `wake` run when the fill of `key` ends; false if it already did.
    pub(crate) fn wait_for_fill(&self, key: &str, wake: Wake) -> bool {
        self.fills.wait(key, wake)
    }

    /// Records that `key` was invalidated now (see [`FillTable::note_invalidation`]).
    pub(crate) fn note_invalidation(&self, key: &str) {
        self.fills.note_invalidation(key);
    }

    /// Whether `key` was invalidated after `began`.
    pub(crate) fn invalidated_since(&self, key: &str, began: Instant) -> bool {
        self.fills.invalidated_since(key, began)
    }

    /// Takes `n` bytes of the fills' read-ahead budget (`cache.fill_read_ahead`) for a
    /// fill to read its origin ahead of its client; false (and counted) when it is spent. Give them back with
    /// [`HttpShared::return_read_ahead`].
    pub(crate) fn lease_read_ahead(&self, n: usize) -> bool {
        let m = &self.metrics;
        let budget = i64::try_from(self.settings.fill_read_ahead).unwrap_or(i64::MAX);
        if m.fill_read_ahead.add(n as i64) <= budget {
            return true;
        }
        m.fill_read_ahead.add(-(n as i64));
        m.fill_read_ahead_refused.inc();
        false
    }

    /// Gives back `n` bytes taken with [`HttpShared::lease_read_ahead`].
    pub(crate) fn return_read_ahead(&self, n: usize) {
        self.metrics.fill_read_ahead.add(-(n as i64));
    }

    /// A new request's place among the `max` transactions in flight to `addr` (0: no
    /// limit), or its turn to wait on `t` until `resume` (run there when a place may be
    /// free) gives it one.
    pub(crate) fn origin_slot(
        &self,
        addr: std::net::SocketAddr,
        max: usize,
        t: &EThread,
        resume: fn(&mut EThread),
    ) -> Admission {
        self.origins.admit(addr, max, t, resume)
    }

    /// Shutting down: finish transactions, keep no connection alive.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Transactions in flight (request received, response not yet complete).
    pub fn active_transactions(&self) -> i64 {
        self.metrics.active_transactions.get()
    }
}
