//! The access log (`proxy.config.log.access_log`): one line per request, in squid's
//! native format, which ATS, squid and most log tools read:
//!
//! ```text
//! 1763900000.123     45 127.0.0.1 TCP_MISS/200 1224 GET http://h/p - DIRECT/127.0.0.1:9000 -
//! time (s.ms)   elapsed ms  client  result/status bytes method URL user  hierarchy/origin type
//! ```
//!
//! Threads: ET_NET threads format a line and hand it over without blocking
//! ([`AccessLog::write`]); one writer thread appends lines to the file in batches. When
//! the writer falls behind by [`QUEUE`] lines, new lines are dropped and counted
//! (`proxy.process.log.access_dropped`) rather than stalling requests; so are lines the
//! file refuses (a full disk), with a warning at most once a minute. A reload reopens
//! the file ([`AccessLog::reopen`]), so rotation is a rename and a reload.

use crate::error::{Error, Result};
use iocore::stats::Counter;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines waiting for the writer at most.
pub const QUEUE: usize = 65_536;
/// How often a busy writer takes what was queued and writes it. While lines come, the
/// writer polls rather than waits on the queue, so that queueing a line never has to
/// wake it: a wake-up per line (a futex call and a context switch) cost more than the
/// request it logs. A round that found nothing puts it to sleep on the queue until the
/// next line (one wake-up), so an idle daemon's writer does not tick.
const WRITE_EVERY: Duration = Duration::from_millis(50);

/// One request's line, as the session knows it when the request ends.
pub struct Entry<'a> {
    /// When the request began (its head was read).
    pub started: SystemTime,
    /// How long it took, to its last byte or its end.
    pub elapsed: Duration,
    /// The client's address.
    pub client: std::net::IpAddr,
    /// How it was answered: `TCP_HIT`, `TCP_MISS`, `TCP_REFRESH_HIT`, `TCP_TUNNEL`,
    /// `NONE` (answered by the proxy itself), with `_ABORTED` when it did not finish.
    pub result: &'a str,
    /// 0 when no status was sent.
    pub status: u16,
    /// Bytes sent to the client for it.
    pub bytes: u64,
    /// The request's method, as sent.
    pub method: &'a str,
    /// The URL: the absolute-form target, or `http://` + Host + target.
    pub url: &'a str,
    /// The origin it went to, if any.
    pub origin: Option<std::net::SocketAddr>,
    /// `origin` is a parent proxy (`[[parent]]`): logged `PARENT_HIT/`, as Traffic
    /// Server logs a fetch from its parent, where the origin itself is `DIRECT/`.
    pub parent: bool,
}

impl Entry<'_> {
    /// The line, with its newline. Fields that could hold spaces, control or non-ASCII
    /// bytes (the method and URL come from the client) have them percent-encoded, so a
    /// line always splits into the same fields.
    pub fn format(&self) -> String {
        use std::fmt::Write as _;
        let t = self.started.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut line = String::with_capacity(96 + self.url.len());
        let _ = write!(
            line,
            "{}.{:03} {:6} {} {}/{:03} {} ",
            t.as_secs(),
            t.subsec_millis(),
            self.elapsed.as_millis(),
            self.client,
            self.result,
            self.status,
            self.bytes,
        );
        push_field(&mut line, self.method);
        line.push(' ');
        push_field(&mut line, self.url);
        match self.origin {
            Some(a) => {
                let hierarchy = if self.parent { "PARENT_HIT" } else { "DIRECT" };
                let _ = writeln!(line, " - {hierarchy}/{a} -");
            }
            None => line.push_str(" - NONE/- -\n"),
        }
        line
    }
}

