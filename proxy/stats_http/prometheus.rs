//! The stats endpoint in the Prometheus text format 0.0.4, written so that `promtool
//! check metrics` has nothing to say (SPEC §6).
//!
//! Names are the ATS ones with dots as underscores, changed only where Prometheus's
//! conventions require it:
//! - every family has `# HELP` (a one-line description, then the ATS name it comes
//!   from) and `# TYPE`, the kind the metric was registered as;
//! - counters end in `_total`: `proxy_process_tcp_total_accepts_total`;
//! - metrics kept per port or per span are one family with a label:
//!   `proxy.process.net.port.8080.total_accepts` is
//!   `proxy_process_net_port_total_accepts_total{port="8080"}`,
//!   `proxy.process.cache.span.0.objects` is `proxy_process_cache_span_objects{span="0"}`;
//! - a latency histogram (`NAME_us.p50/.p99/.max` in JSON and CSV) is a summary in
//!   seconds, the base unit: `NAME_seconds{quantile="0.5"}`, `{quantile="0.99"}`, and
//!   the maximum as `{quantile="1"}` (the 1-quantile is the maximum, as in Go's
//!   `go_gc_duration_seconds`), then `NAME_seconds_count`. There is no `_sum`: the
//!   registry's histograms keep none;
//! - a gauge whose name ends in a suffix Prometheus reserves for summaries and
//!   histograms is renamed ([`RENAMED`]).
//!
//! Families come out sorted by name, each with all its samples together.

use iocore::stats::{Metric, Registry};
use std::collections::BTreeMap;
use std::fmt::{self, Display, Write};

/// Metrics kept per instance, `PREFIX<ID>.<NAME>`: one family `PREFIX<NAME>` with the ID
/// as the value of the label. The ID runs to the next dot, or, where the third field
/// says so, to the name's last dot: a parent's `host:port` ID may hold dots, and the
/// metric's own name (one word) follows it. Checked in order.
const LABELLED: &[(&str, &str, bool)] = &[
    ("proxy.process.http.parent.", "parent", true),
    ("proxy.process.net.port.", "port", false),
    ("proxy.process.cache.span.", "span", false),
    ("proxy.process.ssl.failure.", "reason", false),
];

/// Histogram name suffixes that state a time unit, and what divides a value in that unit
/// to make seconds.
const TIME_UNITS: &[(&str, f64)] = &[("_us", 1e6), ("_ms", 1e3), ("_ns", 1e9)];

/// Gauges whose Prometheus name would end in `_count`, `_sum` or `_bucket`, which only
/// summaries and histograms may use, and the names they get instead.
const RENAMED: &[(&str, &str)] = &[(
    "proxy.process.exec_thread.count",
    "proxy_process_exec_threads",
)];

