//! What a response does to the cache: the cache's part of a transaction ([`CacheTx`]),
//! invalidation by unsafe requests (and of the URLs their `Location` and
//! `Content-Location` name), a 304's refresh of the stored response it selects (RFC 9111
//! §4.3.4), stale-if-error in place of an origin error, and the capture of a storable
//! response with its store. Runs on the session's ET_NET thread.

use super::super::caching::{self, CachePolicy, Storable, Stored};
use super::super::codec::{BodyFraming, ChunkedScanner, RequestHead, ResponseHead};
use super::super::revalidate;
use super::super::shared::Fill;
use super::log::LogResult;
use super::Session;
use crate::cache::{Cache, Lookup};
use crate::error::{Error, ErrorKind};
use std::sync::Arc;
use std::time::Instant;

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
    /// `Vary` names and for the preconditions and range of an answer from the cache:
    /// the head `forward` sends, moved in there once sent (no copy), or a copy made
    /// before a revalidation replaces the client's conditional fields.
    pub(super) request: Option<RequestHead>,
    /// The URL's variants a variant stored by this transaction joins; None: a new
    /// generation of them.
    pub(super) variants: Option<UrlVariants>,
    /// An unsafe request: a non-error answer removes the URL's object instead.
    pub(super) invalidate: bool,
    /// A revalidation (or a miss that offered other variants' entity tags): the request
    /// without any validator, to send when a 304 selects no stored response at hand.
    pub(super) unconditional: Option<RequestHead>,
    /// That request as written for the origin (`forward`).
    pub(super) refetch: Option<Vec<u8>>,
    /// Other variants' entity tags went with the request.
    pub(super) offered: bool,
    /// The client's preconditions or range were set aside for a revalidation: they are
    /// answered from the stored object, not from what the origin sends the cache.
    pub(super) set_aside: bool,
    /// The response is withheld from the client (its body read, not relayed) and
    /// answers the set-aside fields once it is whole and stored.
    withheld: bool,
    /// What the cache obeys for this transaction.
    policy: Arc<CachePolicy>,
    /// When it began (an invalidation of `key` after that keeps it from storing), and
    /// the same as Unix seconds, the request time of RFC 9111 §4.2.3.
    began: Instant,
    request_time: u64,
}

impl CacheTx {
    /// Its response is withheld from the client until stored ([`HeadUse::Withheld`]).
    pub(super) fn withheld(&self) -> bool {
        self.withheld
    }

    pub(super) fn new(
        key: String,
        stale: Option<Stored>,
        fill: Option<Fill>,
        policy: Arc<CachePolicy>,
    ) -> CacheTx {
        CacheTx {
            key,
            stale,
            capture: None,
            fill,
            request: None,
            variants: None,
            invalidate: false,
            unconditional: None,
            refetch: None,
            offered: false,
            set_aside: false,
            withheld: false,
            policy,
            began: Instant::now(),
            request_time: caching::now_s(),
        }
    }

    /// What a final response with `status` does to the cache: a success answering an
    /// unsafe request invalidates the URL's object; a 304 answering the cache's own
    /// revalidation refreshes the stale one; a server error may be answered with it
    /// instead (`stale-if-error`).
    pub(super) fn effect(&self, status: u16) -> ResponseEffect {
        let now = caching::now_s();
        ResponseEffect {
            invalidates: self.invalidate && (200..400).contains(&status),
            refreshes: status == 304 && (self.stale.is_some() || self.offered),
            stale_for_error: status >= 500
                && self
                    .stale
                    .as_ref()
                    .is_some_and(|s| caching::stale_if_error(s, &self.policy, now)),
        }
    }

    /// Capturing a response that goes to the client as it comes (not withheld): the
    /// origin may be read ahead of the client, so that the fill goes at the origin's
    /// pace (`read_origin`).
    pub(super) fn relayed_capture(&self) -> bool {
        self.capture.is_some() && !self.withheld
    }

