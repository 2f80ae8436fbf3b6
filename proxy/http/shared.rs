//! What every HTTP session shares: live-reloadable rules, timeouts and metrics.

use super::remap::RemapTable;
use iocore::eventsystem::{EThread, ThreadRef};
use iocore::stats::{Counter, Gauge, Histogram};
use iocore::Registry;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Timeouts of SPEC §3, as durations.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// A new connection that sends nothing (or not a whole head) is closed.
    pub accept_no_activity: Duration,
    /// Idle keep-alive client connections are closed.
    pub keep_alive_in: Duration,
    /// Idle pooled origin connections are closed.
    pub keep_alive_out: Duration,
    /// Origin silent this long → 504.
    pub transaction_no_activity_out: Duration,
    /// Client silent this long mid-body → 408.
    pub transaction_no_activity_in: Duration,
    /// Origin connect limit → 502.
    pub connect: Duration,
    /// Any connection idle this long is closed (tunnels, slow bodies).
    pub default_inactivity: Duration,
}

/// The settings that a reload may change while sessions run.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// Remap rules.
    pub remap: Arc<RemapTable>,
    /// Who may read the stats endpoint.
    pub allow: Arc<Vec<config::IpNet>>,
    /// `per_server.connection.max`: transactions in flight to one origin address at
    /// most, over every thread; more wait for a place. 0: no limit.
    pub origin_max: usize,
    /// `connect_ports`: where a CONNECT may open a tunnel.
    pub connect_ports: Arc<config::ConnectPorts>,
}

/// HTTP metrics of SPEC §6.
pub struct HttpMetrics {
    pub(crate) current_client_connections: Arc<Gauge>,
    pub(crate) total_client_connections: Arc<Counter>,
    pub(crate) incoming_requests: Arc<Counter>,
    pub(crate) completed_requests: Arc<Counter>,
    pub(crate) active_transactions: Arc<Gauge>,
    pub(crate) by_class: [Arc<Counter>; 5],
    pub(crate) origin_connections_opened: Arc<Counter>,
    pub(crate) origin_connections_reused: Arc<Counter>,
    pub(crate) tunnels: Arc<Counter>,
    pub(crate) cache_hits: Arc<Counter>,
    pub(crate) cache_misses: Arc<Counter>,
    pub(crate) cache_disk_reads: Arc<Counter>,
    pub(crate) cache_writes: Arc<Counter>,
    pub(crate) cache_revalidated: Arc<Counter>,
    /// Objects removed because an unsafe request (PUT, POST, DELETE, …) to their URL
    /// got a non-error answer.
    pub(crate) cache_invalidations: Arc<Counter>,
    /// Requests that waited for a place under `per_server.connection.max`.
    pub(crate) origin_queued: Arc<Counter>,
    /// Requests waiting for one now.
    pub(crate) origin_queue: Arc<Gauge>,
    /// Requests that waited `connect_attempts_timeout` for one in vain (503).
    pub(crate) origin_queue_timeouts: Arc<Counter>,
    /// How long each queued request waited: until it got a place, or gave up (µs).
    pub(crate) origin_queue_wait_us: Arc<Histogram>,
    /// CONNECT tunnels established (answered 200).
    pub(crate) connect_tunnels: Arc<Counter>,
    /// Origin names looked up, and lookups failed.
    pub(crate) hostdb: super::resolve::ResolverStats,
    /// Access log lines dropped because the writer fell behind.
    pub(crate) access_dropped: Arc<Counter>,
    /// Accept to the first response byte written, per client connection (µs).
    pub(crate) first_byte_us: Arc<Histogram>,
}

