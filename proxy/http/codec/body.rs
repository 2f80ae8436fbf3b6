//! Chunked bodies (RFC 9112 §7.1): a streaming scanner that finds where one ends (or
//! extracts its payload) as bytes pass through in pieces of any size, and the encoder
//! for re-chunking a payload. Pure functions over byte slices: no sockets; a scanner's
//! state belongs to its caller, on whatever thread that runs.

use super::HeadError;
use std::io::Write as _;

/// Longest chunk-size line (size and extensions, without its CRLF) the scanner accepts.
const MAX_CHUNK_LINE: usize = 1024;
/// Longest trailer line (without its CRLF).
const MAX_TRAILER_LINE: usize = 8192;

/// Result of feeding bytes to a [`ChunkedScanner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// Bytes of the input that belong to the body.
    pub consumed: usize,
    /// The body (last chunk and trailers) ended within them.
    pub done: bool,
}

/// Where a [`ChunkedScanner`] is in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// At the start of a chunk-size line.
    Size,
    /// After at least one hex digit.
    SizeDigits,
    /// After whitespace following the size: only `;` or the CR may come.
    SizeWs,
    /// In chunk extensions, ignored.
    Ext,
    /// After the size line's CR.
    SizeLf,
    /// In chunk data; `ChunkedScanner::value` bytes to go.
    Data,
    DataCr,
    DataLf,
    /// In a trailer line (or the blank line ending the body).
    Trailer,
    TrailerLf,
    Done,
}

/// Finds where a chunked body ends while the bytes pass through unchanged (or, with
/// [`ChunkedScanner::decode`], extracts the payload). State carries across calls, so
/// input may be split anywhere. Errors are [`HeadError::Bad`]; after one, the body is
/// unusable and the connection must be closed.
#[derive(Clone, Debug)]
pub struct ChunkedScanner {
    state: Chunk,
    /// The chunk size being read, then the data bytes left.
    value: u64,
    /// Bytes of the current size or trailer line so far.
    line: usize,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner::new()
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a body.
    pub fn new() -> ChunkedScanner {
        ChunkedScanner {
            state: Chunk::Size,
            value: 0,
            line: 0,
        }
    }

    /// Whether the whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Consumes as much of `input` as belongs to the body.
    pub fn scan(&mut self, input: &[u8]) -> Result<ScanResult, HeadError> {
        self.run(input, None)
    }

