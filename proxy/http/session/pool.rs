//! A thread's pool of idle origin connections ([`Pool`], kept in the thread's state):
//! each stays registered with the thread's epoll under a watcher that marks it dead if
//! the origin speaks or closes, so taking one costs no epoll_ctl. Runs on that ET_NET
//! thread.
//!
//! The watcher holds nothing: when the origin speaks or closes, it removes its own
//! registration, and a pooled connection whose token is no longer registered is dead.
//! So pooling a connection allocates nothing (a shared "dead" flag and a boxed watcher
//! holding it were two allocations per pooled connection), and marking one dead costs
//! no search of the pool.

use crate::tls::TlsLayer;
use foldhash::HashMap;
use iocore::{EThread, IoHandler, Ready, Socket, Token, Verdict};
use rustls::pki_types::ServerName;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// Idle origin connections kept per origin per thread, at most. The pool keeps what a
/// burst needed (until `keep_alive_no_activity_timeout_out`, as ATS does), so the next
/// burst does not open them again: with 64, every 6,000-connection burst opened about
/// 1,100–1,400 new origin connections; with the pool kept, none after the first.
const POOL_PER_ORIGIN: usize = 1024;

/// What a pooled connection is for: its address, and for a TLS connection the name it
/// was opened for, so a plain and a TLS connection to one address, or TLS connections
/// for two names, are never mixed up.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct PoolKey {
    pub(super) addr: SocketAddr,
    pub(super) tls: Option<ServerName<'static>>,
    /// The TLS client settings it was made with ([`crate::tls::TlsClient::id`]; 0 for
    /// plain TCP).
    pub(super) tls_settings: usize,
}

/// Idle origin connections by what they are for, most recently pooled last. Looked up
/// twice per transaction (taken, given back), so hashed with foldhash, seeded at random
/// per map, rather than std's SipHash: 3 % fewer user-space instructions per new client
/// connection (23,069 → 22,313), 1 % per keep-alive request (`benches/instructions.sh`).
#[derive(Default)]
pub(super) struct Pool(HashMap<PoolKey, Vec<Pooled>>);

/// An idle origin connection in this thread's pool. It stays registered with the
/// thread's epoll under a [`PoolWatch`], so taking it costs no epoll_ctl.
struct Pooled {
    sock: Socket,
    token: Token,
    /// Its TLS state, for a TLS connection.
    tls: Option<Box<TlsLayer>>,
    /// When it is closed unless taken before (`keep_alive_no_activity_timeout_out`).
    expires: Instant,
}

/// Watches a pooled connection: anything from the origin while idle (its close, or bytes
/// nobody asked for, or an error) makes it unusable, and the watcher then removes its
/// registration, which is how the pool tells (the socket itself stays with the pool
/// until it is taken or swept). A unit struct, so boxing it for the thread's I/O table
/// does not allocate.
struct PoolWatch;

impl iocore::IoHandler for PoolWatch {
    fn ready(&mut self, _t: &mut EThread, _tok: Token, ready: Ready) -> Verdict {
        // Writability alone is no news: an edge-triggered socket reports it again when
        // the origin acknowledges the last request, possibly after it was pooled.
        if ready.is_readable() || ready.is_hup() || ready.is_error() {
            return Verdict::Remove;
        }
        Verdict::Keep
    }
}

/// Whether an idle connection is still open with nothing unasked-for to read (a byte
/// read here is lost, which matters not: such a connection is closed).
pub(super) fn nothing_to_read(s: &Socket) -> bool {
    let mut b = [0u8; 1];
    matches!(s.recv(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl Pool {
    /// Puts an idle connection for `key` in, watched, until `expires`; hands it back
    /// when the pool for `key` is full or the watcher cannot be installed.
    pub(super) fn put(
        &mut self,
        t: &mut EThread,
        key: PoolKey,
        sock: Socket,
        token: Token,
        tls: Option<Box<TlsLayer>>,
        expires: Instant,
    ) -> Result<(), (Socket, Token)> {
        let room = self.0.get(&key).map_or(0, Vec::len) < POOL_PER_ORIGIN;
        if !room || !t.replace_handler(token, Box::new(PoolWatch)) {
            return Err((sock, token));
        }
        self.0.entry(key).or_default().push(Pooled {
            sock,
            token,
            tls,
            expires,
        });
        Ok(())
    }

    /// Takes a live connection for `key` for `handler` (most recently pooled first),
    /// closing dead ones on the way; `verify` also checks each is still open (a byte
    /// read there, TLS or not, means it is not usable anyway).
    pub(super) fn take_live(
        &mut self,
        t: &mut EThread,
        key: &PoolKey,
        verify: bool,
        mut handler: impl FnMut() -> Box<dyn IoHandler>,
    ) -> Option<(Socket, Token, Option<Box<TlsLayer>>)> {
        while let Some(p) = self.0.get_mut(key)?.pop() {
            // Not registered any more: its watcher saw the origin speak or close.
            if !t.is_registered(p.token) {
                continue;
            }
            if verify && !nothing_to_read(&p.sock) {
                drop(t.deregister(p.token));
                continue;
            }
            if t.replace_handler(p.token, handler()) {
                return Some((p.sock, p.token, p.tls));
            }
        }
        None
    }

    /// Closes connections the origin closed meanwhile, or idle past their time.
    pub(super) fn sweep(&mut self, t: &mut EThread, now: Instant) {
        for conns in self.0.values_mut() {
            conns.retain(|c| {
                // Dead (its watcher removed the registration) or idle past its time.
                let keep = t.is_registered(c.token) && c.expires > now;
                if !keep {
                    drop(t.deregister(c.token));
                }
                keep
            });
        }
        self.0.retain(|_, conns| !conns.is_empty());
    }
}
