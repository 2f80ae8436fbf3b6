//! The stats endpoint's formats: JSON (`{"global": {...}}`) and CSV with the ATS names,
//! and the Prometheus text format 0.0.4 ([`prometheus`]).

mod prometheus;

use iocore::stats::Registry;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::fmt::Write;
use std::io;

/// A response body format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `{"global": {"NAME": VALUE, ...}}`.
    Json,
    /// `name,value` lines.
    Csv,
    /// Prometheus text exposition format 0.0.4.
    Prometheus,
}

impl Format {
    /// The Content-Type header value.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv",
            Format::Prometheus => "text/plain; version=0.0.4",
        }
    }

    /// Picks the format from the path after the stats prefix (`""`, `/json`, `/csv`,
    /// `/prometheus`) and, for the bare prefix, the Accept header. None: not a stats URL.
    pub fn select(rest: &str, accept: Option<&[u8]>) -> Option<Format> {
        let rest = rest.split('?').next().unwrap_or("");
        match rest.trim_end_matches('/') {
            "" => {
                let accept = accept
                    .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                    .unwrap_or_default();
                if accept.contains("text/csv") {
                    Some(Format::Csv)
                } else if accept.contains("text/plain") && accept.contains("version=0.0.4") {
                    Some(Format::Prometheus)
                } else {
                    Some(Format::Json)
                }
            }
            "/json" => Some(Format::Json),
            "/csv" => Some(Format::Csv),
            "/prometheus" => Some(Format::Prometheus),
            _ => None,
        }
    }
}

/// Renders every metric of `registry` in `format`. `now_ms` and `server` are the JSON
/// extras.
pub fn render(format: Format, registry: &Registry, now_ms: u128, server: &str) -> String {
    match format {
        Format::Json => render_json(&registry.snapshot(), now_ms, server),
        Format::Csv => render_csv(&registry.snapshot()),
        Format::Prometheus => prometheus::render(registry),
    }
}

/// `name,value` lines.
fn render_csv(metrics: &[(String, i64)]) -> String {
    let mut out = String::with_capacity(64 * metrics.len());
    for (name, value) in metrics {
        let _ = writeln!(out, "{name},{value}");
    }
    out
}

/// `{"global": {"NAME": VALUE, ..., "current_time_epoch_ms": N, "server": "..."}}` and a
/// line feed. The extras sit inside `global`, where ATS's stats_over_http puts them.
fn render_json(metrics: &[(String, i64)], now_ms: u128, server: &str) -> String {
    struct Global<'a> {
        metrics: &'a [(String, i64)],
        now_ms: u128,
        server: &'a str,
    }
    impl Serialize for Global<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.metrics.len() + 2))?;
            for (name, value) in self.metrics {
                map.serialize_entry(name, value)?;
            }
            map.serialize_entry("current_time_epoch_ms", &self.now_ms)?;
            map.serialize_entry("server", self.server)?;
            map.end()
        }
    }
    #[derive(Serialize)]
    struct Body<'a> {
        global: Global<'a>,
    }

    let body = Body {
        global: Global {
            metrics,
            now_ms,
            server,
        },
    };
    let mut out = Vec::with_capacity(64 * metrics.len() + 128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, SpacedFormatter);
    body.serialize(&mut ser)
        .expect("serialising numbers and strings to memory cannot fail");
    out.push(b'\n');
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Compact JSON with a space after each `:` and `,` between members, as ATS's
/// stats_over_http writes it and this endpoint always has: `{"global": {"NAME": 1, ...}}`.
struct SpacedFormatter;

impl serde_json::ser::Formatter for SpacedFormatter {
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_by_path_then_accept() {
        assert_eq!(Format::select("", None), Some(Format::Json));
        assert_eq!(Format::select("/csv", None), Some(Format::Csv));
        assert_eq!(
            Format::select("/prometheus", None),
            Some(Format::Prometheus)
        );
        assert_eq!(Format::select("", Some(b"text/csv")), Some(Format::Csv));
        assert_eq!(
            Format::select("", Some(b"text/plain; version=0.0.4")),
            Some(Format::Prometheus)
        );
        assert_eq!(Format::select("/nope", None), None);
    }

    #[test]
    fn prometheus_lines_have_help_types_and_clean_names() {
        let r = Registry::default();
        r.counter("proxy.process.net.port.8080.total_accepts")
            .add(3);
        let out = render(Format::Prometheus, &r, 0, "x");
        assert_eq!(
            out,
            "# HELP proxy_process_net_port_total_accepts_total Connections accepted on the port \
             (proxy.process.net.port.<port>.total_accepts)\n\
             # TYPE proxy_process_net_port_total_accepts_total counter\n\
             proxy_process_net_port_total_accepts_total{port=\"8080\"} 3\n"
        );
    }

    #[test]
    fn json_and_csv_keep_the_ats_names() {
        let r = Registry::default();
        r.counter("proxy.process.net.port.8080.total_accepts")
            .add(3);
        r.histogram("proxy.process.net.accept_queue_delay_us")
            .record(7);
        assert_eq!(
            render(Format::Csv, &r, 0, "x"),
            "proxy.process.net.accept_queue_delay_us.max,7\n\
             proxy.process.net.accept_queue_delay_us.p50,7\n\
             proxy.process.net.accept_queue_delay_us.p99,7\n\
             proxy.process.net.port.8080.total_accepts,3\n"
        );
        assert_eq!(
            render(Format::Json, &r, 5, "turnstile/0.1"),
            "{\"global\": {\"proxy.process.net.accept_queue_delay_us.max\": 7, \
             \"proxy.process.net.accept_queue_delay_us.p50\": 7, \
             \"proxy.process.net.accept_queue_delay_us.p99\": 7, \
             \"proxy.process.net.port.8080.total_accepts\": 3, \
             \"current_time_epoch_ms\": 5, \"server\": \"turnstile/0.1\"}}\n"
        );
    }

    #[test]
    fn json_has_global_time_and_server() {
        let m = vec![("a.b".to_string(), -1)];
        let out = render_json(&m, 5, "turnstile/0.1");
        assert_eq!(out, "{\"global\": {\"a.b\": -1, \"current_time_epoch_ms\": 5, \"server\": \"turnstile/0.1\"}}\n");
    }

    #[test]
    fn json_escapes_what_it_must_and_parses_back() {
        let m = vec![
            ("proxy.process.a".to_string(), i64::MIN),
            ("we\"ird\\name\n\u{1}".to_string(), i64::MAX),
        ];
        let out = render_json(&m, u128::from(u64::MAX) + 1, "turnstile \"x\"");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let global = v["global"].as_object().unwrap();
        assert_eq!(global.len(), 4);
        assert_eq!(global["proxy.process.a"], i64::MIN);
        assert_eq!(global["we\"ird\\name\n\u{1}"], i64::MAX);
        assert_eq!(global["server"], "turnstile \"x\"");
        assert!(out.contains("\"current_time_epoch_ms\": 18446744073709551616, "));
        let empty = render_json(&[], 0, "s");
        assert_eq!(
            empty,
            "{\"global\": {\"current_time_epoch_ms\": 0, \"server\": \"s\"}}\n"
        );
    }
}
