//! A transaction with an origin (`Phase::Exchange`): the request sent, its body pumped
//! to the origin, the response head read and decided on ([`on_response_head`], a pure
//! function), the body relayed to the client, and the end, whole or failed. Runs on the
//! session's ET_NET thread.

use super::super::codec::{
    self, BodyFraming, ChunkedScanner, ForwardRequest, ForwardResponse, HeadError, Method,
    RequestHead, ResponseHead,
};
use super::super::parent::ParentRoute;
use super::super::shared::{OriginSlot, OriginWaiter};
use super::state::{keep_spare, take_spare};
use super::store::{CacheTx, HeadUse, ResponseEffect};
use super::{Counted, Pending, Phase, Session, BUF_LIMIT};
use crate::error::{Error, ErrorKind, Retry, Side};
use iocore::EThread;
use std::time::Instant;

/// Bytes of the fills' read-ahead budget a session leases at a time (`origin_room`).
const READ_AHEAD_STEP: usize = 1 << 20;

/// How much of a message body is left.
pub(super) enum Body {
    Done,
    Length(u64),
    Chunked(Box<ChunkedScanner>),
    UntilClose,
}

impl Body {
    pub(super) fn from(f: BodyFraming) -> Body {
        match f {
            BodyFraming::None | BodyFraming::Length(0) => Body::Done,
            BodyFraming::Length(n) => Body::Length(n),
            BodyFraming::Chunked => Body::Chunked(Box::default()),
            BodyFraming::UntilClose => Body::UntilClose,
        }
    }

    pub(super) fn done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many bytes of `input` belong to the body; becomes Done at its end.
    fn take(&mut self, input: &[u8]) -> Result<usize, HeadError> {
        self.take_into(input, None)
    }

    /// As [`Body::take`]; with `dechunked`, a chunked body's payload (its coding removed)
    /// is appended there in the same pass.
    fn take_into(
        &mut self,
        input: &[u8],
        dechunked: Option<&mut Vec<u8>>,
    ) -> Result<usize, HeadError> {
        let (n, done) = match self {
            Body::Done => (0, true),
            Body::Length(left) => {
                let k = (*left).min(input.len() as u64);
                *left -= k;
                (k as usize, *left == 0)
            }
            Body::Chunked(s) => {
                let r = match dechunked {
                    Some(out) => s.decode(input, out)?,
                    None => s.scan(input)?,
                };
                (r.consumed, r.done)
            }
            Body::UntilClose => (input.len(), false),
        };
        if done {
            *self = Body::Done;
        }
        Ok(n)
    }
}

/// The transaction with an origin.
pub(super) struct Tx {
    /// The request's method, as far as response framing cares.
    pub(super) method: Method,
    pub(super) req_body: Body,
    pub(super) resp_body: Option<Body>,
    pub(super) client_keep_alive: bool,
    pub(super) origin_keep_alive: bool,
    /// The client spoke HTTP/1.0: it gets no 1xx responses and no chunked coding.
    client_http10: bool,
    /// The response body's chunked coding is removed for an HTTP/1.0 client, which then
    /// reads the body up to the close.
    dechunk: bool,
    /// The response's body goes nowhere: the client was answered from the cache in its
    /// place (`stale-if-error`), or will be once it is stored (`HeadUse::Withheld`); it
    /// is read to keep the origin connection usable.
    pub(super) discard: bool,
    /// A reused origin connection failed before answering: resend this once on a new one.
    pub(super) retry: Option<Vec<u8>>,
    /// The request has a body to stream (`Session::charge_upload` keeps its timers).
    pub(super) uploads: bool,
    /// The origin answered before the request body was whole, and the rest of it was
    /// left unread: the close drains it rather than reset the client's connection
    /// under its unread answer (RFC 9112 §9.6).
    body_left: bool,
    /// The origin is spoken to over TLS, with this name (`https://` remap targets).
    pub(super) tls: Option<rustls::pki_types::ServerName<'static>>,
    /// What the cache has to do with this transaction.
    /// Boxed: a `Tx` sits inline in every session, idle or not.
    pub(super) cache: Option<Box<CacheTx>>,
    /// Counts this transaction in flight until it ends.
    active: Counted,
    /// Its place under `per_server.connection.max`, once it has one (None: no limit).
    pub(super) slot: Option<OriginSlot>,
    /// While it waits for that place: its turn, its unit of `current_origin_queue`, and
    /// since when. Boxed: rare, and a `Tx` sits inline in every session.
    pub(super) queued: Option<Box<(OriginWaiter, Counted, Instant)>>,
    /// Its way through its `[[parent]]` rule's parents, when it has one (`parent.rs`).
    pub(super) parent: Option<Box<ParentRoute>>,
    /// Sweeps (`mod.rs`, every 200 ms) that found it waiting for its origin (the
    /// response head, or more body) with the client's socket unwatched: at [`WATCH_CLIENT_AFTER`] the client is watched,
    /// so that one who resets meanwhile is noticed.
    pub(super) waited: u8,
}

