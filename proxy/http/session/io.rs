//! The two sides of a session: each a [`Transport`] (a connection and its readiness),
//! the reads into the session's buffers, the flushes out of them, and the handler that
//! epoll readiness runs. Runs on the session's ET_NET thread.
//!
//! Every read and write of a session goes through `Transport`, over a [`Wire`]: the
//! plain socket today, so that a TLS layer slots in under it without the phases
//! knowing.

use super::batch::drive_batched;
use super::state::{keep_spare, with_state};
use super::{Phase, Session, BUF_LIMIT, READ_CHUNK};
use crate::tls::{Failure, RawIo, TlsLayer, Wrote};
use iocore::{EThread, Interest, NetConnection, Ready, Socket, Token, Verdict};
use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A byte stream a session reads and writes without blocking: the socket calls of
/// [`RawIo`] (which the TLS layer uses too) and its descriptor.
pub(super) trait Wire: AsRawFd + RawIo {}

impl Wire for NetConnection {}
impl Wire for Socket {}

/// What a write did.
pub(super) enum Sent {
    /// This many bytes went out.
    Bytes(usize),
    /// Nothing now: the socket is full (or the call was interrupted).
    Later,
}

/// One side of a session: the connection, its TLS layer when it speaks TLS, its epoll
/// registration, and its readiness (edge-triggered: remembered until a call says
/// otherwise). With TLS, reads give plaintext and writes take it; readiness is the
/// socket's, kept true while the layer holds plaintext not yet read.
pub(super) struct Transport<W> {
    wire: W,
    /// Boxed: a plain connection pays one pointer for it.
    tls: Option<Box<TlsLayer>>,
    token: Option<Token>,
    pub(super) readable: bool,
    pub(super) writable: bool,
    pub(super) eof: bool,
    /// epoll reported the peer's FIN (RDHUP/HUP): read until EOF.
    pub(super) hup: bool,
    /// epoll reported an error on the socket: the peer reset it.
    pub(super) reset: bool,
}

impl<W: Wire> Transport<W> {
    /// A side assumed readable and writable until a call says otherwise.
    pub(super) fn new(wire: W) -> Transport<W> {
        Transport {
            wire,
            tls: None,
            token: None,
            readable: true,
            writable: true,
            eof: false,
            hup: false,
            reset: false,
        }
    }

    /// The connection.
    pub(super) fn wire(&self) -> &W {
        &self.wire
    }

    /// A side that speaks TLS over `wire` through `tls`.
    pub(super) fn with_tls(wire: W, tls: Option<Box<TlsLayer>>) -> Transport<W> {
        let mut t = Transport::new(wire);
        t.tls = tls;
        t
    }

    /// The connection and its TLS layer, handed back (the origin pool keeps them).
    pub(super) fn into_parts(self) -> (W, Option<Token>, Option<Box<TlsLayer>>) {
        (self.wire, self.token, self.tls)
    }

    /// The TLS layer, when this side speaks TLS.
    pub(super) fn tls(&self) -> Option<&TlsLayer> {
        self.tls.as_deref()
    }

