//! Answers from a stored response (RFC 9110 §13, §14 on top of RFC 9111): the client's
//! preconditions (304, 412), its range (206, 416), HEAD (the head of a stored GET), or
//! the whole object. A body is never copied to be served when it is large: it streams
//! from the stored value, shared with the RAM cache ([`BodySlice`]). Runs on the
//! session's ET_NET thread.

use super::super::caching::{self, Precondition, RangeAsk, Stored};
use super::super::codec::{self, RequestHead};
use super::log::LogResult;
use super::Session;
use std::sync::Arc;
use std::time::Instant;

/// Bodies up to this size are copied behind their head (one write, and a copy this
/// small costs less than a second write); larger ones stream from the stored value.
const INLINE_BODY: usize = 16 * 1024;

/// Bytes of a stored value still to send to the client, after `out_c`.
pub(super) struct BodySlice {
    bytes: Arc<[u8]>,
    at: usize,
    end: usize,
}

impl BodySlice {
    /// What is left to send.
    pub(super) fn rest(&self) -> &[u8] {
        &self.bytes[self.at..self.end]
    }

    /// `n` more bytes went; true when none are left.
    pub(super) fn advance(&mut self, n: usize) -> bool {
        self.at = (self.at + n).min(self.end);
        self.at == self.end
    }
}

impl Session {
    /// Answers `req` from `obj` (fresh, or stale as allowed), as a whole request.
    pub(super) fn serve_hit(
        &mut self,
        req: &RequestHead,
        obj: &Stored,
        now: u64,
        result: LogResult,
    ) {
        // A body (a GET may have one) is not read: the connection closes after the
        // answer, as after a local response, and its bytes are never taken as a request.
        let keep = req.keep_alive_unread() && !self.shared.draining();
        let at = self.queued_end();
        let status = self.answer_from(req, obj, now, keep);
        self.owe_status_from(at, status);
        self.shared.metrics.completed_requests.inc();
        self.log_end(status, result);
        // An unread body is drained by the lingering close.
        self.after_answer(keep, !req.has_body(), Instant::now());
    }

    /// Answers `req` from `obj` in the middle of an exchange (after a 304 refreshed it,
    /// in place of a server error, or once a new response to a revalidation is stored),
    /// keeping the connection when `keep`: the exchange ends as the origin's response
    /// does.
    pub(super) fn serve_answer(&mut self, req: &RequestHead, obj: &Stored, now: u64, keep: bool) {
        let at = self.queued_end();
        let status = self.answer_from(req, obj, now, keep);
        self.owe_status_from(at, status);
        if let Some(l) = self.log_req.as_mut() {
            l.status = status;
        }
    }

    /// Writes the answer `obj` gives `req` at `now`: 304 or 412 by the preconditions,
    /// 206 or 416 by the range, the head alone for HEAD, else the whole object. Returns
    /// its status.
    fn answer_from(&mut self, req: &RequestHead, obj: &Stored, now: u64, keep: bool) -> u16 {
        let via = &self.shared.settings.via;
        let m = &self.shared.metrics;
        let head_only = req.method() == "HEAD";
        let v = obj.validators_held();
        // Preconditions apply to what would be a 2xx (RFC 9110 §13.2.1).
        let pre = match obj.status {
            200..=299 => caching::evaluate(req, &v, now),
            _ => Precondition::Proceed,
        };
        match pre {
            Precondition::NotModified => {
                m.cache_not_modified.inc();
                obj.write_not_modified(&mut self.out_c, via, keep, now);
                return 304;
            }
            Precondition::Failed => {
                m.cache_not_modified.inc();
                codec::simple_response(
                    412,
                    "precondition failed",
                    head_only,
                    keep,
                    &[],
                    &mut self.out_c,
                );
                return 412;
            }
            Precondition::Proceed => {}
        }
        let len = obj.body.len() as u64;
        let ask = match (obj.status, head_only) {
            (200, false) => caching::range(req, len, &v),
            _ => RangeAsk::Whole,
        };
        let (status, part) = match ask {
            RangeAsk::Whole => {
                obj.write_hit(&mut self.out_c, via, keep, now);
                (obj.status, (0, len))
            }
            RangeAsk::Part(start, end) => {
                m.cache_partial.inc();
                obj.write_partial(&mut self.out_c, (start, end), via, keep, now);
                (206, (start, end))
            }
            RangeAsk::Unsatisfiable => {
                m.cache_partial.inc();
                obj.write_unsatisfiable(&mut self.out_c, via, keep, now);
                return 416;
            }
        };
        if !head_only {
            self.send_body(obj, part);
        }
        status
    }

    /// Queues bytes `start..end` of `obj`'s body behind the head in `out_c`: copied
    /// when small, else streamed from the stored value.
    fn send_body(&mut self, obj: &Stored, (start, end): (u64, u64)) {
        let (bytes, at) = obj.body.shared();
        let (start, end) = (at + start as usize, at + end as usize);
        if end - start <= INLINE_BODY {
            self.out_c.extend_from_slice(&bytes[start..end]);
        } else {
            self.out_body = Some(BodySlice {
                bytes: bytes.clone(),
                at: start,
                end,
            });
        }
    }
}
