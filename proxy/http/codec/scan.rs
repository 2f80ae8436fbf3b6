//! Reading a head's bytes: where the head ends (searched a word at a time, resumable
//! across reads), the line checks a request head must pass, its fields as ranges of one
//! copy, and the comma-separated lists field values hold. Pure functions over byte
//! slices: no sockets, no state, callable from any thread.

use super::{Fields, HeadError};
use crate::http::field_names::Name;

/// The position of the first byte at or after `from` for which `hit` holds, testing
/// eight bytes at a time with `any_in_word` (which may report a word that has none, never
/// miss one that has): heads are scanned for line ends and control bytes on every
/// request, and a byte-at-a-time loop cost more than the rest of the parse.
fn find(
    buf: &[u8],
    from: usize,
    any_in_word: impl Fn(u64) -> bool,
    hit: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut i = from.min(buf.len());
    while let Some(word) = buf.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        if any_in_word(w) {
            if let Some(p) = word.iter().position(|b| hit(*b)) {
                return Some(i + p);
            }
        }
        i += 8;
    }
    buf[i..].iter().position(|b| hit(*b)).map(|p| i + p)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether a byte of `w` is below `n` (exact for n ≤ 128; "hasless" of Bit Twiddling
/// Hacks).
fn has_below(w: u64, n: u8) -> bool {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0
}

/// The first `\n` at or after `from`.
fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    find(
        buf,
        from,
        |w| has_below(w ^ (ONES * u64::from(b'\n')), 1),
        |b| b == b'\n',
    )
}

/// The first byte at or after `from` that is `\r` or below it (NUL, LF among them).
fn find_control(buf: &[u8], from: usize) -> Option<usize> {
    find(buf, from, |w| has_below(w, b'\r' + 1), |b| b <= b'\r')
}

/// The end of the head (just past its blank line), if complete: the first `\n\r\n` or
/// `\n\n` at or after `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from.min(buf.len());
    while let Some(at) = find_lf(buf, i) {
        match &buf[at + 1..] {
            [b'\n', ..] => return Some(at + 2),
            [b'\r', b'\n', ..] => return Some(at + 3),
            _ => i = at + 1,
        }
    }
    None
}

/// Where the head in `buf` ends, looking at no more than `max_head` bytes and skipping
/// what an earlier call already searched. Work per call is bounded by `max_head`.
pub(super) fn locate_head(
    buf: &[u8],
    max_head: usize,
    searched: usize,
) -> Result<Option<usize>, HeadError> {
    let window = &buf[..buf.len().min(max_head)];
    // The terminator is at most 3 bytes, so it may have begun in the searched part.
    match head_end(window, searched.saturating_sub(3)) {
        Some(end) => Ok(Some(end)),
        None if buf.len() > max_head => Err(HeadError::TooLarge),
        None => Ok(None),
    }
}

/// Requires CRLF line endings and refuses obs-fold and NUL anywhere in a request head
/// (httparse tolerates bare LF).
pub(super) fn check_request_lines(head: &[u8]) -> Result<(), HeadError> {
    let mut from = 0;
    while let Some(i) = find_control(head, from) {
        from = i + 1;
        match head[i] {
            b'\n' if i == 0 || head[i - 1] != b'\r' => {
                return Err(HeadError::Bad("bare LF in request head"))
            }
            b'\n' if matches!(head.get(i + 1), Some(b' ' | b'\t')) => {
                return Err(HeadError::Bad("obsolete line folding"))
            }
            b'\r' if head.get(i + 1) != Some(&b'\n') => {
                return Err(HeadError::Bad("bare CR in request head"))
            }
            0 => return Err(HeadError::Bad("NUL in request head")),
            _ => {}
        }
    }
    Ok(())
}

/// The range of `head` that `part`, a slice httparse returned, covers. httparse may
/// return an empty part that is not a slice of the head (a static `""`), so every empty
/// part is the empty range at 0.
pub(super) fn range(head: &[u8], part: &[u8]) -> (usize, usize) {
    if part.is_empty() {
        return (0, 0);
    }
    let at = part.as_ptr() as usize - head.as_ptr() as usize;
    debug_assert!(at + part.len() <= head.len());
    (at, at + part.len())
}

/// Copies the head once and records httparse's fields as ranges of the copy, values
/// trimmed. With `unfold` (responses: requests refuse obs-fold before this), a value's
/// obs-fold becomes spaces (RFC 9112 §5.2).
pub(super) fn collect_fields(head: &[u8], raw: &[httparse::Header<'_>], unfold: bool) -> Fields {
    let mut fields = Fields::over(head.to_vec(), raw.len());
    for h in raw {
        let value = range(head, trim(h.value));
        fields.add(range(head, h.name.as_bytes()), value);
        if unfold && find_control(h.value, 0).is_some() {
            for b in fields.slice_mut(value) {
                if matches!(b, b'\r' | b'\n') {
                    *b = b' ';
                }
            }
        }
    }
    fields
}

/// Comma-separated tokens of every `name` field, trimmed, empty ones skipped.
pub(crate) fn tokens<'a>(
    headers: &'a Fields,
    name: Name<'a>,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(name)
        .flat_map(|v| v.split(|b| *b == b','))
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// `s` without leading and trailing spaces and tabs.
pub(super) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_scans_find_what_byte_scans_find() {
        // Every byte value at every position of buffers around the word size, over a
        // background of each byte value, from every start.
        for len in 0..20 {
            for background in [b'a', b' ', b'\t', 0x0e, 0x7f, 0x80, 0xff] {
                for at in 0..len {
                    for v in 0..=255u8 {
                        let mut buf = vec![background; len];
                        buf[at] = v;
                        for from in 0..=len {
                            let naive = |hit: &dyn Fn(u8) -> bool| {
                                buf[from..].iter().position(|b| hit(*b)).map(|p| from + p)
                            };
                            assert_eq!(find_lf(&buf, from), naive(&|b| b == b'\n'));
                            assert_eq!(find_control(&buf, from), naive(&|b| b <= b'\r'));
                        }
                    }
                }
            }
        }
    }
}
