//! Host names resolved off the event threads. `getaddrinfo` blocks, for seconds when a
//! name server is slow or gone, and an ET_NET thread that blocks stalls every session it
//! runs; so a forward proxy's names (and CONNECT's) are looked up on a few resolver
//! threads, and the answer goes back to the asking thread as an event.
//!
//! Threads: [`Resolver::resolve`] runs on the asking (ET_NET) thread and never blocks;
//! the lookup and its callback run on a resolver thread. Answers (a name's address,
//! whatever the port) are cached for [`TTL`]; failures are not (the next request asks
//! again). Concurrent lookups of one name share one `getaddrinfo`. A lookup that hangs
//! (a name server that never answers) holds its thread for the resolver's whole timeout;
//! so when every thread is busy and a name waits, one more starts, up to
//! [`MAX_THREADS`], and those beyond the first ones end after [`IDLE_EXIT`] idle: a
//! client asking for names that never resolve cannot hold up everyone else's.

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

/// Resolver threads at most.
pub(crate) const MAX_THREADS: usize = 16;
/// How long a thread beyond the pool's first ones waits for a name before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(60);

/// A pool of resolver threads with a shared answer cache.
pub(crate) struct Resolver {
    jobs: mpsc::Sender<String>,
    state: Arc<Mutex<State>>,
    pool: Arc<Pool>,
}

/// How busy the resolver threads are.
#[derive(Default)]
struct Counts {
    running: usize,
    waiting: usize,
    queued: usize,
}

/// The resolver threads: how many run, how many wait for a name, and what each needs.
struct Pool {
    rx: Mutex<mpsc::Receiver<String>>,
    /// Threads that stay however idle.
    core: usize,
    /// Threads running and waiting for a name, and names sent and not yet taken.
    counts: Mutex<Counts>,
    lookup: Lookup,
    stats: ResolverStats,
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
    /// Starts `threads` resolver threads running `lookup`, counting into `stats`; more
    /// start while names wait (up to [`MAX_THREADS`]).
    pub(crate) fn new(threads: usize, lookup: Lookup, stats: ResolverStats) -> Resolver {
        let (tx, rx) = mpsc::channel::<String>();
        let core = threads.clamp(1, MAX_THREADS);
        let pool = Arc::new(Pool {
            rx: Mutex::new(rx),
            core,
            counts: Mutex::new(Counts::default()),
            lookup,
            stats,
        });
        let state = Arc::new(Mutex::new(State::default()));
        for _ in 0..core {
            start_thread(&pool, &state);
        }
        Resolver {
            jobs: tx,
            state,
            pool,
        }
    }

    /// Resolver threads running now.
    #[cfg(test)]
    fn threads(&self) -> usize {
        lock(&self.pool.counts).running
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
        // Counted before it is sent, so that the thread taking it never counts it off
        // first. More names wait than threads do (some lookups may hang): one more.
        let more = {
            let mut c = lock(&self.pool.counts);
            c.queued += 1;
            c.queued > c.waiting && c.running < MAX_THREADS
        };
        if self.jobs.send(host.to_string()).is_err() {
            // No resolver thread left (cannot happen while the pool lives): fail fast.
            lock(&self.pool.counts).queued -= 1;
            let waiting = lock(&self.state).pending.remove(host).unwrap_or_default();
            for (_, done) in waiting {
                done(Err(
                    Error::new(ErrorKind::ResolveFailed).context("no resolver thread")
                ));
            }
            return;
        }
        if more {
            start_thread(&self.pool, &self.state);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts one more resolver thread (counted as running and waiting from now); a
/// thread that cannot be made is logged, and the others serve.
fn start_thread(pool: &Arc<Pool>, state: &Arc<Mutex<State>>) {
    let n = {
        let mut c = lock(&pool.counts);
        c.running += 1;
        c.waiting += 1;
        c.running
    };
    let (p, st) = (pool.clone(), state.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("resolver-{}", n - 1))
        .spawn(move || run(&p, &st));
    if let Err(e) = spawned {
        let mut c = lock(&pool.counts);
        c.running -= 1;
        c.waiting -= 1;
        log::warn!("cannot start a resolver thread: {e}");
    }
}

/// A resolver thread: looks names up one after another, until the pool is dropped (or,
/// beyond the pool's first threads, until it has waited [`IDLE_EXIT`] for a name).
fn run(pool: &Pool, state: &Mutex<State>) {
    loop {
        let next = lock(&pool.rx).recv_timeout(IDLE_EXIT);
        let host = {
            let mut c = lock(&pool.counts);
            match next {
                Ok(host) => {
                    c.waiting -= 1;
                    c.queued -= 1;
                    host
                }
                Err(mpsc::RecvTimeoutError::Timeout) if c.running <= pool.core => continue,
                Err(_) => {
                    c.running -= 1;
                    c.waiting -= 1;
                    return;
                }
            }
        };
        let stats = &pool.stats;
        stats.lookups.inc();
        let answer = (pool.lookup)(&host, 0).map(|a| a.ip());
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
        lock(&pool.counts).waiting += 1;
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

    /// Lookups of "hang-N" never end while the test runs (a name server that is gone).
    fn hanging(host: &str, port: u16) -> Answer {
        if host.starts_with("hang") {
            std::thread::sleep(Duration::from_secs(3600));
        }
        Ok(SocketAddr::from(([10, 0, 0, 1], port)))
    }

    #[test]
    fn names_that_never_resolve_do_not_hold_up_the_others() {
        let r = Resolver::new(2, hanging, ResolverStats::default());
        let (tx, rx) = mpsc::channel();
        for i in 0..6 {
            ask(&r, &format!("hang-{i}"), &tx);
        }
        ask(&r, "fine", &tx);
        let (name, a) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((name.as_str(), a.is_ok()), ("fine", true));
        // Names are shared however many ask: a thread each, up to the bound.
        for i in 0..40 {
            ask(&r, &format!("hang-more-{i}"), &tx);
        }
        assert_eq!(r.threads(), MAX_THREADS);
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
