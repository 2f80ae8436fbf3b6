//! The HTTP metrics of SPEC §6 (and more), registered once; every thread counts into
//! them.

use iocore::stats::{Counter, Gauge, Histogram};
use iocore::Registry;
use std::sync::Arc;

/// HTTP metrics of SPEC §6.
pub(crate) struct HttpMetrics {
    pub(crate) current_client_connections: Arc<Gauge>,
    pub(crate) total_client_connections: Arc<Counter>,
    pub(crate) incoming_requests: Arc<Counter>,
    pub(crate) completed_requests: Arc<Counter>,
    pub(crate) active_transactions: Arc<Gauge>,
    pub(crate) by_class: [Arc<Counter>; 5],
    pub(crate) origin_connections_opened: Arc<Counter>,
    pub(crate) origin_connections_reused: Arc<Counter>,
    pub(crate) tunnels: Arc<Counter>,
    pub(crate) cache_hits: Arc<Counter>,
    pub(crate) cache_misses: Arc<Counter>,
    pub(crate) cache_disk_reads: Arc<Counter>,
    pub(crate) cache_writes: Arc<Counter>,
    pub(crate) cache_revalidated: Arc<Counter>,
    /// Bytes of responses being stored that their clients have not taken yet, held
    /// beyond the clients' buffers so that a fill goes at the origin's pace (the budget
    /// for it, `cache.fill_read_ahead`).
    pub(crate) fill_read_ahead: Arc<Gauge>,
    /// Times a fill found that budget spent and went at its client's pace.
    pub(crate) fill_read_ahead_refused: Arc<Counter>,
    /// Responses read on from their origins and stored after their clients left.
    pub(crate) background_fills: Arc<Counter>,
    /// Such background fills under way now.
    pub(crate) current_background_fills: Arc<Gauge>,
    /// Objects removed because an unsafe request (PUT, POST, DELETE, …) to their URL
    /// got a non-error answer.
    pub(crate) cache_invalidations: Arc<Counter>,
    /// Requests that waited for a place under `per_server.connection.max`.
    pub(crate) origin_queued: Arc<Counter>,
    /// Requests waiting for one now.
    pub(crate) origin_queue: Arc<Gauge>,
    /// Requests that waited `connect_attempts_timeout` for one in vain (503).
    pub(crate) origin_queue_timeouts: Arc<Counter>,
    /// How long each queued request waited: until it got a place, or gave up (µs).
    pub(crate) origin_queue_wait_us: Arc<Histogram>,
    /// CONNECT tunnels established (answered 200).
    pub(crate) connect_tunnels: Arc<Counter>,
    /// Origin names looked up, and lookups failed.
    pub(crate) hostdb: super::super::resolve::ResolverStats,
    /// Access log lines dropped because the writer fell behind.
    pub(crate) access_dropped: Arc<Counter>,
    /// Accept to the first response byte written, per client connection (µs).
    pub(crate) first_byte_us: Arc<Histogram>,
    /// Hits answered fresh (or stale as the client allowed) without the origin.
    pub(crate) cache_hit_fresh: Arc<Counter>,
    /// Stale objects served: within stale-while-revalidate, for stale-if-error, and
    /// within a client's max-stale.
    pub(crate) cache_stale_swr: Arc<Counter>,
    pub(crate) cache_stale_sie: Arc<Counter>,
    pub(crate) cache_stale_accepted: Arc<Counter>,
    /// Background revalidations started, and those that refreshed or replaced the object.
    pub(crate) revalidations_background: Arc<Counter>,
    pub(crate) revalidated_in_background: Arc<Counter>,
    /// 304s and 206s (and 416s, 412s) answered from the cache to clients' conditional and
    /// range requests.
    pub(crate) cache_not_modified: Arc<Counter>,
    pub(crate) cache_partial: Arc<Counter>,
    /// PURGE requests that removed an object, and those that found none.
    pub(crate) purges: Arc<Counter>,
    pub(crate) purge_misses: Arc<Counter>,
    /// Times a session still making progress after the drive loop's bound yielded to
    /// the other events of its thread (see `session::DRIVE_TURNS`).
    pub(crate) drive_yields: Arc<Counter>,
    /// Sends that left in an end-of-batch io_uring submission (`net.send_batch`), and
    /// the submissions.
    pub(crate) batched_sends: Arc<Counter>,
    pub(crate) send_batches: Arc<Counter>,
    /// `pp` ports: PROXY headers accepted; connections closed for a missing or bad
    /// header; connections closed because their peer is off `proxy_protocol_allowlist`.
    pub(crate) pp_accepted: Arc<Counter>,
    pub(crate) pp_malformed: Arc<Counter>,
    pub(crate) pp_refused: Arc<Counter>,
    /// Requests answered 508 because their `Via` held this proxy's token.
    pub(crate) loops_detected: Arc<Counter>,
    /// Requests moved to another parent after theirs failed before a response byte.
    pub(crate) parent_failovers: Arc<Counter>,
    /// Requests under a `[[parent]]` rule that went to their origin (`go_direct`).
    pub(crate) parent_direct: Arc<Counter>,
    /// TLS handshakes, failures and times (SPEC §9).
    pub(crate) tls: Arc<crate::tls::TlsMetrics>,
}

