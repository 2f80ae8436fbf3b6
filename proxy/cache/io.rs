//! A span's I/O thread (`[CACHE I/O n]`), so that no event thread ever waits for the
//! disk, as ATS's AIO threads do for its spans.
//!
//! Each span has one thread that runs its jobs in the order they were queued. A read
//! queued after a write or removal of the same key therefore sees it, which is what
//! lets [`super::Cache::put`] change RAM at once and leave the disk write for later.
//! Everything in this file after [`SpanIo::start`] runs on that thread, except the
//! queueing functions, which run on the caller's thread and never block on I/O.

use super::{lock, RamCache, Span};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};

/// Called with the value read (None: not on the span, or unreadable), on the I/O thread.
pub(super) type ReadDone = Box<dyn FnOnce(Option<Arc<[u8]>>) + Send>;

/// Called on the I/O thread after each write or removal reached the span, and after a
/// read put its value into RAM.
pub(super) type Observer = Arc<OnceLock<Box<dyn Fn() + Send + Sync>>>;

enum Job {
    /// Read `key`, promote it into RAM unless it changed since `seen`, call back.
    Read {
        key: String,
        seen: u64,
        done: ReadDone,
    },
    /// Store `value`; on failure, remove any older value so it cannot come back.
    Write { key: String, value: Arc<[u8]> },
    /// Append a tombstone for `key`.
    Remove { key: String },
    /// Flush everything queued before to the device, then answer.
    Sync(mpsc::Sender<io::Result<()>>),
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stop: bool,
    /// The thread has ended ([`SpanIo::stop`]): jobs are answered at once, without the
    /// disk.
    ended: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Writes and removals queued and not yet done.
    changes: AtomicUsize,
    /// Bytes of the values of queued writes.
    queued_bytes: AtomicUsize,
    /// Writes turned into removals because the queue held too many bytes.
    shed: AtomicU64,
    /// Keys with a removal queued and not yet done (how many), so that what the index
    /// still holds for them is not taken as stored.
    removing: Mutex<std::collections::HashMap<String, usize>>,
}

impl Shared {
    /// A queued removal of `key` is done.
    fn removed(&self, key: &str) {
        let mut removing = lock(&self.removing);
        if let Some(n) = removing.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                removing.remove(key);
            }
        }
    }
}

/// Value bytes queued for the disk at most; a write beyond it is shed (the object stays
/// in RAM only, and an older value on disk is removed), so a slow disk costs hit rate,
/// not memory.
pub(super) const MAX_QUEUED_BYTES: usize = 64 << 20;

/// The I/O thread of one span; dropping it runs what is queued, then stops the thread.
pub(super) struct SpanIo {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SpanIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanIo")
            .field("queued", &lock(&self.shared.queue).jobs.len())
            .finish()
    }
}

impl SpanIo {
    /// Starts the I/O thread of `span`, named `[CACHE I/O index]`.
    pub(super) fn start(
        index: usize,
        span: Arc<Span>,
        ram: Arc<RamCache>,
        observer: Observer,
    ) -> io::Result<SpanIo> {
        let shared: Arc<Shared> = Arc::default();
        let queue = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("[CACHE I/O {index}]"))
            .spawn(move || run(&queue, &span, &ram, &observer))?;
        Ok(SpanIo {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(super) fn read(&self, key: &str, seen: u64, done: ReadDone) {
        self.push(Job::Read {
            key: key.to_string(),
            seen,
            done,
        });
    }

    /// Whether no write or removal is queued: the span's index is then up to date.
    pub(super) fn settled(&self) -> bool {
        self.shared.changes.load(Ordering::Acquire) == 0
    }

    /// Queues the write of `value` under `key`; false when it is shed instead (see
    /// `MAX_QUEUED_BYTES`): then a removal of any older value is queued.
    pub(super) fn write(&self, key: &str, value: Arc<[u8]>) -> bool {
        let queued = self.shared.queued_bytes.load(Ordering::Acquire);
        if queued.saturating_add(value.len()) > MAX_QUEUED_BYTES {
            self.shared.shed.fetch_add(1, Ordering::Relaxed);
            self.remove(key);
            return false;
        }
        self.shared
            .queued_bytes
            .fetch_add(value.len(), Ordering::AcqRel);
        self.shared.changes.fetch_add(1, Ordering::AcqRel);
        self.push(Job::Write {
            key: key.to_string(),
            value,
        });
        true
    }

    pub(super) fn remove(&self, key: &str) {
        self.shared.changes.fetch_add(1, Ordering::AcqRel);
        *lock(&self.shared.removing)
            .entry(key.to_string())
            .or_default() += 1;
        self.push(Job::Remove {
            key: key.to_string(),
        });
    }

    /// Whether a removal of `key` is queued and not yet done.
    pub(super) fn removing(&self, key: &str) -> bool {
        lock(&self.shared.removing).contains_key(key)
    }

    /// Writes shed so far (see `MAX_QUEUED_BYTES`).
    pub(super) fn shed(&self) -> u64 {
        self.shared.shed.load(Ordering::Relaxed)
    }

    /// Waits until everything queued before is on the device.
    pub(super) fn sync(&self) -> io::Result<()> {
        let (tx, rx) = mpsc::channel();
        self.push(Job::Sync(tx));
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("cache I/O thread ended")))
    }

