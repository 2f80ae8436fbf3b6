//! The RAM cache: the hottest objects, bounded by their total size in bytes.
//!
//! A least-recently-used list threaded through a `Vec` by index (no pointers, no
//! `unsafe`), found through a `HashMap`; every operation is O(1). A removed slot is
//! filled by the last one (`swap_remove`), so the `Vec` never holds holes.
//!
//! The RAM cache also keeps a *clock* of mutations so that [`super::Cache`] can promote a
//! disk hit without racing a concurrent `put` or `remove` of the same key: see
//! [`RamCache::clock`] and [`RamCache::promote`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lock;

/// No neighbour.
const NIL: usize = usize::MAX;

/// Mutation stamps are kept per hash slot, not per key, so their memory is fixed; two
/// keys sharing a slot only cost a skipped promotion.
const STAMP_SLOTS: usize = 4096;

/// A thread-safe LRU cache of byte strings, bounded by the sum of the values' lengths.
///
/// Only value bytes count towards the capacity, as with ATS's
/// `proxy.config.cache.ram_cache.size`; keys and bookkeeping come on top.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use turnstile::cache::RamCache;
///
/// let ram = RamCache::new(1 << 20);
/// ram.put("http://example.com/", Arc::from(&b"hello"[..]));
/// assert_eq!(ram.get("http://example.com/").as_deref(), Some(&b"hello"[..]));
/// ```
#[derive(Debug)]
pub struct RamCache {
    capacity: u64,
    inner: Mutex<Lru>,
}

#[derive(Debug)]
struct Node {
    key: Arc<str>,
    value: Arc<[u8]>,
    /// Towards the most recently used end.
    prev: usize,
    /// Towards the least recently used end.
    next: usize,
}

#[derive(Debug)]
struct Lru {
    map: HashMap<Arc<str>, usize>,
    nodes: Vec<Node>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next to go.
    tail: usize,
    bytes: u64,
    clock: u64,
    stamps: Box<[u64]>,
}

impl RamCache {
    /// An empty cache holding at most `capacity_bytes` of values.
    pub fn new(capacity_bytes: u64) -> RamCache {
        RamCache {
            capacity: capacity_bytes,
            inner: Mutex::new(Lru {
                map: HashMap::new(),
                nodes: Vec::new(),
                head: NIL,
                tail: NIL,
                bytes: 0,
                clock: 0,
                stamps: vec![0; STAMP_SLOTS].into_boxed_slice(),
            }),
        }
    }

    /// The value stored under `key`, which becomes the most recently used.
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let mut lru = lock(&self.inner);
        let i = *lru.map.get(key)?;
        lru.unlink(i);
        lru.push_front(i);
        Some(lru.nodes[i].value.clone())
    }

    /// Stores `value` under `key` as the most recently used, evicting the least recently
    /// used values until it fits (true). A value larger than the whole capacity is not
    /// stored (false), and any older value under `key` is dropped, so a stale one is
    /// never served.
    pub fn put(&self, key: &str, value: Arc<[u8]>) -> bool {
        let mut lru = lock(&self.inner);
        lru.stamp(key);
        lru.insert(self.capacity, key, value)
    }

    /// Stores `value` under `key` like [`put`](Self::put), unless `key` may have been
    /// `put` or `remove`d since [`clock`](Self::clock) returned `seen`. True if stored.
    ///
    /// A reader that missed here, read the value from disk and now promotes it must not
    /// overwrite a newer value, or bring back a removed one, that a writer stored while it
    /// was reading; the check and the insertion happen under one lock. Unrelated keys may
    /// share a stamp, which only skips a promotion.
    pub fn promote(&self, key: &str, value: Arc<[u8]>, seen: u64) -> bool {
        let mut lru = lock(&self.inner);
        if lru.stamps[slot(key)] > seen {
            return false;
        }
        lru.insert(self.capacity, key, value)
    }

    /// The mutation clock, to pass to [`promote`](Self::promote) later.
    pub fn clock(&self) -> u64 {
        lock(&self.inner).clock
    }

    /// Drops the value under `key`, if any.
    pub fn remove(&self, key: &str) {
        let mut lru = lock(&self.inner);
        lru.stamp(key);
        if let Some(&i) = lru.map.get(key) {
            lru.delete(i);
        }
    }

    /// Bytes of values held, never more than the capacity.
    pub fn bytes(&self) -> u64 {
        lock(&self.inner).bytes
    }

    /// Values held.
    pub fn len(&self) -> usize {
        lock(&self.inner).map.len()
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity in bytes given to [`new`](Self::new).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

/// The stamp slot of `key`: FNV-1a, which is plenty to spread keys over 4096 slots.
fn slot(key: &str) -> usize {
    (super::fnv1a(key.as_bytes()) % STAMP_SLOTS as u64) as usize
}

impl Lru {
    fn stamp(&mut self, key: &str) {
        self.clock += 1;
        self.stamps[slot(key)] = self.clock;
    }

    /// Stores `value` under `key` (true), or only drops the older value when it is
    /// larger than `capacity` (false).
    fn insert(&mut self, capacity: u64, key: &str, value: Arc<[u8]>) -> bool {
        if let Some(&i) = self.map.get(key) {
            self.delete(i);
        }
        let size = value.len() as u64;
        if size > capacity {
            return false;
        }
        while self.bytes + size > capacity && self.tail != NIL {
            self.delete(self.tail);
        }
        let key: Arc<str> = Arc::from(key);
        let i = self.nodes.len();
        self.nodes.push(Node {
            key: key.clone(),
            value,
            prev: NIL,
            next: NIL,
        });
        self.push_front(i);
        self.map.insert(key, i);
        self.bytes += size;
        debug_assert!(self.bytes <= capacity);
        true
    }

    /// Unlinks node `i` and fills its slot with the last node.
    fn delete(&mut self, i: usize) {
        self.unlink(i);
        let gone = self.nodes.swap_remove(i);
        self.map.remove(&gone.key);
        self.bytes -= gone.value.len() as u64;
        if i < self.nodes.len() {
            // The former last node now lives at `i`: repoint its neighbours and the map.
            let (prev, next) = (self.nodes[i].prev, self.nodes[i].next);
            match prev {
                NIL => self.head = i,
                p => self.nodes[p].next = i,
            }
            match next {
                NIL => self.tail = i,
                n => self.nodes[n].prev = i,
            }
            let key = self.nodes[i].key.clone();
            self.map.insert(key, i);
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.nodes[i].prev, self.nodes[i].next);
        match prev {
            NIL => self.head = next,
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n].prev = prev,
        }
        self.nodes[i].prev = NIL;
        self.nodes[i].next = NIL;
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        match self.head {
            NIL => self.tail = i,
            h => self.nodes[h].prev = i,
        }
        self.head = i;
    }
}
