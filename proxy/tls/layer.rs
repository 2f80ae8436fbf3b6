//! The glue between a non-blocking socket and a rustls connection, sans I/O: [`TlsLayer`]
//! reads ciphertext from the socket into rustls and hands out plaintext, takes plaintext
//! and writes the ciphertext, and runs the handshake inside those calls. A session's
//! `Transport` holds one beside its socket (a `ServerConnection` for a client of an
//! `ssl` port, a `ClientConnection` for an `https://` origin), so the session's phases
//! read and write plaintext as on a plain connection. Runs on the connection's ET_NET
//! thread and never blocks: the socket is non-blocking, and `WouldBlock` is passed up.
//!
//! Edge-triggered readiness: a read returns what rustls already holds before it reads
//! the socket again, and says (`drained`) only when the socket would block (or read
//! short) and no plaintext is left, so data rustls keeps is never left waiting for an
//! edge that will not come. Ciphertext rustls could not write yet (`pending`) is
//! written before any new plaintext is taken, so what a connection holds is bounded by
//! one write.

use super::TlsMetrics;
use iocore::{NetConnection, Socket};
use rustls::{Connection, HandshakeKind, ProtocolVersion};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

/// The socket calls the layer needs (`NetConnection` and `Socket` have them).
pub trait RawIo {
    /// Reads into `buf`; `Ok(0)` is end of stream.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes from `buf`.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// Writes the last bytes before a close or half-close (MSG_MORE where it helps).
    fn send_last(&self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }
    /// Half-closes the write side.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl RawIo for NetConnection {
    #[inline]
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        NetConnection::recv(self, buf)
    }
    #[inline]
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        NetConnection::send(self, buf)
    }
    #[inline]
    fn send_last(&self, buf: &[u8]) -> io::Result<usize> {
        NetConnection::send_last(self, buf)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        NetConnection::shutdown_write(self)
    }
}

impl RawIo for Socket {
    #[inline]
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Socket::recv(self, buf)
    }
    #[inline]
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        Socket::send(self, buf)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        Socket::shutdown_write(self)
    }
}

/// Why a handshake (or a TLS connection) failed, as counted in
/// `proxy.process.ssl.failure.<reason>.handshakes_in`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Plain HTTP sent to a TLS port.
    PlainHttp,
    /// A ClientHello (or handshake message) that does not parse: garbage, truncated.
    BadHello,
    /// A handshake message over rustls's 64 KiB limit, or a record over 16 KiB.
    Oversized,
    /// No certificate for the name asked and no default.
    NoCertificate,
    /// No protocol version, cipher suite, group or ALPN protocol in common.
    Incompatible,
    /// The peer sent a fatal alert (it refused our certificate, say).
    Alert,
    /// A TLS 1.2 client asked to renegotiate.
    Renegotiation,
    /// The peer closed the connection in the middle of the handshake.
    Eof,
    /// The handshake did not complete within `accept_no_activity_timeout`.
    Timeout,
    /// Anything else: a protocol violation, a bad record, a certificate refused.
    Other,
}

impl Failure {
    /// Every reason, in counter order.
    pub const ALL: [Failure; 10] = [
        Failure::PlainHttp,
        Failure::BadHello,
        Failure::Oversized,
        Failure::NoCertificate,
        Failure::Incompatible,
        Failure::Alert,
        Failure::Renegotiation,
        Failure::Eof,
        Failure::Timeout,
        Failure::Other,
    ];

    /// The reasons an origin's handshake can fail for, in counter order (a plain-HTTP
    /// origin's answer is a hello that does not parse; the rest are the client's).
    pub const OUT: [Failure; 7] = [
        Failure::BadHello,
        Failure::Oversized,
        Failure::Incompatible,
        Failure::Alert,
        Failure::Eof,
        Failure::Timeout,
        Failure::Other,
    ];

