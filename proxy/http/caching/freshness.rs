//! What may be stored and for how long (RFC 9111 §3, §4.2), and whether a stored
//! response may answer a request now (§4.2, §4.3, RFC 5861, RFC 8246). Pure.

use super::directives::{Delta, RequestDirectives, ResponseDirectives};
use super::parse_http_date;
use super::Stored;
use crate::http::codec::{RequestHead, ResponseHead};

/// The cache's own settings (records, reloadable).
#[derive(Clone, Debug, PartialEq)]
pub struct CachePolicy {
    /// `http.cache.heuristic_min_lifetime`, s.
    pub heuristic_min: u64,
    /// `http.cache.heuristic_max_lifetime`, s.
    pub heuristic_max: u64,
    /// `http.cache.heuristic_lm_factor`.
    pub lm_factor: f64,
    /// `http.cache.max_stale_age`: nothing stale by more than this is served, s.
    pub max_stale_age: u64,
    /// `http.cache.targeted_cache_control_headers`, lower case, most specific first.
    pub targeted: Vec<String>,
    /// `http.background_fill_completed_threshold`: the share of a response being stored
    /// that must have come for it to be read on and stored once its client leaves.
    pub background_fill_threshold: f64,
}

impl Default for CachePolicy {
    fn default() -> CachePolicy {
        CachePolicy {
            heuristic_min: 3600,
            heuristic_max: 86_400,
            lm_factor: 0.10,
            max_stale_age: 604_800,
            targeted: vec!["cdn-cache-control".to_string()],
            background_fill_threshold: 0.0,
        }
    }
}

/// Statuses a cache may give heuristic freshness (RFC 9110 §15.1).
const HEURISTIC: &[u16] = &[200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// Whether this cache knows how to cache `status` (for `must-understand`, §5.2.2.3):
/// the final statuses RFC 9110 defines, but 206 and 304, which it does not store.
fn understood(status: u16) -> bool {
    matches!(status, 200..=205 | 300..=303 | 305 | 307 | 308 | 400..=417 | 421..=426 | 500..=505)
}

/// The `Age` a response carries (§5.1): a non-negative integer, 2^31 past that; of a
/// list (several fields, or one with commas), the first member; anything else is
/// ignored (0).
fn age_value(resp: &ResponseHead) -> u64 {
    resp.header("age")
        .and_then(|v| v.split(|b| *b == b',').next())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| super::directives::parse_delta(v.trim()))
        .unwrap_or(0)
}

/// The response's `Date` (Unix s), or when it was received if it has none (or a bad
/// one: §4.2.3 then takes the time of receipt).
fn date_value(resp: &ResponseHead, response_time: u64) -> u64 {
    resp.header("date")
        .and_then(parse_http_date)
        .unwrap_or(response_time)
}

/// The corrected initial age of a response received at `response_time` for a request
/// sent at `request_time` (§4.2.3): the larger of its apparent age and its `Age` plus
/// the response delay.
pub fn initial_age(resp: &ResponseHead, request_time: u64, response_time: u64) -> u64 {
    let apparent = response_time.saturating_sub(date_value(resp, response_time));
    let delay = response_time.saturating_sub(request_time);
    apparent.max(age_value(resp).saturating_add(delay))
}

/// How a storable response is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Storable {
    /// Freshness lifetime, s (explicit, or heuristic).
    pub lifetime: u64,
    /// Its corrected initial age (§4.2.3).
    pub initial_age: u64,
    /// Never served stale without revalidation.
    pub must_revalidate: bool,
    /// Revalidated on every use.
    pub no_cache: bool,
    /// Not revalidated while fresh, even when a client reloads.
    pub immutable: bool,
    /// `stale-while-revalidate` window, s.
    pub swr: u64,
    /// `stale-if-error` window, s.
    pub sie: u64,
    /// Fields stored without (`private="…"`, `no-cache="…"`), lower case.
    pub strip: Vec<String>,
}

