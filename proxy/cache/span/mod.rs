//! A cache span: one fixed-size file used as a circular log of records, like the
//! cyclone buffer of Traffic Server's stripes, with its index kept in memory.
//!
//! # On-disk format (version 1, integers little-endian)
//!
//! ```text
//! 0       4 KiB header   "TSTLSPAN" | version u32 = 1 | alignment u32 = 512 | size u64
//!                        | salt u64 | data start u64 = 4096 | CRC-32C of bytes 0..40 u32
//!                        | epoch u64 | CRC-32C of bytes 0..52 u32 | zeros
//! 4096    data region    records, each starting on a 512-byte boundary:
//!   +0   magic "TSR1"   +4 key length u32   +8 sequence u64   +16 value length u64
//!   +24  salt u64 (the header's)   +32 zero u32   +36 CRC-32C of bytes 0..36, key and value
//!   +40  key (UTF-8, at most 4 KiB), then the value; padding up to the next boundary
//! ```
//!
//! A value length of `u64::MAX` marks a tombstone, written by [`Span::remove`]. The salt
//! is random per span, so bytes that a client got cached inside a value cannot pose as a
//! record of their own once the front of the record around them is overwritten; a new
//! salt ([`Span::clear`]) thus empties a span at the cost of one header write.
//!
//! The epoch is the cache's, for telling a span that missed part of the cache's life
//! (see `super` and [`Span::epoch`]). It lies in what the first headers left zero and
//! has a checksum of its own, so builds that predate it open the span as before, and a
//! header they wrote reads as epoch 0.
//!
//! # Writing
//!
//! Records are appended at the write head. A record that does not fit before the end of
//! the data region goes to its start, and the unused tail is zeroed first; before any
//! range is written, every indexed record overlapping it leaves the index, so the oldest
//! objects go first. Writes are not synced one by one: a crash may lose the records
//! written since the last [`Span::sync`] or the last wrap (which syncs, so that the
//! zeroed tail is on disk before the region's start is overwritten), but every record is
//! checksummed, so a crash never yields a corrupt object.
//!
//! # Initialisation
//!
//! [`Span::open`] (its scan is in `scan.rs`) reads the whole data region (less the
//! file's holes, where nothing was ever written: a sparse span opens in a time that grows
//! with what it holds, not with its size) and tries every 512-byte boundary: a valid
//! record (magic, salt, lengths in range, CRC) is kept and the scan jumps past it; any
//! other boundary (a torn write, a flipped byte, remains of overwritten records) is
//! skipped. The write head goes just past the record with the highest sequence number.
//! Walking the log from there, oldest first, sequence numbers must rise; a record older
//! than one before it is a survivor of a write the crash lost, and is dropped rather than
//! served in place of data that replaced it. Then, per key, the newest record wins, and a
//! tombstone removes the key. Initialisation time thus grows with what the span holds, its
//! whole size once its log has wrapped.
//!
//! The file is locked with `flock` while open, so two daemons (or one span configured
//! twice) never write the same span.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::hash::BuildHasher;
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::crc::Crc32c;
use super::lock;

mod scan;

/// Bytes of the span header at the start of the file.
pub const HEADER_SIZE: u64 = 4096;
/// Records start on multiples of this many bytes (from the start of the file).
pub const ALIGN: u64 = 512;
/// The smallest span size accepted (the configuration refuses smaller ones already).
pub const MIN_SPAN_SIZE: u64 = config::MIN_SPAN_SIZE;
/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 4096;
/// The file name of a span configured as a directory.
pub const SPAN_FILE_NAME: &str = "turnstile.span";

const SPAN_MAGIC: [u8; 8] = *b"TSTLSPAN";
const FORMAT_VERSION: u32 = 1;
const REC_MAGIC: [u8; 4] = *b"TSR1";
/// Bytes of a record header.
const REC_HEADER: usize = 40;
/// The value length of a tombstone.
const TOMBSTONE: u64 = u64::MAX;
/// Bytes read at a time while scanning.
const SCAN_CHUNK: usize = 1 << 20;

/// The largest value a span of `size` bytes stores: one record, with a key of the
/// longest length, filling its whole data region (0 for a span too small to open).
pub fn largest_value(size: u64) -> u64 {
    if size < MIN_SPAN_SIZE {
        return 0;
    }
    let capacity = (size - HEADER_SIZE) / ALIGN * ALIGN;
    capacity.saturating_sub((REC_HEADER + MAX_KEY_LEN) as u64)
}