    /// A response is being captured for storing.
    pub(super) fn capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// Whether the capture may go on once its client has left (a background fill): it
    /// is capturing, and at least `http.background_fill_completed_threshold` of the
    /// response has come, `left` bytes being still to come (None: unknown, which only a
    /// threshold of 0 lets go on).
    pub(super) fn outlives_client(&self, left: Option<u64>) -> bool {
        let Some(cap) = self.capture.as_ref() else {
            return false;
        };
        let threshold = self.policy.background_fill_threshold;
        if threshold <= 0.0 {
            return true;
        }
        let have = cap.body.len() as f64;
        left.is_some_and(|left| have >= threshold * (have + left as f64))
    }

    /// Its revalidation failed at the origin and the stale object answers instead: the
    /// fill ends so marked ([`Fill::failed`]).
    fn revalidation_failed(&mut self) {
        if let Some(fill) = self.fill.take() {
            fill.failed();
        }
    }

    /// Its origin could not be reached (`err`): the fill ends so marked, and the
    /// requests waiting for it get the same answer ([`Fill::unreachable`]).
    pub(super) fn unreachable(&mut self, err: &Error) {
        if let Some(fill) = self.fill.take() {
            fill.unreachable(err.kind.clone());
        }
    }

    /// Ends this transaction's fill: the requests waiting for it look the key up again.
    pub(super) fn end_fill(&mut self) {
        self.fill = None;
    }

    /// Takes response body bytes into the capture; one too large (or broken) streams
    /// through uncached, and the requests waiting for this fill go on without it (too
    /// large, the URL counts as not storable for a while).
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        let Some(fed) = self.capture.as_mut().map(|cap| cap.feed(bytes)) else {
            return;
        };
        if fed != Fed::More {
            self.capture = None;
            // Broken framing fails the transfer, which says nothing of the URL.
            if let (Fed::TooLarge, Some(fill)) = (fed, self.fill.take()) {
                fill.unstorable();
            }
        }
    }
}

/// What the cache made of a final response head ([`Session::cache_response_head`]).
pub(super) enum HeadUse {
    /// Relay it to the client (and capture it, if storable).
    Relay,
    /// The client was answered from the cache in its place.
    Answered,
    /// It was a 304 that selects no stored response at hand (one naming a variant not
    /// in RAM, or a representation the cache does not hold at all): send this request
    /// (the client's without validators) instead, and relay what comes.
    Resend(Vec<u8>),
    /// Read its body without relaying it: once whole and stored, it answers the
    /// client's set-aside preconditions and range ([`Session::answer_withheld`]).
    Withheld,
}

/// Which stored response a 304 freshens (RFC 9111 §4.3.4).
enum Selected {
    /// The one revalidated.
    Held,
    /// Another variant of the URL, read from RAM.
    Other(Stored),
    /// None at hand: another variant not in RAM, or nothing stored has the 304's
    /// validator. The request goes again without validators.
    NotAtHand,
}

