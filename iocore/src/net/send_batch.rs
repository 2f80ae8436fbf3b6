//! Sends to many sockets in one system call: what an event thread held for its peers
//! (origins, clients) until the end of its batch of events goes out in one io_uring
//! submission instead of a `send(2)` each. The kernel still wakes each peer as its bytes
//! arrive, but the thread is not preempted before the whole batch is out: a peer that
//! the first send woke finds all of the batch's bytes for it at once, instead of
//! running (on this thread's core, at the first send's return) for one at a time.
//!
//! Runs on its owner's thread (an ET_NET thread holds one); every send has finished
//! when `send_all` returns.

use crate::sys::uring::SendRing;
use std::io;
use std::os::fd::AsFd;

/// Sends per system call at most (the ring's slots).
const PER_CALL: u32 = 64;

/// One thread's batch sender.
pub struct SendBatch {
    ring: SendRing,
}

impl SendBatch {
    /// A batch sender, or why the kernel has none (io_uring missing or disabled).
    pub fn new() -> io::Result<SendBatch> {
        Ok(SendBatch {
            ring: SendRing::new(PER_CALL)?,
        })
    }

    /// Sends each `(socket, bytes)` as [`Socket::send`](super::Socket::send) would, in
    /// one system call per 64; `out[i]` gets the i-th send's result (bytes taken, or the
    /// error: `WouldBlock` for a full socket). Returns the submissions it took (none
    /// once the ring has failed and the sends go by send(2)).
    pub fn send_all(
        &mut self,
        sends: &[(&dyn AsFd, &[u8])],
        out: &mut Vec<io::Result<usize>>,
    ) -> usize {
        self.ring.send_all(sends, out)
    }
}
