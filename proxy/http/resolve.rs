//! Host names resolved off the event threads. `getaddrinfo` blocks, for seconds when a
//! name server is slow or gone, and an ET_NET thread that blocks stalls every session it
//! runs; so a forward proxy's names (and CONNECT's) are looked up on a few resolver
//! threads, and the answer goes back to the asking thread as an event.
//!
//! Threads: [`Resolver::resolve`] runs on the asking (ET_NET) thread and never blocks;
//! the lookup and its callback run on a resolver thread. Answers (a name's address,
//! whatever the port) are cached for [`TTL`]; failures are not (the next request asks
//! again). Concurrent lookups of one name share one `getaddrinfo`.

use crate::error::{Error, ErrorKind};
use iocore::stats::Counter;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is used before the name is looked up again.
pub(crate) const TTL: Duration = Duration::from_secs(60);

/// What a lookup gives: an address, or why not ([`ErrorKind::ResolveFailed`]).
pub(crate) type Answer = crate::error::Result<SocketAddr>;
/// Where an answer goes: runs on a resolver thread.
pub(crate) type Done = Box<dyn FnOnce(Answer) + Send>;
/// The blocking lookup the resolver threads run (asked with port 0).
pub(crate) type Lookup = fn(&str, u16) -> Answer;

#[derive(Default)]
struct State {
    answers: HashMap<String, (IpAddr, Instant)>,
    /// Names being looked up, with everyone waiting for them and the port each wants.
    pending: HashMap<String, Vec<(u16, Done)>>,
}

/// A pool of resolver threads with a shared answer cache.
pub(crate) struct Resolver {
    jobs: mpsc::Sender<String>,
    state: Arc<Mutex<State>>,
}

/// What the resolver counts: lookups made (one per name, however many wait for it),
/// and those that failed.
#[derive(Clone, Default)]
pub(crate) struct ResolverStats {
    pub(crate) lookups: Arc<Counter>,
    pub(crate) failures: Arc<Counter>,
}

/// Answers kept at most; beyond, the stale ones go, then all.
const ANSWERS_KEPT: usize = 4096;

impl Resolver {
    /// Starts `threads` resolver threads running `lookup`, counting into `stats`.
    pub(crate) fn new(threads: usize, lookup: Lookup, stats: ResolverStats) -> Resolver {
        let (tx, rx) = mpsc::channel::<String>();
        let rx = Arc::new(Mutex::new(rx));
        let state = Arc::new(Mutex::new(State::default()));
        for i in 0..threads.max(1) {
            let (rx, state, stats) = (rx.clone(), state.clone(), stats.clone());
            std::thread::Builder::new()
                .name(format!("resolver-{i}"))
                .spawn(move || run(&rx, &state, lookup, &stats))
                .expect("spawn a resolver thread");
        }
        Resolver { jobs: tx, state }
    }

