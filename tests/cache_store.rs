//! The cache store (proxy/cache): spans as circular logs that survive restarts, torn
//! writes and flipped bytes; the byte-bounded RAM LRU; the multi-span `Cache`.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use turnstile::cache::{
    open_async, Cache, Lookup, RamCache, Span, SpanError, SpanErrorKind, SpanStatus,
};

const MIB: u64 = 1 << 20;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "turnstile-cache-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A recognisable value: `tag` repeated to `len` bytes.
fn value(tag: &str, len: usize) -> Vec<u8> {
    tag.bytes().cycle().take(len).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open span file");
    f.write_all_at(bytes, offset).expect("write span file");
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    fs::File::open(path)
        .expect("open span file")
        .read_exact_at(&mut buf, offset)
        .expect("read span file");
    buf
}

fn open_err(path: &Path, size: u64) -> String {
    match Span::open(path, size) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn span_put_get_round_trip_and_newer_put_replaces() {
    let dir = TempDir::new("roundtrip");
    let span = Span::open(&dir.join("s"), 4 * MIB).unwrap();
    assert_eq!(span.get("a"), None);
    span.put("a", b"first").unwrap();
    span.put("b", &value("bee", 10_000)).unwrap();
    span.put("empty", b"").unwrap();
    assert_eq!(span.get("a").as_deref(), Some(&b"first"[..]));
    assert_eq!(span.get("b"), Some(value("bee", 10_000)));
    assert_eq!(span.get("empty").as_deref(), Some(&b""[..]));
    span.put("a", b"second, longer").unwrap();
    assert_eq!(span.get("a").as_deref(), Some(&b"second, longer"[..]));
    assert_eq!(span.len(), 3);
    // 512 + 10240 + 512: only the newest "a" counts.
    assert_eq!(span.bytes_used(), 512 + 10_240 + 512);
    assert_eq!(span.capacity(), 4 * MIB - 4096);
}

#[test]
fn span_remove_hides_the_key_and_stays_removed_after_restart() {
    let dir = TempDir::new("remove");
    let path = dir.join("s");
    {
        let span = Span::open(&path, MIB).unwrap();
        span.put("gone", b"x").unwrap();
        span.put("kept", b"y").unwrap();
        span.remove("gone").unwrap();
        span.remove("never-there").unwrap();
        assert_eq!(span.get("gone"), None);
        assert_eq!(span.len(), 1);
        assert_eq!(span.bytes_used(), 512);
    }
    let span = Span::open(&path, MIB).unwrap();
    assert_eq!(span.get("gone"), None);
    assert_eq!(span.get("kept").as_deref(), Some(&b"y"[..]));
    assert_eq!(span.len(), 1);
}

#[test]
fn span_restart_serves_every_object_with_identical_bytes() {
    let dir = TempDir::new("restart");
    let path = dir.join("s");
    let n = 300;
    let len = |i: usize| (i * 97) % 5000;
    {
        let span = Span::open(&path, 4 * MIB).unwrap();
        for i in 0..n {
            span.put(&format!("http://h/{i}"), &value(&format!("v{i}-"), len(i)))
                .unwrap();
        }
        span.sync().unwrap();
    }
    let span = Span::open(&path, 4 * MIB).unwrap();
    assert_eq!(span.len(), n);
    for i in 0..n {
        assert_eq!(
            span.get(&format!("http://h/{i}")),
            Some(value(&format!("v{i}-"), len(i))),
            "object {i}"
        );
    }
    // The write head is past the last record: new writes overwrite nothing.
    span.put("new", b"n").unwrap();
    drop(span);
    let span = Span::open(&path, 4 * MIB).unwrap();
    assert_eq!(span.len(), n + 1);
}

#[test]
fn span_in_a_directory_uses_a_file_inside_it() {
    let dir = TempDir::new("dir");
    let span = Span::open(&dir.0, MIB).unwrap();
    assert_eq!(span.path(), dir.join("turnstile.span"));
    assert_eq!(fs::metadata(dir.join("turnstile.span")).unwrap().len(), MIB);
}

#[test]
fn span_file_preallocated_with_zeros_is_formatted() {
    let dir = TempDir::new("prealloc");
    let path = dir.join("s");
    fs::File::create(&path).unwrap().set_len(2 * MIB).unwrap();
    let span = Span::open(&path, 2 * MIB).unwrap();
    span.put("k", b"v").unwrap();
    drop(span);
    let span = Span::open(&path, 2 * MIB).unwrap();
    assert_eq!(span.get("k").as_deref(), Some(&b"v"[..]));
    // Blank but of another size: not ours to format.
    let other = dir.join("other");
    fs::File::create(&other).unwrap().set_len(3 * MIB).unwrap();
    assert!(open_err(&other, 2 * MIB).contains("bad header magic"));
}

/// The scan skips a sparse span's holes (where no record can start): a record beyond
/// one (moved there by hand) is still found, and the write head follows it.
#[test]
fn span_records_beyond_a_hole_are_found_at_restart() {
    let dir = TempDir::new("holes");
    let path = dir.join("s");
    let size = 1 << 30;
    let span = Span::open(&path, size).unwrap();
    span.put("a", &value("first", 3000)).unwrap();
    span.put("b", &value("second", 3000)).unwrap();
    drop(span);
    let bytes = read_at(&path, 0, 64 * 1024);
    let b_at = find(&bytes, b"secondsecond").unwrap() / 512 * 512;
    let record = bytes[b_at..b_at + 4096].to_vec();
    overwrite(&path, b_at as u64, &[0; 4096]);
    let far = 700 * MIB;
    overwrite(&path, far, &record);
    let span = Span::open(&path, size).unwrap();
    assert_eq!(span.get("a"), Some(value("first", 3000)));
    assert_eq!(span.get("b"), Some(value("second", 3000)));
    span.put("c", &value("third", 100)).unwrap();
    drop(span);
    let bytes = read_at(&path, far, 64 * 1024);
    let c_at = find(&bytes, b"thirdthird").unwrap() as u64 + far;
    assert!(
        c_at < far + 8192,
        "the next record goes after the newest: {c_at}"
    );
    let span = Span::open(&path, size).unwrap();
    for (k, v) in [
        ("a", "first", 3000),
        ("b", "second", 3000),
        ("c", "third", 100),
    ]
    .map(|(k, t, n)| (k, value(t, n)))
    {
        assert_eq!(span.get(k), Some(v), "{k}");
    }
}

#[test]
fn span_flipped_byte_drops_only_that_record_after_restart() {
    let dir = TempDir::new("flip");
    let path = dir.join("s");
    let tag = |i: usize| format!("<record {i:02} value>");
    {
        let span = Span::open(&path, MIB).unwrap();
        for i in 1..=20 {
            span.put(&format!("k{i}"), &value(&tag(i), 700)).unwrap();
        }
    }
    let bytes = fs::read(&path).unwrap();
    let at = find(&bytes, tag(15).as_bytes()).unwrap() + 300;
    overwrite(&path, at as u64, &[bytes[at] ^ 0x40]);

    let span = Span::open(&path, MIB).unwrap();
    for i in (1..=20).filter(|&i| i != 15) {
        assert_eq!(
            span.get(&format!("k{i}")),
            Some(value(&tag(i), 700)),
            "k{i}"
        );
    }
    assert_eq!(span.get("k15"), None);
    assert_eq!(span.len(), 19);
}

#[test]
fn span_get_never_returns_bytes_corrupted_while_open() {
    let dir = TempDir::new("rot");
    let path = dir.join("s");
    let span = Span::open(&path, MIB).unwrap();
    span.put("k", &value("<good>", 2000)).unwrap();
    span.put("other", b"fine").unwrap();
    let bytes = fs::read(&path).unwrap();
    let at = find(&bytes, b"<good>").unwrap() + 1000;
    overwrite(&path, at as u64, b"EVIL");
    assert_eq!(span.get("k"), None);
    assert_eq!(span.len(), 1, "the corrupt record left the index");
    assert_eq!(span.bytes_used(), 512);
    assert_eq!(span.get("other").as_deref(), Some(&b"fine"[..]));
}

#[test]
fn span_torn_last_record_is_absent_and_earlier_ones_survive() {
    for garbage in [0x00u8, 0xA5] {
        let dir = TempDir::new("torn");
        let path = dir.join("s");
        {
            let span = Span::open(&path, MIB).unwrap();
            for i in 0..10 {
                span.put(&format!("k{i}"), &value(&format!("[{i}]"), 3000))
                    .unwrap();
            }
            span.put("last", &value("<last>", 4000)).unwrap();
        }
        // The second half of the last record never reached the disk.
        let bytes = fs::read(&path).unwrap();
        let start = find(&bytes, b"<last>").unwrap();
        overwrite(&path, (start + 2000) as u64, &[garbage; 2000]);

        let span = Span::open(&path, MIB).unwrap();
        for i in 0..10 {
            assert_eq!(
                span.get(&format!("k{i}")),
                Some(value(&format!("[{i}]"), 3000))
            );
        }
        assert_eq!(span.get("last"), None);
        // The write head went back to the torn record: writing on loses nothing earlier.
        span.put("after", b"a").unwrap();
        drop(span);
        let span = Span::open(&path, MIB).unwrap();
        assert_eq!(span.len(), 11);
        assert_eq!(span.get("after").as_deref(), Some(&b"a"[..]));
    }
}

/// Which of `keys` the span serves, checking each served value is the expected one.
fn present(span: &Span, keys: &[(String, Vec<u8>)]) -> BTreeSet<usize> {
    keys.iter()
        .enumerate()
        .filter(|(_, (k, v))| match span.get(k) {
            Some(got) => {
                assert_eq!(&got, v, "{k}");
                true
            }
            None => false,
        })
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn span_wrap_keeps_the_newest_evicts_the_oldest_and_reopens_identically() {
    let dir = TempDir::new("wrap");
    let path = dir.join("s");
    // Sizes vary so that wraps leave unused tails; 3 MiB in all through a 1 MiB span.
    let mut keys = Vec::new();
    let mut total = 0;
    let mut seed = 12345u64;
    while total < 3 * MIB as usize {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 100 + (seed >> 33) as usize % 30_000;
        let i = keys.len();
        keys.push((format!("k{i}"), value(&format!("({i})"), len)));
        total += len;
    }
    let span = Span::open(&path, MIB).unwrap();
    let mut max_bytes = 0;
    for (i, (k, v)) in keys.iter().enumerate() {
        span.put(k, v).unwrap();
        assert_eq!(span.get(k).as_ref(), Some(v), "just written {i}");
        max_bytes = max_bytes.max(span.bytes_used());
        assert!(span.bytes_used() <= span.capacity());
    }
    assert!(max_bytes <= span.capacity());
    let before = present(&span, &keys);
    assert!(before.len() < keys.len() / 2, "oldest evicted");
    assert!(before.contains(&(keys.len() - 1)));
    // What survives is a run of the newest objects, up to a capacity's worth.
    let oldest = *before.iter().next().unwrap();
    assert_eq!(before, (oldest..keys.len()).collect::<BTreeSet<_>>());
    let used = span.bytes_used();
    drop(span);

    let span = Span::open(&path, MIB).unwrap();
    assert_eq!(present(&span, &keys), before);
    assert_eq!(span.bytes_used(), used);

    // The head was found again: more writes evict the oldest survivors, not the newest.
    let more: Vec<_> = (0..5)
        .map(|i| (format!("more{i}"), value(&format!("+{i}+"), 20_000)))
        .collect();
    for (k, v) in &more {
        span.put(k, v).unwrap();
    }
    let after = present(&span, &keys);
    assert!(after.contains(&(keys.len() - 1)));
    assert!(after.len() < before.len());
    let cut = *after.iter().next().unwrap();
    assert_eq!(after, (cut..keys.len()).collect::<BTreeSet<_>>());
    assert_eq!(present(&span, &more).len(), 5);
    drop(span);
    let span = Span::open(&path, MIB).unwrap();
    assert_eq!(present(&span, &keys), after);
    assert_eq!(present(&span, &more).len(), 5);
}

#[test]
fn span_restart_drops_a_stale_record_whose_overwrite_was_lost() {
    let dir = TempDir::new("stale");
    let path = dir.join("s");
    let span = Span::open(&path, MIB).unwrap();
    let blocks = (span.capacity() / 512) as usize;
    // One 512-byte record per block: "k" v1 at block 0, v2 at block 1, then fillers.
    span.put("k", b"v1").unwrap();
    span.put("k", b"v2").unwrap();
    for i in 2..blocks {
        span.put(&format!("f{i}"), b"x").unwrap();
    }
    let first_block = {
        let mut b = vec![0u8; 512];
        fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut b, 4096)
            .unwrap();
        b
    };
    // The next lap overwrites both versions of "k".
    span.put("g0", b"y").unwrap();
    span.put("g1", b"y").unwrap();
    assert_eq!(span.get("k"), None);
    drop(span);
    // A crash lost the write of "g0" but kept the later "g1": "k" v1 is back on disk.
    overwrite(&path, 4096, &first_block);
    let span = Span::open(&path, MIB).unwrap();
    assert_eq!(span.get("k"), None, "v2 was written after v1 and is gone");
    assert_eq!(span.get("g1").as_deref(), Some(&b"y"[..]));
    assert_eq!(span.get("f2").as_deref(), Some(&b"x"[..]));
}

#[test]
fn span_wrap_erases_the_skipped_tail_so_older_versions_cannot_return() {
    let dir = TempDir::new("tail");
    let path = dir.join("s");
    let span = Span::open(&path, MIB).unwrap();
    let blocks = (span.capacity() / 512) as usize;
    // Lap 1: fillers, then "k" v1 in the very last block.
    for i in 0..blocks - 1 {
        span.put(&format!("a{i}"), b"1").unwrap();
    }
    span.put("k", b"v1").unwrap();
    // Lap 2: "k" v2 first, fillers up to two blocks before the end.
    span.put("k", b"v2").unwrap();
    for i in 1..blocks - 2 {
        span.put(&format!("b{i}"), b"2").unwrap();
    }
    // Too big for the last two blocks: it wraps, skipping a tail that holds "k" v1, and
    // overwrites everything up to that tail, "k" v2 included.
    span.put("x", &vec![3u8; (blocks - 2) * 512 - 40 - 1])
        .unwrap();
    assert_eq!(span.len(), 1);
    assert_eq!(span.get("k"), None);
    drop(span);
    let span = Span::open(&path, MIB).unwrap();
    assert_eq!(span.get("k"), None, "v1 must not outlive v2");
    assert_eq!(span.len(), 1);
}

/// CRC-32C, bit by bit: the tests' own, to forge records.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn span_restart_ignores_a_record_forged_inside_a_cached_value() {
    let dir = TempDir::new("forged");
    let path = dir.join("s");
    // A well-formed record in the documented format, but the forger cannot know the
    // span's salt. It is placed to start on a 512-byte boundary of the file.
    let mut fake = Vec::new();
    fake.extend_from_slice(b"TSR1");
    fake.extend_from_slice(&6u32.to_le_bytes());
    fake.extend_from_slice(&(1u64 << 40).to_le_bytes());
    fake.extend_from_slice(&6u64.to_le_bytes());
    fake.extend_from_slice(&0u64.to_le_bytes());
    fake.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32c(&[&fake[..], b"victimpoison"].concat());
    fake.extend_from_slice(&crc.to_le_bytes());
    fake.extend_from_slice(b"victimpoison");
    let mut body = vec![b'.'; 2000];
    // The first record is at 4096; its value starts after 40 header and 8 key bytes.
    body[512 - 48..512 - 48 + fake.len()].copy_from_slice(&fake);
    {
        let span = Span::open(&path, MIB).unwrap();
        span.put("outer-k!", &body).unwrap();
        assert_eq!(span.get("outer-k!"), Some(body.clone()));
    }
    assert_eq!(fs::read(&path).unwrap()[4096 + 512..][..4], *b"TSR1");
    // The front of the outer record is overwritten (or torn): its body is now scanned.
    overwrite(&path, 4096, &[0u8; 64]);
    let span = Span::open(&path, MIB).unwrap();
    assert_eq!(span.get("victim"), None);
    assert_eq!(span.len(), 0);
}