/// The stored response `head` (a 304) selects (RFC 9111 §4.3.4): ours, `held`, when its
/// validator names ours (or it has none); else the variant of the URL its entity tag
/// names, when we offered the variants' tags. A 304 that selects none updates nothing;
/// nor does one that changes the `Vary` of the one it names (`Stored::same_vary`).
fn select_variant(
    c: &CacheTx,
    held: Option<&Stored>,
    head: &ResponseHead,
    cache: Option<&Arc<Cache>>,
) -> Selected {
    let by = caching::NotModifiedBy::of(head);
    if held.is_some_and(|h| h.selected_by(head)) {
        return Selected::Held;
    }
    let Some(v) = c.variants.as_ref().filter(|_| c.offered) else {
        return Selected::NotAtHand;
    };
    let Some(i) = v.kept.1.iter().position(|t| by.names_tag(t)) else {
        return Selected::NotAtHand;
    };
    let key = caching::alternate_key(&c.key, v.generation, &v.kept.0[i]);
    match cache.map(|cache| cache.lookup(&key)) {
        Some(Lookup::Done(Some(bytes))) => match Stored::decode(&bytes) {
            Some(other) if other.selected_by(head) => Selected::Other(other),
            _ => Selected::NotAtHand,
        },
        _ => Selected::NotAtHand,
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
    /// A server error answering a revalidation whose object may be served stale
    /// instead (RFC 5861 §4): the stale object answers, the error's body is dropped.
    pub(super) stale_for_error: bool,
}

/// The variants (`Vary`) of a URL, as its key's object tells: their generation, and
/// which are kept (oldest first), for the limit on them (`cache.limits.http.max_alts`).
pub(super) struct UrlVariants {
    pub(super) generation: u64,
    /// Their request sides and entity tags, oldest first.
    pub(super) kept: revalidate::Seen,
}

impl UrlVariants {
    /// What `obj`, a variant at its URL's key, tells.
    pub(super) fn of(obj: &Stored) -> UrlVariants {
        UrlVariants {
            generation: obj.generation,
            kept: (obj.kept_variants(), obj.kept_tags()),
        }
    }
}

/// A storable response's payload, gathered as it passes to the client.
struct Capture {
    head: ResponseHead,
    /// The request's side of the response's `Vary` (`caching::variant`).
    variant: Vec<u8>,
    kept: Storable,
    /// When the head came (the response time of RFC 9111 §4.2.3).
    response_time: u64,
    body: Vec<u8>,
    chunked: Option<ChunkedScanner>,
    limit: u64,
}

/// What a capture made of body bytes ([`Capture::feed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fed {
    /// Taken; more may come.
    More,
    /// The object is larger than the cache stores.
    TooLarge,
    /// The chunked framing is broken.
    Broken,
}

impl Capture {
    /// Adds framed body bytes.
    fn feed(&mut self, bytes: &[u8]) -> Fed {
        match self.chunked.as_mut() {
            Some(sc) => {
                if sc.decode(bytes, &mut self.body).is_err() {
                    return Fed::Broken;
                }
            }
            None => self.body.extend_from_slice(bytes),
        }
        if self.body.len() as u64 <= self.limit {
            Fed::More
        } else {
            Fed::TooLarge
        }
    }
}

