//! The stored object: what is kept of a response, its on-disk format (every earlier
//! version still read), the update a 304 brings (RFC 9111 §3.2, §4.3.4), and the heads
//! written from it: a hit, a 304, a 206, a 416. Pure.
//!
//! Format (`TSC5`, little-endian): magic, response time (u64, Unix s), corrected
//! initial age (u64), lifetime (u64), flags (u32: must-revalidate, no-cache,
//! immutable), stale-while-revalidate and stale-if-error windows (u32 each), status
//! (u16), head length (u32), variant length (u32), generation (u64), variant count
//! (u32); then the head (status line and fields, ending with the blank line), the
//! variant, the variants kept (each a u32 length and bytes, then its entity tag, a u32
//! length and bytes, empty when it has none), and the body.

use super::conditional::{NotModifiedBy, Validators};
use super::freshness::Storable;
use super::vary::variant;
use crate::http::codec::{self, RequestHead, ResponseHead, Skip};
use crate::http::field_names::{name_bits, names};
use crate::http::fields::Fields;
use std::sync::Arc;

/// Objects stored before `Vary` was supported: no variant.
const MAGIC_V1: &[u8; 4] = b"TSC1";
/// Objects with the request's side of their `Vary` (possibly empty).
const MAGIC_V2: &[u8; 4] = b"TSC2";
/// As V2, and the generation of their variants.
const MAGIC_V3: &[u8; 4] = b"TSC3";
/// As V3, and the variants of the generation stored so far.
const MAGIC_V4: &[u8; 4] = b"TSC4";
/// As V4, with the age, lifetime and policy of RFC 9111 and RFC 5861.
const MAGIC: &[u8; 4] = b"TSC5";
/// Bytes before the head in `MAGIC` objects.
const FIXED: usize = 62;

const MUST_REVALIDATE: u32 = 1;
const NO_CACHE: u32 = 2;
const IMMUTABLE: u32 = 4;

/// Fields never stored, never taken from a 304, beside the framing and hop-by-hop ones
/// and those the Connection header names ([`not_kept`]): those recomputed for each
/// answer. `Via` is stored as it came (the hops before this one, a parent's among
/// them), and each answer adds this proxy's own entry after it (RFC 9110 §7.6.3).
const RECOMPUTED: u64 = name_bits(&["age"]);

/// Fields an update (a 304, or a HEAD's 200) never changes in a stored response, beside
/// those never stored (RFC 9111 §3.2): `Content-Length`, which stays the stored body's,
/// and `Content-Range`, which describes the message that carried it, not the stored one
/// (§3.2 lets a cache ignore the fields it processes and removes; a 206 made from the
/// stored response writes its own).
const NOT_UPDATED: &[&str] = &["content-length", "content-range"];

/// Fields of a 200 that a 304 answering a client's conditional request carries (RFC
/// 9110 §15.4.5).
const IN_304: &[&str] = &[
    "cache-control",
    "content-location",
    "date",
    "etag",
    "expires",
    "vary",
];

/// Variants' request sides, or their entity tags, oldest first.
pub type VariantList = Vec<Vec<u8>>;

/// A stored body: shared with the value it was read from, never copied to be served.
#[derive(Clone, Debug)]
pub struct Body {
    bytes: Arc<[u8]>,
    start: usize,
}

impl Body {
    /// A body of its own.
    pub fn new(v: Vec<u8>) -> Body {
        Body {
            bytes: v.into(),
            start: 0,
        }
    }

    /// The shared value and where in it the body starts.
    pub fn shared(&self) -> (&Arc<[u8]>, usize) {
        (&self.bytes, self.start)
    }
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        **self == **other
    }
}

impl Eq for Body {}