    /// Whether this side speaks TLS.
    #[inline]
    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// TLS ciphertext is waiting for the socket (never on a plain side).
    #[inline]
    pub(super) fn tls_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.pending())
    }

    /// Whether the peer's end of stream, once read, was a clean close: always over
    /// plain TCP; over TLS only with its close_notify (a FIN without one may be an
    /// attacker's truncation, RFC 9112 §9.8, RFC 8446 §6.1).
    #[inline]
    pub(super) fn closed_cleanly(&self) -> bool {
        self.tls.as_ref().is_none_or(|t| t.peer_closed())
    }

    /// A TLS side that a close now owes a close_notify (never a plain one).
    #[inline]
    pub(super) fn owes_close_notify(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.owes_close_notify())
    }

    /// A TLS side still in its handshake.
    #[inline]
    pub(super) fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.handshaking())
    }

    /// A TLS side whose handshake the session ends for `why` (its deadline passed):
    /// counted as the failures the layer sees itself are, once.
    pub(super) fn handshake_failed(&mut self, why: Failure) {
        if let Some(tls) = self.tls.as_mut().filter(|t| t.handshaking()) {
            tls.fail(why);
        }
    }

    /// Registered with this thread's epoll as `token`.
    pub(super) fn set_token(&mut self, token: Token) {
        self.token = Some(token);
    }

    /// Whether epoll watches it.
    pub(super) fn watched(&self) -> bool {
        self.token.is_some()
    }

    /// Leaves this thread's epoll.
    pub(super) fn unwatch(&mut self, t: &mut EThread) {
        if let Some(tok) = self.token.take() {
            drop(t.deregister(tok));
        }
    }

    /// Takes in what epoll reported.
    pub(super) fn mark(&mut self, r: Ready) {
        self.readable |= r.is_readable() || r.is_hup() || r.is_error();
        self.hup |= r.is_hup() || r.is_error();
        self.reset |= r.is_error();
        self.writable |= r.is_writable() || r.is_error();
    }

    /// Reads once into `buf` (at most `max` bytes): Some(n) (0 = EOF), None = would
    /// block. A read that would block, or a short one, means the socket is drained
    /// (edge-triggered: the next arrival is a new edge), unless the peer's FIN was
    /// reported, which must still be read as EOF. When `buf` has no room, the read goes
    /// through the thread's scratch buffer and `buf` grows by what arrived (into one of
    /// the thread's spare buffers when it had none), not by a whole read size, so
    /// short-lived and idle connections hold only the bytes they have.
    pub(super) fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        if self.tls.is_some() {
            return self.read_tls(buf, max);
        }
        let want = max.clamp(1, READ_CHUNK);
        let len = buf.len();
        let r = if buf.capacity() - len >= want {
            buf.resize(len + want, 0);
            let r = self.wire.recv(&mut buf[len..]);
            buf.truncate(len + *r.as_ref().unwrap_or(&0));
            r
        } else {
            with_state(|st| st.read_via_scratch(buf, want, |scratch| self.wire.recv(scratch)))
        };
        self.after_read(r, want, true)
    }

    /// What a read of at most `want` bytes that gave `r` says of this side: EOF, or
    /// drained (a short read, when nothing is left below the socket: `drained`, always
    /// so without TLS), or would block. Returns as [`Transport::read_into`].
    #[inline]
    fn after_read(
        &mut self,
        r: io::Result<usize>,
        want: usize,
        drained: bool,
    ) -> io::Result<Option<usize>> {
        match r {
            Ok(0) => {
                self.eof = true;
                Ok(Some(0))
            }
            Ok(n) => {
                if n < want && drained && !self.hup {
                    self.readable = false;
                }
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Transport::read_into`] through the TLS layer: plaintext it holds first, then
    /// the socket. The side stays readable until the socket is drained and the layer
    /// holds no more plaintext.
    #[cold]
    fn read_tls(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(None);
        };
        let want = max.clamp(1, READ_CHUNK);
        let wire = &self.wire;
        let r = with_state(|st| st.read_via_scratch(buf, want, |scratch| tls.read(wire, scratch)));
        if tls.take_blocked() {
            self.writable = false;
        } else if !tls.handshaking() && !self.writable && !tls.pending() {
            // The handshake just ended (or a flush inside the read emptied what was
            // pending): what it held back may go now.
            self.writable = true;
        }
        // A close_notify read with the last plaintext brings no more readiness: the
        // side stays readable, so the next read finds the end of stream.
        let drained = tls.sock_empty() && !tls.peer_closed();
        self.after_read(r, want, drained)
    }

    /// Writes from `buf` (`last`: the close or half-close follows these bytes).
    pub(super) fn send(&mut self, buf: &[u8], last: bool) -> io::Result<Sent> {
        if let Some(tls) = self.tls.as_mut() {
            return match tls.write(&self.wire, buf, last)? {
                Wrote::Taken(n) => {
                    if tls.take_blocked() {
                        self.writable = false;
                    }
                    Ok(Sent::Bytes(n))
                }
                Wrote::Later { .. } => {
                    // A full socket brings a writable edge; a handshake holding the
                    // last write sets `writable` again when it ends (`read_tls`).
                    tls.take_blocked();
                    self.writable = false;
                    Ok(Sent::Later)
                }
            };
        }
        let r = if last {
            self.wire.send_last(buf)
        } else {
            self.wire.send(buf)
        };
        self.plain_sent(r)
    }

    /// What a plain send's result `r` means (a full socket waits for writability).
    fn plain_sent(&mut self, r: io::Result<usize>) -> io::Result<Sent> {
        match r {
            Ok(n) => Ok(Sent::Bytes(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                Ok(Sent::Later)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Sent::Later),
            Err(e) => Err(e),
        }
    }

    /// Half-closes the write side (with TLS: a close_notify, then the FIN once the
    /// ciphertext before it is out).
    pub(super) fn shutdown_write(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.shutdown_write(&self.wire);
            if tls.take_blocked() {
                self.writable = false;
            }
            return;
        }
        // A peer that already left needs no FIN: nothing to do about a failure.
        let _ = self.wire.shutdown_write();
    }
}

impl Transport<NetConnection> {
    /// Writes `head` then `tail` in one call on a plain connection (the two joined, as
    /// `send` would write them); with TLS, `head` alone.
    pub(super) fn send_pair(&mut self, head: &[u8], tail: &[u8], last: bool) -> io::Result<Sent> {
        if self.tls.is_some() {
            return self.send(head, false);
        }
        let r = self.wire.send_pair(head, tail, last);
        self.plain_sent(r)
    }
}

/// Runs a session when one of its sockets is ready.
pub(super) struct SideHandler {
    pub(super) session: Rc<RefCell<Session>>,
    pub(super) origin: bool,
}

impl iocore::IoHandler for SideHandler {
    fn ready(&mut self, t: &mut EThread, _tok: Token, ready: Ready) -> Verdict {
        let mut s = self.session.borrow_mut();
        if self.origin {
            match s.origin.as_mut() {
                Some(o) => o.wire.mark(ready),
                None => return Verdict::Remove,
            }
            if s.origin_idle() && (ready.is_readable() || ready.is_hup() || ready.is_error()) {
                // The attached connection's origin spoke or closed between transactions:
                // unless that edge was stale (the bytes already read), it is unusable,
                // and goes now rather than meet the next request.
                s.release_origin(t, true);
                return Verdict::Keep;
            }
        } else {
            s.client.mark(ready);
        }
        drop(s);
        drive_batched(t, &self.session);
        Verdict::Keep
    }
}

impl Session {
    /// Whether the session needs the client socket's readiness. Not while it waits only
    /// for the origin (the request sent whole, nothing queued for the client): a client
    /// that leaves meanwhile is noticed at the first write to it, as before, since the
    /// exchange reads nothing from it then.
    pub(super) fn waits_on_client(&self) -> bool {
        if self.alone.is_some() {
            return false; // its client left: a background fill
        }
        let origin_only = matches!(self.phase, Phase::Exchange)
            && self.origin.is_some()
            && self.client_pending() == 0
            && !self.client.tls_pending()
            && self.tx.as_ref().is_some_and(|tx| tx.req_body.done());
        !origin_only
    }

    /// Adds the client socket to this thread's epoll, edge-triggered. Readiness it already
    /// has is reported at once (EPOLL_CTL_ADD polls the socket), so nothing that arrived
    /// before is missed.
    pub(super) fn watch_client(&mut self, t: &mut EThread) {
        let Some(me) = self.me.upgrade() else {
            self.dead = true;
            return;
        };
        let handler = SideHandler {
            session: me,
            origin: false,
        };
        // The session holds the client socket's only descriptor.
        match t.register_sole(
            self.client.wire().as_raw_fd(),
            Interest::READ | Interest::WRITE | Interest::EDGE,
            Box::new(handler),
        ) {
            Ok(tok) => self.client.set_token(tok),
            Err(e) => {
                log::debug!("cannot register client socket: {e}");
                self.dead = true;
            }
        }
    }

    /// Bytes for the origin that `flush_origin` would send now (were they not held).
    /// None while the request waits for its place under `per_server.connection.max`:
    /// a connection still attached from the client's last request must not carry it
    /// past the queue.
    pub(super) fn origin_writable(&self) -> bool {
        if matches!(self.phase, Phase::OriginWait) {
            return false;
        }
        self.origin.as_ref().is_some_and(|o| {
            (!self.out_o.is_empty() || o.wire.tls_pending()) && o.connected && o.wire.writable
        })
    }

    /// Writes what is queued for the client while it takes it: true if anything went.
    pub(super) fn flush_client(&mut self) -> bool {
        let mut wrote = false;
        if self.batch.hold_client && self.client_batchable().is_some() {
            return false; // sent with the batch's (`batch.rs`)
        }
        let last = self.client_last();
        loop {
            let ours = !self.out_c.is_empty() || self.out_body.is_some();
            if !self.client.writable || !(ours || self.client.tls_pending()) {
                break;
            }
            // The queued bytes, then the stored body streaming behind them (with TLS, the
            // ciphertext the layer holds goes first); a plain connection takes both in
            // one call, so a hit's head and body leave in one segment when they fit.
            let sent = match self.out_body.as_ref() {
                Some(body) if self.out_c.is_empty() => self.client.send(body.rest(), last),
                Some(body) => self.client.send_pair(&self.out_c, body.rest(), last),
                None => self.client.send(&self.out_c, last),
            };
            match sent {
                // Only TLS ciphertext went (a flush): nothing of ours.
                Ok(Sent::Bytes(0)) => {
                    if ours {
                        break;
                    }
                }
                Ok(Sent::Bytes(n)) => {
                    self.client_took(n);
                    wrote = true;
                }
                Ok(Sent::Later) => {}
                Err(_) => {
                    // A relay's origin hears of it as a reset, not a FIN (`tunnel.rs`).
                    if let (Phase::Tunnel(_), Some(o)) = (&self.phase, &self.origin) {
                        let _ = o.wire.wire().reset_on_close();
                    }
                    self.dead = true;
                    return true;
                }
            }
        }
        // Hold no buffer while idle (so an idle keep-alive connection costs little), and
        // none bigger than the limit ever.
        if self.out_c.is_empty()
            && (self.out_c.capacity() > BUF_LIMIT || matches!(self.phase, Phase::ReadRequest))
        {
            keep_spare(&mut self.out_c);
        }
        if wrote {
            self.client_progress();
        }
        wrote
    }

    /// Whether what is queued for the client is the connection's last bytes: the close
    /// or shutdown follows as soon as they are out, and carries their tail with its FIN.
    /// (Only asked when there is something to write: this runs on every turn of `drive`.)
    fn client_last(&self) -> bool {
        self.client_pending() > 0
            && (matches!(self.phase, Phase::Closing { reset: false, .. })
                || self.tx.as_ref().is_some_and(|tx| {
                    !tx.client_keep_alive && tx.resp_body.as_ref().is_some_and(|b| b.done())
                }))
    }

    /// `n` bytes of the answer went to the client: from `out_c`, then from the stored
    /// body behind it.
    fn client_took(&mut self, n: usize) {
        let from_head = n.min(self.out_c.len());
        self.out_c.drain(..from_head);
        let rest = n - from_head;
        if rest > 0 && self.out_body.as_mut().is_some_and(|b| b.advance(rest)) {
            self.out_body = None;
        }
        if self.out_c.len() <= BUF_LIMIT {
            self.return_read_ahead();
        }
        self.sent_c += n as u64;
        if !self.logs_owed.is_empty() {
            self.logs_sent();
        }
        if let Some((at, status)) = self.status_owed {
            if self.sent_c > at {
                self.status_owed = None;
                self.shared.metrics.count_status(status);
            }
        }
        if !self.first_byte_sent {
            self.first_byte_sent = true;
            let us = self.client.wire().accepted_at().elapsed().as_micros();
            self.shared.metrics.first_byte_us.record(us as u64);
        }
    }

    /// The answer about to be queued for the client has `status`: its class
    /// (`2xx_responses`, ...) is counted once its first byte is written, so an answer
    /// whose client went first (a reset noticed only at that write) is not counted as
    /// sent, and its log line says 000.
    pub(super) fn owe_status(&mut self, status: u16) {
        self.owe_status_from(self.queued_end(), status);
    }

    /// As [`Session::owe_status`], for an answer already queued from `at` (a count of
    /// `sent_c`, [`Session::queued_end`] before it was queued).
    pub(super) fn owe_status_from(&mut self, at: u64, status: u16) {
        self.status_owed = Some((at, status));
        if let Some(l) = self.log_req.as_mut() {
            l.answer_at = Some(at);
        }
    }

    /// Where the next answer queued for the client will begin in its stream.
    pub(super) fn queued_end(&self) -> u64 {
        self.sent_c + self.client_pending() as u64
    }

    /// The client took bytes: its inactivity deadline moves on. Closing too, while
    /// our last bytes go: the lingering drain's own deadline starts once they are out.
    fn client_progress(&mut self) {
        if !matches!(self.phase, Phase::Closing { shut: true, .. }) {
            self.deadline = self.deadline.max(Instant::now() + self.write_limit());
        }
    }

    /// How long a client may take no bytes of an answer before it is given up.
    pub(super) fn write_limit(&self) -> Duration {
        let timeouts = &self.shared.settings.timeouts;
        timeouts
            .default_inactivity
            .min(timeouts.transaction_no_activity_out)
    }

    /// A plain client socket and the queued bytes `flush_client` would send on it now,
    /// for the end-of-batch submission (`batch.rs`); None for TLS, a stored body, or the
    /// connection's last bytes (sent with MSG_MORE before the close), which
    /// `flush_client` sends itself.
    pub(super) fn client_batchable(&self) -> Option<(&NetConnection, &[u8])> {
        (self.client.writable
            && !self.client.is_tls()
            && self.out_body.is_none()
            && !self.out_c.is_empty()
            && !self.client_last())
        .then(|| (self.client.wire(), &self.out_c[..]))
    }

    /// Takes the result of a send made for `client_batchable` as `flush_client` takes its
    /// own.
    pub(super) fn client_batch_sent(&mut self, r: io::Result<usize>) {
        match self.client.plain_sent(r) {
            Ok(Sent::Bytes(n)) => {
                self.client_took(n);
                self.client_progress();
            }
            Ok(Sent::Later) => {}
            Err(_) => self.dead = true,
        }
    }

    /// Writes what is queued for the origin while it takes it, unless held for the end
    /// of the batch: true if anything went.
    pub(super) fn flush_origin(&mut self) -> bool {
        if self.batch.hold_origin {
            return false;
        }
        let mut wrote = false;
        while self.origin_writable() {
            let Some(o) = self.origin.as_mut() else {
                break;
            };
            let sent = o.wire.send(&self.out_o, false);
            match self.took_origin_send(sent) {
                Some(w) => wrote |= w,
                None => return true,
            }
        }
        wrote
    }

    /// A plain origin socket and the bytes `flush_origin` would send on it now, for the
    /// end-of-batch submission (`batch.rs`); None when it would send nothing or speaks
    /// TLS (the layer writes its own records).
    pub(super) fn origin_batchable(&self) -> Option<(&Socket, &[u8])> {
        let o = self.origin.as_ref()?;
        (self.origin_writable() && !o.wire.is_tls() && !self.out_o.is_empty())
            .then(|| (o.wire.wire(), &self.out_o[..]))
    }

    /// Takes the result of a send made for `origin_batchable` as `flush_origin` takes
    /// its own.
    pub(super) fn origin_batch_sent(&mut self, r: io::Result<usize>) {
        if let Some(o) = self.origin.as_mut() {
            let sent = o.wire.plain_sent(r);
            self.took_origin_send(sent);
        }
    }

    /// What a send of `out_o` did: Some(whether bytes went), None if the origin went
    /// away (the read side will see it and answer 502).
    fn took_origin_send(&mut self, sent: io::Result<Sent>) -> Option<bool> {
        match sent {
            Ok(Sent::Bytes(n)) => {
                self.out_o.drain(..n);
                if self.tx.as_ref().is_some_and(|tx| tx.uploads) {
                    self.charge_upload();
                }
                Some(true)
            }
            Ok(Sent::Later) => Some(false),
            Err(_) => {
                if let Some(o) = self.origin.as_mut() {
                    o.wire.eof = true;
                    // A relay passes this on as a reset (`tunnel.rs`).
                    o.broken = true;
                }
                self.out_o.clear();
                None
            }
        }
    }

    /// Bytes queued for the client and not written yet: `out_c`, then any stored body
    /// streaming behind it.
    pub(super) fn client_pending(&self) -> usize {
        self.out_c.len() + self.out_body.as_ref().map_or(0, |b| b.rest().len())
    }

    /// Reads client bytes into `inbuf`: true if anything happened (bytes or EOF).
    pub(super) fn read_client(&mut self, max: usize) -> bool {
        if !self.client.readable || self.client.eof || max == 0 {
            return false;
        }
        match self.client.read_into(&mut self.inbuf, max) {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(_) => {
                self.dead = true;
                true
            }
        }
    }
}
