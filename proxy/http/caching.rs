//! HTTP caching as a shared cache does it for GET (RFC 9111): what may be stored and for
//! how long, conditional revalidation, and the stored object's format. Pure functions;
//! the session decides when to call them.
//!
//! Choices: only GET is cached; a response with `Vary` is stored with the request's
//! values of the fields it names, and serves only requests with the same values (RFC
//! 9111 §4.1); each set of values keeps its own variant ([`alternate_key`]); `Vary: *`
//! is never stored. Only explicitly fresh responses are stored
//! (`s-maxage`, `max-age`, or `Expires` with `Date`); `no-cache` responses carrying a
//! validator (ETag or Last-Modified) are stored with
//! a zero lifetime, so every use revalidates. The key is the remapped origin URL.

use super::codec::{self, RequestHead, ResponseHead};
use std::time::{SystemTime, UNIX_EPOCH};

/// Objects stored before `Vary` was supported: no variant.
const MAGIC_V1: &[u8; 4] = b"TSC1";
/// Objects with the request's side of their `Vary` (possibly empty).
const MAGIC_V2: &[u8; 4] = b"TSC2";
/// As V2, and the generation of their variants.
const MAGIC_V3: &[u8; 4] = b"TSC3";
/// As V3, and the variants of the generation stored so far.
const MAGIC: &[u8; 4] = b"TSC4";
const CACHEABLE_STATUS: &[u16] = &[200, 203, 301, 404, 410];

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The cache key of a request forwarded to `host` (Host sent to the origin) and `path`.
pub fn key(host: &str, path: &str) -> String {
    format!("http://{host}{path}")
}

fn directives<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<(String, Option<String>)> {
    values
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|d| {
                    let d = d.trim();
                    match d.split_once('=') {
                        Some((k, v)) => (
                            k.trim().to_ascii_lowercase(),
                            Some(v.trim().trim_matches('"').to_string()),
                        ),
                        None => (d.to_ascii_lowercase(), None),
                    }
                })
                .collect::<Vec<_>>()
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// What the request allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestPolicy {
    /// The cache may answer or store this request at all.
    pub cacheable: bool,
    /// A stored answer must be revalidated first (`Cache-Control: no-cache`, `Pragma`).
    pub revalidate: bool,
}

/// A new generation for a URL's variants: unique per call in this process, and larger
/// than the ones before it across restarts (nanoseconds since the epoch, kept rising).
pub fn new_generation() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let prev = LAST
        .fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |last| Some(now.max(last + 1)),
        )
        .unwrap_or(0);
    now.max(prev + 1)
}

