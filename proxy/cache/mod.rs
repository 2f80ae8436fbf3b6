//! The cache store: a RAM cache in front of the disk spans of
//! `proxy.config.cache.storage` (SPEC §5).
//!
//! [`Cache`] owns the [`RamCache`] and every span that initialised. Each key lives on one
//! span, chosen by rendezvous hashing of the key with the span's configured path: when a
//! span fails, only its own keys move, and an added span takes keys only for itself.
//! [`Cache::open`] initialises all spans at once, one thread each (`[CACHE INIT n]`);
//! [`open_async`] does the whole open on a `[CACHE INIT]` thread for the daemon's
//! `wait_for_cache` gate. The store knows nothing of HTTP: keys are strings, values bytes.
//!
//! # Epochs: spans that come back
//!
//! A span missing at a start (or released and not reopened mid-run, [`Cache::reattach`])
//! misses the changes made meanwhile: its keys are stored, replaced and purged on other
//! spans (or in RAM only). When it comes back, its objects may be older than what the
//! cache said meanwhile, and are dropped. To tell, every span's header holds an epoch
//! ([`Span::epoch`]): the spans in use carry the newest one, and whenever the cache runs
//! without one of its configured spans, the others move to a new epoch before any change
//! is made. A span whose epoch is older than another's at a start missed part of the
//! cache's life and is emptied ([`Span::clear`]). When every span is there throughout,
//! no header is written and nothing is dropped. The spans judge each other: a span
//! that comes back while every span that ran without it is missing cannot tell.
//!
//! The other spans meanwhile took the keys that moved off the missing span; those keys
//! go back to it on its return, and their copies left behind would come back out of date
//! when it goes missing again. So at each start, a span removes (with tombstones, from
//! its I/O thread) every key whose home is now another span.
//!
//! Disk I/O runs on one `[CACHE I/O n]` thread per span (`io.rs`), never on the caller's
//! thread: [`Cache::lookup`] answers from RAM at once or hands back the disk read to
//! queue ([`DiskRead::then`]), which calls back, and [`Cache::put`] / [`Cache::remove`] change RAM at once and queue the disk
//! write. [`Cache::get`] and [`Cache::sync`] wait for the I/O thread, for callers that may
//! block (tests, start-up, shutdown).

#![deny(missing_docs)]

mod crc;
mod io;
pub mod ram;
pub mod span;

pub use ram::RamCache;
pub use span::{Span, SpanError, SpanErrorKind};

use crate::error::{Error, ErrorKind, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

/// The outcome of initialising one configured span.
#[derive(Debug)]
pub struct SpanStatus {
    /// The path as configured.
    pub path: PathBuf,
    /// Objects and bytes found on it, or why it failed (it is then left out of the cache):
    /// the reason alone, without the path.
    pub result: Result<(usize, u64)>,
    /// How long initialisation took.
    pub elapsed: Duration,
}

/// RAM cache and disk spans together.
pub struct Cache {
    ram: Arc<RamCache>,
    spans: Vec<Online>,
    observer: io::Observer,
    /// Whether every configured span is in use (they all opened at start).
    complete: bool,
    /// Keys stored or removed while their span was released (an upgrade in progress), or
    /// had not come back from one: the span's copy of each is out of date.
    missed: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("ram", &self.ram)
            .field("spans", &self.spans)
            .finish_non_exhaustive()
    }
}

/// A span that initialised. Its disk is None while released to another process (an
/// upgrade's new one): the key still maps to it, and is served from RAM or not at all.
#[derive(Debug)]
struct Online {
    configured: PathBuf,
    /// Configured size, to open it again.
    size: u64,
    /// Hash of the configured path, the span's identity in rendezvous hashing.
    seed: u64,
    disk: RwLock<Option<Arc<Disk>>>,
}

/// An open span with its I/O thread.
#[derive(Debug)]
struct Disk {
    span: Arc<Span>,
    io: io::SpanIo,
}

impl Online {
    fn disk(&self) -> Option<Arc<Disk>> {
        self.disk
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What [`Cache::lookup`] found.
#[derive(Debug)]
#[must_use]
pub enum Lookup<'a> {
    /// Answered at once: the value from RAM, or None when no span holds the key.
    Done(Option<Arc<[u8]>>),
    /// Only the key's span can tell: [`DiskRead::then`] queues the read.
    Disk(DiskRead<'a>),
}

/// A read of one key from its span, not queued yet.
#[derive(Debug)]
#[must_use]
pub struct DiskRead<'a> {
    disk: Arc<Disk>,
    key: &'a str,
    seen: u64,
}

impl DiskRead<'_> {
    /// Queues the read on the span's I/O thread, which keeps the value in RAM (unless
    /// the key changed since the lookup) and then calls `done` with it, there (or at
    /// once with None, here, when the span was released meanwhile).
    pub fn then(self, done: impl FnOnce(Option<Arc<[u8]>>) + Send + 'static) {
        self.disk.io.read(self.key, self.seen, Box::new(done));
    }
}

