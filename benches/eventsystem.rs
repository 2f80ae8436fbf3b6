//! Micro-benches of the event system and the stats primitives on the accept path.
//!
//! - `schedule_imm/cross_thread_batch1000`: a non-ET thread schedules events on an ET_NET
//!   thread through its `ThreadRef` in batches of 1000 and waits until all have run; the
//!   time reported is per event (queue push, wake-up amortised over the batch, dispatch).
//! - `schedule_imm/cross_thread_single`: the same with batches of one: the full round
//!   trip of one event, including the eventfd wake-up of a sleeping thread.
//! - `schedule_imm/on_thread_chain`: an event that schedules its successor with
//!   `EThread::schedule_imm` from inside its callback; per link of the chain.
//! - `stats/*`: `Counter::inc`, `Gauge::add` and `Histogram::record`, uncontended.
//! - `handoff/*`: the two hand-off designs the event system could use, queue operations
//!   only (two consumer threads that poll and yield, no eventfd wake-ups): a
//!   crossbeam-deque `Injector` per thread, the producer choosing the thread (what
//!   `ThreadRef` does), against one global `Injector` that consumers take batches from
//!   into their own `Worker` and steal from each other's. Per job, boxed closures like
//!   the event system's jobs.
//! - `syscall/getppid`: the cheapest system call, its entry and exit only: what batching
//!   a loop turn's recv/send calls into one submission (io_uring) could save per call.
//! - `syscall/accept4_empty` against `syscall/tcp_info_queue_len`: an accept4 on a
//!   non-blocking listener whose queue is empty (EAGAIN, after the kernel allocated and
//!   freed a socket for it), and the TCP_INFO read an accept batch makes instead to
//!   learn the queue's length.
//!
//! Run with `cargo bench --bench eventsystem`; the whole file takes well under a minute.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use iocore::stats::Registry;
use iocore::{EThread, Event, EventProcessor, EventProcessorOptions, ThreadRef};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events per batch in the cross-thread batch bench.
const BATCH: u64 = 1000;

