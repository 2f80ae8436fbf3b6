//! One io_uring per caller, used synchronously: a batch of sends submitted in one
//! system call, every one finished (or cancelled) before the call returns, so the
//! buffers the kernel reads are the caller's slices, borrowed for that call alone.
//!
//! Runs on its owner's thread (in the proxy, an ET_NET thread); holds the ring's
//! descriptor and its two mapped queues, nothing else.

use io_uring::{opcode, types, IoUring};
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// The `user_data` of a cancellation, apart from the sends' (their index in the batch).
const CANCEL: u64 = u64::MAX;

/// A submission ring for batches of non-blocking sends.
pub(crate) struct SendRing {
    ring: IoUring,
    /// Sends per submission: the ring's size.
    entries: usize,
}

impl SendRing {
    /// A ring of `entries` slots (a power of two), or the kernel's refusal: io_uring
    /// missing (before 5.6) or disabled (`kernel.io_uring_disabled`, seccomp).
    pub(crate) fn new(entries: u32) -> io::Result<SendRing> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(entries)
            .or_else(|_| IoUring::new(entries))?;
        let entries = ring.params().sq_entries() as usize;
        Ok(SendRing { ring, entries })
    }

    /// Sends each `(socket, bytes)` as `send(2)` with MSG_DONTWAIT and MSG_NOSIGNAL
    /// would, in order, up to the ring's size per system call; `out[i]` gets the i-th
    /// send's result (bytes taken, or the error: `WouldBlock` for a full socket). Every
    /// send has finished when this returns: one the kernel left in flight is cancelled
    /// and waited for (it then counts as `WouldBlock`).
    pub(crate) fn send_all(
        &mut self,
        sends: &[(&dyn AsFd, &[u8])],
        out: &mut Vec<io::Result<usize>>,
    ) {
        out.clear();
        for chunk in sends.chunks(self.entries) {
            let base = out.len();
            out.extend(chunk.iter().map(|_| Err(io::ErrorKind::WouldBlock.into())));
            if let Err(e) = self.submit_chunk(chunk, &mut out[base..]) {
                // The ring itself failed: no send of this chunk can be trusted to have
                // happened or not, so each one is done the plain way.
                log::debug!("io_uring send batch: {e}; sending one by one");
                for ((fd, buf), r) in chunk.iter().zip(&mut out[base..]) {
                    *r = super::socket::send(fd.as_fd().as_raw_fd(), buf, false);
                }
            }
        }
    }

    /// Sends one chunk (at most the ring's size) and collects every completion.
    fn submit_chunk(
        &mut self,
        chunk: &[(&dyn AsFd, &[u8])],
        out: &mut [io::Result<usize>],
    ) -> io::Result<()> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        {
            let mut sq = self.ring.submission();
            for (i, (fd, buf)) in chunk.iter().enumerate() {
                let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
                let fd = types::Fd(fd.as_fd().as_raw_fd());
                let entry = opcode::Send::new(fd, buf.as_ptr(), len)
                    .flags(flags)
                    .build()
                    .user_data(i as u64);
                // SAFETY: `buf` and `fd` are borrowed for this whole call, and the call
                // does not return before the kernel has finished with every entry (each
                // completes or is cancelled below); the queue has room: the chunk is at
                // most the ring's size and the queue was empty.
                unsafe { sq.push(&entry) }
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
        }
        let mut pending = chunk.len();
        let mut cancelling = false;
        // With MSG_DONTWAIT a send completes during the submission, as send(2) would,
        // so the first wait normally finds every completion.
        self.ring.submit_and_wait(pending)?;
        loop {
            for cqe in self.ring.completion() {
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
                return Ok(());
            }
            if !cancelling {
                // A send the kernel parked to retry later would read the caller's
                // buffer after this returns: cancel every one still out.
                cancelling = true;
                let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(CANCEL);
                // SAFETY: a cancellation reads no memory of ours; the queue is empty.
                unsafe { self.ring.submission().push(&cancel) }
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
            self.ring.submit_and_wait(1)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn a_batch_sends_each_buffer_to_its_socket() {
        let Ok(mut ring) = SendRing::new(4) else {
            eprintln!("io_uring unavailable here: nothing to test");
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
            let mut got = vec![0; 100 + i];
            (&*b).read_exact(&mut got).unwrap();
            assert_eq!(got, bodies[i]);
        }
    }

    #[test]
    fn a_full_socket_says_would_block_at_once() {
        let Ok(mut ring) = SendRing::new(4) else {
            eprintln!("io_uring unavailable here: nothing to test");
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
        let mut got = [0; 2];
        (&d).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_signal() {
        let Ok(mut ring) = SendRing::new(2) else {
            eprintln!("io_uring unavailable here: nothing to test");
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