/// Whether `resp` to `req` (a GET) may be stored, and how (§3): None when not.
/// `request_time` and `response_time` are when the request went and the response came
/// (Unix s).
pub fn storable(
    req: &RequestHead,
    resp: &ResponseHead,
    d: &ResponseDirectives,
    policy: &CachePolicy,
    request_time: u64,
    response_time: u64,
) -> Option<Storable> {
    let status = resp.status;
    // Final, and not a partial or a 304: those are never stored here.
    if status < 200 || status == 206 || status == 304 {
        return None;
    }
    // §5.2.2.3: must-understand limits storing to statuses the cache understands, and
    // then overrides no-store.
    let no_store = match d.must_understand {
        true if !understood(status) => return None,
        true => false,
        false => d.no_store,
    };
    if no_store || d.private {
        return None;
    }
    // §3.5: a response to an authenticated request only with these.
    if req.header("authorization").is_some()
        && !(d.public || d.s_maxage != Delta::Absent || d.must_revalidate)
    {
        return None;
    }
    let validator = resp.header("etag").is_some() || resp.header("last-modified").is_some();
    let explicit = lifetime(resp, d, response_time);
    let heuristic_ok = HEURISTIC.contains(&status) || d.public;
    let lifetime = match explicit {
        Some(l) => l,
        None if heuristic_ok => heuristic(resp, policy, response_time).unwrap_or(0),
        None => return None,
    };
    let s = Storable {
        lifetime,
        initial_age: initial_age(resp, request_time, response_time),
        must_revalidate: d.revalidate_when_stale(),
        no_cache: d.no_cache,
        immutable: d.immutable,
        swr: d.stale_while_revalidate.secs().unwrap_or(0),
        sie: d.stale_if_error.secs().unwrap_or(0),
        strip: d
            .private_fields
            .iter()
            .chain(&d.no_cache_fields)
            .cloned()
            .collect(),
    };
    // Something that must go to the origin on every use and cannot be revalidated
    // there is not worth a write.
    let usable_stale = s.swr > 0 || s.sie > 0;
    let always_stale = s.no_cache || s.lifetime <= s.initial_age;
    if always_stale && !validator && !usable_stale {
        return None;
    }
    Some(s)
}

/// The explicit freshness lifetime (§4.2.1): `s-maxage`, else `max-age`, else
/// `Expires` − `Date`; an invalid value of the one that applies means already
/// expired (0). None without any.
fn lifetime(resp: &ResponseHead, d: &ResponseDirectives, response_time: u64) -> Option<u64> {
    for delta in [d.s_maxage, d.max_age] {
        match delta {
            Delta::Secs(s) => return Some(s),
            Delta::Invalid => return Some(0),
            Delta::Absent => {}
        }
    }
    let mut expires = resp.headers_all("expires");
    let first = expires.next()?;
    // Several that disagree, or one that does not parse (any of the three forms of RFC
    // 9110 §5.6.7): already expired.
    let at = match parse_http_date(first) {
        Some(at) if expires.all(|e| parse_http_date(e) == Some(at)) => at,
        _ => return Some(0),
    };
    Some(at.saturating_sub(date_value(resp, response_time)))
}

/// Heuristic freshness (§4.2.2), as Traffic Server gives it: `lm_factor` × (Date −
/// Last-Modified), clamped to [min, max]. None without a usable `Last-Modified`.
fn heuristic(resp: &ResponseHead, policy: &CachePolicy, response_time: u64) -> Option<u64> {
    let lm = parse_http_date(resp.header("last-modified")?)?;
    let since = date_value(resp, response_time).checked_sub(lm)?;
    let guess = (since as f64 * policy.lm_factor) as u64;
    Some(guess.clamp(
        policy.heuristic_min,
        policy.heuristic_max.max(policy.heuristic_min),
    ))
}

/// Whether a stored response may answer a request now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Fresh enough for this request: answer it.
    Fresh,
    /// Stale, but the client accepts it (`max-stale`): answer it.
    StaleAccepted,
    /// Stale within `stale-while-revalidate`: answer it, and revalidate in the
    /// background.
    StaleWhileRevalidate,
    /// Revalidate with the origin first.
    Revalidate,
}

/// Decides whether `obj` answers a request with directives `req` at `now` (§4.2, §4.3;
/// RFC 5861 §3; RFC 8246 §2).
pub fn verdict(obj: &Stored, req: &RequestDirectives, policy: &CachePolicy, now: u64) -> Verdict {
    let age = obj.current_age(now);
    let fresh = obj.lifetime > age;
    // A client's reload does not make an immutable fresh object worth revalidating.
    if obj.immutable && fresh && !obj.no_cache {
        return Verdict::Fresh;
    }
    if req.no_cache || obj.no_cache || req.max_age == Delta::Invalid {
        return Verdict::Revalidate;
    }
    // Ages are whole seconds: one just stored counts 0 though it is older than that, so
    // max-age=0 (a reload) always revalidates.
    if req.max_age.secs().is_some_and(|max| age > max || max == 0) {
        return Verdict::Revalidate;
    }
    let min_fresh = match req.min_fresh {
        Delta::Secs(s) => s,
        Delta::Invalid => return Verdict::Revalidate,
        Delta::Absent => 0,
    };
    if obj.lifetime > age.saturating_add(min_fresh) {
        return Verdict::Fresh;
    }
    if fresh {
        return Verdict::Revalidate; // fresh, but not for as long as the client wants
    }
    let staleness = age - obj.lifetime;
    if obj.must_revalidate || staleness > policy.max_stale_age {
        return Verdict::Revalidate;
    }
    match req.max_stale {
        Some(None) => return Verdict::StaleAccepted,
        Some(Some(max)) if staleness <= max => return Verdict::StaleAccepted,
        _ => {}
    }
    if obj.swr > 0 && staleness <= obj.swr {
        return Verdict::StaleWhileRevalidate;
    }
    Verdict::Revalidate
}

