//! Zero-downtime binary upgrade (SPEC §7.1): the running ("old") process starts the binary
//! at the path it was started from, with its arguments and environment, and hands it its
//! sockets and counters; the new process says when it accepts on every port, and only
//! then does the old one stop accepting, drain and exit.
//!
//! Sockets go across exec: the new process is the old one's child, and inherits the
//! listening sockets (every port's main socket and its per-thread SO_REUSEPORT siblings),
//! the admin socket and one end of a Unix socket pair, FD_CLOEXEC cleared in the child
//! only (between fork and exec), at the same descriptor numbers. Why not SCM_RIGHTS: the
//! new process is our own child, so its exit status and its error are ours to report,
//! nothing can race us for a listening Unix socket, and there is no per-message limit on
//! descriptors. Sockets are matched to the new configuration's ports by identity (see
//! [`crate::ports::socket_keys`]), never by address alone.
//!
//! Over the socket pair, one JSON object a line:
//!
//! ```text
//! old → new   hello      the sockets (fd, port key, index), the admin socket's fd, the
//!                        ports disabled by `ctl port disable`, and the counters
//! new → old   want_spans the new process is about to open the cache: the old one
//!                        flushes and releases its spans (serving from RAM meanwhile)
//! old → new   spans_released
//! new → old   ready      it accepts on every port, with the sockets it kept
//! old → new   counts     the counters again, when the old one stops accepting and when
//!                        it exits: the new one adds what they grew by
//! old → new   removed    cache keys it removed after releasing the spans (same times)
//! old → new   go         the new process serves: the admin socket and pid file are its
//! new → old   failed     its start-up failed, and why (it then exits 1)
//! ```
//!
//! Everything here runs on the daemon's main thread, except the reader threads
//! (`[UPGRADE]`) that turn what the other process says into control messages.

use crate::error::{Error, Result};
use iocore::stats::Metric;
use iocore::Registry;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// The environment variable naming the new process's end of the socket pair.
pub const ENV_FD: &str = "TURNSTILE_UPGRADE_FD";

/// How long the new process waits for the old one's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// A socket handed over: its descriptor number (the same in both processes), its port's
/// key and its index among that port's sockets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PassedSocket {
    /// Descriptor number.
    pub fd: RawFd,
    /// The port's identity ([`crate::ports::socket_keys`]).
    pub key: String,
    /// 0 the main socket, then the per-thread siblings.
    pub index: usize,
}

/// The monotonic values of a registry: counters, and histograms' sample counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Counter values by name.
    pub counters: BTreeMap<String, u64>,
    /// Histogram sample counts by name.
    pub histograms: BTreeMap<String, u64>,
}

/// What the old process says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ToNew {
    /// First thing, before the new process binds anything.
    Hello {
        /// The old process's pid.
        old_pid: u32,
        /// Every listening socket.
        sockets: Vec<PassedSocket>,
        /// The admin socket's listening descriptor.
        admin_fd: RawFd,
        /// Keys of the ports disabled by `ctl port disable`.
        disabled: Vec<String>,
        /// The counters so far.
        counts: Counts,
        /// Where the old process's pid file is (it writes the new pid there when it
        /// hands over; the new process removes it if its own is elsewhere). Empty from
        /// a process that did not say.
        #[serde(default)]
        pid_file: std::path::PathBuf,
    },
    /// The cache spans are flushed and unlocked: open them.
    SpansReleased,
    /// The counters now.
    Counts {
        /// Values.
        counts: Counts,
    },
    /// Cache keys the old process removed (PURGE, invalidations) or stored anew (in RAM
    /// only) after it released the spans: the spans' copies are out of date, and the new
    /// process removes them.
    Removed {
        /// The keys.
        keys: Vec<String>,
    },
    /// The old process stopped accepting: the new one serves.
    Go,
}

/// What the new process says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ToOld {
    /// About to open the cache: release the spans.
    WantSpans,
    /// Accepting on every port.
    Ready {
        /// Identities (`key/index`) of the sockets it uses.
        kept: Vec<String>,
    },
    /// Start-up failed.
    Failed {
        /// Why.
        error: String,
    },
}

