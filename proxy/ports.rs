//! Proxy ports: bind (or adopt) each configured port's listening socket, start its
//! acceptors in the mode its settings name, swap those acceptors live on reload, stop and
//! start them on `ctl port disable|enable`, and retire sockets without resetting what
//! waits in their queues.
//!
//! A port owns its sockets: the main one and, with `exec_thread.listen`, one SO_REUSEPORT
//! sibling per ET_NET thread after the first, kept across acceptor swaps (iocore would
//! otherwise make new ones per swap and close the old, resetting their queues). A socket
//! no longer needed (a reload leaving per-thread mode, an upgrade to fewer threads, a port
//! an upgrade removes) is retired: new connections are steered to the sockets that stay
//! (or, for a port going away, refused), what waits in it is accepted until its queue
//! stays empty for [`RETIRE_QUIET`], then it closes. With `net.ipv4.tcp_migrate_req = 1`
//! the kernel moves a closed reuseport socket's queue itself and the socket just closes.
//!
//! Each socket has a stable identity across an upgrade, its [`socket_keys`] key and its
//! index among the port's sockets (0 the main one): addresses alone cannot tell apart the
//! per-thread sockets of one port, nor two ports on port 0.
//!
//! Runs on the daemon's main thread; the acceptors it starts run where their mode says.

use crate::error::{Error, Result};
use crate::http::HttpAcceptor;
use config::{PortKind, PortSpec};
use iocore::{
    AcceptMode, AcceptOptions, Action, ListenOptions, Listener, NetProcessor, SockOptions,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// How long a retired socket's queue must stay empty before it closes: a handshake under
/// way when new connections were steered away completes within a round trip, or after
/// the SYN-ACK's first retransmission (1 s) when a packet was lost.
pub const RETIRE_QUIET: Duration = Duration::from_millis(1200);

/// How a port accepts, derived from its descriptor and the global records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptPlan {
    /// Effective accept threads (the port's own `accept_threads=N`, else the global).
    pub threads: u32,
    /// `periodic` token.
    pub periodic: bool,
    /// `exec_thread.listen`: one SO_REUSEPORT socket per ET_NET thread in event mode.
    pub listener_per_thread: bool,
    /// `exec_thread.affinity = "core"`: keep accept threads off ET_NET cores.
    pub avoid_event_cores: bool,
}

impl AcceptPlan {
    /// The iocore accept mode.
    pub fn mode(&self) -> AcceptMode {
        if self.periodic {
            AcceptMode::Periodic
        } else if self.threads > 0 {
            AcceptMode::Threads {
                count: self.threads as usize,
                avoid_event_cores: self.avoid_event_cores,
            }
        } else {
            AcceptMode::Event {
                listener_per_thread: self.listener_per_thread,
            }
        }
    }

    /// How the ready log line names the mode.
    pub fn describe(&self) -> String {
        match self.mode() {
            AcceptMode::Periodic => "periodic".into(),
            AcceptMode::Threads { count, .. } => format!("threads×{count}"),
            AcceptMode::Event {
                listener_per_thread: true,
            } => "event/reuseport".into(),
            AcceptMode::Event { .. } => "event".into(),
            AcceptMode::Drain { .. } => "drain".into(),
        }
    }

    /// One SO_REUSEPORT socket per ET_NET thread.
    fn per_thread(&self) -> bool {
        matches!(
            self.mode(),
            AcceptMode::Event {
                listener_per_thread: true
            }
        )
    }
}

/// The identity of each port's socket across an upgrade, in `specs` order: the socket
/// part of its descriptor (port as configured, family, address, `fd=`), and its rank
/// among ports with the same one (`0 0` are two ports).
pub fn socket_keys(specs: &[PortSpec]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    specs
        .iter()
        .map(|s| {
            let base = PortSpec {
                kind: PortKind::Http,
                accept_threads: None,
                periodic: false,
                reuseport: false,
                ..s.clone()
            }
            .to_string();
            let n = seen.entry(base.clone()).or_default();
            let key = format!("{base}#{n}");
            *n += 1;
            key
        })
        .collect()
}

/// A socket's identity: its port's key and its index among the port's sockets.
pub fn socket_id(key: &str, index: usize) -> String {
    format!("{key}/{index}")
}