impl Session {
    /// The cache's side of a final response head `head`, framed as `framing`, with
    /// `effect`: invalidates what an unsafe request changed (and the URLs its
    /// `Location` and `Content-Location` name on the same host, RFC 9111 §4.4), answers
    /// from the refreshed object on a 304 to a revalidation, or from the stale one in
    /// place of a server error (true: answered from the cache), or sets up the capture
    /// of a storable response.
    pub(super) fn cache_response_head(
        &mut self,
        head: &ResponseHead,
        framing: BodyFraming,
        effect: ResponseEffect,
    ) -> HeadUse {
        let shared = self.shared.clone();
        let Some(tx) = self.tx.as_mut() else {
            return HeadUse::Relay;
        };
        if tx.cache.as_ref().is_some_and(|c| c.invalidate) {
            let c = tx.cache.take();
            if let (true, Some(c), Some(cache)) = (effect.invalidates, c, shared.cache()) {
                // Its variants, if any, go with it: the next one stored starts a new
                // generation.
                for key in std::iter::once(c.key.clone()).chain(related_keys(head, &c.key)) {
                    cache.remove(&key);
                    shared.note_invalidation(&key);
                    shared.metrics.cache_invalidations.inc();
                }
            }
        }
        let Some(c) = tx.cache.as_deref_mut() else {
            return HeadUse::Relay;
        };
        let now = caching::now_s();
        let client = c.request.clone();
        if effect.refreshes || effect.stale_for_error {
            let held = c.stale.take();
            let mut obj = match held {
                Some(obj) if effect.stale_for_error => obj,
                held => {
                    // §4.3.4: the 304 freshens the stored response its validator
                    // selects, which may be another variant of the URL than the one we
                    // held (or than none, when the request's own was not stored).
                    match select_variant(c, held.as_ref(), head, shared.cache()) {
                        Selected::Held => held.expect("selected what was held"),
                        Selected::Other(other) => other,
                        // §4.3.4 forbids updating anything with it, and it is no
                        // answer for the client, whose request may not have been
                        // conditional (or not on these validators): the request goes
                        // again without the cache's validators, and its full response
                        // is relayed (and stored, if it may be), as for a miss.
                        Selected::NotAtHand => {
                            return match c.refetch.take() {
                                Some(request) => HeadUse::Resend(request),
                                None => HeadUse::Relay,
                            };
                        }
                    }
                }
            };
            if effect.refreshes {
                self.refresh_stored(&mut obj, head, now);
                shared.metrics.cache_revalidated.inc();
                if let Some(l) = self.log_req.as_mut() {
                    l.result = LogResult::RefreshHit;
                }
            } else {
                shared.metrics.cache_stale_sie.inc();
                c.revalidation_failed();
                if let Some(tx) = self.tx.as_mut() {
                    tx.discard = true; // the error's body goes nowhere
                }
                if let Some(l) = self.log_req.as_mut() {
                    l.result = LogResult::RefreshFailOld;
                }
            }
            shared.metrics.cache_hits.inc();
            let request = client.unwrap_or_else(placeholder_get);
            let keep = self.tx.as_ref().is_some_and(|tx| tx.client_keep_alive);
            self.serve_answer(&request, &obj, now, keep);
            return HeadUse::Answered;
        }
        // §4.3.5: a HEAD response may update, or outdate, the stored GET response.
        let head_request = c.request.as_ref().is_some_and(|r| r.method() == "HEAD");
        if head_request && head.status == 200 {
            if let Some(mut obj) = c.stale.take() {
                if obj.same_as_head(head) {
                    self.refresh_stored(&mut obj, head, now);
                } else if let Some(cache) = shared.cache() {
                    // Another representation now: the next GET fetches it.
                    forget(cache, &c.key, &obj);
                }
                return HeadUse::Relay;
            }
        }
        let limit = shared.settings.max_doc_size;
        let fits = !matches!(framing, BodyFraming::Length(n) if n > limit);
        let d = caching::response_directives(head, &c.policy.targeted);
        let kept = c
            .request
            .as_ref()
            .filter(|r| r.method() == "GET")
            .and_then(|r| caching::storable(r, head, &d, &c.policy, c.request_time, now));
        // A coding besides chunked is the message's, not the representation's, and is
        // not decoded here (RFC 9112 §6.1, §7): such a payload is relayed, never stored.
        let decoded = !head.transfer_coded();
        c.capture = kept
            .filter(|_| fits && decoded)
            .zip(c.request.as_ref().and_then(|r| caching::variant(head, r)))
            .map(|(kept, variant)| Capture {
                head: head.clone(),
                variant,
                kept,
                response_time: now,
                body: Vec::new(),
                chunked: (framing == BodyFraming::Chunked).then(ChunkedScanner::new),
                limit,
            });
        // The client's own preconditions and range, set aside for the revalidation, are
        // answered from the new response as a hit's would be, once it is stored. Only
        // with a known length, which the capture cannot outgrow midway: a chunked or
        // close-delimited one is relayed as it comes (its capture may still fail).
        if c.set_aside && c.capture.is_some() && matches!(framing, BodyFraming::Length(_)) {
            c.withheld = true;
            if let Some(tx) = self.tx.as_mut() {
                tx.discard = true;
            }
            return HeadUse::Withheld;
        }
        if c.capture.is_none() {
            // Nothing to store: let the requests waiting for this fill go to the origin
            // now, not after this whole transfer, and the next ones for a while too.
            if let Some(fill) = c.fill.take() {
                fill.unstorable();
            }
            // Replaced by something we may not keep: forget the old one.
            if let (Some(old), Some(cache)) = (&c.stale, shared.cache()) {
                forget(cache, &c.key, old);
            }
        }
        HeadUse::Relay
    }

