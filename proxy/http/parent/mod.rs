//! Parent selection (SPEC §10, ATS parent.config): which `[[parent]]` rule a request
//! falls under (the most specific `dest_domain` of the remapped host), which of its
//! parents it tries and in what order (`ring.rs` for `consistent_hash`), and each
//! parent's health, shared by every event thread through atomics.
//!
//! The table is built when the configuration is (re)loaded, on the main thread: names
//! resolved, rings hashed, each parent's health carried over from the table before when
//! it keeps its `host:port`. A request then reads it through the live settings and walks
//! it with a [`ParentRoute`], on its session's ET_NET thread: no lock, no allocation
//! beyond the route itself.
//!
//! Health, as ATS's: a parent is marked down after `fail_threshold` connect failures in
//! a row (refused, reset or timed out before a response byte); after `retry_time` one
//! request may try it again (a probe), which marks it up when it gets a response head
//! and down for another `retry_time` when it fails. A 5xx is a response: it counts as
//! up. The `Via` loop check lives in `via.rs`.

pub mod ring;
pub mod via;

use crate::error::{Error, Result};
use config::{ParentRule, RoundRobin};
use iocore::stats::{Counter, Gauge};
use iocore::Registry;
use ring::Ring;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Milliseconds since the first call, at least 1 (0 means "never" in the atomics).
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

/// One parent's address, health and counters; shared by every thread and carried over
/// reloads that keep its `host:port`.
#[derive(Debug)]
pub(crate) struct ParentState {
    /// `host:port`, as configured.
    pub(crate) name: String,
    /// Where it is (resolved when the configuration was loaded).
    pub(crate) addr: SocketAddr,
    /// Connect failures in a row.
    fails: AtomicU32,
    /// When it was marked down (`now_ms`), 0 while up.
    down_at: AtomicU64,
    /// When a request last set out to try it while down (`now_ms`), 0 if none.
    probe_at: AtomicU64,
    requests: Arc<Counter>,
    connect_failures: Arc<Counter>,
    marked_down: Arc<Counter>,
    up: Arc<Gauge>,
}

/// Whether a request may try a parent now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Availability {
    Up,
    /// Down, but `retry_time` has passed and this request is the one to try it.
    Probe,
    Down,
}

/// The last parts of a parent's metric names.
const METRIC_LEAVES: [&str; 4] = ["requests", "connect_failures", "marked_down", "up"];

/// The name of the parent `name`'s metric `leaf` (one of [`METRIC_LEAVES`]).
fn metric_name(name: &str, leaf: &str) -> String {
    format!("proxy.process.http.parent.{name}.{leaf}")
}

impl ParentState {
    fn new(name: String, addr: SocketAddr, registry: &Registry) -> ParentState {
        let metric = |leaf: &str| metric_name(&name, leaf);
        let up = registry.gauge(&metric("up"));
        up.set(1);
        ParentState {
            requests: registry.counter(&metric("requests")),
            connect_failures: registry.counter(&metric("connect_failures")),
            marked_down: registry.counter(&metric("marked_down")),
            up,
            name,
            addr,
            fails: AtomicU32::new(0),
            down_at: AtomicU64::new(0),
            probe_at: AtomicU64::new(0),
        }
    }

    fn availability(&self, now: u64, retry_ms: u64) -> Availability {
        let down_at = self.down_at.load(Ordering::Acquire);
        if down_at == 0 {
            return Availability::Up;
        }
        // One probe per retry_time: a probe whose request vanished (its client left
        // before the connect ended) lets another try after retry_time again.
        let probe_at = self.probe_at.load(Ordering::Acquire);
        if now.saturating_sub(down_at.max(probe_at)) < retry_ms {
            return Availability::Down;
        }
        match self
            .probe_at
            .compare_exchange(probe_at, now, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Availability::Probe,
            Err(_) => Availability::Down,
        }
    }

    /// A response head came from it: it is up.
    pub(crate) fn succeeded(&self) {
        self.fails.store(0, Ordering::Relaxed);
        if self.down_at.swap(0, Ordering::AcqRel) != 0 {
            self.up.set(1);
            log::info!("parent {} is up again", self.name);
        }
    }