/// Sockets a previous process handed over (an upgrade), by port key, each with its index.
#[derive(Default)]
pub struct Handed {
    by_key: HashMap<String, Vec<(usize, Listener)>>,
}

impl Handed {
    /// Adopts inherited descriptor `fd` as socket `index` of the port `key`.
    pub fn add(&mut self, key: &str, index: usize, fd: RawFd) -> Result<()> {
        let l = inherit(fd).map_err(|e| e.within(format!("handed-over socket {key}/{index}")))?;
        self.by_key
            .entry(key.to_string())
            .or_default()
            .push((index, l));
        Ok(())
    }

    /// The main socket of port `key` and its siblings in index order, if handed over.
    fn take(&mut self, key: &str) -> Option<(Listener, Vec<Listener>)> {
        let mut all = self.by_key.remove(key)?;
        all.sort_by_key(|(i, _)| *i);
        let mut it = all.into_iter();
        let (index, main) = it.next()?;
        if index != 0 {
            log::warn!("handed-over port {key} has no main socket; binding it anew");
            return None;
        }
        Some((main, it.map(|(_, l)| l).collect()))
    }

    /// Closes what no port took (this process holds another reference to those sockets
    /// only through its predecessor, which retires them).
    pub fn close_rest(&mut self) {
        for (key, socks) in self.by_key.drain() {
            log::info!(
                "port {key}: not in this configuration; its {} socket(s) stay with the old process to drain",
                socks.len()
            );
        }
    }
}

/// A bound port, accepting or about to.
pub struct Port {
    /// Its descriptor.
    pub spec: PortSpec,
    /// Its socket identity across an upgrade ([`socket_keys`]).
    pub key: String,
    /// The listening socket; kept here so acceptors can be swapped on it.
    pub listener: Arc<Listener>,
    /// With `exec_thread.listen`, the other SO_REUSEPORT sockets (one per ET_NET thread
    /// after the first), kept across acceptor swaps.
    siblings: Vec<Arc<Listener>>,
    /// The metrics label: the configured port, or the bound one for port 0.
    pub label: String,
    /// How it accepts (or will, once enabled).
    pub plan: AcceptPlan,
    /// False after `ctl port disable`: no acceptors, the sockets kept.
    pub enabled: bool,
    /// Whether the main socket listens yet (it is only bound until the port starts).
    listening: bool,
    acceptor: Arc<HttpAcceptor>,
    action: Option<Action>,
    /// Acceptors cancelled by [`Port::stop`], for [`Port::wait_stopped`].
    stopping: Vec<Action>,
    /// Drains of retired sockets still running.
    retiring: Vec<Action>,
}

/// Listening sockets handed over by systemd (LISTEN_FDS / LISTEN_PID), by bound address.
pub fn systemd_listeners() -> Vec<Listener> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if !pid_ok || n <= 0 {
        return Vec::new();
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    (3..3 + n)
        .filter_map(|fd| match inherit(fd) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("systemd socket fd={fd}: {e}");
                None
            }
        })
        .collect()
}

/// Adopts inherited descriptor `fd` as a listening socket.
fn inherit(fd: i32) -> Result<Listener> {
    // SAFETY: F_GETFD only queries whether `fd` is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        // Named by `fd=N` in the port's descriptor, or by systemd's LISTEN_FDS.
        return Err(Error::config(format!("fd={fd} is not open")));
    }
    // Not taken over unless it is a listening socket: a wrong LISTEN_FDS or `fd=N` must
    // not make this process close a descriptor it uses for something else.
    if !fd_is_listening(fd) {
        return Err(Error::config(format!("fd={fd} is not a listening socket")));
    }
    // SAFETY: `fd` is open, was inherited for us, and nothing else in the process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Listener::adopt(owned)?)
}

/// Takes the sockets of `spec` (port identity `key`) from the previous process of an
/// upgrade, or binds, adopts or takes from systemd its socket. The error names the port.
pub fn open(
    spec: &PortSpec,
    key: &str,
    listen: &ListenOptions,
    inherited: &mut Vec<Listener>,
    handed: &mut Handed,
) -> Result<(Listener, Vec<Listener>)> {
    if let Some(found) = handed.take(key) {
        return Ok(found);
    }
    open_one(spec, listen, inherited).map(|l| (l, Vec::new()))
}