impl HttpMetrics {
    fn new(r: &Registry) -> HttpMetrics {
        let p = "proxy.process.http";
        HttpMetrics {
            current_client_connections: r.gauge(&format!("{p}.current_client_connections")),
            total_client_connections: r.counter(&format!("{p}.total_client_connections")),
            incoming_requests: r.counter(&format!("{p}.incoming_requests")),
            completed_requests: r.counter(&format!("{p}.completed_requests")),
            active_transactions: r.gauge(&format!("{p}.current_active_transactions")),
            by_class: [1, 2, 3, 4, 5].map(|c| r.counter(&format!("{p}.{c}xx_responses"))),
            origin_connections_opened: r.counter(&format!("{p}.origin_connections_opened")),
            origin_connections_reused: r.counter(&format!("{p}.origin_connections_reused")),
            tunnels: r.counter("proxy.process.tunnel.total_connections"),
            cache_hits: r.counter("proxy.process.cache.hits"),
            cache_misses: r.counter("proxy.process.cache.misses"),
            cache_disk_reads: r.counter("proxy.process.cache.disk_reads"),
            first_byte_us: r.histogram(&format!("{p}.accept_to_first_byte_us")),
            cache_writes: r.counter("proxy.process.cache.writes"),
            cache_revalidated: r.counter("proxy.process.cache.revalidated"),
            cache_invalidations: r.counter("proxy.process.cache.invalidations"),
            origin_queued: r.counter(&format!("{p}.origin_requests_queued")),
            origin_queue: r.gauge(&format!("{p}.current_origin_queue")),
            origin_queue_timeouts: r.counter(&format!("{p}.origin_queue_timeouts")),
            origin_queue_wait_us: r.histogram(&format!("{p}.origin_queue_wait_us")),
            connect_tunnels: r.counter(&format!("{p}.connect_tunnels")),
            hostdb: super::resolve::ResolverStats {
                lookups: r.counter("proxy.process.hostdb.total_lookups"),
                failures: r.counter("proxy.process.hostdb.lookup_failures"),
            },
            access_dropped: r.counter("proxy.process.log.access_dropped"),
        }
    }

    pub(crate) fn count_status(&self, status: u16) {
        if let Some(c) = self.by_class.get((status / 100).wrapping_sub(1) as usize) {
            c.inc();
        }
    }
}

/// Settings fixed for the daemon's life.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Stats endpoint prefix (`/_stats`).
    pub stats_path: String,
    /// Request header section limit in bytes (→ 431).
    pub max_head: usize,
    /// false: absolute-form requests with no rule are forwarded (forward proxy).
    pub remap_required: bool,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// `server` in stats, e.g. `turnstile/0.1.0`.
    pub server: String,
    /// This proxy's `Via` entry: `1.1 {server}`.
    pub via: String,
    /// Forward request fields with `_` in their name (`http.underscores_in_headers`).
    pub underscores: bool,
    /// `proxy.config.http.cache.http`.
    pub cache_http: bool,
    /// Largest object stored, bytes (`cache.max_doc_size`, or a bound derived from the
    /// cache's size when that is 0); larger ones stream through uncached.
    pub max_doc_size: u64,
    /// Variants kept per URL (`cache.limits.http.max_alts`); 0 = no limit.
    pub max_alts: usize,
}

/// Shared by all sessions of all ports.
pub struct HttpShared {
    /// Fixed settings.
    pub settings: HttpSettings,
    live: RwLock<Live>,
    /// Bumped by every `set_live`, so threads know their copy is out of date.
    live_generation: std::sync::atomic::AtomicU64,
    pub(crate) metrics: HttpMetrics,
    pub(crate) registry: Arc<Registry>,
    draining: AtomicBool,
    cache: std::sync::OnceLock<Arc<crate::cache::Cache>>,
    fills: std::sync::Mutex<Fills>,
    /// Transactions in flight per origin address, for `Live::origin_max`: one entry per
    /// address ever limited (the remap targets, or a forward proxy's origins).
    origins: std::sync::Mutex<std::collections::HashMap<std::net::SocketAddr, Arc<OriginLoad>>>,
    /// Recent invalidations (`note_invalidation`).
    invalidated: std::sync::Mutex<Invalidations>,
    /// Looks up a forward proxy's origin names; started on first use.
    resolver: std::sync::OnceLock<super::resolve::Resolver>,
    /// The access log, when configured.
    access_log: std::sync::OnceLock<crate::access_log::AccessLog>,
}

