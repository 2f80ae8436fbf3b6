//! The admin socket: a Unix socket (mode 0600) the `turnstile ctl` client talks to.
//!
//! Protocol: the client sends its arguments one per line, then an empty line; the daemon
//! answers with the exit code on the first line and the text to print after it. The
//! server runs on its own thread, each client on one of its own: the control plane never
//! touches an event thread.

use crate::error::{Error, ErrorKind, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Answers one command: (exit code, text).
pub type Handler = Arc<dyn Fn(&[String]) -> (i32, String) + Send + Sync>;

/// The running admin socket; dropping it stops the thread and removes the socket file
/// (if the file is still the one it bound).
pub struct CtlServer {
    path: PathBuf,
    /// Device and inode of the socket file as bound.
    file: (u64, u64),
    stop: Arc<AtomicBool>,
    /// Writing here wakes the thread, whatever became of the socket file.
    wake: UnixStream,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The listening socket's descriptor (the thread owns the socket), for an upgrade.
    fd: RawFd,
    /// Whether dropping the server removes the socket file and waits for its clients:
    /// not once an upgrade handed the socket to the next process.
    handed_over: bool,
    clients: Clients,
}

/// The clients being served, each on a thread of its own.
#[derive(Clone, Debug, Default)]
pub struct Clients(Arc<AtomicUsize>);

impl Clients {
    /// Waits until every client has its answer (at most `limit`): the process may exit
    /// then without cutting one short.
    pub fn wait_idle(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.0.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One client being served, while it lives.
struct Serving(Arc<AtomicUsize>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CtlServer {
    /// Binds `path` (replacing a stale socket nobody listens on) and serves `handler`.
    pub fn start(path: &Path, handler: Handler) -> std::io::Result<CtlServer> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            // Only a socket is ours to replace: anything else at the path (the
            // configuration file itself, by a slip of the record) is someone's data.
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket; it is left alone",
                        path.display()
                    ),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running daemon", path.display()),
                ));
            }
            let _ = std::fs::remove_file(path);
        }
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        CtlServer::serve_on(listener, path, handler)
    }

    /// Serves `handler` on `listener`, the admin socket an upgrade's old process handed
    /// over (already bound at `path`).
    pub fn adopt(
        listener: UnixListener,
        path: &Path,
        handler: Handler,
    ) -> std::io::Result<CtlServer> {
        CtlServer::serve_on(listener, path, handler)
    }

    fn serve_on(
        listener: UnixListener,
        path: &Path,
        handler: Handler,
    ) -> std::io::Result<CtlServer> {
        // Non-blocking: a poll that saw a client is never followed by an accept that
        // blocks, even if that client went away in between.
        listener.set_nonblocking(true)?;
        let fd = listener.as_raw_fd();
        let meta = std::fs::metadata(path)?;
        let (wake, woken) = UnixStream::pair()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let clients = Clients::default();
        let counter = clients.0.clone();
        let thread = std::thread::Builder::new()
            .name("[CTL]".into())
            .spawn(move || {
                let mut warn = crate::log::WarnEvery::default();
                while wait_readable(&listener, &woken) && !stop2.load(Ordering::Acquire) {
                    let s = match listener.accept() {
                        Ok((s, _)) => s,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                            ) =>
                        {
                            continue
                        }
                        Err(e) => {
                            // Out of descriptors (EMFILE, ENFILE) or memory: the client
                            // stays queued and the socket readable, so poll would return
                            // at once, round after round. Pause as the ports do, warn at
                            // most once a minute.
                            if warn.due() {
                                log::warn!(
                                    "admin socket: accept: {e}; pausing for {} ms",
                                    CTL_PAUSE.as_millis()
                                );
                            }
                            std::thread::sleep(CTL_PAUSE);
                            continue;
                        }
                    };
                    {
                        // A client of its own thread: one command may wait (an upgrade
                        // answers once the new process is ready) while others are served,
                        // a second upgrade refused.
                        let h = handler.clone();
                        counter.fetch_add(1, Ordering::AcqRel);
                        let serving = Serving(counter.clone());
                        let served = std::thread::Builder::new()
                            .name("[CTL client]".into())
                            .spawn(move || {
                                let _serving = serving;
                                serve(s, &h)
                            });
                        if let Err(e) = served {
                            log::warn!("admin socket: cannot start a thread for a client: {e}");
                        }
                    }
                }
            })?;
        Ok(CtlServer {
            path: path.to_path_buf(),
            file: (meta.dev(), meta.ino()),
            stop,
            wake,
            thread: Some(thread),
            fd,
            handed_over: false,
            clients,
        })
    }

    /// The listening socket's descriptor, to hand to an upgrade's new process.
    pub fn listener_fd(&self) -> RawFd {
        self.fd
    }

    /// Stops accepting and leaves the socket (and its file) to the process an upgrade
    /// handed it to: clients that connect meanwhile wait in its backlog for that one.
    /// Clients accepted already are still being answered: wait for them with the
    /// returned handle before exiting.
    pub fn hand_over(mut self) -> Clients {
        self.handed_over = true;
        self.clients.clone()
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Not a connect to the path: the file may have been removed or replaced (a tmp
        // cleaner, another daemon), and the stop must not depend on it.
        let _ = (&self.wake).write_all(b"x");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.handed_over {
            return;
        }
        // A `server stop` is answered before the process exits.
        self.clients.wait_idle(Duration::from_secs(2));
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// How long the admin socket's thread pauses after an accept fails for want of a
/// resource, before it looks again.
const CTL_PAUSE: Duration = Duration::from_millis(100);

/// Blocks until a client connects to `listener` or `woken` is written to: true for the
/// former; false when woken or on a poll error (the thread then ends).
fn wait_readable(listener: &UnixListener, woken: &UnixStream) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: woken.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a live array of two pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        return fds[1].revents == 0 && fds[0].revents & libc::POLLIN != 0;
    }
}

