//! What the codec's unit tests share: parsing a head that must parse, and a small
//! deterministic generator for random splits and inputs. Test builds only.

use super::{parse_request, parse_response, HeadError, RequestHead, ResponseHead};

/// `raw` parsed as a request with room for 8 KiB of head.
pub(super) fn req(raw: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
    parse_request(raw.as_bytes(), 8192)
}

/// `raw` parsed as a complete, valid request head.
pub(super) fn head(raw: &str) -> RequestHead {
    match req(raw) {
        Ok(Some((h, _))) => h,
        other => panic!("{raw:?} → {other:?}"),
    }
}

/// `raw` parsed as a complete, valid response head.
pub(super) fn resp(raw: &str) -> ResponseHead {
    match parse_response(raw.as_bytes(), 8192) {
        Ok(Some((h, _))) => h,
        other => panic!("{raw:?} → {other:?}"),
    }
}

/// A tiny deterministic generator (xorshift64*), for random splits and inputs.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