/// Sweeps of waiting for the origin (about a second) after which a client's socket
/// is watched while only the origin is awaited: a fast origin's answer costs no
/// epoll_ctl, a silent one's client can still be seen to leave.
pub(super) const WATCH_CLIENT_AFTER: u8 = 5;

impl Tx {
    /// The TLS the connection for this transaction speaks: the origin's, but none to a
    /// parent that is a proxy, which is asked in plain HTTP for the `https://` URL.
    pub(super) fn wire_tls(&self) -> Option<&rustls::pki_types::ServerName<'static>> {
        let to_proxy = self
            .parent
            .as_deref()
            .is_some_and(|p| p.on_parent() && p.parent_is_proxy());
        self.tls.as_ref().filter(|_| !to_proxy)
    }

    /// Whether the client reads the response body to the close: an HTTP/1.0 client of
    /// a chunked body (decoded for it), or any client of a close-delimited one.
    fn client_reads_to_close(&self) -> bool {
        self.dechunk || matches!(self.resp_body, Some(Body::UntilClose))
    }

    /// A transaction for `head`, about to be sent; `active` counts it in flight.
    fn new(head: &RequestHead, client_keep_alive: bool, active: Counted) -> Tx {
        let req_body = Body::from(head.body());
        Tx {
            method: codec::framing_method(head.method()),
            uploads: !req_body.done(),
            body_left: false,
            req_body,
            resp_body: None,
            client_keep_alive,
            origin_keep_alive: true,
            client_http10: head.minor_version == 0,
            dechunk: false,
            discard: false,
            retry: None,
            tls: None,
            cache: None,
            active,
            slot: None,
            queued: None,
            parent: None,
            waited: 0,
        }
    }
}

/// The absolute form of a request's URL, for a parent that is a proxy (RFC 9112
/// §3.2.2): `https://` when its origin speaks TLS, which the parent then does. `OPTIONS
/// *` has an empty path in this form (§3.2.4).
pub(super) fn absolute_form(https: bool, authority: &str, path: &str) -> String {
    let scheme = if https { "https" } else { "http" };
    let path = if path == "*" { "" } else { path };
    format!("{scheme}://{authority}{path}")
}

/// What a response head means for its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeadAction {
    /// An interim (1xx) response an HTTP/1.0 client must not get (RFC 9110 §15.2).
    DropInterim,
    /// An interim response to pass on; the final one follows.
    RelayInterim,
    /// The final response.
    Final(FinalHead),
    /// A response the proxy cannot relay, with why: a 101, when the proxy never
    /// forwards `Upgrade` (RFC 9110 §7.8: a server switches only to a protocol the
    /// request named), or a body in a transfer coding besides chunked for an HTTP/1.0
    /// client (which knows no Transfer-Encoding, RFC 9112 §6.1; the proxy decodes only
    /// chunked). The client gets 502, and the origin connection is closed.
    Invalid(&'static str),
}

/// How a final response head is relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FinalHead {
    /// How its body is delimited, given the request's method.
    pub(super) framing: BodyFraming,
    /// The origin connection can carry another request after this one.
    pub(super) origin_keep_alive: bool,
    /// The client connection stays open after it.
    pub(super) client_keep_alive: bool,
    /// Its chunked coding is removed for an HTTP/1.0 client, which reads to the close.
    pub(super) dechunk: bool,
    /// What it does to the cache.
    pub(super) cache: ResponseEffect,
}