/// When each recently invalidated key was, within bounds.
#[derive(Default)]
struct Invalidations {
    at: std::collections::HashMap<String, Instant>,
    /// Set when too many keys were invalidated too recently to remember each: every key
    /// counts as invalidated then.
    all: Option<Instant>,
}

impl Invalidations {
    fn note(&mut self, key: &str, now: Instant) {
        let recent = |at: &Instant| now.duration_since(*at) < INVALIDATION_MEMORY;
        if insert_bounded(&mut self.at, key, now, INVALIDATIONS_KEPT, recent) {
            self.all = Some(now);
        }
    }

    fn since(&self, key: &str, began: Instant) -> bool {
        self.all.is_some_and(|at| at > began) || self.at.get(key).is_some_and(|at| *at > began)
    }
}

/// Inserts `key` → `value` into a map kept under `max` entries: when full, the entries
/// `live` rejects go first, and if that is not enough, all of them (true: it came to
/// that, and the map now remembers only `key`).
fn insert_bounded(
    map: &mut std::collections::HashMap<String, Instant>,
    key: &str,
    value: Instant,
    max: usize,
    live: impl Fn(&Instant) -> bool,
) -> bool {
    let mut cleared = false;
    if map.len() >= max {
        map.retain(|_, v| live(v));
        if map.len() >= max {
            map.clear();
            cleared = true;
        }
    }
    map.insert(key.to_string(), value);
    cleared
}

/// How long an invalidation is remembered: a fetch that began before it and ends within
/// this long after it stores nothing.
const INVALIDATION_MEMORY: Duration = Duration::from_secs(600);
/// Keys remembered at most; beyond, the memory collapses into one "everything, now".
const INVALIDATIONS_KEPT: usize = 8192;

/// Transactions in flight to one origin address, and requests waiting for a place
/// among them, over every thread.
pub(crate) struct OriginLoad {
    busy: AtomicUsize,
    /// Requests waiting: `turns.len()`, readable without the lock.
    waiting: AtomicUsize,
    /// The limit as last asked for, to tell whether a place is free.
    max: AtomicUsize,
    /// The event thread of each waiting request, oldest first. Each thread serves its own
    /// waiters in arrival order, so the front names the thread of the oldest request.
    turns: Mutex<VecDeque<ThreadRef>>,
    /// Run on a waiter's thread to give places to its queued requests.
    resume: fn(&mut EThread),
}

impl OriginLoad {
    /// A place if fewer than `max` are in flight, and no request waits for one (unless
    /// `queued`: it is one of those waiting). Newcomers never pass the queue.
    fn take(self: &Arc<Self>, max: usize, queued: bool) -> Option<OriginSlot> {
        self.max.store(max, Ordering::SeqCst);
        if !queued && self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                (b < max).then_some(b + 1)
            })
            .ok()
            .map(|_| OriginSlot(self.clone()))
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, VecDeque<ThreadRef>> {
        self.turns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// If a request waits and a place is free, has the oldest waiter's thread hand it
    /// over. Runs on any thread, whenever one of the two may have become true: a place
    /// given back, a waiter gone, a waiter come (which closes the race with a place given
    /// back just before it was counted).
    fn wake_oldest(&self) {
        if self.waiting.load(Ordering::SeqCst) == 0
            || self.busy.load(Ordering::SeqCst) >= self.max.load(Ordering::SeqCst)
        {
            return;
        }
        let front = self.turns().front().cloned();
        if let Some(thread) = front {
            thread.run(self.resume);
        }
    }
}

/// A request waiting for a place at its origin, on the event thread it was counted for;
/// it leaves the queue when dropped.
pub(crate) struct OriginWaiter {
    load: Arc<OriginLoad>,
    thread: usize,
}

impl OriginWaiter {
    /// A place under `max` for this waiting request, if one is free now and the oldest
    /// waiting request is on this thread (each thread serves its own in order, so that is
    /// this one when its thread's queue asks for its front).
    pub(crate) fn take(&self, max: usize) -> Option<OriginSlot> {
        if self.load.turns().front().map(ThreadRef::id) != Some(self.thread) {
            return None;
        }
        self.load.take(max, true)
    }
}