/// Whether `obj`, stale, may answer in place of an origin error at `now`
/// (`stale-if-error`, RFC 5861 §4): never past `must-revalidate` or `max_stale_age`,
/// and never one marked `no-cache`, which is not used without successful validation
/// (RFC 9111 §5.2.2.4, §4.2.4).
pub fn stale_if_error(obj: &Stored, policy: &CachePolicy, now: u64) -> bool {
    let staleness = obj.current_age(now).saturating_sub(obj.lifetime);
    !obj.must_revalidate
        && !obj.no_cache
        && obj.sie > 0
        && staleness <= obj.sie
        && staleness <= policy.max_stale_age
}

#[cfg(test)]
mod tests {
    use super::super::directives::{request_directives, response_directives};
    use super::*;
    use crate::http::codec::test_util::{request_with as req, resp};

    const NOW: u64 = 1_000_000_000; // Sun, 09 Sep 2001 01:46:40 GMT

    /// `storable` for a GET with `req_fields` answered by `raw`, sent 1 s before NOW.
    fn store(req_fields: &str, raw: &str) -> Option<Storable> {
        let r = resp(raw);
        let d = response_directives(&r, &CachePolicy::default().targeted);
        storable(
            &req(req_fields),
            &r,
            &d,
            &CachePolicy::default(),
            NOW - 1,
            NOW,
        )
    }

    fn lifetime_of(raw: &str) -> Option<u64> {
        store("", raw).map(|s| s.lifetime)
    }

    #[test]
    fn rfc9111_4_2_1_lifetime_from_s_maxage_max_age_or_expires() {
        assert_eq!(
            lifetime_of("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n"),
            Some(60)
        );
        assert_eq!(
            lifetime_of("HTTP/1.1 200 OK\r\nCache-Control: max-age=60, s-maxage=5\r\n\r\n"),
            Some(5)
        );
        let date = "Date: Sun, 09 Sep 2001 01:46:40 GMT\r\n";
        // All three forms of RFC 9110 §5.6.7.
        for expires in [
            "Sun, 09 Sep 2001 01:48:20 GMT",
            "Sunday, 09-Sep-01 01:48:20 GMT",
            "Sun Sep  9 01:48:20 2001",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\n{date}Expires: {expires}\r\n\r\n");
            assert_eq!(lifetime_of(&raw), Some(100), "{expires}");
        }
        // An invalid Expires means already expired.
        let raw = "HTTP/1.1 200 OK\r\nExpires: 0\r\nETag: \"a\"\r\n\r\n";
        assert_eq!(lifetime_of(raw), Some(0));
        // No Date: the time of receipt.
        let raw = "HTTP/1.1 200 OK\r\nExpires: Sun, 09 Sep 2001 01:47:40 GMT\r\n\r\n";
        assert_eq!(lifetime_of(raw), Some(60));
    }

