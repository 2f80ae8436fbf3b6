//! A thread's pool of idle origin connections ([`Pool`], kept in the thread's state):
//! each stays registered with the thread's epoll under a watcher that marks it dead if
//! the origin speaks or closes, so taking one costs no epoll_ctl. Runs on that ET_NET
//! thread.

use iocore::{EThread, IoHandler, Ready, Socket, Token, Verdict};
use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

/// Idle origin connections kept per origin per thread, at most. The pool keeps what a
/// burst needed (until `keep_alive_no_activity_timeout_out`, as ATS does), so the next
/// burst does not open them again: with 64, every 6,000-connection burst opened about
/// 1,100–1,400 new origin connections; with the pool kept, none after the first.
const POOL_PER_ORIGIN: usize = 1024;

/// Idle origin connections by origin address, most recently pooled last.
#[derive(Default)]
pub(super) struct Pool(HashMap<SocketAddr, Vec<Pooled>>);

/// An idle origin connection in this thread's pool. It stays registered with the
/// thread's epoll under a [`PoolWatch`], so taking it costs no epoll_ctl.
struct Pooled {
    sock: Socket,
    token: Token,
    dead: Rc<Cell<bool>>,
    /// When it is closed unless taken before (`keep_alive_no_activity_timeout_out`).
    expires: Instant,
}

/// Watches a pooled connection: anything from the origin while idle (its close, or bytes
/// nobody asked for, or an error) makes it unusable.
struct PoolWatch {
    dead: Rc<Cell<bool>>,
}

impl iocore::IoHandler for PoolWatch {
    fn ready(&mut self, _t: &mut EThread, _tok: Token, ready: Ready) -> Verdict {
        // Writability alone is no news: an edge-triggered socket reports it again when
        // the origin acknowledges the last request, possibly after it was pooled.
        if ready.is_readable() || ready.is_hup() || ready.is_error() {
            self.dead.set(true);
        }
        Verdict::Keep
    }
}

/// Whether an idle connection is still open with nothing unasked-for to read.
fn origin_alive(s: &Socket) -> bool {
    let mut b = [0u8; 1];
    matches!(s.recv(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl Pool {
    /// Puts an idle connection to `addr` in, watched, until `expires`; hands it back
    /// when the pool for `addr` is full or the watcher cannot be installed.
    pub(super) fn put(
        &mut self,
        t: &mut EThread,
        addr: SocketAddr,
        sock: Socket,
        token: Token,
        expires: Instant,
    ) -> Result<(), (Socket, Token)> {
        let room = self.0.get(&addr).map_or(0, Vec::len) < POOL_PER_ORIGIN;
        let dead = Rc::new(Cell::new(false));
        let watcher = PoolWatch { dead: dead.clone() };
        if !room || !t.replace_handler(token, Box::new(watcher)) {
            return Err((sock, token));
        }
        self.0.entry(addr).or_default().push(Pooled {
            sock,
            token,
            dead,
            expires,
        });
        Ok(())
    }

    /// Takes a live connection to `addr` for `handler` (most recently pooled first),
    /// closing dead ones on the way; `verify` also checks each is still open.
    pub(super) fn take_live(
        &mut self,
        t: &mut EThread,
        addr: SocketAddr,
        verify: bool,
        mut handler: impl FnMut() -> Box<dyn IoHandler>,
    ) -> Option<(Socket, Token)> {
        while let Some(p) = self.0.get_mut(&addr)?.pop() {
            if p.dead.get() || (verify && !origin_alive(&p.sock)) {
                drop(t.deregister(p.token));
                continue;
            }
            if t.replace_handler(p.token, handler()) {
                return Some((p.sock, p.token));
            }
        }
        None
    }

    /// Closes connections the origin closed meanwhile, or idle past their time.
    pub(super) fn sweep(&mut self, t: &mut EThread, now: Instant) {
        for conns in self.0.values_mut() {
            conns.retain(|c| {
                let keep = !c.dead.get() && c.expires > now;
                if !keep {
                    drop(t.deregister(c.token));
                }
                keep
            });
        }
        self.0.retain(|_, conns| !conns.is_empty());
    }
}
