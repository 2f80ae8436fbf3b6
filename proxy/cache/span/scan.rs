//! A span's initialisation: the scan of its data region that rebuilds the index and the
//! write head (the parent module's "Initialisation"). Runs on the thread that opens the
//! span (a `[CACHE INIT]` one in the daemon).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use super::{
    align_up, Crc32c, Loc, RecordHeader, Span, WriteHead, ALIGN, MAX_KEY_LEN, REC_HEADER,
    SCAN_CHUNK, TOMBSTONE,
};

impl Span {
    /// Rebuilds the index and the write head from the data region (see the module doc).
    pub(super) fn rebuild(&mut self) -> io::Result<()> {
        let found = self.scan()?;
        let Some(newest) = found.iter().max_by_key(|r| r.seq) else {
            return Ok(());
        };
        let head = WriteHead {
            offset: newest.offset + newest.len,
            next_seq: newest.seq + 1,
        };
        // Oldest first: the records from the write head to the end, then from the start.
        let split = found.partition_point(|r| r.offset < head.offset);
        let mut by_key: HashMap<Arc<str>, (Loc, u64)> = HashMap::new();
        let mut newest_so_far = 0;
        let mut stale = 0usize;
        for r in found[split..].iter().chain(&found[..split]) {
            if r.seq <= newest_so_far {
                stale += 1;
                continue;
            }
            newest_so_far = r.seq;
            if r.value_len == TOMBSTONE {
                by_key.remove(&*r.key);
            } else {
                let loc = Loc {
                    offset: r.offset,
                    seq: r.seq,
                    value_len: r.value_len,
                };
                by_key.insert(r.key.clone(), (loc, r.len));
            }
        }
        let index = self.index.get_mut().unwrap_or_else(|p| p.into_inner());
        for (key, (loc, len)) in by_key {
            index.by_offset.insert(loc.offset, key.clone());
            index.by_key.insert(key, loc);
            index.bytes += len;
        }
        log::debug!(
            "cache span {}: {} records found, {} live objects, {stale} stale, head at {}",
            self.path.display(),
            found.len(),
            index.by_key.len(),
            head.offset
        );
        *self.head.get_mut().unwrap_or_else(|p| p.into_inner()) = head;
        Ok(())
    }

    /// Every valid record of the data region, in offset order.
    fn scan(&self) -> io::Result<Vec<Found>> {
        let mut found = Vec::new();
        let mut window = Window::new(&self.file, self.data_end);
        let mut pos = self.data_start;
        while pos + REC_HEADER as u64 <= self.data_end {
            if !window.holds(pos) {
                // Past what was read: skip the file's holes (never written, so no record
                // starts there), which makes a sparse span that is mostly empty quick
                // to open however large it is.
                match self.next_data(pos) {
                    Some(data) if data > pos => {
                        pos = data.div_ceil(ALIGN) * ALIGN;
                        continue;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            match self.check_record(&mut window, pos)? {
                Some(r) => {
                    pos += r.len;
                    found.push(r);
                }
                None => pos += ALIGN,
            }
        }
        Ok(found)
    }

    /// The first offset at or after `pos` that holds data rather than a hole, `pos`
    /// itself where the file system cannot tell, or `None` when only holes follow.
    fn next_data(&self, pos: u64) -> Option<u64> {
        use nix::unistd::{lseek, Whence};
        match lseek(self.file.as_raw_fd(), pos as libc::off_t, Whence::SeekData) {
            Ok(data) => Some(data as u64),
            Err(nix::errno::Errno::ENXIO) => None,
            Err(_) => Some(pos),
        }
    }

    /// The record at `pos`, if one is there intact.
    fn check_record(&self, window: &mut Window<'_>, pos: u64) -> io::Result<Option<Found>> {
        let head = window.read(pos, REC_HEADER)?;
        let Some(h) = RecordHeader::parse(head, self.salt) else {
            return Ok(None);
        };
        let key_len = h.key_len as usize;
        let body_len = if h.value_len == TOMBSTONE {
            0
        } else {
            h.value_len
        };
        let room = self.data_end - pos - REC_HEADER as u64;
        if key_len > MAX_KEY_LEN || key_len as u64 > room || body_len > room - key_len as u64 {
            return Ok(None);
        }
        let mut head_fields = [0u8; 36];
        head_fields.copy_from_slice(&head[..36]);
        let total = REC_HEADER + key_len;
        let key_bytes = window.read(pos, total)?[REC_HEADER..].to_vec();
        let mut crc = Crc32c::new();
        crc.update(&head_fields);
        crc.update(&key_bytes);
        let value_at = pos + total as u64;
        if total as u64 + body_len <= SCAN_CHUNK as u64 {
            crc.update(window.read(value_at, body_len as usize)?);
        } else {
            window.stream(value_at, body_len, |chunk| crc.update(chunk))?;
        }
        if crc.finish() != h.crc {
            return Ok(None);
        }
        let Ok(key) = String::from_utf8(key_bytes) else {
            return Ok(None);
        };
        Ok(Some(Found {
            offset: pos,
            len: align_up(total as u64 + body_len),
            seq: h.seq,
            value_len: h.value_len,
            key: Arc::from(key),
        }))
    }
}

/// A valid record met by the scan.
#[derive(Debug)]
struct Found {
    offset: u64,
    /// Aligned length on disk.
    len: u64,
    seq: u64,
    value_len: u64,
    key: Arc<str>,
}

/// Sequential reads of the data region through one large buffer.
struct Window<'a> {
    file: &'a File,
    end: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    len: usize,
}

impl<'a> Window<'a> {
    fn new(file: &'a File, end: u64) -> Window<'a> {
        Window {
            file,
            end,
            buf: vec![0; SCAN_CHUNK],
            start: 0,
            len: 0,
        }
    }

    /// True if `pos` lies in what was last read.
    fn holds(&self, pos: u64) -> bool {
        pos >= self.start && pos < self.start + self.len as u64
    }

    /// The `n` bytes at `pos` (`n` ≤ [`SCAN_CHUNK`], `pos + n` ≤ the end).
    fn read(&mut self, pos: u64, n: usize) -> io::Result<&[u8]> {
        debug_assert!(n <= SCAN_CHUNK && pos + n as u64 <= self.end);
        if pos < self.start || pos + n as u64 > self.start + self.len as u64 {
            let want = (self.end - pos).min(SCAN_CHUNK as u64) as usize;
            self.file.read_exact_at(&mut self.buf[..want], pos)?;
            self.start = pos;
            self.len = want;
        }
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..at + n])
    }

    /// Feeds the `n` bytes at `pos` to `f`, a buffer at a time.
    fn stream(&mut self, mut pos: u64, n: u64, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        let end = pos + n;
        while pos < end {
            let k = (end - pos).min(SCAN_CHUNK as u64) as usize;
            f(self.read(pos, k)?);
            pos += k as u64;
        }
        Ok(())
    }
}
