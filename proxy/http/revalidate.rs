//! Writing objects into the cache with their variants ([`store`]), and the background
//! revalidations of `stale-while-revalidate` (RFC 5861 §3): a client is answered with
//! the stale object at once while one revalidation per URL runs here.
//!
//! Threads: [`Revalidator::spawn`] runs on the asking ET_NET thread and never blocks; the
//! revalidation itself runs on the revalidator's own thread, with blocking sockets and
//! the transaction timeouts, as name lookups run on resolver threads, so no event
//! thread ever waits for it. [`store`] runs on either.

use super::caching::{self, CachePolicy, Stored};
use super::codec::{self, BodyFraming, ChunkedScanner};
use crate::cache::{Cache, Lookup};
use crate::tls::TlsClient;
use rustls::pki_types::ServerName;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Stores `obj` at `key`, and a variant (`Vary`) also at its alternate key, where
/// requests with its values find it once another variant has taken `key`. A variant
/// joins its URL's variants so far; those beyond `max_alts` (0: no limit), the oldest,
/// are dropped. The list is the one `key` holds now when it is in RAM: stores of one URL
/// are serialized by its fill, but a request read the list at its lookup, which may
/// precede the previous fill's store (the variant stored then would be missing from
/// the list, and never dropped). `seen` is that earlier list (with its entity tags), for
/// when `key` is not in RAM. False when the cache stored it nowhere ([`Cache::put`]).
pub(crate) fn store(
    cache: &Cache,
    key: &str,
    obj: &mut Stored,
    seen: &Seen,
    max_alts: usize,
) -> bool {
    let varies = !obj.variant.is_empty() && max_alts > 0;
    let now = match varies.then(|| cache.lookup(key)) {
        Some(Lookup::Done(Some(bytes))) => Stored::decode_variants(&bytes)
            .filter(|(generation, ..)| *generation == obj.generation)
            .map(|(_, list, tags)| (list, tags)),
        _ => None,
    };
    let (list, tags) = now.as_ref().map_or((&seen.0, &seen.1), |(l, t)| (l, t));
    for old in obj.join(list, tags, max_alts) {
        cache.remove(&caching::alternate_key(key, obj.generation, &old));
    }
    let bytes = obj.encode();
    let alternate = obj
        .alternate_at(key)
        .is_none_or(|alternate| cache.put(&alternate, &bytes));
    cache.put(key, &bytes) && alternate
}

/// A URL's variants as one request saw them: their request sides and entity tags.
pub(crate) type Seen = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// One background revalidation.
pub(crate) struct Job {
    /// Where the request goes.
    pub(crate) addr: SocketAddr,
    /// The name `addr` is spoken to with over TLS, and the live TLS client settings
    /// (`https://` origins not behind a proxy parent).
    pub(crate) tls: Option<(ServerName<'static>, Arc<TlsClient>)>,
    /// The conditional request to send (a whole head, `Connection: close`).
    pub(crate) request: Vec<u8>,
    /// The request as the client sent it (for `Vary`).
    pub(crate) client_request: codec::RequestHead,
    /// The URL's key, and the stale object under revalidation.
    pub(crate) key: String,
    pub(crate) stale: Stored,
    /// The URL's variants the object joins.
    pub(crate) kept: Seen,
    /// What the cache obeys, and its limits.
    pub(crate) policy: CachePolicy,
    pub(crate) max_alts: usize,
    pub(crate) max_doc_size: u64,
    pub(crate) max_head: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    /// Whether the URL was invalidated since the revalidation began (an unsafe request
    /// changed it): then nothing is stored.
    pub(crate) invalidated: Box<dyn Fn() -> bool + Send>,
    /// The parent `addr` is, under a `[[parent]]` rule: its health learns the outcome.
    pub(crate) parent: Option<Box<super::parent::ParentRoute>>,
}

/// What became of a revalidation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 304: the stored object is fresh again.
    Refreshed,
    /// A new storable response replaced it.
    Replaced,
    /// Anything else (an error, something not storable): the stale object stays, and
    /// the next request past the window revalidates in the foreground.
    Failed,
}

/// The revalidation thread and the URLs it has in hand.
pub(crate) struct Revalidator {
    jobs: mpsc::Sender<(Job, Arc<Cache>)>,
    busy: Arc<Mutex<HashSet<String>>>,
}

impl Revalidator {
    /// Starts the revalidation thread; `done` runs there after each revalidation.
    pub(crate) fn new(done: impl Fn(Outcome) + Send + 'static) -> Revalidator {
        let (tx, rx) = mpsc::channel::<(Job, Arc<Cache>)>();
        let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
        let held = busy.clone();
        std::thread::Builder::new()
            .name("revalidate".into())
            .spawn(move || {
                for (job, cache) in rx {
                    let key = job.key.clone();
                    let outcome = run(job, &cache).unwrap_or(Outcome::Failed);
                    held.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                    done(outcome);
                }
            })
            .expect("spawn the revalidation thread");
        Revalidator { jobs: tx, busy }
    }