/// A one-line description per family, by ATS name without the instance part
/// (`proxy.process.net.port.total_accepts`). A metric missing here still gets a HELP
/// line, naming its kind.
const HELP: &[(&str, &str)] = &[
    (
        "proxy.process.cache.purges",
        "PURGE requests that removed a cached URL",
    ),
    (
        "proxy.process.cache.purge_misses",
        "PURGE requests for a URL that was not cached",
    ),
    (
        "proxy.process.http.background_fills",
        "Responses read on from their origins and stored after their clients left",
    ),
    (
        "proxy.process.http.current_background_fills",
        "Background fills under way: responses being stored whose clients left",
    ),
    (
        "proxy.process.http.batched_sends",
        "Sends of a batch of events that left in one io_uring submission (net.send_batch)",
    ),
    (
        "proxy.process.http.cache_hit_fresh",
        "Requests answered from the cache with a fresh object",
    ),
    (
        "proxy.process.http.cache_hit_stale_while_revalidate",
        "Stale objects served within stale-while-revalidate while a background revalidation ran",
    ),
    (
        "proxy.process.http.cache_hit_stale_if_error",
        "Stale objects served in place of an origin error (stale-if-error)",
    ),
    (
        "proxy.process.http.cache_hit_stale_max_stale",
        "Stale objects served because the client's max-stale accepted them",
    ),
    (
        "proxy.process.http.cache_revalidations_background",
        "Background revalidations started for stale-while-revalidate",
    ),
    (
        "proxy.process.http.cache_revalidated_background",
        "Background revalidations that refreshed or replaced the stored object",
    ),
    (
        "proxy.process.http.cache_hit_not_modified",
        "Conditional requests answered from the cache with 304 (or 412)",
    ),
    (
        "proxy.process.http.cache_hit_partial",
        "Range requests answered from the cache with 206 (or 416)",
    ),
    (
        "proxy.process.http.parent.connect_failures",
        "Connects to the parent that failed (refused, reset or timed out before a response byte)",
    ),
    (
        "proxy.process.http.parent.marked_down",
        "Times the parent was marked down after fail_threshold connect failures in a row",
    ),
    (
        "proxy.process.http.parent.requests",
        "Requests sent to the parent (each try counts)",
    ),
    (
        "proxy.process.http.parent.up",
        "1 while the parent is up, 0 while it is marked down",
    ),
    (
        "proxy.process.http.parent_direct",
        "Requests under a parent rule that went to their origin because no parent could take them (go_direct)",
    ),
    (
        "proxy.process.http.parent_failovers",
        "Requests moved to the next parent after theirs failed before a response byte",
    ),
    (
        "proxy.process.http.loops_detected",
        "Requests answered 508 because their Via already held this proxy's instance token",
    ),
    (
        "proxy.process.http.proxy_protocol.accepted",
        "PROXY protocol headers accepted on pp ports",
    ),
    (
        "proxy.process.http.proxy_protocol.malformed",
        "Connections to pp ports closed for a missing, incomplete or invalid PROXY header",
    ),
    (
        "proxy.process.http.proxy_protocol.refused",
        "Connections to pp ports closed because their peer is off proxy_protocol_allowlist",
    ),
    (
        "proxy.process.cache.bytes_used",
        "Bytes of the cache spans taken by live objects, records rounded up to 512 bytes",
    ),
    (
        "proxy.process.cache.disk_reads",
        "Cache lookups answered by reading a span on its I/O thread",
    ),
    (
        "proxy.process.cache.fill_read_ahead_bytes",
        "Bytes of responses being stored held ahead of their clients, so that fills go at the origin's pace",
    ),
    (
        "proxy.process.cache.fill_read_ahead_refused",
        "Times a fill found the read-ahead budget spent and went at its client's pace",
    ),
    (
        "proxy.process.cache.hits",
        "Requests answered from the cache",
    ),
    (
        "proxy.process.cache.invalidations",
        "Cached objects removed because an unsafe request to their URL got a non-error answer",
    ),
    (
        "proxy.process.cache.misses",
        "Cacheable requests the cache could not answer",
    ),
    (
        "proxy.process.cache.ram_cache.bytes_used",
        "Bytes held by the RAM cache",
    ),
    (
        "proxy.process.cache.ram_cache.objects",
        "Objects held by the RAM cache",
    ),
    (
        "proxy.process.cache.revalidated",
        "Stale cached objects the origin confirmed as still valid",
    ),
    (
        "proxy.process.cache.span.bytes_used",
        "Bytes of the span taken by live objects, records rounded up to 512 bytes",
    ),
    (
        "proxy.process.cache.span.capacity",
        "Bytes of the span's data region",
    ),
    (
        "proxy.process.cache.span.objects",
        "Objects held by the span",
    ),
    (
        "proxy.process.cache.spans_failed",
        "Configured cache spans that could not be opened",
    ),
    ("proxy.process.cache.spans_online", "Cache spans in use"),
    ("proxy.process.cache.writes", "Objects stored in the cache"),
    (
        "proxy.process.cache.writes_shed",
        "Cache writes kept in RAM only because too many disk writes were queued",
    ),
    (
        "proxy.process.eventsystem.poll_errors",
        "Failed epoll waits and eventfd reads or writes (each thread logs its first)",
    ),
    ("proxy.process.exec_thread.count", "ET_NET event threads"),
    (
        "proxy.process.hostdb.lookup_failures",
        "Origin host name lookups that failed",
    ),
    (
        "proxy.process.hostdb.total_lookups",
        "Origin host name lookups",
    ),
    (
        "proxy.process.http.1xx_responses",
        "Responses with a 1xx status sent to clients",
    ),
    (
        "proxy.process.http.2xx_responses",
        "Responses with a 2xx status sent to clients",
    ),
    (
        "proxy.process.http.3xx_responses",
        "Responses with a 3xx status sent to clients",
    ),
    (
        "proxy.process.http.4xx_responses",
        "Responses with a 4xx status sent to clients",
    ),
    (
        "proxy.process.http.5xx_responses",
        "Responses with a 5xx status sent to clients",
    ),
    (
        "proxy.process.http.accept_to_first_byte_us",
        "Time from accept() to the first response byte written on a client connection",
    ),
    (
        "proxy.process.http.completed_requests",
        "Client requests answered in full",
    ),
    (
        "proxy.process.http.connect_tunnels",
        "CONNECT tunnels established",
    ),
    (
        "proxy.process.http.current_active_transactions",
        "Client requests being answered now",
    ),
    (
        "proxy.process.http.current_client_connections",
        "Client connections open in HTTP sessions now",
    ),
    (
        "proxy.process.http.current_origin_queue",
        "Requests waiting now for an origin connection under per_server.connection.max",
    ),
    (
        "proxy.process.http.incoming_requests",
        "Client requests received",
    ),
    (
        "proxy.process.http.origin_connections_opened",
        "Connections opened to origins (connects that completed)",
    ),
    (
        "proxy.process.http.origin_connections_reused",
        "Origin requests sent on a pooled keep-alive connection",
    ),
    (
        "proxy.process.http.origin_queue_timeouts",
        "Requests that waited for an origin connection in vain and got a 503",
    ),
    (
        "proxy.process.http.origin_queue_wait_us",
        "Time requests waited for an origin connection under per_server.connection.max",
    ),
    (
        "proxy.process.http.origin_requests_queued",
        "Requests that waited for an origin connection under per_server.connection.max",
    ),
    (
        "proxy.process.http.send_batches",
        "io_uring submissions of a batch's sends (net.send_batch)",
    ),
    (
        "proxy.process.http.session_drive_yields",
        "Times a session still moving bytes yielded to the other events of its thread",
    ),
    (
        "proxy.process.http.total_client_connections",
        "Client connections taken up by HTTP sessions",
    ),
    (
        "proxy.process.log.access_dropped",
        "Access log lines dropped because the log writer fell behind or the file refused them (a full disk)",
    ),
    (
        "proxy.process.net.accept_errors",
        "accept() calls that failed",
    ),
    (
        "proxy.process.net.accept_pauses",
        "Pauses in accepting: after a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM), or on reaching connections_throttle in pause mode",
    ),
    (
        "proxy.process.net.accept_queue_delay_us",
        "Time from accept() returning to the connection's handler starting on its ET_NET thread",
    ),
    (
        "proxy.process.net.accepts_currently_open",
        "Acceptors running over all ports",
    ),
    (
        "proxy.process.net.connections_currently_open",
        "Client connections open now",
    ),
    (
        "proxy.process.net.connections_throttled_in",
        "Accepted connections closed at once because net.connections_throttle was reached",
    ),
    (
        "proxy.process.net.port.accept_threads",
        "Dedicated accept threads of the port",
    ),
    (
        "proxy.process.net.port.accepts_currently_open",
        "Acceptors running on the port",
    ),
    (
        "proxy.process.net.port.total_accepts",
        "Connections accepted on the port",
    ),
    (
        "proxy.process.proxy.cache_ready_time",
        "Unix time in seconds at which cache initialisation ended; 0 before",
    ),
    (
        "proxy.process.proxy.ports_ready",
        "1 once every configured port accepts connections",
    ),
    (
        "proxy.process.ssl.certificate_reload_failures",
        "Reloads refused because a certificate or key file was missing or bad",
    ),
    (
        "proxy.process.ssl.certificate_reloads",
        "Reloads that loaded the ssl_multicert certificates and swapped them in",
    ),
    (
        "proxy.process.ssl.certificates_loaded",
        "Certificates of ssl_multicert loaded now",
    ),
    (
        "proxy.process.ssl.failure.handshakes_in",
        "TLS handshakes on ssl ports closed for this reason (plain_http, bad_client_hello, oversized, no_certificate, incompatible, alert, renegotiation, eof, timeout, other)",
    ),
    (
        "proxy.process.ssl.failure.handshakes_out",
        "TLS handshakes with https origins that failed for this reason (bad_server_hello, oversized, incompatible, alert, eof, timeout, other)",
    ),
    (
        "proxy.process.ssl.handshake_time_us",
        "Time from a client's first TLS byte to the end of its handshake",
    ),
    (
        "proxy.process.ssl.origin_server_bad_cert",
        "Origin certificates that did not verify (refused under ENFORCED, logged under PERMISSIVE)",
    ),
    (
        "proxy.process.ssl.total_attempts_handshake_count_in",
        "TLS handshakes begun by clients on ssl ports",
    ),
    (
        "proxy.process.ssl.total_attempts_handshake_count_out",
        "TLS handshakes begun with https origins",
    ),
    (
        "proxy.process.ssl.total_handshake_failures_in",
        "TLS handshakes on ssl ports that failed, for any reason",
    ),
    (
        "proxy.process.ssl.total_handshake_failures_out",
        "TLS handshakes with https origins that failed",
    ),
    (
        "proxy.process.ssl.total_resumed_handshake_count_in",
        "TLS handshakes on ssl ports that resumed a session (ticket or session ID)",
    ),
    (
        "proxy.process.ssl.total_success_handshake_count_in",
        "TLS handshakes on ssl ports completed",
    ),
    (
        "proxy.process.ssl.total_success_handshake_count_out",
        "TLS handshakes with https origins completed",
    ),
    (
        "proxy.process.ssl.user_agent_sessions",
        "Client connections open on ssl ports",
    ),
    (
        "proxy.process.tcp.total_accepts",
        "Connections accepted over all ports",
    ),
    (
        "proxy.process.tunnel.total_connections",
        "Connections relayed by blind tunnel ports",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    fn of(metric: &Metric) -> Kind {
        match metric {
            Metric::Counter(_) => Kind::Counter,
            Metric::Gauge(_) => Kind::Gauge,
            Metric::Histogram(_) => Kind::Summary,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        }
    }
}

/// The instance part of a per-port or per-span metric's name.
#[derive(Clone, Copy)]
struct Instance<'a> {
    label: &'static str,
    id: &'a str,
    /// Length of the name's prefix before the ID (`proxy.process.net.port.`).
    prefix_len: usize,
}

