//! HTTP/1.1 load tool for side-by-side runs of Turnstile against ATS, nginx and HAProxy
//! on loopback (SPEC §8; `benches/side_by_side.sh` drives it). Std threads only.
//!
//! ```sh
//! cargo bench --bench load -- --target 127.0.0.1:8080 --mode ka --conns 64 --secs 10
//! ```
//!
//! Arguments (`--flag VALUE` or `--flag=VALUE`; unknown flags such as cargo's `--bench`
//! are ignored):
//! - `--target HOST:PORT` the server; without it the tool tests itself against a small
//!   in-process HTTP server (what `cargo test --benches` runs) and exits 1 on a problem;
//! - `--mode ka|close|burst|idle` (default `ka`):
//!   - `ka`: `--conns` threads, each with one keep-alive connection, GET back to back
//!     (one request in flight per connection); req/s and latency;
//!   - `close`: `--conns` threads, each looping connect, `GET` with `Connection: close`,
//!     read the whole response, close; latency includes the connect;
//!   - `burst`: `--burst` connections opened as fast as possible by `--threads` threads
//!     (default 8), non-blocking, each sending its request as soon as it is connected;
//!     latency is connect start → first response byte;
//!   - `idle`: `--conns` keep-alive connections, each completing one request, then held
//!     `--hold-secs` (default 5); reports the servers' VmRSS growth per connection;
//! - `--zipf N` (ka mode): each request asks one of N URLs, `PATH` followed by a rank
//!   1..=N, drawn from a Zipf distribution of exponent `--zipf-s S` (default 1.0), as
//!   web and CDN traffic is; each connection draws from its own seeded generator, so
//!   runs are repeatable (`benches/tier.sh` uses it for a cache tier's hit ratio);
//! - `--conns N` (64), `--secs S` (10), `--path /p` (`/`), `--host H` (`bench`),
//!   `--burst N` (6000), `--threads N` (burst threads, 8), `--hold-secs S` (5);
//! - `--tls SNI`: speak TLS (rustls, X25519 key exchange, any certificate accepted)
//!   with SNI `SNI` in the ka, close and idle modes; `--resume 1` lets connections
//!   resume sessions (in close mode: resumed handshakes), otherwise every connection
//!   makes a full handshake;
//! - `--pid PID` (repeatable or comma-separated): server processes whose CPU time
//!   (utime + stime of /proc/PID/stat: every thread of the process) is sampled before and
//!   after the run, reported as CPU seconds per 10k successful requests; in idle mode
//!   their VmRSS is sampled instead.
//!
//! Output: one line of `key=value` pairs (mode, rps, p50_us, p99_us, max_us, errors,
//! cpu_s_per_10k, …; `na` where there is nothing to report), then one human line.
//! Errors count every request that did not end in a complete 2xx response, split by
//! cause (`err_connect`, `err_timeout`, `err_reset`, `err_eof`, `err_http`, `err_status`).
//! Every socket has 10 s timeouts and every loop a deadline; client sockets close with
//! SO_LINGER 0 so no TIME_WAIT piles up. RLIMIT_NOFILE is raised to the hard limit.

use hdrhistogram::Histogram;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connect, read and write timeout of every client socket, and the limit on one response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// Arguments

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Ka,
    Close,
    Burst,
    Idle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Ka => "ka",
            Mode::Close => "close",
            Mode::Burst => "burst",
            Mode::Idle => "idle",
        }
    }
}

