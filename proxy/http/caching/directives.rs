//! Cache directives (RFC 9111 §5.2): a response's `Cache-Control` (or the targeted field
//! of RFC 9213 that replaces it for this cache) and a request's. Names are matched
//! without regard to case, values may be tokens or quoted strings (with commas and
//! escapes inside), and a directive given twice with different values counts as
//! invalid, which the freshness rules read the restrictive way (stale). Pure.

use super::super::codec::{RequestHead, ResponseHead};

/// A delta-seconds directive value (RFC 9111 §1.2.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delta {
    /// Not given.
    #[default]
    Absent,
    /// Given once (or several times with one value).
    Secs(u64),
    /// Malformed, or given with values that disagree: treated as stale.
    Invalid,
}

impl Delta {
    /// The seconds, if valid.
    pub fn secs(self) -> Option<u64> {
        match self {
            Delta::Secs(s) => Some(s),
            Delta::Absent | Delta::Invalid => None,
        }
    }

    fn is_given(self) -> bool {
        self != Delta::Absent
    }

    /// Records one more occurrence with `value` (None: no `=value`).
    fn add(&mut self, value: Option<&str>) {
        let v = value
            .and_then(parse_delta)
            .map_or(Delta::Invalid, Delta::Secs);
        *self = match (*self, v) {
            (Delta::Absent, v) => v,
            (Delta::Secs(a), Delta::Secs(b)) if a == b => Delta::Secs(a),
            _ => Delta::Invalid,
        };
    }
}

/// 1*DIGIT; a value above 2^31 is taken as 2^31 (RFC 9111 §1.2.2).
pub fn parse_delta(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    const CAP: u64 = 1 << 31;
    Some(v.parse::<u64>().map_or(CAP, |n| n.min(CAP)))
}

/// A response's directives as this (shared) cache obeys them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` without field names: every use revalidates.
    pub no_cache: bool,
    /// `no-cache="field, …"`: those fields are not reused without revalidation; this
    /// cache stores the response without them.
    pub no_cache_fields: Vec<String>,
    /// `private` without field names: a shared cache does not store it.
    pub private: bool,
    /// `private="field, …"`: a shared cache stores the response without those fields.
    pub private_fields: Vec<String>,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `must-understand`.
    pub must_understand: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `max-age`.
    pub max_age: Delta,
    /// `s-maxage`.
    pub s_maxage: Delta,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Delta,
    /// `stale-if-error` (RFC 5861).
    pub stale_if_error: Delta,
    /// The directives came from a targeted field (RFC 9213), not `Cache-Control`.
    pub targeted: bool,
}

impl ResponseDirectives {
    /// A stale response must not be served without revalidation: `must-revalidate`,
    /// `proxy-revalidate`, or `s-maxage` (which implies it, §5.2.2.10).
    pub fn revalidate_when_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_given()
    }
}

