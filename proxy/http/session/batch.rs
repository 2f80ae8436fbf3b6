//! What an ET_NET thread keeps for its sessions ([`ThreadState`]: one thread-local),
//! and the end-of-batch send of origin requests. Runs on that thread.

use super::origin::Pooled;
use super::Session;
use iocore::{EThread, Event};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// This thread's sessions and what they share.
pub(super) struct ThreadState {
    /// Every session started here (swept for timeouts).
    pub(super) sessions: Vec<Weak<RefCell<Session>>>,
    /// Idle origin connections by origin address, most recently pooled last.
    pub(super) pool: HashMap<SocketAddr, Vec<Pooled>>,
    /// Until when the pool counts as short: a request opened a new origin connection
    /// less than `origin::POOL_SHORT_FOR` ago. Meanwhile finished transactions give
    /// their connection back to the pool instead of keeping it attached to their idle
    /// client: in a burst, a connection pinned that way made another request open one
    /// more (638 opened over two 6,000-connection bursts with pinning, 286 without).
    pub(super) pool_short_until: Option<Instant>,
    /// Sessions waiting for another thread's answer (a cache disk read, a name
    /// lookup), by ticket ([`await_answer`]), and the last ticket given.
    awaiting: HashMap<u64, Weak<RefCell<Session>>>,
    last_ticket: u64,
    /// Sessions whose request bytes for their origin wait for the end of the current
    /// batch of events ([`drive_batched`]).
    origin_flush: Vec<Rc<RefCell<Session>>>,
    /// Requests waiting for a place under `per_server.connection.max`, per origin, in
    /// arrival order (`queue.rs`).
    pub(super) origin_queue: HashMap<SocketAddr, VecDeque<Weak<RefCell<Session>>>>,
    /// Whether the queue's poll is scheduled.
    pub(super) queue_polling: bool,
    /// Sessions that yielded with work left, driven again on the next loop turn.
    drive_later: Vec<Weak<RefCell<Session>>>,
    /// Where reads land when the session's buffer has no room (`io.rs`).
    pub(super) scratch: Box<[u8]>,
}

thread_local! {
    static STATE: RefCell<ThreadState> = RefCell::new(ThreadState {
        sessions: Vec::new(),
        pool: HashMap::new(),
        pool_short_until: None,
        awaiting: HashMap::new(),
        last_ticket: 0,
        origin_flush: Vec::new(),
        origin_queue: HashMap::new(),
        queue_polling: false,
        drive_later: Vec::new(),
        scratch: vec![0; super::io::READ_CHUNK].into_boxed_slice(),
    });
}

/// Runs `f` with this thread's state. Never nested, and never around code that runs a
/// session: callers take what they need out, then run sessions.
pub(super) fn with_state<R>(f: impl FnOnce(&mut ThreadState) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// A session's place in its thread's batch of events.
#[derive(Default)]
pub(super) struct Batch {
    /// Bytes for the origin wait for the end of the batch (`drive_batched` is running
    /// the session).
    pub(super) hold_origin: bool,
    /// In this thread's `origin_flush` queue.
    queued: bool,
}

/// Runs a session after readiness (or a new connection) inside the thread's batch of
/// events, holding what it has for its origin until the whole batch has been dispatched
/// (`flush_origins`, an `after_io` hook). The requests of a batch then reach their
/// origins back to back, and an origin that was asleep finds several at once instead of
/// waking for each (HAProxy gets the same effect from running its streams after the
/// poll's I/O callbacks). Sending at once, nginx as origin woke once every 2 requests
/// and spent 40 % more CPU per request behind Turnstile than behind HAProxy; held, it
/// wakes once every 4-6 and spends the same. Client writes are not held: holding them
/// too was slower (the client waits longer for its answer and wakes just as often).
pub(super) fn drive_batched(t: &mut EThread, rc: &Rc<RefCell<Session>>) {
    let mut s = rc.borrow_mut();
    s.batch.hold_origin = true;
    s.drive(t);
    s.batch.hold_origin = false;
    if s.batch.queued {
        return; // already held in this batch: settled after its flush
    }
    if s.dead || !s.origin_writable() {
        s.settle(t);
        return;
    }
    s.batch.queued = true;
    drop(s);
    let first = with_state(|st| {
        st.origin_flush.push(rc.clone());
        st.origin_flush.len() == 1
    });
    if first {
        t.after_io(flush_origins);
    }
}

/// Sends what the batch's sessions held for their origins, in the order they were held,
/// and lets each go on from there.
fn flush_origins(t: &mut EThread) {
    let queued = with_state(|st| std::mem::take(&mut st.origin_flush));
    for rc in queued {
        let mut s = rc.borrow_mut();
        s.batch.queued = false;
        s.drive(t);
        s.settle(t);
    }
}

/// Drives `me` again on the thread's next loop turn, after the events waiting now.
pub(super) fn drive_later(t: &mut EThread, me: &Weak<RefCell<Session>>) {
    let first = with_state(|st| {
        st.drive_later.push(me.clone());
        st.drive_later.len() == 1
    });
    if first {
        t.schedule_imm(Event::new(drive_deferred));
    }
}

fn drive_deferred(t: &mut EThread) {
    let later = with_state(|st| std::mem::take(&mut st.drive_later));
    for rc in later.iter().filter_map(Weak::upgrade) {
        drive_batched(t, &rc);
    }
}

/// A ticket for `me`, about to wait for another thread's answer; the answer, run on
/// this thread, finds the session again with [`answered`].
pub(super) fn await_answer(me: &Weak<RefCell<Session>>) -> u64 {
    with_state(|st| {
        st.last_ticket += 1;
        st.awaiting.insert(st.last_ticket, me.clone());
        st.last_ticket
    })
}

/// The session that waited with `ticket`, if it is still alive and `still` says it is
/// still waiting (it may have timed out or moved on).
pub(super) fn answered(
    ticket: u64,
    still: impl FnOnce(&Session) -> bool,
) -> Option<Rc<RefCell<Session>>> {
    let waiter = with_state(|st| st.awaiting.remove(&ticket))?;
    let rc = waiter.upgrade()?; // the session ended meanwhile
    let alive = {
        let s = rc.borrow();
        !s.dead && still(&s)
    };
    alive.then_some(rc)
}

/// Schedules this thread's poll `f` every `period`, unless `running` says it is.
pub(super) fn start_poll(
    t: &mut EThread,
    running: fn(&mut ThreadState) -> &mut bool,
    f: fn(&mut EThread),
    period: Duration,
) {
    if !with_state(|st| std::mem::replace(running(st), true)) {
        t.schedule_in(Event::new(f), period);
    }
}

/// Ends a turn of a poll started by [`start_poll`]: it runs again after `period` while
/// `more` is left to poll for, else it stops.
pub(super) fn rearm_poll(
    t: &mut EThread,
    running: fn(&mut ThreadState) -> &mut bool,
    more: bool,
    period: Duration,
) {
    if more {
        t.set_period(period);
    } else {
        with_state(|st| *running(st) = false);
    }
}
