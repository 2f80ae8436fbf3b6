//! Header fields kept in one buffer: a parsed head is a copy of its bytes plus the
//! offsets of each name and value, so parsing a head costs two allocations however many
//! fields it carries (a `String` and a `Vec` per field cost 2·n, and were most of the
//! proxy's allocations per request).
//!
//! Each field's name is classified when the field is added ([`super::field_names`]), so
//! a lookup by a known name compares a small id, and a head without the name answers
//! at once from a bit mask.

use super::field_names::{bit, classify, Name, UNKNOWN};
use std::fmt;

/// One field, borrowed from its [`Fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// Name as received (an HTTP token, so ASCII).
    pub name: &'a str,
    /// Value, surrounding whitespace removed.
    pub value: &'a [u8],
}

/// Where a field's name and value lie in [`Fields::bytes`].
#[derive(Clone, Copy, Debug)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
    /// The name's id among the known names, or `UNKNOWN`.
    known: u8,
}

/// Header fields in order, names and values stored in one buffer.
#[derive(Clone, Default)]
pub struct Fields {
    /// The head as received (line folds turned to spaces), then any pushed fields.
    bytes: Vec<u8>,
    spans: Vec<Span>,
    /// The bits of the known names among the fields: a clear bit means the name is absent.
    present: u64,
}

impl Fields {
    /// Fields over `bytes` (a head as received); add them with [`Fields::add`].
    pub(crate) fn over(bytes: Vec<u8>, count: usize) -> Fields {
        Fields {
            bytes,
            spans: Vec::with_capacity(count),
            present: 0,
        }
    }

    /// Records a field whose name and value are the given ranges of the buffer.
    pub(crate) fn add(&mut self, name: (usize, usize), value: (usize, usize)) {
        let known = classify(self.slice(name));
        self.present |= bit(known);
        self.spans.push(Span { name, value, known });
    }

    /// The buffer's bytes in `range` (a request line piece or reason phrase); empty if
    /// the range is not in the buffer (a head whose fields were replaced wholesale).
    pub(crate) fn slice(&self, range: (usize, usize)) -> &[u8] {
        slice_of(&self.bytes, range)
    }

    /// The buffer's bytes in `range`, which the parser found to be UTF-8.
    pub(crate) fn str(&self, range: (usize, usize)) -> &str {
        str_of(&self.bytes, range)
    }

    /// Mutable access to the buffer's bytes in `range` (the parser's value fix-ups).
    pub(crate) fn slice_mut(&mut self, range: (usize, usize)) -> &mut [u8] {
        &mut self.bytes[range.0..range.1]
    }

    /// Every field, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Field<'_>> + ExactSizeIterator + '_ {
        self.spans.iter().map(|s| field_of(&self.bytes, s))
    }

    /// Every field as raw bytes, in order (no UTF-8 check of the names: for writing),
    /// each with its name's bit ([`super::field_names`]; 0 for a name not known).
    pub(crate) fn raw(&self) -> impl Iterator<Item = (u64, &[u8], &[u8])> + '_ {
        self.spans
            .iter()
            .map(|s| (bit(s.known), self.slice(s.name), self.slice(s.value)))
    }

    /// Size of the buffer: the head as received plus pushed fields.
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Every `name` field's value, in order (case-insensitive name). A [`Name`] made
    /// with [`Name::known`] was classified at compile time; a `&str` is classified here.
    pub fn get_all<'a, 'n, N: Into<Name<'n>>>(
        &'a self,
        name: N,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n, N> {
        let Name { known, text } = name.into();
        let absent = known != UNKNOWN && self.present & bit(known) == 0;
        let spans = if absent { &[][..] } else { &self.spans[..] };
        spans
            .iter()
            .filter(move |s| match known {
                UNKNOWN => self.slice(s.name).eq_ignore_ascii_case(text.as_bytes()),
                id => s.known == id,
            })
            .map(|s| self.slice(s.value))
    }

    /// The first `name` field's value.
    pub fn get<'n>(&self, name: impl Into<Name<'n>>) -> Option<&[u8]> {
        self.get_all(name).next()
    }

    /// Whether a `name` field is present.
    pub fn contains<'n>(&self, name: impl Into<Name<'n>>) -> bool {
        self.get(name).is_some()
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(value);
        let mid = at + name.len();
        self.add((at, mid), (mid, self.bytes.len()));
    }

    /// Keeps only the fields `keep` says yes to (their bytes stay in the buffer).
    pub fn retain(&mut self, mut keep: impl FnMut(Field<'_>) -> bool) {
        let bytes = &self.bytes;
        self.spans.retain(|s| keep(field_of(bytes, s)));
        self.present = self.spans.iter().fold(0, |bits, s| bits | bit(s.known));
    }
}

fn slice_of(bytes: &[u8], range: (usize, usize)) -> &[u8] {
    bytes.get(range.0..range.1).unwrap_or_default()
}

fn str_of(bytes: &[u8], range: (usize, usize)) -> &str {
    std::str::from_utf8(slice_of(bytes, range)).unwrap_or_default()
}

fn field_of<'a>(bytes: &'a [u8], s: &Span) -> Field<'a> {
    Field {
        name: str_of(bytes, s.name),
        value: slice_of(bytes, s.value),
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Fields {}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|h| (h.name, String::from_utf8_lossy(h.value))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_and_retained_fields_keep_their_order() {
        let mut f = Fields::default();
        f.push("A", b"1");
        f.push("b", b"2");
        f.push("a", b"3");
        assert_eq!(f.len(), 3);
        assert_eq!(f.get("A"), Some(&b"1"[..]));
        assert_eq!(f.get_all("a").collect::<Vec<_>>(), [&b"1"[..], b"3"]);
        f.retain(|h| h.name != "A");
        let names: Vec<&str> = f.iter().map(|h| h.name).collect();
        assert_eq!(names, ["b", "a"]);
        assert!(!f.contains("c"));
        let mut g = Fields::default();
        g.push("b", b"2");
        g.push("a", b"3");
        assert_eq!(f, g);
    }

    #[test]
    fn known_names_are_found_in_any_case_and_absent_ones_at_once() {
        let mut f = Fields::default();
        f.push("Content-LENGTH", b"5");
        f.push("X-Other", b"a");
        f.push("content-length", b"6");
        f.push("If-None-Match", b"\"x\"");
        assert_eq!(
            f.get_all("content-length").collect::<Vec<_>>(),
            [&b"5"[..], b"6"]
        );
        assert_eq!(f.get("CONTENT-length"), Some(&b"5"[..]));
        assert_eq!(f.get("x-other"), Some(&b"a"[..]));
        assert_eq!(f.get("if-none-match"), Some(&b"\"x\""[..]));
        assert!(!f.contains("transfer-encoding"));
        // A name one byte off a known one is a name of its own.
        assert!(!f.contains("content-lengths"));
        f.retain(|h| !h.name.eq_ignore_ascii_case("content-length"));
        assert!(!f.contains("content-length"));
        assert_eq!(f.len(), 2);
        let bits: Vec<u64> = f.raw().map(|(b, _, _)| b).collect();
        assert_eq!(
            bits,
            [0, super::super::field_names::name_bits(&["if-none-match"])]
        );
    }
}