fn open_one(
    spec: &PortSpec,
    listen: &ListenOptions,
    inherited: &mut Vec<Listener>,
) -> Result<Listener> {
    let name = format!("port {}", spec);
    if let Some(fd) = spec.fd {
        return inherit(fd).map_err(|e| e.within(&name));
    }
    let addr = spec.bind_addr();
    if let Some(i) = inherited
        .iter()
        .position(|l| same_addr(l.local_addr(), addr))
    {
        return Ok(inherited.swap_remove(i));
    }
    let mut o = listen.clone();
    o.addr = addr;
    // Only the `reuseport` token asks to share the port with other processes. The
    // SO_REUSEPORT that `exec_thread.listen` needs for its per-thread sockets is set
    // after the bind: a bind with it would silently join another same-user process's
    // group on the port (another daemon) instead of failing like a plain bind.
    let late_reuseport = o.reuseport && !spec.reuseport;
    o.reuseport = spec.reuseport;
    // Bound now (a taken port fails start-up), listening only when the port starts.
    let mut l = Listener::reserve(&o).map_err(|e| Error::from(e).within(&name))?;
    if late_reuseport {
        l.enable_reuseport()
            .map_err(|e| Error::from(e).within(&name))?;
    }
    Ok(l)
}

fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a == b
        || (b.port() != 0
            && a.port() == b.port()
            && b.ip().is_unspecified()
            && a.is_ipv4() == b.is_ipv4())
}

impl Port {
    /// A bound port that is not accepting yet, with the siblings an upgrade handed over.
    pub fn new(
        spec: PortSpec,
        key: String,
        (listener, siblings): (Listener, Vec<Listener>),
        plan: AcceptPlan,
        acceptor: Arc<HttpAcceptor>,
    ) -> Port {
        let label = match spec.port {
            0 => listener.local_addr().port().to_string(),
            p => p.to_string(),
        };
        // An adopted or handed-over socket listens already.
        let listening = listener_is_listening(&listener);
        Port {
            spec,
            key,
            listener: Arc::new(listener),
            siblings: siblings.into_iter().map(Arc::new).collect(),
            label,
            plan,
            enabled: true,
            listening,
            acceptor,
            action: None,
            stopping: Vec::new(),
            retiring: Vec::new(),
        }
    }

    /// Starts accepting with `plan` (on the same sockets), `threads` being the ET_NET
    /// count. When the port was already accepting, the new acceptors start before the old
    /// ones are cancelled, so no connection is refused during the swap; sockets the new
    /// plan does not use are retired (see the module documentation). A disabled port only
    /// takes the plan, for when it is enabled.
    pub fn start(
        &mut self,
        net: &NetProcessor,
        plan: AcceptPlan,
        sock: &SockOptions,
        threads: usize,
    ) -> Result<()> {
        let name = format!("port {}", self.spec);
        let name = || name.clone();
        if !self.enabled {
            // Its gauges say 0 from the start (a disabled port an upgrade handed over).
            let prefix = format!("proxy.process.net.port.{}", self.label);
            net.registry()
                .gauge(&format!("{prefix}.accepts_currently_open"));
            net.registry().gauge(&format!("{prefix}.accept_threads"));
            net.registry().counter(&format!("{prefix}.total_accepts"));
            self.plan = plan;
            return Ok(());
        }
        if !self.listening {
            // First start: the socket was only bound until now.
            self.listener
                .listen()
                .map_err(|e| Error::from(e).within(name()))?;
            self.listening = true;
        }
        let want = if plan.per_thread() {
            threads.saturating_sub(1)
        } else {
            0
        };
        if self.siblings.len() < want {
            self.add_siblings(want).map_err(|e| e.within(name()))?;
        }
        let retired = self.siblings.split_off(want);
        let mut opts = AcceptOptions::new(self.label.clone(), plan.mode());
        opts.sock = sock.clone();
        opts.siblings = self.siblings.clone();
        let action = net
            .main_accept(self.acceptor.clone(), self.listener.clone(), &opts)
            .map_err(|e| Error::from(e).within(name()))?;
        if !retired.is_empty() {
            // Before the old acceptors go: from now on new connections reach only the
            // sockets that stay.
            self.steer(1 + want);
        }
        if let Some(old) = self.action.replace(action) {
            old.cancel();
            if !old.wait_done(Duration::from_secs(1)) {
                log::warn!(
                    "port {}: old acceptors still stopping after 1 s",
                    self.label
                );
            }
        }
        self.plan = plan;
        self.retire(net, retired, sock);
        Ok(())
    }