    /// Queues the job `make` builds for `key`, unless the URL is being revalidated
    /// already (however many clients ask, one revalidation runs): `make` is called only
    /// then, so that what it does (picking a parent, counted) is done once. true if
    /// queued; `make` may decline with None.
    pub(crate) fn spawn(
        &self,
        key: &str,
        cache: Arc<Cache>,
        make: impl FnOnce() -> Option<Job>,
    ) -> bool {
        let busy = || self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy().insert(key.to_string()) {
            return false;
        }
        let queued = make().is_some_and(|job| self.jobs.send((job, cache)).is_ok());
        if !queued {
            busy().remove(key);
        }
        queued
    }
}

/// Sends the conditional request and applies the answer. Runs on the revalidation
/// thread, blocking within the job's timeouts.
fn run(mut job: Job, cache: &Cache) -> Option<Outcome> {
    let request_time = caching::now_s();
    let head = exchange_head(&mut job);
    match (&job.parent, &head) {
        (Some(p), Some(_)) => p.succeeded(),
        (Some(p), None) => p.failed(),
        _ => {}
    }
    let (mut s, mut buf, head, len) = head?;
    store_answer(job, cache, &mut *s, &mut buf, head, len, request_time)
}

/// A blocking connection to an origin or parent: a socket, or TLS over one.
trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

/// A connection, what was read, and the response head and its length.
type Answer = (Box<dyn Wire>, Vec<u8>, codec::ResponseHead, usize);

/// Connects, sends the request and reads the final response head; None if any of it
/// failed (the parent, if any, is then counted as failing). Over TLS, a close without
/// `close_notify` is an error here as everywhere (a body cut short is never stored).
fn exchange_head(job: &mut Job) -> Option<Answer> {
    let tcp = TcpStream::connect_timeout(&job.addr, job.connect_timeout).ok()?;
    tcp.set_read_timeout(Some(job.io_timeout)).ok()?;
    tcp.set_write_timeout(Some(job.io_timeout)).ok()?;
    let mut s: Box<dyn Wire> = match &job.tls {
        Some((name, client)) => {
            let conn = client.connect(name).ok()?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    s.write_all(&job.request).ok()?;
    s.flush().ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (head, len) = loop {
        if let Some(parsed) = codec::parse_response(&buf, job.max_head).ok()? {
            if (100..200).contains(&parsed.0.status) {
                buf.drain(..parsed.1);
                continue;
            }
            break parsed;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    Some((s, buf, head, len))
}

/// Applies a revalidation's answer: a 304 refreshes the stale object, a storable
/// response replaces it (its body read here, within the limits), anything else leaves
/// it.
fn store_answer(
    mut job: Job,
    cache: &Cache,
    s: &mut dyn Wire,
    buf: &mut Vec<u8>,
    head: codec::ResponseHead,
    len: usize,
    request_time: u64,
) -> Option<Outcome> {
    let mut chunk = [0u8; 16 * 1024];
    buf.drain(..len);
    let now = caching::now_s();
    let d = caching::response_directives(&head, &job.policy.targeted);
    let kept = caching::storable(
        &job.client_request,
        &head,
        &d,
        &job.policy,
        request_time,
        now,
    );
    if head.status == 304 {
        // RFC 9111 §4.3.4: one naming a representation other than the stale one (or
        // changing its `Vary`) updates nothing; it fails like an error, and the request
        // past the window that revalidates in the foreground fetches what the origin
        // has.
        if !job.stale.selected_by(&head) {
            return None;
        }
        let kept = kept.or_else(|| {
            // A 304 without freshness of its own keeps the stored lifetime.
            Some(caching::Storable {
                lifetime: job.stale.lifetime,
                initial_age: caching::initial_age(&head, request_time, now),
                must_revalidate: job.stale.must_revalidate,
                no_cache: job.stale.no_cache,
                immutable: job.stale.immutable,
                swr: job.stale.swr,
                sie: job.stale.sie,
                strip: Vec::new(),
            })
        })?;
        if (job.invalidated)() {
            return None;
        }
        job.stale.refresh(&head, &kept, now);
        store(cache, &job.key, &mut job.stale, &job.kept, job.max_alts);
        return Some(Outcome::Refreshed);
    }
    let kept = kept?;
    let variant = caching::variant(&head, &job.client_request)?;
    let framing = head.body(codec::Method::Other);
    let mut body = Vec::new();
    let mut scanner = ChunkedScanner::new();
    let mut left = match framing {
        BodyFraming::Length(n) if n > job.max_doc_size => return None,
        BodyFraming::Length(n) => n,
        BodyFraming::None => 0,
        BodyFraming::Chunked | BodyFraming::UntilClose => u64::MAX,
    };
    loop {
        match framing {
            BodyFraming::Chunked => {
                let r = scanner.decode(buf, &mut body).ok()?;
                buf.drain(..r.consumed);
                if r.done {
                    break;
                }
            }
            _ => {
                let k = (left.min(buf.len() as u64)) as usize;
                body.extend_from_slice(&buf[..k]);
                buf.drain(..k);
                left -= k as u64;
                if left == 0 {
                    break;
                }
            }
        }
        if body.len() as u64 > job.max_doc_size {
            return None;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            if framing == BodyFraming::UntilClose {
                break;
            }
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if (job.invalidated)() {
        return None;
    }
    let mut obj = Stored::new(&head, body, &kept, now, variant);
    if !obj.variant.is_empty() {
        obj.generation = match job.stale.generation {
            0 => caching::new_generation(),
            g => g,
        };
    }
    store(cache, &job.key, &mut obj, &job.kept, job.max_alts);
    Some(Outcome::Replaced)
}
