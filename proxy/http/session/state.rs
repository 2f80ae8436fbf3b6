//! What an ET_NET thread keeps for its sessions: one [`ThreadState`] in one
//! thread-local, reached through [`with_state`]. Runs on that thread.

use super::pool::Pool;
use super::{Session, READ_CHUNK};
use foldhash::{HashMap, HashMapExt};
use iocore::SendBatch;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Instant;

/// This thread's sessions and what they share.
pub(super) struct ThreadState {
    /// Every session started here (swept for timeouts).
    pub(super) sessions: Vec<Weak<RefCell<Session>>>,
    /// Idle origin connections by origin address, most recently pooled last.
    pub(super) pool: Pool,
    /// Until when the pool counts as short: a request opened a new origin connection
    /// less than `origin.rs`'s `POOL_SHORT_FOR` ago. Meanwhile finished transactions give
    /// their connection back to the pool instead of keeping it attached to their idle
    /// client: in a burst, a connection pinned that way made another request open one
    /// more (638 opened over two 6,000-connection bursts with pinning, 286 without).
    pub(super) pool_short_until: Option<Instant>,
    /// Sessions waiting for another thread's answer (a cache disk read, a name
    /// lookup), by ticket ([`await_answer`]), and the last ticket given.
    pub(super) awaiting: HashMap<u64, Weak<RefCell<Session>>>,
    pub(super) last_ticket: u64,
    /// Sessions whose bytes for their origin (and client) wait for the end of the
    /// current batch of events ([`drive_batched`]).
    pub(super) held: Vec<Rc<RefCell<Session>>>,
    /// `held`'s allocation while it is flushed, and the lists a flush fills: kept from
    /// one batch to the next (`batch.rs`).
    pub(super) held_spare: Vec<Rc<RefCell<Session>>>,
    pub(super) sent_by: Vec<(usize, bool)>,
    pub(super) sent: Vec<io::Result<usize>>,
    /// Requests waiting for a place under `per_server.connection.max`, per origin, in
    /// arrival order (`queue.rs`).
    pub(super) origin_queue: HashMap<SocketAddr, VecDeque<Weak<RefCell<Session>>>>,
    /// Whether the queue's poll is scheduled.
    pub(super) queue_polling: bool,
    /// Sessions that yielded with work left, driven again on the next loop turn.
    pub(super) drive_later: Vec<Weak<RefCell<Session>>>,
    /// Where reads land when the session's buffer has no room (`io.rs`).
    pub(super) scratch: Box<[u8]>,
    /// Emptied session buffers kept for the next one that fills from nothing
    /// ([`keep_spare`], [`take_spare`]).
    spare: Vec<Vec<u8>>,
    /// The end-of-batch sender (`batch.rs`): None until first asked for, then the ring,
    /// or nothing (`net.send_batch` off, or no io_uring).
    send_batch: Option<Option<SendBatch>>,
    /// A ring could not be set up for want of a resource (descriptors, memory): when to
    /// try again.
    send_batch_retry: Option<Instant>,
}

thread_local! {
    static STATE: RefCell<ThreadState> = RefCell::new(ThreadState {
        sessions: Vec::new(),
        pool: Pool::default(),
        pool_short_until: None,
        awaiting: HashMap::new(),
        last_ticket: 0,
        held: Vec::new(),
        held_spare: Vec::new(),
        sent_by: Vec::new(),
        sent: Vec::new(),
        origin_queue: HashMap::new(),
        queue_polling: false,
        drive_later: Vec::new(),
        scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        spare: Vec::new(),
        send_batch: None,
        send_batch_retry: None,
    });
}

impl ThreadState {
    /// This thread's io_uring sender for the bytes a batch of events held to its end,
    /// decided the first time it is asked for: opened if `enabled` (`net.send_batch`,
    /// fixed for the daemon's life) and the kernel has io_uring; None otherwise (then
    /// each session sends its own), whatever later callers pass.
    ///
    /// A ring that cannot be set up for want of a resource (EMFILE, ENFILE, ENOMEM: a
    /// moment of descriptor exhaustion) is no verdict on the kernel: sends go one by one
    /// meanwhile, and it is tried again a second later.
    pub(super) fn send_batch(&mut self, enabled: bool) -> Option<&mut SendBatch> {
        if self.send_batch.is_none() {
            if !enabled {
                self.send_batch = Some(None);
                return None;
            }
            let now = Instant::now();
            if self.send_batch_retry.is_some_and(|at| now < at) {
                return None;
            }
            match SendBatch::new() {
                Ok(ring) => self.send_batch = Some(Some(ring)),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
                    ) =>
                {
                    if self.send_batch_retry.is_none() {
                        log::warn!(
                            "io_uring ring not set up now ({e}): a send(2) each until it can be"
                        );
                    }
                    self.send_batch_retry = Some(now + std::time::Duration::from_secs(1));
                    return None;
                }
                Err(e) => {
                    log::info!("io_uring unavailable ({e}): a send(2) each");
                    self.send_batch = Some(None);
                }
            }
        }
        self.send_batch.as_mut()?.as_mut()
    }

    /// The sender [`ThreadState::send_batch`] opened, if it did (a session's first drive
    /// here decided).
    pub(super) fn opened_send_batch(&mut self) -> Option<&mut SendBatch> {
        self.send_batch.as_mut()?.as_mut()
    }

    /// Reads with `read` into the scratch buffer (`want` bytes at most) and appends what
    /// came to `buf`, which takes a spare first if it holds no memory. A read that brings
    /// nothing leaves `buf` as it was: an idle connection is not handed a spare.
    pub(super) fn read_via_scratch(
        &mut self,
        buf: &mut Vec<u8>,
        want: usize,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let r = read(&mut self.scratch[..want]);
        if let Ok(n) = r {
            if n > 0 {
                self.spare_into(buf);
            }
            buf.extend_from_slice(&self.scratch[..n]);
        }
        r
    }

    /// Gives `buf`, when it holds no memory, one of the spare buffers if any.
    fn spare_into(&mut self, buf: &mut Vec<u8>) {
        if buf.capacity() == 0 {
            if let Some(spare) = self.spare.pop() {
                *buf = spare;
            }
        }
    }
}

