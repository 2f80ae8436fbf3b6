//! One io_uring per caller, used synchronously: a batch of sends submitted in one
//! system call, every one finished (or cancelled) before the call returns, so the
//! buffers the kernel reads are the caller's slices, borrowed for that call alone.
//!
//! Runs on its owner's thread (in the proxy, an ET_NET thread); holds the ring's
//! descriptor and its two mapped queues, nothing else.

use io_uring::{opcode, types, IoUring, Probe};
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// The `user_data` of a cancellation, apart from the sends' (their index in the chunk).
const CANCEL: u64 = u64::MAX;

/// A submission ring for batches of non-blocking sends.
pub(crate) struct SendRing {
    /// None once the ring failed: every send is then a plain send(2).
    ring: Option<IoUring>,
    /// Sends per submission: the ring's size.
    entries: usize,
}

impl SendRing {
    /// A ring of `entries` slots (a power of two), or the kernel's refusal: io_uring
    /// missing or disabled (`kernel.io_uring_disabled`, seccomp), or too old to send
    /// (IORING_OP_SEND and IORING_OP_ASYNC_CANCEL: Linux 5.6).
    pub(crate) fn new(entries: u32) -> io::Result<SendRing> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(entries)
            .or_else(|_| IoUring::new(entries))?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::Send::CODE) || !probe.is_supported(opcode::AsyncCancel::CODE)
        {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no IORING_OP_SEND",
            ));
        }
        let entries = ring.params().sq_entries() as usize;
        Ok(SendRing {
            ring: Some(ring),
            entries,
        })
    }

    /// Sends each `(socket, bytes)` as `send(2)` with MSG_DONTWAIT and MSG_NOSIGNAL
    /// would, in order, up to the ring's size per system call; `out[i]` gets the i-th
    /// send's result (bytes taken, or the error: `WouldBlock` for a full socket). Every
    /// send has finished when this returns: one the kernel left in flight is cancelled
    /// and waited for (it then counts as `WouldBlock`, nothing sent). Each send is made
    /// once: if the ring fails, what it did not take goes by send(2), and so does every
    /// later send. Returns how many submissions (system calls for the ring) it made.
    pub(crate) fn send_all(
        &mut self,
        sends: &[(&dyn AsFd, &[u8])],
        out: &mut Vec<io::Result<usize>>,
    ) -> usize {
        out.clear();
        let mut submissions = 0;
        for chunk in sends.chunks(self.entries) {
            let base = out.len();
            out.extend(chunk.iter().map(|_| Err(io::ErrorKind::WouldBlock.into())));
            let out = &mut out[base..];
            let taken = match self.ring.as_mut() {
                Some(ring) => match submit_chunk(ring, chunk, out) {
                    Ok(()) => {
                        submissions += 1;
                        continue;
                    }
                    Err((e, taken)) => {
                        // The entries the ring did not take go with it: none of them
                        // can be submitted later, with buffers that are gone by then.
                        log::warn!("io_uring send batch failed ({e}); sending with send(2)");
                        self.ring = None;
                        taken
                    }
                },
                None => 0,
            };
            for ((fd, buf), r) in chunk.iter().zip(out.iter_mut()).skip(taken) {
                *r = super::socket::send(fd.as_fd().as_raw_fd(), buf, false);
            }
        }
        submissions
    }
}