/// What the reader threads post to the control loop.
#[derive(Debug)]
pub enum LinkEvent {
    /// A message from the new process.
    FromNew(ToOld),
    /// The new process's end closed: it exited.
    NewGone,
    /// A message from the old process.
    FromOld(ToNew),
    /// The old process's end closed: it exited.
    OldGone,
}

/// The binary an upgrade starts: the path this process was started from (argv[0]) made
/// absolute against the working directory at start-up, not canonicalized, so that a
/// symlink repointed to a new version, or a file a package replaced, is what runs next
/// (`/proc/self/exe` names the file this process runs, already resolved). An argv[0]
/// without a slash was found on PATH, and is looked up there the same way. When it
/// cannot be found, the binary running now. Runs on the main thread at start-up.
pub fn started_from() -> std::io::Result<PathBuf> {
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    match argv0.and_then(|a| locate(&a)) {
        Some(path) => Ok(path),
        None => std::env::current_exe(),
    }
}

/// Where `argv0` is, as a shell would have found it: relative to the working directory
/// when it has a slash, else on PATH.
fn locate(argv0: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if argv0.as_os_str().as_bytes().contains(&b'/') {
        let path = std::env::current_dir().ok()?.join(argv0);
        return executable(&path).then_some(path);
    }
    if argv0.as_os_str().is_empty() {
        return None;
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(argv0))
        .find(|p| p.is_absolute() && executable(p))
}

/// The registry's monotonic values now.
pub fn counts(registry: &Registry) -> Counts {
    let mut c = Counts::default();
    for (name, m) in registry.metrics() {
        match m {
            Metric::Counter(v) => {
                c.counters.insert(name, v.get());
            }
            Metric::Histogram(h) => {
                c.histograms.insert(name, h.summary().3);
            }
            Metric::Gauge(_) => {}
        }
    }
    c
}

/// What the new process has added to its registry from the old one's counts, so that
/// each new report adds only what grew since.
#[derive(Debug, Default)]
pub struct Carried {
    applied: Counts,
}

impl Carried {
    /// Adds to `registry` what `now` grew by since the last call.
    pub fn apply(&mut self, registry: &Registry, now: &Counts) {
        let kinds: BTreeMap<String, Metric> = registry.metrics().into_iter().collect();
        for (name, &v) in &now.counters {
            let delta = grew(&mut self.applied.counters, name, v);
            match kinds.get(name) {
                Some(Metric::Counter(c)) => c.add(delta),
                None => registry.counter(name).add(delta),
                // Another kind in this version: not carried.
                Some(_) => {}
            }
        }
        for (name, &v) in &now.histograms {
            let delta = grew(&mut self.applied.histograms, name, v);
            match kinds.get(name) {
                Some(Metric::Histogram(h)) => h.carry(delta),
                None => registry.histogram(name).carry(delta),
                Some(_) => {}
            }
        }
    }
}

/// How far `v` grew past what `applied` holds for `name`, which then holds the larger.
fn grew(applied: &mut BTreeMap<String, u64>, name: &str, v: u64) -> u64 {
    let before = applied.entry(name.to_string()).or_default();
    let delta = v.saturating_sub(*before);
    *before = (*before).max(v);
    delta
}

