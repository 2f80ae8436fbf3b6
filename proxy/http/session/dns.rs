//! A forward proxy's origin names: known at once (an IP literal, a cached answer), or
//! looked up by a resolver thread while the request waits (`Phase::Resolve`). Runs on
//! the session's ET_NET thread; the lookup's answer comes back to it.

use super::super::codec::RequestHead;
use super::super::resolve::Answer;
use super::batch::{answered, await_answer};
use super::{Counted, Phase, Session};
use iocore::EThread;
use std::time::Instant;

/// A request waiting for its origin's name, counted in flight.
pub(super) struct Resolving {
    head: RequestHead,
    active: Counted,
}

impl Resolving {
    /// The request waiting for its name is a CONNECT.
    pub(super) fn is_connect(&self) -> bool {
        self.head.method() == "CONNECT"
    }
}

/// A request routed again once its name was looked up.
pub(super) struct Resumed {
    /// Still counted in flight since it first waited.
    pub(super) active: Counted,
    /// The name, the port and what the lookup found.
    pub(super) answer: (String, u16, Answer),
}

impl Session {
    /// The address of `host:port` if known without waiting: an IP literal, a cached
    /// answer, or `fresh`, the one just looked up for this request (taken). None: look
    /// it up.
    pub(super) fn address_of(
        &self,
        host: &str,
        port: u16,
        fresh: &mut Option<(String, u16, Answer)>,
    ) -> Option<Answer> {
        if let Some((h, p, answer)) = fresh.take() {
            if h == host && p == port {
                return Some(answer);
            }
        }
        self.shared.resolver().cached(host, port).map(Ok)
    }

    /// Parks the request until a resolver thread has looked `host:port` up
    /// (`Phase::Resolve`, at most the connect timeout); `name_resolved` then routes it
    /// again, here.
    pub(super) fn wait_for_name(
        &mut self,
        t: &mut EThread,
        host: String,
        port: u16,
        head: RequestHead,
    ) {
        let id = await_answer(&self.me);
        let active = Counted::new(&self.shared.metrics.active_transactions);
        self.phase = Phase::Resolve(Box::new(Resolving { head, active }));
        self.deadline = Instant::now() + self.shared.settings.timeouts.connect;
        let here = t.handle();
        let name = host.clone();
        // Runs on a resolver thread: hands the answer back to this thread.
        let done = move |answer| here.run(move |t| name_resolved(t, id, name, port, answer));
        self.shared.resolver().resolve(&host, port, Box::new(done));
    }
}

/// Routes again the request that waited for lookup `id` of `host:port`, with its answer.
/// Runs on the session's ET_NET thread, queued there by a resolver thread.
fn name_resolved(t: &mut EThread, id: u64, host: String, port: u16, answer: Answer) {
    let Some(rc) = answered(id, |s| matches!(s.phase, Phase::Resolve(_))) else {
        return;
    };
    let mut s = rc.borrow_mut();
    let Phase::Resolve(parked) = std::mem::replace(&mut s.phase, Phase::ReadRequest) else {
        return;
    };
    let Resolving { head, active } = *parked;
    let resumed = Resumed {
        active,
        answer: (host, port, answer),
    };
    s.route(t, head, Some(resumed));
    s.drive(t);
    s.settle(t);
}
