//! Proxy ports: bind (or adopt) each configured port's listening socket, start its
//! acceptors in the mode its settings name, and swap those acceptors live on reload.
//!
//! Runs on the daemon's main thread; the acceptors it starts run where their mode says.

use crate::error::{Error, Result};
use crate::http::HttpAcceptor;
use config::PortSpec;
use iocore::{
    AcceptMode, AcceptOptions, Action, ListenOptions, Listener, NetProcessor, SockOptions,
};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

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
        }
    }
}

/// A bound port, accepting or about to.
pub struct Port {
    /// Its descriptor.
    pub spec: PortSpec,
    /// The listening socket; kept here so acceptors can be swapped on it.
    pub listener: Arc<Listener>,
    /// The metrics label: the configured port, or the bound one for port 0.
    pub label: String,
    /// How it accepts now.
    pub plan: AcceptPlan,
    acceptor: Arc<HttpAcceptor>,
    action: Option<Action>,
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
    // SAFETY: `fd` is open, was inherited for us, and nothing else in the process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Listener::adopt(owned)?)
}

/// Binds, adopts or takes from systemd the socket of `spec`. The error names the port.
pub fn open(
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
    o.reuseport |= spec.reuseport;
    // Bound now (a taken port fails start-up), listening only when the port starts.
    Listener::reserve(&o).map_err(|e| Error::from(e).within(&name))
}

fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a == b
        || (b.port() != 0
            && a.port() == b.port()
            && b.ip().is_unspecified()
            && a.is_ipv4() == b.is_ipv4())
}

impl Port {
    /// A bound port that is not accepting yet.
    pub fn new(
        spec: PortSpec,
        listener: Listener,
        plan: AcceptPlan,
        acceptor: Arc<HttpAcceptor>,
    ) -> Port {
        let label = match spec.port {
            0 => listener.local_addr().port().to_string(),
            p => p.to_string(),
        };
        Port {
            spec,
            listener: Arc::new(listener),
            label,
            plan,
            acceptor,
            action: None,
        }
    }

    /// Starts accepting with `plan` (on the same socket). When the port was already
    /// accepting, the new acceptors start before the old ones are cancelled, so no
    /// connection is refused during the swap.
    pub fn start(
        &mut self,
        net: &NetProcessor,
        plan: AcceptPlan,
        sock: &SockOptions,
    ) -> Result<()> {
        let name = || format!("port {}", self.spec);
        if self.action.is_none() {
            // First start: the socket was only bound until now.
            self.listener
                .listen()
                .map_err(|e| Error::from(e).within(name()))?;
        }
        let mut opts = AcceptOptions::new(self.label.clone(), plan.mode());
        opts.sock = sock.clone();
        let action = net
            .main_accept(self.acceptor.clone(), self.listener.clone(), &opts)
            .map_err(|e| Error::from(e).within(name()))?;
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
        Ok(())
    }

    /// Stops accepting; the socket stays open (until the port is dropped).
    pub fn stop(&mut self) {
        if let Some(a) = self.action.take() {
            a.cancel();
        }
    }

    /// Waits for stopped acceptors to finish.
    pub fn wait_stopped(&self, limit: Duration) -> bool {
        self.action.as_ref().is_none_or(|a| a.wait_done(limit))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }
}