/// Writes one message as a JSON line.
fn send<T: Serialize>(mut stream: &UnixStream, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// Reads one message; None at the end of the stream.
fn recv<T: DeserializeOwned>(reader: &mut BufReader<UnixStream>) -> std::io::Result<Option<T>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Where a link's events go: called on the `[UPGRADE]` thread with each one; `false`
/// once nobody listens any more (the thread then ends).
pub type Post = Box<dyn Fn(LinkEvent) -> bool + Send>;

/// Starts a `[UPGRADE]` thread posting what `reader` brings, then `end` at its end.
fn spawn_reader<T: DeserializeOwned + Send + 'static>(
    mut reader: BufReader<UnixStream>,
    post: Post,
    wrap: fn(T) -> LinkEvent,
    end: LinkEvent,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("[UPGRADE]".into())
        .spawn(move || {
            loop {
                match recv::<T>(&mut reader) {
                    Ok(Some(m)) => {
                        if !post(wrap(m)) {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("upgrade: the other process: {e}");
                        break;
                    }
                }
            }
            post(end);
        })
        .map(drop)
}

/// The old process's side: a new process being started.
pub struct NewProcess {
    /// The process.
    pub child: Child,
    stream: UnixStream,
    /// When it is abandoned if not ready.
    pub deadline: Instant,
    /// Where `ctl server upgrade` waits for the outcome.
    pub reply: Option<Sender<(i32, String)>>,
    /// Whether this process released its cache spans to it.
    pub spans_released: bool,
}

impl NewProcess {
    /// Starts `exe` with `args` (and this process's environment), handing it `sockets`
    /// and `admin_fd`. Its messages, and its going away, go to `post`.
    pub fn start(
        exe: &Path,
        args: &[OsString],
        hello: ToNew,
        ready_timeout: Duration,
        post: Post,
    ) -> Result<NewProcess> {
        let ToNew::Hello {
            sockets, admin_fd, ..
        } = &hello
        else {
            return Err(Error::config("an upgrade starts with a hello"));
        };
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| Error::io("upgrade: socket pair", &e))?;
        let mut fds: Vec<RawFd> = sockets.iter().map(|s| s.fd).collect();
        fds.push(*admin_fd);
        fds.push(theirs.as_raw_fd());
        let mut cmd = Command::new(exe);
        cmd.args(args).env(ENV_FD, theirs.as_raw_fd().to_string());
        // A group of its own, so that ending it ends what it started too: a wrapper
        // script's children inherit the listening sockets, and would hold them open.
        cmd.process_group(0);
        // SAFETY: the hook runs in the child between fork and exec, where it only calls
        // fcntl (async-signal-safe) on descriptors this process holds open, and reads a
        // vector allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format_args!("upgrade: cannot start {}", exe.display()), &e))?;
        // The child has its copy; without ours closed, its exit would not end the stream.
        drop(theirs);
        let np = NewProcess {
            child,
            stream: ours,
            deadline: Instant::now() + ready_timeout,
            reply: None,
            spans_released: false,
        };
        np.send(&hello);
        let reader = np
            .stream
            .try_clone()
            .map_err(|e| Error::io("upgrade: socket pair", &e))?;
        spawn_reader(
            BufReader::new(reader),
            post,
            LinkEvent::FromNew,
            LinkEvent::NewGone,
        )
        .map_err(|e| Error::io("upgrade: cannot start its thread", &e))?;
        Ok(np)
    }

    /// The new process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a message; a failure shows as the new process going away.
    pub fn send(&self, msg: &ToNew) {
        if let Err(e) = send(&self.stream, msg) {
            log::debug!("upgrade: to pid {}: {e}", self.pid());
        }
    }

    /// Ends a new process that failed (if it has not exited yet), and whatever it left
    /// in its process group, and says how it ended.
    pub fn end(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.kill_group();
                    return describe(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    self.kill_group();
                    return match self.child.wait() {
                        Ok(_) => "ended".to_string(),
                        Err(e) => format!("could not be waited for: {e}"),
                    };
                }
            }
        }
    }

    /// Kills the new process now (not ready in time, or this one stops), with its process
    /// group, and waits for it.
    pub fn kill(mut self) {
        self.kill_group();
        let _ = self.child.wait();
    }

    /// SIGKILL to the new process's group (it leads it: see [`NewProcess::start`]). The
    /// group's id stays reserved while any member lives, even once the leader was reaped.
    fn kill_group(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        if nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL).is_err() {
            // No group left (every member exited): the process itself, if it lingers.
            let _ = self.child.kill();
        }
    }

    /// Hands the link over for the last counts, once the new process serves: the child
    /// outlives this process and is not waited for.
    pub fn into_successor(self) -> Successor {
        Successor {
            pid: self.child.id(),
            stream: self.stream,
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended ({status})"),
    }
}

