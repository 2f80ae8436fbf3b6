//! The cache's part of a request: the lookup (in RAM at once, or by a span's I/O thread
//! while the request waits in `Phase::CacheRead`), the decision between a fresh hit, a
//! revalidation and a miss ([`Session::decide`]), serving hits, waiting for another
//! request's fill (`Phase::CacheWait`, woken when the fill ends), and what a response
//! does to the cache: invalidation, a 304's refresh, the capture of a storable body and
//! its store. Runs on the session's ET_NET thread.

use super::super::caching::{self, Stored};
use super::super::codec::{BodyFraming, ChunkedScanner, RequestHead, ResponseHead};
use super::super::shared::{Claim, Fill};
use super::batch::{answered, await_answer};
use super::log::LogResult;
use super::{Pending, Phase, Session};
use crate::cache::{Cache, Lookup};
use iocore::EThread;
use std::sync::Arc;
use std::time::Instant;

/// A request parked on the cache: for a disk read, or until another connection's fill
/// of the same key ends.
pub(super) struct Waiting {
    pending: Pending,
    query: CacheQuery,
}

/// What a request asks the cache.
struct CacheQuery {
    /// The URL's key: the object there, its fill, what a response is stored under.
    key: String,
    /// Set once the object at `key` turned out to be another variant (`Vary`): the key
    /// of this request's own (`caching::alternate_key`), read next.
    alternate: Option<String>,
    /// The variants the URL's key holds, when it holds one.
    variants: Option<UrlVariants>,
    /// The client asked to revalidate (`no-cache`).
    revalidate: bool,
    /// When the request first asked.
    since: Instant,
}

/// The cache's part of a transaction.
pub(super) struct CacheTx {
    key: String,
    /// A stale object being revalidated.
    pub(super) stale: Option<Stored>,
    /// The response being captured for storing.
    capture: Option<Capture>,
    /// Held while this transaction fills `key`; others wait for it.
    fill: Option<Fill>,
    /// The client's request as it came, for the values of the fields a response's
    /// `Vary` names: the head `forward` sends, moved in there once sent (no copy), or a
    /// copy made before a revalidation replaces the client's conditional fields.
    pub(super) request: Option<RequestHead>,
    /// The URL's variants a variant stored by this transaction joins; None: a new
    /// generation of them.
    variants: Option<UrlVariants>,
    /// An unsafe request: a non-error answer removes the URL's object instead.
    pub(super) invalidate: bool,
    /// When it began: an invalidation of `key` after that keeps it from storing.
    began: Instant,
}

impl CacheTx {
    pub(super) fn new(key: String, stale: Option<Stored>, fill: Option<Fill>) -> CacheTx {
        CacheTx {
            key,
            stale,
            capture: None,
            fill,
            request: None,
            variants: None,
            invalidate: false,
            began: Instant::now(),
        }
    }

    /// What a final response with `status` does to the cache: a success answering an
    /// unsafe request invalidates the URL's object; a 304 answering the cache's own
    /// revalidation refreshes the stale one.
    pub(super) fn effect(&self, status: u16) -> ResponseEffect {
        ResponseEffect {
            invalidates: self.invalidate && (200..400).contains(&status),
            refreshes: status == 304 && self.stale.is_some(),
        }
    }

    /// Takes response body bytes into the capture; one too large (or broken) streams
    /// through uncached, and the requests waiting for this fill go on without it.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        if self.capture.as_mut().is_some_and(|cap| !cap.feed(bytes)) {
            self.capture = None;
            self.fill = None;
        }
    }
}

/// What a final response does to the cache ([`CacheTx::effect`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ResponseEffect {
    /// A success answering an unsafe request: the URL's cached object goes.
    pub(super) invalidates: bool,
    /// A 304 answering the cache's own revalidation: the stored object is fresh again
    /// and answers the client.
    pub(super) refreshes: bool,
}