impl Cache {
    /// Opens every span of `spans` (path, size in bytes) concurrently, one thread each,
    /// and returns the cache of those that opened, with one status per configured span in
    /// the same order. With no spans, the cache holds objects in RAM only.
    pub fn open(spans: &[(PathBuf, u64)], ram_bytes: u64) -> (Cache, Vec<SpanStatus>) {
        let mut opened: Vec<(Result<Span>, Duration)> = thread::scope(|s| {
            let handles: Vec<_> = spans
                .iter()
                .enumerate()
                .map(|(i, (path, size))| {
                    thread::Builder::new()
                        .name(format!("[CACHE INIT {i}]"))
                        .spawn_scoped(s, move || timed_open(path, *size))
                        .ok()
                })
                .collect();
            handles
                .into_iter()
                .zip(spans)
                .map(|(handle, (path, size))| match handle {
                    Some(h) => h.join().unwrap_or_else(|_| {
                        let e = Error::config("initialisation panicked");
                        (Err(e), Duration::ZERO)
                    }),
                    // No thread to be had: open it here, slower but still correct.
                    None => timed_open(path, *size),
                })
                .collect()
        });

        let complete = settle_epochs(opened.iter_mut().map(|(r, _)| r), true);
        let ram = Arc::new(RamCache::new(ram_bytes));
        let observer = io::Observer::default();
        let mut statuses = Vec::with_capacity(spans.len());
        let mut online = Vec::new();
        let mut disks = Vec::new();
        for ((path, size), (result, elapsed)) in spans.iter().zip(opened) {
            let result = result.and_then(|span| {
                let stats = (span.len(), span.bytes_used());
                let disk = Arc::new(Disk::start(online.len(), span, &ram, &observer)?);
                online.push(Online {
                    configured: path.clone(),
                    size: *size,
                    seed: fnv1a(path.as_os_str().as_encoded_bytes()),
                    disk: RwLock::new(Some(disk.clone())),
                });
                disks.push(disk);
                Ok(stats)
            });
            statuses.push(SpanStatus {
                path: path.clone(),
                result,
                elapsed,
            });
        }
        let cache = Cache {
            ram,
            spans: online,
            observer,
            complete,
            missed: Mutex::new(HashSet::new()),
        };
        for (i, disk) in disks.iter().enumerate() {
            cache.drop_strays(i, disk);
        }
        (cache, statuses)
    }

    /// The value under `key` from RAM, or a miss known from the span's in-memory index,
    /// or else the disk read to queue. Never waits for the disk.
    pub fn lookup<'a>(&'a self, key: &'a str) -> Lookup<'a> {
        // Taken before RAM is looked at: a put or remove of `key` from now on wins over
        // what the disk read brings back.
        let seen = self.ram.clock();
        if let Some(v) = self.ram.get(key) {
            return Lookup::Done(Some(v));
        }
        match self.span_for(key).and_then(Online::disk) {
            // A miss known without the disk: no change queued, and the index (in memory)
            // does not have the key.
            Some(d) if d.io.settled() && !d.span.contains(key) => Lookup::Done(None),
            Some(disk) => Lookup::Disk(DiskRead { disk, key, seen }),
            None => Lookup::Done(None),
        }
    }

