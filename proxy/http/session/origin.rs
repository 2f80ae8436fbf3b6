//! Origin connections: connecting (or taking one from this thread's pool), completing
//! the connect, and letting a connection go: kept attached to its idle client, back into
//! the pool, or closed. Runs on the session's ET_NET thread; the pool is that thread's.

use super::io::{SideHandler, Transport};
use super::pool::PoolKey;
use super::state::{keep_spare, with_state};
use super::Session;
use crate::error::{Error, ErrorKind};
use crate::tls::TlsLayer;
use iocore::{EThread, Interest, Socket};
use rustls::pki_types::ServerName;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long an idle client keeps its origin connection attached before it goes back to
/// the thread's pool.
pub(super) const ATTACHED_IDLE: Duration = Duration::from_secs(1);
/// How long after opening an origin connection this thread's pool counts as short.
const POOL_SHORT_FOR: Duration = Duration::from_secs(1);

/// The origin connection a session holds.
pub(super) struct Origin {
    pub(super) wire: Transport<Socket>,
    pub(super) addr: SocketAddr,
    /// The name TLS is spoken to (SNI, and the name its certificate must have); None:
    /// plain HTTP.
    pub(super) tls_name: Option<ServerName<'static>>,
    /// The TLS client settings it speaks under (`PoolKey::tls_settings`).
    pub(super) tls_settings: usize,
    pub(super) connected: bool,
    /// Taken from the pool (or kept from an earlier transaction): the origin may have
    /// closed it meanwhile, so a request that fails on it before any answer is sent
    /// once more on a new one.
    pub(super) reused: bool,
    /// Origin bytes not yet consumed.
    pub(super) inbuf: Vec<u8>,
    /// How much of `inbuf` the response head parser has searched for the head's end.
    pub(super) head_searched: usize,
    /// A read failed (a reset): the end of stream it stands for is no message's end.
    pub(super) broken: bool,
}

impl Origin {
    /// Whether this idle connection has nothing unasked-for to read: no bytes, no close.
    /// Known at no cost when the last read drained the socket (a later arrival is a new
    /// edge, which marks the side readable); else asked of the socket once. Bytes that
    /// arrive on an idle connection belong to no request (an origin that sent more than
    /// its response's length, or answered a request body it did not read), so a
    /// connection holding them is never used again (RFC 9112 §9.3): they would be read
    /// as the next request's response.
    pub(super) fn quiet(&mut self) -> bool {
        if !self.inbuf.is_empty() || self.wire.eof {
            return false;
        }
        if self.wire.readable {
            if !super::pool::nothing_to_read(self.wire.wire()) {
                return false;
            }
            // Drained: the next arrival brings a new edge.
            self.wire.readable = false;
        }
        true
    }
}

impl Session {
    /// Sends the transaction's request on the attached connection to `addr`, a pooled
    /// one, or a new one.
    pub(super) fn send_to_origin(&mut self, t: &mut EThread, addr: SocketAddr) {
        let tls = self.tx.as_ref().and_then(|tx| tx.wire_tls());
        let settings = self.tls_settings(tls);
        let usable = |o: &mut Origin| {
            o.addr == addr
                && o.connected
                && o.tls_name.as_ref() == tls
                && o.tls_settings == settings
                && o.quiet()
        };
        match self.origin.as_mut().map(usable) {
            Some(true) => {
                self.shared.metrics.origin_connections_reused.inc();
                self.deadline =
                    Instant::now() + self.shared.settings.timeouts.transaction_no_activity_out;
                return;
            }
            Some(false) => self.release_origin(t, true),
            None => {}
        }
        if let Err(e) = self.connect_origin(t, addr, true) {
            if !self.parent_failover(t, &e) {
                self.fail_tx(e);
            }
        }
    }

    /// Connects to `addr`, or takes a pooled connection to it (when `pooled`; its epoll
    /// registration this session's handler takes over), and registers it here.
    pub(super) fn connect_origin(
        &mut self,
        t: &mut EThread,
        addr: SocketAddr,
        pooled: bool,
    ) -> Result<(), Error> {
        // One origin connection a session: one still attached from an earlier
        // transaction (a CONNECT after a GET) goes back to the pool, or closes. Left in
        // place, its registration would keep the session alive after its client left.
        if self.origin.is_some() {
            self.release_origin(t, true);
        }
        let handler = || SideHandler {
            session: self.me.upgrade().expect("a running session is alive"),
            origin: true,
        };
        // A connection the origin closed while pooled has lost its registration to its
        // pool watcher (`pool.rs`); one closed just now is caught by the retry of a
        // bodiless request, so only a request that cannot be retried also pays for a
        // health check.
        let verify = self.tx.as_ref().is_some_and(|tx| tx.retry.is_none());
        let tls = self.tx.as_ref().and_then(|tx| tx.wire_tls().cloned());
        let key = PoolKey {
            addr,
            tls_settings: self.tls_settings(tls.as_ref()),
            tls,
        };
        let reused = if pooled {
            with_state(|st| st.pool.take_live(t, &key, verify, || Box::new(handler())))
        } else {
            None
        };
        let (sock, token, was_reused, tls) = match reused {
            Some((sock, token, tls)) => {
                self.shared.metrics.origin_connections_reused.inc();
                (sock, token, true, tls)
            }
            None => {
                if pooled {
                    // The pool had nothing for this request: it runs short.
                    let until = Instant::now() + POOL_SHORT_FOR;
                    with_state(|st| st.pool_short_until = Some(until));
                }
                let failed = |e: io::Error| {
                    Error::new(ErrorKind::ConnectFailed).context(format!("connect {addr}: {e}"))
                };
                let tls = match &key.tls {
                    Some(name) => Some(self.origin_tls(name)?),
                    None => None,
                };
                let sock = Socket::connect(addr).map_err(failed)?;
                let token = t
                    .register(
                        sock.as_raw_fd(),
                        Interest::READ | Interest::WRITE | Interest::EDGE,
                        Box::new(handler()),
                    )
                    .map_err(failed)?;
                (sock, token, false, tls)
            }
        };
        // A fresh connect to a near origin has usually completed already: then the
        // request goes out now rather than a loop turn later, on the writable event.
        let connected = was_reused || sock.is_established();
        if connected && !was_reused {
            self.shared.metrics.origin_connections_opened.inc();
        }
        let mut wire = Transport::with_tls(sock, tls);
        wire.set_token(token);
        wire.writable = connected;
        // Pooled, it had nothing to read (anything arriving marked it dead); fresh,
        // nothing has been asked yet.
        wire.readable = false;
        self.origin = Some(Origin {
            wire,
            addr,
            tls_name: key.tls,
            tls_settings: key.tls_settings,
            connected,
            reused: was_reused,
            inbuf: Vec::new(),
            head_searched: 0,
            broken: false,
        });
        if connected {
            self.log_reached();
        }
        let timeouts = &self.shared.settings.timeouts;
        self.deadline = Instant::now()
            + if connected {
                timeouts.transaction_no_activity_out
            } else {
                timeouts.connect
            };
        Ok(())
    }