#[test]
fn span_refuses_values_and_keys_too_large() {
    let dir = TempDir::new("large");
    let span = Span::open(&dir.join("s"), MIB).unwrap();
    let room = span.capacity() as usize - 40 - 1;
    assert!(span.fits("k", room as u64) && !span.fits("k", room as u64 + 1));
    assert!(span.fits(&"y".repeat(4096), 1) && !span.fits(&"x".repeat(4097), 1));
    let e = span.put("k", &vec![1u8; room + 1]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(span.len(), 0);
    span.put("k", &vec![2u8; room]).unwrap();
    assert_eq!(span.get("k").map(|v| v.len()), Some(room));
    assert_eq!(span.bytes_used(), span.capacity());
    let long = "x".repeat(4097);
    assert!(span.put(&long, b"v").is_err());
    span.put(&"y".repeat(4096), b"v").unwrap();
    assert_eq!(span.get("k"), None, "the big one made room");
}

#[test]
fn largest_value_is_what_the_smallest_span_takes_or_ram_without_spans() {
    let dir = TempDir::new("largest");
    let size = MIB + 1000; // not a multiple of the alignment
    let span = Span::open(&dir.join("s"), size).unwrap();
    let largest = turnstile::cache::largest_value(&[8 * MIB, size], 0);
    // With the longest key, that much fits and one byte more does not.
    let key = "k".repeat(4096);
    assert!(span.put(&key, &vec![1u8; largest as usize + 1]).is_err());
    span.put(&key, &vec![2u8; largest as usize]).unwrap();
    assert_eq!(span.get(&key).map(|v| v.len() as u64), Some(largest));
    // RAM is no bound with spans; the disk write queue (64 MiB) is; RAM is without.
    assert_eq!(turnstile::cache::largest_value(&[size], 1 << 40), largest);
    assert_eq!(turnstile::cache::largest_value(&[1 << 40], 0), 64 * MIB);
    assert_eq!(turnstile::cache::largest_value(&[], 5000), 5000);
}

#[test]
fn span_open_errors_name_the_reason() {
    let dir = TempDir::new("errors");
    let path = dir.join("s");
    drop(Span::open(&path, 2 * MIB).unwrap());
    let e = open_err(&path, MIB);
    assert!(
        e.contains("wrong size: header says 2097152, configured 1048576"),
        "{e}"
    );

    let junk = dir.join("junk");
    fs::write(&junk, vec![7u8; MIB as usize]).unwrap();
    assert!(open_err(&junk, MIB).contains("bad header magic"));

    let flipped = dir.join("flipped");
    drop(Span::open(&flipped, MIB).unwrap());
    overwrite(&flipped, 17, &[0xff]);
    assert!(open_err(&flipped, MIB).contains("bad header checksum"));

    let short = dir.join("short");
    drop(Span::open(&short, MIB).unwrap());
    OpenOptions::new()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(MIB / 2)
        .unwrap();
    let e = open_err(&short, MIB);
    assert!(e.contains("wrong size: file is 524288 bytes"), "{e}");

    let under_file = junk.join("span");
    let e: SpanError = Span::open(&under_file, MIB).unwrap_err();
    assert!(e.reason().starts_with("cannot open: "), "{e}");
    assert!(
        e.to_string().contains(&*under_file.to_string_lossy()),
        "{e}"
    );
    assert!(std::error::Error::source(&e).is_some());

    assert!(open_err(&dir.join("tiny"), MIB - 1).contains("too small"));

    let held = Span::open(&path, 2 * MIB).unwrap();
    assert!(open_err(&path, 2 * MIB).contains("in use"));
    drop(held);
    assert!(Span::open(&path, 2 * MIB).is_ok());
    match Span::open(&junk, MIB) {
        Err(e) => assert!(matches!(e.kind(), SpanErrorKind::BadMagic)),
        Ok(_) => panic!("junk opened"),
    }
}

#[test]
fn span_concurrent_readers_only_ever_see_whole_values() {
    let dir = TempDir::new("concurrent");
    let span = Span::open(&dir.join("s"), MIB).unwrap();
    let val = |k: usize, version: usize| value(&format!("<{k}:{version}>"), 2000 + k * 300);
    std::thread::scope(|s| {
        let span = &span;
        s.spawn(move || {
            for version in 0..60 {
                for k in 0..20 {
                    span.put(&format!("k{k}"), &val(k, version)).unwrap();
                }
            }
        });
        for _ in 0..2 {
            s.spawn(move || {
                for round in 0..3000 {
                    let k = round % 20;
                    if let Some(got) = span.get(&format!("k{k}")) {
                        // Whole means: one version's tag, repeated to that key's length.
                        let tag_end = got.iter().position(|&b| b == b'>').unwrap();
                        let tag = std::str::from_utf8(&got[..=tag_end]).unwrap();
                        assert!(tag.starts_with(&format!("<{k}:")), "k{k}: {tag}");
                        assert!(got == value(tag, 2000 + k * 300), "k{k}: mixed bytes");
                    }
                }
            });
        }
    });
    assert!(span.bytes_used() <= span.capacity());
}

#[test]
fn ram_cache_evicts_least_recently_used_within_its_byte_bound() {
    let ram = RamCache::new(100);
    let v = |n: usize| -> Arc<[u8]> { vec![b'x'; n].into() };
    ram.put("a", v(40));
    ram.put("b", v(40));
    assert_eq!(ram.bytes(), 80);
    assert!(ram.get("a").is_some()); // "b" is now the least recently used
    ram.put("c", v(40));
    assert!(ram.get("b").is_none());
    assert!(ram.get("a").is_some() && ram.get("c").is_some());
    assert_eq!((ram.len(), ram.bytes()), (2, 80));
    // "a" was used after "c"; a 70-byte value needs both gone.
    ram.put("d", v(70));
    assert_eq!((ram.len(), ram.bytes()), (1, 70));
    ram.put("e", v(30));
    assert_eq!(ram.bytes(), 100);
    // Too large for the cache: not stored, and the older "e" must not linger either.
    ram.put("e", v(101));
    assert!(ram.get("e").is_none());
    assert_eq!(ram.bytes(), 70);
    ram.remove("d");
    assert!(ram.is_empty());
    assert_eq!(ram.bytes(), 0);
    // Replacing a value keeps the byte count exact.
    ram.put("r", v(10));
    ram.put("r", v(25));
    assert_eq!((ram.len(), ram.bytes()), (1, 25));

    // Eviction order over many entries: strictly oldest first.
    let ram = RamCache::new(1000);
    for i in 0..100 {
        ram.put(&i.to_string(), v(10));
    }
    ram.get("0");
    ram.put("new", v(20));
    assert!(ram.get("0").is_some());
    assert!(ram.get("1").is_none() && ram.get("2").is_none());
    assert!(ram.get("3").is_some());
    assert!(ram.bytes() <= 1000);
}

#[test]
fn ram_cache_promote_loses_to_a_concurrent_put_or_remove() {
    let ram = RamCache::new(1000);
    let seen = ram.clock();
    ram.put("k", Arc::from(&b"new"[..]));
    assert!(!ram.promote("k", Arc::from(&b"old"[..]), seen));
    assert_eq!(ram.get("k").as_deref(), Some(&b"new"[..]));
    let seen = ram.clock();
    ram.remove("k");
    assert!(!ram.promote("k", Arc::from(&b"old"[..]), seen));
    assert!(ram.get("k").is_none());
    let seen = ram.clock();
    assert!(ram.promote("k", Arc::from(&b"disk"[..]), seen));
    assert_eq!(ram.get("k").as_deref(), Some(&b"disk"[..]));
}

fn spans(dir: &TempDir, names: &[&str]) -> Vec<(PathBuf, u64)> {
    names.iter().map(|n| (dir.join(n), 2 * MIB)).collect()
}

#[test]
fn cache_with_two_spans_serves_from_ram_and_after_restart_from_disk() {
    let dir = TempDir::new("cache2");
    let config = spans(&dir, &["a", "b"]);
    {
        let (cache, status) = Cache::open(&config, MIB);
        assert!(status.iter().all(|s| s.result == Ok((0, 0))), "{status:?}");
        assert_eq!(cache.spans_online(), 2);
        for i in 0..200 {
            cache.put(&format!("http://h/{i}"), &value(&format!("{i}."), 1000));
        }
        cache.remove("http://h/7");
        for i in (0..200).filter(|&i| i != 7) {
            assert_eq!(
                cache.get(&format!("http://h/{i}")).as_deref(),
                Some(&value(&format!("{i}."), 1000)[..])
            );
        }
        cache.sync().unwrap(); // the writes are queued on the spans' I/O threads
        let stats = cache.span_stats();
        assert_eq!(stats.iter().map(|s| s.1).sum::<usize>(), 199);
        assert!(stats.iter().all(|s| s.1 > 50), "keys spread: {stats:?}");
        assert_eq!(stats[0].0, dir.join("a"));
        cache.sync().unwrap();
    }
    let (cache, status) = Cache::open(&config, MIB);
    let found: usize = status.iter().map(|s| s.result.as_ref().unwrap().0).sum();
    assert_eq!(found, 199);
    assert_eq!(cache.ram().len(), 0);
    assert_eq!(cache.get("http://h/7"), None);
    assert_eq!(
        cache.get("http://h/8").as_deref(),
        Some(&value("8.", 1000)[..])
    );
    assert_eq!(cache.ram().len(), 1, "the disk hit went to RAM");
}

#[test]
fn cache_reports_a_failed_span_and_runs_on_the_other() {
    let dir = TempDir::new("cachefail");
    fs::write(dir.join("plain"), b"a regular file").unwrap();
    let config = vec![
        (dir.join("plain/span"), 2 * MIB),
        (dir.join("good"), 2 * MIB),
    ];
    let (cache, status) = Cache::open(&config, MIB);
    assert_eq!(cache.spans_online(), 1);
    assert_eq!(status.len(), 2);
    assert_eq!(status[0].path, dir.join("plain/span"));
    let reason = status[0].result.as_ref().unwrap_err().to_string();
    assert!(reason.starts_with("cannot open: "), "{reason}");
    assert_eq!(status[1].result, Ok((0, 0)));
    cache.put("k", b"v");
    cache.sync().unwrap();
    assert_eq!(cache.span_stats()[0].1, 1);
    assert_eq!(cache.get("k").as_deref(), Some(&b"v"[..]));
}

#[test]
fn cache_with_zero_spans_is_ram_only() {
    let t = Instant::now();
    let (cache, status) = Cache::open(&[], 1000);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(status.is_empty());
    assert_eq!(cache.spans_online(), 0);
    cache.put("k", b"v");
    assert_eq!(cache.get("k").as_deref(), Some(&b"v"[..]));
    cache.remove("k");
    assert_eq!(cache.get("k"), None);
    cache.put("big", &[0u8; 1001]);
    assert_eq!(cache.get("big"), None);
}

#[test]
fn cache_put_too_large_for_disk_drops_the_older_disk_value() {
    let dir = TempDir::new("cachebig");
    let config = spans(&dir, &["only"]);
    let (cache, _) = Cache::open(&config, 8 * MIB);
    assert!(cache.put("k", b"old"));
    assert!(cache.put("k", &vec![9u8; 3 * MIB as usize]), "held in RAM");
    assert_eq!(cache.get("k").map(|v| v.len()), Some(3 * MIB as usize));
    drop(cache);
    let (cache, _) = Cache::open(&config, 8 * MIB);
    assert_eq!(cache.get("k"), None, "the old value must not come back");
}

#[test]
fn cache_put_is_false_when_neither_the_span_nor_ram_holds_the_value() {
    let dir = TempDir::new("cachenowhere");
    let config = spans(&dir, &["only"]);
    let (cache, _) = Cache::open(&config, 0);
    assert!(cache.put("k", b"old"));
    assert!(
        !cache.put("k", &vec![9u8; 3 * MIB as usize]),
        "too large a record"
    );
    let long = "x".repeat(4097);
    assert!(!cache.put(&long, b"v"), "too long a key");
    cache.sync().unwrap();
    assert_eq!(cache.get("k"), None, "the old value is gone");
    assert_eq!(cache.get(&long), None);
    assert_eq!(cache.span_stats()[0].1, 0);
    // RAM only, without spans: what RAM holds.
    let (ram_only, _) = Cache::open(&[], 1000);
    assert!(ram_only.put(&long, &[1u8; 1000]));
    assert!(!ram_only.put(&long, &[1u8; 1001]));
    assert_eq!(ram_only.get(&long), None);
}

#[test]
fn lookup_answers_from_ram_at_once_and_reads_the_disk_on_the_span_io_thread() {
    let dir = TempDir::new("lookup");
    let config = spans(&dir, &["a"]);
    {
        let (cache, _) = Cache::open(&config, MIB);
        cache.put("on-disk", b"from disk");
        cache.sync().unwrap();
    }
    let (cache, _) = Cache::open(&config, MIB);
    // A key the span's index does not have, with no write queued: a miss at once.
    assert!(matches!(cache.lookup("absent"), Lookup::Done(None)));
    let (tx, rx) = mpsc::channel();
    let Lookup::Disk(read) = cache.lookup("on-disk") else {
        panic!("not a disk read");
    };
    read.then(move |v| {
        let name = std::thread::current().name().map(str::to_string);
        tx.send((v, name)).unwrap();
    });
    let (value, thread) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(value.as_deref(), Some(&b"from disk"[..]));
    assert_eq!(thread.as_deref(), Some("[CACHE I/O 0]"));
    // The disk hit is now in RAM: answered at once.
    match cache.lookup("on-disk") {
        Lookup::Done(v) => assert_eq!(v.as_deref(), Some(&b"from disk"[..])),
        Lookup::Disk(_) => panic!("not promoted to RAM"),
    }
    let (ram_only, _) = Cache::open(&[], MIB);
    assert!(matches!(ram_only.lookup("x"), Lookup::Done(None)));
}

#[test]
fn reads_queued_after_writes_see_them_when_ram_cannot_hold_the_values() {
    // RAM of 10 bytes keeps none of these values: every get goes to the disk, through
    // the span's queue, behind the writes queued before it.
    let dir = TempDir::new("order");
    let (cache, _) = Cache::open(&spans(&dir, &["a"]), 10);
    for round in 0..50 {
        let v = value(&format!("{round}."), 100);
        cache.put("k", &v);
        assert_eq!(cache.get("k").as_deref(), Some(&v[..]), "round {round}");
        if round % 10 == 9 {
            cache.remove("k");
            assert_eq!(cache.get("k"), None, "round {round}");
        }
    }
    assert_eq!(cache.ram().len(), 0);
}

#[test]
fn a_put_racing_a_disk_read_of_the_same_key_wins() {
    let dir = TempDir::new("race");
    let config = spans(&dir, &["a"]);
    for round in 0..20 {
        {
            let (cache, _) = Cache::open(&config, MIB);
            cache.put("k", b"old");
        }
        let (cache, _) = Cache::open(&config, MIB);
        let (tx, rx) = mpsc::channel();
        let Lookup::Disk(read) = cache.lookup("k") else {
            panic!("not a disk read");
        };
        read.then(move |v| tx.send(v).unwrap());
        cache.put("k", b"new"); // while (or before, or after) the read runs
        let _ = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            cache.get("k").as_deref(),
            Some(&b"new"[..]),
            "round {round}"
        );
    }
}