/// One family: its header and its sample lines so far.
struct Family {
    kind: Kind,
    help: String,
    samples: String,
}

/// Every metric of `registry` in the text format 0.0.4.
pub(super) fn render(registry: &Registry) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for (name, metric) in registry.metrics() {
        let (family, instance) = split_instance(&name);
        let kind = Kind::of(&metric);
        let (prom, divisor) = family_name(&family, kind);
        let f = families.entry(prom.clone()).or_insert_with(|| Family {
            kind,
            help: help(&family, instance, kind, divisor != 1.0),
            samples: String::new(),
        });
        if f.kind != kind {
            debug_assert!(false, "{name} is a {kind:?} in a family of {:?}", f.kind);
            continue;
        }
        let out = &mut f.samples;
        match metric {
            Metric::Counter(c) => sample(out, &prom, instance, None, c.get()),
            Metric::Gauge(g) => sample(out, &prom, instance, None, g.get()),
            Metric::Histogram(h) => {
                let (p50, p99, max, count) = h.summary();
                // Dividing by an exact power of ten keeps 45 µs as 0.000045, not
                // 0.000044999999999999996 as multiplying by 1e-6 would.
                for (q, v) in [("0.5", p50), ("0.99", p99), ("1", max)] {
                    sample(out, &prom, instance, Some(q), v as f64 / divisor);
                }
                sample(out, &format!("{prom}_count"), instance, None, count);
            }
        }
    }
    let mut out = String::with_capacity(families.len() * 256);
    for (name, f) in &families {
        let _ = write!(
            out,
            "# HELP {name} {}\n# TYPE {name} {}\n{}",
            f.help,
            f.kind.as_str(),
            f.samples
        );
    }
    out
}

