//! `Timers`: one event thread's timer heap. Entries come out earliest deadline first,
//! and entries with equal deadlines in the order they were pushed.
//!
//! The heap belongs to one `EThread` and is used only on that thread. It is generic over
//! its entries, so this file needs nothing from `ethread.rs` (whose entries carry
//! callbacks over `&mut EThread`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// An entry of the heap: something due at an instant.
pub(crate) trait Deadline {
    /// When the entry is due. Must not change while the entry is in the heap.
    fn deadline(&self) -> Instant;
}

struct Entry<T> {
    seq: u64,
    item: T,
}

impl<T: Deadline> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T: Deadline> Eq for Entry<T> {}
impl<T: Deadline> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T: Deadline> Ord for Entry<T> {
    // BinaryHeap is a max-heap: the earliest deadline (then the oldest) must be greatest.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .item
            .deadline()
            .cmp(&self.item.deadline())
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A heap of timers, earliest first.
pub(crate) struct Timers<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

impl<T: Deadline> Timers<T> {
    pub(crate) fn new() -> Timers<T> {
        Timers {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, item: T) {
        self.seq += 1;
        self.heap.push(Entry {
            seq: self.seq,
            item,
        });
    }

    /// The deadline of the earliest entry.
    #[inline]
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.item.deadline())
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    #[inline]
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_deadline()? <= now {
            self.heap.pop().map(|e| e.item)
        } else {
            None
        }
    }

    /// Drops entries from the front while `dead` says so, so the next deadline is a live
    /// entry's.
    #[inline]
    pub(crate) fn drop_front_while(&mut self, mut dead: impl FnMut(&T) -> bool) {
        while self.heap.peek().is_some_and(|e| dead(&e.item)) {
            self.heap.pop();
        }
    }

    /// Drops every entry that `keep` rejects, wherever it is in the heap.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.heap.retain(|e| keep(&e.item));
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}

/// The next run of a periodic timer that was due at `prev` and ran at about `now`.
pub(crate) fn next_tick(prev: Instant, period: Duration, now: Instant) -> Instant {
    let next = prev + period;
    // A late tick does not trigger a burst of catch-up runs.
    if next <= now {
        now + period
    } else {
        next
    }
}