    fn push(&self, job: Job) {
        let mut q = lock(&self.shared.queue);
        if q.ended {
            drop(q);
            return self.without_disk(job);
        }
        q.jobs.push_back(job);
        drop(q);
        self.shared.ready.notify_one();
    }

    /// A job after the thread ended: a read finds nothing, a change goes to RAM only
    /// (the caller made it there already).
    fn without_disk(&self, job: Job) {
        match job {
            Job::Read { done, .. } => done(None),
            Job::Write { value, .. } => {
                self.shared
                    .queued_bytes
                    .fetch_sub(value.len(), Ordering::AcqRel);
                self.shared.changes.fetch_sub(1, Ordering::AcqRel);
            }
            Job::Remove { key } => {
                self.shared.changes.fetch_sub(1, Ordering::AcqRel);
                self.shared.removed(&key);
            }
            Job::Sync(reply) => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Runs what is queued, then ends the thread; later jobs are answered without the
    /// disk. Returns once the thread has ended, so that nothing touches the span after.
    pub(super) fn stop(&self) {
        lock(&self.shared.queue).stop = true;
        self.shared.ready.notify_one();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        let late: Vec<Job> = {
            let mut q = lock(&self.shared.queue);
            q.ended = true;
            q.jobs.drain(..).collect()
        };
        for job in late {
            self.without_disk(job);
        }
    }
}

impl Drop for SpanIo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// On the I/O thread: runs jobs in order until stopped and the queue is empty.
fn run(shared: &Shared, span: &Span, ram: &RamCache, observer: &Observer) {
    let notify = || {
        if let Some(f) = observer.get() {
            f();
        }
    };
    // A queued change (write or removal) has reached the span.
    let changed = || {
        shared.changes.fetch_sub(1, Ordering::AcqRel);
        notify();
    };
    loop {
        let job = {
            let mut q = lock(&shared.queue);
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.stop {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        match job {
            Job::Read { key, seen, done } => {
                let value: Option<Arc<[u8]>> = span.get(&key).map(Arc::from);
                // Not if a put or remove of `key` came after the read was queued: RAM
                // then holds the newer state already. RAM changed if it took it (and
                // may have evicted others for it).
                if value
                    .as_ref()
                    .is_some_and(|v| ram.promote(&key, v.clone(), seen))
                {
                    notify();
                }
                done(value);
            }
            Job::Write { key, value } => {
                if let Err(e) = span.put(&key, &value) {
                    if e.kind() == io::ErrorKind::InvalidInput {
                        log::debug!("cache: {key:?} not stored on disk: {e}");
                    }
                    if let Err(e) = span.remove(&key) {
                        log::debug!("cache: cannot remove {key:?} after a failed put: {e}");
                    }
                }
                shared.queued_bytes.fetch_sub(value.len(), Ordering::AcqRel);
                changed();
            }
            Job::Remove { key } => {
                if let Err(e) = span.remove(&key) {
                    log::debug!("cache: tombstone for {key:?} not written: {e}");
                }
                shared.removed(&key);
                changed();
            }
            Job::Sync(reply) => {
                let _ = reply.send(span.sync());
            }
        }
    }
}