#[test]
fn open_async_calls_done_on_the_cache_init_thread() {
    let dir = TempDir::new("async");
    let (tx, rx) = mpsc::channel();
    let handle = open_async(spans(&dir, &["a"]), MIB, move |cache, status| {
        let name = std::thread::current().name().map(str::to_string);
        let _ = tx.send((cache, status, name));
    })
    .unwrap();
    let (cache, status, name): (Arc<Cache>, Vec<SpanStatus>, _) =
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
    handle.join().unwrap();
    assert_eq!(name.as_deref(), Some("[CACHE INIT]"));
    assert_eq!(status.len(), 1);
    assert!(status[0].result.is_ok());
    assert_eq!(cache.spans_online(), 1);
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture to see the time"]
fn span_init_time_for_100k_small_objects() {
    let dir = TempDir::new("bench");
    let path = dir.join("s");
    let size = 64 * MIB;
    let n = 100_000;
    {
        let span = Span::open(&path, size).unwrap();
        for i in 0..n {
            span.put(&format!("http://www.example.com/objects/{i}"), &[b'x'; 200])
                .unwrap();
        }
        span.sync().unwrap();
    }
    let t = Instant::now();
    let span = Span::open(&path, size).unwrap();
    let elapsed = t.elapsed();
    assert_eq!(span.len(), n);
    eprintln!(
        "span init: {n} objects ({} bytes used) in a {} MiB span: {:?}",
        span.bytes_used(),
        size / MIB,
        elapsed
    );
    // Each hit reads its record and checks the CRC before returning it.
    let t = Instant::now();
    for i in 0..n {
        let v = span.get(&format!("http://www.example.com/objects/{i}"));
        assert_eq!(v.map(|v| v.len()), Some(200));
    }
    let elapsed = t.elapsed();
    eprintln!(
        "span hits: {n} gets of 200-byte objects: {elapsed:?} ({:?} each)",
        elapsed / n as u32
    );
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture to see the time"]
fn span_init_and_hits_for_1mib_objects() {
    let dir = TempDir::new("bench-large");
    let path = dir.join("s");
    let size = 80 * MIB;
    let n = 64;
    let body = value("0123456789abcdef", MIB as usize);
    {
        let span = Span::open(&path, size).unwrap();
        for i in 0..n {
            span.put(&format!("http://www.example.com/large/{i}"), &body)
                .unwrap();
        }
        span.sync().unwrap();
    }
    let t = Instant::now();
    let span = Span::open(&path, size).unwrap();
    let elapsed = t.elapsed();
    assert_eq!(span.len(), n);
    eprintln!(
        "span init: {n} objects of 1 MiB in a {} MiB span: {elapsed:?}",
        size / MIB
    );
    // The file is in the page cache by now, so this is mostly the CRC and one copy.
    let rounds = 10;
    let t = Instant::now();
    for _ in 0..rounds {
        for i in 0..n {
            let v = span.get(&format!("http://www.example.com/large/{i}"));
            assert_eq!(v.map(|v| v.len()), Some(MIB as usize));
        }
    }
    let elapsed = t.elapsed();
    let gets = (rounds * n) as u32;
    eprintln!(
        "span hits: {gets} gets of 1 MiB objects: {elapsed:?} ({:?} each, {:.0} MiB/s)",
        elapsed / gets,
        gets as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn span_epoch_survives_a_restart_and_a_header_without_one_reads_as_0() {
    let dir = TempDir::new("epoch");
    let path = dir.join("s");
    {
        let mut span = Span::open(&path, MIB).unwrap();
        assert_eq!(span.epoch(), 0);
        span.put("k", b"v").unwrap();
        span.set_epoch(7).unwrap();
        span.sync().unwrap();
    }
    let mut span = Span::open(&path, MIB).unwrap();
    assert_eq!(
        (span.epoch(), span.get("k").as_deref()),
        (7, Some(&b"v"[..]))
    );
    span.clear(8).unwrap();
    assert_eq!((span.len(), span.get("k")), (0, None));
    span.put("after", b"a").unwrap();
    span.sync().unwrap();
    drop(span);
    let span = Span::open(&path, MIB).unwrap();
    assert_eq!(span.epoch(), 8);
    assert_eq!(
        span.keys(),
        vec![Arc::<str>::from("after")],
        "cleared for good"
    );
    drop(span);
    // An earlier build's header: the bytes after the first checksum are zero.
    overwrite(&path, 44, &[0u8; 12]);
    let span = Span::open(&path, MIB).unwrap();
    assert_eq!((span.epoch(), span.len()), (0, 1));
}

/// Holds `path` as another process would (its `flock`), so that a cache opening it
/// finds it unavailable.
fn hold(path: &Path) -> Span {
    Span::open(path, 2 * MIB).unwrap()
}

/// Those of `keys`, stored with every span of `config` there, that live on the span at
/// `path`: some, not all.
fn keys_on(config: &[(PathBuf, u64)], path: &Path, keys: &[String]) -> Vec<String> {
    let span = hold(path);
    let on: Vec<String> = keys.iter().filter(|k| span.contains(k)).cloned().collect();
    assert!(!on.is_empty() && on.len() < keys.len(), "{config:?}");
    on
}

#[test]
fn a_span_back_after_a_start_without_it_serves_nothing_purged_or_replaced_meanwhile() {
    let dir = TempDir::new("span-back");
    let config = spans(&dir, &["a", "b"]);
    let keys: Vec<String> = (0..60).map(|i| format!("http://h/{i}")).collect();
    {
        let (cache, _) = Cache::open(&config, MIB);
        for k in &keys {
            cache.put(k, b"v1");
        }
        cache.sync().unwrap();
    }
    let moved = keys_on(&config, &dir.join("a"), &keys);
    let (purged, replaced) = moved.split_at(moved.len() / 2);
    {
        // A start without span a: its keys move to b, where they change.
        let held = hold(&dir.join("a"));
        let (cache, status) = Cache::open(&config, MIB);
        assert!(status[0].result.is_err() && cache.spans_online() == 1);
        moved.iter().for_each(|k| assert_eq!(cache.get(k), None));
        for k in &moved {
            cache.put(k, b"v2");
        }
        purged.iter().for_each(|k| cache.remove(k));
        cache.sync().unwrap();
        drop(held);
    }
    {
        // Back: what a held is older than what the cache said meanwhile.
        let (cache, status) = Cache::open(&config, MIB);
        for k in &moved {
            assert_eq!(cache.get(k), None, "{k}: neither v1 back nor v2 from b");
        }
        assert_eq!(status[0].result, Ok((0, 0)), "span a emptied");
        for k in keys.iter().filter(|k| !moved.contains(k)) {
            assert_eq!(cache.get(k).as_deref(), Some(&b"v1"[..]), "{k} kept on b");
        }
        for k in replaced {
            cache.put(k, b"v3");
        }
        cache.sync().unwrap();
    }
    // Without a again: b's copies of its keys (v2) were removed when a came back.
    let held = hold(&dir.join("a"));
    let (cache, _) = Cache::open(&config, MIB);
    for k in &moved {
        assert_eq!(cache.get(k), None, "{k}: b's v2 must not come back");
    }
    for k in keys.iter().filter(|k| !moved.contains(k)) {
        assert_eq!(cache.get(k).as_deref(), Some(&b"v1"[..]), "{k} kept on b");
    }
    drop(held);
}

#[test]
fn spans_present_throughout_keep_every_object_and_their_epoch() {
    let dir = TempDir::new("span-throughout");
    let config = spans(&dir, &["a", "b"]);
    let keys: Vec<String> = (0..40).map(|i| format!("http://h/{i}")).collect();
    for round in 0..3 {
        let (cache, status) = Cache::open(&config, MIB);
        let found: usize = status.iter().map(|s| s.result.as_ref().unwrap().0).sum();
        assert_eq!(found, if round == 0 { 0 } else { keys.len() });
        if round == 0 {
            for k in &keys {
                cache.put(k, b"v");
            }
        }
        cache.sync().unwrap();
    }
    for name in ["a", "b"] {
        assert_eq!(hold(&dir.join(name)).epoch(), 0, "no header written");
    }
    // Span b alone keeps its own objects through a start without a, and after it.
    let on_b = keys_on(&config, &dir.join("b"), &keys);
    {
        let held = hold(&dir.join("a"));
        let (cache, status) = Cache::open(&config, MIB);
        assert_eq!(status[1].result.as_ref().unwrap().0, on_b.len());
        on_b.iter()
            .for_each(|k| assert!(cache.get(k).is_some(), "{k}"));
        drop(held);
    }
    let (cache, _) = Cache::open(&config, MIB);
    on_b.iter()
        .for_each(|k| assert!(cache.get(k).is_some(), "{k}"));
}

#[test]
fn a_reattach_drops_what_changed_while_released_and_a_span_left_away_is_emptied_later() {
    let dir = TempDir::new("reattach");
    let config = spans(&dir, &["a", "b"]);
    let keys: Vec<String> = (0..60).map(|i| format!("http://h/{i}")).collect();
    let on_b = {
        let (cache, _) = Cache::open(&config, MIB);
        for k in &keys {
            cache.put(k, b"v1");
        }
        cache.sync().unwrap();
        drop(cache);
        keys_on(&config, &dir.join("b"), &keys)
    };
    let on_a: Vec<String> = keys.iter().filter(|k| !on_b.contains(k)).cloned().collect();
    {
        let (cache, _) = Cache::open(&config, MIB);
        assert_eq!(cache.release(), 2);
        // While released: changes go to RAM only.
        cache.put(&on_a[0], b"v2");
        cache.remove(&on_a[1]);
        cache.put(&on_b[0], b"v2");
        cache.remove(&on_b[1]);
        // Span b does not come back (another process holds it).
        let held = hold(&dir.join("b"));
        let status = cache.reattach();
        assert!(
            status[0].result.is_ok() && status[1].result.is_err(),
            "{status:?}"
        );
        drop(held);
        assert_eq!(cache.get(&on_a[0]).as_deref(), Some(&b"v2"[..]), "from RAM");
        // Meanwhile b's keys still change in RAM alone.
        cache.remove(&on_b[2]);
        cache.sync().unwrap();
    }
    let (cache, status) = Cache::open(&config, MIB);
    assert_eq!(cache.get(&on_a[0]), None, "v1 must not come back under v2");
    assert_eq!(
        cache.get(&on_a[1]),
        None,
        "the removal made while released holds"
    );
    assert_eq!(
        cache.get(&on_a[2]).as_deref(),
        Some(&b"v1"[..]),
        "unchanged: kept"
    );
    for k in &on_b[..3] {
        assert_eq!(cache.get(k), None, "{k}");
    }
    assert_eq!(
        status[1].result,
        Ok((0, 0)),
        "span b emptied: it missed changes"
    );
}