    /// The metric's name for it, on an origin's handshake (`OUT`).
    pub fn name_out(self) -> &'static str {
        match self {
            Failure::BadHello => "bad_server_hello",
            other => other.name(),
        }
    }

    /// The metric's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Failure::PlainHttp => "plain_http",
            Failure::BadHello => "bad_client_hello",
            Failure::Oversized => "oversized",
            Failure::NoCertificate => "no_certificate",
            Failure::Incompatible => "incompatible",
            Failure::Alert => "alert",
            Failure::Renegotiation => "renegotiation",
            Failure::Eof => "eof",
            Failure::Timeout => "timeout",
            Failure::Other => "other",
        }
    }

    fn of(e: &rustls::Error) -> Failure {
        use rustls::{Error, InvalidMessage, PeerMisbehaved};
        match e {
            Error::InvalidMessage(
                InvalidMessage::MessageTooLarge
                | InvalidMessage::HandshakePayloadTooLarge
                | InvalidMessage::CertificatePayloadTooLarge,
            ) => Failure::Oversized,
            Error::InvalidMessage(_) => Failure::BadHello,
            Error::PeerIncompatible(_) | Error::NoApplicationProtocol => Failure::Incompatible,
            Error::AlertReceived(_) => Failure::Alert,
            Error::PeerMisbehaved(PeerMisbehaved::TooManyRenegotiationRequests) => {
                Failure::Renegotiation
            }
            Error::General(m) if m.contains("certificate") => Failure::NoCertificate,
            _ => Failure::Other,
        }
    }
}

/// A socket read for rustls that remembers whether it found the socket drained.
struct SockRead<'a, W: RawIo> {
    io: &'a W,
    /// The read returned less than asked (or would block): nothing more is waiting.
    short: bool,
    /// The first byte of the connection, when this read brought it.
    first: Option<u8>,
    fresh: bool,
}

impl<W: RawIo> Read for SockRead<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.io.recv(buf)?;
        self.short = n < buf.len();
        if self.fresh && n > 0 {
            self.first = Some(buf[0]);
        }
        Ok(n)
    }
}

/// A socket write for rustls, with MSG_MORE for the last bytes of a connection.
struct SockWrite<'a, W: RawIo> {
    io: &'a W,
    last: bool,
}