/// The most arguments a request may carry.
const MAX_ARGS: usize = 1024;
/// The most bytes a request may take, its arguments and their newlines together: a
/// client that sends more (a stream without newlines) is answered with an error rather
/// than held in memory.
const MAX_REQUEST: u64 = 1 << 20;

fn serve(stream: UnixStream, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(Read::take(&stream, MAX_REQUEST));
    let mut args = Vec::new();
    let mut too_long = false;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if !line.ends_with('\n') && reader.get_ref().limit() == 0 {
                    too_long = true;
                    break;
                }
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    break;
                }
                args.push(line.to_string());
            }
        }
        if args.len() > MAX_ARGS {
            break;
        }
    }
    let (code, text) = if too_long {
        (
            2,
            format!("request too long (at most {MAX_REQUEST} bytes)\n"),
        )
    } else if args.len() > MAX_ARGS {
        (2, format!("too many arguments (at most {MAX_ARGS})\n"))
    } else {
        handler(&args)
    };
    let mut w = &stream;
    let _ = write!(w, "{code}\n{text}");
}

/// Sends `args` to the daemon at `path`; returns (exit code, text).
///
/// # Errors
///
/// An argument with a newline or none at all (an empty line ends a request), or more
/// than the daemon takes ([`ErrorKind::Config`], found before connecting: a usage
/// error); a daemon that cannot be reached or does not answer properly
/// ([`ErrorKind::Io`]).
pub fn call(path: &Path, args: &[String], timeout: Duration) -> Result<(i32, String)> {
    if args.len() > MAX_ARGS {
        return Err(Error::config(format!(
            "too many arguments ({}, at most {MAX_ARGS})",
            args.len()
        )));
    }
    if args.iter().any(String::is_empty) {
        return Err(Error::config("arguments cannot be empty"));
    }
    if args.iter().map(|a| a.len() as u64 + 1).sum::<u64>() >= MAX_REQUEST {
        return Err(Error::config(format!(
            "arguments too long (at most {MAX_REQUEST} bytes together)"
        )));
    }
    if args.iter().any(|a| a.contains('\n')) {
        return Err(Error::config("arguments cannot contain newlines"));
    }
    let mut s = UnixStream::connect(path).map_err(|e| {
        Error::io(
            format_args!("cannot reach the daemon at {}", path.display()),
            &e,
        )
    })?;
    let _ = s.set_read_timeout(Some(timeout));
    let mut req = String::new();
    for a in args {
        req.push_str(a);
        req.push('\n');
    }
    req.push('\n');
    s.write_all(req.as_bytes())
        .map_err(|e| Error::io(format_args!("write to {}", path.display()), &e))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| Error::io(format_args!("read from {}", path.display()), &e))?;
    let bad_reply = |kind, what: String| Error::new(ErrorKind::Io(kind)).context(what);
    let (code, text) = resp.split_once('\n').ok_or_else(|| {
        bad_reply(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering".into(),
        )
    })?;
    let code = code.parse().map_err(|_| {
        bad_reply(
            std::io::ErrorKind::InvalidData,
            format!("bad reply from the daemon: {code:?}"),
        )
    })?;
    Ok((code, text.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_configured_socket_path_limit_is_sun_path_less_its_nul() {
        // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
        let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        assert_eq!(config::MAX_SOCKET_PATH_LEN + 1, addr.sun_path.len());
    }
}
