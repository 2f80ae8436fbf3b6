//! The cache's part of a request: the lookup (in RAM at once, or by a span's I/O thread
//! while the request waits in `Phase::CacheRead`), the decision between a fresh hit, a
//! stale one, a revalidation and a miss ([`Session::decide`], over the pure
//! `caching::verdict`), the background revalidation of stale-while-revalidate, waiting
//! for another request's fill (`Phase::CacheWait`, woken when the fill ends), and PURGE.
//! Hits are served in `hit.rs`; what a response does to the cache is `store.rs`. Runs
//! on the session's ET_NET thread.

use super::super::caching::{self, CachePolicy, RequestDirectives, Stored, Verdict};
use super::super::revalidate::Job;
use super::super::shared::Claim;
use super::batch::{answered, await_answer};
use super::exchange::absolute_form;
use super::log::LogResult;
use super::store::{CacheTx, UrlVariants};
use super::{Pending, Phase, Session};
use crate::cache::{Cache, Lookup};
use crate::error::{Error, ErrorKind};
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
    /// The URL's key: the object there, what a response is stored under, and the key
    /// of its fill until the request's variant is known (`fill_key`).
    key: String,
    /// Set once the object at `key` turned out to be another variant (`Vary`): the key
    /// of this request's own (`caching::alternate_key`), read next.
    alternate: Option<String>,
    /// The variants the URL's key holds, when it holds one.
    variants: Option<UrlVariants>,
    /// The request's cache directives.
    dirs: RequestDirectives,
    /// The cache's settings when the request came.
    policy: Arc<CachePolicy>,
    /// The request carries preconditions or a range: on a miss it goes to the origin as
    /// it is, without filling (the answer would not be the whole object).
    conditional: bool,
    /// When the request first asked.
    since: Instant,
}

impl CacheQuery {
    /// The key whose fill (or revalidation) this request claims or waits for: its own
    /// variant's once the URL's variants are known, so that misses for different
    /// variants of one URL go to the origin side by side; else the URL's.
    fn fill_key(&self) -> &str {
        self.alternate.as_deref().unwrap_or(&self.key)
    }
}

/// Request fields that ask for a conditional or partial answer.
const CONDITIONAL: &[&str] = &[
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
];

