//! Signals become control messages: SIGTERM/SIGINT → stop, SIGHUP (and SIGUSR1) →
//! reload, SIGUSR2 → zero-downtime upgrade.
//!
//! `block()` runs first in `main`, before any thread exists, so every thread inherits the
//! mask and only the `[SIGNALS]` thread receives them (in `sigwait`).

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use std::sync::mpsc::Sender;

/// What the daemon's control loop is asked to do.
pub enum Control {
    /// Graceful stop (a second one exits at once).
    Stop,
    /// Re-read the configuration; the reply, if wanted, goes to the sender.
    Reload(Option<Sender<(i32, String)>>),
    /// The cache became ready second: start the ports now.
    StartPorts,
    /// Start-up cannot go on (e.g. wait_for_cache 2/3 and failed spans): exit 1.
    Fatal(crate::error::Error),
    /// Zero-downtime upgrade (SPEC §7.1); the reply, if wanted, goes to the sender.
    Upgrade(Option<Sender<(i32, String)>>),
    /// What the other process of an upgrade said (or that it went away).
    Link(crate::upgrade::LinkEvent),
    /// `ctl port …`: the words after `port`, and where the reply goes.
    Port(Vec<String>, Sender<(i32, String)>),
    /// The released cache spans were opened again (or failed to) after a failed
    /// upgrade: another upgrade may start.
    CacheReattached,
}

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGUSR1);
    set.add(Signal::SIGUSR2);
    set
}

/// Blocks the handled signals in this thread (and so in every thread it starts) and
/// ignores SIGPIPE.
pub fn block() {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled()), None);
    // SAFETY: setting SIGPIPE to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Starts the thread that turns signals into `Control` messages.
pub fn spawn(tx: Sender<Control>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("[SIGNALS]".into())
        .spawn(move || loop {
            let Ok(sig) = handled().wait() else { continue };
            let msg = match sig {
                // USR1 reopens the logs in nginx, and operators' rotation scripts send
                // it: here it is a reload (which reopens the access log), not the
                // signal's default action, which would end the daemon.
                Signal::SIGHUP | Signal::SIGUSR1 => Control::Reload(None),
                Signal::SIGUSR2 => Control::Upgrade(None),
                _ => Control::Stop,
            };
            if tx.send(msg).is_err() {
                return;
            }
        })?;
    Ok(())
}