    /// Applies a validating response head (a 304, or a HEAD's 200) to `obj` (RFC 9111
    /// §4.3.4): its fields, its age and freshness; stores the result unless the URL
    /// changed meanwhile or it may not be stored any more (then removes it).
    fn refresh_stored(&mut self, obj: &mut Stored, head: &ResponseHead, now: u64) -> bool {
        let shared = self.shared.clone();
        let Some(c) = self.tx.as_ref().and_then(|tx| tx.cache.as_deref()) else {
            return false;
        };
        let age = caching::initial_age(head, c.request_time, now);
        // The stored policy, until the merged head says otherwise.
        let mut kept = Storable {
            lifetime: obj.lifetime,
            initial_age: age,
            must_revalidate: obj.must_revalidate,
            no_cache: obj.no_cache,
            immutable: obj.immutable,
            swr: obj.swr,
            sie: obj.sie,
            strip: Vec::new(),
        };
        obj.refresh(head, &kept, now);
        let merged = obj.response();
        let client = c.request.clone().unwrap_or_else(placeholder_get);
        let again = merged.as_ref().and_then(|resp| {
            let d = caching::response_directives(resp, &c.policy.targeted);
            caching::storable(&client, resp, &d, &c.policy, c.request_time, now)
        });
        let Some(cache) = shared.cache() else {
            return false;
        };
        match again {
            Some(s) => {
                kept = Storable {
                    initial_age: age,
                    ..s
                };
                obj.refresh(head, &kept, now);
            }
            None => {
                cache.remove(&c.key);
                return false;
            }
        }
        if shared.invalidated_since(&c.key, c.began) {
            return false;
        }
        let seen = c.variants.as_ref().map(|v| v.kept.clone());
        let seen = seen.unwrap_or_else(|| (obj.kept_variants(), obj.kept_tags()));
        revalidate::store(cache, &c.key, obj, &seen, shared.settings.max_alts);
        true
    }

    /// Stores what the transaction captured, if it may still; returns the object made
    /// of it (stored or not).
    pub(super) fn store_capture(&self, c: &mut CacheTx) -> Option<Stored> {
        let (Some(cap), Some(cache)) = (c.capture.take(), self.shared.cache()) else {
            return None;
        };
        let mut obj = Stored::new(
            &cap.head,
            cap.body,
            &cap.kept,
            cap.response_time,
            cap.variant,
        );
        let none = (Vec::new(), Vec::new());
        let kept = match (&c.variants, obj.variant.is_empty()) {
            (_, true) => &none,
            (Some(v), false) => {
                obj.generation = v.generation;
                &v.kept
            }
            (None, false) => {
                obj.generation = caching::new_generation();
                &none
            }
        };
        // A change to the URL accepted while this was under way may postdate it: not
        // stored then, but the URL stays storable (the next miss fills it).
        if !self.shared.invalidated_since(&c.key, c.began) {
            let max_alts = self.shared.settings.max_alts;
            if revalidate::store(cache, &c.key, &mut obj, kept, max_alts) {
                self.shared.metrics.cache_writes.inc();
            } else if let Some(fill) = c.fill.take() {
                // Stored nowhere (its record too large for its span, or its key too
                // long, and RAM could not hold it): not storable, as if too large.
                fill.unstorable();
            }
            self.shared.note_cache_usage();
        }
        Some(obj)
    }