/// Decides what a response head means for `tx`: whether an interim response is passed
/// on, and how a final one is framed, kept alive and used by the cache. Pure.
pub(super) fn on_response_head(tx: &Tx, head: &ResponseHead) -> HeadAction {
    if head.status == 101 {
        return HeadAction::Invalid("a 101 to a request without Upgrade");
    }
    if (100..200).contains(&head.status) {
        return if tx.client_http10 {
            HeadAction::DropInterim
        } else {
            HeadAction::RelayInterim
        };
    }
    let framing = head.body(tx.method);
    if tx.client_http10 && head.transfer_coded() && framing != BodyFraming::None {
        return HeadAction::Invalid("a transfer coding besides chunked for an HTTP/1.0 client");
    }
    let until_close = framing == BodyFraming::UntilClose;
    // HTTP/1.0 has no chunked coding: it gets the payload until the close.
    let dechunk = framing == BodyFraming::Chunked && tx.client_http10;
    HeadAction::Final(FinalHead {
        framing,
        origin_keep_alive: head.keep_alive() && !until_close,
        client_keep_alive: tx.client_keep_alive && !until_close && !dechunk,
        dechunk,
        cache: tx
            .cache
            .as_deref()
            .map_or_else(ResponseEffect::default, |c| c.effect(head.status)),
    })
}

impl Session {
    /// Sends the request to its origin, through the origin's queue when it has a limit.
    pub(super) fn forward(&mut self, t: &mut EThread, pending: Pending, cache: Option<CacheTx>) {
        let shared = self.shared.clone();
        let Pending {
            head,
            mut addr,
            tls,
            host_header,
            path,
            origin_max,
            active,
            mut parent,
        } = pending;
        if let Some(route) = parent.as_deref_mut() {
            match self.first_parent(route) {
                Ok(Some(to)) => addr = to,
                Ok(None) => parent = None, // to the origin, as if there were no rule
                Err(e) => {
                    let keep = head.keep_alive_unread();
                    return self.answer_error(e, keep);
                }
            }
        }
        // A parent that is a proxy gets the absolute form (RFC 9112 §3.2.2).
        let absolute;
        let target = match parent.as_deref() {
            Some(p) if p.parent_is_proxy() => {
                absolute = absolute_form(tls.is_some(), &host_header, &path);
                absolute.as_str()
            }
            _ => path.as_str(),
        };
        let mut out = Vec::with_capacity(512);
        let opts = ForwardRequest {
            path_and_query: target,
            host: &host_header,
            via: &shared.settings.via,
            client_ip: Some(self.peer().ip()),
            keep_alive: true,
            underscores: shared.settings.underscores,
            max_forwards: head.max_forwards().map(|n| n.saturating_sub(1)),
        };
        codec::write_request_head(&head, &mut out, &opts);
        // A revalidation keeps the request without validators, written alike, for a 304
        // that selects no stored response at hand.
        let mut cache = cache;
        if let Some(c) = cache.as_mut() {
            if let Some(bare) = c.unconditional.take() {
                let mut refetch = Vec::with_capacity(out.len());
                codec::write_request_head(&bare, &mut refetch, &opts);
                c.refetch = Some(refetch);
            }
        }
        let client_keep_alive = head.keep_alive() && !shared.draining();
        let mut tx = Tx::new(&head, client_keep_alive, self.in_flight(active));
        // A copy to send again if the connection fails before any answer: only of a
        // bodiless (or wholly sent) request whose method is idempotent; a POST the
        // origin may have acted on is never sent twice (RFC 9112 §9.3.1).
        tx.retry = (tx.req_body.done() && head.idempotent()).then(|| out.clone());
        let on_parent = parent.is_some();
        tx.parent = parent;
        tx.tls = tls;
        tx.cache = cache.map(|mut c| {
            c.request.get_or_insert(head);
            Box::new(c)
        });
        self.out_o = out;
        self.tx = Some(tx);
        self.phase = Phase::Exchange;
        self.log_target(addr, on_parent);
        self.admit(t, addr, origin_max);
    }

    /// The transaction's step: the connect, the request body, the response.
    pub(super) fn exchange(&mut self, t: &mut EThread) -> bool {
        if self.alone.is_some() && !self.still_filling() {
            self.dead = true; // a background fill whose capture ended (too large)
            return true;
        }
        if self.client.reset && self.alone.is_none() && self.tx.is_some() {
            // The client reset its connection: nobody is left to answer. Logged as
            // aborted (status 000 while its request waited for the origin); the origin
            // connection, mid-transaction, is closed, unless the response being stored
            // goes on without the client (`fill_alone`). Acted on as soon as epoll tells
            // of it, not at the next write, which a stalled origin might hold off.
            if let Some(l) = self.log_req.as_deref_mut() {
                l.aborted = true;
            }
            self.dead = true;
            return true;
        }
        let mut progress = match self.finish_connect() {
            Ok(p) => p,
            Err(e) => {
                if !self.parent_failover(t, &e) {
                    self.fail_tx(e);
                }
                return true;
            }
        };
        if !self.origin.as_ref().is_some_and(|o| o.connected) {
            return progress;
        }
        progress |= self.pump_request_body();
        if self.dead || !matches!(self.phase, Phase::Exchange) {
            return true;
        }
        progress |= self.pump_response(t);
        progress
    }