/// Why a span could not be opened.
#[derive(Debug)]
pub enum SpanErrorKind {
    /// The file could not be opened or created.
    Open(io::Error),
    /// Another process (or another span of this configuration) holds the file.
    Locked,
    /// The configured size is below [`MIN_SPAN_SIZE`].
    TooSmall {
        /// The configured size in bytes.
        configured: u64,
    },
    /// The file does not start with a span header.
    BadMagic,
    /// The header's checksum does not match its contents.
    BadChecksum,
    /// The header is of a format this build does not read.
    UnsupportedVersion(u32),
    /// The header records another size than the configuration.
    WrongSize {
        /// The size in the header.
        header: u64,
        /// The configured size.
        configured: u64,
    },
    /// The file's length is not the configured size.
    WrongFileLength {
        /// The file's length.
        file: u64,
        /// The configured size.
        configured: u64,
    },
    /// Reading or writing the file failed.
    Io(io::Error),
}

/// A span that could not be opened: which file, and why.
#[derive(Debug)]
pub struct SpanError {
    path: PathBuf,
    kind: SpanErrorKind,
}

impl SpanError {
    fn new(path: &Path, kind: SpanErrorKind) -> SpanError {
        SpanError {
            path: path.to_path_buf(),
            kind,
        }
    }

    /// The span file concerned.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &SpanErrorKind {
        &self.kind
    }

    /// The reason alone, without the path: "wrong size: header says …, configured …".
    pub fn reason(&self) -> String {
        self.kind.to_string()
    }
}

impl fmt::Display for SpanErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpanErrorKind::Open(e) => write!(f, "cannot open: {e}"),
            SpanErrorKind::Locked => {
                write!(f, "in use: locked by another process, or configured twice")
            }
            SpanErrorKind::TooSmall { configured } => write!(
                f,
                "too small: configured {configured} bytes, the minimum is {MIN_SPAN_SIZE}"
            ),
            SpanErrorKind::BadMagic => write!(f, "bad header magic: not a Turnstile span"),
            SpanErrorKind::BadChecksum => write!(f, "bad header checksum"),
            SpanErrorKind::UnsupportedVersion(v) => write!(
                f,
                "unsupported format version {v} (this build reads {FORMAT_VERSION})"
            ),
            SpanErrorKind::WrongSize { header, configured } => write!(
                f,
                "wrong size: header says {header}, configured {configured}"
            ),
            SpanErrorKind::WrongFileLength { file, configured } => write!(
                f,
                "wrong size: file is {file} bytes, configured {configured}"
            ),
            SpanErrorKind::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl fmt::Display for SpanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache span {}: {}", self.path.display(), self.kind)
    }
}

impl std::error::Error for SpanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            SpanErrorKind::Open(e) | SpanErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// One cache span: a file holding a circular log of key/value records.
///
/// `Span` is `Send + Sync`. Appends are serialised by one lock (the write head); lookups
/// take the index lock only to find a record and read it without any lock held.
#[derive(Debug)]
pub struct Span {
    file: File,
    path: PathBuf,
    /// The configured size, as the header records it.
    size: u64,
    salt: u64,
    epoch: u64,
    data_start: u64,
    data_end: u64,
    head: Mutex<WriteHead>,
    index: Mutex<Index>,
    io_errors: AtomicU64,
}

#[derive(Debug)]
struct WriteHead {
    /// Where the next record goes, if it fits before `data_end`.
    offset: u64,
    next_seq: u64,
}

/// Where a live object's record is.
#[derive(Clone, Copy, Debug)]
struct Loc {
    offset: u64,
    seq: u64,
    value_len: u64,
}

#[derive(Debug, Default)]
struct Index {
    by_key: HashMap<Arc<str>, Loc>,
    /// The same records by offset, to find those a write overwrites.
    by_offset: BTreeMap<u64, Arc<str>>,
    /// Sum of the aligned lengths of the indexed records.
    bytes: u64,
}

