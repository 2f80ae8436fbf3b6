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
                m.pp_accepted.inc();
                self.inbuf.drain(..len);
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
                let room = (self.shared.settings.max_head + 1).saturating_sub(self.inbuf.len());
                self.read_client(room)
            }
        }
    }

    /// The accept timeout passed before a whole PROXY header came.
    pub(super) fn proxy_header_timed_out(&mut self) {
        self.shared.metrics.pp_malformed.inc();
        self.dead = true;
    }
}