impl<W: RawIo> Write for SockWrite<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.last {
            self.io.send_last(buf)
        } else {
            self.io.send(buf)
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Wrote {
    /// This many plaintext bytes were taken (their ciphertext is out, or pending).
    Taken(usize),
    /// None now: the socket is full (`socket`: a writable edge will come), or the
    /// handshake holds what was written before (it goes when the handshake ends).
    Later {
        /// The socket returned `WouldBlock`.
        socket: bool,
    },
}

/// One TLS connection over a non-blocking socket.
pub struct TlsLayer {
    conn: Connection,
    metrics: Arc<TlsMetrics>,
    /// A ClientConnection (origin side) rather than a server one.
    client: bool,
    /// The handshake began at this time (counted as an attempt then): a client's first
    /// ciphertext byte came (handshake time runs from it), or the layer was first used
    /// on an origin connection whose connect is done.
    started: Option<Instant>,
    /// The handshake ended (well: counted once).
    established: bool,
    /// Plaintext was given to rustls during the handshake: more waits for its end.
    held: bool,
    /// rustls saw the socket's end of stream.
    eof_in: bool,
    /// The last socket read was short or would block.
    sock_empty: bool,
    /// rustls has the peer's close_notify: a read returns the end of stream once the
    /// plaintext before it is taken, with no socket readiness to announce it.
    closed_in: bool,
    /// Reads are over: the connection failed, and why.
    failed: Option<Failure>,
    /// What rustls said when it failed, for the log.
    error: Option<rustls::Error>,
    /// A close_notify was queued.
    notified: bool,
    /// A half-close is owed once the pending ciphertext is out.
    shut_owed: bool,
    /// A TLS 1.2 server connection after its handshake: any handshake record the client
    /// sends is a renegotiation attempt.
    watch_renegotiation: bool,
    /// The last flush hit a full socket.
    blocked: bool,
}

impl TlsLayer {
    /// A layer over `conn` (a server connection unless `client`), counting into
    /// `metrics`.
    pub fn new(mut conn: Connection, metrics: Arc<TlsMetrics>) -> TlsLayer {
        let client = matches!(conn, Connection::Client(_));
        // Turnstile bounds what it gives rustls itself (one write while ciphertext is
        // pending, one during the handshake), so rustls's own limit never turns a write
        // into a partial one.
        conn.set_buffer_limit(None);
        TlsLayer {
            conn,
            metrics,
            client,
            started: None,
            established: false,
            held: false,
            eof_in: false,
            sock_empty: false,
            closed_in: false,
            failed: None,
            error: None,
            notified: false,
            shut_owed: false,
            watch_renegotiation: false,
            blocked: false,
        }
    }

    /// Still handshaking.
    #[inline]
    pub fn handshaking(&self) -> bool {
        !self.established
    }

    /// Ciphertext is waiting for the socket.
    #[inline]
    pub fn pending(&self) -> bool {
        self.conn.wants_write()
    }

    /// Why the connection failed, once it has.
    pub fn failure(&self) -> Option<Failure> {
        self.failed
    }

    /// rustls's error, once the connection failed on one.
    pub fn error(&self) -> Option<&rustls::Error> {
        self.error.as_ref()
    }

    /// The last flush found the socket full: its writable edge will come.
    pub fn take_blocked(&mut self) -> bool {
        std::mem::take(&mut self.blocked)
    }

    /// An origin's handshake begins at the layer's first read or write, once its TCP
    /// connect is done (a refused connect is no handshake): counted as an attempt then.
    #[inline]
    fn begin_out(&mut self) {
        if self.client && self.started.is_none() {
            self.started = Some(Instant::now());
            self.metrics.attempts_out.inc();
        }
    }

    /// The SNI name the client asked for (server side).
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(s) => s.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Ends reads for `why`, and counts it once: a handshake that began and failed (a
    /// connection that ends before it began, a balancer's TCP check, counts nowhere, as
    /// it was no attempt), or a renegotiation after one that succeeded.
    pub fn fail(&mut self, why: Failure) {
        if self.failed.is_some() {
            return;
        }
        self.failed = Some(why);
        let m = &self.metrics;
        if self.established {
            if why == Failure::Renegotiation && !self.client {
                m.failures_by_reason[why as usize].inc();
            }
            return;
        }
        if self.started.is_none() {
            return;
        }
        if self.client {
            m.failures_out.inc();
            let why = if Failure::OUT.contains(&why) {
                why
            } else {
                Failure::Other
            };
            if let Some(c) = &m.failures_out_by_reason[why as usize] {
                c.inc();
            }
        } else {
            m.failures_in.inc();
            m.failures_by_reason[why as usize].inc();
        }
    }

    /// A socket error (the peer reset the connection, mostly): a handshake under way
    /// failed because the peer left, as when it closes.
    fn socket_failed(&mut self) {
        if !self.established {
            self.fail(Failure::Eof);
        }
    }

    /// Reads plaintext into `dst` (not empty): `Ok(0)` at the end of the stream (a
    /// close_notify, or the socket's end), `Err(WouldBlock)` when there is none now.
    /// Handshake messages are read, answered and counted on the way.
    pub fn read<W: RawIo>(&mut self, io: &W, dst: &mut [u8]) -> io::Result<usize> {
        self.begin_out();
        loop {
            if self.failed.is_some() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS failed"));
            }
            match self.conn.reader().read(dst) {
                Ok(0) => return Ok(0),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer's end of stream without a close_notify: the end all the
                // same (HTTP framing says whether what came was whole; where only the
                // close delimits, `peer_closed` tells a truncation).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && self.established => {
                    return Ok(0)
                }
                Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => return Err(e),
                Err(_) => {}
            }
            if self.eof_in {
                if !self.established {
                    self.fail(Failure::Eof);
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "TLS handshake cut",
                    ));
                }
                return Ok(0);
            }
            let mut rd = SockRead {
                io,
                short: false,
                first: None,
                fresh: self.started.is_none(),
            };
            match self.conn.read_tls(&mut rd) {
                Ok(0) => self.eof_in = true,
                Ok(_) => self.sock_empty = rd.short,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.sock_empty = true;
                    return Err(e);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    // rustls's deframer refused to buffer more: a handshake message
                    // over 64 KiB.
                    self.fail(Failure::Oversized);
                    return Err(e);
                }
                Err(e) => {
                    self.socket_failed();
                    return Err(e);
                }
            }
            if let Some(b) = rd.first {
                self.started = Some(Instant::now());
                if !self.client {
                    self.metrics.attempts_in.inc();
                    // A TLS record starts with its content type (22 for a handshake); a
                    // request line starts with a method's letters.
                    if b.is_ascii_uppercase() {
                        self.fail(Failure::PlainHttp);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "plain HTTP"));
                    }
                }
            }
            self.process(io)?;
        }
    }

    /// Processes what rustls has read, counts a handshake that just ended, and sends
    /// what rustls has to say (its handshake flight, alerts).
    fn process<W: RawIo>(&mut self, io: &W) -> io::Result<()> {
        let before = self.watch_renegotiation && self.conn.wants_write();
        match self.conn.process_new_packets() {
            Ok(state) => self.closed_in |= state.peer_has_closed(),
            Err(e) => {
                self.fail(Failure::of(&e));
                self.error = Some(e.clone());
                // Tell the peer why (the alert rustls queued), best effort.
                let _ = self.flush(io, false);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        if self.watch_renegotiation && !before && self.conn.wants_write() {
            // After a TLS 1.2 handshake rustls writes nothing of its own accord but a
            // `no_renegotiation` warning to a ClientHello.
            self.fail(Failure::Renegotiation);
            return Err(io::Error::new(io::ErrorKind::InvalidData, "renegotiation"));
        }
        if !self.established && !self.conn.is_handshaking() {
            self.established = true;
            self.held = false;
            let m = &self.metrics;
            if self.client {
                m.success_out.inc();
            } else {
                m.success_in.inc();
                if self.conn.handshake_kind() == Some(HandshakeKind::Resumed) {
                    m.resumed_in.inc();
                }
                if let Some(t) = self.started {
                    m.handshake_time_us.record(t.elapsed().as_micros() as u64);
                }
                self.watch_renegotiation =
                    self.conn.protocol_version() == Some(ProtocolVersion::TLSv1_2);
            }
        }
        if self.conn.wants_write() {
            self.flush(io, false)?;
        }
        Ok(())
    }

    /// Whether the last socket read found it drained (and rustls holds no plaintext
    /// beyond what the last read took, which the caller knows by a short read).
    #[inline]
    pub fn sock_empty(&self) -> bool {
        self.sock_empty
    }

    /// Whether the peer's close_notify has been read: what is left to read ends there,
    /// and the next read says so without waiting for the socket.
    pub fn peer_closed(&self) -> bool {
        self.closed_in
    }

    /// Writes pending ciphertext: Ok(true) when none is left. A full socket is
    /// `Ok(false)` (and [`TlsLayer::take_blocked`] says so).
    pub fn flush<W: RawIo>(&mut self, io: &W, last: bool) -> io::Result<bool> {
        self.begin_out();
        while self.conn.wants_write() {
            let mut w = SockWrite { io, last };
            match self.conn.write_tls(&mut w) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.socket_failed();
                    return Err(e);
                }
            }
        }
        if self.shut_owed {
            self.shut_owed = false;
            // A peer that already left needs no FIN.
            let _ = io.shutdown_write();
        }
        Ok(true)
    }

    /// Takes plaintext from `buf` (`last`: the connection's last bytes; a close_notify
    /// follows them). Pending ciphertext goes first; while it cannot, nothing is taken.
    pub fn write<W: RawIo>(&mut self, io: &W, buf: &[u8], last: bool) -> io::Result<Wrote> {
        if !self.flush(io, false)? {
            return Ok(Wrote::Later { socket: true });
        }
        if buf.is_empty() {
            return Ok(Wrote::Taken(0));
        }
        if !self.established {
            // rustls keeps plaintext written before the handshake ends and sends it at
            // the end: one write's worth, no more.
            if self.held {
                return Ok(Wrote::Later { socket: false });
            }
            self.held = true;
        }
        let n = self.conn.writer().write(buf)?;
        if last && n == buf.len() && self.established {
            self.conn.send_close_notify();
            self.notified = true;
        }
        self.flush(io, last)?;
        Ok(Wrote::Taken(n))
    }

    /// Whether a close now owes the peer a close_notify (RFC 8446 §6.1): the handshake
    /// is done and none was sent yet.
    pub fn owes_close_notify(&self) -> bool {
        self.established && !self.notified
    }

    /// Sends a close_notify, then half-closes the socket once every ciphertext byte
    /// before it is out (now, or at a later flush).
    pub fn shutdown_write<W: RawIo>(&mut self, io: &W) {
        if !self.notified {
            self.conn.send_close_notify();
            self.notified = true;
        }
        self.shut_owed = true;
        let _ = self.flush(io, true);
    }
}