/// Whether a request with `method` may change what its target holds (RFC 9110 §9.2.1:
/// all but GET, HEAD, OPTIONS and TRACE): a non-error answer to it invalidates what the
/// cache holds for the target (RFC 9111 §4.4).
pub fn is_unsafe(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// The request's side of cacheability: GET, no Authorization, no `no-store`.
pub fn request_policy(req: &RequestHead) -> RequestPolicy {
    let cc = directives(req.headers_all("cache-control"));
    let has = |name: &str| cc.iter().any(|(k, _)| k == name);
    let pragma_no_cache = req
        .headers_all("pragma")
        .any(|v| v.eq_ignore_ascii_case(b"no-cache"));
    RequestPolicy {
        cacheable: req.method() == "GET"
            && req.header("authorization").is_none()
            && !has("no-store"),
        revalidate: has("no-cache")
            || has("max-age")
                && cc
                    .iter()
                    .any(|(k, v)| k == "max-age" && v.as_deref() == Some("0"))
            || pragma_no_cache,
    }
}

/// How long a response to a cacheable request may be served without revalidation, or
/// None when it must not be stored.
pub fn freshness(resp: &ResponseHead, now: u64) -> Option<u64> {
    if !CACHEABLE_STATUS.contains(&resp.status) {
        return None;
    }
    let cc = directives(resp.headers_all("cache-control"));
    let get = |name: &str| cc.iter().find(|(k, _)| k == name);
    if get("no-store").is_some() || get("private").is_some() {
        return None;
    }
    if get("no-cache").is_some() {
        // Storable, but every use revalidates: worth it only with a validator.
        let validator = resp.header("etag").is_some() || resp.header("last-modified").is_some();
        return validator.then_some(0);
    }
    let secs = |name: &str| get(name).and_then(|(_, v)| v.as_deref()?.parse::<u64>().ok());
    let lifetime = secs("s-maxage").or_else(|| secs("max-age")).or_else(|| {
        let expires = parse_http_date(resp.header("expires")?)?;
        let date = resp.header("date").and_then(parse_http_date).unwrap_or(now);
        Some(expires.saturating_sub(date))
    })?;
    Some(lifetime)
}

/// Where the variant `variant` (non-empty, see [`variant`]) of generation `generation`
/// of the object at `key` is kept. An object with `Vary` is stored twice: at its URL's
/// key, where the latest variant fetched answers lookups first (and tells which fields
/// vary and the generation), and at this key, where a request whose values differ
/// finds the variant made for them. A new generation starts when a variant is stored
/// while the URL's key holds none (first fetch, eviction, invalidation): the variants of
/// older generations are then out of reach and age out of the cache.
pub fn alternate_key(key: &str, generation: u64, variant: &[u8]) -> String {
    let mut k = String::with_capacity(key.len() + 22 + variant.len());
    k.push_str(key);
    k.push('\n');
    k.push_str(&generation.to_string());
    k.push('\n');
    for &b in variant {
        if (b.is_ascii_graphic() && b != b'%') || b == b' ' || b == b'\n' {
            k.push(b as char);
        } else {
            k.push_str(&format!("%{b:02X}"));
        }
    }
    k
}

/// The request's side of the response's `Vary`: for each field name it lists, in its
/// order, `name:value` and a line feed, the value being the request's field lines of
/// that name joined by commas (empty when it has none). Empty without `Vary`; None for
/// `Vary: *`, which no request matches.
pub fn variant(resp: &ResponseHead, req: &RequestHead) -> Option<Vec<u8>> {
    variant_of(resp.headers_all("vary"), req)
}

fn variant_of<'a>(vary: impl Iterator<Item = &'a [u8]>, req: &RequestHead) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for value in vary {
        for name in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if name.is_empty() {
                continue;
            }
            if name == b"*" {
                return None;
            }
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            for (i, v) in req.headers_all(&name).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(v.trim_ascii());
            }
            out.push(b'\n');
        }
    }
    Some(out)
}

/// Parses an HTTP date (RFC 9110 §5.6.7) into Unix seconds: the IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT`, or either obsolete form recipients must accept, RFC
/// 850 `Sunday, 06-Nov-94 08:49:37 GMT` (a two-digit year below 70 is 20xx) and asctime
/// `Sun Nov  6 08:49:37 1994`. Surrounding whitespace is ignored. Anything else is None,
/// including a date that does not exist or whose weekday is not its own (a cache then
/// treats an `Expires` as already expired, RFC 9111 §5.3).
pub fn parse_http_date(v: &[u8]) -> Option<u64> {
    let t = httpdate::parse_http_date(std::str::from_utf8(v).ok()?).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// A stored response: when it was stored, until when it is fresh, its head (with a
/// Content-Length framing) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Unix seconds when stored or last revalidated.
    pub stored_at: u64,
    /// Unix seconds until which it is fresh.
    pub fresh_until: u64,
    /// Status line and headers, ending with the blank line.
    pub head: Vec<u8>,
    /// The payload.
    pub body: Vec<u8>,
    /// What [`variant`] gave for the request that fetched it; empty without `Vary`.
    pub variant: Vec<u8>,
    /// For a variant: the generation of its URL's variants ([`alternate_key`]), kept
    /// while the URL's key holds variants and renewed when it held none (new, evicted,
    /// or invalidated), which leaves the older variants unreachable. 0 without `Vary`.
    pub generation: u64,
    /// For a variant at its URL's key: the variants of its generation kept so far, oldest
    /// first, its own last ([`Stored::join`]). Empty without `Vary`.
    pub alternates: Vec<Vec<u8>>,
}

/// A stored object's fields, borrowed from its bytes (any format version).
struct Parts<'a> {
    stored_at: u64,
    fresh_until: u64,
    head: &'a [u8],
    variant: &'a [u8],
    generation: u64,
    alternates: Vec<&'a [u8]>,
    body: &'a [u8],
}