/// A stored response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Unix s when the response, or the 304 that last refreshed it, was received.
    pub response_time: u64,
    /// Its corrected initial age then (RFC 9111 §4.2.3).
    pub initial_age: u64,
    /// Freshness lifetime, s.
    pub lifetime: u64,
    /// Never served stale without revalidation.
    pub must_revalidate: bool,
    /// Revalidated on every use.
    pub no_cache: bool,
    /// Not revalidated while fresh.
    pub immutable: bool,
    /// `stale-while-revalidate` window, s.
    pub swr: u64,
    /// `stale-if-error` window, s.
    pub sie: u64,
    /// The response's status.
    pub status: u16,
    /// Status line and fields (with a Content-Length), ending with the blank line.
    pub head: Vec<u8>,
    /// The payload.
    pub body: Body,
    /// The request's side of its `Vary` ([`variant`]); empty without `Vary`.
    pub variant: Vec<u8>,
    /// For a variant: the generation of its URL's variants
    /// ([`alternate_key`](super::alternate_key)), kept while the URL's key holds
    /// variants and renewed when it held none (new, evicted, or invalidated), which
    /// leaves the older variants unreachable. 0 without `Vary`.
    pub generation: u64,
    /// For a variant at its URL's key: the variants of its generation kept so far, oldest
    /// first, its own last ([`Stored::join`]). Empty without `Vary`.
    pub alternates: Vec<Vec<u8>>,
    /// The entity tag of each of `alternates` (empty without one; the list is shorter
    /// for objects written before tags were kept): a revalidation offers them all.
    pub alternate_tags: Vec<Vec<u8>>,
}

/// A stored object's fields, borrowed from its bytes (any format version).
#[derive(Default)]
struct Parts<'a> {
    response_time: u64,
    initial_age: u64,
    lifetime: u64,
    flags: u32,
    swr: u64,
    sie: u64,
    status: Option<u16>,
    head: &'a [u8],
    variant: &'a [u8],
    generation: u64,
    alternates: Vec<&'a [u8]>,
    alternate_tags: Vec<&'a [u8]>,
    body_at: usize,
}

impl<'a> Parts<'a> {
    /// None if `b` is not such an object.
    fn of(b: &'a [u8]) -> Option<Parts<'a>> {
        let magic = b.get(..4)?;
        let u64_at = |i: usize| Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
        let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        let u16_at = |i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?));
        if magic == MAGIC {
            let head_len = u32_at(42)? as usize;
            let variant_len = u32_at(46)? as usize;
            let (generation, count) = (u64_at(50)?, u32_at(58)?);
            let mut p = Parts {
                response_time: u64_at(4)?,
                initial_age: u64_at(12)?,
                lifetime: u64_at(20)?,
                flags: u32_at(28)?,
                swr: u64::from(u32_at(32)?),
                sie: u64::from(u32_at(36)?),
                status: Some(u16_at(40)?),
                generation,
                ..Parts::default()
            };
            p.rest(b, FIXED, head_len, variant_len, count, true)?;
            return Some(p);
        }
        // Older versions: stored time and the end of freshness.
        let head_len = u32_at(20)? as usize;
        let (variant_len, generation, count, start) = match magic {
            m if m == MAGIC_V4 => (u32_at(24)? as usize, u64_at(28)?, u32_at(36)?, 40usize),
            m if m == MAGIC_V3 => (u32_at(24)? as usize, u64_at(28)?, 0, 36),
            m if m == MAGIC_V2 => (u32_at(24)? as usize, 0, 0, 28),
            m if m == MAGIC_V1 => (0, 0, 0, 24),
            _ => return None,
        };
        let stored_at = u64_at(4)?;
        let mut p = Parts {
            response_time: stored_at,
            lifetime: u64_at(12)?.saturating_sub(stored_at),
            generation,
            ..Parts::default()
        };
        p.rest(b, start, head_len, variant_len, count, false)?;
        Some(p)
    }

    /// Reads the head, the variant and the variant list (with `tags`, each entry's entity
    /// tag) that begin at `start`.
    fn rest(
        &mut self,
        b: &'a [u8],
        start: usize,
        head_len: usize,
        variant_len: usize,
        count: u32,
        tags: bool,
    ) -> Option<()> {
        let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        self.head = b.get(start..start.checked_add(head_len)?)?;
        let variant_at = start + head_len;
        self.variant = b.get(variant_at..variant_at.checked_add(variant_len)?)?;
        let mut at = variant_at + variant_len;
        for _ in 0..count {
            let len = u32_at(at)? as usize;
            self.alternates
                .push(b.get(at + 4..(at + 4).checked_add(len)?)?);
            at += 4 + len;
            if tags {
                let len = u32_at(at)? as usize;
                self.alternate_tags
                    .push(b.get(at + 4..(at + 4).checked_add(len)?)?);
                at += 4 + len;
            }
        }
        self.body_at = at;
        Some(())
    }
}

