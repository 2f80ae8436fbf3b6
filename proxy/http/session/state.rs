//! What an ET_NET thread keeps for its sessions: one [`ThreadState`] in one
//! thread-local, reached through [`with_state`]. Runs on that thread.

use super::pool::Pool;
use super::{Session, READ_CHUNK};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Instant;

/// This thread's sessions and what they share.
pub(super) struct ThreadState {
    /// Every session started here (swept for timeouts).
    pub(super) sessions: Vec<Weak<RefCell<Session>>>,
    /// Idle origin connections by origin address, most recently pooled last.
    pub(super) pool: Pool,
    /// Until when the pool counts as short: a request opened a new origin connection
    /// less than `origin.rs`'s `POOL_SHORT_FOR` ago. Meanwhile finished transactions give
    /// their connection back to the pool instead of keeping it attached to their idle
    /// client: in a burst, a connection pinned that way made another request open one
    /// more (638 opened over two 6,000-connection bursts with pinning, 286 without).
    pub(super) pool_short_until: Option<Instant>,
    /// Sessions waiting for another thread's answer (a cache disk read, a name
    /// lookup), by ticket ([`await_answer`]), and the last ticket given.
    pub(super) awaiting: HashMap<u64, Weak<RefCell<Session>>>,
    pub(super) last_ticket: u64,
    /// Sessions whose request bytes for their origin wait for the end of the current
    /// batch of events ([`drive_batched`]).
    pub(super) origin_flush: Vec<Rc<RefCell<Session>>>,
    /// Requests waiting for a place under `per_server.connection.max`, per origin, in
    /// arrival order (`queue.rs`).
    pub(super) origin_queue: HashMap<SocketAddr, VecDeque<Weak<RefCell<Session>>>>,
    /// Whether the queue's poll is scheduled.
    pub(super) queue_polling: bool,
    /// Sessions that yielded with work left, driven again on the next loop turn.
    pub(super) drive_later: Vec<Weak<RefCell<Session>>>,
    /// Where reads land when the session's buffer has no room (`io.rs`).
    pub(super) scratch: Box<[u8]>,
}

thread_local! {
    static STATE: RefCell<ThreadState> = RefCell::new(ThreadState {
        sessions: Vec::new(),
        pool: Pool::default(),
        pool_short_until: None,
        awaiting: HashMap::new(),
        last_ticket: 0,
        origin_flush: Vec::new(),
        origin_queue: HashMap::new(),
        queue_polling: false,
        drive_later: Vec::new(),
        scratch: vec![0; READ_CHUNK].into_boxed_slice(),
    });
}

/// Runs `f` with this thread's state. Never nested, and never around code that runs a
/// session: callers take what they need out, then run sessions.
pub(super) fn with_state<R>(f: impl FnOnce(&mut ThreadState) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}