/// The variants (`Vary`) of a URL, as its key's object tells: their generation, and
/// which are kept (oldest first), for the limit on them (`cache.limits.http.max_alts`).
struct UrlVariants {
    generation: u64,
    kept: Vec<Vec<u8>>,
}

impl UrlVariants {
    /// What `obj`, a variant at its URL's key, tells.
    fn of(obj: &Stored) -> UrlVariants {
        UrlVariants {
            generation: obj.generation,
            kept: obj.kept_variants(),
        }
    }
}

/// A storable response's payload, gathered as it passes to the client.
struct Capture {
    head: ResponseHead,
    /// The request's side of the response's `Vary` (`caching::variant`).
    variant: Vec<u8>,
    lifetime: u64,
    body: Vec<u8>,
    chunked: Option<ChunkedScanner>,
    limit: u64,
}

impl Capture {
    /// Adds framed body bytes; false when the object turns out too large (or broken).
    fn feed(&mut self, bytes: &[u8]) -> bool {
        match self.chunked.as_mut() {
            Some(sc) => {
                if sc.decode(bytes, &mut self.body).is_err() {
                    return false;
                }
            }
            None => self.body.extend_from_slice(bytes),
        }
        self.body.len() as u64 <= self.limit
    }
}

impl Session {
    /// A routed request and the cache: looked up when it may be answered from there,
    /// forwarded otherwise (an unsafe one also invalidating what the cache holds for
    /// its target once the origin accepts it).
    pub(super) fn consult_cache(&mut self, t: &mut EThread, pending: Pending) {
        let Some(cache) = self.shared.cache().cloned() else {
            return self.forward(t, pending, None);
        };
        let policy = caching::request_policy(&pending.head);
        let key = caching::key(&pending.host_header, &pending.path);
        if !policy.cacheable {
            let invalidate = caching::is_unsafe(pending.head.method()).then(|| {
                let mut c = CacheTx::new(key, None, None);
                c.invalidate = true;
                c
            });
            return self.forward(t, pending, invalidate);
        }
        let query = CacheQuery {
            key,
            alternate: None,
            variants: None,
            revalidate: policy.revalidate,
            since: Instant::now(),
        };
        self.lookup(t, pending, &cache, query);
    }

    /// Looks the query's key (or the alternate one) up: in RAM at once, or on disk by
    /// the span's I/O thread, the session waiting meanwhile (`Phase::CacheRead`) until
    /// `cache_read_done` resumes it here.
    fn lookup(
        &mut self,
        t: &mut EThread,
        mut pending: Pending,
        cache: &Arc<Cache>,
        query: CacheQuery,
    ) {
        match cache.lookup(query.alternate.as_deref().unwrap_or(&query.key)) {
            Lookup::Done(value) => {
                let stored = value.and_then(|b| Stored::decode(&b));
                self.decide(t, pending, query, stored);
            }
            Lookup::Disk(disk) => {
                let read = await_answer(&self.me);
                let here = t.handle();
                // Runs on the span's I/O thread: hands the value back to this thread.
                disk.then(move |value| here.run(move |t| cache_read_done(t, read, value)));
                self.shared.metrics.cache_disk_reads.inc();
                pending.hold(&self.shared.metrics.active_transactions);
                self.phase = Phase::CacheRead(Box::new(Waiting { pending, query }));
            }
        }
    }

