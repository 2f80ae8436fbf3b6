//! The header names the proxy looks up, recognised once per field: each known name has
//! a small id and a bit, so a lookup compares ids instead of names, a head's known
//! names fit in one `u64` mask, and a set of names (the hop-by-hop ones) is a mask
//! built at compile time. User-space instructions per new connection went from 22,319
//! to 20,824 and per keep-alive request from 18,890 to 17,755 (`benches/instructions.sh`,
//! README "Where a request's CPU goes"). Pure functions and constants: any thread.

/// Hop-by-hop fields (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Framing fields. A `Connection` token never removes them: the proxy frames the body
/// by them, so the next hop must see them too.
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];

/// The other names the proxy looks up.
const LOOKED_UP: [&str; 23] = [
    "host",
    "via",
    "x-forwarded-for",
    "cache-control",
    "pragma",
    "authorization",
    "vary",
    "etag",
    "last-modified",
    "expires",
    "date",
    "age",
    "range",
    "if-range",
    "if-modified-since",
    "if-unmodified-since",
    "if-none-match",
    "if-match",
    "expect",
    "cookie",
    "set-cookie",
    "content-type",
    "max-forwards",
];

/// Not a field the proxy reads, but the token a Connection header most often lists:
/// known, a `Connection: close` names no field the forwarder must look for.
const CONNECTION_OPTIONS: [&str; 1] = ["close"];

/// The names recognised when a field is added, lowercase; a name's id is its index.
const KNOWN: [&str; HOP_BY_HOP.len() + FRAMING.len() + LOOKED_UP.len() + CONNECTION_OPTIONS.len()] =
    join(&[&HOP_BY_HOP, &FRAMING, &LOOKED_UP, &CONNECTION_OPTIONS]);

/// The hop-by-hop names' bits.
pub(crate) const HOP_BY_HOP_BITS: u64 = name_bits(&HOP_BY_HOP);
/// The framing names' bits.
pub(crate) const FRAMING_BITS: u64 = name_bits(&FRAMING);

/// `parts` one after another, in an array of exactly their total length.
const fn join<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut n, mut p) = (0, 0);
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            out[n] = parts[p][i];
            n += 1;
            i += 1;
        }
        p += 1;
    }
    assert!(n == N, "the parts fill the array");
    out
}

/// The longest known name, plus one: the lengths [`BY_LEN`] has a row for.
const LEN_LIMIT: usize = {
    let (mut longest, mut id) = (0, 0);
    while id < KNOWN.len() {
        if KNOWN[id].len() > longest {
            longest = KNOWN[id].len();
        }
        id += 1;
    }
    longest + 1
};

/// Known names sharing a length, at most.
const PER_LEN: usize = {
    let mut count = [0usize; LEN_LIMIT];
    let (mut most, mut id) = (0, 0);
    while id < KNOWN.len() {
        count[KNOWN[id].len()] += 1;
        if count[KNOWN[id].len()] > most {
            most = count[KNOWN[id].len()];
        }
        id += 1;
    }
    most
};

/// No known name.
pub(super) const UNKNOWN: u8 = u8::MAX;

/// The ids of the known names of each length (`UNKNOWN` past the last), built at compile
/// time from [`KNOWN`], so a name is compared with at most [`PER_LEN`] candidates.
const BY_LEN: [[u8; PER_LEN]; LEN_LIMIT] = {
    let mut table = [[UNKNOWN; PER_LEN]; LEN_LIMIT];
    let mut id = 0;
    while id < KNOWN.len() {
        let len = KNOWN[id].len();
        let mut slot = 0;
        while table[len][slot] != UNKNOWN {
            slot += 1;
        }
        table[len][slot] = id as u8;
        id += 1;
    }
    table
};

/// Bytes of a name compared at once: the known names fit in [`WORDS`] words.
const WORDS: usize = LEN_LIMIT.div_ceil(8);

/// `name`'s bytes as little-endian words, zero-padded.
const fn words(name: &[u8]) -> [u64; WORDS] {
    let mut w = [0u64; WORDS];
    let mut i = 0;
    while i < name.len() && i < WORDS * 8 {
        w[i / 8] |= (name[i] as u64) << (8 * (i % 8));
        i += 1;
    }
    w
}

/// Each known name as words, and the case bit (0x20) of each of its letters: a byte
/// matches a letter of a known name when it equals it with that bit set, and matches
/// any other byte only when equal.
const KNOWN_WORDS: [([u64; WORDS], [u64; WORDS]); KNOWN.len()] = {
    let mut table = [([0u64; WORDS], [0u64; WORDS]); KNOWN.len()];
    let mut id = 0;
    while id < KNOWN.len() {
        let name = KNOWN[id].as_bytes();
        let mut case = [0u8; WORDS * 8];
        let mut i = 0;
        while i < name.len() {
            if name[i].is_ascii_lowercase() {
                case[i] = 0x20;
            }
            i += 1;
        }
        table[id] = (words(name), words(&case));
        id += 1;
    }
    table
};

