//! The cache's bookkeeping across threads: which keys a transaction is filling now (the
//! misses for them wait, and are woken when the fill ends), which recent fills brought a
//! response not storable (misses for those skip the wait), and which keys were
//! invalidated while a fetch was under way (it must not store what it got). Any thread;
//! short locks.

use crate::error::ErrorKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a key whose fill brought nothing storable is fetched without coalescing.
const UNSTORABLE_FOR: Duration = Duration::from_secs(10);
/// Keys marked ([`Mark`]) at most (expired marks are dropped first).
const MARKS_MAX: usize = 10_000;
/// How long after a revalidation failed at its origin (and was answered with the stale
/// object, `stale-if-error`) the requests that find that object stale are answered
/// with it too, rather than each asking the failing origin again: the waiters the
/// failed revalidation wakes, and whoever comes in the meantime.
const FAILED_FOR: Duration = Duration::from_secs(1);
/// How long after a fill failed because its origin could not be reached (no name, no
/// connection) the requests that waited for it are answered with its error, rather
/// than each trying again and waiting as long.
const UNREACHABLE_FOR: Duration = Duration::from_secs(1);
/// How long an invalidation is remembered: a fetch that began before it and ends within
/// this long after it stores nothing.
const INVALIDATION_MEMORY: Duration = Duration::from_secs(600);
/// Keys remembered at most; beyond, the memory collapses into one "everything, now".
const INVALIDATIONS_KEPT: usize = 8192;

/// Run (on the thread that ends a fill) to wake one request waiting for it.
pub(crate) type Wake = Box<dyn FnOnce() + Send>;

/// Fills in flight and what recent ones taught, and recent invalidations.
#[derive(Default)]
pub(crate) struct FillTable {
    fills: Mutex<Fills>,
    invalidated: Mutex<Invalidations>,
}

#[derive(Default)]
struct Fills {
    /// Keys some transaction is filling now, each with the requests waiting for it.
    filling: HashMap<String, Vec<Wake>>,
    /// What the last fill of a key taught, until when ([`Mark`]).
    marks: HashMap<String, (Mark, Instant)>,
}

/// What a fill that ended taught of its key, for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mark {
    /// It brought nothing storable: misses for the key skip the fill (and the wait for
    /// it) and go to the origin side by side, for `UNSTORABLE_FOR`.
    Unstorable,
    /// It was a revalidation that failed at the origin, answered with the stale object
    /// (`stale-if-error`), which answers the requests that find it stale for
    /// `FAILED_FOR`.
    Failed,
    /// Its origin could not be reached, with this error: the requests that waited for
    /// it get the same answer, for `UNREACHABLE_FOR`.
    Unreachable(ErrorKind),
}

impl Mark {
    fn lasts(&self) -> Duration {
        match self {
            Mark::Unstorable => UNSTORABLE_FOR,
            Mark::Failed => FAILED_FOR,
            Mark::Unreachable(_) => UNREACHABLE_FOR,
        }
    }
}

impl Fills {
    /// `key`'s mark, unexpired.
    fn mark(&self, key: &str) -> Option<&Mark> {
        (self.marks.get(key))
            .filter(|(_, until)| *until > Instant::now())
            .map(|(m, _)| m)
    }

    /// Whether `key` bears `mark`, unexpired.
    fn marked(&self, key: &str, mark: Mark) -> bool {
        self.mark(key) == Some(&mark)
    }
}

/// What a cache miss may do about filling its key ([`FillTable::claim`]).
pub(crate) enum Claim {
    /// Fetch and store it; others wait meanwhile.
    Fill(Fill),
    /// Another transaction is filling it: wait for that.
    InFlight,
    /// Its last fill brought a response not storable, not long ago: fetch without
    /// filling or waiting.
    Unstorable,
}

/// The right to fill one cache key: while it lives, other misses for the key wait; when
/// it ends, they are woken, and the first of them to look again fills next (the others
/// wait for that one). Ended after [`Fill::unstorable`], it marks the key unstorable for
/// a while, so that requests for a URL that is never cached (no freshness, `no-store`,
/// too big) do not queue behind each other's fills. Ended otherwise (stored, or failed:
/// the origin or the client went away), it leaves no mark.
pub(crate) struct Fill {
    table: Arc<FillTable>,
    key: String,
    mark: Option<Mark>,
}

impl Fill {
    /// The response turned out not storable: misses for the key skip filling it (and
    /// waiting for its fill) for a while.
    pub(crate) fn unstorable(mut self) {
        self.mark = Some(Mark::Unstorable);
    }

    /// This fill was a revalidation that failed at the origin, and the stale object
    /// answered instead (`stale-if-error`): for `FAILED_FOR`, requests that find the
    /// object stale are answered so too ([`FillTable::failed_recently`]).
    pub(crate) fn failed(mut self) {
        self.mark = Some(Mark::Failed);
    }

    /// This fill could not reach its origin (`kind`): the requests waiting for it are
    /// answered so too ([`FillTable::unreachable`]).
    pub(crate) fn unreachable(mut self, kind: ErrorKind) {
        self.mark = Some(Mark::Unreachable(kind));
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        let waiting = {
            let mut fills = self.table.fills();
            let Some(waiting) = fills.filling.remove(&self.key) else {
                return;
            };
            // Without its mark, any earlier one is expired (this fill was claimed). Not
            // storable: stored, or failed (a transfer cut short says nothing of the
            // response), the next miss fills, and the waiters wait for it rather than
            // all going to the origin.
            match self.mark.take() {
                None => {
                    fills.marks.remove(&self.key);
                }
                Some(mark) => {
                    let now = Instant::now();
                    let lasts = mark.lasts();
                    let until = (mark, now + lasts);
                    let unexpired = |(_, until): &(Mark, Instant)| *until > now;
                    insert_bounded(&mut fills.marks, &self.key, until, MARKS_MAX, unexpired);
                }
            }
            waiting
        };
        // Outside the lock: each wakes a session on its own thread.
        for wake in waiting {
            wake();
        }
    }
}

