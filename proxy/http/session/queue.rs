//! `per_server.connection.max`: a request beyond an origin's limit waits in this
//! thread's queue for it (`Phase::OriginWait`) until a place is given back (which wakes
//! the thread of the oldest waiting request, on any thread) or the connect timeout ends
//! the wait with a 503. Runs on the session's ET_NET thread.

use super::super::shared::{Admission, OriginWaiter};
use super::batch::{rearm_poll, start_poll};
use super::state::{with_state, ThreadState};
use super::{Counted, Phase, Session};
use iocore::EThread;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often queued requests look for places on their own. A place given back (or left
/// by a waiter) wakes the oldest waiter's thread at once (`OriginLoad::wake_oldest`);
/// this poll only catches a reload that raised or lifted the limit.
const POLL: Duration = Duration::from_millis(10);

fn polling(st: &mut ThreadState) -> &mut bool {
    &mut st.queue_polling
}

impl Session {
    /// Sends the transaction's request to `addr` now if its limit (`origin_max`, 0 for
    /// none) leaves a place, else queues it.
    pub(super) fn admit(&mut self, t: &mut EThread, addr: SocketAddr, origin_max: usize) {
        match self.shared.origin_slot(addr, origin_max, t, resume_queued) {
            Admission::Unlimited => self.send_to_origin(t, addr),
            Admission::Admitted(slot) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.slot = Some(slot);
                }
                self.send_to_origin(t, addr);
            }
            Admission::Wait(waiter) => self.queue_for_origin(t, addr, waiter),
        }
    }

    /// Waits for a place under `per_server.connection.max` to `addr`: in this thread's
    /// queue for it, until `resume_queued` gives it one or the connect timeout ends the
    /// wait with a 503.
    fn queue_for_origin(&mut self, t: &mut EThread, addr: SocketAddr, waiter: OriginWaiter) {
        let m = &self.shared.metrics;
        m.origin_queued.inc();
        if let Some(tx) = self.tx.as_mut() {
            let turn = (waiter, Counted::new(&m.origin_queue), Instant::now());
            tx.queued = Some(Box::new(turn));
        }
        self.phase = Phase::OriginWait;
        self.deadline = Instant::now() + self.shared.settings.timeouts.connect;
        let me = self.me.clone();
        with_state(|st| st.origin_queue.entry(addr).or_default().push_back(me));
        start_poll(t, polling, poll_origin_queue, POLL);
    }

    /// A request waiting for an origin place or a name lookup whose client closed or
    /// reset its connection is dropped: no place is spent on it, and a queue moves on.
    /// true: it was.
    pub(super) fn client_left(&mut self) -> bool {
        // A CONNECT's client may half-close right behind its head and the bytes for the
        // tunnel (`printf 'CONNECT …\r\n\r\nDATA' | nc -N`): its FIN is for the
        // tunnel to pass on. Only a reset ends it here.
        let connect = matches!(&self.phase, Phase::Resolve(r) if r.is_connect());
        if self.client.reset || (self.client.hup && !connect) {
            self.dead = true;
        }
        self.dead
    }

    /// The time a queued request waited, recorded once it leaves the queue.
    pub(super) fn note_queue_wait(&self) {
        if let Some(turn) = self.tx.as_ref().and_then(|tx| tx.queued.as_deref()) {
            let waited = turn.2.elapsed().as_micros() as u64;
            self.shared.metrics.origin_queue_wait_us.record(waited);
        }
    }
}

/// This thread's periodic queue poll: runs every `POLL` while requests wait.
fn poll_origin_queue(t: &mut EThread) {
    resume_queued(t);
    let more = with_state(|st| !st.origin_queue.is_empty());
    rearm_poll(t, polling, more, POLL);
}

/// Gives places under `per_server.connection.max` to this thread's queued requests, first
/// come first served per origin, and sends them on. Requests that left the queue (timed
/// out, client gone) are dropped from it on the way.
fn resume_queued(t: &mut EThread) {
    let ready = with_state(|st| {
        let mut ready = Vec::new();
        for (addr, waiting) in st.origin_queue.iter_mut() {
            while let Some(front) = waiting.front() {
                let Some(rc) = front.upgrade() else {
                    waiting.pop_front();
                    continue;
                };
                let s = rc.borrow();
                if s.dead || !matches!(s.phase, Phase::OriginWait) {
                    drop(s);
                    waiting.pop_front();
                    continue;
                }
                let max = s.shared.with_live(|live| live.origin_max);
                let turn = s.tx.as_ref().and_then(|tx| tx.queued.as_deref());
                // A limit lifted by a reload lets everyone through.
                let slot = match turn {
                    Some((waiter, ..)) if max > 0 => match waiter.take(max) {
                        Some(slot) => Some(slot),
                        None => break,
                    },
                    _ => None,
                };
                drop(s);
                waiting.pop_front();
                ready.push((rc, *addr, slot));
            }
        }
        st.origin_queue.retain(|_, waiting| !waiting.is_empty());
        ready
    });
    for (rc, addr, slot) in ready {
        let mut s = rc.borrow_mut();
        s.note_queue_wait();
        if let Some(tx) = s.tx.as_mut() {
            tx.slot = slot;
            tx.queued = None;
        }
        s.phase = Phase::Exchange;
        s.send_to_origin(t, addr);
        s.drive(t);
        s.settle(t);
    }
}