/// The family's ATS name (the instance part removed) and the instance, if any.
fn split_instance(name: &str) -> (String, Option<Instance<'_>>) {
    for &(prefix, label, to_last_dot) in LABELLED {
        let Some(r) = name.strip_prefix(prefix) else {
            continue;
        };
        let split = if to_last_dot {
            r.rsplit_once('.')
        } else {
            r.split_once('.')
        };
        if let Some((id, rest)) = split {
            if !id.is_empty() && !rest.is_empty() {
                let instance = Instance {
                    label,
                    id,
                    prefix_len: prefix.len(),
                };
                return (format!("{prefix}{rest}"), Some(instance));
            }
        }
    }
    (name.to_string(), None)
}

/// The family's Prometheus name, and what divides its values to make seconds (1 when
/// they are not times).
fn family_name(family: &str, kind: Kind) -> (String, f64) {
    if let Some((_, to)) = RENAMED.iter().find(|(from, _)| *from == family) {
        return ((*to).to_string(), 1.0);
    }
    let mut n = prometheus_name(family);
    match kind {
        Kind::Counter if !n.ends_with("_total") => n.push_str("_total"),
        Kind::Summary => {
            for &(unit, divisor) in TIME_UNITS {
                if let Some(stem) = n.strip_suffix(unit) {
                    return (format!("{stem}_seconds"), divisor);
                }
            }
        }
        _ => {}
    }
    (n, 1.0)
}