impl Span {
    /// Opens the span at `path` (a file, or a directory holding [`SPAN_FILE_NAME`]) of
    /// `size` bytes: checks its header and rebuilds the index from the data region, or
    /// creates and formats the file if it is missing or empty. A file of the right size
    /// whose header block is all zeros (made with `truncate -s`, or left by a crash while
    /// formatting) is formatted too.
    ///
    /// # Errors
    ///
    /// A [`SpanError`] naming the file and the reason: it cannot be opened or is locked,
    /// the size is too small, the header is not a valid span header of this size, the
    /// file's length differs from `size`, or reading the data region fails.
    pub fn open(path: &Path, size: u64) -> Result<Span, SpanError> {
        let path = if path.is_dir() {
            path.join(SPAN_FILE_NAME)
        } else {
            path.to_path_buf()
        };
        let err = |kind| SpanError::new(&path, kind);
        if size < MIN_SPAN_SIZE {
            return Err(err(SpanErrorKind::TooSmall { configured: size }));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| err(SpanErrorKind::Open(e)))?;
        lock_exclusive(&file).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                err(SpanErrorKind::Locked)
            } else {
                err(SpanErrorKind::Open(e))
            }
        })?;
        let file_len = file
            .metadata()
            .map_err(|e| err(SpanErrorKind::Open(e)))?
            .len();
        let unformatted = file_len == 0
            || (file_len == size
                && header_is_blank(&file).map_err(|e| err(SpanErrorKind::Io(e)))?);
        let (salt, epoch) = if unformatted {
            (
                format(&file, size).map_err(|e| err(SpanErrorKind::Io(e)))?,
                0,
            )
        } else {
            let header = check_header(&file, size).map_err(err)?;
            if file_len != size {
                return Err(err(SpanErrorKind::WrongFileLength {
                    file: file_len,
                    configured: size,
                }));
            }
            header
        };
        let mut span = Span {
            file,
            path: path.clone(),
            size,
            salt,
            epoch,
            data_start: HEADER_SIZE,
            data_end: HEADER_SIZE + (size - HEADER_SIZE) / ALIGN * ALIGN,
            head: Mutex::new(WriteHead {
                offset: HEADER_SIZE,
                next_seq: 1,
            }),
            index: Mutex::new(Index::default()),
            io_errors: AtomicU64::new(0),
        };
        if !unformatted {
            // A span formatted just now holds nothing to index.
            span.rebuild().map_err(|e| err(SpanErrorKind::Io(e)))?;
        }
        Ok(span)
    }

    /// The value stored under `key`, read from disk and checked against its checksum. A
    /// record that fails the check leaves the index: corrupt data is never returned.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let loc = *lock(&self.index).by_key.get(key)?;
        let mut buf = vec![0u8; REC_HEADER + key.len() + loc.value_len as usize];
        if let Err(e) = self.file.read_exact_at(&mut buf, loc.offset) {
            self.io_error("read", loc.offset, &e);
            self.forget(key, loc.seq);
            return None;
        }
        let intact = RecordHeader::parse(&buf, self.salt).is_some_and(|h| {
            h.seq == loc.seq
                && h.value_len == loc.value_len
                && h.key_len as usize == key.len()
                && &buf[REC_HEADER..REC_HEADER + key.len()] == key.as_bytes()
                && h.crc == record_crc(&buf[..36], &buf[REC_HEADER..])
        });
        if !intact {
            // Either the record rotted on disk, or a wrap overwrote it while we read; in
            // the second case the writer has already dropped it and `forget` is a no-op.
            log::debug!(
                "cache span {}: record for {key:?} at {} failed its check; dropped",
                self.path.display(),
                loc.offset
            );
            self.forget(key, loc.seq);
            return None;
        }
        buf.drain(..REC_HEADER + key.len());
        Some(buf)
    }

    /// Stores `value` under `key`, replacing any older value. Fails with
    /// `InvalidInput`, storing nothing, if the key is longer than [`MAX_KEY_LEN`] or the
    /// record would not fit in the data region.
    ///
    /// # Errors
    ///
    /// `InvalidInput` as above, or the error of a failed write; an older value under
    /// `key`, if still in the index, stays readable.
    pub fn put(&self, key: &str, value: &[u8]) -> io::Result<()> {
        self.append(key, Some(value))
    }

    /// Removes `key`: drops it from the index at once and appends a tombstone so that it
    /// stays removed after a restart. Removing an absent key writes nothing.
    ///
    /// # Errors
    ///
    /// The tombstone could not be written: the key is gone until a restart, which may
    /// bring it back.
    pub fn remove(&self, key: &str) -> io::Result<()> {
        self.append(key, None)
    }

    /// Flushes written records to the device.
    ///
    /// # Errors
    ///
    /// The error of `fdatasync`.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Whether the index holds `key` (no disk access).
    pub fn contains(&self, key: &str) -> bool {
        lock(&self.index).by_key.contains_key(key)
    }

    /// Objects held.
    pub fn len(&self) -> usize {
        lock(&self.index).by_key.len()
    }

    /// True if no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the data region taken by live objects (records rounded up to 512 bytes).
    pub fn bytes_used(&self) -> u64 {
        lock(&self.index).bytes
    }

    /// Bytes of the data region: the span size less the header, rounded down to 512.
    pub fn capacity(&self) -> u64 {
        self.data_end - self.data_start
    }

    /// The span file (for a directory span, the file inside it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and writes that failed since the span was opened.
    pub fn io_errors(&self) -> u64 {
        self.io_errors.load(Ordering::Relaxed)
    }

    /// Whether [`put`](Self::put) takes a value of `value_len` bytes under `key`: the key
    /// is within [`MAX_KEY_LEN`] and the record fits in the data region.
    pub fn fits(&self, key: &str, value_len: u64) -> bool {
        key.len() <= MAX_KEY_LEN && record_len(key.len(), value_len) <= self.capacity()
    }

    /// The epoch in the header: the last epoch of the cache this span was in use in (0
    /// for a new span, or one written by a build that did not record it).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records `epoch` in the header, on the device before this returns.
    ///
    /// # Errors
    ///
    /// The header could not be written or flushed; it may hold either epoch.
    pub fn set_epoch(&mut self, epoch: u64) -> io::Result<()> {
        self.write_header(self.salt, epoch)
    }

    /// Empties the span and records `epoch` in its header: a new salt makes every record
    /// on disk invalid at once, so nothing is zeroed. On the device before this returns.
    ///
    /// # Errors
    ///
    /// The header could not be written or flushed. The span must not be used then: on
    /// disk it may still hold its old records.
    pub fn clear(&mut self, epoch: u64) -> io::Result<()> {
        self.write_header(new_salt(self.size), epoch)?;
        *self.index.get_mut().unwrap_or_else(|p| p.into_inner()) = Index::default();
        *self.head.get_mut().unwrap_or_else(|p| p.into_inner()) = WriteHead {
            offset: self.data_start,
            next_seq: 1,
        };
        Ok(())
    }

    /// The keys of the objects held.
    pub fn keys(&self) -> Vec<Arc<str>> {
        lock(&self.index).by_key.keys().cloned().collect()
    }

    fn write_header(&mut self, salt: u64, epoch: u64) -> io::Result<()> {
        self.file
            .write_all_at(&encode_header(self.size, salt, epoch), 0)
            .and_then(|()| self.file.sync_data())
            .inspect_err(|e| self.io_error("header write", 0, e))?;
        (self.salt, self.epoch) = (salt, epoch);
        Ok(())
    }

    fn append(&self, key: &str, value: Option<&[u8]>) -> io::Result<()> {
        let value_len = value.map_or(0, <[u8]>::len);
        if !self.fits(key, value_len as u64) {
            let why = if key.len() > MAX_KEY_LEN {
                format!("key of {} bytes, the maximum is {MAX_KEY_LEN}", key.len())
            } else {
                format!(
                    "value of {value_len} bytes does not fit in span {} ({} data bytes)",
                    self.path.display(),
                    self.capacity()
                )
            };
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        let len = record_len(key.len(), value_len as u64);

        let mut head = lock(&self.head);
        let mut at = head.offset;
        let mut tail = None;
        if at + len > self.data_end {
            tail = Some(at..self.data_end);
            at = self.data_start;
        }
        {
            let mut index = lock(&self.index);
            if value.is_none() && !index.by_key.contains_key(key) {
                return Ok(());
            }
            if let Some(t) = &tail {
                index.drop_overlapping(t.clone());
            }
            index.drop_overlapping(at..at + len);
            if value.is_none() {
                index.remove(key);
            }
        }
        let seq = head.next_seq;
        head.next_seq += 1;
        // Advance even if a write below fails: the range no longer holds what the index
        // said, and the next record must not assume otherwise.
        head.offset = at + len;

        if let Some(t) = tail {
            self.zero(t.clone())
                .and_then(|()| self.file.sync_data())
                .inspect_err(|e| self.io_error("zero", t.start, e))?;
        }
        let record = encode_record(self.salt, seq, key, value);
        self.file
            .write_all_at(&record, at)
            .inspect_err(|e| self.io_error("write", at, e))?;
        if value.is_some() {
            lock(&self.index).insert(
                key,
                Loc {
                    offset: at,
                    seq,
                    value_len: value_len as u64,
                },
                len,
            );
        }
        Ok(())
    }

    /// Zeroes `range`, so that no record in a skipped tail outlives the wrap.
    fn zero(&self, range: Range<u64>) -> io::Result<()> {
        let zeros = vec![0u8; (range.end - range.start).min(SCAN_CHUNK as u64) as usize];
        let mut at = range.start;
        while at < range.end {
            let n = (range.end - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Drops `key` from the index if it still names the record of sequence `seq`.
    fn forget(&self, key: &str, seq: u64) {
        let mut index = lock(&self.index);
        if index.by_key.get(key).is_some_and(|l| l.seq == seq) {
            index.remove(key);
        }
    }

    fn io_error(&self, what: &str, offset: u64, e: &io::Error) {
        let n = self.io_errors.fetch_add(1, Ordering::Relaxed) + 1;
        // Powers of two only: a dying disk must not flood the log.
        if n.is_power_of_two() {
            log::warn!(
                "cache span {}: {what} at offset {offset} failed: {e} ({n} I/O errors so far)",
                self.path.display()
            );
        }
    }
}

impl Index {
    fn insert(&mut self, key: &str, loc: Loc, len: u64) {
        self.remove(key);
        let key: Arc<str> = Arc::from(key);
        self.by_offset.insert(loc.offset, key.clone());
        self.by_key.insert(key, loc);
        self.bytes += len;
    }

    fn remove(&mut self, key: &str) {
        if let Some(loc) = self.by_key.remove(key) {
            self.by_offset.remove(&loc.offset);
            self.bytes -= record_len(key.len(), loc.value_len);
        }
    }

    /// Drops every record overlapping `range`: it is about to be overwritten.
    fn drop_overlapping(&mut self, range: Range<u64>) {
        let mut doomed = Vec::new();
        // Records never overlap each other, so only the last one starting before the
        // range can reach into it.
        if let Some((_, key)) = self.by_offset.range(..range.start).next_back() {
            if let Some(loc) = self.by_key.get(key) {
                if loc.offset + record_len(key.len(), loc.value_len) > range.start {
                    doomed.push(key.clone());
                }
            }
        }
        doomed.extend(self.by_offset.range(range).map(|(_, k)| k.clone()));
        for key in doomed {
            self.remove(&key);
        }
    }
}

/// The fixed fields of a record.
struct RecordHeader {
    key_len: u32,
    seq: u64,
    value_len: u64,
    crc: u32,
}

impl RecordHeader {
    /// The header at the start of `b`, if it has the record magic and this span's salt.
    fn parse(b: &[u8], salt: u64) -> Option<RecordHeader> {
        if b.len() < REC_HEADER || b[..4] != REC_MAGIC || le64(&b[24..32]) != salt {
            return None;
        }
        if le32(&b[32..36]) != 0 {
            return None;
        }
        Some(RecordHeader {
            key_len: le32(&b[4..8]),
            seq: le64(&b[8..16]),
            value_len: le64(&b[16..24]),
            crc: le32(&b[36..40]),
        })
    }
}

fn encode_record(salt: u64, seq: u64, key: &str, value: Option<&[u8]>) -> Vec<u8> {
    let body = value.unwrap_or(&[]);
    let mut b = Vec::with_capacity(REC_HEADER + key.len() + body.len());
    b.extend_from_slice(&REC_MAGIC);
    b.extend_from_slice(&(key.len() as u32).to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&value.map_or(TOMBSTONE, |v| v.len() as u64).to_le_bytes());
    b.extend_from_slice(&salt.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    let crc = Crc32c::of(&[&b[..36], key.as_bytes(), body]);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(body);
    b
}

fn record_crc(fields: &[u8], key_and_value: &[u8]) -> u32 {
    Crc32c::of(&[fields, key_and_value])
}

/// Aligned on-disk length of a live record.
fn record_len(key_len: usize, value_len: u64) -> u64 {
    align_up((REC_HEADER + key_len) as u64 + value_len)
}

fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Encodes a span header.
fn encode_header(size: u64, salt: u64, epoch: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_SIZE as usize);
    h.extend_from_slice(&SPAN_MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&(ALIGN as u32).to_le_bytes());
    h.extend_from_slice(&size.to_le_bytes());
    h.extend_from_slice(&salt.to_le_bytes());
    h.extend_from_slice(&HEADER_SIZE.to_le_bytes());
    let crc = Crc32c::of(&[&h]);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&epoch.to_le_bytes());
    let crc = Crc32c::of(&[&h]);
    h.extend_from_slice(&crc.to_le_bytes());
    h.resize(HEADER_SIZE as usize, 0);
    h
}

/// A random salt for a span of `size` bytes.
fn new_salt(size: u64) -> u64 {
    // RandomState is seeded from the OS's randomness once per process and then varied,
    // which is all a salt needs.
    RandomState::new().hash_one((size, std::process::id()))
}

/// Sizes a new span file and writes its header (epoch 0); returns its salt.
fn format(file: &File, size: u64) -> io::Result<u64> {
    let salt = new_salt(size);
    // Size first: a crash before the header is written leaves a blank header, which the
    // next start formats again.
    file.set_len(size)?;
    file.write_all_at(&encode_header(size, salt, 0), 0)?;
    file.sync_all()?;
    Ok(salt)
}

/// True if the header block holds nothing but zeros: the file was never formatted.
fn header_is_blank(file: &File) -> io::Result<bool> {
    let mut h = vec![0u8; HEADER_SIZE as usize];
    file.read_exact_at(&mut h, 0)?;
    Ok(h.iter().all(|&b| b == 0))
}

/// Checks an existing span's header against the configured size; returns its salt and
/// epoch (0 when the epoch's checksum does not match: a header of an earlier build).
fn check_header(file: &File, size: u64) -> Result<(u64, u64), SpanErrorKind> {
    let mut h = [0u8; 56];
    file.read_exact_at(&mut h, 0).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SpanErrorKind::BadMagic
        } else {
            SpanErrorKind::Io(e)
        }
    })?;
    if h[..8] != SPAN_MAGIC {
        return Err(SpanErrorKind::BadMagic);
    }
    if Crc32c::of(&[&h[..40]]) != le32(&h[40..44]) {
        return Err(SpanErrorKind::BadChecksum);
    }
    let version = le32(&h[8..12]);
    if version != FORMAT_VERSION
        || le32(&h[12..16]) != ALIGN as u32
        || le64(&h[32..40]) != HEADER_SIZE
    {
        return Err(SpanErrorKind::UnsupportedVersion(version));
    }
    let header_size = le64(&h[16..24]);
    if header_size != size {
        return Err(SpanErrorKind::WrongSize {
            header: header_size,
            configured: size,
        });
    }
    let epoch = if Crc32c::of(&[&h[..52]]) == le32(&h[52..56]) {
        le64(&h[44..52])
    } else {
        0
    };
    Ok((le64(&h[24..32]), epoch))
}