    /// Answers from the cache, or forwards with what the cache knows: a stale object to
    /// revalidate, or the right to fill it. A miss whose fill is already in flight on
    /// another connection waits for it (`Phase::CacheWait`) instead of fetching again.
    fn decide(
        &mut self,
        t: &mut EThread,
        mut pending: Pending,
        mut query: CacheQuery,
        stored: Option<Stored>,
    ) {
        // Another variant (`Vary`): look for this request's own, once; not there, it is
        // a miss, and the response is stored beside the others.
        let stored = match stored {
            Some(obj) if !obj.serves(&pending.head) => {
                let own = obj.request_variant(&pending.head);
                if let (None, Some(variant), Some(cache)) =
                    (&query.alternate, own, self.shared.cache().cloned())
                {
                    query.variants = Some(UrlVariants::of(&obj));
                    query.alternate =
                        Some(caching::alternate_key(&query.key, obj.generation, &variant));
                    return self.lookup(t, pending, &cache, query);
                }
                None
            }
            other => other,
        };
        let m = &self.shared.metrics;
        let now = caching::now_s();
        match stored {
            Some(obj) if obj.is_fresh(now) && !query.revalidate => {
                m.cache_hits.inc();
                self.serve_hit(&pending.head, &obj, now);
            }
            Some(obj) => {
                // Stale: ask the origin whether it changed, with our validators in place
                // of the client's.
                let validators = obj.validators();
                let variants = query
                    .variants
                    .take()
                    .or_else(|| (!obj.variant.is_empty()).then(|| UrlVariants::of(&obj)));
                let mut ctx = CacheTx::new(query.key, Some(obj), None);
                ctx.variants = variants;
                ctx.request = Some(pending.head.clone());
                pending.head.headers.retain(|h| {
                    !h.name.eq_ignore_ascii_case("if-none-match")
                        && !h.name.eq_ignore_ascii_case("if-modified-since")
                });
                for (name, value) in validators {
                    pending.head.headers.push(&name, &value);
                }
                self.forward(t, pending, Some(ctx));
            }
            None => match self.shared.claim_fill(&query.key) {
                Claim::Fill(fill) => {
                    m.cache_misses.inc();
                    let mut ctx = CacheTx::new(query.key, None, Some(fill));
                    ctx.variants = query.variants;
                    self.forward(t, pending, Some(ctx));
                }
                Claim::InFlight
                    if query.since.elapsed() < self.shared.settings.timeouts.connect =>
                {
                    pending.hold(&m.active_transactions);
                    // When the fill ends, the lookup starts over from the URL's key.
                    query.alternate = None;
                    query.variants = None;
                    self.wait_for_fill(t, Waiting { pending, query });
                }
                // Not storable last time: fetch alongside the others instead of queueing
                // behind a fill, and without capturing; the hint expires, then the next
                // miss tries to fill again. Or the fill takes too long: fetch without
                // waiting any more.
                Claim::Unstorable | Claim::InFlight => {
                    m.cache_misses.inc();
                    self.forward(t, pending, None);
                }
            },
        }
    }

    /// Parks the request until the fill of its key ends (the fill wakes it here) or
    /// its wait reaches the connect timeout (the sweep ends it), then looks it up again.
    fn wait_for_fill(&mut self, t: &mut EThread, waiting: Waiting) {
        let ticket = await_answer(&self.me);
        let here = t.handle();
        // Runs on the thread that ends the fill: hands the news back to this thread.
        let wake = Box::new(move || here.run(move |t| fill_ended(t, ticket)));
        let deadline = waiting.query.since + self.shared.settings.timeouts.connect;
        if self.shared.wait_for_fill(&waiting.query.key, wake) {
            self.deadline = deadline;
            self.phase = Phase::CacheWait(Box::new(waiting));
        } else {
            // It ended just now.
            self.look_again(t, waiting);
        }
    }

    /// Ends a wait for a fill (it ended, or waited long enough): the lookup starts over.
    pub(super) fn fill_wait_over(&mut self, t: &mut EThread) {
        if let Phase::CacheWait(w) = std::mem::replace(&mut self.phase, Phase::ReadRequest) {
            self.look_again(t, *w);
        }
    }

    fn look_again(&mut self, t: &mut EThread, w: Waiting) {
        self.phase = Phase::ReadRequest;
        match self.shared.cache().cloned() {
            Some(cache) => self.lookup(t, w.pending, &cache, w.query),
            None => self.forward(t, w.pending, None),
        }
    }