    /// Client → origin body bytes, bounded.
    fn pump_request_body(&mut self) -> bool {
        let Some(tx) = self.tx.as_mut() else {
            return false;
        };
        if tx.req_body.done() {
            return false;
        }
        let mut progress = false;
        if !self.inbuf.is_empty() && self.out_o.len() < BUF_LIMIT {
            let taken = match &mut tx.req_body {
                // A chunked body goes on in chunks of our own: its payload, then a last
                // chunk without trailers. Chunk extensions and trailer fields (where a
                // framing field could hide) never reach the origin.
                Body::Chunked(_) => {
                    let mut payload = Vec::new();
                    tx.req_body
                        .take_into(&self.inbuf, Some(&mut payload))
                        .inspect(|_| {
                            codec::encode_chunk(&payload, &mut self.out_o);
                            if tx.req_body.done() {
                                self.out_o.extend_from_slice(codec::LAST_CHUNK);
                            }
                        })
                }
                _ => tx.req_body.take(&self.inbuf).inspect(|n| {
                    self.out_o.extend_from_slice(&self.inbuf[..*n]);
                }),
            };
            match taken {
                Ok(n) => {
                    self.inbuf.drain(..n);
                    progress = n > 0 || tx.req_body.done();
                }
                Err(e) => {
                    self.fail_tx(Error::from(e));
                    return true;
                }
            }
        }
        if self.inbuf.is_empty() && !tx.req_body.done() && self.out_o.len() < BUF_LIMIT {
            progress |= self.read_client(BUF_LIMIT);
            if self.client.eof && self.inbuf.is_empty() {
                // The client gave up mid-body.
                self.dead = true;
                return true;
            }
        }
        if progress {
            self.charge_upload();
        }
        progress
    }

    /// While a request body streams to the origin, the inactivity timer belongs to
    /// the side the session waits for: the client while everything it sent has gone on
    /// (`transaction_no_activity_timeout_in`, then 408), else the origin
    /// (`transaction_no_activity_timeout_out`, then 504). Restarted whenever body bytes
    /// move, so a slow upload is never blamed on the origin.
    pub(super) fn charge_upload(&mut self) {
        let timeouts = &self.shared.settings.timeouts;
        let limit = if self.waits_for_body() {
            timeouts.transaction_no_activity_in
        } else {
            timeouts.transaction_no_activity_out
        };
        self.deadline = Instant::now() + limit;
    }

    /// The exchange waits for the client's request body: all of it that came has gone
    /// to the origin.
    pub(super) fn waits_for_body(&self) -> bool {
        self.out_o.is_empty() && self.tx.as_ref().is_some_and(|tx| !tx.req_body.done())
    }

    /// Origin → client: response head, interim responses, body.
    fn pump_response(&mut self, t: &mut EThread) -> bool {
        let mut progress = self.read_origin();
        let Some(tx) = self.tx.as_ref() else {
            return progress;
        };
        if tx.resp_body.is_none() {
            match self.take_response_head(t) {
                Some(p) => progress |= p,
                None => return true,
            }
        }
        progress | self.relay_response_body(t)
    }

    /// Reads origin bytes while the client's buffer has room (more for a fill, see
    /// [`Session::origin_room`]): true if any (or EOF) came.
    fn read_origin(&mut self) -> bool {
        let Some(o) = self.origin.as_ref() else {
            return false;
        };
        if !o.wire.readable || o.wire.eof {
            return false;
        }
        let room = self.origin_room();
        let Some(o) = self.origin.as_mut() else {
            return false;
        };
        if room == 0 {
            return false;
        }
        match o.wire.read_into(&mut o.inbuf, room) {
            Ok(Some(0)) => {
                o.wire.eof = true;
                true
            }
            Err(_) => {
                o.wire.eof = true;
                o.broken = true;
                true
            }
            Ok(Some(n)) => {
                if let Some(a) = self.alone.as_mut() {
                    a.read += n;
                }
                self.deadline =
                    Instant::now() + self.shared.settings.timeouts.transaction_no_activity_out;
                true
            }
            Ok(None) => false,
        }
    }