/// The id of `name` (any case), or `UNKNOWN`: a few word comparisons, as every field
/// added and every lookup by a name given at run time classifies a name.
#[inline]
pub(super) fn classify(name: &[u8]) -> u8 {
    let Some(candidates) = BY_LEN.get(name.len()) else {
        return UNKNOWN;
    };
    if candidates[0] == UNKNOWN {
        return UNKNOWN;
    }
    let mut padded = [0u8; WORDS * 8];
    padded[..name.len()].copy_from_slice(name);
    let w: [u64; WORDS] =
        std::array::from_fn(|i| u64::from_le_bytes(padded[i * 8..i * 8 + 8].try_into().unwrap()));
    for &id in candidates {
        if id == UNKNOWN {
            break;
        }
        let (known, case) = &KNOWN_WORDS[usize::from(id)];
        if (0..WORDS).all(|i| w[i] | case[i] == known[i]) {
            return id;
        }
    }
    UNKNOWN
}

/// A name to look fields up by, with its id among the known names (or `UNKNOWN`).
#[derive(Clone, Copy, Debug)]
pub struct Name<'n> {
    pub(super) known: u8,
    pub(super) text: &'n str,
}

impl Name<'static> {
    /// `name` (lowercase), one of the known names, classified at compile time when used
    /// in a constant: another name fails the build.
    pub const fn known(name: &'static str) -> Name<'static> {
        let mut id = 0;
        while !const_eq(KNOWN[id].as_bytes(), name.as_bytes()) {
            id += 1; // past the table: an index out of bounds, a compile error
        }
        Name {
            known: id as u8,
            text: name,
        }
    }
}

impl Name<'_> {
    /// Its bit among the known names, 0 for another name.
    pub(crate) fn bit(&self) -> u64 {
        bit(self.known)
    }
}

impl<'n> From<&'n str> for Name<'n> {
    fn from(text: &'n str) -> Name<'n> {
        Name {
            known: classify(text.as_bytes()),
            text,
        }
    }
}

/// The names the request path looks up on every request (and `Date`, on every
/// response), classified at compile time.
pub mod names {
    use super::Name;

    /// `Connection`.
    pub const CONNECTION: Name<'static> = Name::known("connection");
    /// `Content-Length`.
    pub const CONTENT_LENGTH: Name<'static> = Name::known("content-length");
    /// `Transfer-Encoding`.
    pub const TRANSFER_ENCODING: Name<'static> = Name::known("transfer-encoding");
    /// `Host`.
    pub const HOST: Name<'static> = Name::known("host");
    /// `Via`.
    pub const VIA: Name<'static> = Name::known("via");
    /// `Date`.
    pub const DATE: Name<'static> = Name::known("date");
    /// `X-Forwarded-For`.
    pub const X_FORWARDED_FOR: Name<'static> = Name::known("x-forwarded-for");
}

/// A known name's bit, 0 for other names.
pub(super) fn bit(id: u8) -> u64 {
    if id == UNKNOWN {
        0
    } else {
        1 << id
    }
}

/// The bit of `name` (any case), 0 for a name not known.
pub(crate) fn name_bit(name: &[u8]) -> u64 {
    bit(classify(name))
}

/// The bits of `names` (lowercase), for sets of names fixed at compile time: call it in
/// a `const` (an item or an inline `const { .. }`), where a name not in [`KNOWN`] fails
/// the build; called at run time it scans the table on every call.
pub(crate) const fn name_bits(names: &[&'static str]) -> u64 {
    let mut bits = 0;
    let mut i = 0;
    while i < names.len() {
        bits |= 1 << Name::known(names[i]).known;
        i += 1;
    }
    bits
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_is_recognised_as_itself() {
        for (id, name) in KNOWN.iter().enumerate() {
            assert_eq!(usize::from(classify(name.as_bytes())), id, "{name}");
            assert_eq!(usize::from(classify(name.to_uppercase().as_bytes())), id);
            assert_eq!(name_bits(&[name]), 1 << id);
        }
        // The case bit makes a letter match its capital, and nothing else: CR is `-`
        // without it.
        assert_eq!(classify(b"content\rlength"), UNKNOWN);
        assert_eq!(classify(b"CONTENT-LENGTH"), classify(b"content-length"));
        assert_eq!(classify(b""), UNKNOWN);
        assert_eq!(classify(&[b'a'; 300]), UNKNOWN);
    }
}