    /// Answers `head` with `obj`, fresh.
    fn serve_hit(&mut self, head: &RequestHead, obj: &Stored, now: u64) {
        // A body (a GET may have one) is not read: the connection closes after the
        // answer, as after a local response, and its bytes are never taken as a request.
        let keep = head.keep_alive() && !head.has_body() && !self.shared.draining();
        obj.write_hit(&mut self.out_c, &self.shared.settings.via, keep, now);
        let status = obj.response().map_or(0, |r| r.status);
        if status != 0 {
            self.shared.metrics.count_status(status);
        }
        self.shared.metrics.completed_requests.inc();
        self.log_end(status, LogResult::Hit);
        // An unread body is drained by the lingering close.
        self.after_answer(keep, !head.has_body(), Instant::now());
    }

    /// The cache's side of a final response head `head`, framed as `framing`, with
    /// `effect`: invalidates what an unsafe request changed, answers from the refreshed
    /// object on a 304 to a revalidation (true: answered), or sets up the capture of a
    /// storable response.
    pub(super) fn cache_response_head(
        &mut self,
        head: &ResponseHead,
        framing: BodyFraming,
        effect: ResponseEffect,
    ) -> bool {
        let shared = self.shared.clone();
        let Some(tx) = self.tx.as_mut() else {
            return false;
        };
        if effect.invalidates || tx.cache.as_ref().is_some_and(|c| c.invalidate) {
            let c = tx.cache.take();
            if let (true, Some(c), Some(cache)) = (effect.invalidates, c, shared.cache()) {
                // Its variants, if any, go with it: the next one stored starts a new
                // generation.
                cache.remove(&c.key);
                shared.note_invalidation(&c.key);
                shared.metrics.cache_invalidations.inc();
            }
        }
        let Some(c) = tx.cache.as_deref_mut() else {
            return false;
        };
        let now = caching::now_s();
        if effect.refreshes {
            // Still valid: refresh it and answer from the cache.
            let mut obj = c.stale.take().expect("a refresh has a stale object");
            let old_lifetime = obj.fresh_until.saturating_sub(obj.stored_at);
            let lifetime = caching::freshness(head, now).unwrap_or(old_lifetime);
            obj.stored_at = now;
            obj.fresh_until = now.saturating_add(lifetime);
            if let Some(cache) = shared.cache() {
                if !shared.invalidated_since(&c.key, c.began) {
                    let kept = c.variants.as_ref().map(|v| v.kept.clone());
                    let kept = kept.unwrap_or_else(|| obj.kept_variants());
                    store(cache, &c.key, &mut obj, &kept, shared.settings.max_alts);
                }
            }
            shared.metrics.cache_revalidated.inc();
            shared.metrics.cache_hits.inc();
            let keep = tx.client_keep_alive;
            obj.write_hit(&mut self.out_c, &shared.settings.via, keep, now);
            if let Some(r) = obj.response() {
                shared.metrics.count_status(r.status);
                self.log_refresh_hit(r.status);
            }
            return true;
        }
        let limit = shared.settings.max_doc_size;
        let fits = !matches!(framing, BodyFraming::Length(n) if n > limit);
        c.capture = caching::freshness(head, now)
            .filter(|_| fits)
            .zip(c.request.as_ref().and_then(|r| caching::variant(head, r)))
            .map(|(lifetime, variant)| Capture {
                head: head.clone(),
                variant,
                lifetime,
                body: Vec::new(),
                chunked: (framing == BodyFraming::Chunked).then(ChunkedScanner::new),
                limit,
            });
        if c.capture.is_none() {
            // Nothing to store: let the requests waiting for this fill go to the origin
            // now, not after this whole transfer.
            c.fill = None;
            // Replaced by something we may not keep: forget the old one.
            if let (Some(old), Some(cache)) = (&c.stale, shared.cache()) {
                cache.remove(&c.key);
                if let Some(alternate) = old.alternate_at(&c.key) {
                    cache.remove(&alternate);
                }
            }
        }
        false
    }