/// Whether an io_uring_enter failure is worth another try (a signal, a full completion
/// queue, memory for a moment).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// Sends one chunk (at most the ring's size; the queue empty) and collects every
/// completion of what the kernel took. Err: the ring failed with the error and how many
/// leading entries it had taken (their results are in `out`, the rest untouched).
fn submit_chunk(
    ring: &mut IoUring,
    chunk: &[(&dyn AsFd, &[u8])],
    out: &mut [io::Result<usize>],
) -> Result<(), (io::Error, usize)> {
    let flags = super::socket::send_flags(false) | libc::MSG_DONTWAIT;
    {
        let mut sq = ring.submission();
        for (i, (fd, buf)) in chunk.iter().enumerate() {
            let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            let fd = types::Fd(fd.as_fd().as_raw_fd());
            let entry = opcode::Send::new(fd, buf.as_ptr(), len)
                .flags(flags)
                .build()
                .user_data(i as u64);
            // SAFETY: `buf` and `fd` are borrowed for this whole call, and the call does
            // not return before the kernel has finished with every entry it took (each
            // completes or is cancelled below); an entry it did not take is dropped with
            // the ring before anything could submit it. The queue has room: the chunk is
            // at most the ring's size and the queue was empty.
            if unsafe { sq.push(&entry) }.is_err() {
                return Err((io::Error::other("submission queue full"), 0));
            }
        }
    }
    // With MSG_DONTWAIT a send completes during the submission, as send(2) would, so the
    // first wait normally finds every completion.
    let mut taken = 0;
    let mut failed = None;
    while taken < chunk.len() {
        match ring.submit_and_wait(chunk.len() - taken) {
            Ok(0) => {
                // Nothing taken and no error: not a state a ring gets into; the rest
                // goes by send(2) rather than round this loop again.
                failed = Some(io::Error::other("io_uring took no entry"));
                break;
            }
            Ok(n) => taken += n,
            Err(e) if transient(&e) => {}
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let mut pending = taken;
    let mut cancelling = false;
    loop {
        for cqe in ring.completion() {
            let Some(r) = out.get_mut(cqe.user_data() as usize) else {
                continue; // a cancellation's own completion
            };
            pending -= 1;
            *r = match cqe.result() {
                n if n >= 0 => Ok(n as usize),
                e if -e == libc::ECANCELED => Err(io::ErrorKind::WouldBlock.into()),
                e => Err(io::Error::from_raw_os_error(-e)),
            };
        }
        if pending == 0 {
            return match failed {
                None => Ok(()),
                Some(e) => Err((e, taken)),
            };
        }
        if !cancelling && failed.is_none() {
            // A send the kernel parked to retry later would read the caller's buffer
            // after this returns: cancel every one still out.
            cancelling = true;
            let mut sq = ring.submission();
            for (i, r) in out.iter().enumerate().take(taken) {
                if r.as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
                {
                    let cancel = opcode::AsyncCancel::new(i as u64).build().user_data(CANCEL);
                    // SAFETY: a cancellation reads no memory of ours; the queue has
                    // room for one per send, all of which it has given up.
                    let _ = unsafe { sq.push(&cancel) };
                }
            }
        }
        // Wait for the rest (a failing wait is tried again: returning now would leave
        // a send reading the caller's buffer).
        let _ = ring.submit_and_wait(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// A ring, or None (said on stderr) where this kernel or sandbox has no io_uring:
    /// the daemon then sends with send(2), which the integration tests cover.
    fn ring(entries: u32) -> Option<SendRing> {
        SendRing::new(entries)
            .map_err(|e| eprintln!("io_uring unavailable here ({e}): nothing to test"))
            .ok()
    }

    /// `s` brings exactly `want` next.
    fn assert_received(mut s: &TcpStream, want: &[u8]) {
        let mut got = vec![0; want.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn a_batch_sends_each_buffer_to_its_socket() {
        let Some(mut ring) = ring(4) else {
            return;
        };
        let pairs: Vec<_> = (0..6).map(|_| pair()).collect();
        let bodies: Vec<Vec<u8>> = (0..6).map(|i| vec![b'a' + i as u8; 100 + i]).collect();
        let sends: Vec<_> = pairs
            .iter()
            .zip(&bodies)
            .map(|((a, _), b)| (a as &dyn AsFd, &b[..]))
            .collect();
        let mut out = Vec::new();
        ring.send_all(&sends, &mut out); // 6 sends through a 4-slot ring: two submissions
        assert_eq!(out.len(), 6);
        for (i, ((_, b), r)) in pairs.iter().zip(&out).enumerate() {
            assert_eq!(*r.as_ref().unwrap(), 100 + i);
            assert_received(b, &bodies[i]);
        }
    }

    #[test]
    fn a_failed_ring_leaves_the_sends_to_send_2() {
        let Some(mut ring) = ring(4) else {
            return;
        };
        ring.ring = None; // as after a failure
        let (a, b) = pair();
        let mut out = Vec::new();
        ring.send_all(&[(&a as &dyn AsFd, b"plain")], &mut out);
        assert_eq!(*out[0].as_ref().unwrap(), 5);
        assert_received(&b, b"plain");
    }

    #[test]
    fn a_full_socket_says_would_block_at_once() {
        let Some(mut ring) = ring(4) else {
            return;
        };
        let (mut a, _b) = pair();
        let chunk = vec![0u8; 1 << 16];
        // Fill the socket: the peer never reads.
        while a.write(&chunk).is_ok() {}
        let (c, d) = pair();
        let mut out = Vec::new();
        ring.send_all(&[(&a as &dyn AsFd, &chunk[..]), (&c, b"hi")], &mut out);
        assert_eq!(
            out[0].as_ref().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(*out[1].as_ref().unwrap(), 2);
        assert_received(&d, b"hi");
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_signal() {
        let Some(mut ring) = ring(2) else {
            return;
        };
        let (a, b) = pair();
        drop(b);
        let mut out = Vec::new();
        // The first send may be taken (the peer's close is not known yet); a later one
        // meets the reset.
        let mut failed = false;
        for _ in 0..50 {
            ring.send_all(&[(&a as &dyn AsFd, b"x")], &mut out);
            if out[0].is_err() {
                failed = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(failed, "sends to a closed peer kept succeeding");
    }
}