    #[test]
    fn rfc9111_4_2_3_initial_age_takes_age_date_and_delay() {
        // Sent 1 s before NOW, arrived at NOW, 30 s old already by its Age.
        let s = store(
            "",
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: 30\r\n\r\n",
        )
        .unwrap();
        assert_eq!(s.initial_age, 31);
        // A Date 10 s in the past gives an apparent age of 10.
        let s = store("", "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nDate: Sun, 09 Sep 2001 01:46:30 GMT\r\n\r\n").unwrap();
        assert_eq!(s.initial_age, 10);
        // §5.1: a bad Age is ignored; a huge one is 2^31.
        let s = store(
            "",
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: -5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(s.initial_age, 1);
        let s = store("", "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: 99999999999\r\nETag: \"x\"\r\n\r\n").unwrap();
        assert_eq!(s.initial_age, (1 << 31) + 1);
        // A list: its first member (§5.1), in one field or the first of two.
        for age in ["50, 60", "50\r\nAge: 60"] {
            let raw =
                format!("HTTP/1.1 200 OK\r\nCache-Control: max-age=100\r\nAge: {age}\r\n\r\n");
            assert_eq!(store("", &raw).unwrap().initial_age, 51, "{age:?}");
        }
    }

    #[test]
    fn rfc9111_3_what_is_storable() {
        // Any final status with explicit freshness.
        assert_eq!(
            lifetime_of("HTTP/1.1 500 Oops\r\nCache-Control: max-age=60\r\n\r\n"),
            Some(60)
        );
        assert_eq!(
            lifetime_of("HTTP/1.1 302 Found\r\nCache-Control: max-age=9\r\n\r\n"),
            Some(9)
        );
        // Not without it, unless heuristically cacheable with Last-Modified.
        assert_eq!(
            lifetime_of(
                "HTTP/1.1 302 Found\r\nLast-Modified: Sat, 08 Sep 2001 01:46:40 GMT\r\n\r\n"
            ),
            None
        );
        assert_eq!(lifetime_of("HTTP/1.1 200 OK\r\n\r\n"), None);
        // Never a partial, a 304, no-store, private, Vary is the variant's business.
        assert_eq!(
            lifetime_of("HTTP/1.1 206 Partial\r\nCache-Control: max-age=60\r\n\r\n"),
            None
        );
        assert_eq!(
            lifetime_of("HTTP/1.1 200 OK\r\nCache-Control: no-store, max-age=60\r\n\r\n"),
            None
        );
        assert_eq!(
            lifetime_of("HTTP/1.1 200 OK\r\nCache-Control: private, max-age=60\r\n\r\n"),
            None
        );
        // §5.2.2.3: must-understand overrides no-store for a status this cache knows.
        assert_eq!(
            lifetime_of(
                "HTTP/1.1 200 OK\r\nCache-Control: must-understand, no-store, max-age=60\r\n\r\n"
            ),
            Some(60)
        );
        assert_eq!(
            lifetime_of("HTTP/1.1 299 Odd\r\nCache-Control: must-understand, max-age=60\r\n\r\n"),
            None
        );
        // private="field": stored without it.
        let s = store("", "HTTP/1.1 200 OK\r\nCache-Control: private=\"Set-Cookie\", no-cache=\"X-A\", max-age=60\r\n\r\n").unwrap();
        assert_eq!(s.strip, ["set-cookie", "x-a"]);
        // no-cache: only with a validator, revalidated on every use.
        assert_eq!(
            lifetime_of("HTTP/1.1 200 OK\r\nCache-Control: no-cache, max-age=60\r\n\r\n"),
            None
        );
        let s = store(
            "",
            "HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nETag: \"a\"\r\n\r\n",
        )
        .unwrap();
        assert!(s.no_cache);
    }

    #[test]
    fn rfc9111_4_2_2_heuristic_freshness_from_last_modified() {
        let p = CachePolicy::default();
        // 10 days since modification: 10 % is 1 day, the maximum.
        let raw = "HTTP/1.1 200 OK\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\nLast-Modified: Thu, 30 Aug 2001 01:46:40 GMT\r\n\r\n";
        assert_eq!(lifetime_of(raw), Some(p.heuristic_max));
        // 5 hours: 30 minutes, below the minimum of 1 hour.
        let raw = "HTTP/1.1 404 Not Found\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\nLast-Modified: Sat, 08 Sep 2001 20:46:40 GMT\r\n\r\n";
        assert_eq!(lifetime_of(raw), Some(p.heuristic_min));
        // 20 hours: 2 hours.
        let raw = "HTTP/1.1 200 OK\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\nLast-Modified: Sat, 08 Sep 2001 05:46:40 GMT\r\n\r\n";
        assert_eq!(lifetime_of(raw), Some(7200));
    }

    #[test]
    fn rfc9111_3_5_authorization_needs_public_s_maxage_or_must_revalidate() {
        let auth = "Authorization: Basic eA==\r\n";
        assert!(store(auth, "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n").is_none());
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "must-revalidate, max-age=60",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\nCache-Control: {cc}\r\n\r\n");
            assert!(store(auth, &raw).is_some(), "{cc}");
        }
    }

    fn obj(raw: &str, age_now: u64) -> Stored {
        let r = resp(raw);
        let d = response_directives(&r, &[]);
        let s = storable(&req(""), &r, &d, &CachePolicy::default(), NOW, NOW).unwrap();
        let mut o = Stored::new(&r, b"x".to_vec(), &s, NOW, Vec::new());
        o.response_time = NOW - age_now;
        o
    }

    fn v(o: &Stored, req_fields: &str) -> Verdict {
        verdict(
            o,
            &request_directives(&req(req_fields)),
            &CachePolicy::default(),
            NOW,
        )
    }