#[derive(Clone, Debug)]
struct Args {
    target: Option<String>,
    mode: Mode,
    conns: usize,
    secs: f64,
    path: String,
    host: String,
    burst: usize,
    threads: usize,
    hold_secs: f64,
    pids: Vec<i32>,
    zipf: Option<usize>,
    zipf_s: f64,
    tls: Option<String>,
    resume: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            target: None,
            mode: Mode::Ka,
            conns: 64,
            secs: 10.0,
            path: "/".into(),
            host: "bench".into(),
            burst: 6000,
            threads: 8,
            hold_secs: 5.0,
            pids: Vec::new(),
            zipf: None,
            zipf_s: 1.0,
            tls: None,
            resume: false,
        }
    }
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        i += 1;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let known = [
            "--target",
            "--mode",
            "--conns",
            "--secs",
            "--path",
            "--host",
            "--burst",
            "--threads",
            "--hold-secs",
            "--pid",
            "--zipf",
            "--zipf-s",
            "--tls",
            "--resume",
        ];
        if !known.contains(&flag) {
            continue; // cargo's `--bench` and anything else unknown
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = argv.get(i).ok_or(format!("{flag}: missing value"))?;
                i += 1;
                v.clone()
            }
        };
        let num = |v: &str| -> Result<usize, String> {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{flag} {v:?}: want a positive integer"))
        };
        let secs = |v: &str| -> Result<f64, String> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s < 86400.0)
                .ok_or(format!("{flag} {v:?}: want a positive number of seconds"))
        };
        match flag {
            "--target" => a.target = Some(value),
            "--mode" => {
                a.mode = match value.as_str() {
                    "ka" => Mode::Ka,
                    "close" => Mode::Close,
                    "burst" => Mode::Burst,
                    "idle" => Mode::Idle,
                    other => return Err(format!("--mode {other:?}: want ka|close|burst|idle")),
                }
            }
            "--conns" => a.conns = num(&value)?,
            "--secs" => a.secs = secs(&value)?,
            "--path" if value.starts_with('/') => a.path = value,
            "--path" => return Err(format!("--path {value:?}: must start with /")),
            "--host" if !value.is_empty() && !value.contains(['\r', '\n', ' ']) => a.host = value,
            "--host" => return Err(format!("--host {value:?}: not a host")),
            "--burst" => a.burst = num(&value)?,
            "--threads" => a.threads = num(&value)?,
            "--hold-secs" => a.hold_secs = secs(&value)?,
            "--zipf" => a.zipf = Some(num(&value)?),
            "--zipf-s" => {
                a.zipf_s = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 10.0)
                    .ok_or(format!("--zipf-s {value:?}: want a number in (0, 10]"))?
            }
            "--tls" => a.tls = Some(value),
            "--resume" => a.resume = value == "1",
            "--pid" => {
                for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    a.pids.push(
                        p.parse::<i32>()
                            .ok()
                            .filter(|p| *p > 0)
                            .ok_or(format!("--pid {p:?}: not a process id"))?,
                    );
                }
            }
            _ => unreachable!("every known flag is matched"),
        }
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------
// Process sampling and small libc helpers

/// CPU seconds (user + system, all threads) of `pid`, from /proc/PID/stat.
fn proc_cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses): state is
    // field 3, utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((utime + stime) / hz)
}

/// Sum of the CPU seconds of `pids`, or None when there are none or one is unreadable.
fn cpu_total(pids: &[i32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| proc_cpu_seconds(*p)).sum()
}

/// VmRSS of `pid` in KiB.
fn proc_rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_total(pids: &[i32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| proc_rss_kib(*p)).sum()
}

/// Raises RLIMIT_NOFILE to its hard limit; returns the soft limit now in force.
fn raise_nofile() -> u64 {
    // SAFETY: rlimit is plain old data; the kernel fills / reads the live struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}

fn set_linger0(fd: RawFd) {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `lg` is a live linger struct and the length matches it. Failure only means
    // the socket closes with FIN instead of RST.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lg as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

// ---------------------------------------------------------------------------------------
// Results

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fail {
    /// connect() failed or timed out.
    Connect,
    /// A read or write timed out, or the response took longer than IO_TIMEOUT.
    Timeout,
    /// ECONNRESET, EPIPE and other socket errors.
    Reset,
    /// The server closed before a complete response.
    Eof,
    /// The response did not parse.
    Http,
    /// A complete response whose status was not 2xx.
    Status,
}

const FAILS: [(Fail, &str); 6] = [
    (Fail::Connect, "connect"),
    (Fail::Timeout, "timeout"),
    (Fail::Reset, "reset"),
    (Fail::Eof, "eof"),
    (Fail::Http, "http"),
    (Fail::Status, "status"),
];

fn fail_of(e: &io::Error) -> Fail {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fail::Timeout,
        io::ErrorKind::UnexpectedEof => Fail::Eof,
        _ => Fail::Reset,
    }
}

struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    fails: [u64; 6],
    reconnects: u64,
    /// When the last request of this thread ended.
    last: Option<Instant>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds"),
            ok: 0,
            fails: [0; 6],
            reconnects: 0,
            last: None,
        }
    }

    fn fail(&mut self, f: Fail) {
        self.fails[FAILS.iter().position(|(k, _)| *k == f).unwrap_or(0)] += 1;
    }

    fn record(&mut self, since: Instant) {
        let us = since.elapsed().as_micros().clamp(1, 120_000_000) as u64;
        self.hist.saturating_record(us);
        self.ok += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.ok += other.ok;
        for (a, b) in self.fails.iter_mut().zip(other.fails) {
            *a += b;
        }
        self.reconnects += other.reconnects;
        self.last = self.last.max(other.last);
    }

    fn errors(&self) -> u64 {
        self.fails.iter().sum()
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 client connection

struct Response {
    status: u16,
    /// The server will close: `Connection: close`, HTTP/1.0 without keep-alive, or a body
    /// delimited by the close.
    close: bool,
}

struct Conn {
    s: Stream,
    buf: Vec<u8>,
}

/// A client connection's byte stream: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// `--tls`: the client configuration and the SNI name, set once before the threads.
static TLS: std::sync::OnceLock<(
    Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
)> = std::sync::OnceLock::new();

/// Accepts any server certificate: the benchmark measures the servers, not the PKI.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Sets up `--tls`: X25519 only (what OpenSSL-based peers and Turnstile all do the
/// same way; rustls would otherwise offer a post-quantum share only some servers take),
/// ALPN http/1.1, resumption only with `--resume 1`.
fn init_tls(sni: &str, resume: bool) -> Result<(), String> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let provider = Arc::new(provider);
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let _ = TLS.set((Arc::new(cfg), name));
    Ok(())
}

