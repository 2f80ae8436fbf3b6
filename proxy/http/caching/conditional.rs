//! Conditional and range requests answered from a stored response (RFC 9110 §13, §14):
//! entity-tag lists and their comparisons, the preconditions in their order of
//! evaluation, and `Range: bytes=` with `If-Range`. Pure; malformed fields are read as
//! the RFCs say (usually: ignored), never as a wrong byte range.

use super::parse_http_date;
use super::Stored;
use crate::http::codec::{RequestHead, ResponseHead};

/// An entity tag: opaque part and whether it is weak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ETag<'a> {
    /// `W/` before it.
    pub weak: bool,
    /// Between the quotes.
    pub opaque: &'a [u8],
}

impl<'a> ETag<'a> {
    /// Parses one entity tag (`"x"` or `W/"x"`) that is the whole of `v` (trimmed).
    pub fn parse(v: &'a [u8]) -> Option<ETag<'a>> {
        let v = v.trim_ascii();
        let (weak, rest) = match v.strip_prefix(b"W/") {
            Some(rest) => (true, rest),
            None => (false, v),
        };
        let opaque = rest.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        opaque
            .iter()
            .all(|&c| c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80)
            .then_some(ETag { weak, opaque })
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): the opaque parts are equal.
    pub fn weak_eq(&self, other: &ETag<'_>) -> bool {
        self.opaque == other.opaque
    }

    /// Strong comparison: both strong and equal.
    pub fn strong_eq(&self, other: &ETag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }
}

/// A stored response's validators and `Date` (raw field values), read from its head in
/// one pass ([`Stored::validators_held`]): what preconditions, ranges and a 304's
/// selection compare against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validators<'a> {
    /// `ETag`.
    pub etag: Option<&'a [u8]>,
    /// `Last-Modified`.
    pub last_modified: Option<&'a [u8]>,
    /// `Date`.
    pub date: Option<&'a [u8]>,
}

