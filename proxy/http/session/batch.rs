//! When sessions run within their thread's batch of events: the end-of-batch send of
//! origin requests, the yield of a session with work left, the tickets that find a
//! session again when another thread answers it, and the thread's polls. Runs on that
//! ET_NET thread.

use super::state::{with_state, ThreadState};
use super::Session;
use iocore::{EThread, Event};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

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