    /// Makes siblings up to `want`, after any retirement in progress ended (its steering
    /// would starve new siblings) and the group's steering is undone.
    fn add_siblings(&mut self, want: usize) -> Result<()> {
        for a in self.retiring.drain(..) {
            a.wait_done(RETIRE_QUIET * 3);
        }
        if !self.listener.reuseport() {
            let l = Arc::get_mut(&mut self.listener).ok_or_else(|| {
                Error::config("exec_thread.listen: the socket is shared and lacks SO_REUSEPORT")
            })?;
            l.enable_reuseport()?;
        }
        if let Err(e) = self.listener.unsteer_reuseport() {
            log::warn!("port {}: undoing reuseport steering: {e}", self.label);
        }
        while self.siblings.len() < want {
            let sibling = self.listener.reuseport_sibling()?;
            self.siblings.push(Arc::new(sibling));
        }
        Ok(())
    }

    /// Steers the reuseport group's new connections to its first `keep` sockets (the
    /// main one, then siblings in the order they started listening).
    fn steer(&self, keep: usize) {
        if iocore::migrate_req_enabled() {
            return;
        }
        if let Err(e) = self.listener.steer_reuseport(keep as u32) {
            log::warn!("port {}: cannot steer its reuseport group: {e}", self.label);
        }
    }

    /// Closes `sockets` without resetting what waits in them: new connections no longer
    /// reach them (steered or refused by the caller), so each is drained until its queue
    /// stays empty for [`RETIRE_QUIET`], then closes.
    fn retire(&mut self, net: &NetProcessor, sockets: Vec<Arc<Listener>>, sock: &SockOptions) {
        if sockets.is_empty() {
            return;
        }
        if iocore::migrate_req_enabled() {
            log::info!(
                "port {}: closing {} socket(s); the kernel migrates their queues",
                self.label,
                sockets.len()
            );
            return;
        }
        log::info!(
            "port {}: retiring {} socket(s): draining their queues before closing",
            self.label,
            sockets.len()
        );
        self.retiring.retain(|a| a.running() > 0);
        for l in sockets {
            let mut opts = AcceptOptions::new(
                self.label.clone(),
                AcceptMode::Drain {
                    quiet: RETIRE_QUIET,
                },
            );
            opts.sock = sock.clone();
            match net.main_accept(self.acceptor.clone(), l, &opts) {
                Ok(a) => self.retiring.push(a),
                Err(e) => log::warn!("port {}: cannot drain a retired socket: {e}", self.label),
            }
        }
    }

    /// Stops accepting; the sockets stay open. [`Port::wait_stopped`] waits for the
    /// acceptors to be gone.
    pub fn stop(&mut self) {
        if let Some(a) = self.action.take() {
            a.cancel();
            self.stopping.push(a);
        }
    }

    /// `ctl port disable`: stops accepting, keeps the sockets (connects wait in their
    /// backlog). False if it was disabled already.
    pub fn disable(&mut self) -> bool {
        let was = std::mem::replace(&mut self.enabled, false);
        if let Some(a) = self.action.take() {
            a.cancel();
            // So that `accepts_currently_open` says so when the command returns.
            a.wait_done(Duration::from_secs(1));
        }
        was
    }

    /// `ctl port enable`: accepts again on the same sockets. False if it was enabled.
    pub fn enable(
        &mut self,
        net: &NetProcessor,
        sock: &SockOptions,
        threads: usize,
    ) -> Result<bool> {
        if self.enabled {
            return Ok(false);
        }
        self.enabled = true;
        let plan = self.plan.clone();
        self.start(net, plan, sock, threads)?;
        Ok(true)
    }