impl Span {
    /// Flushes the span and gives up its lock, for another process to open it (an
    /// upgrade's new one). The caller has stopped every access first: from now on this
    /// process neither reads nor writes the file.
    pub fn release(&self) -> io::Result<()> {
        self.sync()?;
        // SAFETY: flock takes a descriptor that `self.file` owns and keeps open for the
        // call, and plain integer flags; it touches no memory of ours.
        let rc = unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Takes the span's exclusive advisory lock without waiting.
fn lock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: flock takes a descriptor that `file` owns and keeps open for the call, and
    // plain integer flags; it touches no memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checksums of records and of a header as the table-driven CRC-32C of the first
    /// format wrote them: spans written before the switch to the `crc32c` crate still open.
    #[test]
    fn record_and_header_checksums_are_those_of_format_1() {
        let salt = 0x0123_4567_89AB_CDEF;
        let r = encode_record(salt, 7, "http://example.com/", Some(b"hello"));
        assert_eq!(le32(&r[36..40]), 0x902D_42B6);
        assert_eq!(record_crc(&r[..36], &r[REC_HEADER..]), 0x902D_42B6);
        let t = encode_record(salt, 8, "http://example.com/", None);
        assert_eq!(le32(&t[36..40]), 0x8E19_9D30);
        let h = encode_header(64 << 20, salt, 9);
        assert_eq!(le32(&h[40..44]), 0xFB10_5D44);
    }
}