impl Drop for OriginWaiter {
    fn drop(&mut self) {
        {
            let mut turns = self.load.turns();
            if let Some(i) = turns.iter().position(|t| t.id() == self.thread) {
                turns.remove(i);
            }
            self.load.waiting.store(turns.len(), Ordering::SeqCst);
        }
        // Served or given up: either way a place may be left for the next.
        self.load.wake_oldest();
    }
}

/// A transaction's place among the `Live::origin_max` in flight to its origin; given
/// back when dropped, to the oldest waiting request if any.
pub(crate) struct OriginSlot(Arc<OriginLoad>);

impl Drop for OriginSlot {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.0.wake_oldest();
    }
}

/// Cache fills in flight, and what the recent ones that stored nothing taught.
#[derive(Default)]
struct Fills {
    /// Keys some transaction is filling now.
    filling: std::collections::HashSet<String>,
    /// Keys whose last fill brought nothing storable, until when misses for them skip
    /// the fill (and the wait for it) and go to the origin side by side.
    unstorable: std::collections::HashMap<String, Instant>,
}

/// What a cache miss may do about filling its key ([`HttpShared::claim_fill`]).
pub(crate) enum Claim {
    /// Fetch and store it; others wait meanwhile.
    Fill(Fill),
    /// Another transaction is filling it: wait for that.
    InFlight,
    /// Its last fill stored nothing, not long ago: fetch without filling or waiting.
    Unstorable,
}

/// How long a key whose fill brought nothing storable is fetched without coalescing.
const UNSTORABLE_FOR: Duration = Duration::from_secs(10);
/// Keys remembered as unstorable at most (expired ones are dropped first).
const UNSTORABLE_MAX: usize = 10_000;

/// The right to fill one cache key: while it lives, other misses for the key wait.
/// Dropped without [`Fill::stored`], it marks the key unstorable for a while, so that
/// requests for a URL that is never cached (no freshness, `no-store`, too big) do not
/// queue behind each other's fills.
pub struct Fill {
    shared: Arc<HttpShared>,
    key: String,
    stored: bool,
}

impl Fill {
    /// The object was stored: the fill succeeded.
    pub fn stored(&mut self) {
        self.stored = true;
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        let mut fills = self.shared.fills();
        if !fills.filling.remove(&self.key) {
            return;
        }
        if self.stored {
            fills.unstorable.remove(&self.key);
            return;
        }
        let now = Instant::now();
        let unexpired = |until: &Instant| *until > now;
        insert_bounded(
            &mut fills.unstorable,
            &self.key,
            now + UNSTORABLE_FOR,
            UNSTORABLE_MAX,
            unexpired,
        );
    }
}

impl HttpShared {
    /// Shared state counting into `registry`.
    pub fn new(settings: HttpSettings, live: Live, registry: Arc<Registry>) -> Arc<HttpShared> {
        Arc::new(HttpShared {
            metrics: HttpMetrics::new(&registry),
            settings,
            live: RwLock::new(live),
            live_generation: std::sync::atomic::AtomicU64::new(0),
            registry,
            draining: AtomicBool::new(false),
            cache: std::sync::OnceLock::new(),
            fills: std::sync::Mutex::default(),
            origins: std::sync::Mutex::default(),
            invalidated: std::sync::Mutex::default(),
            resolver: std::sync::OnceLock::new(),
            access_log: std::sync::OnceLock::new(),
        })
    }