fn connect(addr: &SocketAddr) -> Result<Conn, Fail> {
    let s = TcpStream::connect_timeout(addr, IO_TIMEOUT).map_err(|_| Fail::Connect)?;
    set_linger0(s.as_raw_fd());
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let s = match TLS.get() {
        None => Stream::Plain(s),
        Some((cfg, name)) => {
            let conn =
                rustls::ClientConnection::new(cfg.clone(), name.clone()).map_err(|_| Fail::Http)?;
            let mut tls = rustls::StreamOwned::new(conn, s);
            while tls.conn.is_handshaking() {
                tls.conn
                    .complete_io(&mut tls.sock)
                    .map_err(|e| fail_of(&e))?;
            }
            Stream::Tls(Box::new(tls))
        }
    };
    Ok(Conn {
        s,
        buf: Vec::with_capacity(4096),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a response head says about the body.
enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    len: usize,
    status: u16,
    close: bool,
    framing: Framing,
}

/// Parses a complete head in `buf` (ending in CRLF CRLF at `end`).
fn parse_head(buf: &[u8], end: usize) -> Result<Head, Fail> {
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| Fail::Http)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or(Fail::Http)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().ok_or(Fail::Http)?;
    if !version.starts_with("HTTP/1.") {
        return Err(Fail::Http);
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(Fail::Http)?;
    let mut close = version == "HTTP/1.0";
    let mut length = None;
    let mut chunked = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Fail::Http)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| Fail::Http)?;
            if length.is_some_and(|l| l != n) {
                return Err(Fail::Http);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && version == "HTTP/1.0" {
                    close = false;
                }
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Head {
        len: end + 4,
        status,
        close,
        framing,
    })
}

impl Conn {
    /// Reads more bytes into the buffer; Ok(0) is end of stream.
    fn fill(&mut self, deadline: Instant) -> Result<usize, Fail> {
        if Instant::now() >= deadline {
            return Err(Fail::Timeout);
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.s.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail_of(&e)),
            }
        }
    }

    /// Makes the buffer hold at least `n` bytes.
    fn need(&mut self, n: usize, deadline: Instant) -> Result<(), Fail> {
        while self.buf.len() < n {
            if self.fill(deadline)? == 0 {
                return Err(Fail::Eof);
            }
        }
        Ok(())
    }

    /// Index just past the CRLF ending the line that starts at `from`.
    fn line_end(&mut self, from: usize, deadline: Instant) -> Result<usize, Fail> {
        loop {
            if let Some(i) = find(&self.buf[from..], b"\r\n") {
                return Ok(from + i + 2);
            }
            if self.buf.len() - from > MAX_HEAD {
                return Err(Fail::Http);
            }
            if self.fill(deadline)? == 0 {
                return Err(Fail::Eof);
            }
        }
    }

    /// Sends `req` and reads one complete response (skipping 1xx).
    fn exchange(&mut self, req: &[u8]) -> Result<Response, Fail> {
        self.s.write_all(req).map_err(|e| fail_of(&e))?;
        self.s.flush().map_err(|e| fail_of(&e))?;
        self.read_response(Instant::now() + IO_TIMEOUT)
    }

    fn read_response(&mut self, deadline: Instant) -> Result<Response, Fail> {
        loop {
            let end = loop {
                if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                    break end;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(Fail::Http);
                }
                if self.fill(deadline)? == 0 {
                    return Err(Fail::Eof);
                }
            };
            let head = parse_head(&self.buf, end)?;
            let consumed = match head.framing {
                Framing::None => head.len,
                Framing::Length(n) => {
                    self.need(head.len + n, deadline)?;
                    head.len + n
                }
                Framing::Chunked => self.chunked_end(head.len, deadline)?,
                Framing::UntilClose => {
                    while self.fill(deadline)? > 0 {
                        if self.buf.len() > 64 << 20 {
                            return Err(Fail::Http);
                        }
                    }
                    self.buf.len()
                }
            };
            self.buf.drain(..consumed);
            if (100..200).contains(&head.status) {
                continue;
            }
            return Ok(Response {
                status: head.status,
                close: head.close,
            });
        }
    }

    /// Where a chunked body starting at `at` ends (after its trailer section).
    fn chunked_end(&mut self, mut at: usize, deadline: Instant) -> Result<usize, Fail> {
        loop {
            let eol = self.line_end(at, deadline)?;
            let line = std::str::from_utf8(&self.buf[at..eol - 2]).map_err(|_| Fail::Http)?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| Fail::Http)?;
            at = eol;
            if size == 0 {
                // Trailer fields, then an empty line.
                loop {
                    let eol = self.line_end(at, deadline)?;
                    let empty = eol - at == 2;
                    at = eol;
                    if empty {
                        return Ok(at);
                    }
                }
            }
            self.need(at + size + 2, deadline)?;
            if &self.buf[at + size..at + size + 2] != b"\r\n" {
                return Err(Fail::Http);
            }
            at += size + 2;
        }
    }
}