    /// Stores what the transaction captured, if it may still.
    pub(super) fn store_capture(&self, c: &mut CacheTx) {
        let (Some(cap), Some(cache)) = (c.capture.take(), self.shared.cache()) else {
            return;
        };
        let now = caching::now_s();
        let mut obj = Stored::new(&cap.head, cap.body, cap.lifetime, now, cap.variant);
        let kept = match (&c.variants, obj.variant.is_empty()) {
            (_, true) => &[][..],
            (Some(v), false) => {
                obj.generation = v.generation;
                &v.kept[..]
            }
            (None, false) => {
                obj.generation = caching::new_generation();
                &[][..]
            }
        };
        // A change to the URL accepted while this was under way may postdate it: not
        // stored then, but the URL stays storable (the next miss fills it).
        if let Some(fill) = c.fill.as_mut() {
            fill.stored();
        }
        if !self.shared.invalidated_since(&c.key, c.began) {
            store(cache, &c.key, &mut obj, kept, self.shared.settings.max_alts);
            self.shared.metrics.cache_writes.inc();
            self.shared.note_cache_usage();
        }
    }
}

/// Resumes the session that waited for cache disk read `read`, with what it found. Runs
/// on the session's ET_NET thread, queued there by the span's I/O thread.
fn cache_read_done(t: &mut EThread, read: u64, value: Option<Arc<[u8]>>) {
    let Some(rc) = answered(read, |s| matches!(s.phase, Phase::CacheRead(_))) else {
        return;
    };
    let mut s = rc.borrow_mut();
    let Phase::CacheRead(w) = std::mem::replace(&mut s.phase, Phase::ReadRequest) else {
        return;
    };
    let stored = value.and_then(|b| Stored::decode(&b));
    s.decide(t, w.pending, w.query, stored);
    s.drive(t);
    s.settle(t);
}

/// Resumes the session that waited (with `ticket`) for a fill that ended. Runs on the
/// session's ET_NET thread, queued there by whichever thread ended the fill.
fn fill_ended(t: &mut EThread, ticket: u64) {
    let Some(rc) = answered(ticket, |s| matches!(s.phase, Phase::CacheWait(_))) else {
        return;
    };
    let mut s = rc.borrow_mut();
    s.fill_wait_over(t);
    s.drive(t);
    s.settle(t);
}

/// Stores `obj` at `key`, and a variant (`Vary`) also at its alternate key, where
/// requests with its values find it once another variant has taken `key`. A variant
/// joins its URL's variants so far; those beyond `max_alts` (0: no limit), the oldest,
/// are dropped. The list is the one `key` holds now when it is in RAM: stores of one URL
/// are serialized by its fill, but a request read the list at its lookup, which may
/// precede the previous fill's store (the variant stored then would be missing from
/// the list, and never dropped). `seen` is that earlier list, for when `key` is not in
/// RAM.
fn store(cache: &Cache, key: &str, obj: &mut Stored, seen: &[Vec<u8>], max_alts: usize) {
    let varies = !obj.variant.is_empty() && max_alts > 0;
    let now = match varies.then(|| cache.lookup(key)) {
        Some(Lookup::Done(Some(bytes))) => Stored::decode_variants(&bytes)
            .filter(|(generation, _)| *generation == obj.generation)
            .map(|(_, list)| list),
        _ => None,
    };
    for old in obj.join(now.as_deref().unwrap_or(seen), max_alts) {
        cache.remove(&caching::alternate_key(key, obj.generation, &old));
    }
    let bytes = obj.encode();
    if let Some(alternate) = obj.alternate_at(key) {
        cache.put(&alternate, &bytes);
    }
    cache.put(key, &bytes);
}
