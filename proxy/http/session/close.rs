//! The end of requests and connections: what follows an answer (the next request, or
//! the close), the lingering close (`Phase::Closing`), and what each phase does when its
//! deadline passes. Runs on the session's ET_NET thread.

use super::exchange::Body;
use super::state::keep_spare;
use super::store::CacheTx;
use super::{Alone, Counted, Phase, Session, LINGER};
use crate::error::{Error, ErrorKind};
use crate::tls::Failure;
use iocore::EThread;
use std::io;
use std::time::Instant;

impl Session {
    /// What follows a request answered whole: the next request on a kept connection, or
    /// the close. With the request `read_whole` and nothing after it, the close comes as
    /// soon as the answer is out, with no lingering drain (4 recvfrom, a shutdown and an
    /// epoll_ctl fewer per connection-per-request client).
    pub(super) fn after_answer(&mut self, keep: bool, read_whole: bool, now: Instant) {
        if keep {
            self.idle_since = now;
            self.phase = Phase::ReadRequest;
            self.deadline = now + self.shared.settings.timeouts.keep_alive_in;
        } else {
            self.phase = Phase::closing(read_whole && self.inbuf.is_empty());
            self.deadline = now + self.write_limit();
        }
    }

    /// Flushes our last bytes (the client's write deadline moving on while it takes
    /// them), then half-closes and drains what the client still sends (so a late
    /// request byte does not turn our close into a reset), until its EOF or LINGER.
    pub(super) fn closing(&mut self) -> bool {
        if self.client_pending() > 0 || self.client.tls_pending() {
            return false; // flush_client runs first and will bring us back
        }
        let Phase::Closing { quick, shut, reset } = &mut self.phase else {
            return false;
        };
        if *quick {
            // A TLS client is told the end before the close (RFC 8446 §6.1): its last
            // bytes may have gone before it was known they were the last (a body that
            // ended with its origin's close). Not before a reset: a body cut short
            // must not look whole.
            if !*reset && self.client.owes_close_notify() {
                self.client.shutdown_write();
                return true; // back here once the close_notify is out
            }
            self.dead = true;
            return true;
        }
        if !*shut {
            // Our last bytes are out: the drain has LINGER from now.
            self.client.shutdown_write();
            *shut = true;
            self.deadline = Instant::now() + LINGER;
            return true;
        }
        if self.client.eof {
            self.dead = true;
            return true;
        }
        let mut sink = [0u8; 4096];
        match self.client.wire().recv(&mut sink) {
            Ok(0) => {
                self.client.eof = true;
                true
            }
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.client.readable = false;
                false
            }
            Err(_) => {
                self.dead = true;
                true
            }
        }
    }

    /// The client left (the session is dead) in the middle of a response being
    /// captured for the cache: unless too little of it had come
    /// (`http.background_fill_completed_threshold`), the session lives on without its
    /// client, reading the response from its origin and storing it (a background fill,
    /// as Traffic Server's), so that the origin's work is not lost and the requests
    /// waiting for this fill are answered from the cache rather than one of them
    /// fetching it again. The client's log line is written now, aborted with what it
    /// took, and it no longer counts in `current_client_connections`; its socket (dead:
    /// reset, or failing writes) is closed when the fill ends. The origin's silence
    /// (`transaction_no_activity_timeout_out`) and `max_doc_size` bound the fill, and
    /// what all background fills read is leased from `cache.fill_read_ahead`, since they
    /// hold it until stored: one that finds the budget spent ends there.
    pub(super) fn fill_alone(&mut self, t: &mut EThread) {
        if !self.may_fill_alone() {
            return;
        }
        self.return_read_ahead();
        if !self.lease_read_ahead_step() {
            return; // no budget to hold what it would read: it ends with its client
        }
        self.log_unfinished();
        let m = &self.shared.metrics;
        m.background_fills.inc();
        m.current_client_connections.dec(); // gone, whatever holds its socket
        self.alone = Some(Alone {
            _counted: Counted::new(&m.current_background_fills),
            read: 0,
        });
        self.dead = false;
        self.status_owed = None;
        keep_spare(&mut self.out_c);
        self.out_body = None;
        self.client.unwatch(t);
        (self.client.readable, self.client.writable) = (false, false);
        self.client.eof = true;
        if let Some(tx) = self.tx.as_mut() {
            tx.discard = true;
            tx.client_keep_alive = false;
        }
        ::log::debug!(
            "{}: client left, its response is stored without it",
            self.peer()
        );
        self.drive(t);
    }

    /// Whether the session may go on as a background fill: mid-response, the request
    /// sent whole, the origin still there, the response captured (enough of it), and
    /// no stop or upgrade draining the process.
    fn may_fill_alone(&self) -> bool {
        if !matches!(self.phase, Phase::Exchange) || self.shared.draining() {
            return false;
        }
        let Some(tx) = self.tx.as_ref() else {
            return false;
        };
        let (Some(body), Some(c)) = (tx.resp_body.as_ref(), tx.cache.as_deref()) else {
            return false;
        };
        let origin_there = (self.origin.as_ref()).is_some_and(|o| o.connected && !o.broken);
        let left = match body {
            Body::Length(left) => Some(*left),
            _ => None,
        };
        origin_there && !body.done() && tx.req_body.done() && c.outlives_client(left)
    }

    /// A background fill still has a response to capture.
    pub(super) fn still_filling(&self) -> bool {
        (self.tx.as_ref())
            .and_then(|tx| tx.cache.as_deref())
            .is_some_and(CacheTx::capturing)
    }

    /// Whether the transaction's response body has begun and not ended.
    fn origin_owes_body(&self) -> bool {
        let body = self.tx.as_ref().and_then(|tx| tx.resp_body.as_ref());
        body.is_some_and(|b| !b.done())
    }

    /// The deadline passed: each phase blames the side it waits for. `idle_drain`: a
    /// stop closes idle connections.
    pub(super) fn on_timeout(&mut self, t: &mut EThread, idle_drain: bool) {
        if self.pp_pending && matches!(self.phase, Phase::ReadRequest) {
            // Before the PROXY header, and before any TLS (it comes first).
            return self.proxy_header_timed_out();
        }
        if self.client.handshaking() && !idle_drain {
            // A TLS handshake that stalled: closed, and counted (not a connection that
            // sent no byte: no attempt, as on a `pp` port).
            self.client.handshake_failed(Failure::Timeout);
            self.dead = true;
            return;
        }
        match self.phase {
            Phase::ReadRequest if self.inbuf.is_empty() || idle_drain => {
                // Idle: closed, with a TLS client told so first (RFC 8446 §6.1; best
                // effort, the socket of an idle connection has room).
                if self.client.owes_close_notify() {
                    self.client.shutdown_write();
                }
                self.dead = true;
            }
            Phase::ReadRequest => {
                // Part of a head came: a request, answered, as a head that fails to parse
                // is (incoming and completed agree).
                self.shared.metrics.incoming_requests.inc();
                self.head_only = false;
                self.answer_error(Error::new(ErrorKind::RequestTimeout), false)
            }
            Phase::Exchange => {
                let connected = self.origin.as_ref().is_some_and(|o| o.connected);
                let answered = self.tx.as_ref().is_some_and(|tx| tx.resp_body.is_some());
                if !connected {
                    let e = Error::new(ErrorKind::ConnectTimeout);
                    if !self.parent_failover(t, &e) {
                        self.fail_tx(e);
                    }
                } else if self.waits_for_body() {
                    // The client went silent mid-body: its fault, not the origin's (an
                    // answered one is logged as aborted when the session ends).
                    if answered {
                        self.dead = true;
                    } else {
                        self.fail_tx(Error::new(ErrorKind::BodyTimeout));
                    }
                } else if !answered {
                    // A parent that took the request and fell silent fails as one that
                    // refused it: counted against its health, and a request that can go
                    // again goes to the next parent. An origin silent in its TLS
                    // handshake failed it.
                    if let Some(o) = self.origin.as_mut() {
                        o.wire.handshake_failed(Failure::Timeout);
                    }
                    let e = Error::new(ErrorKind::OriginTimeout);
                    if !self.parent_failover(t, &e) {
                        self.fail_tx(e);
                    }
                } else if self.origin_owes_body() {
                    // The origin fell silent mid-body: the client gets what came, then
                    // a reset where it reads the body to the close (a FIN would tell it
                    // the body was whole, RFC 9112 §8); nothing is stored.
                    self.fail_tx(Error::new(ErrorKind::OriginTimeout));
                } else {
                    self.dead = true;
                }
            }
            Phase::OriginWait => {
                self.shared.metrics.origin_queue_timeouts.inc();
                self.note_queue_wait();
                self.fail_tx(Error::new(ErrorKind::OriginBusy));
            }
            Phase::Resolve(_) => {
                self.phase = Phase::ReadRequest;
                self.answer_error(Error::new(ErrorKind::ResolveTimeout), false);
            }
            Phase::Tunnel(ref p) if p.reply_pending => {
                self.fail_tx(Error::new(ErrorKind::ConnectTimeout));
            }
            // Waited for a fill as long as a connect may take: fetch without it.
            Phase::CacheWait(_) => self.fill_wait_over(t),
            Phase::Tunnel(_) | Phase::Closing { .. } | Phase::CacheRead(_) => self.dead = true,
        }
    }
}