    /// How many origin bytes may be read now: what the client's buffer has room for;
    /// past that, while the response is captured for the cache, what the session can
    /// lease of the fills' read-ahead budget, so that a fill (and the requests waiting
    /// for it) goes at the origin's pace rather than at its client's. The capture's own
    /// limit (`max_doc_size`) bounds what one fill holds; the budget, all of them.
    fn origin_room(&mut self) -> usize {
        if let Some(read) = self.alone.as_ref().map(|a| a.read) {
            // A background fill holds all it reads until it is stored: leased too, and
            // ended (as its client was) when the budget is spent.
            if read >= self.read_ahead && !self.lease_read_ahead_step() {
                self.dead = true;
                return 0;
            }
            return (self.read_ahead - read).min(BUF_LIMIT);
        }
        let room = BUF_LIMIT.saturating_sub(self.out_c.len());
        if room > 0 || !self.relaying_capture() {
            return room;
        }
        let beyond = self.out_c.len() - BUF_LIMIT;
        if beyond + READ_AHEAD_STEP > self.read_ahead && !self.lease_read_ahead_step() {
            return 0;
        }
        self.read_ahead.saturating_sub(beyond).min(BUF_LIMIT)
    }

    /// Leases one more step of the fills' read-ahead budget for this session: false
    /// (and counted) when the budget is spent.
    pub(super) fn lease_read_ahead_step(&mut self) -> bool {
        let leased = self.shared.lease_read_ahead(READ_AHEAD_STEP);
        if leased {
            self.read_ahead += READ_AHEAD_STEP;
        }
        leased
    }

    /// Gives back all of the read-ahead budget this session holds.
    pub(super) fn return_read_ahead(&mut self) {
        if self.read_ahead > 0 {
            self.shared
                .return_read_ahead(std::mem::take(&mut self.read_ahead));
        }
    }