    /// The value under `key`, as [`lookup`](Self::lookup), waiting for the disk read if
    /// there is one: for threads that may block, never an event thread.
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        match self.lookup(key) {
            Lookup::Done(v) => v,
            Lookup::Disk(read) => {
                let (tx, rx) = std::sync::mpsc::channel();
                read.then(move |v| {
                    let _ = tx.send(v);
                });
                rx.recv().ok().flatten()
            }
        }
    }

    /// Stores `value` under `key`: in RAM at once, on the key's span by its I/O thread.
    /// False when it is stored nowhere: RAM cannot hold it, and the span neither (its
    /// record would not fit, the write was shed, or the span is released). A span that
    /// does not take it, or a disk failure (logged), leaves the object in RAM only; any
    /// older value on disk is then removed so that it cannot come back once RAM lets the
    /// new one go.
    pub fn put(&self, key: &str, value: &[u8]) -> bool {
        let value: Arc<[u8]> = Arc::from(value);
        // The disk write is queued before RAM changes. A read queued before the write
        // took its `seen` before the RAM change, so what it brings back is not promoted
        // over it; a read whose `seen` is after the RAM change was queued after the
        // write, so it reads the new value. (RAM first would let a read slip in between
        // and promote the old value over a new one too big for RAM.)
        let on_disk = self
            .change(key, |d| {
                if d.span.fits(key, value.len() as u64) {
                    d.io.write(key, value.clone())
                } else {
                    log::debug!("cache: {key:?} not stored on disk: its record does not fit");
                    d.io.remove(key);
                    false
                }
            })
            .unwrap_or(false);
        let in_ram = self.ram.put(key, value);
        self.changed();
        on_disk || in_ram
    }

    /// Whether `key` is stored: in RAM, or in its span's index (writes and removals
    /// still queued count as done).
    pub fn contains(&self, key: &str) -> bool {
        self.ram.get(key).is_some()
            || self
                .span_for(key)
                .and_then(Online::disk)
                .is_some_and(|d| d.span.contains(key) && !d.io.removing(key))
    }

    /// Removes `key` from RAM at once and from its span by the span's I/O thread (the
    /// removal is queued first, as in [`put`](Self::put)).
    pub fn remove(&self, key: &str) {
        self.change(key, |d| d.io.remove(key));
        self.ram.remove(key);
        self.changed();
    }

    /// Queues a change of `key` on its span's I/O thread, or notes the key as missed
    /// while the span is released (its disk is another process's, or not back, and holds
    /// the old state). Holds the span's lock meanwhile, so that a release or reattach
    /// never comes between the check and the queueing.
    /// What `queue` returned: None when the key has no span or its span is released.
    fn change<R>(&self, key: &str, queue: impl FnOnce(&Disk) -> R) -> Option<R> {
        let s = self.span_for(key)?;
        match &*s.disk.read().unwrap_or_else(PoisonError::into_inner) {
            Some(d) => Some(queue(d)),
            None => {
                lock(&self.missed).insert(key.to_string());
                None
            }
        }
    }

    /// Queues the removal from span `i` (on `disk`) of every key whose home is another
    /// span (see "Epochs" in the module doc).
    fn drop_strays(&self, i: usize, disk: &Disk) {
        let home = &self.spans[i];
        let strays: Vec<_> = disk
            .span
            .keys()
            .into_iter()
            .filter(|k| !self.span_for(k).is_some_and(|s| std::ptr::eq(s, home)))
            .collect();
        if !strays.is_empty() {
            log::info!(
                "cache span {}: {} objects whose keys belong to another span now are removed",
                home.configured.display(),
                strays.len()
            );
        }
        for k in &strays {
            disk.io.remove(k);
        }
    }

    /// Stops using the disk (an upgrade hands the spans to the next process): each span's
    /// queued writes land, its I/O thread ends, the file is flushed and its lock given up.
    /// From then on the cache answers from RAM only, stores in RAM only, and notes the
    /// keys it stores or removes for [`Cache::take_missed`]. Returns the spans released.
    pub fn release(&self) -> usize {
        let mut n = 0;
        for s in &self.spans {
            let Some(disk) = s
                .disk
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            else {
                continue;
            };
            // Ends the thread: nothing of this process touches the span after this.
            disk.io.stop();
            if let Err(e) = disk.span.release() {
                log::warn!("cache span {}: releasing it: {e}", s.configured.display());
            }
            n += 1;
        }
        n
    }

    /// Opens the released spans again (the upgrade that took them failed, and its
    /// process has exited): their index is rebuilt from what is on disk now, their epochs
    /// are settled as at a start (the new process may have run without some), and the
    /// copies of the keys stored or removed meanwhile are removed from them (RAM holds
    /// what the cache said since). A span that does not open stays away, and the others
    /// move to a new epoch, so that it is emptied if it comes back at a later start.
    /// Blocks while the spans open: call it off the event threads. Returns the status of
    /// each span reopened.
    pub fn reattach(&self) -> Vec<SpanStatus> {
        let away: Vec<usize> = (0..self.spans.len())
            .filter(|&i| self.spans[i].disk().is_none())
            .collect();
        let mut opened: Vec<(Result<Span>, Duration)> = away
            .iter()
            .map(|&i| reopen(&self.spans[i].configured, self.spans[i].size))
            .collect();
        settle_epochs(opened.iter_mut().map(|(r, _)| r), self.complete);
        let mut statuses = Vec::new();
        for (&i, (opened, elapsed)) in away.iter().zip(opened) {
            let s = &self.spans[i];
            let result = opened.and_then(|span| {
                let stats = (span.len(), span.bytes_used());
                let disk = Disk::start(i, span, &self.ram, &self.observer)?;
                self.drop_strays(i, &disk);
                // Queued before the disk is in use, and with its lock held, so that no
                // read of an out-of-date copy comes first and no change is noted after.
                let mut slot = s.disk.write().unwrap_or_else(PoisonError::into_inner);
                lock(&self.missed).retain(|key| {
                    let here = self.span_for(key).is_some_and(|h| std::ptr::eq(h, s));
                    if here {
                        disk.io.remove(key);
                    }
                    !here
                });
                *slot = Some(Arc::new(disk));
                Ok(stats)
            });
            statuses.push(SpanStatus {
                path: s.configured.clone(),
                result,
                elapsed,
            });
        }
        statuses
    }

    /// Keys stored or removed while their span was released (see [`Cache::release`]):
    /// the copies on the span are out of date, and the process now holding the spans
    /// should remove them.
    pub fn take_missed(&self) -> Vec<String> {
        lock(&self.missed).drain().collect()
    }

    /// Sets `f` to be called after each change, e.g. to refresh usage gauges: once a
    /// [`put`](Self::put) or [`remove`](Self::remove) has changed RAM (on the caller's
    /// thread), and once its write or removal has reached the span (on the span's I/O
    /// thread); and once a disk read has put its value into RAM (on the I/O thread). The
    /// span may be done first: the call after the RAM change is what makes the RAM
    /// figures exact then. Only the first call counts.
    pub fn on_disk_change(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(f));
    }

    /// Tells the observer set by [`on_disk_change`](Self::on_disk_change) of a change.
    fn changed(&self) {
        if let Some(f) = self.observer.get() {
            f();
        }
    }

    /// Writes that went to RAM only because their span's queue was full (a slow disk).
    pub fn writes_shed(&self) -> u64 {
        self.spans
            .iter()
            .filter_map(Online::disk)
            .map(|d| d.io.shed())
            .sum()
    }

    /// Spans in use.
    pub fn spans_online(&self) -> usize {
        self.spans.len()
    }

    /// Per span in use: configured path, objects, bytes used, capacity in bytes.
    pub fn span_stats(&self) -> Vec<(PathBuf, usize, u64, u64)> {
        self.spans
            .iter()
            .filter_map(|s| {
                let d = s.disk()?;
                Some((
                    s.configured.clone(),
                    d.span.len(),
                    d.span.bytes_used(),
                    d.span.capacity(),
                ))
            })
            .collect()
    }

    /// The RAM cache.
    pub fn ram(&self) -> &RamCache {
        &self.ram
    }

    /// Waits until every write queued so far is on its span's device.
    ///
    /// # Errors
    ///
    /// The first span whose flush fails.
    pub fn sync(&self) -> std::io::Result<()> {
        self.spans
            .iter()
            .filter_map(Online::disk)
            .try_for_each(|d| d.io.sync())
    }

    /// The span holding `key`: the one whose seed scores highest with the key.
    fn span_for(&self, key: &str) -> Option<&Online> {
        let k = fnv1a(key.as_bytes());
        self.spans.iter().max_by_key(|s| mix64(k ^ s.seed))
    }
}