fn request(path: &str, host: &str, close: bool) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: turnstile-load\r\nAccept: */*\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------
// Modes

/// Runs `per_thread` on `n` threads started together; returns the start instant, the
/// merged tally and the elapsed time up to the last completed request.
fn run_threads(
    n: usize,
    pids: &[i32],
    per_thread: impl Fn(usize, Arc<Barrier>) -> Tally + Send + Sync + 'static,
) -> (Tally, Duration, Option<f64>) {
    let per_thread = Arc::new(per_thread);
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles: Vec<JoinHandle<Tally>> = (0..n)
        .map(|i| {
            let f = Arc::clone(&per_thread);
            let b = Arc::clone(&barrier);
            std::thread::Builder::new()
                .name(format!("load-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || f(i, b))
                .expect("spawn client thread")
        })
        .collect();
    let cpu0 = cpu_total(pids);
    barrier.wait();
    let start = Instant::now();
    let mut total = Tally::new();
    for h in handles {
        match h.join() {
            Ok(t) => total.merge(t),
            Err(_) => total.fail(Fail::Http),
        }
    }
    let cpu = match (cpu0, cpu_total(pids)) {
        (Some(a), Some(b)) => Some((b - a).max(0.0)),
        _ => None,
    };
    let elapsed = total
        .last
        .map_or(start.elapsed(), |l| l.saturating_duration_since(start));
    (total, elapsed, cpu)
}

/// URLs `PREFIX1..=PREFIXn` drawn with Zipf probabilities: rank k with weight 1/k^s.
struct ZipfUrls {
    /// Cumulative probabilities, rank 1 first.
    cdf: Vec<f64>,
    prefix: String,
    host: String,
}

impl ZipfUrls {
    fn new(n: usize, s: f64, prefix: &str, host: &str) -> ZipfUrls {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        ZipfUrls {
            cdf,
            prefix: prefix.to_string(),
            host: host.to_string(),
        }
    }

    /// The rank (1-based) for a uniform draw `u` in [0, 1).
    fn rank(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|c| *c <= u)
            .min(self.cdf.len() - 1)
            + 1
    }

    /// The next request from generator `state` (xorshift64*).
    fn request(&self, state: &mut u64) -> Vec<u8> {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        request(
            &format!("{}{}", self.prefix, self.rank(u)),
            &self.host,
            false,
        )
    }
}

/// One keep-alive connection sending `req` back to back, or, with `zipf`, requests drawn
/// from it (with its generator's state `.1`).
fn keep_alive_urls(
    addr: SocketAddr,
    req: Arc<Vec<u8>>,
    mut zipf: Option<(Arc<ZipfUrls>, u64)>,
    dur: Duration,
    b: Arc<Barrier>,
) -> Tally {
    let mut t = Tally::new();
    let mut conn = connect(&addr).map_err(|f| t.fail(f)).ok();
    b.wait();
    let deadline = Instant::now() + dur;
    while Instant::now() < deadline {
        if conn.is_none() {
            match connect(&addr) {
                Ok(c) => {
                    t.reconnects += 1;
                    conn = Some(c);
                }
                Err(f) => {
                    t.fail(f);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let drawn = zipf.as_mut().map(|(z, state)| z.request(state));
        let t0 = Instant::now();
        match c.exchange(drawn.as_deref().unwrap_or(&req)) {
            Ok(resp) => {
                if (200..300).contains(&resp.status) {
                    t.record(t0);
                } else {
                    t.fail(Fail::Status);
                }
                if resp.close {
                    conn = None;
                }
            }
            Err(f) => {
                t.fail(f);
                conn = None;
            }
        }
        t.last = Some(Instant::now());
    }
    t
}

fn close_thread(addr: SocketAddr, req: Arc<Vec<u8>>, dur: Duration, b: Arc<Barrier>) -> Tally {
    let mut t = Tally::new();
    b.wait();
    let deadline = Instant::now() + dur;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        match connect(&addr).and_then(|mut c| c.exchange(&req)) {
            Ok(resp) if (200..300).contains(&resp.status) => t.record(t0),
            Ok(_) => t.fail(Fail::Status),
            Err(Fail::Connect) => {
                t.fail(Fail::Connect);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(f) => t.fail(f),
        }
        t.last = Some(Instant::now());
    }
    t
}

// --- burst: non-blocking sockets on one epoll per thread

fn sockaddr_of(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Connecting,
    Sent,
    Done,
}

struct Slot {
    fd: RawFd,
    t0: Instant,
    state: SlotState,
    first: Option<Instant>,
    buf: Vec<u8>,
}

struct Burst {
    ep: RawFd,
    slots: Vec<Slot>,
    req: Arc<Vec<u8>>,
    open: usize,
    t: Tally,
}

impl Burst {
    fn finish(&mut self, i: usize, outcome: Result<(), Fail>) {
        let s = &mut self.slots[i];
        if s.state == SlotState::Done {
            return;
        }
        s.state = SlotState::Done;
        // SAFETY: `fd` is this slot's open socket, closed exactly once here (closing also
        // removes it from the epoll set).
        unsafe { libc::close(s.fd) };
        s.buf = Vec::new();
        self.open -= 1;
        match outcome {
            Ok(()) => {
                let first = s.first.unwrap_or_else(Instant::now);
                let us = first.duration_since(s.t0).as_micros().clamp(1, 120_000_000) as u64;
                self.t.hist.saturating_record(us);
                self.t.ok += 1;
            }
            Err(f) => self.t.fail(f),
        }
        self.t.last = Some(Instant::now());
    }

    fn send(&mut self, i: usize) {
        let fd = self.slots[i].fd;
        // SAFETY: `req` is a live buffer of the given length; `fd` is an open socket.
        let n = unsafe {
            libc::send(
                fd,
                self.req.as_ptr().cast(),
                self.req.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n != self.req.len() as isize {
            // A fresh socket takes a small request whole; anything else is a failure.
            return self.finish(i, Err(Fail::Reset));
        }
        self.slots[i].state = SlotState::Sent;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: `ev` is a live epoll_event; `ep` and `fd` are open.
        unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_MOD, fd, &mut ev) };
    }

    fn on_event(&mut self, i: usize, events: u32) {
        match self.slots[i].state {
            SlotState::Done => {}
            SlotState::Connecting => {
                let mut err: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: `err` and `len` are live and sized for SO_ERROR.
                unsafe {
                    libc::getsockopt(
                        self.slots[i].fd,
                        libc::SOL_SOCKET,
                        libc::SO_ERROR,
                        (&mut err as *mut libc::c_int).cast(),
                        &mut len,
                    )
                };
                if err != 0 {
                    self.finish(i, Err(Fail::Connect));
                } else if events & libc::EPOLLOUT as u32 != 0 {
                    self.send(i);
                } else if events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                    self.finish(i, Err(Fail::Connect));
                }
            }
            SlotState::Sent => self.on_readable(i),
        }
    }

    fn on_readable(&mut self, i: usize) {
        let mut chunk = [0u8; 8192];
        loop {
            let fd = self.slots[i].fd;
            // SAFETY: `chunk` is a live buffer of the given length; `fd` is open.
            let n = unsafe { libc::recv(fd, chunk.as_mut_ptr().cast(), chunk.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => continue,
                    _ => return self.finish(i, Err(fail_of(&e))),
                }
            }
            if n == 0 {
                return self.finish(i, Err(Fail::Eof));
            }
            let s = &mut self.slots[i];
            if s.first.is_none() {
                s.first = Some(Instant::now());
            }
            s.buf.extend_from_slice(&chunk[..n as usize]);
            // Skip any 1xx heads; finish at the first final head.
            while let Some(end) = find(&s.buf, b"\r\n\r\n") {
                let outcome = match parse_head(&s.buf, end) {
                    Ok(h) if (100..200).contains(&h.status) => {
                        s.buf.drain(..h.len);
                        continue;
                    }
                    Ok(h) if (200..300).contains(&h.status) => Ok(()),
                    Ok(_) => Err(Fail::Status),
                    Err(f) => Err(f),
                };
                return self.finish(i, outcome);
            }
            if s.buf.len() > MAX_HEAD {
                return self.finish(i, Err(Fail::Http));
            }
        }
    }

    /// Waits up to `timeout_ms` for events and handles them.
    fn poll(&mut self, timeout_ms: i32) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 256];
        // SAFETY: `events` is a live array of the given length; `ep` is open.
        let n = unsafe {
            libc::epoll_wait(
                self.ep,
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        for ev in events.iter().take(n.max(0) as usize) {
            let (idx, bits) = (ev.u64 as usize, ev.events);
            self.on_event(idx, bits);
        }
    }

    /// Starts connection `i` of this thread.
    fn launch(&mut self, sa: &(libc::sockaddr_storage, libc::socklen_t), family: i32) {
        let i = self.slots.len();
        let t0 = Instant::now();
        // SAFETY: plain socket creation.
        let fd = unsafe {
            libc::socket(
                family,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            self.t.fail(Fail::Connect);
            return;
        }
        set_linger0(fd);
        let one: libc::c_int = 1;
        // SAFETY: `one` is a live c_int; `fd` is open.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        self.slots.push(Slot {
            fd,
            t0,
            state: SlotState::Connecting,
            first: None,
            buf: Vec::new(),
        });
        self.open += 1;
        // SAFETY: `sa` holds a valid socket address of length `sa.1`; `fd` is open.
        let r = unsafe { libc::connect(fd, (&sa.0 as *const libc::sockaddr_storage).cast(), sa.1) };
        let in_progress =
            r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINPROGRESS);
        if r < 0 && !in_progress {
            return self.finish(i, Err(Fail::Connect));
        }
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLOUT | libc::EPOLLIN) as u32,
            u64: i as u64,
        };
        // SAFETY: `ev` is a live epoll_event; `ep` and `fd` are open.
        if unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return self.finish(i, Err(Fail::Connect));
        }
        if r == 0 {
            self.send(i);
        }
    }
}

fn burst_thread(addr: SocketAddr, req: Arc<Vec<u8>>, count: usize, b: Arc<Barrier>) -> Tally {
    // SAFETY: plain epoll creation.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let mut burst = Burst {
        ep,
        slots: Vec::with_capacity(count),
        req,
        open: 0,
        t: Tally::new(),
    };
    let sa = sockaddr_of(&addr);
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    b.wait();
    if ep < 0 {
        for _ in 0..count {
            burst.t.fail(Fail::Connect);
        }
        return burst.t;
    }
    for _ in 0..count {
        burst.launch(&sa, family);
        burst.poll(0);
    }
    let deadline = Instant::now() + IO_TIMEOUT;
    while burst.open > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        burst.poll(left.as_millis().clamp(1, 100) as i32);
    }
    for i in 0..burst.slots.len() {
        burst.finish(i, Err(Fail::Timeout));
    }
    // SAFETY: `ep` is open and closed once.
    unsafe { libc::close(ep) };
    burst.t
}

// --- idle: many keep-alive connections, each after one request

fn idle_thread(addr: SocketAddr, req: Arc<Vec<u8>>, count: usize) -> (Tally, Vec<Conn>) {
    let mut t = Tally::new();
    let mut conns = Vec::with_capacity(count);
    let give_up = Instant::now() + Duration::from_secs(120);
    for _ in 0..count {
        if Instant::now() > give_up {
            t.fail(Fail::Timeout);
            continue;
        }
        let t0 = Instant::now();
        match connect(&addr).and_then(|mut c| c.exchange(&req).map(|r| (c, r))) {
            Ok((c, r)) if (200..300).contains(&r.status) && !r.close => {
                t.record(t0);
                conns.push(c);
            }
            Ok((_, r)) if (200..300).contains(&r.status) => t.fail(Fail::Eof),
            Ok(_) => t.fail(Fail::Status),
            Err(f) => t.fail(f),
        }
    }
    t.last = Some(Instant::now());
    (t, conns)
}

// ---------------------------------------------------------------------------------------
// Report

struct Report {
    mode: Mode,
    target: String,
    conns: usize,
    tally: Tally,
    elapsed: Duration,
    cpu: Option<f64>,
    rss: Option<(u64, u64)>,
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("na".into(), |v| format!("{v:.digits$}"))
}

impl Report {
    fn print(&self) {
        let t = &self.tally;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let rps = t.ok as f64 / secs;
        let (p50, p99, max) = if t.ok > 0 {
            (
                t.hist.value_at_quantile(0.5),
                t.hist.value_at_quantile(0.99),
                t.hist.max(),
            )
        } else {
            (0, 0, 0)
        };
        let per10k = self
            .cpu
            .filter(|_| t.ok > 0)
            .map(|c| c / t.ok as f64 * 10_000.0);
        let mut line = format!(
            "mode={} target={} conns={} secs={:.3} ok={} rps={:.0} p50_us={p50} p99_us={p99} \
             max_us={max} errors={}",
            self.mode.name(),
            self.target,
            self.conns,
            secs,
            t.ok,
            rps,
            t.errors()
        );
        for ((_, name), n) in FAILS.iter().zip(t.fails) {
            line.push_str(&format!(" err_{name}={n}"));
        }
        line.push_str(&format!(
            " reconnects={} cpu_s={} cpu_s_per_10k={}",
            t.reconnects,
            fmt_opt(self.cpu, 3),
            fmt_opt(per10k, 4)
        ));
        let per_conn = self
            .rss
            .and_then(|(a, b)| (t.ok > 0).then(|| (b as f64 - a as f64) / t.ok as f64));
        if self.mode == Mode::Idle {
            let (a, b) = self.rss.map_or((None, None), |(a, b)| (Some(a), Some(b)));
            line.push_str(&format!(
                " rss_before_kib={} rss_after_kib={} rss_kib_per_conn={}",
                a.map_or("na".into(), |v| v.to_string()),
                b.map_or("na".into(), |v| v.to_string()),
                fmt_opt(per_conn, 2)
            ));
        }
        println!("{line}");
        let ms = |us: u64| us as f64 / 1000.0;
        let human = match self.mode {
            Mode::Ka | Mode::Close => format!(
                "{} {}: {rps:.0} req/s over {secs:.1} s with {} connections ({} ok, {} errors), \
                 latency p50 {:.3} ms p99 {:.3} ms max {:.3} ms; server CPU {} s per 10k requests",
                self.mode.name(),
                self.target,
                self.conns,
                t.ok,
                t.errors(),
                ms(p50),
                ms(p99),
                ms(max),
                fmt_opt(per10k, 3)
            ),
            Mode::Burst => format!(
                "burst {}: {} connections, {} answered, {} failed; connect -> first byte \
                 p50 {:.3} ms p99 {:.3} ms max {:.3} ms; all done in {secs:.2} s; server CPU {} s per 10k",
                self.target,
                self.conns,
                t.ok,
                t.errors(),
                ms(p50),
                ms(p99),
                ms(max),
                fmt_opt(per10k, 3)
            ),
            Mode::Idle => format!(
                "idle {}: {} keep-alive connections open after one request each ({} failed); \
                 server RSS {} KiB per connection",
                self.target,
                t.ok,
                t.errors(),
                fmt_opt(per_conn, 2)
            ),
        };
        println!("# {human}");
    }
}

fn run(args: &Args, addr: SocketAddr) -> Report {
    let dur = Duration::from_secs_f64(args.secs);
    let target = args.target.clone().unwrap_or_else(|| addr.to_string());
    match args.mode {
        Mode::Ka | Mode::Close => {
            let close = args.mode == Mode::Close;
            let req = Arc::new(request(&args.path, &args.host, close));
            let zipf = args
                .zipf
                .map(|n| Arc::new(ZipfUrls::new(n, args.zipf_s, &args.path, &args.host)));
            let (tally, elapsed, cpu) = run_threads(args.conns, &args.pids, move |i, b| {
                if close {
                    close_thread(addr, Arc::clone(&req), dur, b)
                } else {
                    let seeded = zipf
                        .clone()
                        .map(|z| (z, 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1)));
                    keep_alive_urls(addr, Arc::clone(&req), seeded, dur, b)
                }
            });
            Report {
                mode: args.mode,
                target,
                conns: args.conns,
                tally,
                elapsed,
                cpu,
                rss: None,
            }
        }
        Mode::Burst => {
            let threads = args.threads.min(args.burst);
            let req = Arc::new(request(&args.path, &args.host, false));
            let total = args.burst;
            let (tally, elapsed, cpu) = run_threads(threads, &args.pids, move |i, b| {
                let count = total / threads + usize::from(i < total % threads);
                burst_thread(addr, Arc::clone(&req), count, b)
            });
            Report {
                mode: args.mode,
                target,
                conns: args.burst,
                tally,
                elapsed,
                cpu,
                rss: None,
            }
        }
        Mode::Idle => {
            let before = rss_total(&args.pids);
            let start = Instant::now();
            let threads = 4.min(args.conns);
            let req = Arc::new(request(&args.path, &args.host, false));
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let req = Arc::clone(&req);
                    let count = args.conns / threads + usize::from(i < args.conns % threads);
                    std::thread::spawn(move || idle_thread(addr, req, count))
                })
                .collect();
            let mut tally = Tally::new();
            let mut held = Vec::new();
            for h in handles {
                if let Ok((t, conns)) = h.join() {
                    tally.merge(t);
                    held.extend(conns);
                }
            }
            let elapsed = start.elapsed();
            // Let the servers settle (buffers released after the responses), then sample.
            let hold = Duration::from_secs_f64(args.hold_secs);
            std::thread::sleep(hold.min(Duration::from_secs(1)));
            let after = rss_total(&args.pids);
            std::thread::sleep(hold.saturating_sub(Duration::from_secs(1)));
            drop(held);
            Report {
                mode: args.mode,
                target,
                conns: args.conns,
                tally,
                elapsed,
                cpu: None,
                rss: before.zip(after),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Self-test server (no --target)

/// A tiny thread-per-connection HTTP/1.1 server: 1 KiB bodies, Content-Length, or chunked
/// for `/chunked`; honours `Connection: close`.
fn self_test_server(stop: Arc<AtomicBool>) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    l.set_nonblocking(true)?;
    let h = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let stop = Arc::clone(&stop);
                    std::thread::spawn(move || serve_one(s, stop));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    Ok((addr, h))
}

fn serve_one(mut s: TcpStream, stop: Arc<AtomicBool>) {
    let body = vec![b'x'; 1024];
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        let close = head.contains("connection: close");
        let conn = if close { "Connection: close\r\n" } else { "" };
        let out = if head.starts_with("get /chunked") {
            let mut o =
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{conn}\r\n400;ext=1\r\n")
                    .into_bytes();
            o.extend_from_slice(&body);
            o.extend_from_slice(b"\r\n0\r\nX-Trailer: 1\r\n\r\n");
            o
        } else if head.starts_with("get /404") {
            format!("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n{conn}\r\n").into_bytes()
        } else {
            let mut o = format!(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1024\r\n{conn}\r\n"
            )
            .into_bytes();
            o.extend_from_slice(&body);
            o
        };
        if s.write_all(&out).is_err() || close {
            return;
        }
    }
}

fn self_test() -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, server) =
        self_test_server(Arc::clone(&stop)).map_err(|e| format!("self-test server: {e}"))?;
    let me = std::process::id() as i32;
    let base = Args {
        target: Some(addr.to_string()),
        conns: 4,
        secs: 0.3,
        burst: 200,
        threads: 4,
        hold_secs: 0.2,
        pids: vec![me],
        ..Args::default()
    };
    let mut problems = Vec::new();
    let cases: [(Mode, &str, usize, bool); 6] = [
        (Mode::Ka, "/", 4, true),
        (Mode::Ka, "/chunked", 4, true),
        (Mode::Close, "/", 4, true),
        (Mode::Burst, "/", 200, true),
        (Mode::Idle, "/", 50, true),
        (Mode::Ka, "/404", 2, false),
    ];
    for (mode, path, conns, want_ok) in cases {
        let args = Args {
            mode,
            path: path.into(),
            conns,
            ..base.clone()
        };
        let r = run(&args, addr);
        r.print();
        let t = &r.tally;
        if want_ok && (t.ok == 0 || t.errors() > 0) {
            problems.push(format!(
                "{} {path}: {} ok, {} errors",
                mode.name(),
                t.ok,
                t.errors()
            ));
        }
        if !want_ok && (t.ok > 0 || t.fails[5] == 0) {
            problems.push(format!(
                "{} {path}: 404s not counted as status errors",
                mode.name()
            ));
        }
        if mode == Mode::Burst && t.ok as usize != conns {
            problems.push(format!("burst: {} of {conns} answered", t.ok));
        }
        if matches!(mode, Mode::Ka | Mode::Close) && r.cpu.is_none() {
            problems.push(format!("{}: no CPU sample of our own pid", mode.name()));
        }
        if mode == Mode::Idle && r.rss.is_none() {
            problems.push("idle: no RSS sample of our own pid".into());
        }
    }
    // The Zipf draw: rank 1 of 1000 at exponent 1 comes 1/H(1000) = 13.4 % of the time.
    let z = ZipfUrls::new(1000, 1.0, "/z/", "h");
    let mut state = 42u64;
    let mut first = 0;
    for _ in 0..100_000 {
        let req = z.request(&mut state);
        let line =
            String::from_utf8_lossy(&req[..req.iter().position(|&b| b == b'\r').unwrap_or(0)])
                .into_owned();
        let rank: usize = line
            .split(' ')
            .nth(1)
            .and_then(|p| p.strip_prefix("/z/"))
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if !(1..=1000).contains(&rank) {
            problems.push(format!("zipf: bad request line {line:?}"));
            break;
        }
        first += usize::from(rank == 1);
    }
    if !(12_000..=14_800).contains(&first) {
        problems.push(format!(
            "zipf: rank 1 drawn {first} times in 100000, want ~13400"
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    if problems.is_empty() {
        println!("# load self-test passed");
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    let nofile = raise_nofile();
    let Some(target) = args.target.clone() else {
        if let Err(e) = self_test() {
            eprintln!("load: self-test failed: {e}");
            std::process::exit(1);
        }
        return;
    };
    let addr = match target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => {
            eprintln!("load: --target {target:?}: not a HOST:PORT address");
            std::process::exit(2);
        }
    };
    if let Some(sni) = &args.tls {
        if args.mode == Mode::Burst {
            eprintln!("load: --tls: not in burst mode");
            std::process::exit(2);
        }
        if let Err(e) = init_tls(sni, args.resume) {
            eprintln!("load: --tls {sni:?}: {e}");
            std::process::exit(2);
        }
    }
    let need = match args.mode {
        Mode::Burst => args.burst,
        Mode::Idle | Mode::Ka | Mode::Close => args.conns,
    } as u64
        + 64;
    if nofile < need {
        eprintln!("load: warning: RLIMIT_NOFILE is {nofile}, the run may need {need} descriptors");
    }
    run(&args, addr).print();
}