    /// Parses and acts on the response head, once it is whole. Some(progress); None:
    /// the transaction took another turn (answered, failed, retried): stop this pass.
    fn take_response_head(&mut self, t: &mut EThread) -> Option<bool> {
        let max_head = self.shared.settings.max_head;
        let (tx, o) = (self.tx.as_mut()?, self.origin.as_mut()?);
        if o.inbuf.len() == o.head_searched && !o.wire.eof {
            // Nothing came since the last look (the pass that sent the request, a turn
            // for the client's side): no head yet, and no close to act on. The request
            // head is read by the same rule (`request.rs`, `read_request`).
            return Some(false);
        }
        let head = match codec::parse_response_from(&o.inbuf, max_head, o.head_searched) {
            Ok(Some((head, len))) => {
                o.inbuf.drain(..len);
                o.head_searched = 0;
                tx.retry = None;
                if let Some(p) = tx.parent.as_deref() {
                    p.succeeded(); // a 5xx too: the parent answered
                }
                head
            }
            Ok(None) if o.wire.eof && o.wire.tls().is_some_and(|l| l.failure().is_some()) => {
                let why = o
                    .wire
                    .tls()
                    .and_then(|l| l.error())
                    .map_or_else(|| "the connection failed".to_string(), |e| e.to_string());
                let name = o
                    .tls_name
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |n| n.to_str().into_owned());
                log::warn!("origin {name} ({}): TLS failed: {why}", o.addr);
                let err = Error::new(ErrorKind::OriginTls).context(format!("{name}: {why}"));
                self.fail_tx(err);
                return None;
            }
            Ok(None) if o.wire.eof => {
                let retry = if o.reused && o.inbuf.is_empty() {
                    Retry::ReusedOnly
                } else {
                    Retry::Never
                };
                self.origin_failed(t, Error::new(ErrorKind::OriginClosed).retry(retry));
                return None;
            }
            Ok(None) => {
                o.head_searched = o.inbuf.len();
                return Some(false);
            }
            Err(e) => {
                let why = match e {
                    HeadError::TooLarge => {
                        format!("head larger than request_header_max_size ({max_head} bytes)")
                    }
                    e => e.to_string(),
                };
                let why = format!("response from {}: {why}", o.addr);
                self.fail_tx(Error::new(ErrorKind::BadResponse).context(why));
                return None;
            }
        };
        let via = &self.shared.settings.via;
        match on_response_head(tx, &head) {
            HeadAction::Invalid(why) => {
                let why = format!("response from {}: {why}", o.addr);
                self.fail_tx(Error::new(ErrorKind::BadResponse).context(why));
                None
            }
            HeadAction::DropInterim => Some(true),
            HeadAction::RelayInterim => {
                let opts = ForwardResponse {
                    via,
                    keep_alive: true,
                    framing_override: None,
                };
                take_spare(&mut self.out_c);
                codec::write_response_head(&head, &mut self.out_c, &opts);
                self.shared.metrics.count_status(head.status);
                Some(true)
            }
            HeadAction::Final(d) => {
                tx.origin_keep_alive = d.origin_keep_alive;
                // A drain (stop, upgrade) that began after the request came: this head
                // already says close. So does an answer that comes before the whole
                // request body: the proxy stops reading it when the response ends
                // (`relay_response_body`), so it closes then (RFC 9112 §9.6).
                let client_keep_alive =
                    d.client_keep_alive && !self.shared.draining() && tx.req_body.done();
                tx.client_keep_alive = client_keep_alive;
                tx.dechunk = d.dechunk;
                tx.resp_body = Some(Body::from(d.framing));
                match self.cache_response_head(&head, d.framing, d.cache) {
                    HeadUse::Relay => {}
                    HeadUse::Answered => return None,
                    HeadUse::Withheld => return Some(true),
                    HeadUse::Resend(request) => {
                        self.resend(t, request, d.origin_keep_alive);
                        return None;
                    }
                }
                self.owe_status(head.status);
                if let Some(l) = self.log_req.as_mut() {
                    l.status = head.status;
                }
                let opts = ForwardResponse {
                    via: &self.shared.settings.via,
                    keep_alive: client_keep_alive,
                    framing_override: d.dechunk.then_some(BodyFraming::UntilClose),
                };
                take_spare(&mut self.out_c);
                codec::write_response_head(&head, &mut self.out_c, &opts);
                Some(true)
            }
        }
    }

    /// Relays response body bytes to the client (and the cache's capture), and ends the
    /// transaction with its body.
    fn relay_response_body(&mut self, t: &mut EThread) -> bool {
        let (Some(tx), Some(o)) = (self.tx.as_mut(), self.origin.as_mut()) else {
            return false;
        };
        let Some(body) = tx.resp_body.as_mut() else {
            return false;
        };
        let mut progress = false;
        if !o.inbuf.is_empty() && !body.done() {
            // An HTTP/1.0 client gets the payload, decoded in the framing pass.
            let dechunked = (tx.dechunk && !tx.discard).then_some(&mut self.out_c);
            match body.take_into(&o.inbuf, dechunked) {
                Ok(n) => {
                    if let Some(c) = tx.cache.as_deref_mut() {
                        c.feed(&o.inbuf[..n]);
                    }
                    if !tx.dechunk && !tx.discard {
                        self.out_c.extend_from_slice(&o.inbuf[..n]);
                    }
                    o.inbuf.drain(..n);
                    progress |= n > 0 || body.done();
                }
                Err(_) => {
                    // Broken framing mid-body: the client cannot trust the rest.
                    tx.client_keep_alive = false;
                    tx.origin_keep_alive = false;
                    o.inbuf.clear();
                    tx.resp_body = Some(Body::Done);
                    self.fail_tx(Error::new(ErrorKind::BadResponse));
                    return true;
                }
            }
        }
        if o.wire.eof && !body.done() {
            if matches!(body, Body::UntilClose) && !o.broken && o.wire.closed_cleanly() {
                *body = Body::Done;
            } else {
                // Truncated by the origin (a reset is no close that ends a body, nor is
                // a TLS origin's FIN without its close_notify, RFC 9112 §9.8): the
                // client gets what came, then the close (or, withheld, the error); not
                // stored.
                self.fail_tx(Error::new(ErrorKind::OriginClosed));
                return true;
            }
        }
        let pending = self.out_c.len() + self.out_body.as_ref().map_or(0, |b| b.rest().len());
        if body.done() && tx.req_body.done() && pending == 0 {
            self.finish_tx(t);
            return true;
        }
        if body.done() && !tx.req_body.done() {
            // The origin answered before reading the whole body: stop here.
            tx.client_keep_alive = false;
            tx.origin_keep_alive = false;
            tx.req_body = Body::Done;
            tx.body_left = true;
            return true;
        }
        if body.done() {
            self.store_ahead_of_client();
        }
        progress
    }

    /// The response is whole from the origin while the client is still taking it:
    /// stored now, so that the requests waiting for this fill need not wait for the
    /// client (it takes the rest from `out_c` as before).
    fn store_ahead_of_client(&mut self) {
        if !self.relaying_capture() {
            return;
        }
        let Some(mut c) = self.tx.as_mut().and_then(|tx| tx.cache.take()) else {
            return;
        };
        self.store_capture(&mut c);
        c.end_fill();
        if let Some(tx) = self.tx.as_mut() {
            tx.cache = Some(c);
        }
    }

    /// The transaction's response is captured for the cache as it is relayed.
    fn relaying_capture(&self) -> bool {
        self.tx
            .as_ref()
            .and_then(|tx| tx.cache.as_deref())
            .is_some_and(CacheTx::relayed_capture)
    }

    /// The transaction ended whole: the cache stores what it captured, the origin
    /// connection stays attached or goes back to the pool, the next request may come.
    fn finish_tx(&mut self, t: &mut EThread) {
        let Some(mut tx) = self.tx.take() else { return };
        if self.alone.is_some() {
            // A background fill, whole: stored, and the session ends with it (its client
            // left, and was logged, before).
            if let Some(mut c) = tx.cache.take() {
                self.store_capture(&mut c);
            }
            drop(tx.active);
            self.end_with_origin(t, false, tx.origin_keep_alive, Instant::now());
            self.dead = true;
            return;
        }
        if let Some(mut c) = tx.cache.take() {
            let obj = self.store_capture(&mut c);
            self.answer_withheld(&c, obj, &mut tx.client_keep_alive);
            // Its fill ends here, before a request pipelined behind it looks the URL up
            // (`after_answer` lets it be read at once): one that stored nothing would
            // otherwise have it wait for the fill of its own connection.
            drop(c);
        }
        drop(tx.active);
        self.shared.metrics.completed_requests.inc();
        if let Some(l) = self.log_req.as_deref() {
            let (status, result) = (l.status, l.result);
            self.log_end(status, result);
        }
        let now = Instant::now();
        let keep_attached = tx.origin_keep_alive && tx.client_keep_alive && !self.shared.draining();
        self.end_with_origin(t, keep_attached, tx.origin_keep_alive, now);
        self.idle_since = now;
        keep_spare(&mut self.out_o);
        // A head that promised keep-alive before a drain began is kept to: the client
        // may send its next request at once, and gets it answered (with a close) in the
        // drain's grace.
        self.after_answer(tx.client_keep_alive, !tx.body_left, now);
    }

    /// The origin side failed with `err`: a bodiless request on a reused connection
    /// the origin had closed goes once more on a fresh one (`Retry::ReusedOnly`), else
    /// the transaction fails.
    fn origin_failed(&mut self, t: &mut EThread, err: Error) {
        let resend = match (err.retry, self.tx.as_mut()) {
            // Cloned, not taken: if the fresh connection fails too, a parent route sends
            // the same copy to the next parent (`parent_failover`).
            (Retry::ReusedOnly, Some(tx)) => tx.retry.clone(),
            _ => None,
        };
        let (Some(req), Some(addr)) = (resend, self.origin.as_ref().map(|o| o.addr)) else {
            if !self.parent_failover(t, &err) {
                self.fail_tx(err);
            }
            return;
        };
        self.release_origin(t, false);
        self.out_o = req;
        if let Err(e) = self.connect_origin(t, addr, false) {
            if !self.parent_failover(t, &e) {
                self.fail_tx(e);
            }
        }
    }

    /// Sends `request` for the transaction again, its response not begun: on the same
    /// origin connection when the answer just read (bodiless) left it open (`reusable`),
    /// else on a new one.
    fn resend(&mut self, t: &mut EThread, request: Vec<u8>, reusable: bool) {
        if let Some(tx) = self.tx.as_mut() {
            tx.resp_body = None;
        }
        let Some(o) = self.origin.as_mut() else {
            return self.fail_tx(Error::new(ErrorKind::OriginClosed));
        };
        o.head_searched = 0;
        self.out_o = request;
        if reusable && o.quiet() {
            self.deadline =
                Instant::now() + self.shared.settings.timeouts.transaction_no_activity_out;
            return;
        }
        let addr = o.addr;
        self.release_origin(t, false);
        if let Err(e) = self.connect_origin(t, addr, false) {
            self.fail_tx(e);
        }
    }

    /// Ends the transaction with `err`'s answer (or, when a response head already went,
    /// by closing after what was sent: a body cut short mid-way, or whose framing broke).
    pub(super) fn fail_tx(&mut self, mut err: Error) {
        let on_parent_proxy = self.tx.as_ref().is_some_and(|tx| {
            (tx.parent.as_deref()).is_some_and(|r| r.on_parent() && r.parent_is_proxy())
        });
        if on_parent_proxy {
            err = err.from_parent();
        }
        log::debug!("{}: {err}", self.peer());
        if self.alone.is_some() {
            self.dead = true; // a background fill that failed: nobody to answer
            return;
        }
        // A response withheld for the cache (`HeadUse::Withheld`) sent the client nothing
        // yet: it gets the error (or the stale object) as if no head had come.
        let head_sent = self.tx.as_ref().is_some_and(|tx| {
            tx.resp_body.is_some() && !tx.cache.as_ref().is_some_and(|c| c.withheld())
        });
        if let Some(o) = self.origin.as_mut() {
            o.wire.eof = true;
        }
        self.out_o.clear();
        let unreachable = err.unreachable();
        if !head_sent && err.side == Side::Origin && self.stale_instead_of(&mut err) {
            return;
        }
        if head_sent {
            self.abort_after_flush();
        } else {
            let cache = (self.tx.as_mut()).and_then(|tx| tx.cache.as_deref_mut());
            if let Some(c) = cache.filter(|_| unreachable) {
                c.unreachable(&err);
            }
            self.tx = None;
            self.answer_error(err, false);
        }
    }

    /// The response cannot complete properly: send what we have, then close; with a
    /// reset when the client reads the body to the close (it cannot tell a cut one from
    /// a whole one by a FIN, RFC 9112 §8).
    fn abort_after_flush(&mut self) {
        let abortive = self.tx.take().is_some_and(|tx| tx.client_reads_to_close());
        if abortive {
            let _ = self.client.wire().reset_on_close();
        }
        self.phase = if abortive {
            Phase::resetting()
        } else {
            Phase::closing(false)
        };
        self.deadline = Instant::now() + self.write_limit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iocore::Registry;

    fn tx(request: &str) -> Tx {
        let (head, _) = codec::parse_request(request.as_bytes(), 8192)
            .unwrap()
            .unwrap();
        let gauge = Registry::new().gauge("t");
        Tx::new(&head, head.keep_alive(), Counted::new(&gauge))
    }

    fn response(raw: &str) -> ResponseHead {
        codec::parse_response(raw.as_bytes(), 8192)
            .unwrap()
            .unwrap()
            .0
    }

    fn final_head(tx: &Tx, raw: &str) -> FinalHead {
        match on_response_head(tx, &response(raw)) {
            HeadAction::Final(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interim_responses_reach_http_1_1_clients_only() {
        let r = "HTTP/1.1 100 Continue\r\n\r\n";
        let t11 = tx("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n");
        let t10 = tx("POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(
            on_response_head(&t11, &response(r)),
            HeadAction::RelayInterim
        );
        assert_eq!(
            on_response_head(&t10, &response(r)),
            HeadAction::DropInterim
        );
        // 101 answers an Upgrade, which the proxy never forwards.
        let up = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        assert!(matches!(
            on_response_head(&t11, &response(up)),
            HeadAction::Invalid(_)
        ));
    }

    #[test]
    fn a_close_delimited_body_ends_both_connections() {
        let t = tx("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let f = final_head(&t, "HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(f.framing, BodyFraming::UntilClose);
        assert!(!f.origin_keep_alive && !f.client_keep_alive && !f.dechunk);
        let f = final_head(&t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        assert!(f.origin_keep_alive && f.client_keep_alive);
        let f = final_head(
            &t,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
        );
        assert!(!f.origin_keep_alive && f.client_keep_alive);
    }

    #[test]
    fn http_1_0_clients_get_chunked_bodies_decoded_until_the_close() {
        let t = tx("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let f = final_head(&t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(f.dechunk && !f.client_keep_alive && f.origin_keep_alive);
        let t = tx("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let f = final_head(&t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(!f.dechunk && f.client_keep_alive);
    }

    #[test]
    fn a_head_request_frames_no_body() {
        let t = tx("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
        let f = final_head(&t, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(f.framing, BodyFraming::None);
    }

    #[test]
    fn only_successes_to_unsafe_requests_invalidate_and_only_304s_to_revalidations_refresh() {
        let mut t = tx("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(
            !final_head(&t, ok).cache.invalidates,
            "no cache part, no invalidation"
        );
        let mut c = CacheTx::new("k".into(), None, None, Default::default());
        c.invalidate = true;
        t.cache = Some(Box::new(c));
        assert!(final_head(&t, ok).cache.invalidates);
        let error = "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
        assert!(!final_head(&t, error).cache.invalidates);
        let not_modified = "HTTP/1.1 304 Not Modified\r\n\r\n";
        assert!(
            !final_head(&t, not_modified).cache.refreshes,
            "nothing stale to refresh"
        );
    }
}
