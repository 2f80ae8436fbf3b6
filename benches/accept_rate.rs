//! Accept throughput on loopback, connection-per-request: each client connects, sends one
//! byte, reads one byte back and closes, in a loop, from 64 concurrent client threads,
//! for `ACCEPT_BENCH_SECS` seconds (default 10) per server mode.
//!
//! The servers, each on a fresh 127.0.0.1 listener on port 0:
//! - `baseline`: a minimal single-threaded epoll accept loop written here with libc
//!   (accept4 until EAGAIN, read 1 byte, write 1 byte, close), the reference;
//! - `threads-1`, `threads-2`, `event`, `event-reuseport`, `periodic`: iocore's
//!   `NetProcessor` in that accept mode, over 2 ET_NET threads, default `NetTuning`
//!   except `connections_throttle: 0`, and an acceptor that registers each connection on
//!   its ET_NET thread and answers it there.
//!
//! `ACCEPT_BENCH_MODES=baseline,event` runs a subset (in the order above);
//! `ACCEPT_BENCH_CLIENTS` changes the client count. Run:
//! `cargo bench --bench accept_rate` (or `ACCEPT_BENCH_SECS=3 cargo bench --bench accept_rate`).
//! Without `--bench` (as `cargo test --benches` runs it) it is a smoke test: every mode for
//! a fraction of a second, failing if a mode serves nothing or does not shut down clean.
//!
//! Clients close with SO_LINGER 0 (RST), so neither side keeps TIME_WAIT sockets and the
//! ephemeral ports are not exhausted; connect failures are counted, never fatal.

use hdrhistogram::Histogram;
use iocore::{
    AcceptMode, AcceptOptions, Acceptor, EThread, EventProcessor, EventProcessorOptions, Interest,
    ListenOptions, Listener, NetConnection, NetProcessor, NetTuning, Ready, Registry, Token,
    Verdict,
};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a client waits for its byte before counting the request as failed.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// ET_NET threads of every iocore mode: the machine's core count.
const ET_THREADS: usize = 2;
const QUEUE_DELAY: &str = "proxy.process.net.accept_queue_delay_us";

// ---------------------------------------------------------------------------------------
// Settings and modes

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Baseline,
    Threads(usize),
    Event { reuseport: bool },
    Periodic,
}

const ALL_MODES: [Mode; 6] = [
    Mode::Baseline,
    Mode::Threads(1),
    Mode::Threads(2),
    Mode::Event { reuseport: false },
    Mode::Event { reuseport: true },
    Mode::Periodic,
];

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline",
            Mode::Threads(1) => "threads-1",
            Mode::Threads(_) => "threads-2",
            Mode::Event { reuseport: false } => "event",
            Mode::Event { reuseport: true } => "event-reuseport",
            Mode::Periodic => "periodic",
        }
    }

    /// The iocore accept mode, or None for the baseline server.
    fn accept_mode(self) -> Option<AcceptMode> {
        match self {
            Mode::Baseline => None,
            Mode::Threads(count) => Some(AcceptMode::Threads {
                count,
                avoid_event_cores: false,
            }),
            Mode::Event { reuseport } => Some(AcceptMode::Event {
                listener_per_thread: reuseport,
            }),
            Mode::Periodic => Some(AcceptMode::Periodic),
        }
    }
}