    /// Starts the access log at `path` (`proxy.config.log.access_log`); the error names
    /// the file.
    pub fn open_access_log(&self, path: &std::path::Path) -> Result<(), String> {
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

    /// The live settings now (cheap: two `Arc` clones).
    pub fn live(&self) -> Live {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` with the live settings through this thread's copy, refreshed only when a
    /// reload changed them: the request path reads one shared atomic and takes no lock.
    pub fn with_live<R>(&self, f: impl FnOnce(&Live) -> R) -> R {
        thread_local! {
            static COPY: std::cell::RefCell<Option<(usize, u64, Live)>> = const { std::cell::RefCell::new(None) };
        }
        let me = self as *const HttpShared as usize;
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
        r.gauge("proxy.process.cache.writes_shed")
            .set(cache.writes_shed() as i64);
        r.gauge("proxy.process.cache.ram_cache.bytes_used")
            .set(cache.ram().bytes() as i64);
        r.gauge("proxy.process.cache.ram_cache.objects")
            .set(cache.ram().len() as i64);
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

    fn fills(&self) -> std::sync::MutexGuard<'_, Fills> {
        self.fills.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a miss for `key` may do: fill it, wait for the fill in flight, or fetch
    /// without filling because the last fill, not long ago, stored nothing.
    pub(crate) fn claim_fill(self: &Arc<Self>, key: &str) -> Claim {
        let mut fills = self.fills();
        if fills
            .unstorable
            .get(key)
            .is_some_and(|until| *until > Instant::now())
        {
            return Claim::Unstorable;
        }
        if !fills.filling.insert(key.to_string()) {
            return Claim::InFlight;
        }
        Claim::Fill(Fill {
            shared: self.clone(),
            key: key.to_string(),
            stored: false,
        })
    }

    /// Records that `key` was invalidated now: fetches of it already under way must not
    /// store what they got (it may predate the change).
    /// Bounded: a write-heavy load that invalidates more keys than `INVALIDATIONS_KEPT`
    /// within `INVALIDATION_MEMORY` makes every fetch under way at that moment skip
    /// storing, rather than growing the memory.
    pub(crate) fn note_invalidation(&self, key: &str) {
        let mut inv = self.invalidated.lock().unwrap_or_else(|e| e.into_inner());
        inv.note(key, Instant::now());
    }

    /// Whether `key` was invalidated after `began`.
    pub(crate) fn invalidated_since(&self, key: &str, began: Instant) -> bool {
        let inv = self.invalidated.lock().unwrap_or_else(|e| e.into_inner());
        inv.since(key, began)
    }

    /// Whether some transaction is filling `key` now.
    pub(crate) fn fill_in_flight(&self, key: &str) -> bool {
        self.fills().filling.contains(key)
    }

    /// A new request's place among the `max` transactions in flight to `addr` (0: no
    /// limit): Ok(None) without a limit, Ok(slot) when one is free and nobody waits,
    /// else Err(waiter): it must wait on `t`, counted as waiting from now, until `resume`
    /// (run there when a place may be free) gives it one.
    pub(crate) fn origin_slot(
        &self,
        addr: std::net::SocketAddr,
        max: usize,
        t: &EThread,
        resume: fn(&mut EThread),
    ) -> Result<Option<OriginSlot>, OriginWaiter> {
        if max == 0 {
            return Ok(None);
        }
        let load = self
            .origins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(OriginLoad {
                    busy: AtomicUsize::new(0),
                    waiting: AtomicUsize::new(0),
                    max: AtomicUsize::new(max),
                    turns: Mutex::new(VecDeque::new()),
                    resume,
                })
            })
            .clone();
        if let Some(slot) = load.take(max, false) {
            return Ok(Some(slot));
        }
        {
            let mut turns = load.turns();
            turns.push_back(t.handle());
            load.waiting.store(turns.len(), Ordering::SeqCst);
        }
        load.wake_oldest();
        Err(OriginWaiter {
            load,
            thread: t.id(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_are_remembered_per_key_within_bounds() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut inv = Invalidations::default();
        inv.note("a", t1);
        assert!(inv.since("a", t0) && !inv.since("a", t1) && !inv.since("b", t0));
        // Old entries make room; young ones beyond the bound collapse into "all".
        let late = t1 + INVALIDATION_MEMORY + Duration::from_secs(1);
        for i in 0..INVALIDATIONS_KEPT {
            inv.note(&format!("k{i}"), late);
        }
        assert!(inv.at.len() <= INVALIDATIONS_KEPT && !inv.at.contains_key("a"));
        assert!(inv.all.is_none() && !inv.since("b", t1));
        inv.note("one more", late);
        assert!(inv.at.len() <= 1 && inv.all == Some(late));
        assert!(inv.since("b", t1) && !inv.since("b", late));
    }
}
