//! A `pp` port's first bytes: the PROXY protocol header (`http/proxy_protocol.rs` reads
//! it), taken from the connection's first read before any HTTP parsing, so a header that
//! came with the request costs no extra wake-up. Only peers on
//! `http.proxy_protocol_allowlist` may send one; a connection from anywhere else, or
//! without a valid header, is closed at once and counted. The address the header carries
//! is the client's from then on ([`Session::peer`]). Runs on the session's ET_NET thread.

use super::super::proxy_protocol::{self, Header};
use super::Session;

impl Session {
    /// Reads the PROXY header: true when anything happened (bytes came, the header was
    /// taken, the connection was closed).
    pub(super) fn read_proxy_header(&mut self) -> bool {
        let m = &self.shared.metrics;
        let from = self.client.wire().peer_addr();
        if !self.shared.with_live(|live| {
            live.proxy_protocol_allow
                .iter()
                .any(|n| n.contains(&from.ip()))
        }) {
            m.pp_refused.inc();
            log::debug!("{from}: PROXY header from an address off proxy_protocol_allowlist");
            self.dead = true;
            return true;
        }
        match proxy_protocol::parse(&self.inbuf, self.shared.settings.max_head) {
            Header::Parsed { len, client } => {
                if self.client.is_tls() && !self.take_peeked(len) {
                    self.dead = true;
                    return true;
                }
                m.pp_accepted.inc();
                self.inbuf.drain(..len);
                if self.client.is_tls() {
                    // What was peeked behind the header is still in the socket, for TLS.
                    self.inbuf.clear();
                }
                self.pp_client = client;
                self.pp_pending = false;
                true
            }
            Header::Malformed => {
                m.pp_malformed.inc();
                log::debug!("{from}: no valid PROXY header");
                self.dead = true;
                true
            }
            Header::Incomplete if self.client.eof => {
                // Closed before a whole header: nothing to answer.
                if !self.inbuf.is_empty() {
                    m.pp_malformed.inc();
                }
                self.dead = true;
                true
            }
            Header::Incomplete => {
                let progress = if self.client.is_tls() {
                    self.peek_client()
                } else {
                    let room = (self.shared.settings.max_head + 1).saturating_sub(self.inbuf.len());
                    self.read_client(room)
                };
                // Reset mid-header: as a close mid-header, a malformed one.
                if self.dead && !self.inbuf.is_empty() {
                    self.shared.metrics.pp_malformed.inc();
                }
                progress
            }
        }
    }

    /// On a `pp:ssl` port the header comes in plain text before the TLS handshake (as a
    /// balancer's `send-proxy` sends it): it is peeked into `inbuf`, all of what came so
    /// far each time, and left in the socket until it is whole, so that the TLS layer
    /// finds the ClientHello first when it reads. true when anything happened.
    fn peek_client(&mut self) -> bool {
        if !self.client.readable || self.client.eof {
            return false;
        }
        let before = self.inbuf.len();
        self.inbuf.resize(self.shared.settings.max_head + 1, 0);
        let peeked = self.client.wire().peek(&mut self.inbuf);
        match peeked {
            Ok(0) => {
                self.inbuf.truncate(before);
                self.client.eof = true;
                true
            }
            Ok(n) => {
                self.inbuf.truncate(n);
                if n == before {
                    // Nothing new. A peek never reads the FIN behind the bytes: epoll's
                    // hang-up says the peer closed mid-header. Else wait for the next
                    // arrival's edge.
                    if self.client.hup {
                        self.client.eof = true;
                        return true;
                    }
                    self.client.readable = false;
                }
                n > before
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.inbuf.truncate(before);
                self.client.readable = false;
                false
            }
            Err(_) => {
                self.inbuf.truncate(before);
                self.dead = true;
                true
            }
        }
    }

    /// Takes the `len` bytes of a whole header peeked on a `pp:ssl` port from the
    /// socket: false if they could not be.
    fn take_peeked(&self, len: usize) -> bool {
        let mut header = vec![0u8; len];
        matches!(self.client.wire().recv(&mut header), Ok(n) if n == len)
    }

    /// The accept timeout passed before a whole PROXY header came. A connection that
    /// sent nothing at all (a balancer's TCP check) is no malformed header.
    pub(super) fn proxy_header_timed_out(&mut self) {
        if !self.inbuf.is_empty() {
            self.shared.metrics.pp_malformed.inc();
        }
        self.dead = true;
    }
}