    /// Waits for the acceptors [`Port::stop`] cancelled to finish (what they accept
    /// meanwhile is counted in `connections_currently_open` before this returns).
    pub fn wait_stopped(&mut self, limit: Duration) -> bool {
        let done = self.stopping.iter().all(|a| a.wait_done(limit));
        if done {
            self.stopping.clear();
        }
        done
    }

    /// Waits for the drains of retired sockets to end.
    pub fn wait_retired(&self, limit: Duration) -> bool {
        self.retiring.iter().all(|a| a.wait_done(limit))
    }

    /// Whether a drain of a retired socket is still running.
    pub fn retiring(&self) -> bool {
        self.retiring.iter().any(|a| a.running() > 0)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Every socket of the port with its identity, main first.
    pub fn sockets(&self) -> Vec<(String, RawFd)> {
        std::iter::once(&self.listener)
            .chain(&self.siblings)
            .enumerate()
            .map(|(i, l)| (socket_id(&self.key, i), l.as_raw_fd()))
            .collect()
    }

    /// An upgrade handed this port to the next process, which took the sockets named in
    /// `kept` (this process has stopped accepting): the others are retired, their new
    /// connections steered to the kept ones or, with none kept, refused. Returns the
    /// drains of the retired sockets; this process's descriptors of the kept ones close
    /// with the port.
    pub fn hand_over(
        mut self,
        net: &NetProcessor,
        kept: &[String],
        sock: &SockOptions,
    ) -> Vec<Action> {
        let main_kept = kept.contains(&socket_id(&self.key, 0));
        let mut retired = Vec::new();
        let mut keep = 1;
        for (i, s) in std::mem::take(&mut self.siblings).into_iter().enumerate() {
            if main_kept && kept.contains(&socket_id(&self.key, i + 1)) {
                keep += 1;
                self.siblings.push(s);
            } else {
                retired.push(s);
            }
        }
        if main_kept {
            if !retired.is_empty() {
                self.steer(keep);
            }
        } else {
            retired.insert(0, self.listener.clone());
            for l in &retired {
                if let Err(e) = l.refuse_new_connections() {
                    log::warn!("port {}: cannot refuse new connections: {e}", self.label);
                }
            }
        }
        self.retire(net, retired, sock);
        // The kept sockets stay open in the new process. This process's copies close
        // now (the port is dropped on return): held through the drain, they would keep a
        // socket listening after the new process stopped, its connects completing into a
        // queue nobody reads, then reset when this process exits.
        std::mem::take(&mut self.retiring)
    }

    /// At a stop: accepts what waits in the queues now (those clients completed their
    /// handshake and are answered), then closes the sockets, so that a new connect is
    /// refused instead of waiting in a backlog nobody reads. Runs after [`Port::stop`].
    pub fn close(self, net: &NetProcessor, sock: &SockOptions) -> Vec<Action> {
        let mut drains = Vec::new();
        if !self.listening {
            // Only bound (a stop before the ports started, or a port disabled before
            // then): no queue to drain, and an accept would fail with EINVAL.
            return self.retiring;
        }
        for l in std::iter::once(self.listener).chain(self.siblings) {
            let mut opts = AcceptOptions::new(
                self.label.clone(),
                AcceptMode::Drain {
                    quiet: Duration::ZERO,
                },
            );
            opts.sock = sock.clone();
            match net.main_accept(self.acceptor.clone(), l, &opts) {
                Ok(a) => drains.push(a),
                Err(e) => log::warn!("port {}: draining its queue: {e}", self.label),
            }
        }
        drains.extend(self.retiring);
        drains
    }

    /// The `ctl port list` line: label, address, mode, state.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {} {}",
            self.label,
            self.addr(),
            self.plan.describe(),
            if self.enabled { "enabled" } else { "disabled" }
        )
    }
}

/// Whether `l` listens already (an adopted or inherited socket).
fn listener_is_listening(l: &Listener) -> bool {
    fd_is_listening(l.as_raw_fd())
}

/// Whether descriptor `fd` is a listening socket.
fn fd_is_listening(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live locals describing a writable c_int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && v == 1
}
