//! HTTP caching as a shared cache does it (RFC 9111, with RFC 9110's conditional and
//! range requests, RFC 5861's stale-while-revalidate and stale-if-error, RFC 8246's
//! immutable and RFC 9213's targeted fields): what may be stored and for how long
//! (`freshness.rs`), the directives that say so (`directives.rs`), when a stored
//! response may answer (`freshness::verdict`), conditional and range requests answered
//! from it (`conditional.rs`), `Vary` (`vary.rs`), and the stored object with its
//! format (`stored.rs`). Pure functions over heads and bytes; the session decides when
//! to call them (`http/session/cache.rs`).
//!
//! The key is the remapped origin URL. A response with `Vary` is stored with the
//! request's (normalised) values of the fields it names and serves only requests with
//! the same values; each set of values keeps its own variant ([`alternate_key`]);
//! `Vary: *` is never stored.

mod conditional;
mod directives;
mod freshness;
mod stored;
mod vary;

pub use conditional::{evaluate, range, NotModifiedBy, Precondition, RangeAsk};
/// The parsers the fuzz targets drive; the daemon reaches them through the functions
/// above.
#[cfg(feature = "fuzzing")]
pub use conditional::{parse_range, tag_list, TagList, Validators};
#[cfg(feature = "fuzzing")]
pub use directives::{each_directive, parse_delta, Delta, ResponseDirectives};
pub use directives::{request_directives, response_directives, RequestDirectives};
pub use freshness::{
    initial_age, stale_if_error, storable, verdict, CachePolicy, Storable, Verdict,
};
pub use stored::Stored;
#[cfg(feature = "fuzzing")]
pub use stored::{Body, VariantList};
pub use vary::{alternate_key, variant};

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The cache key of a request forwarded to `host` (Host sent to the origin) and `path`,
/// over TLS when `https`: an `http://` and an `https://` origin of one name are two.
/// Spellings of one URL that RFC 3986 §6.2.2.1–2 makes equal make one key: a
/// percent-encoded octet's hex digits upper-cased, an encoded unreserved character
/// (`%7E`, `%41`) decoded. So a response's `Location` invalidates the object its
/// request stored however either spelled it.
pub fn key(https: bool, host: &str, path: &str) -> String {
    let scheme = if https { "https" } else { "http" };
    let mut key = String::with_capacity(scheme.len() + 3 + host.len() + path.len());
    key.push_str(scheme);
    key.push_str("://");
    key.push_str(host);
    push_normalized(&mut key, path);
    key
}

/// Appends `path` to `out` with its percent-encodings normalized as [`key`] says.
fn push_normalized(out: &mut String, path: &str) {
    let bytes = path.as_bytes();
    let mut from = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'%') {
        i += at;
        let (Some(h), Some(l)) = (
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) else {
            i += 1;
            continue;
        };
        out.push_str(&path[from..i]);
        let octet = h << 4 | l;
        if octet.is_ascii_alphanumeric() || b"-._~".contains(&octet) {
            out.push(char::from(octet));
        } else {
            out.push('%');
            out.push_str(&path[i + 1..i + 3].to_ascii_uppercase());
        }
        i += 3;
        from = i;
    }
    out.push_str(&path[from..]);
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
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

/// Parses an HTTP date in any of the three forms of RFC 9110 §5.6.7 into Unix seconds.
pub fn parse_http_date(v: &[u8]) -> Option<u64> {
    let t = httpdate::parse_http_date(std::str::from_utf8(v).ok()?.trim()).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests;
