//! Byte relays (`Phase::Tunnel`): a CONNECT tunnel, answered 200 once its origin
//! connection is established, and a blind port's relay from the first byte. One
//! [`Pipe`] keeps the relay's state; each direction's FIN is passed on once the bytes
//! before it are through. Runs on the session's ET_NET thread.

use super::super::codec::RequestHead;
use super::super::remap::split_authority;
use super::super::resolve::Answer;
use super::log::LogResult;
use super::{Phase, Session, BUF_LIMIT};
use crate::error::{Error, ErrorKind};
use iocore::EThread;
use std::net::SocketAddr;
use std::time::Instant;

/// A relay's state.
pub(super) struct Pipe {
    /// A CONNECT whose origin connection is not established yet: its client gets 200
    /// once it is, 502 if it fails.
    pub(super) reply_pending: bool,
    /// The client's FIN was passed on to the origin.
    fin_to_origin: bool,
    /// The origin's FIN was passed on to the client.
    fin_to_client: bool,
}

impl Pipe {
    fn new(reply_pending: bool) -> Pipe {
        Pipe {
            reply_pending,
            fin_to_origin: false,
            fin_to_client: false,
        }
    }
}

impl Session {
    /// A blind port's connection: a relay to `target` from the start.
    pub(super) fn open_blind(&mut self, t: &mut EThread, target: SocketAddr, now: Instant) {
        self.shared.metrics.tunnels.inc();
        self.phase = Phase::Tunnel(Pipe::new(false));
        let timeouts = &self.shared.settings.timeouts;
        self.deadline = now
            + if self.client.handshaking() {
                timeouts.connect.min(timeouts.accept_no_activity)
            } else {
                timeouts.connect
            };
        if let Err(e) = self.connect_origin(t, target, false) {
            log::debug!("tunnel to {target}: {e}");
            self.dead = true;
        }
    }

    /// CONNECT host:port: with forward proxying, to a port `connect_ports` allows, a
    /// tunnel to the origin, answered 200 once its connection is established and 502 if
    /// it cannot be; bytes the client sent after the head go through it first. Refused
    /// (and the connection closed) otherwise. `answer`: its name was just looked up.
    pub(super) fn open_connect(
        &mut self,
        t: &mut EThread,
        head: RequestHead,
        mut answer: Option<(String, u16, Answer)>,
    ) {
        let shared = self.shared.clone();
        if shared.settings.remap_required {
            return self.answer_error(Error::new(ErrorKind::ConnectNotForward), false);
        }
        let authority = split_authority(head.target());
        let Some((host, Some(port))) = authority.filter(|_| !head.has_body()) else {
            return self.answer_error(Error::new(ErrorKind::BadConnect), false);
        };
        if !shared.with_live(|live| live.connect_ports.allows(port)) {
            return self.answer_error(Error::new(ErrorKind::ConnectPortDenied), false);
        }
        let addr = match self.address_of(&host, port, &mut answer) {
            Some(Ok(a)) => a,
            // The resolver's ResolveFailed: 502.
            Some(Err(e)) => return self.answer_error(e, false),
            None => return self.wait_for_name(t, host, port, head),
        };
        if let Err(e) = self.connect_origin(t, addr, false) {
            log::debug!("CONNECT {addr}: {e}");
            return self.answer_error(e, false);
        }
        self.out_o = std::mem::take(&mut self.inbuf);
        self.phase = Phase::Tunnel(Pipe::new(true));
        self.deadline = Instant::now() + shared.settings.timeouts.connect;
    }

    /// The relay's step: the connect, the CONNECT answer, bytes both ways, FINs.
    pub(super) fn tunnel(&mut self) -> bool {
        let reply_pending = matches!(&self.phase, Phase::Tunnel(p) if p.reply_pending);
        let mut progress = match self.finish_connect() {
            Ok(p) => p,
            Err(e) if reply_pending => {
                self.fail_tx(e);
                return true;
            }
            Err(_) => {
                self.dead = true;
                return true;
            }
        };
        let Phase::Tunnel(pipe) = &mut self.phase else {
            return false;
        };
        let Some(o) = self.origin.as_mut() else {
            self.dead = true;
            return true;
        };
        if !o.connected {
            if self.client.reset {
                // The client reset while the connect was pending: nobody is left to
                // answer (logged aborted, no status), and the connect is dropped now,
                // not at its timeout.
                if let Some(l) = self.log_req.as_deref_mut() {
                    l.aborted = true;
                }
                self.dead = true;
                return true;
            }
            return progress;
        }
        if pipe.reply_pending {
            pipe.reply_pending = false;
            // As `owe_status` (`pipe` holds the phase; nothing else is queued for the
            // client of a CONNECT).
            self.status_owed = Some((self.sent_c + self.out_c.len() as u64, 200));
            self.out_c
                .extend_from_slice(b"HTTP/1.1 200 Connection Established\r\n\r\n");
            let m = &self.shared.metrics;
            m.connect_tunnels.inc();
            m.completed_requests.inc();
            // Logged when the tunnel ends, with what went through it.
            if let Some(l) = self.log_req.as_mut() {
                (l.status, l.result, l.origin) = (200, LogResult::Tunnel, Some(o.addr));
            }
            progress = true;
        }
        // A reset (or a failed write) on either side is passed on as a reset: a FIN would
        // tell the other side the stream ended whole (as a cut body must not look whole,
        // RFC 9112 §6.3). The relay ends; what it held goes with it.
        let mut client_reset = self.client.reset;
        let mut origin_reset = o.wire.reset || o.broken;
        // Client → origin.
        if !client_reset && self.out_o.len() < BUF_LIMIT && self.client.readable && !self.client.eof
        {
            let room = BUF_LIMIT - self.out_o.len();
            match self.client.read_into(&mut self.out_o, room) {
                Ok(Some(0)) => self.client.eof = true,
                Err(_) => client_reset = true,
                Ok(Some(_)) | Ok(None) => {}
            }
            progress = true;
        }
        // Origin → client.
        if !origin_reset && self.out_c.len() < BUF_LIMIT && o.wire.readable && !o.wire.eof {
            let room = BUF_LIMIT - self.out_c.len();
            match o.wire.read_into(&mut self.out_c, room) {
                Ok(Some(0)) => o.wire.eof = true,
                Err(_) => origin_reset = true,
                Ok(Some(_)) | Ok(None) => {}
            }
            progress = true;
        }
        if client_reset || origin_reset {
            let _ = if client_reset {
                o.wire.wire().reset_on_close()
            } else {
                self.client.wire().reset_on_close()
            };
            self.dead = true;
            return true;
        }
        // A TLS client still in its handshake keeps the accept deadline.
        if progress && !self.client.handshaking() {
            self.deadline = Instant::now() + self.shared.settings.timeouts.default_inactivity;
        }
        // Half-close: pass each FIN on once the bytes before it are through.
        if self.client.eof && self.out_o.is_empty() && !pipe.fin_to_origin {
            o.wire.shutdown_write();
            pipe.fin_to_origin = true;
        }
        if o.wire.eof && self.out_c.is_empty() && !pipe.fin_to_client {
            self.client.shutdown_write();
            pipe.fin_to_client = true;
        }
        if pipe.fin_to_origin && pipe.fin_to_client && !self.client.tls_pending() {
            self.dead = true;
            return true;
        }
        progress
    }
}
