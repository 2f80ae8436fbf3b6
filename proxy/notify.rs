//! systemd's readiness protocol (`sd_notify`): one datagram to `$NOTIFY_SOCKET` per state
//! change, so that a `Type=notify` unit knows when the daemon is ready, reloading or
//! stopping, and which process is the main one after an upgrade (SPEC §7).
//!
//! A few lines over a Unix datagram socket, as systemd documents it: the variable names a
//! path, or an abstract socket when it starts with `@`. Without the variable (not under
//! systemd) every call does nothing. Runs on the caller's thread and never blocks.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`KEY=VALUE` lines) to systemd, if the daemon runs under it. A failure
/// is logged once at debug level: systemd is then not listening, and nothing depends on it.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(state.as_bytes(), &addr)
            }
            None => s.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        log::debug!("sd_notify {state:?}: {e}");
    }
}

/// `READY=1`: the ports accept (at start-up, and after a reload).
pub fn ready() {
    notify("READY=1\nSTATUS=accepting");
}

/// `RELOADING=1`, with the monotonic time systemd asks a reload to carry.
pub fn reloading(status: &str) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    notify(&format!(
        "RELOADING=1\nSTATUS={status}\nMONOTONIC_USEC={usec}"
    ));
}

/// `STOPPING=1`: a stop began.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=stopping");
}

/// `MAINPID=pid` then `READY=1`: an upgrade handed the service to process `pid`.
pub fn main_pid(pid: u32) {
    notify(&format!(
        "MAINPID={pid}\nREADY=1\nSTATUS=accepting (upgraded)"
    ));
}
