//! Micro-benches of the stats endpoint's bodies: one render of a typical registry (the
//! 62 metrics of a daemon with two ports and two cache spans) in each format, reading
//! the registry included (for JSON and CSV its snapshot, which merges each histogram's
//! shards, takes most of the time).
//!
//! Run with `cargo bench --bench stats_render`; it takes about half a minute.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use iocore::stats::Registry;
use std::sync::Arc;
use turnstile::stats_http::{self, Format};

/// A registry holding what a daemon with ports 8080 and 8081 and two spans registers,
/// with values of realistic widths.
fn typical_registry() -> Arc<Registry> {
    let r = Registry::new();
    let mut v = 1u64;
    let mut next = || {
        v = v.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        v >> 40
    };
    for name in [
        "proxy.process.cache.disk_reads",
        "proxy.process.cache.hits",
        "proxy.process.cache.invalidations",
        "proxy.process.cache.misses",
        "proxy.process.cache.revalidated",
        "proxy.process.cache.writes",
        "proxy.process.hostdb.lookup_failures",
        "proxy.process.hostdb.total_lookups",
        "proxy.process.http.1xx_responses",
        "proxy.process.http.2xx_responses",
        "proxy.process.http.3xx_responses",
        "proxy.process.http.4xx_responses",
        "proxy.process.http.5xx_responses",
        "proxy.process.http.completed_requests",
        "proxy.process.http.connect_tunnels",
        "proxy.process.http.incoming_requests",
        "proxy.process.http.origin_connections_opened",
        "proxy.process.http.origin_connections_reused",
        "proxy.process.http.origin_queue_timeouts",
        "proxy.process.http.origin_requests_queued",
        "proxy.process.http.total_client_connections",
        "proxy.process.log.access_dropped",
        "proxy.process.net.accept_errors",
        "proxy.process.net.accept_pauses",
        "proxy.process.net.connections_throttled_in",
        "proxy.process.net.port.8080.total_accepts",
        "proxy.process.net.port.8081.total_accepts",
        "proxy.process.tcp.total_accepts",
        "proxy.process.tunnel.total_connections",
    ] {
        r.counter(name).add(next());
    }
    for name in [
        "proxy.process.cache.bytes_used",
        "proxy.process.cache.ram_cache.bytes_used",
        "proxy.process.cache.ram_cache.objects",
        "proxy.process.cache.span.0.bytes_used",
        "proxy.process.cache.span.0.capacity",
        "proxy.process.cache.span.0.objects",
        "proxy.process.cache.span.1.bytes_used",
        "proxy.process.cache.span.1.capacity",
        "proxy.process.cache.span.1.objects",
        "proxy.process.cache.spans_failed",
        "proxy.process.cache.spans_online",
        "proxy.process.cache.writes_shed",
        "proxy.process.exec_thread.count",
        "proxy.process.http.current_active_transactions",
        "proxy.process.http.current_client_connections",
        "proxy.process.http.current_origin_queue",
        "proxy.process.net.accepts_currently_open",
        "proxy.process.net.connections_currently_open",
        "proxy.process.net.port.8080.accept_threads",
        "proxy.process.net.port.8080.accepts_currently_open",
        "proxy.process.net.port.8081.accept_threads",
        "proxy.process.net.port.8081.accepts_currently_open",
        "proxy.process.proxy.cache_ready_time",
        "proxy.process.proxy.ports_ready",
    ] {
        r.gauge(name).set(next() as i64);
    }
    for name in [
        "proxy.process.http.accept_to_first_byte_us",
        "proxy.process.http.origin_queue_wait_us",
        "proxy.process.net.accept_queue_delay_us",
    ] {
        let h = r.histogram(name);
        for _ in 0..1000 {
            h.record(next() % 5000);
        }
    }
    r
}

fn render(c: &mut Criterion) {
    let registry = typical_registry();
    assert_eq!(registry.snapshot().len(), 62);
    let mut g = c.benchmark_group("stats_render");
    for (name, format) in [
        ("json", Format::Json),
        ("csv", Format::Csv),
        ("prometheus", Format::Prometheus),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                stats_http::render(
                    format,
                    black_box(&registry),
                    1_765_000_000_000,
                    "turnstile/0.1.0",
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