    /// A connect to it failed (or it closed before a response byte); `threshold`
    /// failures in a row mark it down.
    pub(crate) fn failed(&self, threshold: u32) {
        self.connect_failures.inc();
        let now = now_ms();
        if self.down_at.load(Ordering::Acquire) != 0 {
            // A failed probe: down for another retry_time.
            self.down_at.store(now, Ordering::Release);
            return;
        }
        let fails = self.fails.fetch_add(1, Ordering::AcqRel) + 1;
        if fails >= threshold
            && self
                .down_at
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.marked_down.inc();
            self.up.set(0);
            log::warn!(
                "parent {} marked down after {fails} connect failures in a row",
                self.name
            );
        }
    }
}

/// A rule ready to route by: its parents' states and, for `consistent_hash`, its ring.
#[derive(Debug)]
pub(crate) struct ParentSel {
    pub(crate) rule: ParentRule,
    parents: Vec<Arc<ParentState>>,
    ring: Option<Ring>,
    /// The next start for `strict`.
    turn: AtomicUsize,
}

/// Every `[[parent]]` rule, with the health records that apply to all of them.
#[derive(Debug, Default)]
pub struct ParentTable {
    rules: Vec<Arc<ParentSel>>,
    fail_threshold: u32,
    retry_ms: u64,
    max_attempts: u32,
}

impl ParentTable {
    /// Builds the table for `cfg` (resolving parent names: a name that does not resolve is
    /// a configuration error naming it), keeping the health of every parent `previous`
    /// already had under the same `host:port` and address.
    pub fn build(
        cfg: &config::Config,
        registry: &Registry,
        previous: &ParentTable,
    ) -> Result<ParentTable> {
        let mut known: HashMap<&str, &Arc<ParentState>> =
            previous.states().map(|p| (p.name.as_str(), p)).collect();
        let mut made: HashMap<String, Arc<ParentState>> = HashMap::new();
        let mut rules = Vec::with_capacity(cfg.parents.len());
        for (n, rule) in cfg.parents.iter().enumerate() {
            let mut parents = Vec::with_capacity(rule.parents.len());
            for p in &rule.parents {
                let name = p.name();
                let state = match made.get(&name) {
                    Some(s) => s.clone(),
                    None => {
                        let addr = crate::http::remap::resolve(&p.host, p.port).map_err(|e| {
                            e.into_config(format_args!("parent: entry {}: parent {name}", n + 1))
                        })?;
                        let state = match known.remove(name.as_str()) {
                            Some(old) if old.addr == addr => old.clone(),
                            _ => Arc::new(ParentState::new(name.clone(), addr, registry)),
                        };
                        made.insert(name, state.clone());
                        state
                    }
                };
                parents.push(state);
            }
            let ring = (rule.round_robin == RoundRobin::ConsistentHash).then(|| {
                Ring::build(
                    rule.parents
                        .iter()
                        .zip(&parents)
                        .map(|(p, s)| (s.name.as_str(), p.weight)),
                )
            });
            rules.push(Arc::new(ParentSel {
                rule: rule.clone(),
                parents,
                ring,
                turn: AtomicUsize::new(0),
            }));
        }
        let pp = &cfg.http.parent_proxy;
        Ok(ParentTable {
            rules,
            fail_threshold: pp.fail_threshold,
            retry_ms: pp.retry_time_s.saturating_mul(1000),
            max_attempts: pp.total_connect_attempts,
        })
    }

    /// Unregisters the metrics of every parent of this table that `next`, the table
    /// replacing it, no longer has: a removed parent's `up` would otherwise read 1 for
    /// the life of the process.
    pub fn retire_removed(&self, next: &ParentTable, registry: &Registry) {
        let kept: HashSet<&str> = next.states().map(|p| p.name.as_str()).collect();
        for p in self.states().filter(|p| !kept.contains(p.name.as_str())) {
            for leaf in METRIC_LEAVES {
                registry.remove(&metric_name(&p.name, leaf));
            }
        }
    }

    /// Every parent of every rule (one parent under several rules, several times).
    fn states(&self) -> impl Iterator<Item = &Arc<ParentState>> {
        self.rules.iter().flat_map(|r| r.parents.iter())
    }