    /// Ends a withheld response ([`HeadUse::Withheld`]): `obj`, made of it, answers the
    /// client's request with its preconditions and range, as a hit does. Without it
    /// (which a known length rules out) the client gets nothing more, and the
    /// connection closes (`keep` is cleared).
    pub(super) fn answer_withheld(&mut self, c: &CacheTx, obj: Option<Stored>, keep: &mut bool) {
        if !c.withheld {
            return;
        }
        match (obj, c.request.as_ref()) {
            (Some(obj), Some(request)) => self.serve_answer(request, &obj, caching::now_s(), *keep),
            _ => *keep = false,
        }
    }

    /// The stale object of a failed revalidation answers in place of the error when
    /// `stale-if-error` allows (true: answered); with `must-revalidate`, an origin that
    /// cannot be reached is a 504 (RFC 9111 §4.2.4). `err` is then the error to answer.
    pub(super) fn stale_instead_of(&mut self, err: &mut Error) -> bool {
        let Some(c) = self.tx.as_mut().and_then(|tx| tx.cache.as_deref_mut()) else {
            return false;
        };
        let Some(stale) = c.stale.as_ref() else {
            return false;
        };
        let now = caching::now_s();
        if caching::stale_if_error(stale, &c.policy, now) {
            c.revalidation_failed();
            let obj = c.stale.take().expect("checked");
            let request = c.request.clone().unwrap_or_else(placeholder_get);
            self.tx = None;
            self.serve_stale_for_error(&request, &obj, now);
            return true;
        }
        if stale.must_revalidate && err.status() == 502 {
            *err = Error::new(ErrorKind::OriginTimeout).context("stale and must-revalidate");
        }
        false
    }

    /// Answers `req` with the stale `obj` in place of an origin's error
    /// (`stale-if-error`), as a hit.
    pub(super) fn serve_stale_for_error(&mut self, req: &RequestHead, obj: &Stored, now: u64) {
        self.shared.metrics.cache_hits.inc();
        self.shared.metrics.cache_stale_sie.inc();
        self.serve_hit(req, obj, now, LogResult::RefreshFailOld);
    }
}

/// Removes `old`, the object at `key` (and, a variant, at its alternate key too).
fn forget(cache: &Cache, key: &str, old: &Stored) {
    cache.remove(key);
    if let Some(alternate) = old.alternate_at(key) {
        cache.remove(&alternate);
    }
}

/// A GET for when the client's request is not at hand (it always is: the session keeps
/// it with the cache part of its transaction).
fn placeholder_get() -> RequestHead {
    super::super::codec::parse_request(b"GET / HTTP/1.1\r\nHost: -\r\n\r\n", 64)
        .ok()
        .flatten()
        .map(|(h, _)| h)
        .expect("a fixed request parses")
}