    #[test]
    fn rfc9111_4_2_fresh_stale_and_request_directives() {
        let o = obj(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"a\"\r\n\r\n",
            30,
        );
        assert_eq!(v(&o, ""), Verdict::Fresh);
        assert_eq!(v(&o, "Cache-Control: no-cache\r\n"), Verdict::Revalidate);
        assert_eq!(v(&o, "Cache-Control: max-age=10\r\n"), Verdict::Revalidate);
        assert_eq!(v(&o, "Cache-Control: max-age=40\r\n"), Verdict::Fresh);
        assert_eq!(
            v(&o, "Cache-Control: min-fresh=40\r\n"),
            Verdict::Revalidate
        );
        assert_eq!(v(&o, "Cache-Control: min-fresh=20\r\n"), Verdict::Fresh);
        let stale = obj(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"a\"\r\n\r\n",
            90,
        );
        assert_eq!(v(&stale, ""), Verdict::Revalidate);
        assert_eq!(
            v(&stale, "Cache-Control: max-stale\r\n"),
            Verdict::StaleAccepted
        );
        assert_eq!(
            v(&stale, "Cache-Control: max-stale=40\r\n"),
            Verdict::StaleAccepted
        );
        assert_eq!(
            v(&stale, "Cache-Control: max-stale=10\r\n"),
            Verdict::Revalidate
        );
        // must-revalidate: never stale.
        let strict = obj(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60, must-revalidate\r\nETag: \"a\"\r\n\r\n",
            90,
        );
        assert_eq!(
            v(&strict, "Cache-Control: max-stale\r\n"),
            Verdict::Revalidate
        );
    }

    #[test]
    fn rfc5861_stale_while_revalidate_and_stale_if_error_windows() {
        let p = CachePolicy::default();
        let raw = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60, stale-while-revalidate=30, stale-if-error=100\r\nETag: \"a\"\r\n\r\n";
        assert_eq!(v(&obj(raw, 80), ""), Verdict::StaleWhileRevalidate);
        assert_eq!(v(&obj(raw, 100), ""), Verdict::Revalidate);
        assert!(stale_if_error(&obj(raw, 150), &p, NOW));
        assert!(!stale_if_error(&obj(raw, 170), &p, NOW));
        let strict = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60, stale-while-revalidate=30, stale-if-error=100, must-revalidate\r\nETag: \"a\"\r\n\r\n";
        assert_eq!(v(&obj(strict, 80), ""), Verdict::Revalidate);
        assert!(!stale_if_error(&obj(strict, 80), &p, NOW));
        // no-cache: never used without successful validation, stale or fresh.
        for age in [10, 80] {
            let nc = "HTTP/1.1 200 OK\r\nCache-Control: no-cache, max-age=60, stale-while-revalidate=30, stale-if-error=100\r\nETag: \"a\"\r\n\r\n";
            assert_eq!(v(&obj(nc, age), ""), Verdict::Revalidate);
            assert!(!stale_if_error(&obj(nc, age), &p, NOW));
        }
        // No window, no stale answer, even the second it expired.
        let plain = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"a\"\r\n\r\n";
        assert_eq!(v(&obj(plain, 60), ""), Verdict::Revalidate);
        assert!(!stale_if_error(&obj(plain, 60), &p, NOW));
        // Traffic Server's max_stale_age bounds any stale answer.
        let bounded = CachePolicy {
            max_stale_age: 10,
            ..CachePolicy::default()
        };
        assert!(!stale_if_error(&obj(raw, 80), &bounded, NOW));
        assert_eq!(
            verdict(&obj(raw, 80), &request_directives(&req("")), &bounded, NOW),
            Verdict::Revalidate
        );
    }

    #[test]
    fn rfc8246_immutable_is_not_revalidated_on_reload() {
        let raw = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60, immutable\r\nETag: \"a\"\r\n\r\n";
        assert_eq!(
            v(&obj(raw, 10), "Cache-Control: no-cache\r\n"),
            Verdict::Fresh
        );
        assert_eq!(
            v(&obj(raw, 10), "Cache-Control: max-age=0\r\n"),
            Verdict::Fresh
        );
        assert_eq!(
            v(&obj(raw, 90), "Cache-Control: no-cache\r\n"),
            Verdict::Revalidate
        );
    }

    #[test]
    fn an_object_older_than_its_lifetime_on_arrival_is_stale() {
        let raw = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: 100\r\nETag: \"a\"\r\n\r\n";
        assert_eq!(v(&obj(raw, 0), ""), Verdict::Revalidate);
        // And without a validator it is not stored at all.
        assert!(store(
            "",
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nAge: 100\r\n\r\n"
        )
        .is_none());
    }
}