impl Session {
    /// A routed request and the cache: looked up when it may be answered from there
    /// (GET and HEAD), forwarded otherwise (an unsafe one also invalidating what the
    /// cache holds for its target once the origin accepts it); PURGE removes the URL.
    pub(super) fn consult_cache(&mut self, t: &mut EThread, pending: Pending) {
        let Some(cache) = self.shared.cache().cloned() else {
            return self.forward(t, pending, None);
        };
        let key = caching::key(pending.tls.is_some(), &pending.host_header, &pending.path);
        let policy = self.shared.with_live(|live| live.cache_policy.clone());
        let method = pending.head.method();
        if method == "PURGE" {
            return self.purge(&cache, &key, pending.head.keep_alive_unread());
        }
        if method != "GET" && method != "HEAD" {
            let invalidate = caching::is_unsafe(method).then(|| {
                let mut c = CacheTx::new(key, None, None, policy);
                c.invalidate = true;
                c
            });
            return self.forward(t, pending, invalidate);
        }
        let dirs = caching::request_directives(&pending.head);
        if pending.head.header("authorization").is_some() {
            // RFC 9111 §3.5: not answered from the cache; its response is stored only
            // when the origin says a shared cache may (checked when it comes). So
            // nothing stored answers `only-if-cached`, and the origin is not asked
            // either (§5.2.1.7).
            if dirs.only_if_cached {
                return self.only_if_cached(pending.head.keep_alive_unread());
            }
            let store =
                (method == "GET" && !dirs.no_store).then(|| CacheTx::new(key, None, None, policy));
            return self.forward(t, pending, store);
        }
        let query = CacheQuery {
            key,
            alternate: None,
            variants: None,
            dirs,
            conditional: CONDITIONAL
                .iter()
                .any(|name| pending.head.header(name).is_some()),
            policy,
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
        let Some(obj) = stored else {
            return self.miss(t, pending, query);
        };
        match caching::verdict(&obj, &query.dirs, &query.policy, now) {
            Verdict::Fresh => {
                m.cache_hits.inc();
                m.cache_hit_fresh.inc();
                self.serve_hit(&pending.head, &obj, now, LogResult::Hit);
            }
            Verdict::StaleAccepted => {
                m.cache_hits.inc();
                m.cache_stale_accepted.inc();
                self.serve_hit(&pending.head, &obj, now, LogResult::Hit);
            }
            Verdict::StaleWhileRevalidate => {
                m.cache_hits.inc();
                m.cache_stale_swr.inc();
                // §5.2.1.5: nothing of this exchange may be stored, the refresh it would
                // start no more than a response: the next request in the window starts it.
                if !query.dirs.no_store {
                    self.revalidate_in_background(&mut pending, &query, &obj);
                }
                self.serve_hit(&pending.head, &obj, now, LogResult::Hit);
            }
            Verdict::Revalidate if query.dirs.only_if_cached => {
                self.only_if_cached(pending.head.keep_alive_unread())
            }
            // §5.2.1.5: nothing of this exchange may be stored, a refresh of the stale
            // object no more than a new response: the request goes as a miss's does.
            Verdict::Revalidate if query.dirs.no_store => self.miss(t, pending, query),
            Verdict::Revalidate
                if collapsible(&obj, &query.dirs)
                    && caching::stale_if_error(&obj, &query.policy, now)
                    && self.shared.revalidation_failed_recently(query.fill_key()) =>
            {
                // Its revalidation failed at the origin a moment ago and was answered
                // with it: so are the requests that waited for that revalidation, and
                // those that come meanwhile, rather than each asking the failing origin.
                self.serve_stale_for_error(&pending.head, &obj, now);
            }
            Verdict::Revalidate => {
                // Concurrent requests for one stale object are revalidated once, as
                // misses are filled once, when the object refreshed will serve them.
                let fill = if collapsible(&obj, &query.dirs) {
                    match self.shared.claim_fill(query.fill_key()) {
                        Claim::Fill(fill) => Some(fill),
                        Claim::InFlight
                            if query.since.elapsed() < self.shared.settings.timeouts.connect =>
                        {
                            pending.hold(&m.active_transactions);
                            return self.wait_for_fill(t, Waiting { pending, query });
                        }
                        Claim::Unstorable | Claim::InFlight => None,
                    }
                } else {
                    None
                };
                // Stale: ask the origin whether it changed, with our validators in
                // place of the client's conditional fields (and without its range: the
                // answer is for the cache).
                let variants = query
                    .variants
                    .take()
                    .or_else(|| (!obj.variant.is_empty()).then(|| UrlVariants::of(&obj)));
                let mut validators = obj.validators();
                let mut ctx = CacheTx::new(query.key, Some(obj), fill, query.policy);
                ctx.request = Some(pending.head.clone());
                ctx.set_aside = query.conditional;
                pending
                    .head
                    .headers
                    .retain(|h| !CONDITIONAL.iter().any(|n| h.name.eq_ignore_ascii_case(n)));
                // The request as it is without validators is kept, for a 304 that selects
                // no stored response at hand (§4.3.4).
                ctx.unconditional = Some(pending.head.clone());
                // §4.3.1: the entity tags of every variant of the URL go with ours; a 304
                // then names the one the origin would send this request.
                if let Some(others) = variants.as_ref().and_then(|v| other_tags(&validators, v)) {
                    ctx.offered = true;
                    for (name, value) in validators.iter_mut() {
                        if name == "If-None-Match" {
                            value.extend_from_slice(&others);
                        }
                    }
                }
                ctx.variants = variants;
                for (name, value) in validators {
                    pending.head.headers.push(&name, &value);
                }
                self.forward(t, pending, Some(ctx));
            }
        }
    }

    /// Nothing stored answers: `only-if-cached` gets 504; a HEAD, a conditional or
    /// partial request, or one that forbids storing goes to the origin as it is; a GET
    /// fills the cache, or waits for the fill another request has under way.
    fn miss(&mut self, t: &mut EThread, mut pending: Pending, query: CacheQuery) {
        if query.dirs.only_if_cached {
            return self.only_if_cached(pending.head.keep_alive_unread());
        }
        let m = &self.shared.metrics;
        let head_only = pending.head.method() == "HEAD";
        if head_only || query.conditional || query.dirs.no_store {
            m.cache_misses.inc();
            return self.forward(t, pending, None);
        }
        match self.shared.claim_fill(query.fill_key()) {
            Claim::Fill(fill) => {
                m.cache_misses.inc();
                let mut ctx = CacheTx::new(query.key, None, Some(fill), query.policy);
                // The URL's other variants: the origin may say one of them serves this
                // request too (a 304 naming its entity tag, §4.3.1).
                let tags = query.variants.as_ref().and_then(|v| all_tags(&v.kept.1));
                if let Some(tags) = tags {
                    ctx.request = Some(pending.head.clone());
                    ctx.unconditional = Some(pending.head.clone());
                    ctx.offered = true;
                    pending.head.headers.push("If-None-Match", &tags);
                }
                ctx.variants = query.variants;
                self.forward(t, pending, Some(ctx));
            }
            Claim::InFlight if query.since.elapsed() < self.shared.settings.timeouts.connect => {
                pending.hold(&m.active_transactions);
                self.wait_for_fill(t, Waiting { pending, query });
            }
            // Not storable last time: fetch alongside the others instead of queueing
            // behind a fill, and without capturing; the hint expires, then the next miss
            // tries to fill again. Or the fill takes too long: fetch without waiting any
            // more.
            Claim::Unstorable | Claim::InFlight => {
                m.cache_misses.inc();
                self.forward(t, pending, None);
            }
        }
    }

    /// RFC 9111 §5.2.1.7: nothing usable is stored, and the client will not have the
    /// origin asked.
    fn only_if_cached(&mut self, keep: bool) {
        self.miss_answered(Error::new(ErrorKind::NotCached), keep);
    }

    /// A miss answered with `err` here, without the origin.
    fn miss_answered(&mut self, err: Error, keep: bool) {
        self.shared.metrics.cache_misses.inc();
        self.answer_error(err, keep);
    }

    /// Starts the one background revalidation of `obj` (the URL's key may already have
    /// one under way: then nothing), while the stale object answers the client.
    fn revalidate_in_background(&self, pending: &mut Pending, query: &CacheQuery, obj: &Stored) {
        let Some(cache) = self.shared.cache().cloned() else {
            return;
        };
        let queued = self
            .shared
            .revalidator()
            .spawn(&query.key, cache, || self.revalidation(pending, query, obj));
        if queued {
            self.shared.metrics.revalidations_background.inc();
        }
    }

    /// The background revalidation of `obj`, once its URL has none under way: None when
    /// it has nowhere to go.
    fn revalidation(&self, pending: &mut Pending, query: &CacheQuery, obj: &Stored) -> Option<Job> {
        // Under a parent rule, to the parent the request would go to (its health learns
        // how it went), or the origin when the rule lets it go direct.
        let mut parent = pending.parent.take();
        let addr = match parent.as_deref_mut().map(|route| self.first_parent(route)) {
            None => pending.addr,
            Some(Ok(Some(to))) => to,
            Some(Ok(None)) => {
                parent = None;
                pending.addr
            }
            Some(Err(_)) => return None, // no parent up, none to go direct to
        };
        let https = pending.tls.is_some();
        let absolute;
        let (target, tls) = match parent.as_deref() {
            // A parent that is a proxy is asked in plain HTTP, for the `https://` URL.
            Some(p) if p.parent_is_proxy() => {
                absolute = absolute_form(https, &pending.host_header, &pending.path);
                (absolute.as_str(), None)
            }
            _ => (pending.path.as_str(), pending.tls.clone()),
        };
        let tls = match tls {
            Some(name) => Some((name, self.shared.with_live(|l| l.tls_client.clone())?)),
            None => None,
        };
        let mut head = pending.head.clone();
        head.headers
            .retain(|h| !CONDITIONAL.iter().any(|n| h.name.eq_ignore_ascii_case(n)));
        for (name, value) in obj.validators() {
            head.headers.push(&name, &value);
        }
        let settings = &self.shared.settings;
        let mut request = Vec::with_capacity(512);
        super::super::codec::write_request_head(
            &head,
            &mut request,
            &super::super::codec::ForwardRequest {
                path_and_query: target,
                host: &pending.host_header,
                via: &settings.via,
                client_ip: Some(self.peer().ip()),
                keep_alive: false,
                underscores: settings.underscores,
                max_forwards: None,
            },
        );
        let kept = query.variants.as_ref().map_or_else(
            || (obj.kept_variants(), obj.kept_tags()),
            |v| v.kept.clone(),
        );
        let (shared, key, began) = (self.shared.clone(), query.key.clone(), Instant::now());
        Some(Job {
            addr,
            tls,
            parent,
            request,
            client_request: pending.head.clone(),
            key: query.key.clone(),
            stale: obj.clone(),
            kept,
            policy: (*query.policy).clone(),
            max_alts: settings.max_alts,
            max_doc_size: settings.max_doc_size,
            max_head: settings.max_head,
            connect_timeout: settings.timeouts.connect,
            io_timeout: settings.timeouts.transaction_no_activity_out,
            invalidated: Box::new(move || shared.invalidated_since(&key, began)),
        })
    }

    /// PURGE (SPEC §5): from an address `http.cache.purge_allow_ip` lets in, removes the
    /// URL (its variants go with it: the next one stored starts a new generation): 200,
    /// or 404 when it was not cached; 403 for anyone else.
    fn purge(&mut self, cache: &Cache, key: &str, keep: bool) {
        let peer = self.peer().ip();
        if !self
            .shared
            .with_live(|live| live.purge_allow.iter().any(|n| n.contains(&peer)))
        {
            return self.answer_error(Error::new(ErrorKind::Forbidden), keep);
        }
        let m = &self.shared.metrics;
        let found = cache.contains(key);
        cache.remove(key);
        self.shared.note_invalidation(key);
        if found {
            m.purges.inc();
            self.local_response(200, "purged", false, keep, &[]);
        } else {
            m.purge_misses.inc();
            self.local_response(404, "not cached", false, keep, &[]);
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
        if self.shared.wait_for_fill(waiting.query.fill_key(), wake) {
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

    fn look_again(&mut self, t: &mut EThread, mut w: Waiting) {
        self.phase = Phase::ReadRequest;
        // The fill it waited for could not reach the origin a moment ago: the same
        // answer now, rather than another try that would wait as long.
        if let Some(kind) = self.shared.fill_unreachable(w.query.fill_key()) {
            let err = Error::new(kind).context("the fill it waited for failed so");
            return self.miss_answered(err, w.pending.head.keep_alive_unread());
        }
        // The lookup starts over from the URL's key: the fill may have changed its
        // variants.
        w.query.alternate = None;
        w.query.variants = None;
        match self.shared.cache().cloned() {
            Some(cache) => self.lookup(t, w.pending, &cache, w.query),
            None => self.forward(t, w.pending, None),
        }
    }
}

/// The non-empty entity tags of `tags`, as one `If-None-Match` value; None without any.
fn all_tags(tags: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut value = Vec::new();
    for tag in tags.iter().filter(|t| !t.is_empty()) {
        if !value.is_empty() {
            value.extend_from_slice(b", ");
        }
        value.extend_from_slice(tag);
    }
    (!value.is_empty()).then_some(value)
}

/// ", tag" for each entity tag of the URL's variants beyond the one already in our
/// `If-None-Match` (`validators`); None when there is no other, or we send no entity tag.
fn other_tags(validators: &[(String, Vec<u8>)], variants: &UrlVariants) -> Option<Vec<u8>> {
    let own = validators
        .iter()
        .find(|(name, _)| name == "If-None-Match")
        .map(|(_, v)| v.as_slice())?;
    let mut more = Vec::new();
    for tag in variants
        .kept
        .1
        .iter()
        .filter(|t| !t.is_empty() && t.as_slice() != own)
    {
        more.extend_from_slice(b", ");
        more.extend_from_slice(tag);
    }
    (!more.is_empty()).then_some(more)
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

/// Whether requests for stale `obj` may wait for one revalidation of it (see `lookup`)
/// rather than each ask the origin: only when the object refreshed would be fresh
/// for them. One the origin wants revalidated at every use (`no-cache`, or no
/// lifetime), or a request that wants a validation of its own (`no-cache`,
/// `max-age`, `min-fresh`), would find it stale again after the wait, and the
/// requests would go to the origin one after another.
fn collapsible(obj: &Stored, dirs: &RequestDirectives) -> bool {
    !obj.no_cache && obj.lifetime > 0 && !dirs.narrows_freshness()
}