/// The old process's link to the process that now serves, for the last counts.
pub struct Successor {
    /// Its pid.
    pub pid: u32,
    stream: UnixStream,
}

impl Successor {
    /// Sends a message (a failure is only logged: the new process serves on regardless).
    pub fn send(&self, msg: &ToNew) {
        if let Err(e) = send(&self.stream, msg) {
            log::debug!("upgrade: to pid {}: {e}", self.pid);
        }
    }
}

/// The new process's side: the link to the old process, from the environment.
pub struct OldProcess {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    /// The old process's pid.
    pub old_pid: u32,
    /// The sockets handed over.
    pub sockets: Vec<PassedSocket>,
    /// The admin socket, until the new process serves.
    pub admin_fd: RawFd,
    /// Keys of disabled ports.
    pub disabled: Vec<String>,
    /// The counters at the start.
    pub counts: Counts,
    /// The old process's pid file (empty: none, or not said).
    pub pid_file: std::path::PathBuf,
}

impl OldProcess {
    /// The link an upgrade started this process with, if it did (reading and removing
    /// [`ENV_FD`]: call it before any thread starts), with the old process's hello.
    pub fn from_env() -> Option<Result<OldProcess>> {
        let fd = std::env::var(ENV_FD).ok()?;
        std::env::remove_var(ENV_FD);
        Some(Self::open(&fd))
    }

    fn open(fd: &str) -> Result<OldProcess> {
        let bad = || Error::config(format!("{ENV_FD}={fd}: not an open descriptor"));
        let fd: RawFd = fd.parse().map_err(|_| bad())?;
        // SAFETY: F_GETFD only queries whether `fd` is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(bad());
        }
        // SAFETY: `fd` is open and was inherited for this purpose; nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: F_SETFD takes an integer argument; no pointers are passed.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let stream = UnixStream::from(owned);
        let io = |e: std::io::Error| Error::io("upgrade: the link to the old process", &e);
        stream.set_read_timeout(Some(HELLO_TIMEOUT)).map_err(io)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(io)?);
        match recv::<ToNew>(&mut reader).map_err(io)? {
            Some(ToNew::Hello {
                old_pid,
                sockets,
                admin_fd,
                disabled,
                counts,
                pid_file,
            }) => Ok(OldProcess {
                stream,
                reader,
                old_pid,
                sockets,
                admin_fd,
                disabled,
                counts,
                pid_file,
            }),
            _ => Err(Error::config("upgrade: the old process did not say hello")),
        }
    }

    /// Asks the old process to release its cache spans and waits until it has.
    pub fn want_spans(&mut self) -> Result<()> {
        let io = |e: std::io::Error| Error::io("upgrade: waiting for the cache spans", &e);
        send(&self.stream, &ToOld::WantSpans).map_err(io)?;
        match recv::<ToNew>(&mut self.reader).map_err(io)? {
            Some(ToNew::SpansReleased) => Ok(()),
            other => Err(Error::config(format!(
                "upgrade: expected the cache spans, got {other:?}"
            ))),
        }
    }

    /// Says the process accepts on every port (with the sockets `kept`), then posts what
    /// the old process says next to `post`.
    pub fn ready(self, kept: Vec<String>, post: Post) -> Result<()> {
        let io = |e: std::io::Error| Error::io("upgrade: the link to the old process", &e);
        send(&self.stream, &ToOld::Ready { kept }).map_err(io)?;
        self.stream.set_read_timeout(None).map_err(io)?;
        spawn_reader(self.reader, post, LinkEvent::FromOld, LinkEvent::OldGone).map_err(io)
    }

    /// Tells the old process why start-up failed (this process then exits 1).
    pub fn fail(&self, error: &str) {
        let _ = send(
            &self.stream,
            &ToOld::Failed {
                error: error.to_string(),
            },
        );
    }
}
