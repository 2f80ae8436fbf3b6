//! The access log's view of a session: what it notes when a request begins, and the
//! line written when it ends (or when the session ends first). Runs on the session's
//! ET_NET thread; the line goes to the log's own writer thread.

use super::super::codec::RequestHead;
use super::state::keep_spare;
use super::Session;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// How a request was served, as squid's native log format names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogResult {
    /// Went to the origin.
    Miss,
    /// Answered from the cache.
    Hit,
    /// Revalidated with the origin, which answered 304.
    RefreshHit,
    /// Stale, the revalidation failed, and the stale object answered
    /// (`stale-if-error`).
    RefreshFailOld,
    /// A CONNECT tunnel, logged when it ends.
    Tunnel,
    /// Answered by Turnstile itself (errors, stats).
    None,
}

impl LogResult {
    /// The log's word for it; `aborted` when the client or origin went away first.
    pub(crate) fn word(self, aborted: bool) -> &'static str {
        match (self, aborted) {
            (LogResult::Miss, false) => "TCP_MISS",
            (LogResult::Miss, true) => "TCP_MISS_ABORTED",
            (LogResult::Hit, false) => "TCP_HIT",
            (LogResult::Hit, true) => "TCP_HIT_ABORTED",
            (LogResult::RefreshHit, false) => "TCP_REFRESH_HIT",
            (LogResult::RefreshHit, true) => "TCP_REFRESH_HIT_ABORTED",
            (LogResult::RefreshFailOld, false) => "TCP_REFRESH_FAIL_OLD",
            (LogResult::RefreshFailOld, true) => "TCP_REFRESH_FAIL_OLD_ABORTED",
            // A tunnel ends when either side closes: that is how tunnels end.
            (LogResult::Tunnel, _) => "TCP_TUNNEL",
            (LogResult::None, false) => "NONE",
            (LogResult::None, true) => "NONE_ABORTED",
        }
    }
}

/// What the access log needs of the request in progress.
pub(super) struct LogReq {
    started: SystemTime,
    at: Instant,
    /// `sent_c + out_c.len()` when it began: its bytes are what the client got beyond.
    mark: u64,
    method: String,
    url: String,
    /// The response status sent, once sent (0 before).
    pub(super) status: u16,
    pub(super) result: LogResult,
    /// The client fell silent or left: logged as aborted even when answered.
    pub(super) aborted: bool,
    /// Where the request goes: logged once a connection to it was made (`reached`),
    /// else `NONE/-` (squid's hierarchy for a request that failed before it went).
    pub(super) origin: Option<SocketAddr>,
    /// `origin` is a parent proxy.
    pub(super) parent: bool,
    /// A connection to `origin` was made (or reused) for the request.
    pub(super) reached: bool,
    /// Where its final answer begins in the client's stream (`sent_c`), once queued:
    /// its status was sent once a byte beyond went (interim 1xx answers go before).
    pub(super) answer_at: Option<u64>,
}

impl Session {
    /// The request in progress goes to `addr` (a parent when `parent`): logged as its
    /// hierarchy once a connection to it is made ([`Session::log_reached`]).
    pub(super) fn log_target(&mut self, addr: SocketAddr, parent: bool) {
        if let Some(l) = self.log_req.as_mut() {
            (l.origin, l.parent, l.reached) = (Some(addr), parent, false);
        }
    }

    /// A connection to the request's target was made, or taken from the pool.
    pub(super) fn log_reached(&mut self) {
        if let Some(l) = self.log_req.as_mut() {
            l.reached = true;
        }
    }