/// Writes `resp`'s status line and the fields a cache keeps of it ([`keeps`]: none its
/// `Connection` names, none of `strip`), a `Date` of `response_time` if it had none
/// (RFC 9110 §6.6.1: a cache records when it received a response without one), then
/// the framing ([`end_head`]).
fn stored_head(resp: &ResponseHead, strip: &[String], len: usize, response_time: u64) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason()).into_bytes();
    let not = not_kept(&resp.headers);
    for h in resp.headers.iter() {
        if !keeps(h.name, &not, strip) {
            continue;
        }
        push_field(&mut head, h.name.as_bytes(), h.value);
    }
    if !resp.headers.contains(names::DATE) {
        codec::write_date(&mut head, response_time);
    }
    end_head(&mut head, resp.status, len);
    head
}

/// Ends a stored head: Content-Length `len` (none on a 204, RFC 9110 §8.6), then the
/// blank line.
fn end_head(head: &mut Vec<u8>, status: u16, len: usize) {
    if status != 204 {
        head.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
}

/// What a head built anew from `headers` never takes: the fields the forwarder skips
/// (hop-by-hop, framing, those the Connection header names) and the recomputed ones.
fn not_kept(headers: &Fields) -> Skip<'_> {
    Skip::new(headers, RECOMPUTED, true, false)
}