/// Prometheus metric names allow `[a-zA-Z_:][a-zA-Z0-9_:]*`: dots and anything else
/// become underscores, and a leading digit gets an underscore in front.
fn prometheus_name(name: &str) -> String {
    let mut n: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if n.starts_with(|c: char| c.is_ascii_digit()) {
        n.insert(0, '_');
    }
    n
}

/// The HELP text: the description, then the ATS name the family comes from (with the
/// instance as `<port>` or `<span>`, and a summary's `.p50/.p99/.max`).
fn help(family: &str, instance: Option<Instance<'_>>, kind: Kind, in_seconds: bool) -> String {
    let mut ats = match instance {
        Some(i) => format!(
            "{}<{}>.{}",
            &family[..i.prefix_len],
            i.label,
            &family[i.prefix_len..]
        ),
        None => family.to_string(),
    };
    if kind == Kind::Summary {
        ats.push_str(".p50/.p99/.max");
    }
    let text = match HELP.iter().find(|(name, _)| *name == family) {
        Some((_, text)) if in_seconds => format!("{text}, in seconds ({ats})"),
        Some((_, text)) => format!("{text} ({ats})"),
        None => format!("Turnstile {} {ats}", kind.as_str()),
    };
    // HELP escapes only backslashes and line feeds.
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Appends the line `NAME{LABELS} VALUE`.
fn sample(
    out: &mut String,
    name: &str,
    instance: Option<Instance<'_>>,
    quantile: Option<&str>,
    value: impl Display,
) {
    out.push_str(name);
    if instance.is_some() || quantile.is_some() {
        out.push('{');
        if let Some(i) = instance {
            let _ = write!(out, "{}=\"{}\"", i.label, LabelValue(i.id));
            if quantile.is_some() {
                out.push(',');
            }
        }
        if let Some(q) = quantile {
            let _ = write!(out, "quantile=\"{q}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A label value with `\`, `"` and line feeds escaped.
struct LabelValue<'a>(&'a str);

impl Display for LabelValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_port_metrics_are_one_family_with_a_port_label() {
        let r = Registry::default();
        r.counter("proxy.process.net.port.8080.total_accepts")
            .add(3);
        r.counter("proxy.process.net.port.8081.total_accepts")
            .add(4);
        r.gauge("proxy.process.net.port.8080.accept_threads").set(2);
        r.gauge("proxy.process.net.port.8081.accept_threads").set(1);
        assert_eq!(
            render(&r),
            "# HELP proxy_process_net_port_accept_threads Dedicated accept threads of the port \
             (proxy.process.net.port.<port>.accept_threads)\n\
             # TYPE proxy_process_net_port_accept_threads gauge\n\
             proxy_process_net_port_accept_threads{port=\"8080\"} 2\n\
             proxy_process_net_port_accept_threads{port=\"8081\"} 1\n\
             # HELP proxy_process_net_port_total_accepts_total Connections accepted on the port \
             (proxy.process.net.port.<port>.total_accepts)\n\
             # TYPE proxy_process_net_port_total_accepts_total counter\n\
             proxy_process_net_port_total_accepts_total{port=\"8080\"} 3\n\
             proxy_process_net_port_total_accepts_total{port=\"8081\"} 4\n"
        );
    }

    #[test]
    fn per_span_metrics_get_a_span_label() {
        let r = Registry::default();
        r.gauge("proxy.process.cache.span.0.objects").set(5);
        r.gauge("proxy.process.cache.span.1.objects").set(6);
        r.gauge("proxy.process.cache.spans_online").set(2);
        let out = render(&r);
        assert!(out.contains(
            "# TYPE proxy_process_cache_span_objects gauge\n\
             proxy_process_cache_span_objects{span=\"0\"} 5\n\
             proxy_process_cache_span_objects{span=\"1\"} 6\n"
        ));
        assert!(out.contains("\nproxy_process_cache_spans_online 2\n"));
    }

    #[test]
    fn microsecond_histograms_are_summaries_in_seconds() {
        let r = Registry::default();
        let h = r.histogram("proxy.process.net.accept_queue_delay_us");
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(
            render(&r),
            "# HELP proxy_process_net_accept_queue_delay_seconds Time from accept() returning \
             to the connection's handler starting on its ET_NET thread, in seconds \
             (proxy.process.net.accept_queue_delay_us.p50/.p99/.max)\n\
             # TYPE proxy_process_net_accept_queue_delay_seconds summary\n\
             proxy_process_net_accept_queue_delay_seconds{quantile=\"0.5\"} 0.00005\n\
             proxy_process_net_accept_queue_delay_seconds{quantile=\"0.99\"} 0.000099\n\
             proxy_process_net_accept_queue_delay_seconds{quantile=\"1\"} 0.0001\n\
             proxy_process_net_accept_queue_delay_seconds_count 100\n"
        );
    }

    #[test]
    fn a_per_port_histogram_carries_both_labels() {
        let r = Registry::default();
        r.histogram("proxy.process.net.port.80.wait_ms").record(7);
        let out = render(&r);
        assert!(out.contains("# TYPE proxy_process_net_port_wait_seconds summary\n"));
        assert!(
            out.contains("proxy_process_net_port_wait_seconds{port=\"80\",quantile=\"1\"} 0.007\n")
        );
        assert!(out.contains("proxy_process_net_port_wait_seconds_count{port=\"80\"} 1\n"));
    }

    #[test]
    fn counters_end_in_total_and_reserved_gauge_names_are_renamed() {
        let r = Registry::default();
        r.counter("proxy.process.cache.hits").inc();
        r.counter("x.already_total").inc();
        r.gauge("proxy.process.exec_thread.count").set(4);
        let out = render(&r);
        assert!(out.contains("\nproxy_process_cache_hits_total 1\n"));
        assert!(out.contains("\nx_already_total 1\n"));
        assert!(out.contains(
            "# HELP proxy_process_exec_threads ET_NET event threads (proxy.process.exec_thread.count)\n\
             # TYPE proxy_process_exec_threads gauge\nproxy_process_exec_threads 4\n"
        ));
    }

    #[test]
    fn undescribed_metrics_still_get_help_and_odd_names_are_cleaned() {
        let r = Registry::default();
        r.gauge("9lives.a-b").set(-1);
        r.gauge("proxy.process.net.port.we\"ird\\.x").set(1);
        let out = render(&r);
        assert!(out.contains("# HELP _9lives_a_b Turnstile gauge 9lives.a-b\n"));
        assert!(out.contains("\n_9lives_a_b -1\n"));
        assert!(out.contains("proxy_process_net_port_x{port=\"we\\\"ird\\\\\"} 1\n"));
    }

    #[test]
    fn per_parent_metrics_get_a_parent_label_dots_and_all() {
        let r = Registry::default();
        r.counter("proxy.process.http.parent.127.0.0.1:8081.requests")
            .add(3);
        r.gauge("proxy.process.http.parent.cache.example.net:80.up")
            .set(1);
        r.counter("proxy.process.http.parent_failovers").inc();
        let out = render(&r);
        assert!(
            out.contains("proxy_process_http_parent_requests_total{parent=\"127.0.0.1:8081\"} 3\n")
        );
        assert!(out.contains("proxy_process_http_parent_up{parent=\"cache.example.net:80\"} 1\n"));
        assert!(out.contains("\nproxy_process_http_parent_failovers_total 1\n"));
        assert!(out.contains("# HELP proxy_process_http_parent_requests_total Requests sent"));
    }

    #[test]
    fn every_described_family_is_described_once() {
        let mut names: Vec<&str> = HELP.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HELP.len());
        assert!(HELP.iter().all(|(_, t)| !t.is_empty() && !t.contains('\n')));
    }
}
