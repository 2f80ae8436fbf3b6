//! `NetProcessor`: the accept subsystem's front door. `main_accept` starts a port's
//! accepting in the mode its options name and returns the [`Action`] that stops it.
//!
//! This file sits on top of `net/`: it imports the rest and nothing imports it (but
//! `mod.rs`, to re-export it). Its methods run on the caller's thread (the thread that
//! starts, reloads or stops ports); each mode's file says where its accept loop runs.

use super::accept::{Acceptor, PortAccept};
use super::connection::ConnectionTable;
use super::listener::{ListenError, Listener};
use super::options::{AcceptMode, AcceptOptions, NetTuning};
use super::shared::{NetShared, NetStats};
use super::{accept_event, accept_periodic, accept_threads};
use crate::eventsystem::{poll_errors, Action, EventProcessor};
use crate::stats::Registry;
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// The accept subsystem.
#[derive(Clone)]
pub struct NetProcessor {
    shared: Arc<NetShared>,
}

impl std::fmt::Debug for NetProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetProcessor").finish_non_exhaustive()
    }
}

impl NetProcessor {
    /// A processor accepting onto `events`' threads, counting into `registry`.
    pub fn new(
        events: Arc<EventProcessor>,
        registry: Arc<Registry>,
        tuning: &NetTuning,
    ) -> NetProcessor {
        let r = &registry;
        let stats = NetStats {
            accepts_open: r.gauge("proxy.process.net.accepts_currently_open"),
            total_accepts: r.counter("proxy.process.tcp.total_accepts"),
            throttled: r.counter("proxy.process.net.connections_throttled_in"),
            accept_errors: r.counter("proxy.process.net.accept_errors"),
            accept_pauses: r.counter("proxy.process.net.accept_pauses"),
            queue_delay_us: r.histogram("proxy.process.net.accept_queue_delay_us"),
        };
        r.gauge("proxy.process.exec_thread.count")
            .set(events.threads().len() as i64);
        // Counted by the event threads since they started; shown from now on.
        r.adopt_counter(poll_errors::METRIC, events.poll_errors().counter().clone());
        let table = Arc::new(ConnectionTable::new(
            r.gauge("proxy.process.net.connections_currently_open"),
            stats.accept_pauses.clone(),
        ));
        let shared = NetShared::new(events, registry, stats, table, tuning);
        NetProcessor {
            shared: Arc::new(shared),
        }
    }

    /// Applies new tuning to every port at once, live.
    pub fn set_tuning(&self, tuning: &NetTuning) {
        self.shared.set_tuning(tuning);
    }

    /// The event threads connections are handed to.
    pub fn events(&self) -> &Arc<EventProcessor> {
        &self.shared.events
    }

    /// The metrics registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.shared.registry
    }

    /// Client connections open now (`proxy.process.net.connections_currently_open`).
    pub fn connections_open(&self) -> i64 {
        self.shared
            .registry
            .gauge("proxy.process.net.connections_currently_open")
            .get()
    }

    /// Starts accepting on `listener` and returns the action that stops it.
    ///
    /// Cancelling the action stops every accept loop of this call within 100 ms in every
    /// mode and decrements `accepts_currently_open` once per loop. The listening socket
    /// closes when its last owner drops it: the caller keeps it open by keeping its `Arc`
    /// (so a reload can start new acceptors on it before cancelling these).
    pub fn main_accept(
        &self,
        acceptor: Arc<dyn Acceptor>,
        listener: Arc<Listener>,
        options: &AcceptOptions,
    ) -> Result<Action, ListenError> {
        let net = self.shared.clone();
        let port = Arc::new(PortAccept::new(
            net.clone(),
            acceptor,
            options.label.clone(),
            listener.local_addr(),
            options.sock.clone(),
            options.dispatch,
            matches!(options.mode, AcceptMode::Drain { .. }),
        ));
        let threads_gauge = net.registry.gauge(&format!(
            "proxy.process.net.port.{}.accept_threads",
            options.label
        ));
        let threads = net.events.threads();
        // Accepted sockets inherit these (see accept.rs); reuseport siblings get theirs
        // below.
        options.sock.apply(listener.as_raw_fd());
        match &options.mode {
            AcceptMode::Threads {
                count,
                avoid_event_cores,
            } => {
                let cores = if *avoid_event_cores {
                    self.free_cores()
                } else {
                    Vec::new()
                };
                accept_threads::start(&port, &listener, (*count).max(1), &cores, None).map_err(
                    |source| ListenError {
                        op: "spawn accept thread for",
                        addr: listener.local_addr().to_string(),
                        source,
                    },
                )?;
                // Configured threads of this port's live accepts: dual-stack ports share a
                // label, and a reload swap briefly runs old and new side by side.
                let n = (*count).max(1) as i64;
                threads_gauge.add(n);
                port.action.on_cancel(move || {
                    threads_gauge.add(-n);
                });
            }
            AcceptMode::Event {
                listener_per_thread,
            } => {
                let mut listeners = vec![Arc::new(listener.try_clone()?)];
                if *listener_per_thread {
                    for i in 1..threads.len() {
                        // The caller's siblings are dup'ed like the main socket: epoll
                        // tells the registrations of overlapping acceptors apart by fd.
                        let sibling = match options.siblings.get(i - 1) {
                            Some(s) => s.try_clone()?,
                            None => listener.reuseport_sibling()?,
                        };
                        options.sock.apply(sibling.as_raw_fd());
                        listeners.push(Arc::new(sibling));
                    }
                }
                accept_event::start(&port, &listeners, threads);
            }
            AcceptMode::Drain { quiet } => {
                accept_threads::start(&port, &listener, 1, &[], Some(*quiet)).map_err(
                    |source| ListenError {
                        op: "spawn drain thread for",
                        addr: listener.local_addr().to_string(),
                        source,
                    },
                )?;
            }
            AcceptMode::Periodic => {
                let mutex = options.mutex.clone().unwrap_or_default();
                accept_periodic::start(&port, &listener, threads, mutex);
            }
        }
        Ok(port.action.clone())
    }

    /// Cores no ET_NET thread is pinned to (all cores when they are not pinned).
    fn free_cores(&self) -> Vec<usize> {
        let pinned = self.shared.events.pinned_cores();
        if pinned.is_empty() {
            return Vec::new();
        }
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .filter(|c| !pinned.contains(c))
            .collect()
    }
}