/// What a 304 selects the stored responses it updates by (RFC 9111 §4.3.4): its entity
/// tag, else its `Last-Modified`, else nothing. A 304 whose validator selects no stored
/// response MUST NOT update any: the origin says its current representation is one the
/// cache does not hold, so refreshing ours would label old content with the new
/// validators and keep it fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotModifiedBy<'a> {
    /// An entity tag: a strong one selects by strong comparison, a weak one by weak
    /// comparison (§4.3.4's first and second cases). Its `Last-Modified`, if any, is not
    /// consulted: the tag is the finer validator.
    Tag(ETag<'a>),
    /// No entity tag, a `Last-Modified`: selects a stored response with the same date
    /// (the second case; a date is a weak validator, RFC 9110 §8.8.2.2).
    LastModified(&'a [u8]),
    /// No validator: it can only mean the one stored response the request could have
    /// been answered with (the third case). §4.3.4 also wants that response to lack a
    /// validator, but a 304 to the cache's own `If-None-Match`/`If-Modified-Since` for
    /// one response confirms that response's validators (RFC 9110 §13.1.2, §13.1.3), and
    /// origins that leave them out of 304s are common: it is selected.
    Nothing,
}

impl<'a> NotModifiedBy<'a> {
    /// The validator of 304 `head`; a malformed entity tag counts as none.
    pub fn of(head: &'a ResponseHead) -> NotModifiedBy<'a> {
        if let Some(tag) = head.header("etag").and_then(ETag::parse) {
            return NotModifiedBy::Tag(tag);
        }
        match head.header("last-modified") {
            Some(lm) => NotModifiedBy::LastModified(lm),
            None => NotModifiedBy::Nothing,
        }
    }

    /// Whether it selects `stored` for the update.
    pub fn selects(&self, stored: &Stored) -> bool {
        let v = stored.validators_held();
        self.selects_fields(v.etag, v.last_modified)
    }

    /// Whether it selects a stored response whose entity tag is `tag` (one of a URL's
    /// variant list, whose dates are not kept: a date never selects from it).
    pub fn names_tag(&self, tag: &[u8]) -> bool {
        matches!(self, NotModifiedBy::Tag(_)) && self.selects_fields(Some(tag), None)
    }

    /// Whether it selects a stored response with `etag` and `last_modified`.
    fn selects_fields(&self, etag: Option<&[u8]>, last_modified: Option<&[u8]>) -> bool {
        match self {
            NotModifiedBy::Tag(ours) => etag.and_then(ETag::parse).is_some_and(|t| {
                if ours.weak {
                    ours.weak_eq(&t)
                } else {
                    ours.strong_eq(&t)
                }
            }),
            // The same instant, however each is spelled; bytes when either is no date.
            NotModifiedBy::LastModified(ours) => {
                last_modified.is_some_and(|lm| match (parse_http_date(ours), parse_http_date(lm)) {
                    (Some(a), Some(b)) => a == b,
                    _ => ours.trim_ascii() == lm.trim_ascii(),
                })
            }
            NotModifiedBy::Nothing => true,
        }
    }
}

/// A field holding `*` or a list of entity tags (`If-Match`, `If-None-Match`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagList<'a> {
    /// `*`.
    Any,
    /// The tags; malformed members are left out.
    Tags(Vec<ETag<'a>>),
}

/// Every `name` field of `req` as one tag list; None when it has none.
pub fn tag_list<'a>(req: &'a RequestHead, name: &'a str) -> Option<TagList<'a>> {
    let mut tags = Vec::new();
    let mut any = false;
    let mut present = false;
    for v in req.headers_all(name) {
        present = true;
        let mut i = 0;
        while i < v.len() {
            while i < v.len() && matches!(v[i], b' ' | b'\t' | b',') {
                i += 1;
            }
            let start = i;
            // A member ends at the comma after its closing quote (quotes hold no commas
            // in an entity tag, but a malformed one may lack them).
            let mut quotes = 0;
            while i < v.len() && !(v[i] == b',' && quotes != 1) {
                quotes += usize::from(v[i] == b'"');
                i += 1;
            }
            let member = v[start..i].trim_ascii();
            if member == b"*" {
                any = true;
            } else if let Some(tag) = ETag::parse(member) {
                tags.push(tag);
            }
        }
    }
    match (present, any) {
        (false, _) => None,
        (true, true) => Some(TagList::Any),
        (true, false) => Some(TagList::Tags(tags)),
    }
}

/// What the preconditions of a request say about a stored response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Answer as usual.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates `req`'s preconditions against a stored response with validators `v`, in
/// the order of RFC 9110 §13.2.2, for a GET or HEAD answered at `now` (Unix s).
pub fn evaluate(req: &RequestHead, v: &Validators<'_>, now: u64) -> Precondition {
    let etag = v.etag.and_then(ETag::parse);
    let lm = v.last_modified.and_then(parse_http_date);
    // If-Modified-Since against a response without Last-Modified: its Date (RFC 9111
    // §4.3.2; a stored response always has one, added on receipt if it came without).
    let modified = lm.or_else(|| v.date.and_then(parse_http_date));
    // 1. If-Match: strong comparison.
    match tag_list(req, "if-match") {
        Some(TagList::Any) => {}
        Some(TagList::Tags(tags)) => {
            if !etag.is_some_and(|e| tags.iter().any(|t| t.strong_eq(&e))) {
                return Precondition::Failed;
            }
        }
        // 2. If-Unmodified-Since, only without If-Match.
        None => {
            let since = req.header("if-unmodified-since").and_then(parse_http_date);
            if let (Some(since), Some(lm)) = (since, lm) {
                if lm > since {
                    return Precondition::Failed;
                }
            }
        }
    }
    // 3. If-None-Match: weak comparison; it overrides If-Modified-Since.
    match tag_list(req, "if-none-match") {
        Some(TagList::Any) => return Precondition::NotModified,
        Some(TagList::Tags(tags)) => {
            return match etag.is_some_and(|e| tags.iter().any(|t| t.weak_eq(&e))) {
                true => Precondition::NotModified,
                false => Precondition::Proceed,
            };
        }
        None => {}
    }
    // 4. If-Modified-Since: a date in the future is invalid and ignored.
    let since = req
        .header("if-modified-since")
        .and_then(parse_http_date)
        .filter(|since| *since <= now);
    match (since, modified) {
        (Some(since), Some(modified)) if modified <= since => Precondition::NotModified,
        _ => Precondition::Proceed,
    }
}

/// What a `Range` field asks of a body of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No range, an unknown unit, a malformed one, several ranges, or an `If-Range`
    /// that does not match: the whole body with 200.
    Whole,
    /// Bytes `start..end` with 206.
    Part(u64, u64),
    /// Nothing it asks for exists: 416.
    Unsatisfiable,
}

/// Reads `req`'s `Range` (and `If-Range`) against a stored 200 of `len` bytes with
/// validators `v` (RFC 9110 §14.2, §13.1.5).
pub fn range(req: &RequestHead, len: u64, v: &Validators<'_>) -> RangeAsk {
    let mut fields = req.headers_all("range");
    let (Some(value), None) = (fields.next(), fields.next()) else {
        return RangeAsk::Whole;
    };
    if let Some(cond) = req.header("if-range") {
        let matches = match ETag::parse(cond) {
            // An entity tag matches by strong comparison only.
            Some(tag) => v
                .etag
                .and_then(ETag::parse)
                .is_some_and(|e| e.strong_eq(&tag)),
            // A date matches only exactly the stored Last-Modified, and only if that is
            // strong: for a cache, at least a second before the stored Date (RFC 9110
            // §8.8.2.2); a weak one could name two versions within its second.
            None => match (
                parse_http_date(cond),
                v.last_modified.and_then(parse_http_date),
                v.date.and_then(parse_http_date),
            ) {
                (Some(a), Some(lm), Some(d)) => a == lm && d >= lm.saturating_add(1),
                _ => false,
            },
        };
        if !matches {
            return RangeAsk::Whole;
        }
    }
    parse_range(value, len)
}

/// Parses a `Range` value for a body of `len` bytes.
pub fn parse_range(value: &[u8], len: u64) -> RangeAsk {
    let Ok(value) = std::str::from_utf8(value) else {
        return RangeAsk::Whole;
    };
    let Some((unit, specs)) = value.trim().split_once('=') else {
        return RangeAsk::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAsk::Whole;
    }
    let specs: Vec<&str> = specs
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let [spec] = specs.as_slice() else {
        // None, or several: the whole representation (multipart/byteranges is not
        // produced; RFC 9110 §14.2 lets a server ignore Range).
        return RangeAsk::Whole;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let number = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            return Some(None);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Too many digits for u64 still names a position past any body.
        Some(Some(s.parse::<u64>().unwrap_or(u64::MAX)))
    };
    let (Some(first), Some(last)) = (number(first), number(last)) else {
        return RangeAsk::Whole;
    };
    match (first, last) {
        // A suffix: the last n bytes.
        (None, Some(0)) => RangeAsk::Unsatisfiable,
        (None, Some(_)) if len == 0 => RangeAsk::Unsatisfiable,
        (None, Some(n)) => RangeAsk::Part(len.saturating_sub(n), len),
        (None, None) => RangeAsk::Whole,
        (Some(a), Some(b)) if b < a => RangeAsk::Whole, // invalid: ignored
        (Some(a), _) if a >= len => RangeAsk::Unsatisfiable,
        (Some(a), Some(b)) => RangeAsk::Part(a, b.saturating_add(1).min(len)),
        (Some(a), None) => RangeAsk::Part(a, len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::codec::test_util::{request_with as req, resp};

    const LM: &[u8] = b"Sun, 09 Sep 2001 01:46:40 GMT";
    /// Ten seconds after LM: LM is strong.
    const DATE: &[u8] = b"Sun, 09 Sep 2001 01:46:50 GMT";
    const NOW: u64 = 1_000_000_100;

    /// The validators of a stored response: `etag`, `LM`, `date`.
    fn held<'a>(etag: Option<&'a [u8]>, date: Option<&'a [u8]>) -> Validators<'a> {
        Validators {
            etag,
            last_modified: Some(LM),
            date,
        }
    }

    fn eval(fields: &str, etag: Option<&str>) -> Precondition {
        evaluate(
            &req(fields),
            &held(etag.map(str::as_bytes), Some(DATE)),
            NOW,
        )
    }

    #[test]
    fn rfc9111_4_3_2_if_modified_since_without_last_modified_takes_the_date() {
        let ims = |since: &str| {
            let fields = format!("If-Modified-Since: {since}\r\n");
            let v = Validators {
                date: Some(DATE),
                ..Validators::default()
            };
            evaluate(&req(&fields), &v, NOW)
        };
        assert_eq!(
            ims("Sun, 09 Sep 2001 01:46:50 GMT"),
            Precondition::NotModified
        );
        assert_eq!(ims("Sun, 09 Sep 2001 01:46:49 GMT"), Precondition::Proceed);
        let fields = "If-Modified-Since: Sun, 09 Sep 2001 01:46:50 GMT\r\n";
        assert_eq!(
            evaluate(&req(fields), &Validators::default(), NOW),
            Precondition::Proceed
        );
    }

    #[test]
    fn rfc9110_13_1_2_if_none_match_weak_lists_and_star() {
        assert_eq!(
            eval("If-None-Match: \"a\"\r\n", Some("\"a\"")),
            Precondition::NotModified
        );
        assert_eq!(
            eval("If-None-Match: W/\"a\"\r\n", Some("\"a\"")),
            Precondition::NotModified
        );
        assert_eq!(
            eval("If-None-Match: \"x\", W/\"a\"\r\n", Some("W/\"a\"")),
            Precondition::NotModified
        );
        assert_eq!(
            eval(
                "If-None-Match: \"x\"\r\nIf-None-Match: \"a\"\r\n",
                Some("\"a\"")
            ),
            Precondition::NotModified
        );
        assert_eq!(
            eval("If-None-Match: \"b\"\r\n", Some("\"a\"")),
            Precondition::Proceed
        );
        assert_eq!(
            eval("If-None-Match: *\r\n", Some("\"a\"")),
            Precondition::NotModified
        );
        // It takes precedence over If-Modified-Since, even when that would say 304.
        assert_eq!(
            eval(
                "If-None-Match: \"b\"\r\nIf-Modified-Since: Sun, 09 Sep 2001 01:46:40 GMT\r\n",
                Some("\"a\"")
            ),
            Precondition::Proceed
        );
        // A malformed tag never matches.
        assert_eq!(
            eval("If-None-Match: a\r\n", Some("\"a\"")),
            Precondition::Proceed
        );
    }

    #[test]
    fn rfc9110_13_1_3_if_modified_since() {
        assert_eq!(
            eval("If-Modified-Since: Sun, 09 Sep 2001 01:46:40 GMT\r\n", None),
            Precondition::NotModified
        );
        assert_eq!(
            eval("If-Modified-Since: Sun, 09 Sep 2001 01:46:50 GMT\r\n", None),
            Precondition::NotModified
        );
        assert_eq!(
            eval("If-Modified-Since: Sun, 09 Sep 2001 01:46:30 GMT\r\n", None),
            Precondition::Proceed
        );
        // Invalid, or in the future: ignored.
        assert_eq!(
            eval("If-Modified-Since: yesterday\r\n", None),
            Precondition::Proceed
        );
        assert_eq!(
            eval("If-Modified-Since: Sun, 09 Sep 2035 01:46:40 GMT\r\n", None),
            Precondition::Proceed
        );
    }

    #[test]
    fn rfc9110_13_1_1_and_4_if_match_and_if_unmodified_since() {
        assert_eq!(
            eval("If-Match: \"a\"\r\n", Some("\"a\"")),
            Precondition::Proceed
        );
        assert_eq!(
            eval("If-Match: W/\"a\"\r\n", Some("\"a\"")),
            Precondition::Failed
        );
        assert_eq!(
            eval("If-Match: *\r\n", Some("\"a\"")),
            Precondition::Proceed
        );
        assert_eq!(
            eval(
                "If-Unmodified-Since: Sun, 09 Sep 2001 01:46:30 GMT\r\n",
                None
            ),
            Precondition::Failed
        );
        assert_eq!(
            eval(
                "If-Unmodified-Since: Sun, 09 Sep 2001 01:46:40 GMT\r\n",
                None
            ),
            Precondition::Proceed
        );
    }

    #[test]
    fn rfc9110_14_2_single_ranges() {
        let r = |v: &str| parse_range(v.as_bytes(), 100);
        assert_eq!(r("bytes=0-9"), RangeAsk::Part(0, 10));
        assert_eq!(r("Bytes = 90-"), RangeAsk::Part(90, 100));
        assert_eq!(r("bytes=-10"), RangeAsk::Part(90, 100));
        assert_eq!(r("bytes=-1000"), RangeAsk::Part(0, 100));
        assert_eq!(r("bytes=50-1000"), RangeAsk::Part(50, 100));
        assert_eq!(r("bytes=100-"), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=99999999999999999999999-"), RangeAsk::Unsatisfiable);
        // Malformed, another unit, several ranges: the whole body.
        for whole in [
            "bytes=9-2",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes",
            "bytes=-",
            "0-9",
            "bytes=1-2-3",
        ] {
            assert_eq!(r(whole), RangeAsk::Whole, "{whole}");
        }
        assert_eq!(parse_range(b"bytes=-5", 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn rfc9110_13_1_5_if_range() {
        let etag = Some(&b"\"a\""[..]);
        let ask = |fields: &str| range(&req(fields), 100, &held(etag, Some(DATE)));
        assert_eq!(
            ask("Range: bytes=0-0\r\nIf-Range: \"a\"\r\n"),
            RangeAsk::Part(0, 1)
        );
        assert_eq!(
            ask("Range: bytes=0-0\r\nIf-Range: \"b\"\r\n"),
            RangeAsk::Whole
        );
        assert_eq!(
            ask("Range: bytes=0-0\r\nIf-Range: W/\"a\"\r\n"),
            RangeAsk::Whole
        );
        assert_eq!(
            ask("Range: bytes=0-0\r\nIf-Range: Sun, 09 Sep 2001 01:46:40 GMT\r\n"),
            RangeAsk::Part(0, 1)
        );
        assert_eq!(
            ask("Range: bytes=0-0\r\nIf-Range: Sun, 09 Sep 2001 01:46:41 GMT\r\n"),
            RangeAsk::Whole
        );
        assert_eq!(
            ask("Range: bytes=0-0\r\nRange: bytes=1-1\r\n"),
            RangeAsk::Whole
        );
        assert_eq!(ask(""), RangeAsk::Whole);
        // A Last-Modified less than a second before the Date is weak: no date matches it
        // (RFC 9110 §8.8.2.2), nor one without a Date.
        let date_ask = "Range: bytes=0-0\r\nIf-Range: Sun, 09 Sep 2001 01:46:40 GMT\r\n";
        for date in [Some(LM), None] {
            assert_eq!(
                range(&req(date_ask), 100, &held(etag, date)),
                RangeAsk::Whole
            );
        }
    }

    #[test]
    fn rfc9111_4_3_4_a_304_selects_only_a_stored_response_with_its_validator() {
        let lm = "Sun, 09 Sep 2001 01:46:40 GMT";
        let by = |fields: &str| resp(&format!("HTTP/1.1 304 Not Modified\r\n{fields}\r\n"));
        let selects = |fields: &str, etag: Option<&str>, last_modified: Option<&str>| {
            NotModifiedBy::of(&by(fields))
                .selects_fields(etag.map(str::as_bytes), last_modified.map(str::as_bytes))
        };
        // A strong tag selects by strong comparison only.
        assert!(selects("ETag: \"a\"\r\n", Some("\"a\""), None));
        assert!(!selects("ETag: \"b\"\r\n", Some("\"a\""), None));
        assert!(!selects("ETag: \"a\"\r\n", Some("W/\"a\""), None));
        assert!(!selects("ETag: \"a\"\r\n", None, Some(lm)));
        // A weak one by weak comparison.
        assert!(selects("ETag: W/\"a\"\r\n", Some("\"a\""), None));
        assert!(!selects("ETag: W/\"b\"\r\n", Some("W/\"a\""), None));
        // The tag decides over a date that agrees.
        let both = format!("ETag: \"b\"\r\nLast-Modified: {lm}\r\n");
        assert!(!selects(&both, Some("\"a\""), Some(lm)));
        // Without a tag, the date: the same instant, however spelled.
        let date = format!("Last-Modified: {lm}\r\n");
        assert!(selects(&date, Some("\"a\""), Some(lm)));
        assert!(selects(&date, None, Some("Sunday, 09-Sep-01 01:46:40 GMT")));
        assert!(!selects(&date, None, Some("Sun, 09 Sep 2001 01:46:41 GMT")));
        assert!(!selects(&date, Some("\"a\""), None));
        // A malformed tag is none; no validator at all selects the one stored.
        assert!(selects("ETag: a\r\n", Some("\"a\""), Some(lm)));
        assert!(selects("", Some("\"a\""), Some(lm)));
        assert_eq!(NotModifiedBy::of(&by("")), NotModifiedBy::Nothing);
        // A variant list's tags: only a tag selects from them.
        assert!(NotModifiedBy::of(&by("ETag: \"a\"\r\n")).names_tag(b"\"a\""));
        assert!(!NotModifiedBy::of(&by("")).names_tag(b"\"a\""));
        assert!(!NotModifiedBy::of(&by(&date)).names_tag(b"\"a\""));
    }
}
