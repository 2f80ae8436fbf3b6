//! The cache store: a RAM cache in front of the disk spans of
//! `proxy.config.cache.storage` (SPEC §5).
//!
//! [`Cache`] owns the [`RamCache`] and every span that initialised. Each key lives on one
//! span, chosen by rendezvous hashing of the key with the span's configured path: when a
//! span fails, only its own keys move, and an added span takes keys only for itself.
//! [`Cache::open`] initialises all spans at once, one thread each (`[CACHE INIT n]`);
//! [`open_async`] does the whole open on a `[CACHE INIT]` thread for the daemon's
//! `wait_for_cache` gate. The store knows nothing of HTTP: keys are strings, values bytes.

#![deny(missing_docs)]

mod crc;
pub mod ram;
pub mod span;

pub use ram::RamCache;
pub use span::{Span, SpanError, SpanErrorKind};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The outcome of initialising one configured span.
#[derive(Debug)]
pub struct SpanStatus {
    /// The path as configured.
    pub path: PathBuf,
    /// Objects and bytes found on it, or why it failed (it is then left out of the cache).
    pub result: Result<(usize, u64), String>,
    /// How long initialisation took.
    pub elapsed: Duration,
}

/// RAM cache and disk spans together.
#[derive(Debug)]
pub struct Cache {
    ram: RamCache,
    spans: Vec<Online>,
}

/// A span that initialised.
#[derive(Debug)]
struct Online {
    configured: PathBuf,
    /// Hash of the configured path, the span's identity in rendezvous hashing.
    seed: u64,
    span: Span,
}

impl Cache {
    /// Opens every span of `spans` (path, size in bytes) concurrently, one thread each,
    /// and returns the cache of those that opened, with one status per configured span in
    /// the same order. With no spans, the cache holds objects in RAM only.
    pub fn open(spans: &[(PathBuf, u64)], ram_bytes: u64) -> (Cache, Vec<SpanStatus>) {
        let opened: Vec<(Result<Span, String>, Duration)> = thread::scope(|s| {
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
                        let e = "initialisation panicked".to_string();
                        (Err(e), Duration::ZERO)
                    }),
                    // No thread to be had: open it here, slower but still correct.
                    None => timed_open(path, *size),
                })
                .collect()
        });

        let mut statuses = Vec::with_capacity(spans.len());
        let mut online = Vec::new();
        for ((path, _), (result, elapsed)) in spans.iter().zip(opened) {
            let result = result.map(|span| {
                let stats = (span.len(), span.bytes_used());
                online.push(Online {
                    configured: path.clone(),
                    seed: fnv1a(path.as_os_str().as_encoded_bytes()),
                    span,
                });
                stats
            });
            statuses.push(SpanStatus {
                path: path.clone(),
                result,
                elapsed,
            });
        }
        let cache = Cache {
            ram: RamCache::new(ram_bytes),
            spans: online,
        };
        (cache, statuses)
    }

    /// The value under `key`: from RAM, else from the key's span, then kept in RAM.
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let seen = self.ram.clock();
        if let Some(v) = self.ram.get(key) {
            return Some(v);
        }
        let value: Arc<[u8]> = Arc::from(self.span_for(key)?.span.get(key)?);
        // Not if a put or remove of `key` ran while we read the disk: RAM would then
        // hold an older value than the disk, or a removed one.
        self.ram.promote(key, value.clone(), seen);
        Some(value)
    }

    /// Stores `value` under `key` in RAM and on the key's span. A disk failure is logged
    /// and leaves the object in RAM only; any older value on disk is removed so that it
    /// cannot come back once RAM lets the new one go.
    pub fn put(&self, key: &str, value: &[u8]) {
        // Disk first, then RAM: see `get` for why the RAM change must come last.
        if let Some(s) = self.span_for(key) {
            if let Err(e) = s.span.put(key, value) {
                if e.kind() == io::ErrorKind::InvalidInput {
                    log::debug!("cache: {key:?} not stored on disk: {e}");
                }
                if let Err(e) = s.span.remove(key) {
                    log::debug!("cache: cannot remove {key:?} after a failed put: {e}");
                }
            }
        }
        self.ram.put(key, Arc::from(value));
    }

    /// Removes `key` from RAM and disk.
    pub fn remove(&self, key: &str) {
        if let Some(s) = self.span_for(key) {
            if let Err(e) = s.span.remove(key) {
                log::debug!("cache: tombstone for {key:?} not written: {e}");
            }
        }
        self.ram.remove(key);
    }

    /// Spans in use.
    pub fn spans_online(&self) -> usize {
        self.spans.len()
    }

    /// Per span in use: configured path, objects, bytes used, capacity in bytes.
    pub fn span_stats(&self) -> Vec<(PathBuf, usize, u64, u64)> {
        self.spans
            .iter()
            .map(|s| {
                (
                    s.configured.clone(),
                    s.span.len(),
                    s.span.bytes_used(),
                    s.span.capacity(),
                )
            })
            .collect()
    }

    /// The RAM cache.
    pub fn ram(&self) -> &RamCache {
        &self.ram
    }

    /// Flushes every span's written records to its device.
    ///
    /// # Errors
    ///
    /// The first span whose flush fails.
    pub fn sync(&self) -> io::Result<()> {
        self.spans.iter().try_for_each(|s| s.span.sync())
    }

    /// The span holding `key`: the one whose seed scores highest with the key.
    fn span_for(&self, key: &str) -> Option<&Online> {
        let k = fnv1a(key.as_bytes());
        self.spans.iter().max_by_key(|s| mix64(k ^ s.seed))
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
) -> io::Result<thread::JoinHandle<()>>
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

fn timed_open(path: &Path, size: u64) -> (Result<Span, String>, Duration) {
    let t = Instant::now();
    let r = Span::open(path, size).map_err(|e| e.reason());
    (r, t.elapsed())
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