impl HttpMetrics {
    pub(crate) fn new(r: &Registry) -> HttpMetrics {
        let p = "proxy.process.http";
        HttpMetrics {
            current_client_connections: r.gauge(&format!("{p}.current_client_connections")),
            total_client_connections: r.counter(&format!("{p}.total_client_connections")),
            incoming_requests: r.counter(&format!("{p}.incoming_requests")),
            completed_requests: r.counter(&format!("{p}.completed_requests")),
            active_transactions: r.gauge(&format!("{p}.current_active_transactions")),
            by_class: [1, 2, 3, 4, 5].map(|c| r.counter(&format!("{p}.{c}xx_responses"))),
            origin_connections_opened: r.counter(&format!("{p}.origin_connections_opened")),
            origin_connections_reused: r.counter(&format!("{p}.origin_connections_reused")),
            tunnels: r.counter("proxy.process.tunnel.total_connections"),
            cache_hits: r.counter("proxy.process.cache.hits"),
            cache_misses: r.counter("proxy.process.cache.misses"),
            cache_disk_reads: r.counter("proxy.process.cache.disk_reads"),
            first_byte_us: r.histogram(&format!("{p}.accept_to_first_byte_us")),
            cache_writes: r.counter("proxy.process.cache.writes"),
            cache_revalidated: r.counter("proxy.process.cache.revalidated"),
            fill_read_ahead: r.gauge("proxy.process.cache.fill_read_ahead_bytes"),
            fill_read_ahead_refused: r.counter("proxy.process.cache.fill_read_ahead_refused"),
            cache_invalidations: r.counter("proxy.process.cache.invalidations"),
            background_fills: r.counter(&format!("{p}.background_fills")),
            current_background_fills: r.gauge(&format!("{p}.current_background_fills")),
            origin_queued: r.counter(&format!("{p}.origin_requests_queued")),
            origin_queue: r.gauge(&format!("{p}.current_origin_queue")),
            origin_queue_timeouts: r.counter(&format!("{p}.origin_queue_timeouts")),
            origin_queue_wait_us: r.histogram(&format!("{p}.origin_queue_wait_us")),
            connect_tunnels: r.counter(&format!("{p}.connect_tunnels")),
            drive_yields: r.counter(&format!("{p}.session_drive_yields")),
            batched_sends: r.counter(&format!("{p}.batched_sends")),
            send_batches: r.counter(&format!("{p}.send_batches")),
            cache_hit_fresh: r.counter(&format!("{p}.cache_hit_fresh")),
            cache_stale_swr: r.counter(&format!("{p}.cache_hit_stale_while_revalidate")),
            cache_stale_sie: r.counter(&format!("{p}.cache_hit_stale_if_error")),
            cache_stale_accepted: r.counter(&format!("{p}.cache_hit_stale_max_stale")),
            revalidations_background: r.counter(&format!("{p}.cache_revalidations_background")),
            revalidated_in_background: r.counter(&format!("{p}.cache_revalidated_background")),
            cache_not_modified: r.counter(&format!("{p}.cache_hit_not_modified")),
            cache_partial: r.counter(&format!("{p}.cache_hit_partial")),
            purges: r.counter("proxy.process.cache.purges"),
            purge_misses: r.counter("proxy.process.cache.purge_misses"),
            hostdb: super::super::resolve::ResolverStats {
                lookups: r.counter("proxy.process.hostdb.total_lookups"),
                failures: r.counter("proxy.process.hostdb.lookup_failures"),
            },
            access_dropped: r.counter("proxy.process.log.access_dropped"),
            pp_accepted: r.counter(&format!("{p}.proxy_protocol.accepted")),
            pp_malformed: r.counter(&format!("{p}.proxy_protocol.malformed")),
            pp_refused: r.counter(&format!("{p}.proxy_protocol.refused")),
            loops_detected: r.counter(&format!("{p}.loops_detected")),
            parent_failovers: r.counter(&format!("{p}.parent_failovers")),
            parent_direct: r.counter(&format!("{p}.parent_direct")),
            tls: crate::tls::TlsMetrics::new(r),
        }
    }

    pub(crate) fn count_status(&self, status: u16) {
        if let Some(c) = self.by_class.get((status / 100).wrapping_sub(1) as usize) {
            c.inc();
        }
    }
}
