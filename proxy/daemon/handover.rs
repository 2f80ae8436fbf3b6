//! Both sides of a zero-downtime upgrade (SPEC §7.1; the protocol is in
//! [`crate::upgrade`]), the drain every stop shares, and `ctl port`.
//!
//! Old side: SIGUSR2 / `ctl server upgrade` starts the new process ([`Daemon::start_upgrade`]);
//! when it asks, the cache spans are released; when it is ready, this process stops
//! accepting, retires the sockets the new one did not take, hands over the admin socket,
//! drains and exits 0 ([`Daemon::hand_over`]). When it fails, exits, or is not ready in
//! time, it is ended and this process serves on as before ([`Daemon::abort_upgrade`]).
//!
//! New side: start-up took the sockets and counters from the old process; once the ports
//! accept it says so ([`Daemon::ports_ready`]), and on `go` it serves: the admin socket
//! and the pid file become its own.
//!
//! Everything here runs on the daemon's main thread.

use super::{sock_options, Daemon};
use crate::ctl::CtlServer;
use crate::error::{Error, Result};
use crate::signals::Control;
use crate::upgrade::{self, Carried, LinkEvent, NewProcess, OldProcess, ToNew, ToOld};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

/// How often a drain looks at the connections left (and at control messages).
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Upgrade state of this process.
#[derive(Default)]
pub(super) struct Upgrade {
    /// Old side: the new process being started.
    pub(super) new: Option<NewProcess>,
    /// New side: the link to the old process, until the ports accept.
    pub(super) old: Option<OldProcess>,
    /// New side: the admin socket, until the old process says go.
    pub(super) admin: Option<UnixListener>,
    /// New side: the old process's pid file (empty: none), which it points at this
    /// process when it hands over: removed at go if this process's own is elsewhere.
    pub(super) old_pid_file: PathBuf,
    /// Whether this process serves (false on the new side until go).
    pub(super) serving: bool,
    /// New side: what was carried from the old process's counters.
    pub(super) carried: Carried,
    /// Old side: the cache spans a failed upgrade gave back are being opened again (on
    /// a `[CACHE INIT]` thread): another upgrade would be handed spans this process is
    /// about to lock, so it waits until they are back.
    pub(super) reattaching: bool,
    /// Old side: a reload was asked while the new process was starting; it applies
    /// when the upgrade ends, in whichever process serves then.
    pub(super) reload_deferred: bool,
    /// New side: the old process's link is open (it drains, and sends its last counts
    /// when it exits). Should this process hand over in turn meanwhile, it waits for
    /// them before its own last counts go to its successor, or they would be lost.
    pub(super) predecessor: bool,
    /// Old side, handed over: the drains of the sockets the new process did not take.
    pub(super) retiring: Vec<iocore::Action>,
}

impl Upgrade {
    /// When the new process being started is given up on, if one is.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.new.as_ref().map(|n| n.deadline)
    }
}