/// Whether a field named `name` is kept: not skipped by `not` ([`not_kept`]), not
/// stripped.
fn keeps(name: &str, not: &Skip<'_>, strip: &[String]) -> bool {
    !not.skips(name.as_bytes()) && !strip.iter().any(|n| n.eq_ignore_ascii_case(name))
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl Stored {
    /// Builds an object from an origin response head received at `response_time`, its
    /// whole decoded body, how it is kept (`s`), and the request's side of its `Vary`.
    pub fn new(
        resp: &ResponseHead,
        body: Vec<u8>,
        s: &Storable,
        response_time: u64,
        variant: Vec<u8>,
    ) -> Stored {
        Stored {
            response_time,
            initial_age: s.initial_age,
            lifetime: s.lifetime,
            must_revalidate: s.must_revalidate,
            no_cache: s.no_cache,
            immutable: s.immutable,
            swr: s.swr,
            sie: s.sie,
            status: resp.status,
            head: stored_head(resp, &s.strip, body.len(), response_time),
            body: Body::new(body),
            variant,
            generation: 0,
            alternates: Vec::new(),
            alternate_tags: Vec::new(),
        }
    }

    /// Its current age at `now` (RFC 9111 §4.2.3).
    pub fn current_age(&self, now: u64) -> u64 {
        self.initial_age
            .saturating_add(now.saturating_sub(self.response_time))
    }

    /// Whether it may be served at `now` without revalidation.
    #[cfg(test)]
    pub fn is_fresh(&self, now: u64) -> bool {
        self.lifetime > self.current_age(now)
    }

    /// Applies a 304 (or the head of a HEAD response, §4.3.5) that validated it (RFC
    /// 9111 §3.2, §4.3.4): its fields replace the stored ones of the same names (but
    /// framing, hop-by-hop, `Connection`-named and [`NOT_UPDATED`] ones), and its age and
    /// freshness start again from it, as `s` says.
    pub fn refresh(&mut self, update: &ResponseHead, s: &Storable, response_time: u64) {
        let not = not_kept(&update.headers);
        let updates = |name: &str, strip: &[String]| {
            keeps(name, &not, strip) && !NOT_UPDATED.iter().any(|n| n.eq_ignore_ascii_case(name))
        };
        let replaced = |name: &str| {
            updates(name, &[])
                && update
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case(name))
        };
        let Some(old) = self.response() else {
            return;
        };
        let mut head = format!("HTTP/1.1 {} {}\r\n", old.status, old.reason()).into_bytes();
        for h in old.headers.iter() {
            let content_length = h.name.eq_ignore_ascii_case("content-length");
            if content_length
                || replaced(h.name)
                || s.strip.iter().any(|n| n.eq_ignore_ascii_case(h.name))
            {
                continue;
            }
            push_field(&mut head, h.name.as_bytes(), h.value);
        }
        for h in update.headers.iter() {
            if updates(h.name, &s.strip) {
                push_field(&mut head, h.name.as_bytes(), h.value);
            }
        }
        end_head(&mut head, old.status, self.body.len());
        self.head = head;
        self.response_time = response_time;
        self.initial_age = s.initial_age;
        self.lifetime = s.lifetime;
        self.must_revalidate = s.must_revalidate;
        self.no_cache = s.no_cache;
        self.immutable = s.immutable;
        self.swr = s.swr;
        self.sie = s.sie;
    }

    /// Whether 304 `update` selects it (RFC 9111 §4.3.4, [`NotModifiedBy`]) and may
    /// update it: not when it changes `Vary` ([`Stored::same_vary`]).
    pub fn selected_by(&self, update: &ResponseHead) -> bool {
        NotModifiedBy::of(update).selects(self) && self.same_vary(update)
    }

    /// Whether `update` leaves its `Vary` as it is: it has none (§3.2 keeps the stored
    /// one), or one naming the same fields in the same order. A stored response answers
    /// only requests that match the one it was fetched with on the fields its `Vary`
    /// names (§4.1); that request's values of other fields are not kept (its
    /// [`variant`] holds those of the old `Vary` alone), so a response whose `Vary`
    /// changes cannot say which requests it answers: it is not updated, and the request
    /// fetches the response anew.
    pub fn same_vary(&self, update: &ResponseHead) -> bool {
        if update.headers_all("vary").next().is_none() {
            return true;
        }
        self.response()
            .is_some_and(|old| vary_names(&old) == vary_names(update))
    }

    /// Whether `head`, a 200 to a HEAD request, describes the same representation as
    /// this stored GET response, so it may update it (RFC 9111 §4.3.5; otherwise it
    /// outdates it): the same entity tag when either has one (strong comparison for a
    /// strong one), else the same `Last-Modified`; the same `Content-Length` when
    /// `head` has one, and the same `Vary` ([`Stored::same_vary`]). Without any
    /// validator nothing says it is the same.
    pub fn same_as_head(&self, head: &ResponseHead) -> bool {
        let by = NotModifiedBy::of(head);
        let validated = match by {
            NotModifiedBy::Tag(_) => by.selects(self),
            // A date alone does not vouch for a stored response that has a tag.
            NotModifiedBy::LastModified(_) => {
                self.validators_held().etag.is_none() && by.selects(self)
            }
            NotModifiedBy::Nothing => false,
        };
        let length = head.header("content-length").map(<[u8]>::trim_ascii);
        validated
            && length.is_none_or(|n| self.field("content-length") == Some(n))
            && self.same_vary(head)
    }

    /// Whether it may answer `req`: always without `Vary`, else when the request has
    /// the same values of the fields `Vary` names as the one that fetched it.
    pub fn serves(&self, req: &RequestHead) -> bool {
        // A variant whose request side cannot be computed again (its head does not
        // parse, or no longer names the fields) serves nobody.
        self.variant.is_empty() || self.request_variant(req).is_some_and(|v| v == self.variant)
    }

    /// Where this object, a variant, is kept besides its URL's `key`; None without
    /// `Vary`.
    pub fn alternate_at(&self, key: &str) -> Option<String> {
        (!self.variant.is_empty())
            .then(|| super::alternate_key(key, self.generation, &self.variant))
    }

    /// The variants of its generation it knows of: the list, or just itself when it
    /// was stored before lists were kept. Empty without `Vary`.
    pub fn kept_variants(&self) -> Vec<Vec<u8>> {
        if self.alternates.is_empty() && !self.variant.is_empty() {
            vec![self.variant.clone()]
        } else {
            self.alternates.clone()
        }
    }

    /// The entity tags of [`kept_variants`](Self::kept_variants), in its order (empty
    /// where unknown).
    pub fn kept_tags(&self) -> Vec<Vec<u8>> {
        if self.alternates.is_empty() && !self.variant.is_empty() {
            vec![self.field("etag").unwrap_or_default().to_vec()]
        } else {
            (0..self.alternates.len())
                .map(|i| self.alternate_tags.get(i).cloned().unwrap_or_default())
                .collect()
        }
    }

    /// Makes it the newest of the variants `kept` (oldest first; their entity tags in
    /// `tags`), keeping at most `max` in its list (0: no list); returns those that no
    /// longer fit, oldest first.
    pub fn join(&mut self, kept: &[Vec<u8>], tags: &[Vec<u8>], max: usize) -> Vec<Vec<u8>> {
        self.alternates.clear();
        self.alternate_tags.clear();
        if self.variant.is_empty() || max == 0 {
            return Vec::new();
        }
        let mut all: Vec<(Vec<u8>, Vec<u8>)> = kept
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != self.variant)
            .map(|(i, v)| (v.clone(), tags.get(i).cloned().unwrap_or_default()))
            .collect();
        let own = self.field("etag").unwrap_or_default().to_vec();
        all.push((self.variant.clone(), own));
        let kept_now = all.split_off(all.len().saturating_sub(max));
        (self.alternates, self.alternate_tags) = kept_now.into_iter().unzip();
        all.into_iter().map(|(v, _)| v).collect()
    }

    /// `req`'s side of this object's `Vary`; None when it has no `Vary`.
    pub fn request_variant(&self, req: &RequestHead) -> Option<Vec<u8>> {
        if self.variant.is_empty() {
            return None;
        }
        variant(&self.response()?, req)
    }

    /// The bytes written to the cache.
    pub fn encode(&self) -> Vec<u8> {
        let alternates: usize = self.alternates.iter().map(|a| 8 + a.len()).sum::<usize>()
            + self.alternate_tags.iter().map(Vec::len).sum::<usize>();
        let mut v = Vec::with_capacity(
            FIXED + self.head.len() + self.variant.len() + alternates + self.body.len(),
        );
        let flag = |on: bool, bit: u32| if on { bit } else { 0 };
        let flags = flag(self.must_revalidate, MUST_REVALIDATE)
            | flag(self.no_cache, NO_CACHE)
            | flag(self.immutable, IMMUTABLE);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&self.response_time.to_le_bytes());
        v.extend_from_slice(&self.initial_age.to_le_bytes());
        v.extend_from_slice(&self.lifetime.to_le_bytes());
        v.extend_from_slice(&flags.to_le_bytes());
        v.extend_from_slice(&(self.swr.min(u64::from(u32::MAX)) as u32).to_le_bytes());
        v.extend_from_slice(&(self.sie.min(u64::from(u32::MAX)) as u32).to_le_bytes());
        v.extend_from_slice(&self.status.to_le_bytes());
        v.extend_from_slice(&(self.head.len() as u32).to_le_bytes());
        v.extend_from_slice(&(self.variant.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.generation.to_le_bytes());
        v.extend_from_slice(&(self.alternates.len() as u32).to_le_bytes());
        debug_assert_eq!(v.len(), FIXED);
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.variant);
        for (i, a) in self.alternates.iter().enumerate() {
            v.extend_from_slice(&(a.len() as u32).to_le_bytes());
            v.extend_from_slice(a);
            let tag = self.alternate_tags.get(i).map_or(&[][..], Vec::as_slice);
            v.extend_from_slice(&(tag.len() as u32).to_le_bytes());
            v.extend_from_slice(tag);
        }
        v.extend_from_slice(&self.body);
        v
    }

    /// Reads what [`encode`](Self::encode) (of any version) wrote, its body shared with
    /// `b`; None if it is not such an object.
    pub fn decode(b: &Arc<[u8]>) -> Option<Stored> {
        let p = Parts::of(b)?;
        let status = match p.status {
            Some(s) => s,
            None => {
                codec::parse_response(p.head, p.head.len() + 1)
                    .ok()??
                    .0
                    .status
            }
        };
        Some(Stored {
            response_time: p.response_time,
            initial_age: p.initial_age,
            lifetime: p.lifetime,
            must_revalidate: p.flags & MUST_REVALIDATE != 0,
            no_cache: p.flags & NO_CACHE != 0,
            immutable: p.flags & IMMUTABLE != 0,
            swr: p.swr,
            sie: p.sie,
            status,
            head: p.head.to_vec(),
            variant: p.variant.to_vec(),
            generation: p.generation,
            alternates: p.alternates.iter().map(|a| a.to_vec()).collect(),
            alternate_tags: p.alternate_tags.iter().map(|a| a.to_vec()).collect(),
            body: Body {
                bytes: b.clone(),
                start: p.body_at,
            },
        })
    }

    /// What [`decode`](Self::decode) then [`kept_variants`](Self::kept_variants) and
    /// [`kept_tags`](Self::kept_tags) would give, with the generation, without copying
    /// the body: for a store that needs only the URL object's variant list.
    pub fn decode_variants(b: &[u8]) -> Option<(u64, VariantList, VariantList)> {
        let p = Parts::of(b)?;
        if p.alternates.is_empty() && !p.variant.is_empty() {
            let own = Stored {
                head: p.head.to_vec(),
                ..Stored::placeholder()
            };
            let tag = own.field("etag").unwrap_or_default().to_vec();
            return Some((p.generation, vec![p.variant.to_vec()], vec![tag]));
        }
        let tags = (0..p.alternates.len())
            .map(|i| {
                p.alternate_tags
                    .get(i)
                    .map_or_else(Vec::new, |t| t.to_vec())
            })
            .collect();
        let list = p.alternates.iter().map(|a| a.to_vec()).collect();
        Some((p.generation, list, tags))
    }

    /// An empty object, to read fields of a head with.
    fn placeholder() -> Stored {
        Stored {
            response_time: 0,
            initial_age: 0,
            lifetime: 0,
            must_revalidate: false,
            no_cache: false,
            immutable: false,
            swr: 0,
            sie: 0,
            status: 0,
            head: Vec::new(),
            body: Body::new(Vec::new()),
            variant: Vec::new(),
            generation: 0,
            alternates: Vec::new(),
            alternate_tags: Vec::new(),
        }
    }

    /// The stored head, parsed.
    pub fn response(&self) -> Option<ResponseHead> {
        codec::parse_response(&self.head, self.head.len() + 1)
            .ok()
            .flatten()
            .map(|(h, _)| h)
    }

    /// The stored value of field `name`, if any (a scan of the stored head).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        let mut lines = self.head.split(|b| *b == b'\n').skip(1);
        lines.find_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|b| *b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| line[colon + 1..].trim_ascii())
        })
    }

    /// Its `ETag`, `Last-Modified` and `Date`, in one scan of the stored head (the first
    /// of each name, as [`Stored::field`] gives).
    pub fn validators_held(&self) -> Validators<'_> {
        let mut v = Validators::default();
        for line in self.head.split(|b| *b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let slot = match &line[..colon] {
                n if n.eq_ignore_ascii_case(b"etag") => &mut v.etag,
                n if n.eq_ignore_ascii_case(b"last-modified") => &mut v.last_modified,
                n if n.eq_ignore_ascii_case(b"date") => &mut v.date,
                _ => continue,
            };
            slot.get_or_insert(line[colon + 1..].trim_ascii());
        }
        v
    }

    /// Conditional fields for revalidating it (RFC 9111 §4.3.1).
    pub fn validators(&self) -> Vec<(String, Vec<u8>)> {
        let held = self.validators_held();
        let mut v = Vec::new();
        if let Some(etag) = held.etag {
            v.push(("If-None-Match".to_string(), etag.to_vec()));
        }
        if let Some(lm) = held.last_modified {
            v.push(("If-Modified-Since".to_string(), lm.to_vec()));
        }
        v
    }

    /// The head of a hit at `now`: the stored head plus `Age`, `Via` and `Connection`.
    pub fn write_hit(&self, out: &mut Vec<u8>, via: &str, keep_alive: bool, now: u64) {
        let head_end = self.head.len().saturating_sub(2);
        out.extend_from_slice(&self.head[..head_end]);
        finish_head(out, self.current_age(now), via, keep_alive);
    }

    /// A 304 to a client's conditional request at `now` (RFC 9110 §15.4.5): the status
    /// line and the fields a 200 would have carried of those a 304 keeps.
    pub fn write_not_modified(&self, out: &mut Vec<u8>, via: &str, keep_alive: bool, now: u64) {
        out.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\n");
        for line in self.head.split(|b| *b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            if IN_304
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(&line[..colon]))
            {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
        }
        finish_head(out, self.current_age(now), via, keep_alive);
    }

    /// The head of a 206 carrying bytes `start..end` of the body (RFC 9110 §15.3.7).
    pub fn write_partial(
        &self,
        out: &mut Vec<u8>,
        (start, end): (u64, u64),
        via: &str,
        keep_alive: bool,
        now: u64,
    ) {
        out.extend_from_slice(b"HTTP/1.1 206 Partial Content\r\n");
        self.write_fields_but_length(out);
        let len = self.body.len();
        out.extend_from_slice(
            format!(
                "Content-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\n",
                end - 1,
                end - start
            )
            .as_bytes(),
        );
        finish_head(out, self.current_age(now), via, keep_alive);
    }

    /// A 416 for a range the body does not have (RFC 9110 §15.5.17), dated `now`: it is
    /// made here, not stored, and a 4xx from a server with a clock carries a `Date` (RFC
    /// 9110 §6.6.1), as every other answer Turnstile makes does.
    pub fn write_unsatisfiable(&self, out: &mut Vec<u8>, via: &str, keep_alive: bool, now: u64) {
        out.extend_from_slice(b"HTTP/1.1 416 Range Not Satisfiable\r\n");
        codec::write_date(out, now);
        out.extend_from_slice(
            format!(
                "Content-Range: bytes */{}\r\nContent-Length: 0\r\n",
                self.body.len()
            )
            .as_bytes(),
        );
        finish_head(out, self.current_age(now), via, keep_alive);
    }

    fn write_fields_but_length(&self, out: &mut Vec<u8>) {
        for line in self.head.split(|b| *b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let name_end = line.iter().position(|b| *b == b':').unwrap_or(0);
            if line.is_empty() || line[..name_end].eq_ignore_ascii_case(b"content-length") {
                continue;
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The field names `head`'s `Vary` lists, in order, lower-cased.
fn vary_names(head: &ResponseHead) -> Vec<Vec<u8>> {
    codec::tokens(&head.headers, "vary".into())
        .map(<[u8]>::to_ascii_lowercase)
        .collect()
}

/// Ends a head with `Age`, `Via`, `Connection` and the blank line.
fn finish_head(out: &mut Vec<u8>, age: u64, via: &str, keep_alive: bool) {
    out.extend_from_slice(b"Age: ");
    out.extend_from_slice(age.to_string().as_bytes());
    out.extend_from_slice(b"\r\nVia: ");
    out.extend_from_slice(via.as_bytes());
    out.extend_from_slice(if keep_alive {
        b"\r\nConnection: keep-alive\r\n\r\n"
    } else {
        b"\r\nConnection: close\r\n\r\n"
    });
}