/// The largest value [`Cache::put`] keeps anywhere, for spans of `span_sizes` bytes and a
/// RAM cache of `ram_bytes`. With spans, a value goes to its key's span (any of them) and
/// need not fit in RAM (a value larger than the RAM cache is read from disk on each
/// hit): it must fit in one record of the smallest span and in a span's write queue, or
/// the write never lands. Without spans, RAM is the only store: it must fit there.
pub fn largest_value(span_sizes: &[u64], ram_bytes: u64) -> u64 {
    match span_sizes.iter().min() {
        Some(&smallest) => span::largest_value(smallest).min(io::MAX_QUEUED_BYTES as u64),
        None => ram_bytes,
    }
}

/// Opens the cache like [`Cache::open`] on a thread named `[CACHE INIT]`, then calls
/// `done` on that thread.
///
/// # Errors
///
/// Fails only if the thread cannot be started; `done` is then never called.
pub fn open_async<F>(
    spans: Vec<(PathBuf, u64)>,
    ram_bytes: u64,
    done: F,
) -> std::io::Result<thread::JoinHandle<()>>
where
    F: FnOnce(Arc<Cache>, Vec<SpanStatus>) + Send + 'static,
{
    thread::Builder::new()
        .name("[CACHE INIT]".to_string())
        .spawn(move || {
            let (cache, statuses) = Cache::open(&spans, ram_bytes);
            done(Arc::new(cache), statuses);
        })
}