/// The keys of the URLs a response's `Location` and `Content-Location` name on the
/// same origin as `key`, the request's target (RFC 9111 §4.4), relative references
/// resolved against it.
fn related_keys(head: &ResponseHead, key: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for name in ["location", "content-location"] {
        let Some(v) = head.header(name).and_then(|v| std::str::from_utf8(v).ok()) else {
            continue;
        };
        if let Some(k) = resolve_on_origin(key, v.trim()) {
            if k != key && !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

/// The key of the URL `reference` names, resolved against `key` as its base URI (RFC
/// 3986 §5.2.2, with §5.2.4's removal of dot segments; the fragment dropped), when that
/// URL is on the same origin: the same scheme and authority (host without regard to
/// case, an absent port the scheme's default). None for another origin, or for a
/// reference that is no URI reference we can place (a scheme without an authority).
/// The result keeps `key`'s spelling of the authority, the spelling keys are made with.
fn resolve_on_origin(key: &str, reference: &str) -> Option<String> {
    let (scheme, rest) = key.split_once("://")?;
    let https = match scheme {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    let (authority, base) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let base_path = base.split('?').next().unwrap_or_default();
    let r = reference.split('#').next().unwrap_or_default();
    // §3.1: a scheme is a letter, then letters, digits, "+", "-" or ".", before a ":".
    let r_scheme = r.split_once(':').map(|(s, _)| s).filter(|s| {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let r = match r_scheme {
        Some(s) if !s.eq_ignore_ascii_case(scheme) => return None,
        Some(s) => &r[s.len() + 1..],
        None => r,
    };
    let (path, query) = match r.find('?') {
        Some(i) => r.split_at(i),
        None => (r, ""),
    };
    let target = if let Some(net) = path.strip_prefix("//") {
        // Network-path (or absolute URI): its own authority, which must be ours.
        let (r_authority, path) = net.split_at(net.find('/').unwrap_or(net.len()));
        if !same_authority(r_authority, authority, https) {
            return None;
        }
        remove_dot_segments(path) + query
    } else if r_scheme.is_some() {
        // "http:g": no authority to compare; RFC 3986 §5.2.2 (strict) gives it none.
        return None;
    } else if path.starts_with('/') {
        remove_dot_segments(path) + query
    } else if path.is_empty() {
        // Query-only (or empty: the target itself).
        let query = if query.is_empty() {
            &base[base_path.len()..]
        } else {
            query
        };
        base_path.to_string() + query
    } else {
        // §5.2.3: merged with the base path up to its last "/".
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        let merged = if dir.is_empty() {
            format!("/{path}")
        } else {
            format!("{dir}{path}")
        };
        remove_dot_segments(&merged) + query
    };
    // RFC 9110 §4.2.3: an empty path is "/".
    let target = if target.is_empty() || target.starts_with('?') {
        format!("/{target}")
    } else {
        target
    };
    Some(caching::key(https, authority, &target))
}

/// Whether authorities `a` and `b` name the same origin under the scheme (RFC 9110
/// §4.2.3): hosts equal without regard to case, an empty or absent port the default.
fn same_authority(a: &str, b: &str, https: bool) -> bool {
    let default = if https { ":443" } else { ":80" };
    let norm = |x: &str| {
        let x = x.strip_suffix(default).unwrap_or(x);
        x.strip_suffix(':').unwrap_or(x).to_ascii_lowercase()
    };
    !a.is_empty() && norm(a) == norm(b)
}

/// RFC 3986 §5.2.4 for an absolute path (or an empty one): "." and ".." segments
/// removed, ".." taking the segment before it (none above the root), a trailing one
/// leaving the path ending in "/".
fn remove_dot_segments(path: &str) -> String {
    let Some(rest) = path.strip_prefix('/') else {
        return String::new();
    };
    let mut out: Vec<&str> = Vec::new();
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            seg => out.push(seg),
        }
        if matches!(seg, "." | "..") && segments.peek().is_none() {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::codec::test_util::resp;

    #[test]
    fn rfc9111_4_4_location_and_content_location_on_the_same_host() {
        let key = "http://o:81/a";
        let r = resp("HTTP/1.1 201 Created\r\nLocation: /b?x#frag\r\nContent-Location: http://O:81/c\r\n\r\n");
        assert_eq!(related_keys(&r, key), ["http://o:81/b?x", "http://o:81/c"]);
        // Other hosts and schemes are not ours to touch; a network-path reference to
        // our own authority is ours, resolved like the rest.
        let r = resp("HTTP/1.1 201 Created\r\nLocation: http://other/b\r\nContent-Location: //other:81/c\r\n\r\n");
        assert!(related_keys(&r, key).is_empty());
        let r = resp(
            "HTTP/1.1 201 Created\r\nLocation: //o:81/c\r\nContent-Location: c/../d?y\r\n\r\n",
        );
        assert_eq!(related_keys(&r, key), ["http://o:81/c", "http://o:81/d?y"]);
        let r = resp("HTTP/1.1 201 Created\r\nLocation: https://o:81/b\r\n\r\n");
        assert!(related_keys(&r, key).is_empty());
        // An https origin's URLs are keyed apart from an http one's of the same name.
        let r =
            resp("HTTP/1.1 201 Created\r\nLocation: /b\r\nContent-Location: http://o:81/c\r\n\r\n");
        assert_eq!(related_keys(&r, "https://o:81/a"), ["https://o:81/b"]);
        assert_ne!(
            caching::key(true, "o", "/a"),
            caching::key(false, "o", "/a")
        );
        // The URL itself is not listed twice.
        let r = resp("HTTP/1.1 200 OK\r\nContent-Location: /a\r\n\r\n");
        assert!(related_keys(&r, key).is_empty());
    }

    #[test]
    fn rfc3986_5_4_references_resolve_against_the_target() {
        // RFC 3986 §5.4's examples, base "http://a/b/c/d;p?q" (the base's own and other
        // hosts' results aside).
        let base = "http://a/b/c/d;p?q";
        let normal = [
            ("g", "/b/c/g"),
            ("./g", "/b/c/g"),
            ("g/", "/b/c/g/"),
            ("/g", "/g"),
            ("?y", "/b/c/d;p?y"),
            ("g?y", "/b/c/g?y"),
            ("#s", "/b/c/d;p?q"),
            ("g#s", "/b/c/g"),
            ("g?y#s", "/b/c/g?y"),
            (";x", "/b/c/;x"),
            ("g;x", "/b/c/g;x"),
            ("", "/b/c/d;p?q"),
            (".", "/b/c/"),
            ("./", "/b/c/"),
            ("..", "/b/"),
            ("../", "/b/"),
            ("../g", "/b/g"),
            ("../..", "/"),
            ("../../", "/"),
            ("../../g", "/g"),
        ];
        let abnormal = [
            ("../../../g", "/g"),
            ("../../../../g", "/g"),
            ("/./g", "/g"),
            ("/../g", "/g"),
            ("g.", "/b/c/g."),
            (".g", "/b/c/.g"),
            ("g..", "/b/c/g.."),
            ("..g", "/b/c/..g"),
            ("./../g", "/b/g"),
            ("./g/.", "/b/c/g/"),
            ("g/./h", "/b/c/g/h"),
            ("g/../h", "/b/c/h"),
            ("g;x=1/./y", "/b/c/g;x=1/y"),
            ("g;x=1/../y", "/b/c/y"),
            ("g?y/./x", "/b/c/g?y/./x"),
            ("g#s/../x", "/b/c/g"),
        ];
        for (reference, path) in normal.iter().chain(&abnormal) {
            let want = format!("http://a{path}");
            assert_eq!(
                resolve_on_origin(base, reference).as_deref(),
                Some(want.as_str()),
                "{reference}"
            );
        }
        // Absolute and network-path references: ours when the scheme and authority are
        // (without regard to case, the default port spelled or not), with their dot
        // segments removed and an empty path made "/".
        let ours = [
            ("http://a/b/../g", "http://a/g"),
            ("HTTP://A:80/g?y", "http://a/g?y"),
            ("//a:/g", "http://a/g"),
            ("//a", "http://a/"),
            ("//a?y", "http://a/?y"),
        ];
        for (reference, want) in ours {
            assert_eq!(
                resolve_on_origin(base, reference).as_deref(),
                Some(want),
                "{reference}"
            );
        }
        assert_eq!(
            resolve_on_origin("https://a:8443/x/y", "//A:8443/z").as_deref(),
            Some("https://a:8443/z")
        );
        assert_eq!(
            resolve_on_origin("http://a:80/x", "http://a/z").as_deref(),
            Some("http://a:80/z")
        );
        for foreign in [
            "g:h",
            "http:g",
            "https://a/g",
            "//g",
            "//a:81/g",
            "http://a:8080/g",
            "//user@a/g",
            "ftp://a/g",
        ] {
            assert_eq!(resolve_on_origin(base, foreign), None, "{foreign}");
        }
    }
}
