//! `proxy.config.pid_file`: the serving process's pid, written when it starts serving
//! (at start-up once the ports accept, or when an upgrade hands the service to it: by
//! the old process before `ctl` hears of it, then by the new one itself) and
//! removed at a stop, only if it still names this process (an upgrade's old process
//! leaves its successor's alone).

use std::path::Path;

/// Writes this process's pid to `path` (see [`write_pid`]).
pub fn write(path: &Path) {
    write_pid(path, std::process::id());
}

/// Writes `pid` to `path` (through a temporary file and a rename, so a reader never sees
/// it half written). A failure is logged: the daemon serves on.
pub fn write_pid(path: &Path, pid: u32) {
    if path.as_os_str().is_empty() {
        return;
    }
    let tmp = path.with_extension("pid.tmp");
    let done = std::fs::write(&tmp, format!("{pid}\n")).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        log::error!("pid_file {}: {e}", path.display());
    }
}

/// Removes `path` if it holds this process's pid.
pub fn remove(path: &Path) {
    if path.as_os_str().is_empty() {
        return;
    }
    let ours =
        std::fs::read_to_string(path).is_ok_and(|s| s.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}