impl<'a> Parts<'a> {
    /// None if `b` is not such an object.
    fn of(b: &'a [u8]) -> Option<Parts<'a>> {
        let magic = b.get(..4)?;
        let u64_at = |i: usize| Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
        let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        let head_len = u32_at(20)? as usize;
        let (variant_len, generation, alternates, start) = match magic {
            m if m == MAGIC => (u32_at(24)? as usize, u64_at(28)?, u32_at(36)?, 40usize),
            m if m == MAGIC_V3 => (u32_at(24)? as usize, u64_at(28)?, 0, 36),
            m if m == MAGIC_V2 => (u32_at(24)? as usize, 0, 0, 28),
            m if m == MAGIC_V1 => (0, 0, 0, 24),
            _ => return None,
        };
        let head = b.get(start..start.checked_add(head_len)?)?;
        let variant_at = start + head_len;
        let variant = b.get(variant_at..variant_at.checked_add(variant_len)?)?;
        let mut at = variant_at + variant_len;
        let mut list = Vec::new();
        for _ in 0..alternates {
            let len = u32_at(at)? as usize;
            list.push(b.get(at + 4..(at + 4).checked_add(len)?)?);
            at += 4 + len;
        }
        Some(Parts {
            stored_at: u64_at(4)?,
            fresh_until: u64_at(12)?,
            head,
            variant,
            generation,
            alternates: list,
            body: &b[at..],
        })
    }
}

impl Stored {
    /// Builds an object from an origin response head, its whole decoded body, and the
    /// request's side of its `Vary` ([`variant`]).
    pub fn new(
        resp: &ResponseHead,
        body: Vec<u8>,
        lifetime: u64,
        now: u64,
        variant: Vec<u8>,
    ) -> Stored {
        let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason()).into_bytes();
        for h in resp.headers.iter() {
            let n = h.name.to_ascii_lowercase();
            if matches!(
                n.as_str(),
                "content-length"
                    | "transfer-encoding"
                    | "connection"
                    | "keep-alive"
                    | "age"
                    | "via"
            ) {
                continue;
            }
            head.extend_from_slice(h.name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(h.value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        Stored {
            stored_at: now,
            fresh_until: now.saturating_add(lifetime),
            head,
            body,
            variant,
            generation: 0,
            alternates: Vec::new(),
        }
    }

    /// Whether it may answer `req`: always without `Vary`, else when the request has
    /// the same values of the fields `Vary` names as the one that fetched it.
    pub fn serves(&self, req: &RequestHead) -> bool {
        self.variant.is_empty() || self.request_variant(req).is_some_and(|v| v == self.variant)
    }

    /// Where this object is also kept as a variant of the URL at `key`
    /// ([`alternate_key`]); None without `Vary`.
    pub fn alternate_at(&self, key: &str) -> Option<String> {
        (!self.variant.is_empty()).then(|| alternate_key(key, self.generation, &self.variant))
    }

    /// The variants of this object's generation known to be kept: its list, or just
    /// itself for an object stored before lists were kept. Empty without `Vary`.
    pub fn kept_variants(&self) -> Vec<Vec<u8>> {
        if self.alternates.is_empty() && !self.variant.is_empty() {
            return vec![self.variant.clone()];
        }
        self.alternates.clone()
    }

    /// Makes this variant the newest of `kept` (the variants of its generation kept so
    /// far, oldest first) and keeps at most `max` of them: returns the ones that no
    /// longer fit, oldest first, for the caller to drop from the cache. With `max` 0 (no
    /// limit) no list is kept: it would only grow.
    pub fn join(&mut self, kept: &[Vec<u8>], max: usize) -> Vec<Vec<u8>> {
        self.alternates.clear();
        if self.variant.is_empty() || max == 0 {
            return Vec::new();
        }
        let mut all: Vec<Vec<u8>> = kept
            .iter()
            .filter(|v| **v != self.variant)
            .cloned()
            .collect();
        all.push(self.variant.clone());
        self.alternates = all.split_off(all.len().saturating_sub(max));
        all
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
        let alternates: usize = self.alternates.iter().map(|a| 4 + a.len()).sum();
        let mut v = Vec::with_capacity(
            40 + self.head.len() + self.variant.len() + alternates + self.body.len(),
        );
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&self.stored_at.to_le_bytes());
        v.extend_from_slice(&self.fresh_until.to_le_bytes());
        v.extend_from_slice(&(self.head.len() as u32).to_le_bytes());
        v.extend_from_slice(&(self.variant.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.generation.to_le_bytes());
        v.extend_from_slice(&(self.alternates.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.variant);
        for a in &self.alternates {
            v.extend_from_slice(&(a.len() as u32).to_le_bytes());
            v.extend_from_slice(a);
        }
        v.extend_from_slice(&self.body);
        v
    }

    /// Reads what [`encode`](Self::encode) wrote; None if it is not such an object.
    pub fn decode(b: &[u8]) -> Option<Stored> {
        let p = Parts::of(b)?;
        Some(Stored {
            stored_at: p.stored_at,
            fresh_until: p.fresh_until,
            head: p.head.to_vec(),
            variant: p.variant.to_vec(),
            body: p.body.to_vec(),
            generation: p.generation,
            alternates: p.alternates.iter().map(|a| a.to_vec()).collect(),
        })
    }

    /// What [`decode`](Self::decode) then [`kept_variants`](Self::kept_variants) would give,
    /// with the generation, without copying the head and body: for a store that needs
    /// only the URL object's variant list.
    pub fn decode_variants(b: &[u8]) -> Option<(u64, Vec<Vec<u8>>)> {
        let p = Parts::of(b)?;
        let list = if p.alternates.is_empty() && !p.variant.is_empty() {
            vec![p.variant.to_vec()]
        } else {
            p.alternates.iter().map(|a| a.to_vec()).collect()
        };
        Some((p.generation, list))
    }

    /// The stored head, parsed.
    pub fn response(&self) -> Option<ResponseHead> {
        codec::parse_response(&self.head, self.head.len() + 1)
            .ok()
            .flatten()
            .map(|(h, _)| h)
    }

    /// Whether it may be served at `now` without revalidation.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.fresh_until
    }

    /// Conditional headers for revalidating it.
    pub fn validators(&self) -> Vec<(String, Vec<u8>)> {
        let Some(r) = self.response() else {
            return Vec::new();
        };
        let mut v = Vec::new();
        if let Some(etag) = r.header("etag") {
            v.push(("If-None-Match".to_string(), etag.to_vec()));
        }
        if let Some(lm) = r.header("last-modified") {
            v.push(("If-Modified-Since".to_string(), lm.to_vec()));
        }
        v
    }

    /// The response to send a client: stored head plus Age, Via and Connection, then the
    /// body (none for HEAD).
    pub fn write_hit(&self, out: &mut Vec<u8>, via: &str, keep_alive: bool, now: u64) {
        let head_end = self.head.len().saturating_sub(2);
        out.extend_from_slice(&self.head[..head_end]);
        out.extend_from_slice(
            format!(
                "Age: {}\r\nVia: {via}\r\nConnection: {}\r\n\r\n",
                now.saturating_sub(self.stored_at),
                if keep_alive { "keep-alive" } else { "close" }
            )
            .as_bytes(),
        );
        out.extend_from_slice(&self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(raw: &str) -> ResponseHead {
        codec::parse_response(raw.as_bytes(), 8192)
            .unwrap()
            .unwrap()
            .0
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date(b"Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date(b" Sun, 06 Nov 1994 08:49:37 GMT "),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date(b"Tuesday, 01-Jan-30 00:00:00 GMT"),
            Some(1_893_456_000),
            "a two-digit year below 70 is in this century"
        );
    }

    #[test]
    fn malformed_http_dates_are_refused() {
        for bad in [
            &b""[..],
            b"0",
            b"-1",
            b"Sun, 06 Nov 1994 08:49:37",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Nov 1994 24:00:00 GMT",
            b"Sun, 31 Nov 1994 08:49:37 GMT",
            b"Mon, 06 Nov 1994 08:49:37 GMT",
            b"Wed, 31 Dec 1969 23:59:59 GMT",
            b"Sun, 06 Nov 1994 08:49:37 GMT\xff",
        ] {
            assert_eq!(
                parse_http_date(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn freshness_rules() {
        assert_eq!(
            freshness(
                &resp("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n"),
                0
            ),
            Some(60)
        );
        assert_eq!(
            freshness(
                &resp("HTTP/1.1 200 OK\r\nCache-Control: max-age=60, s-maxage=5\r\n\r\n"),
                0
            ),
            Some(5)
        );
        assert_eq!(freshness(&resp("HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nExpires: Thu, 01 Jan 1970 00:01:40 GMT\r\n\r\n"), 0), Some(100));
        assert_eq!(freshness(&resp("HTTP/1.1 200 OK\r\n\r\n"), 0), None);
        assert_eq!(
            freshness(
                &resp("HTTP/1.1 200 OK\r\nCache-Control: no-store, max-age=60\r\n\r\n"),
                0
            ),
            None
        );
        assert_eq!(
            freshness(
                &resp("HTTP/1.1 200 OK\r\nCache-Control: private, max-age=60\r\n\r\n"),
                0
            ),
            None
        );
        assert_eq!(
            freshness(
                &resp("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: Accept\r\n\r\n"),
                0
            ),
            Some(60),
            "storable; `variant` decides which requests it serves"
        );
        assert_eq!(
            freshness(
                &resp("HTTP/1.1 500 Oops\r\nCache-Control: max-age=60\r\n\r\n"),
                0
            ),
            None
        );
        assert_eq!(
            freshness(
                &resp("HTTP/1.1 200 OK\r\nCache-Control: no-cache, max-age=60\r\n\r\n"),
                0
            ),
            None
        );
        assert_eq!(
            freshness(
                &resp("HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nETag: \"a\"\r\n\r\n"),
                0
            ),
            Some(0)
        );
    }

    #[test]
    fn stored_objects_round_trip() {
        let r =
            resp("HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n");
        let s = Stored::new(&r, b"hello".to_vec(), 10, 1000, Vec::new());
        let d = Stored::decode(&s.encode()).unwrap();
        assert_eq!(d, s);
        // An object stored before variants were kept reads as one without `Vary`.
        let mut v1 = b"TSC1".to_vec();
        v1.extend_from_slice(&s.encode()[4..24]);
        v1.extend_from_slice(&s.head);
        v1.extend_from_slice(&s.body);
        assert_eq!(Stored::decode(&v1).unwrap(), s);
        // A variant keeps its generation; one stored before generations reads as 0.
        let mut g = Stored::new(&r, b"hi".to_vec(), 10, 1000, b"a:b\n".to_vec());
        g.generation = 77;
        assert_eq!(Stored::decode(&g.encode()).unwrap(), g);
        // One stored before the variant list reads with an empty one.
        let mut v3 = b"TSC3".to_vec();
        v3.extend_from_slice(&g.encode()[4..36]);
        v3.extend_from_slice(&g.encode()[40..]);
        assert_eq!(Stored::decode(&v3).unwrap(), g);
        let mut v2 = b"TSC2".to_vec();
        v2.extend_from_slice(&g.encode()[4..28]);
        v2.extend_from_slice(&g.encode()[40..]);
        g.generation = 0;
        assert_eq!(Stored::decode(&v2).unwrap(), g);
        // The list of variants round-trips; a cut anywhere in it is no object.
        g.alternates = vec![b"a:c\n".to_vec(), Vec::new(), b"a:b\n".to_vec()];
        let e = g.encode();
        assert_eq!(Stored::decode(&e).unwrap(), g);
        let body_at = e.len() - g.body.len();
        for cut in 40..body_at {
            assert!(Stored::decode(&e[..cut]).is_none(), "cut at {cut}");
        }
        for cut in 0..40 {
            assert!(Stored::decode(&s.encode()[..cut]).is_none(), "cut at {cut}");
        }
        assert!(d.is_fresh(1009) && !d.is_fresh(1010));
        assert_eq!(
            d.response().unwrap().header("content-length"),
            Some(&b"5"[..])
        );
        assert!(d.response().unwrap().header("transfer-encoding").is_none());
        assert_eq!(
            d.validators(),
            vec![("If-None-Match".to_string(), b"\"v1\"".to_vec())]
        );
        let mut out = Vec::new();
        d.write_hit(&mut out, "1.1 t", true, 1003);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Age: 3\r\n") && text.ends_with("\r\n\r\nhello"),
            "{text}"
        );
        assert!(Stored::decode(b"junk").is_none());
    }

    fn req(raw: &str) -> RequestHead {
        codec::parse_request_from(raw.as_bytes(), 1 << 16, 0)
            .unwrap()
            .unwrap()
            .0
    }

    #[test]
    fn a_varying_object_serves_only_requests_with_the_same_values() {
        let r = resp(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\
             Vary: Accept-Encoding,  accept-language\r\n\r\n",
        );
        let gzip_en = req(
            "GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\nAccept-Language: en\r\n\r\n",
        );
        let v = variant(&r, &gzip_en).unwrap();
        assert_eq!(v, b"accept-encoding:gzip\naccept-language:en\n");
        let s = Stored::decode(&Stored::new(&r, b"x".to_vec(), 60, 0, v).encode()).unwrap();
        assert!(s.serves(&gzip_en));
        // Same values, other spelling of the names, other fields: served.
        assert!(s.serves(&req(
            "GET / HTTP/1.1\r\nhost: h\r\naccept-language:  en \r\nX: 1\r\nACCEPT-ENCODING: gzip\r\n\r\n"
        )));
        // Another value, or one missing: not served.
        assert!(!s.serves(&req(
            "GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br\r\nAccept-Language: en\r\n\r\n"
        )));
        assert!(!s.serves(&req(
            "GET / HTTP/1.1\r\nHost: h\r\nAccept-Language: en\r\n\r\n"
        )));
        // Without `Vary`, every request; with `Vary: *`, nothing is stored.
        let plain = resp("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n");
        assert_eq!(variant(&plain, &gzip_en), Some(Vec::new()));
        let star = resp("HTTP/1.1 200 OK\r\nVary: Accept, *\r\n\r\n");
        assert_eq!(variant(&star, &gzip_en), None);
    }

    #[test]
    fn each_variant_has_a_key_of_its_own() {
        let en = alternate_key("k", 7, b"accept-language:en\n");
        assert_eq!(en, "k\n7\naccept-language:en\n");
        assert_ne!(en, alternate_key("k", 7, b"accept-language:fr\n"));
        assert_ne!(en, alternate_key("k2", 7, b"accept-language:en\n"));
        assert_ne!(en, alternate_key("k", 8, b"accept-language:en\n"));
        // Bytes that are no printable ASCII, and the escape itself, are escaped.
        assert_eq!(alternate_key("k", 1, b"a:\xff%\t"), "k\n1\na:%FF%25%09");
        assert_ne!(
            alternate_key("k", 1, b"a:%FF"),
            alternate_key("k", 1, b"a:\xff")
        );
        let (a, b) = (new_generation(), new_generation());
        assert!(b > a && a > 0);
    }

    #[test]
    fn a_variant_joins_the_list_and_the_oldest_go_beyond_max() {
        let r = resp("HTTP/1.1 200 OK\r\nVary: A\r\n\r\n");
        let v = |x: &str| format!("a:{x}\n").into_bytes();
        let mut o = Stored::new(&r, Vec::new(), 10, 0, v("c"));
        // Old objects know only themselves.
        assert_eq!(o.kept_variants(), vec![v("c")]);
        assert!(o.join(&[v("a"), v("b")], 3).is_empty());
        assert_eq!(o.alternates, [v("a"), v("b"), v("c")]);
        // Stored again, it becomes the newest, not a second entry.
        assert!(o.join(&[v("c"), v("a"), v("b")], 3).is_empty());
        assert_eq!(o.alternates, [v("a"), v("b"), v("c")]);
        // Beyond max, the oldest go, oldest first.
        assert_eq!(o.join(&[v("a"), v("b"), v("d")], 2), [v("a"), v("b")]);
        assert_eq!(o.alternates, [v("d"), v("c")]);
        // 0: no limit, and no list; a response without Vary has none either.
        assert!(o.join(&[v("a"), v("b"), v("d")], 0).is_empty());
        assert!(o.alternates.is_empty());
        assert_eq!(o.kept_variants(), vec![v("c")]);
        let mut plain = Stored::new(&r, Vec::new(), 10, 0, Vec::new());
        assert!(plain.join(&[v("a")], 1).is_empty());
        assert!(plain.alternates.is_empty() && plain.kept_variants().is_empty());
    }
}