struct Settings {
    duration: Duration,
    clients: usize,
    modes: Vec<Mode>,
    /// Run as a smoke test (not under `cargo bench`): short, and problems fail the run.
    smoke: bool,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let smoke = !std::env::args().any(|a| a == "--bench");
        let secs = match std::env::var("ACCEPT_BENCH_SECS") {
            Ok(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or(format!("ACCEPT_BENCH_SECS={v:?}: want a positive number"))?,
            Err(_) if smoke => 0.3,
            Err(_) => 10.0,
        };
        let clients = match std::env::var("ACCEPT_BENCH_CLIENTS") {
            Ok(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!(
                    "ACCEPT_BENCH_CLIENTS={v:?}: want a positive integer"
                ))?,
            Err(_) if smoke => 8,
            Err(_) => 64,
        };
        let modes = match std::env::var("ACCEPT_BENCH_MODES") {
            Ok(v) => {
                let wanted: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                if let Some(bad) = wanted
                    .iter()
                    .find(|w| !ALL_MODES.iter().any(|m| m.name() == **w))
                {
                    let names: Vec<_> = ALL_MODES.iter().map(|m| m.name()).collect();
                    return Err(format!(
                        "ACCEPT_BENCH_MODES: unknown mode {bad:?}; known: {}",
                        names.join(",")
                    ));
                }
                ALL_MODES
                    .into_iter()
                    .filter(|m| wanted.contains(&m.name()))
                    .collect()
            }
            Err(_) => ALL_MODES.to_vec(),
        };
        Ok(Settings {
            duration: Duration::from_secs_f64(secs),
            clients,
            modes,
            smoke,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Small libc helpers

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Total CPU time of this process (user + system, every thread), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain old data; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live rusage struct the kernel fills.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn set_linger0(fd: RawFd) -> io::Result<()> {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `lg` is a live linger struct and the length matches it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lg as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Waits up to `timeout` for `cond`, checking every millisecond; returns its last value.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------
// The clients (the same for every mode)

enum Failure {
    Connect(io::Error),
    Exchange(io::Error),
}

/// One connection-per-request exchange.
fn one_request(addr: SocketAddr) -> Result<(), Failure> {
    let mut s = TcpStream::connect(addr).map_err(Failure::Connect)?;
    // RST on close: no TIME_WAIT on either side, so ports are not exhausted.
    set_linger0(s.as_raw_fd()).map_err(Failure::Exchange)?;
    s.set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(Failure::Exchange)?;
    s.write_all(b"x").map_err(Failure::Exchange)?;
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err(Failure::Exchange(io::ErrorKind::UnexpectedEof.into())),
        Err(e) => Err(Failure::Exchange(e)),
    }
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What the clients of one run saw.
struct ClientResult {
    ok: u64,
    connect_errors: u64,
    exchange_errors: u64,
    /// A sample error message of each kind, for the notes.
    first_connect_error: Option<String>,
    first_exchange_error: Option<String>,
    /// From the start barrier until the last client thread finished.
    elapsed: Duration,
    /// connect() called → response byte read, µs.
    latency_us: Histogram<u64>,
}

impl ClientResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn errors(&self) -> u64 {
        self.connect_errors + self.exchange_errors
    }

    fn merge(&mut self, other: ClientResult) {
        self.ok += other.ok;
        self.connect_errors += other.connect_errors;
        self.exchange_errors += other.exchange_errors;
        self.first_connect_error = self
            .first_connect_error
            .take()
            .or(other.first_connect_error);
        self.first_exchange_error = self
            .first_exchange_error
            .take()
            .or(other.first_exchange_error);
        self.latency_us
            .add(&other.latency_us)
            .expect("same histogram bounds");
    }
}

fn client_loop(addr: SocketAddr, duration: Duration, start: &Barrier) -> ClientResult {
    let mut r = ClientResult {
        ok: 0,
        connect_errors: 0,
        exchange_errors: 0,
        first_connect_error: None,
        first_exchange_error: None,
        elapsed: Duration::ZERO,
        latency_us: latency_histogram(),
    };
    start.wait();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        match one_request(addr) {
            Ok(()) => {
                r.ok += 1;
                r.latency_us
                    .saturating_record(t0.elapsed().as_micros().max(1) as u64);
            }
            Err(Failure::Connect(e)) => {
                r.connect_errors += 1;
                // Out of ephemeral ports (or similar): back off instead of spinning.
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                r.first_connect_error.get_or_insert_with(|| e.to_string());
            }
            Err(Failure::Exchange(e)) => {
                r.exchange_errors += 1;
                r.first_exchange_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    r
}

/// Runs `settings.clients` client threads against `addr` for `settings.duration`.
fn run_clients(addr: SocketAddr, settings: &Settings) -> ClientResult {
    let start = Arc::new(Barrier::new(settings.clients + 1));
    let threads: Vec<JoinHandle<ClientResult>> = (0..settings.clients)
        .map(|i| {
            let (start, duration) = (start.clone(), settings.duration);
            std::thread::Builder::new()
                .name(format!("client {i}"))
                .stack_size(256 * 1024)
                .spawn(move || client_loop(addr, duration, &start))
                .expect("spawn a client thread")
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let mut total: Option<ClientResult> = None;
    for t in threads {
        let r = t.join().expect("client thread panicked");
        match &mut total {
            None => total = Some(r),
            Some(all) => all.merge(r),
        }
    }
    let mut total = total.expect("at least one client");
    total.elapsed = t0.elapsed();
    total
}

// ---------------------------------------------------------------------------------------
// The baseline server: one thread, one epoll, libc only

const LISTEN_TOKEN: u64 = u64::MAX;
const STOP_TOKEN: u64 = u64::MAX - 1;

struct BaselineServer {
    addr: SocketAddr,
    stop: OwnedFd,
    thread: JoinHandle<io::Result<u64>>,
}

impl BaselineServer {
    fn start() -> io::Result<BaselineServer> {
        // SAFETY: plain syscall; on success we own the descriptor.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: `raw` was just created and is owned by nobody else.
        let listener = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_in is plain old data; all-zero is valid.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `sin` is a valid sockaddr_in of length `len`.
        cvt(unsafe { libc::bind(raw, (&sin as *const libc::sockaddr_in).cast(), len) })?;
        // The same backlog iocore's Listener uses by default.
        // SAFETY: plain syscall on a socket we own.
        cvt(unsafe { libc::listen(raw, iocore::net::somaxconn()) })?;
        let mut bound_len = len;
        // SAFETY: `sin`/`bound_len` describe a live buffer the kernel fills.
        cvt(unsafe {
            libc::getsockname(
                raw,
                (&mut sin as *mut libc::sockaddr_in).cast(),
                &mut bound_len,
            )
        })?;
        let addr = SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            u16::from_be(sin.sin_port),
        ));

        // SAFETY: plain syscall; on success we own the descriptor.
        let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: plain syscall; on success we own the descriptor.
        let stop = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        epoll_add(epoll.as_raw_fd(), raw, LISTEN_TOKEN)?;
        epoll_add(epoll.as_raw_fd(), stop.as_raw_fd(), STOP_TOKEN)?;
        let thread = std::thread::Builder::new()
            .name("baseline".into())
            .spawn(move || baseline_loop(&epoll, &listener))?;
        Ok(BaselineServer { addr, stop, thread })
    }

    /// Stops the loop; returns how many connections it accepted.
    fn stop(self) -> io::Result<u64> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        self.thread.join().expect("baseline thread panicked")
    }
}

fn epoll_add(epfd: RawFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a live epoll_event; the kernel copies it.
    cvt(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

/// The whole baseline server. Connections live in `conns`, indexed by descriptor;
/// dropping one closes it, which also removes it from the epoll set.
fn baseline_loop(epoll: &OwnedFd, listener: &OwnedFd) -> io::Result<u64> {
    let mut conns: Vec<Option<OwnedFd>> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut accepted = 0u64;
    loop {
        // SAFETY: `events` is a live buffer of `events.len()` epoll_event structs.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                -1,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            match ev.u64 {
                STOP_TOKEN => return Ok(accepted),
                LISTEN_TOKEN => loop {
                    // SAFETY: a null address is allowed; the new descriptor is ours.
                    let fd = unsafe {
                        libc::accept4(
                            listener.as_raw_fd(),
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        match io::Error::last_os_error().raw_os_error() {
                            Some(libc::EAGAIN) => break,
                            Some(libc::EINTR | libc::ECONNABORTED) => continue,
                            _ => return Err(io::Error::last_os_error()),
                        }
                    }
                    accepted += 1;
                    // SAFETY: accept4 returned a new descriptor nobody else owns.
                    let conn = unsafe { OwnedFd::from_raw_fd(fd) };
                    epoll_add(epoll.as_raw_fd(), fd, fd as u64)?;
                    let i = fd as usize;
                    if conns.len() <= i {
                        conns.resize_with(i + 1, || None);
                    }
                    conns[i] = Some(conn);
                },
                token => {
                    let i = token as usize;
                    let Some(conn) = conns.get(i).and_then(Option::as_ref) else {
                        continue;
                    };
                    let mut byte = [0u8; 1];
                    // SAFETY: `byte` is a live, writable 1-byte buffer.
                    let r = unsafe { libc::recv(conn.as_raw_fd(), byte.as_mut_ptr().cast(), 1, 0) };
                    if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                        continue;
                    }
                    if r == 1 {
                        // SAFETY: `byte` is a live 1-byte buffer.
                        unsafe {
                            libc::send(
                                conn.as_raw_fd(),
                                byte.as_ptr().cast(),
                                1,
                                libc::MSG_NOSIGNAL,
                            )
                        };
                    }
                    conns[i] = None;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The iocore server

/// The acceptor's work on the connection's ET_NET thread: wait for the byte, echo it,
/// close (by dropping the connection with the handler).
fn serve(conn: NetConnection, t: &mut EThread, register_failures: &AtomicU64) {
    let fd = conn.as_raw_fd();
    let handler = move |_: &mut EThread, _: Token, _: Ready| -> Verdict {
        let mut byte = [0u8; 1];
        match conn.recv(&mut byte) {
            Ok(1) => {
                let _ = conn.send(&byte);
                Verdict::Remove
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Verdict::Keep,
            // End of stream or an error: the client is gone.
            _ => Verdict::Remove,
        }
    };
    if t.register_sole(fd, Interest::READ, Box::new(handler))
        .is_err()
    {
        register_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the server side of one iocore run reported.
struct ServerStats {
    accepts: u64,
    /// p50, p99, max from the registry.
    queue_delay_us: Option<(i64, i64, i64)>,
    /// The same delay (accept() return → acceptor start) measured by this bench's
    /// acceptor into its own histogram: p50, p99, max.
    acceptor_delay_us: (u64, u64, u64),
    accept_errors: i64,
    register_failures: u64,
    /// `connections_currently_open` once the clients finished (and had time to settle).
    open_after_clients: i64,
    /// The action's work all stopped within 5 s of cancel.
    stopped: bool,
    /// From `cancel()` to every accept loop of the action having stopped.
    cancel_to_stopped: Duration,
    /// `accepts_currently_open` after the stop.
    acceptors_open_after_stop: i64,
}

fn run_iocore(
    mode: Mode,
    accept_mode: AcceptMode,
    settings: &Settings,
) -> Result<(ClientResult, ServerStats, f64), String> {
    let events = Arc::new(
        EventProcessor::start(&EventProcessorOptions {
            threads: ET_THREADS,
            pin_cores: false,
            name: "ET_NET".into(),
        })
        .map_err(|e| format!("start event threads: {e}"))?,
    );
    let registry = Registry::new();
    let tuning = NetTuning {
        connections_throttle: 0,
        ..NetTuning::default()
    };
    let net = NetProcessor::new(events.clone(), registry.clone(), &tuning);
    let mut options = ListenOptions::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    options.reuseport = matches!(mode, Mode::Event { reuseport: true });
    let listener = Arc::new(Listener::bind(&options).map_err(|e| e.to_string())?);
    let register_failures = Arc::new(AtomicU64::new(0));
    let delays = Arc::new(Mutex::new(latency_histogram()));
    let (failures, delays_in) = (register_failures.clone(), delays.clone());
    let acceptor: Arc<dyn Acceptor> = Arc::new(move |conn: NetConnection, t: &mut EThread| {
        let waited = conn.accepted_at().elapsed().as_micros() as u64;
        delays_in
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_record(waited);
        serve(conn, t, &failures)
    });
    let action = net
        .main_accept(
            acceptor,
            listener.clone(),
            &AcceptOptions::new(mode.name(), accept_mode),
        )
        .map_err(|e| e.to_string())?;

    let cpu0 = cpu_seconds();
    let clients = run_clients(listener.local_addr(), settings);
    let cpu = cpu_seconds() - cpu0;

    // A client has its byte a moment before the server drops the connection.
    wait_until(Duration::from_secs(2), || net.connections_open() == 0);
    let open_after_clients = net.connections_open();
    let cancelled_at = Instant::now();
    action.cancel();
    let stopped = action.wait_done(Duration::from_secs(5));
    let cancel_to_stopped = cancelled_at.elapsed();
    let value = |name: &str| registry.value(name);
    let queue_delay_us = match (
        value(&format!("{QUEUE_DELAY}.p50")),
        value(&format!("{QUEUE_DELAY}.p99")),
        value(&format!("{QUEUE_DELAY}.max")),
    ) {
        (Some(p50), Some(p99), Some(max)) => Some((p50, p99, max)),
        _ => None,
    };
    let acceptor_delay_us = {
        let h = delays.lock().unwrap_or_else(|e| e.into_inner());
        (
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.max(),
        )
    };
    let stats = ServerStats {
        accepts: value("proxy.process.tcp.total_accepts").unwrap_or(0) as u64,
        queue_delay_us,
        acceptor_delay_us,
        accept_errors: value("proxy.process.net.accept_errors").unwrap_or(0),
        register_failures: register_failures.load(Ordering::Relaxed),
        open_after_clients,
        stopped,
        cancel_to_stopped,
        acceptors_open_after_stop: value("proxy.process.net.accepts_currently_open").unwrap_or(0),
    };
    events.shutdown();
    Ok((clients, stats, cpu))
}

// ---------------------------------------------------------------------------------------
// Running and reporting

/// Whether iocore's histograms lose large values. Found while writing this bench:
/// `stats::Histogram` records with hdrhistogram's `saturating_record` on a histogram
/// created as `Histogram::new(3)` (bounds 1..2, auto-resize), and saturating records never
/// resize, so every value above 2047 is clamped to 2. Checked at run time so the report
/// stops warning once it is fixed.
fn registry_histogram_clamps() -> bool {
    let h = Registry::new().histogram("bench.self_check_us");
    h.record(1_000_000);
    let (_, _, max, _) = h.summary();
    max < 1_000_000
}

struct Row {
    label: String,
    baseline: bool,
    clients: ClientResult,
    /// Connections the server accepted.
    accepts: u64,
    server: Option<ServerStats>,
    cpu_s: f64,
}

fn run_baseline(label: &str, settings: &Settings) -> Result<Row, String> {
    let server = BaselineServer::start().map_err(|e| format!("baseline server: {e}"))?;
    let cpu0 = cpu_seconds();
    let clients = run_clients(server.addr, settings);
    let cpu = cpu_seconds() - cpu0;
    let accepts = server
        .stop()
        .map_err(|e| format!("baseline server failed: {e}"))?;
    Ok(Row {
        label: label.into(),
        baseline: true,
        clients,
        accepts,
        server: None,
        cpu_s: cpu,
    })
}

/// Runs one mode under the row label `label`.
fn run_mode(mode: Mode, label: &str, settings: &Settings) -> Result<Row, String> {
    let Some(accept_mode) = mode.accept_mode() else {
        return run_baseline(label, settings);
    };
    let (clients, stats, cpu) =
        run_iocore(mode, accept_mode, settings).map_err(|e| format!("{label}: {e}"))?;
    Ok(Row {
        label: label.into(),
        baseline: false,
        clients,
        accepts: stats.accepts,
        server: Some(stats),
        cpu_s: cpu,
    })
}

/// Problems worth a reader's attention (and fatal in smoke runs).
fn problems(row: &Row) -> Vec<String> {
    let mut out = Vec::new();
    if row.clients.ok == 0 {
        out.push(format!("{}: no request succeeded", row.label));
    }
    if let Some(s) = &row.server {
        if !s.stopped {
            out.push(format!(
                "{}: Action::wait_done timed out 5 s after cancel",
                row.label
            ));
        }
        if s.acceptors_open_after_stop != 0 {
            out.push(format!(
                "{}: accepts_currently_open = {} after the stop",
                row.label, s.acceptors_open_after_stop
            ));
        }
        if s.open_after_clients != 0 {
            out.push(format!(
                "{}: connections_currently_open = {} 2 s after the clients finished",
                row.label, s.open_after_clients
            ));
        }
        if s.register_failures != 0 {
            out.push(format!(
                "{}: {} EThread::register failures",
                row.label, s.register_failures
            ));
        }
        if s.accept_errors != 0 {
            out.push(format!("{}: {} accept errors", row.label, s.accept_errors));
        }
    }
    if row.accepts < row.clients.ok {
        out.push(format!(
            "{}: {} accepts for {} answered requests",
            row.label, row.accepts, row.clients.ok
        ));
    }
    out
}

fn print_report(rows: &[Row], settings: &Settings) {
    let clamps = registry_histogram_clamps();
    let mark = if clamps { "†" } else { "" };
    let baselines: Vec<f64> = rows
        .iter()
        .filter(|r| r.baseline)
        .map(|r| r.clients.rate())
        .collect();
    let reference =
        (!baselines.is_empty()).then(|| baselines.iter().sum::<f64>() / baselines.len() as f64);

    println!();
    println!(
        "Connection-per-request on 127.0.0.1: {} client threads, {:.1} s per mode, \
         iocore with {ET_THREADS} ET_NET threads.",
        settings.clients,
        settings.duration.as_secs_f64()
    );
    println!();
    println!(
        "| mode | req/s | vs baseline | errors | accepts \
         | accept-queue delay p50 / p99 / max (µs), registry \
         | same, measured in the acceptor \
         | client connect→response p50 / p99 (µs) | cancel → stopped (ms) | process CPU s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ratio = reference.map_or("n/a".to_string(), |b| {
            format!("{:.2}", r.clients.rate() / b)
        });
        let delay = match r.server.as_ref().and_then(|s| s.queue_delay_us) {
            Some((p50, p99, max)) => format!("{p50} / {p99} / {max}{mark}"),
            None if r.baseline => "–".into(),
            None => "missing".into(),
        };
        let measured = match &r.server {
            Some(s) => {
                let (p50, p99, max) = s.acceptor_delay_us;
                format!("{p50} / {p99} / {max}")
            }
            None => "–".into(),
        };
        let cancel = r.server.as_ref().map_or("–".into(), |s| {
            format!("{:.2}", s.cancel_to_stopped.as_secs_f64() * 1e3)
        });
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} / {} | {} | {:.1} |",
            r.label,
            r.clients.rate(),
            ratio,
            r.clients.errors(),
            r.accepts,
            delay,
            measured,
            r.clients.latency_us.value_at_quantile(0.50),
            r.clients.latency_us.value_at_quantile(0.99),
            cancel,
            r.cpu_s,
        );
    }
    println!();
    match baselines.as_slice() {
        [] => println!("No baseline in this run (ACCEPT_BENCH_MODES): no ratios."),
        [one] => println!("Reference: the baseline run, {one:.0} req/s."),
        many => {
            let each: Vec<String> = many.iter().map(|b| format!("{b:.0}")).collect();
            println!(
                "Reference: the mean of the baseline runs ({} req/s) = {:.0} req/s.",
                each.join(" and "),
                reference.unwrap_or(0.0)
            );
        }
    }
    if clamps {
        println!(
            "† iocore's stats::Histogram clamps every value above 2047 µs to 2 µs (hdrhistogram \
             saturating_record never auto-resizes), so these accept-queue delays understate: \
             a p99 or max near 2047 means \"2047 or more\", and p50 may be pulled down."
        );
    }
    println!(
        "Process CPU s: getrusage(RUSAGE_SELF) over the run, so it includes the client \
         threads as well as the server; informative only."
    );
    for r in rows {
        let c = &r.clients;
        if c.errors() > 0 {
            println!(
                "Errors in {}: {} connect ({}), {} exchange ({}).",
                r.label,
                c.connect_errors,
                c.first_connect_error.as_deref().unwrap_or("-"),
                c.exchange_errors,
                c.first_exchange_error.as_deref().unwrap_or("-"),
            );
        }
    }
}

fn main() {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("accept_rate: {e}");
            std::process::exit(2);
        }
    };
    if settings.smoke {
        eprintln!("accept_rate: smoke run (use `cargo bench --bench accept_rate` to measure)");
    }
    let mut plan: Vec<(Mode, &str)> = settings.modes.iter().map(|m| (*m, m.name())).collect();
    let has_iocore = settings.modes.iter().any(|m| *m != Mode::Baseline);
    if settings.modes.contains(&Mode::Baseline) && has_iocore && !settings.smoke {
        // The machine is noisy: a second baseline at the end shows the drift.
        plan.push((Mode::Baseline, "baseline (again)"));
    }

    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (mode, label) in plan {
        eprintln!(
            "accept_rate: {label} for {:.1} s ...",
            settings.duration.as_secs_f64()
        );
        match run_mode(mode, label, &settings) {
            Ok(row) => rows.push(row),
            Err(e) => failed.push(e),
        }
    }

    print_report(&rows, &settings);
    let mut trouble: Vec<String> = rows.iter().flat_map(problems).collect();
    trouble.extend(failed);
    if !trouble.is_empty() {
        println!();
        println!("Problems:");
        for p in &trouble {
            println!("- {p}");
        }
        if settings.smoke {
            std::process::exit(1);
        }
    }
}