    /// The answer for `host:port` without waiting: an IP literal, or a cached address.
    /// None: it must be looked up ([`resolve`](Self::resolve)).
    pub(crate) fn cached(&self, host: &str, port: u16) -> Option<SocketAddr> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, port));
        }
        let state = lock(&self.state);
        let (ip, at) = state.answers.get(host)?;
        (at.elapsed() < TTL).then_some(SocketAddr::new(*ip, port))
    }

    /// Looks `host:port` up on a resolver thread; `done` runs there with the answer.
    /// Never blocks the caller.
    pub(crate) fn resolve(&self, host: &str, port: u16, done: Done) {
        {
            let mut state = lock(&self.state);
            if let Some(waiting) = state.pending.get_mut(host) {
                waiting.push((port, done));
                return;
            }
            state.pending.insert(host.to_string(), vec![(port, done)]);
        }
        let sent = self.jobs.send(host.to_string());
        if sent.is_err() {
            // No resolver thread left (cannot happen while the pool lives): fail fast.
            let waiting = lock(&self.state).pending.remove(host).unwrap_or_default();
            for (_, done) in waiting {
                done(Err(
                    Error::new(ErrorKind::ResolveFailed).context("no resolver thread")
                ));
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A resolver thread: looks names up one after another, until the pool is dropped.
fn run(
    rx: &Mutex<mpsc::Receiver<String>>,
    state: &Mutex<State>,
    lookup: Lookup,
    stats: &ResolverStats,
) {
    loop {
        let Ok(host) = lock(rx).recv() else { return };
        stats.lookups.inc();
        let answer = lookup(&host, 0).map(|a| a.ip());
        if answer.is_err() {
            stats.failures.inc();
        }
        let waiting = {
            let mut state = lock(state);
            if let Ok(ip) = answer {
                if state.answers.len() >= ANSWERS_KEPT {
                    state.answers.retain(|_, (_, at)| at.elapsed() < TTL);
                    if state.answers.len() >= ANSWERS_KEPT {
                        state.answers.clear();
                    }
                }
                state.answers.insert(host.clone(), (ip, Instant::now()));
            }
            state.pending.remove(&host).unwrap_or_default()
        };
        for (port, done) in waiting {
            done(answer.clone().map(|ip| SocketAddr::new(ip, port)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Lookups of "shared" (only `concurrent_lookups_of_one_name_share_one` asks).
    static SHARED_LOOKUPS: AtomicUsize = AtomicUsize::new(0);

    /// "slow" and "shared" take 300 ms, "bad" fails, anything else is 10.0.0.1 at once.
    fn scripted(host: &str, port: u16) -> Answer {
        match host {
            "slow" | "shared" => {
                if host == "shared" {
                    SHARED_LOOKUPS.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(300));
                Ok(SocketAddr::from(([10, 0, 0, 2], port)))
            }
            "bad" => Err(Error::new(ErrorKind::ResolveFailed).context("cannot resolve bad")),
            _ => Ok(SocketAddr::from(([10, 0, 0, 1], port))),
        }
    }

    fn ask(r: &Resolver, host: &str, tx: &mpsc::Sender<(String, Answer)>) {
        let (tx, name) = (tx.clone(), host.to_string());
        r.resolve(host, 80, Box::new(move |a| drop(tx.send((name, a)))));
    }

    #[test]
    fn a_slow_name_does_not_hold_up_others_and_answers_are_cached() {
        let stats = ResolverStats::default();
        let r = Resolver::new(2, scripted, stats.clone());
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        ask(&r, "slow", &tx);
        ask(&r, "fast", &tx);
        // `resolve` returned at once; the fast answer comes before the slow one.
        assert!(started.elapsed() < Duration::from_millis(200));
        let limit = Duration::from_secs(10);
        let (first, a) = rx.recv_timeout(limit).unwrap();
        assert_eq!(
            (first.as_str(), a),
            ("fast", Ok(SocketAddr::from(([10, 0, 0, 1], 80))))
        );
        assert_eq!(rx.recv_timeout(limit).unwrap().0, "slow");
        assert_eq!(
            r.cached("fast", 80),
            Some(SocketAddr::from(([10, 0, 0, 1], 80)))
        );
        // The name's address serves every port.
        assert_eq!(
            r.cached("fast", 81),
            Some(SocketAddr::from(([10, 0, 0, 1], 81)))
        );
        assert_eq!(r.cached("other", 80), None);
        // IP literals need no lookup.
        assert_eq!(r.cached("[::1]", 8), Some("[::1]:8".parse().unwrap()));
        assert_eq!(
            r.cached("127.0.0.1", 8),
            Some("127.0.0.1:8".parse().unwrap())
        );
        // Failures reach every asker and are not cached.
        ask(&r, "bad", &tx);
        assert!(rx.recv_timeout(limit).unwrap().1.is_err());
        assert_eq!(r.cached("bad", 80), None);
        assert_eq!((stats.lookups.get(), stats.failures.get()), (3, 1));
    }

    #[test]
    fn concurrent_lookups_of_one_name_share_one() {
        let r = Resolver::new(2, scripted, ResolverStats::default());
        let (tx, rx) = mpsc::channel();
        for _ in 0..5 {
            ask(&r, "shared", &tx);
        }
        for _ in 0..5 {
            let (name, a) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!((name.as_str(), a.is_ok()), ("shared", true));
        }
        assert_eq!(SHARED_LOOKUPS.load(Ordering::SeqCst), 1);
    }
}
