//! When sessions run within their thread's batch of events: the end-of-batch send of
//! what they hold for their origins and clients, the yield of a session with work left, the tickets that find a
//! session again when another thread answers it, and the thread's polls. Runs on that
//! ET_NET thread.

use super::state::{with_state, ThreadState};
use super::Session;
use iocore::{EThread, Event};
use std::cell::RefCell;
use std::os::fd::AsFd;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// A session's place in its thread's batch of events.
#[derive(Default)]
pub(super) struct Batch {
    /// Bytes for the origin wait for the end of the batch (`drive_batched` is running
    /// the session).
    pub(super) hold_origin: bool,
    /// Plain bytes for the client too, when the thread sends a batch's bytes in one
    /// io_uring submission (`net.send_batch`).
    pub(super) hold_client: bool,
    /// In this thread's queue of sessions holding bytes (`ThreadState::held`).
    queued: bool,
}

/// Runs a session after readiness (or a new connection) inside the thread's batch of
/// events, holding what it has for its origin (and, with `net.send_batch`, for its
/// client) until the whole batch has been dispatched (`flush_held`, an `after_io`
/// hook). The requests of a batch then reach their origins back to back, and an origin
/// that was asleep finds several at once instead of waking for each (HAProxy gets the
/// same effect from running its streams after the poll's I/O callbacks). Sending at
/// once, nginx as origin woke once every 2 requests and spent 40 % more CPU per request
/// behind Turnstile than behind HAProxy; held, it wakes once every 4-6.
///
/// Held bytes sent one send(2) at a time still lose much of that on a shared core: the
/// first send wakes its peer, which preempts this thread on the way out of the call
/// (0.2-0.3 preemptions per keep-alive request, all at a send's return) and takes one
/// request before the next is sent. So with `net.send_batch` every held byte, the
/// clients' answers too, leaves in one io_uring submission (`send_together`), and the
/// peers run once the whole batch is theirs: 0.10 context switches per request instead
/// of 0.35, 10-29 % less CPU per request (README, "Sends of a batch in one
/// submission"). Without it client writes are not held: one by one at the batch's end
/// they were slower (the client waits longer for its answer and wakes just as often).
pub(super) fn drive_batched(t: &mut EThread, rc: &Rc<RefCell<Session>>) {
    let mut s = rc.borrow_mut();
    s.batch.hold_origin = true;
    let enabled = s.shared.settings.send_batch;
    s.batch.hold_client = with_state(|st| st.send_batch(enabled).is_some());
    s.drive(t);
    s.batch.hold_origin = false;
    let client = std::mem::take(&mut s.batch.hold_client) && s.client_batchable().is_some();
    if s.batch.queued {
        return; // already held in this batch: settled after its flush
    }
    if s.dead || !(s.origin_writable() || client) {
        s.settle(t);
        return;
    }
    s.batch.queued = true;
    drop(s);
    let first = with_state(|st| {
        st.held.push(rc.clone());
        st.held.len() == 1
    });
    if first {
        t.after_io(flush_held);
    }
}

/// Sends what the batch's sessions held for their origins and clients, in the order
/// they were held, and lets each go on from there.
fn flush_held(t: &mut EThread) {
    let mut queued = with_state(|st| {
        let spare = std::mem::take(&mut st.held_spare);
        std::mem::replace(&mut st.held, spare)
    });
    send_together(&queued);
    for rc in queued.drain(..) {
        let mut s = rc.borrow_mut();
        s.batch.queued = false;
        s.drive(t);
        s.settle(t);
    }
    with_state(|st| st.held_spare = queued);
}

/// Sends what `queued` sessions hold for plain origins and clients in one submission
/// (the thread's [`iocore::SendBatch`], where the kernel has io_uring), so that no peer
/// the first send wakes preempts this thread before the last byte is out. What is left
/// (TLS, a partial send, a full socket, a lone send) the sessions send or wait for
/// themselves when driven next.
fn send_together(queued: &[Rc<RefCell<Session>>]) {
    let (mut who, mut results, submissions) = with_state(|st| {
        let mut who = std::mem::take(&mut st.sent_by);
        let mut results = std::mem::take(&mut st.sent);
        let Some(batch) = st.opened_send_batch() else {
            return (who, results, 0);
        };
        let held: Vec<_> = queued.iter().map(|rc| rc.borrow()).collect();
        let mut sends: Vec<(&dyn AsFd, &[u8])> = Vec::with_capacity(held.len());
        for (i, s) in held.iter().enumerate().filter(|(_, s)| !s.dead) {
            if let Some((sock, bytes)) = s.origin_batchable() {
                who.push((i, false));
                sends.push((sock, bytes));
            }
            if let Some((conn, bytes)) = s.client_batchable() {
                who.push((i, true));
                sends.push((conn, bytes));
            }
        }
        // One send alone is the session's own to make (a plain send(2) costs less).
        let submissions = if sends.len() > 1 {
            batch.send_all(&sends, &mut results)
        } else {
            0
        };
        (who, results, submissions)
    });
    if let Some(first) = queued.first().filter(|_| submissions > 0) {
        let m = &first.borrow().shared.metrics;
        m.batched_sends.add(results.len() as u64);
        m.send_batches.add(submissions as u64);
    }
    for ((i, client), r) in who.drain(..).zip(results.drain(..)) {
        let mut s = queued[i].borrow_mut();
        if client {
            s.client_batch_sent(r);
        } else {
            s.origin_batch_sent(r);
        }
    }
    with_state(|st| (st.sent_by, st.sent) = (who, results));
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
