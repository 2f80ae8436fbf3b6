//! Helpers for tests that run the real `turnstile` binary: start it in a temp dir on
//! port 0 (the start-up log line says which ports it bound), talk HTTP to it, run a
//! scriptable origin, and wait on conditions with deadlines.
#![allow(dead_code)]

pub mod http;
pub mod origin;
pub mod tls;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Holds the lock on the span file at `path` as another process would, so that a
/// daemon starting meanwhile finds the span unavailable.
pub fn hold_span(path: &std::path::Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: flock takes a descriptor `f` owns and keeps open for the call, and flags.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "flock {}", path.display());
    f
}

/// Polls `cond` every 5 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A port free now on every IPv4 address and below the kernel's ephemeral range, where a
/// socket binding port 0 is never given one: a daemon told to listen on it later (or
/// again, after a restart) does not find it taken by another test's daemon meanwhile, as
/// a port-0 port bound and let go may be. Random within 10000..the range's start.
pub fn fixed_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = u64::from(low.saturating_sub(10000).max(1));
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u32(std::process::id());
    let start = seed.finish();
    (0..span)
        .map(|i| 10000 + ((start.wrapping_add(i)) % span) as u16)
        .find(|&port| std::net::TcpListener::bind(("0.0.0.0", port)).is_ok())
        .expect("a free port below the ephemeral range")
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "turnstile-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_turnstile")
}

/// A running daemon.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub log: PathBuf,
    pub config: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

/// Builder for a daemon run.
pub struct DaemonBuilder {
    env: Vec<(String, String)>,
    config: Option<String>,
    args: Vec<String>,
    wait_ready: bool,
    program: Option<PathBuf>,
    unset: Vec<String>,
}

impl DaemonBuilder {
    /// An environment variable (record overrides: `PROXY_CONFIG_...`).
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    /// records.toml text, written to the temp dir and passed with --config.
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.into());
        self
    }
    /// An extra command-line argument.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    /// Leaves out one of the default environment variables (so the file sets that record).
    pub fn unset(mut self, k: &str) -> Self {
        self.unset.push(k.into());
        self
    }
    /// Run this binary instead of the one cargo built (a copy of it, for upgrade tests).
    pub fn program(mut self, path: &Path) -> Self {
        self.program = Some(path.to_path_buf());
        self
    }
    /// Do not wait for "ports accepting" (for tests of start-up failures).
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub fn start(self) -> Daemon {
        let dir = TempDir::new("daemon");
        let log = dir.0.join("turnstile.log");
        let mut cmd = match &self.program {
            Some(p) => Command::new(p),
            None => Command::new(bin()),
        };
        cmd.current_dir(&dir.0);
        let mut env = vec![
            (
                "PROXY_CONFIG_HTTP_SERVER_PORTS".to_string(),
                "0".to_string(),
            ),
            (
                "PROXY_CONFIG_ADMIN_SOCKET".to_string(),
                dir.0.join("ctl.sock").display().to_string(),
            ),
            (
                "PROXY_CONFIG_EXEC_THREAD_AUTOCONFIG_ENABLED".to_string(),
                "false".to_string(),
            ),
            (
                "PROXY_CONFIG_EXEC_THREAD_LIMIT".to_string(),
                "2".to_string(),
            ),
        ];
        for (k, v) in self.env {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        env.retain(|(k, _)| !self.unset.contains(k));
        let config = self.config.map(|text| {
            let p = dir.0.join("records.toml");
            std::fs::write(&p, text).unwrap();
            p
        });
        if let Some(p) = &config {
            cmd.arg("--config").arg(p);
        }
        cmd.args(&self.args);
        cmd.env_remove("TURNSTILE_LOG");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("spawn turnstile");
        let mut d = Daemon {
            child: Some(child),
            dir,
            log,
            config,
            env,
        };
        if self.wait_ready {
            let ok = wait_until(Duration::from_secs(20), || {
                d.log_text().contains("ports accepting") || d.exited()
            });
            assert!(ok && !d.exited(), "daemon did not start:\n{}", d.log_text());
        }
        d
    }
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder {
            env: Vec::new(),
            config: None,
            args: Vec::new(),
            wait_ready: true,
            program: None,
            unset: Vec::new(),
        }
    }

    pub fn start() -> Daemon {
        Daemon::builder().start()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The addresses the daemon bound, from its "ports accepting" line, in port order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let text = self.log_text();
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("ports accepting"))
            .expect("ready line");
        line.split_whitespace()
            .filter_map(|w| {
                w.trim_end_matches([',', ';'])
                    .split('=')
                    .next_back()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs()[0]
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, sig) };
    }

    /// Waits for exit; kills the process if it outlives `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `turnstile ctl ARGS` command for this daemon (its directory, configuration
    /// and environment), to run where the caller wants (another thread).
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.current_dir(&self.dir.0);
        if let Some(p) = &self.config {
            cmd.arg("--config").arg(p);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.arg("ctl").args(args);
        cmd
    }

    /// Runs `turnstile ctl ARGS` against this daemon: (exit code, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.ctl_command(args).output().expect("run ctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// One metric through `ctl metric get`.
    pub fn metric(&self, name: &str) -> i64 {
        let (code, out, err) = self.ctl(&["metric", "get", name]);
        assert_eq!(code, 0, "ctl metric get {name}: {err}");
        out.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad metric line: {out}"))
    }

    /// Rewrites the config file (for reload tests).
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config.as_ref().expect("started with a config"), text).unwrap();
    }

    /// Rewrites the config file with `text` and asks for a reload: `ctl config reload`'s
    /// exit code, stdout and stderr.
    pub fn reload(&self, text: &str) -> (i32, String, String) {
        self.write_config(text);
        self.ctl(&["config", "reload"])
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the binary with `args` in `dir` to completion: (exit code, stdout, stderr).
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run turnstile");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reads everything until EOF or `limit`.
pub fn read_all(s: &mut std::net::TcpStream, limit: Duration) -> Vec<u8> {
    let _ = s.set_read_timeout(Some(limit));
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    v
}

/// The lines of the file at `path` once it has `n` (or what it has after 10 s): an
/// access log, written by a thread of its own.
pub fn log_lines(path: &Path, n: usize) -> Vec<String> {
    let read = || {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(10), || read().len() >= n);
    read()
}

/// Sets SO_LINGER 0 so that dropping `s` sends a reset.
pub fn set_linger0(s: &std::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `l` is a live linger struct; the descriptor is open.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        ) == 0
    }
}

/// A loopback listener whose queue is full: a connect to it stays pending (the kernel
/// drops its SYNs). The returned sockets keep it so.
pub fn full_backlog() -> (SocketAddr, Vec<std::net::TcpStream>, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; `addr` is a live,
    // initialised sockaddr_in of the length given.
    let fd = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        std::os::fd::OwnedFd::from_raw_fd(fd)
    };
    let l = std::net::TcpListener::from(fd.try_clone().unwrap());
    let addr = l.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    (addr, held, fd)
}