impl FillTable {
    fn fills(&self) -> MutexGuard<'_, Fills> {
        self.fills.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a miss for `key` may do: fill it, wait for the fill in flight, or fetch
    /// without filling because the last fill, not long ago, was not storable.
    pub(crate) fn claim(self: &Arc<Self>, key: &str) -> Claim {
        let mut fills = self.fills();
        if fills.marked(key, Mark::Unstorable) {
            return Claim::Unstorable;
        }
        if fills.filling.contains_key(key) {
            return Claim::InFlight;
        }
        fills.filling.insert(key.to_string(), Vec::new());
        Claim::Fill(Fill {
            table: self.clone(),
            key: key.to_string(),
            mark: None,
        })
    }

    /// Whether the last revalidation of `key` failed at its origin less than
    /// `FAILED_FOR` ago ([`Fill::failed`]).
    pub(crate) fn failed_recently(&self, key: &str) -> bool {
        self.fills().marked(key, Mark::Failed)
    }

    /// The error the last fill of `key` met less than `UNREACHABLE_FOR` ago, when its
    /// origin could not be reached ([`Fill::unreachable`]).
    pub(crate) fn unreachable(&self, key: &str) -> Option<ErrorKind> {
        match self.fills().mark(key) {
            Some(Mark::Unreachable(kind)) => Some(kind.clone()),
            _ => None,
        }
    }

    /// Has `wake` run when the fill of `key` ends. False (and `wake` dropped unrun): no
    /// fill of it is in flight any more.
    pub(crate) fn wait(&self, key: &str, wake: Wake) -> bool {
        match self.fills().filling.get_mut(key) {
            Some(waiting) => {
                waiting.push(wake);
                true
            }
            None => false,
        }
    }

    /// Records that `key` was invalidated now: fetches of it already under way must not
    /// store what they got (it may predate the change). Bounded: a write-heavy load that
    /// invalidates more keys than `INVALIDATIONS_KEPT` within `INVALIDATION_MEMORY`
    /// makes every fetch under way at that moment skip storing, rather than growing the
    /// memory.
    pub(crate) fn note_invalidation(&self, key: &str) {
        let mut inv = self.invalidated.lock().unwrap_or_else(|e| e.into_inner());
        inv.note(key, Instant::now());
    }

    /// Whether `key` was invalidated after `began`.
    pub(crate) fn invalidated_since(&self, key: &str, began: Instant) -> bool {
        let inv = self.invalidated.lock().unwrap_or_else(|e| e.into_inner());
        inv.since(key, began)
    }
}

/// When each recently invalidated key was, within bounds.
#[derive(Default)]
struct Invalidations {
    at: HashMap<String, Instant>,
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
fn insert_bounded<V>(
    map: &mut HashMap<String, V>,
    key: &str,
    value: V,
    max: usize,
    live: impl Fn(&V) -> bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    #[test]
    fn a_fill_wakes_each_waiter_once_when_it_ends() {
        let table = Arc::new(FillTable::default());
        let woken = Arc::new(AtomicUsize::new(0));
        let wake = || {
            let w = woken.clone();
            Box::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }) as Wake
        };
        assert!(!table.wait("k", wake()), "nothing in flight to wait for");
        let Claim::Fill(fill) = table.claim("k") else {
            panic!("the first miss fills")
        };
        assert!(matches!(table.claim("k"), Claim::InFlight));
        assert!(table.wait("k", wake()) && table.wait("k", wake()));
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        drop(fill);
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        assert!(!table.wait("k", wake()));
        assert!(matches!(table.claim("k"), Claim::Fill(_)));
    }

    #[test]
    fn a_fill_not_storable_lets_misses_skip_the_wait_for_a_while() {
        let table = Arc::new(FillTable::default());
        let Claim::Fill(fill) = table.claim("k") else {
            panic!()
        };
        fill.unstorable();
        assert!(matches!(table.claim("k"), Claim::Unstorable));
    }

    #[test]
    fn an_unreachable_origin_is_remembered_for_the_waiters_and_any_other_end_forgets_it() {
        let table = Arc::new(FillTable::default());
        let Claim::Fill(fill) = table.claim("k") else {
            panic!()
        };
        fill.unreachable(ErrorKind::ConnectTimeout);
        assert_eq!(table.unreachable("k"), Some(ErrorKind::ConnectTimeout));
        assert!(table.unreachable("other").is_none() && !table.failed_recently("k"));
        // A new request fills again, and its fill's end replaces the mark.
        let Claim::Fill(next) = table.claim("k") else {
            panic!("an unreachable mark does not stop the next fill")
        };
        drop(next);
        assert!(table.unreachable("k").is_none());
    }

    #[test]
    fn a_failed_fill_leaves_no_mark_and_the_next_miss_fills_while_the_rest_wait() {
        let table = Arc::new(FillTable::default());
        let Claim::Fill(fill) = table.claim("k") else {
            panic!()
        };
        // Ended without being stored or found unstorable: a transfer cut short.
        drop(fill);
        let Claim::Fill(_next) = table.claim("k") else {
            panic!("the URL is filled again, not fetched uncached")
        };
        assert!(matches!(table.claim("k"), Claim::InFlight));
    }
}