/// Spare buffers a thread keeps, at most: 64 of at most `READ_CHUNK` bytes, 1 MiB.
const SPARES: usize = 64;

/// Spare capacities worth keeping: below 1 KiB the allocator's own per-thread cache is
/// as quick, and none above a read's size is kept.
const SPARE_CAPACITY: std::ops::RangeInclusive<usize> = 1024..=READ_CHUNK;

/// Leaves `buf` empty and without memory, keeping its allocation among the thread's
/// spares when it is worth keeping. A session's buffers grow by what arrives and are let
/// go while it idles (so an idle connection holds none); a response of a kilobyte or
/// more then costs two allocations the allocator serves slowly, every request, unless
/// the last request's buffers are handed on. Never fails: inside [`with_state`] or while
/// the thread's state is being torn down, the buffer is freed instead.
pub(super) fn keep_spare(buf: &mut Vec<u8>) {
    let mut b = std::mem::take(buf);
    if !SPARE_CAPACITY.contains(&b.capacity()) {
        return;
    }
    b.clear();
    let _ = STATE.try_with(|s| {
        if let Ok(mut st) = s.try_borrow_mut() {
            if st.spare.len() < SPARES {
                st.spare.push(b);
            }
        }
    });
}

/// Gives `buf`, when it holds no memory, one of the thread's spare buffers if any.
pub(super) fn take_spare(buf: &mut Vec<u8>) {
    if buf.capacity() == 0 {
        with_state(|st| st.spare_into(buf));
    }
}

/// Runs `f` with this thread's state. Never nested, and never around code that runs a
/// session: callers take what they need out, then run sessions.
pub(super) fn with_state<R>(f: impl FnOnce(&mut ThreadState) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_buffer_is_handed_on_empty_and_only_when_worth_keeping() {
        let mut b = Vec::with_capacity(2048);
        b.extend_from_slice(b"the last response");
        keep_spare(&mut b);
        assert_eq!(b.capacity(), 0, "the session holds no memory");
        let mut next = Vec::new();
        take_spare(&mut next);
        assert!(next.is_empty() && next.capacity() >= 2048);
        // A buffer that has memory keeps its own.
        let mut own = Vec::with_capacity(16);
        keep_spare(&mut next);
        take_spare(&mut own);
        assert_eq!(own.capacity(), 16);
        // Below 1 KiB and above a read's size, buffers are freed, not kept.
        let mut small = Vec::<u8>::with_capacity(512);
        let mut big = Vec::<u8>::with_capacity(READ_CHUNK + 1);
        keep_spare(&mut small);
        keep_spare(&mut big);
        let mut got = Vec::new();
        take_spare(&mut got);
        assert!(
            (2048..=READ_CHUNK).contains(&got.capacity()),
            "the 2 KiB one"
        );
        let mut none = Vec::new();
        take_spare(&mut none);
        assert_eq!(none.capacity(), 0);
    }

    #[test]
    fn a_thread_keeps_at_most_its_share_of_spares() {
        for _ in 0..SPARES + 10 {
            keep_spare(&mut Vec::with_capacity(4096));
        }
        let mut taken = 0;
        loop {
            let mut b = Vec::new();
            take_spare(&mut b);
            if b.capacity() == 0 {
                break;
            }
            taken += 1;
        }
        assert_eq!(taken, SPARES);
    }

    #[test]
    fn a_read_takes_a_spare_only_when_bytes_came() {
        keep_spare(&mut Vec::with_capacity(4096));
        let mut buf = Vec::new();
        for nothing in [Ok(0), Err(io::ErrorKind::WouldBlock.into())] {
            let r = with_state(|st| st.read_via_scratch(&mut buf, 100, |_| nothing));
            assert!(r.is_err() || r.unwrap() == 0);
            assert_eq!(buf.capacity(), 0, "an idle connection holds no buffer");
        }
        let n = with_state(|st| {
            st.read_via_scratch(&mut buf, 100, |s| {
                s[..5].copy_from_slice(b"GET /");
                Ok(5)
            })
        });
        assert_eq!(n.unwrap(), 5);
        assert_eq!(buf, b"GET /");
        assert!(buf.capacity() >= 4096, "the spare");
    }

    #[test]
    fn a_buffer_let_go_inside_the_state_is_freed() {
        with_state(|_| keep_spare(&mut Vec::with_capacity(4096)));
        let mut b = Vec::new();
        take_spare(&mut b);
        assert_eq!(b.capacity(), 0);
    }
}