    /// As [`scan`](Self::scan), appending the payload bytes to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<ScanResult, HeadError> {
        self.run(input, Some(out))
    }

    fn run(
        &mut self,
        input: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<ScanResult, HeadError> {
        let bad = |why| Err(HeadError::Bad(why));
        let mut i = 0;
        while i < input.len() && self.state != Chunk::Done {
            if self.state == Chunk::Data {
                let k = self.value.min((input.len() - i) as u64) as usize;
                if let Some(o) = out.as_deref_mut() {
                    o.extend_from_slice(&input[i..i + k]);
                }
                i += k;
                self.value -= k as u64;
                if self.value == 0 {
                    self.state = Chunk::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            if matches!(
                self.state,
                Chunk::Size | Chunk::SizeDigits | Chunk::SizeWs | Chunk::Ext
            ) && b != b'\r'
            {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return bad("chunk size line too long");
                }
            }
            self.state = match (self.state, b) {
                (Chunk::Size | Chunk::SizeDigits, _) if b.is_ascii_hexdigit() => {
                    if self.value > u64::MAX >> 4 {
                        return bad("chunk size overflows");
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    self.value = (self.value << 4) | u64::from(d);
                    Chunk::SizeDigits
                }
                (Chunk::Size, _) => return bad("malformed chunk size"),
                (Chunk::SizeDigits | Chunk::SizeWs, b' ' | b'\t') => Chunk::SizeWs,
                (Chunk::SizeDigits | Chunk::SizeWs | Chunk::Ext, b'\r') => Chunk::SizeLf,
                (Chunk::SizeDigits | Chunk::SizeWs, b';') => Chunk::Ext,
                (Chunk::SizeDigits | Chunk::SizeWs, _) => return bad("malformed chunk size"),
                (Chunk::Ext, b'\n' | 0) => return bad("bad byte in chunk extension"),
                (Chunk::Ext, _) => Chunk::Ext,
                (Chunk::SizeLf, b'\n') => {
                    self.line = 0;
                    if self.value == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data
                    }
                }
                (Chunk::SizeLf, _) => return bad("chunk size line without CRLF"),
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr, _) => return bad("chunk data longer than its size"),
                (Chunk::DataLf, b'\n') => Chunk::Size,
                (Chunk::DataLf, _) => return bad("chunk data without CRLF"),
                (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                (Chunk::Trailer, b'\n' | 0) => return bad("bad byte in trailers"),
                (Chunk::Trailer, b' ' | b'\t') if self.line == 0 => {
                    return bad("obsolete line folding in trailers")
                }
                (Chunk::Trailer, _) if self.line >= MAX_TRAILER_LINE => {
                    return bad("trailer line too long")
                }
                (Chunk::Trailer, _) => {
                    self.line += 1;
                    Chunk::Trailer
                }
                (Chunk::TrailerLf, b'\n') if self.line == 0 => Chunk::Done,
                (Chunk::TrailerLf, b'\n') => {
                    self.line = 0;
                    Chunk::Trailer
                }
                (Chunk::TrailerLf, _) => return bad("trailer line without CRLF"),
                (Chunk::Data | Chunk::Done, _) => self.state,
            };
        }
        Ok(ScanResult {
            consumed: i,
            done: self.state == Chunk::Done,
        })
    }
}

/// Appends one chunk holding `data` (nothing for empty data: that would end the body).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::super::test_util::Rng;
    use super::*;

    const BODY: &[u8] =
        b"5;name=v;q=\"x y\"\r\nhello\r\n6 ; e\r\n world\r\n00\r\nX-T: 1\r\nY: 2\r\n\r\nNEXT";
    const BODY_LEN: usize = BODY.len() - 4;

    /// Feeds `BODY` in the given pieces, checking each call's accounting; returns the
    /// decoded payload.
    fn feed(pieces: &[&[u8]]) -> Vec<u8> {
        let (mut scanner, mut decoder) = (ChunkedScanner::new(), ChunkedScanner::new());
        let (mut at, mut out) = (0, Vec::new());
        for piece in pieces {
            let s = scanner.scan(piece).unwrap();
            let d = decoder.decode(piece, &mut out).unwrap();
            assert_eq!(s, d);
            if at + piece.len() <= BODY_LEN {
                assert_eq!(s.consumed, piece.len());
                assert_eq!(s.done, at + piece.len() == BODY_LEN, "at {at}");
            } else {
                assert_eq!(s.consumed, BODY_LEN.saturating_sub(at));
                assert!(s.done);
            }
            at += piece.len();
        }
        assert!(scanner.is_done() && decoder.is_done());
        out
    }

    #[test]
    fn chunked_scanner_ends_exactly_at_every_split() {
        for split in 0..=BODY.len() {
            let out = feed(&[&BODY[..split], &BODY[split..]]);
            assert_eq!(out, b"hello world", "split at {split}");
        }
    }

    #[test]
    fn chunked_scanner_takes_one_byte_at_a_time() {
        let pieces: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(feed(&pieces), b"hello world");
    }

    #[test]
    fn chunked_scanner_takes_random_splits() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < BODY.len() {
                let n = rng.below(8).min(BODY.len() - at);
                pieces.push(&BODY[at..at + n]);
                at += n;
            }
            assert_eq!(feed(&pieces), b"hello world");
        }
    }

    #[test]
    fn chunked_scanner_stops_when_done() {
        let mut s = ChunkedScanner::new();
        let r = s.scan(b"0\r\n\r\nGET / HTTP/1.1").unwrap();
        assert_eq!(
            r,
            ScanResult {
                consumed: 5,
                done: true
            }
        );
        assert_eq!(
            s.scan(b"more").unwrap(),
            ScanResult {
                consumed: 0,
                done: true
            }
        );
        assert_eq!(
            s.scan(b"").unwrap(),
            ScanResult {
                consumed: 0,
                done: true
            }
        );
        let mut s = ChunkedScanner::new();
        assert_eq!(
            s.scan(b"").unwrap(),
            ScanResult {
                consumed: 0,
                done: false
            }
        );
        // Large sizes are fine as long as they fit in 64 bits.
        let mut s = ChunkedScanner::new();
        assert_eq!(s.scan(b"ffffffffffffffff\r\nab").unwrap().consumed, 20);
        assert!(!s.is_done());
    }

    #[test]
    fn chunked_scanner_refuses_bad_input() {
        let cases: &[(&str, &[u8])] = &[
            ("overflow", b"10000000000000000\r\n"),
            ("overflow by digits", b"fffffffffffffffff"),
            ("bare LF after size", b"5\nhello\r\n"),
            ("bare LF after data", b"5\r\nhello\n0\r\n\r\n"),
            ("CR only after data", b"5\r\nhello\rX"),
            ("bare LF ending the body", b"0\r\n\n"),
            ("bare LF after a trailer", b"0\r\nX: y\n\r\n"),
            ("bare CR in trailer", b"0\r\nX: y\rz\r\n\r\n"),
            ("bad blank line", b"0\r\n\r\r"),
            ("obs-fold in trailers", b"0\r\nX: y\r\n z\r\n\r\n"),
            ("data longer than size", b"5\r\nhelloX"),
            ("no size", b"\r\n"),
            ("bare LF for size", b"\n"),
            ("not hex", b"g\r\n"),
            ("0x prefix", b"0x5\r\n"),
            ("sign", b"+5\r\n"),
            ("leading space", b" 5\r\n"),
            ("space inside the size", b"1 2\r\n"),
            ("extension without a semicolon", b"5 x\r\n"),
            ("bare LF in extension", b"5;a\nhello"),
            ("NUL in extension", b"5;a\0\r\n"),
        ];
        for (what, raw) in cases {
            let got = ChunkedScanner::new().scan(raw);
            assert!(matches!(got, Err(HeadError::Bad(_))), "{what}: {got:?}");
            // Split before the last byte, the error still comes.
            let mut s = ChunkedScanner::new();
            let (a, b) = raw.split_at(raw.len() - 1);
            let got = s.scan(a).and_then(|_| s.scan(b));
            assert!(got.is_err(), "{what} split");
        }
    }

    #[test]
    fn chunk_size_lines_are_limited_to_1024_bytes() {
        let line = |len: usize| {
            let mut l = b"1;".to_vec();
            l.resize(len, b'e');
            l.extend_from_slice(b"\r\nx\r\n");
            l
        };
        assert!(ChunkedScanner::new().scan(&line(MAX_CHUNK_LINE)).is_ok());
        assert!(ChunkedScanner::new()
            .scan(&line(MAX_CHUNK_LINE + 1))
            .is_err());
        // Leading zeros count too.
        let mut zeros = vec![b'0'; MAX_CHUNK_LINE + 1];
        zeros.extend_from_slice(b"1\r\n");
        assert!(ChunkedScanner::new().scan(&zeros).is_err());
        let mut zeros = vec![b'0'; MAX_CHUNK_LINE - 1];
        zeros.extend_from_slice(b"1\r\n");
        assert!(ChunkedScanner::new().scan(&zeros).is_ok());
    }

    #[test]
    fn encoded_chunks_decode_back() {
        let mut body = Vec::new();
        encode_chunk(b"", &mut body);
        assert!(body.is_empty(), "an empty chunk would end the body");
        let big = vec![b'q'; 300];
        encode_chunk(b"abc", &mut body);
        encode_chunk(&big, &mut body);
        body.extend_from_slice(LAST_CHUNK);
        assert!(body.starts_with(b"3\r\nabc\r\n12c\r\nqq"));
        let mut out = Vec::new();
        let r = ChunkedScanner::new().decode(&body, &mut out).unwrap();
        assert_eq!(
            r,
            ScanResult {
                consumed: body.len(),
                done: true
            }
        );
        assert_eq!(out.len(), 303);
        assert_eq!(&out[..3], b"abc");
    }
}