/// Spins (yielding, since the ET thread may need this core) until `counter` reaches
/// `target`. Panics after 30 s: a lost event would otherwise hang the bench.
fn wait_for(counter: &AtomicU64, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut spins = 0u32;
    while counter.load(Ordering::Acquire) < target {
        spins = spins.wrapping_add(1);
        if spins & 63 == 0 {
            assert!(
                Instant::now() < deadline,
                "events lost: {} of {target} ran",
                counter.load(Ordering::Acquire)
            );
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Schedules `iters` counting events on `thread` in batches of `batch`, waiting for each
/// batch to run before sending the next. Returns the total time.
fn cross_thread(thread: &ThreadRef, ran: &Arc<AtomicU64>, iters: u64, batch: u64) -> Duration {
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let n = left.min(batch);
        let target = ran.load(Ordering::Acquire) + n;
        for _ in 0..n {
            let ran = ran.clone();
            thread.schedule_imm(Event::new(move |_| {
                ran.fetch_add(1, Ordering::Release);
            }));
        }
        wait_for(ran, target);
        left -= n;
    }
    start.elapsed()
}

/// One link of a self-rescheduling chain: runs `left` more links on this thread, then
/// bumps `done`.
fn chain(t: &mut EThread, left: u64, done: Arc<AtomicU64>) {
    if left == 0 {
        done.fetch_add(1, Ordering::Release);
        return;
    }
    t.schedule_imm(Event::new(move |t| chain(t, left - 1, done.clone())));
}

fn bench_schedule(c: &mut Criterion) {
    let events = EventProcessor::start(&EventProcessorOptions {
        threads: 1,
        pin_cores: false,
        name: "ET_BENCH".into(),
    })
    .expect("start an event thread");
    let thread = events.threads()[0].clone();
    let ran = Arc::new(AtomicU64::new(0));

    let mut g = c.benchmark_group("schedule_imm");
    g.bench_function("cross_thread_batch1000", |b| {
        b.iter_custom(|iters| cross_thread(&thread, &ran, iters, BATCH))
    });
    g.bench_function("cross_thread_single", |b| {
        b.iter_custom(|iters| cross_thread(&thread, &ran, iters, 1))
    });
    g.bench_function("on_thread_chain", |b| {
        b.iter_custom(|iters| {
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let d = done.clone();
            // One hop onto the thread, then `iters` on-thread schedules.
            thread.run(move |t| chain(t, iters, d));
            wait_for(&done, 1);
            start.elapsed()
        })
    });
    g.finish();
    events.shutdown();
}

fn bench_stats(c: &mut Criterion) {
    let registry = Registry::new();
    let counter = registry.counter("bench.counter");
    let gauge = registry.gauge("bench.gauge");
    let histogram = registry.histogram("bench.latency_us");

    let mut g = c.benchmark_group("stats");
    g.bench_function("counter_inc", |b| b.iter(|| counter.inc()));
    g.bench_function("gauge_add", |b| b.iter(|| gauge.add(black_box(1))));
    let mut v = 0u64;
    g.bench_function("histogram_record", |b| {
        b.iter(|| {
            // Values spread over 1 µs .. ~4 ms, like accept-queue delays.
            v = (v + 7919) & 0xfff;
            histogram.record(black_box(v + 1));
        })
    });
    g.finish();
    black_box((counter.get(), gauge.get(), histogram.summary()));
}

type Job = Box<dyn FnOnce() + Send>;

/// Two consumer threads over one hand-off design; `push` hands one job over.
struct Handoff {
    ran: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    push: Box<dyn FnMut(Job)>,
}

impl Handoff {
    fn per_thread() -> Handoff {
        use crossbeam_deque::{Injector, Steal};
        let queues: Vec<Arc<Injector<Job>>> = (0..2).map(|_| Arc::new(Injector::new())).collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = queues
            .iter()
            .map(|q| {
                let (q, stop) = (q.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match q.steal() {
                            Steal::Success(job) => job(),
                            Steal::Retry => {}
                            Steal::Empty => std::thread::yield_now(),
                        }
                    }
                })
            })
            .collect();
        let mut next = 0;
        Handoff {
            ran: Arc::new(AtomicU64::new(0)),
            stop,
            threads,
            push: Box::new(move |job| {
                next ^= 1;
                queues[next].push(job);
            }),
        }
    }

    fn global() -> Handoff {
        use crossbeam_deque::{Injector, Steal, Worker};
        let global = Arc::new(Injector::<Job>::new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<Worker<Job>> = (0..2).map(|_| Worker::new_fifo()).collect();
        let stealers: Arc<Vec<_>> = Arc::new(workers.iter().map(Worker::stealer).collect());
        let threads = workers
            .into_iter()
            .enumerate()
            .map(|(i, local)| {
                let (global, stealers, stop) = (global.clone(), stealers.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let job = local.pop().or_else(|| loop {
                            let s = global
                                .steal_batch_and_pop(&local)
                                .or_else(|| stealers[1 - i].steal());
                            match s {
                                Steal::Success(j) => break Some(j),
                                Steal::Retry => {}
                                Steal::Empty => break None,
                            }
                        });
                        match job {
                            Some(job) => job(),
                            None => std::thread::yield_now(),
                        }
                    }
                })
            })
            .collect();
        Handoff {
            ran: Arc::new(AtomicU64::new(0)),
            stop,
            threads,
            push: Box::new(move |job| global.push(job)),
        }
    }

    /// Hands `iters` counting jobs over in batches of `BATCH`; returns the total time.
    fn run(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        let mut left = iters;
        while left > 0 {
            let n = left.min(BATCH);
            let target = self.ran.load(Ordering::Acquire) + n;
            for _ in 0..n {
                let ran = self.ran.clone();
                (self.push)(Box::new(move || {
                    ran.fetch_add(1, Ordering::Release);
                }));
            }
            wait_for(&self.ran, target);
            left -= n;
        }
        start.elapsed()
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn bench_handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    let mut per_thread = Handoff::per_thread();
    g.bench_function("injector_per_thread", |b| {
        b.iter_custom(|iters| per_thread.run(iters))
    });
    drop(per_thread);
    let mut global = Handoff::global();
    g.bench_function("global_injector_stealing", |b| {
        b.iter_custom(|iters| global.run(iters))
    });
    drop(global);
    g.finish();
}

fn bench_syscall(c: &mut Criterion) {
    let mut g = c.benchmark_group("syscall");
    g.bench_function("getppid", |b| {
        // SAFETY: getppid takes no arguments and cannot fail.
        b.iter(|| black_box(unsafe { libc::syscall(libc::SYS_getppid) }))
    });
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("non-blocking");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&l);
    g.bench_function("accept4_empty", |b| {
        b.iter(|| {
            // SAFETY: null address pointers ask for no peer address; nothing is accepted
            // (the queue is empty), so no descriptor is leaked.
            let r = unsafe {
                libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK,
                )
            };
            assert_eq!(r, -1);
        })
    });
    g.bench_function("tcp_info_queue_len", |b| {
        b.iter(|| {
            // SAFETY: tcp_info is plain old data, for which all-zero is a valid value.
            let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            // SAFETY: `info` and `len` are live locals describing a writable tcp_info.
            let r = unsafe {
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_INFO,
                    (&mut info as *mut libc::tcp_info).cast(),
                    &mut len,
                )
            };
            assert_eq!(r, 0);
            black_box(info.tcpi_unacked)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_schedule, bench_stats, bench_handoff, bench_syscall
}
criterion_main!(benches);