    /// The live TLS client settings a connection speaking `tls` is made under
    /// ([`crate::tls::TlsClient::id`]), 0 for plain TCP.
    fn tls_settings(&self, tls: Option<&ServerName<'static>>) -> usize {
        if tls.is_none() {
            return 0;
        }
        self.shared
            .with_live(|live| live.tls_client.as_ref().map_or(0, |c| c.id()))
    }

    /// A TLS client for the origin named `name`, from the live settings.
    fn origin_tls(&self, name: &ServerName<'static>) -> Result<Box<TlsLayer>, Error> {
        let failed = |why: String| {
            Error::new(ErrorKind::OriginTls).context(format!("{}: {why}", name.to_str()))
        };
        let client = self
            .shared
            .with_live(|live| live.tls_client.clone())
            .ok_or_else(|| failed("no TLS client configuration".into()))?;
        let conn = client.connect(name).map_err(|e| failed(e.to_string()))?;
        Ok(Box::new(TlsLayer::new(
            rustls::Connection::Client(conn),
            self.shared.metrics.tls.clone(),
        )))
    }

    /// Completes the connect when the socket turns writable: Ok(true) when it just did.
    pub(super) fn finish_connect(&mut self) -> Result<bool, Error> {
        let Some(o) = self.origin.as_mut() else {
            return Err(Error::new(ErrorKind::ConnectFailed));
        };
        if o.connected || !o.wire.writable {
            return Ok(false);
        }
        match o.wire.wire().take_error() {
            Ok(None) => {
                o.connected = true;
                o.wire.readable = true;
                // Opened once the connect is done: a refused one is no connection.
                self.shared.metrics.origin_connections_opened.inc();
                self.deadline =
                    Instant::now() + self.shared.settings.timeouts.transaction_no_activity_out;
                self.log_reached();
                Ok(true)
            }
            Ok(Some(e)) | Err(e) => {
                Err(Error::new(ErrorKind::ConnectFailed)
                    .context(format!("connect {}: {e}", o.addr)))
            }
        }
    }

    /// Lets the origin connection go: into this thread's pool, still registered, when
    /// `reuse` and it is clean; else deregistered and closed.
    pub(super) fn release_origin(&mut self, t: &mut EThread, reuse: bool) {
        let Some(mut o) = self.origin.take() else {
            return;
        };
        let clean =
            reuse && o.connected && !o.wire.handshaking() && !o.wire.tls_pending() && o.quiet();
        keep_spare(&mut o.inbuf);
        let (sock, token, tls) = o.wire.into_parts();
        let Some(token) = token else { return };
        if clean {
            let expires = Instant::now() + self.shared.settings.timeouts.keep_alive_out;
            let key = PoolKey {
                addr: o.addr,
                tls: o.tls_name,
                tls_settings: o.tls_settings,
            };
            let pooled = with_state(|st| st.pool.put(t, key, sock, token, tls, expires));
            if pooled.is_ok() {
                return;
            }
        }
        drop(t.deregister(token));
    }

    /// After a whole transaction: the origin connection stays attached to this client
    /// (`attach`, when both sides keep the connection and this thread's pool is not
    /// short), else goes back to the pool (`reuse`) or closes.
    pub(super) fn end_with_origin(
        &mut self,
        t: &mut EThread,
        attach: bool,
        reuse: bool,
        now: Instant,
    ) {
        let pool_short = with_state(|st| st.pool_short_until.is_some_and(|until| now < until));
        // Asked only when it would stay attached: `release_origin` asks otherwise.
        if attach && !pool_short && self.origin.as_mut().is_some_and(Origin::quiet) {
            // Stay attached: the client's next request most likely goes to the same
            // origin, and then costs no pool round trip (two handler swaps, two lookups).
            // Not while this thread's pool runs dry: then an idle client would pin a
            // connection that another request opens a new one for instead.
            if let Some(o) = self.origin.as_mut() {
                o.reused = true;
                keep_spare(&mut o.inbuf);
                o.head_searched = 0;
            }
        } else {
            self.release_origin(t, reuse);
        }
    }
}