    /// Whether there are any rules at all (most configurations have none).
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule for a request to `host` (lower-case or not, without port): the one with
    /// the most specific `dest_domain`.
    pub(crate) fn rule_for(&self, host: &str) -> Option<&Arc<ParentSel>> {
        let host = host.trim_end_matches('.');
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        self.rules
            .iter()
            .filter_map(|r| r.rule.matches(host).map(|len| (len, r)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, r)| r)
    }

    /// A route through `sel`'s parents for a request whose URL (path and query, as
    /// nginx's `$request_uri`) is `key`.
    pub(crate) fn route(&self, sel: &Arc<ParentSel>, key: &[u8]) -> ParentRoute {
        let n = sel.parents.len();
        let (start, span) = match (&sel.ring, sel.rule.round_robin) {
            (Some(ring), _) => (ring.point_of(key), ring.len()),
            (None, RoundRobin::Strict) => (sel.turn.fetch_add(1, Ordering::Relaxed) % n, n),
            (None, _) => (0, n),
        };
        ParentRoute {
            sel: sel.clone(),
            start,
            span,
            walked: 0,
            considered: Vec::new(),
            attempts: 0,
            max_attempts: self.max_attempts,
            fail_threshold: self.fail_threshold,
            retry_ms: self.retry_ms,
            current: None,
            origin: None,
        }
    }
}

/// One request's way through its rule's parents: which it tried, which it is on.
#[derive(Debug)]
pub(crate) struct ParentRoute {
    sel: Arc<ParentSel>,
    /// Where the walk starts: a ring point, or an index into the parents.
    start: usize,
    /// Positions to walk: the ring's points, or the parents.
    span: usize,
    walked: usize,
    /// Parents already met on the walk (tried, or found down).
    considered: Vec<u16>,
    attempts: u32,
    max_attempts: u32,
    fail_threshold: u32,
    retry_ms: u64,
    /// The parent the request is on now.
    current: Option<Arc<ParentState>>,
    /// The request's origin, where it goes once no parent can take it (`go_direct`);
    /// `None` when it was not looked up.
    pub(crate) origin: Option<SocketAddr>,
}

impl ParentRoute {
    /// The next parent to try, in the rule's order, skipping those down (unless this
    /// request is the one to probe it again); `None` once the rule has none left or
    /// `total_connect_attempts` were made.
    pub(crate) fn next(&mut self) -> Option<SocketAddr> {
        self.current = None;
        if self.attempts >= self.max_attempts {
            return None;
        }
        let now = now_ms();
        while self.walked < self.span {
            let pos = self.start + self.walked;
            self.walked += 1;
            let index = match &self.sel.ring {
                Some(ring) => ring.parent_at(pos),
                None => pos % self.span,
            };
            if self.considered.contains(&(index as u16)) {
                continue;
            }
            self.considered.push(index as u16);
            let p = &self.sel.parents[index];
            if p.availability(now, self.retry_ms) == Availability::Down {
                continue;
            }
            self.attempts += 1;
            p.requests.inc();
            self.current = Some(p.clone());
            return Some(p.addr);
        }
        None
    }

    /// The parent this request is on got a response head to it.
    pub(crate) fn succeeded(&self) {
        if let Some(p) = &self.current {
            p.succeeded();
        }
    }

    /// The parent this request is on could not be reached (or closed before a response
    /// byte).
    pub(crate) fn failed(&self) {
        if let Some(p) = &self.current {
            p.failed(self.fail_threshold);
        }
    }

    /// The request is on a parent (not gone direct).
    pub(crate) fn on_parent(&self) -> bool {
        self.current.is_some()
    }

    /// Its rule's `go_direct`.
    pub(crate) fn go_direct(&self) -> bool {
        self.sel.rule.go_direct
    }

    /// Its rule's `parent_is_proxy`.
    pub(crate) fn parent_is_proxy(&self) -> bool {
        self.sel.rule.parent_is_proxy
    }
}