/// The admin socket handed over as descriptor `fd`.
pub(super) fn adopt_admin(fd: RawFd) -> Result<UnixListener> {
    // SAFETY: F_GETFD only queries whether `fd` is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(Error::config(format!(
            "upgrade: the admin socket fd={fd} is not open"
        )));
    }
    // SAFETY: F_SETFD takes an integer argument; no pointers are passed.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: `fd` is open, was inherited for this purpose, and nothing else owns it.
    Ok(UnixListener::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether `a` and `b` name one file (both exist, one device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

fn answer(reply: Option<Sender<(i32, String)>>, code: i32, text: String) {
    if code == 0 {
        log::info!("{}", text.trim_end());
    } else {
        log::error!("{}", text.trim_end());
    }
    if let Some(r) = reply {
        let _ = r.send((code, text));
    }
}

impl Daemon {
    /// Where the upgrade link's events go: this daemon's control loop.
    fn post(&self) -> upgrade::Post {
        let tx = self.tx.clone();
        Box::new(move |event| tx.send(Control::Link(event)).is_ok())
    }

    /// The ports accept: a new process tells the old one; otherwise this process serves
    /// now (systemd and the pid file hear of it).
    pub(super) fn ports_ready(&mut self) {
        let Some(old) = self.up.old.take() else {
            crate::notify::ready();
            crate::pid_file::write(&self.cfg.pid_file);
            return;
        };
        let kept = self
            .ports
            .iter()
            .flat_map(|p| p.sockets().into_iter().map(|(id, _)| id))
            .collect();
        match old.ready(kept, self.post()) {
            Ok(()) => self.up.predecessor = true,
            Err(e) => log::error!("{e}"),
        }
    }

    /// Old side: starts the new process of an upgrade, refusing a second one.
    pub(super) fn start_upgrade(&mut self, reply: Option<Sender<(i32, String)>>) {
        let refuse = |reply, why: String| answer(reply, 1, format!("upgrade refused: {why}\n"));
        if let Some(n) = &self.up.new {
            let why = format!(
                "an upgrade is already in progress (new process pid {})",
                n.pid()
            );
            return refuse(reply, why);
        }
        if !self.up.serving {
            return refuse(reply, "this process is itself still taking over".into());
        }
        if !self.ports_started {
            return refuse(reply, "the ports are not accepting yet".into());
        }
        if self.up.reattaching {
            return refuse(
                reply,
                "the cache spans are being reopened after a failed upgrade; try again once they are open".into(),
            );
        }
        if !self.cfg.cache.storage.is_empty() && !self.http.cache_ready() {
            return refuse(
                reply,
                "the cache is still opening; try again once it is ready".into(),
            );
        }
        let Some(ctl) = &self.ctl else {
            return refuse(
                reply,
                "this process has no admin socket to hand over".into(),
            );
        };
        let sockets =
            self.ports
                .iter()
                .flat_map(|p| {
                    p.sockets().into_iter().enumerate().map(|(index, (_, fd))| {
                        upgrade::PassedSocket {
                            fd,
                            key: p.key.clone(),
                            index,
                        }
                    })
                })
                .collect();
        let hello = ToNew::Hello {
            old_pid: std::process::id(),
            sockets,
            admin_fd: ctl.listener_fd(),
            disabled: self
                .ports
                .iter()
                .filter(|p| !p.enabled)
                .map(|p| p.key.clone())
                .collect(),
            counts: upgrade::counts(&self.registry),
            pid_file: self.cfg.pid_file.clone(),
        };
        crate::notify::reloading("upgrading the binary");
        let timeout = Duration::from_secs(self.cfg.upgrade.ready_timeout_s);
        match NewProcess::start(&self.exe, &self.args, hello, timeout, self.post()) {
            Ok(mut n) => {
                log::info!(
                    "upgrade: started {} as pid {}; this process (pid {}) serves until it is ready",
                    self.exe.display(),
                    n.pid(),
                    std::process::id()
                );
                n.reply = reply;
                self.up.new = Some(n);
            }
            Err(e) => {
                crate::notify::ready();
                answer(reply, 1, format!("upgrade failed: {e}\n"));
            }
        }
    }

    /// A reload, unless an upgrade is in progress: then it waits for the upgrade's end.
    /// Why: a reload that changes a port's accept mode makes (or retires) sockets the
    /// hello did not name; the new process would never get them, and what waits in
    /// them would be reset when this process exits. Deferring refuses no one: the
    /// reload applies here if the upgrade fails, and in the new process if it succeeds.
    pub(super) fn reload_or_defer(&mut self, reply: Option<Sender<(i32, String)>>) {
        let Some(new) = &self.up.new else {
            return self.reload_and_answer(reply);
        };
        // A file that would be refused is refused now, while its writer waits for the
        // answer, not when the upgrade ends with only the log to tell.
        if let Err(e) = self.source.load() {
            let text = format!("reload refused; the running configuration stays:\n{e}\n");
            log::error!("{}", text.trim_end());
            if let Some(r) = reply {
                let _ = r.send((1, text));
            }
            return;
        }
        let text = format!(
            "reload deferred until the upgrade in progress (new process pid {}) ends; \
             it then applies in the process that serves\n",
            new.pid()
        );
        log::info!("{}", text.trim_end());
        self.up.reload_deferred = true;
        if let Some(r) = reply {
            let _ = r.send((0, text));
        }
    }

    /// Old side, the upgrade over: a reload deferred meanwhile applies here (it failed)
    /// or goes to `successor`, the new process that serves now, as a SIGHUP (it reads
    /// the same configuration file).
    fn run_deferred_reload(&mut self, successor: Option<u32>) {
        if !std::mem::take(&mut self.up.reload_deferred) {
            return;
        }
        match successor {
            None => {
                log::info!("upgrade over: applying the reload deferred meanwhile");
                self.reload_and_answer(None);
            }
            Some(pid) => {
                log::info!("upgrade: the reload deferred meanwhile goes to pid {pid}");
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP) {
                    log::error!("upgrade: cannot pass the deferred reload to pid {pid}: {e}");
                }
            }
        }
    }

    /// What the other process of an upgrade said; Some(exit code) when this process is
    /// done (it handed over and drained).
    pub(super) fn on_link(&mut self, event: LinkEvent, rx: &Receiver<Control>) -> Option<i32> {
        match event {
            LinkEvent::FromNew(ToOld::WantSpans) => {
                let n = self.http.cache_store().map_or(0, |c| c.release());
                if let Some(new) = self.up.new.as_mut() {
                    log::info!(
                        "upgrade: released {n} cache spans to pid {}; serving from RAM meanwhile",
                        new.pid()
                    );
                    new.spans_released = n > 0;
                    new.send(&ToNew::SpansReleased);
                }
                None
            }
            LinkEvent::FromNew(ToOld::Ready { kept }) => {
                self.up.new.is_some().then(|| self.hand_over(&kept, rx))
            }
            LinkEvent::FromNew(ToOld::Failed { error }) => {
                self.abort_upgrade(Some(error));
                None
            }
            LinkEvent::NewGone => {
                self.abort_upgrade(None);
                None
            }
            LinkEvent::FromOld(ToNew::Counts { counts }) => {
                self.up.carried.apply(&self.registry, &counts);
                None
            }
            LinkEvent::FromOld(ToNew::Removed { keys }) => {
                self.apply_removals(&keys);
                None
            }
            LinkEvent::FromOld(ToNew::Go) => {
                self.serve();
                None
            }
            LinkEvent::OldGone => {
                self.up.predecessor = false;
                if !self.up.serving {
                    log::warn!("upgrade: the old process went away before handing over");
                    self.serve();
                }
                None
            }
            LinkEvent::FromOld(_) => None,
        }
    }

    /// New side: cache keys the old process removed or stored anew after it released the
    /// spans, whose copies on them are out of date.
    fn apply_removals(&self, keys: &[String]) {
        match self.http.cache_store() {
            Some(cache) => keys.iter().for_each(|k| cache.remove(k)),
            None if !keys.is_empty() => log::warn!(
                "upgrade: {} cache removals of the old process arrived before the cache opened",
                keys.len()
            ),
            None => {}
        }
    }

    /// A link event while this process drains after handing over in turn: what its own
    /// predecessor still reports (its counts, its removals) is taken in, to go on to the
    /// successor with this process's last counts; nothing else matters any more.
    fn on_link_draining(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::FromOld(ToNew::Counts { counts }) => {
                self.up.carried.apply(&self.registry, &counts);
            }
            LinkEvent::FromOld(ToNew::Removed { keys }) => self.apply_removals(&keys),
            LinkEvent::OldGone => self.up.predecessor = false,
            _ => {}
        }
    }

    /// New side: the old process stopped accepting; this one serves.
    fn serve(&mut self) {
        if self.up.serving {
            return;
        }
        self.up.serving = true;
        if let Some(l) = self.up.admin.take() {
            self.serve_admin(l);
        }
        crate::pid_file::write(&self.cfg.pid_file);
        // The old process named this one in its own pid file: gone, if that is another
        // file than this process's (a file rewritten, never removed, so that a reader
        // always finds it).
        let old = std::mem::take(&mut self.up.old_pid_file);
        if !same_file(&old, &self.cfg.pid_file) {
            crate::pid_file::remove(&old);
        }
        join_predecessors_group();
        log::info!(
            "upgrade complete: this process (pid {}) serves",
            std::process::id()
        );
    }

    /// New side, at go: serves the admin socket handed over; or, when the upgrade
    /// changed `admin.socket`, a new one at the new path, the old one closed and its
    /// file removed (kept if the new one cannot be made).
    fn serve_admin(&mut self, inherited: UnixListener) {
        let path = self.cfg.admin.socket.clone();
        let handler = self.ctl_handler.clone();
        let was =
            (inherited.local_addr().ok()).and_then(|a| a.as_pathname().map(Path::to_path_buf));
        let moved = was.as_deref().filter(|old| !same_file(old, &path));
        let served = match moved {
            Some(old) => match CtlServer::start(&path, handler.clone()) {
                Ok(c) => {
                    drop(inherited);
                    // (The old file may have gone, and the new socket taken its name.)
                    if !same_file(old, &path) {
                        let _ = std::fs::remove_file(old);
                    }
                    log::info!(
                        "admin socket moved from {} to {}",
                        old.display(),
                        path.display()
                    );
                    Ok(c)
                }
                Err(e) => {
                    log::error!(
                        "admin socket {}: {e}; keeping {}",
                        path.display(),
                        old.display()
                    );
                    CtlServer::adopt(inherited, old, handler)
                }
            },
            None => CtlServer::adopt(inherited, &path, handler),
        };
        match served {
            Ok(c) => self.ctl = Some(c),
            Err(e) => log::error!("admin socket {}: {e}", path.display()),
        }
    }

    /// Old side: the new process accepts on every port (with the sockets `kept`). Stop
    /// accepting, retire what it did not take, hand over the admin socket, drain, exit.
    fn hand_over(&mut self, kept: &[String], rx: &Receiver<Control>) -> i32 {
        let Some(mut new) = self.up.new.take() else {
            return 0;
        };
        let (old_pid, new_pid) = (std::process::id(), new.pid());
        for p in &mut self.ports {
            p.stop();
        }
        for p in &mut self.ports {
            p.wait_stopped(Duration::from_secs(1));
        }
        let sock = sock_options(&self.cfg);
        // The ports go: the new process serves them, and this one must not hold their
        // sockets open behind it.
        self.up.retiring = std::mem::take(&mut self.ports)
            .into_iter()
            .flat_map(|p| p.hand_over(&self.net, kept, &sock))
            .collect();
        new.send(&ToNew::Counts {
            counts: upgrade::counts(&self.registry),
        });
        new.send(&self.missed_removals());
        // The admin socket: this process stops accepting on it before it answers (the
        // next `ctl` connects to the new process) and before go (the new process serves
        // it only once this one no longer does).
        let ctl_clients = self.ctl.take().map(CtlServer::hand_over);
        crate::notify::main_pid(new_pid);
        // Before the answer: whoever reads the pid file once `ctl` returns finds the new
        // process (which writes it again when go reaches it, to its own configured path).
        crate::pid_file::write_pid(&self.cfg.pid_file, new_pid);
        answer(
            new.reply.take(),
            0,
            format!("upgraded: pid {old_pid} -> {new_pid}\n"),
        );
        new.send(&ToNew::Go);
        self.run_deferred_reload(Some(new_pid));
        let successor = new.into_successor();
        self.up.serving = false;
        log::info!("upgrade: pid {new_pid} serves; this process stopped accepting and drains");
        let (drained, cut) = self.drain_connections(rx, false);
        successor.send(&ToNew::Counts {
            counts: upgrade::counts(&self.registry),
        });
        successor.send(&self.missed_removals());
        log::info!(
            "upgrade: {drained} transactions drained, {} cut at the shutdown timeout ({} connections); pid {old_pid} exits",
            cut.transactions,
            cut.connections
        );
        self.events.shutdown();
        self.http.flush_access_log();
        if let Some(c) = ctl_clients {
            c.wait_idle(Duration::from_secs(2));
        }
        0
    }

    /// The cache keys removed or stored anew since the spans were released, for the new
    /// process.
    fn missed_removals(&self) -> ToNew {
        let keys = self
            .http
            .cache_store()
            .map(|c| c.take_missed())
            .unwrap_or_default();
        ToNew::Removed { keys }
    }

    /// Old side: the new process failed (`error`, if it said) or exited: it is ended, and
    /// this process serves on as if nothing happened.
    fn abort_upgrade(&mut self, error: Option<String>) {
        let Some(mut new) = self.up.new.take() else {
            return;
        };
        let (pid, reply, released) = (new.pid(), new.reply.take(), new.spans_released);
        let how = new.end();
        let text = match error {
            Some(e) => format!("upgrade failed: the new process (pid {pid}) {how}: {e}\n"),
            None => {
                format!("upgrade failed: the new process (pid {pid}) {how} before it was ready\n")
            }
        };
        self.upgrade_failed(reply, text, released);
    }

    /// Old side: the new process was not ready in time.
    pub(super) fn upgrade_timed_out(&mut self) {
        let Some(mut new) = self.up.new.take() else {
            return;
        };
        let (pid, reply, released) = (new.pid(), new.reply.take(), new.spans_released);
        new.kill();
        let text = format!(
            "upgrade failed: the new process (pid {pid}) was not ready within {} s (proxy.config.upgrade.ready_timeout); it was ended\n",
            self.cfg.upgrade.ready_timeout_s
        );
        self.upgrade_failed(reply, text, released);
    }

    fn upgrade_failed(
        &mut self,
        reply: Option<Sender<(i32, String)>>,
        text: String,
        released: bool,
    ) {
        if released {
            // The new process has exited, so the spans are free: open them again, off
            // this thread (an index rebuild takes a while); RAM serves meanwhile.
            if let Some(cache) = self.http.cache_store() {
                let tx = self.tx.clone();
                let spawned = std::thread::Builder::new()
                    .name("[CACHE INIT]".into())
                    .spawn(move || {
                        for st in cache.reattach() {
                            match &st.result {
                                Ok((objects, _)) => log::info!(
                                    "cache span {}: back in use ({objects} objects)",
                                    st.path.display()
                                ),
                                Err(e) => {
                                    log::error!("cache span {} failed: {e}", st.path.display())
                                }
                            }
                        }
                        let _ = tx.send(Control::CacheReattached);
                    });
                match spawned {
                    Ok(_) => self.up.reattaching = true,
                    Err(e) => log::error!("cache: cannot reopen the spans: {e}"),
                }
            }
        }
        crate::notify::ready();
        answer(reply, 1, text);
        self.run_deferred_reload(None);
    }

    /// At a stop: a new process being started is ended first.
    pub(super) fn abort_upgrade_for_stop(&mut self) {
        // The daemon stops: a deferred reload has nothing left to apply to.
        self.up.reload_deferred = false;
        if let Some(mut new) = self.up.new.take() {
            let reply = new.reply.take();
            new.kill();
            answer(
                reply,
                1,
                "upgrade abandoned: the daemon is stopping\n".into(),
            );
        }
    }

    /// Waits until every client connection is closed (idle keep-alive ones at once, busy
    /// ones after their response, which says `Connection: close`) and retired sockets
    /// are drained, or the shutdown timeout; a second stop cuts it short. `stopping`: a
    /// stop started this drain (else an upgrade did, and the first stop meanwhile only
    /// lets it go on: a SIGTERM to an old process lets its transactions finish too).
    /// Returns the transactions completed meanwhile, and what was still open at the end:
    /// the transactions in flight, and every connection (a client that sent part of a
    /// head has a connection and no transaction yet).
    pub(super) fn drain_connections(
        &mut self,
        rx: &Receiver<Control>,
        mut stopping: bool,
    ) -> (u64, Cut) {
        // Transactions that end: requests answered, and background fills (whose client
        // left before its answer, so it was never counted complete) that end.
        let completed = self
            .registry
            .counter("proxy.process.http.completed_requests");
        let fills = self.registry.counter("proxy.process.http.background_fills");
        let filling = (self.registry).gauge("proxy.process.http.current_background_fills");
        let ended = || completed.get() + fills.get().saturating_sub(filling.get().max(0) as u64);
        let before = ended();
        self.http.start_draining();
        // Idle connections close now rather than at the next periodic sweep.
        for t in self.events.threads() {
            t.run(crate::http::session::sweep);
        }
        let deadline = Instant::now() + Duration::from_secs(self.cfg.stop.shutdown_timeout_s);
        // After an upgrade, the predecessor's last counts are awaited too (bounded by
        // the same deadline: it stopped accepting before this process did).
        let await_predecessor = !stopping;
        let mut cut = Cut::default();
        loop {
            // Every client socket the process holds, from the accept on: one accepted
            // but not started yet (handed to an event thread) counts too.
            let conns = self.net.connections_open();
            let retiring = self.ports.iter().any(|p| p.retiring())
                || self.up.retiring.iter().any(|a| a.running() > 0);
            let predecessor = await_predecessor && self.up.predecessor;
            if conns <= 0 && !retiring && !predecessor {
                break;
            }
            let open = || Cut {
                transactions: self.http.active_transactions().max(0),
                connections: conns.max(0),
            };
            if Instant::now() >= deadline {
                cut = open();
                log::warn!("shutdown timeout: closing {cut} still open");
                if predecessor {
                    log::warn!("upgrade: the previous process's last counts did not come in time");
                }
                break;
            }
            match rx.recv_timeout(DRAIN_POLL) {
                Ok(Control::Stop) if !stopping => {
                    stopping = true;
                    log::info!(
                        "stop: already draining after the upgrade; in-flight transactions finish (a second stop cuts them)"
                    );
                }
                Ok(Control::Stop) => {
                    cut = open();
                    log::warn!("second stop: exiting now, cutting {cut}");
                    break;
                }
                Ok(Control::Upgrade(r)) => {
                    answer(r, 1, "upgrade refused: draining to exit\n".into())
                }
                Ok(Control::Reload(Some(r))) => {
                    let _ = r.send((1, "reload refused: draining to exit\n".into()));
                }
                Ok(Control::Port(_, r)) => {
                    let _ = r.send((1, "draining to exit\n".into()));
                }
                Ok(Control::Link(event)) => self.on_link_draining(event),
                _ => {}
            }
        }
        (ended().saturating_sub(before), cut)
    }

    /// `ctl port list|disable PORT|enable PORT`.
    pub(super) fn port_command(&mut self, words: &[String]) -> (i32, String) {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let (verb, label) = match words.as_slice() {
            ["list"] => {
                let text: String = self.ports.iter().map(|p| p.describe() + "\n").collect();
                return (0, text);
            }
            [verb @ ("disable" | "enable"), label] => (*verb, *label),
            _ => return (2, format!("unknown command: port {}\n", words.join(" "))),
        };
        if !self.ports.iter().any(|p| p.label == label) {
            return (
                2,
                format!("no port {label}; `turnstile ctl port list` shows them\n"),
            );
        }
        let sock = sock_options(&self.cfg);
        let threads = self.events.threads().len();
        let mut changed = false;
        for p in self.ports.iter_mut().filter(|p| p.label == label) {
            if verb == "disable" {
                changed |= p.disable();
            } else {
                match p.enable(&self.net, &sock, threads) {
                    Ok(c) => changed |= c,
                    Err(e) => return (1, format!("port {label}: {e}\n")),
                }
            }
        }
        let state = if verb == "disable" {
            "disabled"
        } else {
            "enabled"
        };
        log::info!("port {label} {state}");
        let already = if changed { "" } else { " (already)" };
        (0, format!("port {label} {state}{already}\n"))
    }
}

/// What a drain left open when it ended (at the shutdown timeout or a second stop).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Cut {
    /// Transactions in flight.
    pub(super) transactions: i64,
    /// Client connections, those transactions' among them.
    pub(super) connections: i64,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} transactions ({} connections)",
            self.transactions, self.connections
        )
    }
}

/// New side, once it serves: leaves the process group of its own it was started in (so
/// that a start that failed ended with everything it started) for its predecessor's, its
/// parent's, so that a Ctrl-C at the terminal that runs the daemon in the foreground
/// reaches the process serving, as it reached the first. Nothing when the parent is not
/// the predecessor (a wrapper script that forked it: its group is this one's) or is
/// gone.
fn join_predecessors_group() {
    use nix::unistd::{getpgid, getppid, setpgid, Pid};
    let Ok(theirs) = getpgid(Some(getppid())) else {
        return;
    };
    if getpgid(None).is_ok_and(|ours| ours != theirs) {
        if let Err(e) = setpgid(Pid::from_raw(0), theirs) {
            log::debug!("upgrade: cannot join the old process's group {theirs}: {e}");
        }
    }
}