impl Disk {
    /// The span with its I/O thread `[CACHE I/O index]` started.
    fn start(
        index: usize,
        span: Span,
        ram: &Arc<RamCache>,
        observer: &io::Observer,
    ) -> Result<Disk> {
        let span = Arc::new(span);
        let io = io::SpanIo::start(index, span.clone(), ram.clone(), observer.clone())
            .map_err(|e| Error::io("cannot start its I/O thread", &e))?;
        Ok(Disk { span, io })
    }
}

/// Settles the epochs of spans opened together, before any change reaches them (see
/// "Epochs" in the module doc): with every configured span there (`complete`, and none
/// of `spans` failed) the newest epoch stays; otherwise the spans with the newest move
/// to a new one. Spans with an older epoch are emptied. A span whose header cannot be
/// written fails. Writes nothing when every span is there with the same epoch. Returns
/// whether every configured span is in use. Runs on the thread that opened the spans (a
/// `[CACHE INIT]` one in the daemon), before their I/O threads start.
fn settle_epochs<'a>(spans: impl Iterator<Item = &'a mut Result<Span>>, complete: bool) -> bool {
    let mut spans: Vec<&mut Result<Span>> = spans.collect();
    'settle: loop {
        let complete = complete && spans.iter().all(|r| r.is_ok());
        let ok = |r: &&mut Result<Span>| r.as_ref().ok().map(Span::epoch);
        let newest = spans.iter().filter_map(ok).max().unwrap_or(0);
        let epoch = if complete { newest } else { newest + 1 };
        // The up-to-date spans first: should this stop half-way (a crash), no span that
        // missed the newest epoch is left holding it.
        for stale in [false, true] {
            for r in spans.iter_mut() {
                let Ok(span) = &mut **r else {
                    continue;
                };
                let was = span.epoch();
                if was == epoch || (was < newest) != stale {
                    continue;
                }
                let written = if stale {
                    let objects = span.len();
                    span.clear(epoch).inspect(|()| {
                        if objects > 0 {
                            log::warn!(
                                "cache span {}: the cache ran without it (its epoch {was}, another's {newest}): its {objects} objects are dropped, as they may be older than what the cache holds",
                                span.path().display()
                            )
                        }
                    })
                } else {
                    span.set_epoch(epoch)
                };
                if let Err(e) = written {
                    **r = Err(Error::io("cannot write its header", &e));
                    continue 'settle;
                }
            }
        }
        return complete;
    }
}

fn timed_open(path: &Path, size: u64) -> (Result<Span>, Duration) {
    let t = Instant::now();
    let r = Span::open(path, size).map_err(|e| span_failure(&e));
    (r, t.elapsed())
}

/// How long [`Cache::reattach`] tries a span that another process still has locked.
const REOPEN_LOCKED_FOR: Duration = Duration::from_secs(30);

/// [`timed_open`] for a span released to a new process that failed: the lock of a
/// process of that upgrade may outlive the one waited for (a wrapper's child, killed
/// with its group, still exiting), so a span still locked is tried again every 50 ms
/// for up to [`REOPEN_LOCKED_FOR`].
fn reopen(path: &Path, size: u64) -> (Result<Span>, Duration) {
    let t = Instant::now();
    let mut said = false;
    loop {
        match Span::open(path, size) {
            Err(e) if matches!(e.kind(), SpanErrorKind::Locked) => {
                if t.elapsed() >= REOPEN_LOCKED_FOR {
                    return (Err(span_failure(&e)), t.elapsed());
                }
                if !said {
                    said = true;
                    log::warn!(
                        "cache span {}: still locked by another process; trying again for up to {} s",
                        path.display(),
                        REOPEN_LOCKED_FOR.as_secs()
                    );
                }
                thread::sleep(Duration::from_millis(50));
            }
            r => return (r.map_err(|e| span_failure(&e)), t.elapsed()),
        }
    }
}

/// Why a span did not open, without its path (the status names it): an I/O error of
/// the span file, or a span that is not usable as configured.
fn span_failure(e: &SpanError) -> Error {
    let kind = match e.kind() {
        SpanErrorKind::Open(io) | SpanErrorKind::Io(io) => ErrorKind::Io(io.kind()),
        _ => ErrorKind::Config,
    };
    Error::new(kind).context(e.reason())
}

/// Locks `m`, going on with the data of a holder that panicked: every structure here
/// stays valid between statements, and a cache that stops working is worse.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// 64-bit FNV-1a: stable across runs and builds, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The splitmix64 finaliser, so that nearby inputs score independently.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