/// Appends `s` with spaces, controls and non-ASCII bytes percent-encoded; `-` when
/// empty.
fn push_field(out: &mut String, s: &str) {
    if s.is_empty() {
        out.push('-');
        return;
    }
    for b in s.bytes() {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// What the writer is sent, in order.
enum Msg {
    Line(String),
    /// Reopen the file: lines sent before go to the old one, lines after to the new.
    Reopen,
    /// Report, once everything sent before is in the file, with this number.
    Flush(u64),
}

/// The handle sessions write through.
pub struct AccessLog {
    queue: SyncSender<Msg>,
    dropped: Arc<Counter>,
    /// Flush requests made, and (with its condition) the last one the writer finished.
    flushes: AtomicU64,
    flushed: Arc<(Mutex<u64>, Condvar)>,
}

impl AccessLog {
    /// Opens (creates, appends to) `path` and starts the writer thread. The error
    /// ([`ErrorKind::Io`](crate::error::ErrorKind::Io)) names the file.
    pub fn open(path: &Path, dropped: Arc<Counter>) -> Result<AccessLog> {
        let file = open_append(path)
            .map_err(|e| Error::io(format_args!("cannot open {}", path.display()), &e))?;
        let (queue, rx) = mpsc::sync_channel(QUEUE);
        let flushed = Arc::new((Mutex::new(0), Condvar::new()));
        let (path, done) = (path.to_path_buf(), flushed.clone());
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn({
                let dropped = dropped.clone();
                move || writer(rx, path, file, &done, &dropped)
            })
            .map_err(|e| Error::io("cannot start the access log writer", &e))?;
        Ok(AccessLog {
            queue,
            dropped,
            flushes: AtomicU64::new(0),
            flushed,
        })
    }

    /// Queues `entry`'s line; drops and counts it if the writer is `QUEUE` lines behind.
    pub fn write(&self, entry: &Entry<'_>) {
        match self.queue.try_send(Msg::Line(entry.format())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Has the writer reopen the file (after a rename, for rotation) before the lines
    /// queued after this. Runs on the control thread (a reload); may wait for room in
    /// the queue.
    pub fn reopen(&self) {
        let _ = self.queue.send(Msg::Reopen);
    }

    /// Waits (at most `limit`) until every line queued before the call is in the file:
    /// for a stop, whose last lines would otherwise die with the process. Runs on the
    /// control thread; may wait for room in the queue.
    pub fn flush(&self, limit: Duration) {
        let n = self.flushes.fetch_add(1, Ordering::AcqRel) + 1;
        if self.queue.send(Msg::Flush(n)).is_err() {
            return;
        }
        let (lock, cv) = &*self.flushed;
        let deadline = std::time::Instant::now() + limit;
        let mut done = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *done < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            done = cv
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread: in rounds, carries out what was queued in order (appending lines,
/// reopening the file), flushes, then reports finished flush requests; every
/// `WRITE_EVERY` while lines come, else asleep on the queue until the next message. Ends
/// when the daemon drops its handle.
fn writer(
    rx: Receiver<Msg>,
    path: PathBuf,
    file: File,
    flushed: &(Mutex<u64>, Condvar),
    dropped: &Counter,
) {
    let mut out = BufWriter::with_capacity(64 << 10, file);
    let mut idle = true;
    // A full disk fails every line: each is counted, the warning given once a minute.
    let mut warn = crate::log::WarnEvery::default();
    loop {
        let mut batch = Vec::new();
        if idle {
            match rx.recv() {
                Ok(msg) => batch.push(msg),
                Err(mpsc::RecvError) => return,
            }
        } else {
            std::thread::sleep(WRITE_EVERY);
        }
        let mut gone = false;
        loop {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        let (mut lines, mut flush) = (0, None);
        for msg in batch {
            match msg {
                Msg::Line(line) => {
                    lines += 1;
                    if let Err(e) = out.write_all(line.as_bytes()) {
                        dropped.inc();
                        if warn.due() {
                            log::warn!(
                                "access log {}: {e}; lines are lost, counted in \
                                 proxy.process.log.access_dropped (warned once a minute)",
                                path.display()
                            );
                        }
                    }
                }
                Msg::Reopen => {
                    let _ = out.flush();
                    match open_append(&path) {
                        Ok(f) => out = BufWriter::with_capacity(64 << 10, f),
                        Err(e) => log::warn!("access log {}: cannot reopen: {e}", path.display()),
                    }
                }
                Msg::Flush(n) => flush = Some(n),
            }
        }
        let _ = out.flush();
        if let Some(n) = flush {
            *flushed.0.lock().unwrap_or_else(|e| e.into_inner()) = n;
            flushed.1.notify_all();
        }
        if gone {
            return;
        }
        // Polling while rounds find lines; asleep on the queue after one that found none.
        idle = lines == 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_squid_fields_and_client_bytes_cannot_add_any() {
        let e = Entry {
            started: UNIX_EPOCH + Duration::from_millis(1_763_900_000_123),
            elapsed: Duration::from_millis(45),
            client: "127.0.0.1".parse().unwrap(),
            result: "TCP_MISS",
            status: 200,
            bytes: 1224,
            method: "GET",
            url: "http://h/a b\n%41",
            origin: Some("127.0.0.1:9000".parse().unwrap()),
            parent: false,
        };
        assert_eq!(
            e.format(),
            "1763900000.123     45 127.0.0.1 TCP_MISS/200 1224 GET http://h/a%20b%0A%41 - DIRECT/127.0.0.1:9000 -\n"
        );
        let local = Entry {
            result: "NONE",
            status: 0,
            method: "",
            url: "",
            origin: None,
            parent: false,
            ..e
        };
        let line = local.format();
        assert!(line.ends_with(" NONE/000 1224 - - - NONE/- -\n"), "{line}");
        assert_eq!(line.split_whitespace().count(), 10);
    }

    #[test]
    fn flush_writes_out_what_was_queued_and_reopen_follows_a_rename() {
        let dir = std::env::temp_dir().join(format!("turnstile-access-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let log = AccessLog::open(&path, Arc::default()).unwrap();
        let entry = |url| Entry {
            started: SystemTime::now(),
            elapsed: Duration::ZERO,
            client: "::1".parse().unwrap(),
            result: "NONE",
            status: 404,
            bytes: 0,
            method: "GET",
            url,
            origin: None,
            parent: false,
        };
        let count = |p: &Path| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count()
        };
        for _ in 0..1000 {
            log.write(&entry("http://h/one"));
        }
        log.flush(Duration::from_secs(10));
        assert_eq!(count(&path), 1000);
        // Idle now; a rename and a reopen move the next lines to a new file.
        let old = dir.join("a.log.1");
        std::fs::rename(&path, &old).unwrap();
        log.reopen();
        log.write(&entry("http://h/two"));
        log.flush(Duration::from_secs(10));
        assert_eq!((count(&old), count(&path)), (1000, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