    /// Notes what the access log will need of `head`'s request.
    pub(super) fn log_begin(&mut self, head: &RequestHead) {
        let target = head.target();
        let url = if head.is_absolute_form() || head.method() == "CONNECT" {
            target.to_string()
        } else {
            let host = head.header("host").map(String::from_utf8_lossy);
            let scheme = if self.client.is_tls() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}{target}", host.as_deref().unwrap_or("-"))
        };
        self.log_req = Some(Box::new(LogReq {
            started: SystemTime::now(),
            at: Instant::now(),
            mark: self.queued_end(),
            method: head.method().to_string(),
            url,
            status: 0,
            result: LogResult::Miss,
            aborted: false,
            origin: None,
            parent: false,
            reached: false,
            answer_at: None,
        }));
    }

    /// Ends the access log line of the request in progress (or of a bare answer to no
    /// request, as a 400 for a head that did not parse): written now if its answer is
    /// out, else once its last byte is ([`Session::logs_sent`]), or as aborted with
    /// what went if the session ends first. A hit's or a local answer's is so written
    /// with the bytes the client took, not those queued.
    pub(super) fn log_end(&mut self, status: u16, result: LogResult) {
        let end = self.queued_end();
        match self.log_req.take() {
            Some(req) if end > self.sent_c && self.shared.access_log().is_some() => {
                self.logs_owed.push_back(OwedLog {
                    end,
                    req,
                    status,
                    result,
                });
            }
            req => {
                let word = result.word(req.as_ref().is_some_and(|l| l.aborted));
                self.write_log(req.as_deref(), word, status, end);
            }
        }
    }

    /// Writes the lines owed for answers the client has now taken whole.
    pub(super) fn logs_sent(&mut self) {
        while self.logs_owed.front().is_some_and(|o| o.end <= self.sent_c) {
            if let Some(o) = self.logs_owed.pop_front() {
                let word = o.result.word(o.req.aborted);
                self.write_log(Some(&o.req), word, o.status, o.end);
            }
        }
    }

    /// Queues an access log line for `l` (None: a bare answer) with `result` and
    /// `status`, its bytes those the client got up to `end` (a count of `sent_c`);
    /// nothing without an access log.
    fn write_log(&self, l: Option<&LogReq>, result: &str, status: u16, end: u64) {
        let Some(log) = self.shared.access_log() else {
            return;
        };
        let (started, elapsed, mark) = match l {
            Some(l) => (l.started, l.at.elapsed(), l.mark),
            None => (SystemTime::now(), Duration::ZERO, self.sent_c),
        };
        log.write(&crate::access_log::Entry {
            started,
            elapsed,
            client: self.peer().ip(),
            result,
            status,
            bytes: end.saturating_sub(mark),
            method: l.map_or("", |l| &l.method),
            url: l.map_or("", |l| &l.url),
            origin: l.and_then(|l| l.origin.filter(|_| l.reached)),
            parent: l.is_some_and(|l| l.parent),
        });
    }
}

/// An access log line whose answer is still queued for the client ([`Session::log_end`]).
pub(super) struct OwedLog {
    /// `sent_c` once its last byte is out.
    end: u64,
    req: Box<LogReq>,
    status: u16,
    result: LogResult,
}

impl Session {
    /// Writes the lines of the requests the client leaves unfinished, as aborted with
    /// what went: answers queued whole that it did not take, and the request in
    /// progress (client or origin gone, a tunnel's end). No status was sent if no byte
    /// of its final answer was.
    pub(super) fn log_unfinished(&mut self) {
        let owed = std::mem::take(&mut self.logs_owed).into_iter();
        let owed = owed.map(|o| (o.req, o.status, o.result));
        let current = self.log_req.take().map(|l| {
            let (status, result) = (l.status, l.result);
            (l, status, result)
        });
        for (req, status, result) in owed.chain(current) {
            let status = if self.sent_c > req.answer_at.unwrap_or(req.mark) {
                status
            } else {
                0
            };
            self.write_log(Some(&req), result.word(true), status, self.sent_c);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.log_unfinished();
        if self.alone.is_none() {
            // (A background fill's client stopped counting when it left: `fill_alone`.)
            self.shared.metrics.current_client_connections.dec();
        }
        self.return_read_ahead();
        keep_spare(&mut self.inbuf);
        keep_spare(&mut self.out_c);
        if self.client.is_tls() {
            self.shared.metrics.tls.current_in.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_read_as_squid_writes_them() {
        assert_eq!(LogResult::Miss.word(false), "TCP_MISS");
        assert_eq!(LogResult::Miss.word(true), "TCP_MISS_ABORTED");
        assert_eq!(LogResult::RefreshHit.word(false), "TCP_REFRESH_HIT");
        assert_eq!(LogResult::Tunnel.word(true), "TCP_TUNNEL");
        assert_eq!(LogResult::None.word(false), "NONE");
    }
}