/// A request's directives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`): revalidate.
    pub no_cache: bool,
    /// `no-store`: nothing of this exchange is stored.
    pub no_store: bool,
    /// `max-age`: the client takes nothing older.
    pub max_age: Delta,
    /// `max-stale`: the client takes a response stale by up to this much (`Some(None)`:
    /// any).
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh`: the client wants this much freshness left.
    pub min_fresh: Delta,
    /// `only-if-cached`: answer from the cache or with 504.
    pub only_if_cached: bool,
}

impl RequestDirectives {
    /// The request bounds what it takes by more than the response's own freshness
    /// (`no-cache`, `max-age`, `min-fresh`): an object just refreshed may not do for it.
    pub fn narrows_freshness(&self) -> bool {
        self.no_cache || self.max_age != Delta::Absent || self.min_fresh != Delta::Absent
    }
}

/// Calls `f` with each directive of `value`: its name in lower case and its value, if
/// any (quoted strings unquoted, escapes removed). Tolerant: junk up to the next comma
/// is skipped.
pub fn each_directive(value: &[u8], mut f: impl FnMut(&str, Option<&str>)) {
    let mut i = 0;
    let mut name = String::new();
    let mut arg = String::new();
    while i < value.len() {
        while i < value.len() && matches!(value[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        name.clear();
        while i < value.len() && is_tchar(value[i]) {
            name.push(value[i].to_ascii_lowercase() as char);
            i += 1;
        }
        while i < value.len() && matches!(value[i], b' ' | b'\t') {
            i += 1;
        }
        let mut has_arg = false;
        arg.clear();
        if i < value.len() && value[i] == b'=' {
            has_arg = true;
            i += 1;
            while i < value.len() && matches!(value[i], b' ' | b'\t') {
                i += 1;
            }
            if i < value.len() && value[i] == b'"' {
                i += 1;
                while i < value.len() && value[i] != b'"' {
                    if value[i] == b'\\' && i + 1 < value.len() {
                        i += 1;
                    }
                    arg.push(value[i] as char);
                    i += 1;
                }
                i += 1; // the closing quote, if any
            } else {
                while i < value.len() && is_tchar(value[i]) {
                    arg.push(value[i] as char);
                    i += 1;
                }
            }
        }
        // Anything else before the next comma is not part of a directive.
        while i < value.len() && matches!(value[i], b' ' | b'\t') {
            i += 1;
        }
        let clean = i >= value.len() || value[i] == b',';
        while i < value.len() && value[i] != b',' {
            i += 1;
        }
        if !name.is_empty() {
            let v = has_arg.then_some(arg.as_str());
            if clean {
                f(&name, v);
            } else {
                // A malformed value: the directive is there, its value unusable.
                f(&name, Some("\u{0}invalid"));
            }
        }
    }
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The field names of a qualified `no-cache` or `private`, lower case.
fn field_names(v: &str, into: &mut Vec<String>) {
    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = name.to_ascii_lowercase();
        if !into.contains(&name) {
            into.push(name);
        }
    }
}

/// The directives of a response's `Cache-Control`, or of the first targeted field in
/// `targeted` (RFC 9213: e.g. `CDN-Cache-Control`, most specific first) that it has,
/// which then replaces `Cache-Control` for this cache.
pub fn response_directives(resp: &ResponseHead, targeted: &[String]) -> ResponseDirectives {
    let mut d = ResponseDirectives::default();
    let field = targeted
        .iter()
        .find(|name| resp.header(name).is_some())
        .map_or("cache-control", String::as_str);
    d.targeted = field != "cache-control";
    for value in resp.headers_all(field) {
        each_directive(value, |name, v| match name {
            "no-store" => d.no_store = true,
            "no-cache" => match v {
                Some(fields) => field_names(fields, &mut d.no_cache_fields),
                None => d.no_cache = true,
            },
            "private" => match v {
                Some(fields) => field_names(fields, &mut d.private_fields),
                None => d.private = true,
            },
            "public" => d.public = true,
            "must-revalidate" => d.must_revalidate = true,
            "proxy-revalidate" => d.proxy_revalidate = true,
            "must-understand" => d.must_understand = true,
            "immutable" => d.immutable = true,
            "max-age" => d.max_age.add(v),
            "s-maxage" => d.s_maxage.add(v),
            "stale-while-revalidate" => d.stale_while_revalidate.add(v),
            "stale-if-error" => d.stale_if_error.add(v),
            _ => {}
        });
    }
    d
}

/// The directives of a request's `Cache-Control` (and `Pragma: no-cache`, RFC 9111
/// §5.4, when it has no `Cache-Control`).
pub fn request_directives(req: &RequestHead) -> RequestDirectives {
    let mut d = RequestDirectives::default();
    let mut any = false;
    for value in req.headers_all("cache-control") {
        any = true;
        each_directive(value, |name, v| match name {
            "no-cache" => d.no_cache = true,
            "no-store" => d.no_store = true,
            "max-age" => d.max_age.add(v),
            "min-fresh" => d.min_fresh.add(v),
            "max-stale" => {
                let more = v.map(parse_delta);
                d.max_stale = match (d.max_stale, more) {
                    // Unusable or conflicting: allow no staleness.
                    (_, Some(None)) => Some(Some(0)),
                    (None, Some(Some(n))) => Some(Some(n)),
                    (None, None) => Some(None),
                    (Some(a), b) => Some(a.zip(b.flatten()).map(|(x, y)| x.min(y))),
                }
            }
            "only-if-cached" => d.only_if_cached = true,
            _ => {}
        });
    }
    if !any {
        d.no_cache = req.headers_all("pragma").any(|v| {
            let mut found = false;
            each_directive(v, |name, _| found |= name == "no-cache");
            found
        });
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::codec::test_util::{self, request_with as req};

    fn resp(fields: &str) -> ResponseHead {
        test_util::resp(&format!("HTTP/1.1 200 OK\r\n{fields}\r\n"))
    }

    fn collect(v: &str) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        each_directive(v.as_bytes(), |n, a| out.push((n.into(), a.map(Into::into))));
        out
    }

    #[test]
    fn directives_are_case_insensitive_and_take_tokens_or_quoted_strings() {
        assert_eq!(
            collect(r#"Max-Age=60, NO-CACHE="Set-Cookie, X-A", private , x="a\"b""#),
            vec![
                ("max-age".into(), Some("60".into())),
                ("no-cache".into(), Some("Set-Cookie, X-A".into())),
                ("private".into(), None),
                ("x".into(), Some("a\"b".into())),
            ]
        );
        assert_eq!(collect(" , ,"), vec![]);
        // Junk after a value makes that value unusable, not the others.
        let d = collect("max-age=60 junk, public");
        assert_eq!(d[0].0, "max-age");
        assert_ne!(d[0].1.as_deref(), Some("60"));
        assert_eq!(d[1], ("public".into(), None));
    }

    #[test]
    fn rfc9111_5_2_2_response_directives() {
        let d = response_directives(
            &resp(
                "Cache-Control: public, max-age=\"60\", s-maxage=30, must-revalidate\r\n\
                 Cache-Control: proxy-revalidate, immutable, stale-while-revalidate=5, stale-if-error=9\r\n",
            ),
            &[],
        );
        assert!(d.public && d.must_revalidate && d.proxy_revalidate && d.immutable);
        assert_eq!((d.max_age, d.s_maxage), (Delta::Secs(60), Delta::Secs(30)));
        assert_eq!(d.stale_while_revalidate, Delta::Secs(5));
        assert_eq!(d.stale_if_error, Delta::Secs(9));
        assert!(d.revalidate_when_stale());
        let d = response_directives(
            &resp("Cache-Control: no-cache=\"Set-Cookie\", private=\"x-a, X-B\"\r\n"),
            &[],
        );
        assert!(!d.no_cache && !d.private);
        assert_eq!(d.no_cache_fields, ["set-cookie"]);
        assert_eq!(d.private_fields, ["x-a", "x-b"]);
    }

    #[test]
    fn rfc9111_4_2_1_duplicates_that_disagree_and_bad_values_are_invalid() {
        let d = response_directives(&resp("Cache-Control: max-age=60, max-age=60\r\n"), &[]);
        assert_eq!(d.max_age, Delta::Secs(60));
        let d = response_directives(
            &resp("Cache-Control: max-age=60\r\nCache-Control: max-age=10\r\n"),
            &[],
        );
        assert_eq!(d.max_age, Delta::Invalid);
        for bad in [
            "max-age",
            "max-age=",
            "max-age=-1",
            "max-age=1.5",
            "max-age=x",
        ] {
            let d = response_directives(&resp(&format!("Cache-Control: {bad}\r\n")), &[]);
            assert_eq!(d.max_age, Delta::Invalid, "{bad}");
        }
        // RFC 9111 §1.2.2: past 2^31, 2^31.
        let d = response_directives(
            &resp("Cache-Control: max-age=99999999999999999999\r\n"),
            &[],
        );
        assert_eq!(d.max_age, Delta::Secs(1 << 31));
    }

    #[test]
    fn rfc9213_the_first_targeted_field_present_replaces_cache_control() {
        let r = resp("Cache-Control: no-store\r\nCDN-Cache-Control: max-age=600\r\n");
        let targeted = [
            "edge-cache-control".to_string(),
            "cdn-cache-control".to_string(),
        ];
        let d = response_directives(&r, &targeted);
        assert!(d.targeted && !d.no_store);
        assert_eq!(d.max_age, Delta::Secs(600));
        // Without the record, Cache-Control rules.
        assert!(response_directives(&r, &[]).no_store);
    }

    #[test]
    fn rfc9111_5_2_1_request_directives() {
        let d = request_directives(&req(
            "Cache-Control: max-age=5, min-fresh=2, max-stale, only-if-cached, no-store\r\n",
        ));
        assert_eq!((d.max_age, d.min_fresh), (Delta::Secs(5), Delta::Secs(2)));
        assert_eq!(d.max_stale, Some(None));
        assert!(d.only_if_cached && d.no_store && !d.no_cache);
        assert_eq!(
            request_directives(&req("Cache-Control: max-stale=7\r\n")).max_stale,
            Some(Some(7))
        );
        assert_eq!(
            request_directives(&req("Cache-Control: max-stale=x\r\n")).max_stale,
            Some(Some(0))
        );
        // §5.4: Pragma only without Cache-Control.
        assert!(request_directives(&req("Pragma: no-cache\r\n")).no_cache);
        assert!(
            !request_directives(&req("Pragma: no-cache\r\nCache-Control: max-age=9\r\n")).no_cache
        );
    }
}