/// No parent of a request's rule could take it and `go_direct` is false (502).
pub(crate) fn no_parent() -> Error {
    Error::new(crate::error::ErrorKind::NoParent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(round_robin: &str, parents: &str, threshold: u32) -> ParentTable {
        let cfg = config::parse(
            &format!(
                "[proxy.config.http]\nparent_proxy.fail_threshold = {threshold}\n\
                 [[parent]]\ndest_domain = \".\"\nparents = {parents}\nround_robin = \"{round_robin}\"\n\
                 [[parent]]\ndest_domain = \"example.com\"\nparents = [\"10.9.9.9:1\"]\n"
            ),
            "t",
            &|_| None,
        )
        .unwrap();
        ParentTable::build(&cfg, &Registry::default(), &ParentTable::default()).unwrap()
    }

    fn order(t: &ParentTable, key: &str) -> Vec<u16> {
        let mut r = t.route(t.rule_for("x.org").unwrap(), key.as_bytes());
        std::iter::from_fn(|| r.next().map(|a| a.port())).collect()
    }

    const THREE: &str = "[\"10.0.0.1:1\", \"10.0.0.2:2\", \"10.0.0.3:3\"]";

    #[test]
    fn the_most_specific_rule_wins() {
        let t = table("false", THREE, 10);
        assert_eq!(
            t.rule_for("www.Example.com").unwrap().rule.dest_domain,
            "example.com"
        );
        assert_eq!(t.rule_for("example.org").unwrap().rule.dest_domain, ".");
    }

    #[test]
    fn false_goes_in_order_and_strict_in_turn() {
        let t = table("false", THREE, 10);
        assert_eq!(order(&t, "/a"), [1, 2, 3]);
        assert_eq!(order(&t, "/b"), [1, 2, 3]);
        let t = table("strict", THREE, 10);
        assert_eq!(order(&t, "/a"), [1, 2, 3]);
        assert_eq!(order(&t, "/a"), [2, 3, 1]);
        assert_eq!(order(&t, "/a"), [3, 1, 2]);
    }

    #[test]
    fn consistent_hash_walks_the_ring_from_the_urls_point() {
        let t = table("consistent_hash", THREE, 10);
        let ring = t.rules[0].ring.as_ref().unwrap();
        for key in ["/a", "/b", "/c", "/d"] {
            let o = order(&t, key);
            assert_eq!(o.len(), 3);
            assert_eq!(
                usize::from(o[0]) - 1,
                ring.parent_of(key.as_bytes()).unwrap()
            );
            assert_eq!(order(&t, key), o, "the same URL, the same order");
        }
    }

    #[test]
    fn a_parent_is_marked_down_after_the_threshold_and_probed_after_retry_time() {
        let mut t = table("false", THREE, 2);
        t.max_attempts = 1;
        t.retry_ms = 60_000;
        let sel = t.rule_for("x.org").unwrap().clone();
        let first = &sel.parents[0];
        let fail_first = |t: &ParentTable| {
            let mut r = t.route(&sel, b"/");
            assert_eq!(r.next().map(|a| a.port()), Some(1));
            r.failed();
        };
        fail_first(&t);
        assert_eq!(order(&t, "/"), [1], "one failure: still up");
        fail_first(&t);
        assert_eq!(first.marked_down.get(), 1);
        assert_eq!(first.up.get(), 0);
        assert_eq!(order(&t, "/"), [2], "down: skipped");
        // retry_time passed: one request (only one) tries it again.
        t.retry_ms = 0;
        let mut probe = t.route(&sel, b"/");
        assert_eq!(probe.next().map(|a| a.port()), Some(1));
        t.retry_ms = 60_000;
        assert_eq!(order(&t, "/"), [2], "the probe is out: the others skip it");
        probe.succeeded();
        assert_eq!(first.up.get(), 1);
        assert_eq!(order(&t, "/"), [1]);
        assert_eq!(first.connect_failures.get(), 2);
        assert_eq!(first.requests.get(), 5);
    }

    #[test]
    fn a_reload_keeps_the_health_of_parents_it_keeps() {
        let t = table("false", THREE, 1);
        let mut r = t.route(t.rule_for("x.org").unwrap(), b"/");
        r.next();
        r.failed();
        let cfg = config::parse(
            "[[parent]]\ndest_domain = \".\"\nparents = [\"10.0.0.4:4\", \"10.0.0.1:1\"]\n",
            "t",
            &|_| None,
        )
        .unwrap();
        let again = ParentTable::build(&cfg, &Registry::default(), &t).unwrap();
        assert_eq!(order(&again, "/"), [4], "10.0.0.1:1 is still down");
    }
}