impl Drop for TlsLayer {
    /// A handshake that began and never ended, one its session gave up on without a
    /// reason of the layer's own (its client left while an origin's handshake ran, a
    /// stop closed it), failed all the same (`other`): every attempt has one outcome.
    fn drop(&mut self) {
        if !self.established {
            self.fail(Failure::Other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{CertStore, TlsKeep, TlsServer};
    use iocore::Registry;
    use rustls::pki_types::ServerName;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// One direction of an in-memory socket pair with a small kernel buffer.
    #[derive(Default)]
    struct Pipe {
        bytes: RefCell<VecDeque<u8>>,
        closed: std::cell::Cell<bool>,
        /// The peer reset the connection: reads and writes fail.
        reset: std::cell::Cell<bool>,
    }

    /// The server's socket: reads from `inbound`, writes to `outbound` (at most
    /// `room` bytes queued, then WouldBlock).
    struct MemIo<'a> {
        inbound: &'a Pipe,
        outbound: &'a Pipe,
        room: usize,
    }

    impl RawIo for MemIo<'_> {
        fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            if self.inbound.reset.get() {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let mut q = self.inbound.bytes.borrow_mut();
            if q.is_empty() {
                return if self.inbound.closed.get() {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(q.len());
            for (b, v) in buf.iter_mut().zip(q.drain(..n)) {
                *b = v;
            }
            Ok(n)
        }
        fn send(&self, buf: &[u8]) -> io::Result<usize> {
            if self.inbound.reset.get() {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let mut q = self.outbound.bytes.borrow_mut();
            let n = buf.len().min(self.room.saturating_sub(q.len()));
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            q.extend(&buf[..n]);
            Ok(n)
        }
        fn shutdown_write(&self) -> io::Result<()> {
            self.outbound.closed.set(true);
            Ok(())
        }
    }

    fn server() -> (
        TlsLayer,
        Arc<TlsMetrics>,
        rustls::pki_types::CertificateDer<'static>,
    ) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mem.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!(
            "ts-layer-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("k.pem"), key.serialize_pem()).unwrap();
        let keep = TlsKeep::new().unwrap();
        let entry = config::SslCert {
            cert: "c.pem".into(),
            key: Some("k.pem".into()),
            dest_ip: Some(config::DestIp::Any),
        };
        let dirs = crate::tls::CertDirs {
            certs: dir.clone(),
            keys: dir.clone(),
        };
        let store = CertStore::load(&[entry], &dirs, keep.provider()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let srv = TlsServer::with_store(Arc::new(store), &keep).unwrap();
        let metrics = TlsMetrics::new(&Registry::default());
        let conn = srv.accept("127.0.0.1".parse().unwrap()).unwrap();
        (
            TlsLayer::new(Connection::Server(conn), metrics.clone()),
            metrics,
            cert.der().clone(),
        )
    }

    fn client(root: rustls::pki_types::CertificateDer<'static>) -> rustls::ClientConnection {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("mem.test").unwrap())
            .unwrap()
    }

    /// Moves the client's bytes to the server's inbound pipe and back.
    fn pump(c: &mut rustls::ClientConnection, to_server: &Pipe, to_client: &Pipe) {
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        to_server.bytes.borrow_mut().extend(out);
        let inbound: Vec<u8> = to_client.bytes.borrow_mut().drain(..).collect();
        if !inbound.is_empty() {
            let mut r = &inbound[..];
            while !r.is_empty() {
                c.read_tls(&mut r).unwrap();
            }
            c.process_new_packets().unwrap();
        }
    }

    #[test]
    fn a_handshake_and_data_cross_a_small_socket_buffer_without_stalling() {
        let (mut s, metrics, root) = server();
        let mut c = client(root);
        let (to_server, to_client) = (Pipe::default(), Pipe::default());
        let io = MemIo {
            inbound: &to_server,
            outbound: &to_client,
            room: 700,
        };
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        c.writer().write_all(&[b'q'; 5000]).unwrap();
        for _ in 0..1000 {
            pump(&mut c, &to_server, &to_client);
            // The server side is driven as a session would: flush, then read until
            // WouldBlock.
            s.flush(&io, false).unwrap();
            loop {
                match s.read(&io, &mut buf) {
                    Ok(0) => panic!("unexpected end"),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            if got.len() == 5000 {
                break;
            }
        }
        assert_eq!(got.len(), 5000);
        assert!(!s.handshaking());
        assert_eq!(metrics.success_in.get(), 1);
        // A large answer through a 700-byte socket: taken once pending ciphertext
        // drains, never lost.
        let answer = vec![b'a'; 50_000];
        let mut sent = 0;
        let mut plain = Vec::new();
        for _ in 0..10_000 {
            match s.write(&io, &answer[sent..], false).unwrap() {
                Wrote::Taken(n) => sent += n,
                Wrote::Later { socket } => assert!(socket),
            }
            pump(&mut c, &to_server, &to_client);
            let mut b = [0u8; 4096];
            while let Ok(n) = c.reader().read(&mut b) {
                if n == 0 {
                    break;
                }
                plain.extend_from_slice(&b[..n]);
            }
            if plain.len() == answer.len() && !s.pending() {
                break;
            }
        }
        assert_eq!(plain.len(), answer.len());
        // close_notify, then the FIN once it is out.
        s.shutdown_write(&io);
        for _ in 0..100 {
            pump(&mut c, &to_server, &to_client);
            s.flush(&io, true).unwrap();
            if to_client.closed.get() {
                break;
            }
        }
        assert!(to_client.closed.get());
        assert!(c.process_new_packets().unwrap().peer_has_closed());
    }

    #[test]
    fn plain_http_and_a_cut_handshake_fail_with_their_reasons() {
        let (mut s, metrics, _) = server();
        let (to_server, to_client) = (Pipe::default(), Pipe::default());
        let io = MemIo {
            inbound: &to_server,
            outbound: &to_client,
            room: 1 << 20,
        };
        to_server
            .bytes
            .borrow_mut()
            .extend(b"GET / HTTP/1.1\r\n\r\n");
        assert!(s.read(&io, &mut [0u8; 16]).is_err());
        assert_eq!(s.failure(), Some(Failure::PlainHttp));
        assert!(s.read(&io, &mut [0u8; 16]).is_err(), "reads stay over");

        let (mut s, _, _) = server();
        to_server
            .bytes
            .borrow_mut()
            .extend([0x16, 3, 1, 0, 100, 1, 0]);
        to_server.closed.set(true);
        assert!(s.read(&io, &mut [0u8; 16]).is_err());
        assert_eq!(s.failure(), Some(Failure::Eof));
        assert_eq!(
            metrics.failures_by_reason[Failure::PlainHttp as usize].get(),
            1
        );
    }

    /// The inbound counters: attempts, successes, failures, and `eof` failures.
    fn counts_in(m: &TlsMetrics) -> [u64; 4] {
        [
            m.attempts_in.get(),
            m.success_in.get(),
            m.failures_in.get(),
            m.failures_by_reason[Failure::Eof as usize].get(),
        ]
    }

    #[test]
    fn a_reset_mid_hello_is_an_eof_failure_and_a_connection_without_a_byte_counts_nowhere() {
        let hello = [0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3];
        fn io_of<'a>(inbound: &'a Pipe, outbound: &'a Pipe) -> MemIo<'a> {
            MemIo {
                inbound,
                outbound,
                room: 1 << 20,
            }
        }

        // Part of a ClientHello, then a reset: an attempt that failed (eof).
        let (mut s, m, _) = server();
        let (inp, out) = (Pipe::default(), Pipe::default());
        inp.bytes.borrow_mut().extend(hello);
        let io = io_of(&inp, &out);
        assert_eq!(
            s.read(&io, &mut [0u8; 16]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        inp.reset.set(true);
        assert!(s.read(&io, &mut [0u8; 16]).is_err());
        assert_eq!(s.failure(), Some(Failure::Eof));
        drop(s);
        assert_eq!(counts_in(&m), [1, 0, 1, 1]);

        // A connect closed (FIN) or reset before any byte: no attempt, no failure.
        for reset in [false, true] {
            let (mut s, m, _) = server();
            let (inp, out) = (Pipe::default(), Pipe::default());
            inp.closed.set(true);
            inp.reset.set(reset);
            assert!(s.read(&io_of(&inp, &out), &mut [0u8; 16]).is_err());
            drop(s);
            assert_eq!(counts_in(&m), [0, 0, 0, 0], "reset: {reset}");
        }

        // A handshake its session gave up on (a stop) failed all the same.
        let (mut s, m, _) = server();
        let (inp, out) = (Pipe::default(), Pipe::default());
        inp.bytes.borrow_mut().extend(hello);
        assert!(s.read(&io_of(&inp, &out), &mut [0u8; 16]).is_err());
        drop(s);
        assert_eq!(counts_in(&m), [1, 0, 1, 0]);
        assert_eq!(m.failures_by_reason[Failure::Other as usize].get(), 1);
    }

    #[test]
    fn an_origin_handshake_that_is_reset_or_abandoned_fails_and_an_unused_one_counts_nowhere() {
        let (_, _, root) = server();
        let m = TlsMetrics::new(&Registry::default());
        let out_reason = |f: Failure| m.failures_out_by_reason[f as usize].as_ref().unwrap().get();
        let (to_origin, from_origin) = (Pipe::default(), Pipe::default());
        let io = MemIo {
            inbound: &from_origin,
            outbound: &to_origin,
            room: 1 << 20,
        };

        // Made, never used (its connect failed): no attempt.
        drop(TlsLayer::new(
            Connection::Client(client(root.clone())),
            m.clone(),
        ));
        assert_eq!(m.attempts_out.get(), 0);
        assert_eq!(m.failures_out.get(), 0);

        // The ClientHello goes, then the origin resets: an eof failure.
        let mut c = TlsLayer::new(Connection::Client(client(root.clone())), m.clone());
        assert!(c.flush(&io, false).unwrap());
        assert!(!to_origin.bytes.borrow().is_empty(), "the ClientHello went");
        from_origin.reset.set(true);
        assert!(c.read(&io, &mut [0u8; 16]).is_err());
        drop(c);
        assert_eq!(m.attempts_out.get(), 1);
        assert_eq!(m.failures_out.get(), 1);
        assert_eq!(out_reason(Failure::Eof), 1);

        // Given up on by its session (its client left) mid-handshake: other.
        from_origin.reset.set(false);
        let mut c = TlsLayer::new(Connection::Client(client(root)), m.clone());
        assert!(c.flush(&io, false).unwrap());
        drop(c);
        assert_eq!(m.attempts_out.get(), 2);
        assert_eq!(m.failures_out.get(), 2);
        assert_eq!(out_reason(Failure::Other), 1);
        assert_eq!(m.success_out.get(), 0);
    }
}
