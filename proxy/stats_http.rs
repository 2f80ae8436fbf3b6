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
            "" => Some(accept.map_or(Format::Json, Format::negotiate)),
            "/json" => Some(Format::Json),
            "/csv" => Some(Format::Csv),
            "/prometheus" => Some(Format::Prometheus),
            _ => None,
        }
    }

    /// The format an Accept header prefers (RFC 9110 §12.5.1): each format takes the
    /// weight of the most specific media range that matches it (`text/plain` only with
    /// `version=0.0.4`, Prometheus's), the heaviest wins, a tie goes to the range listed
    /// first, and JSON when nothing is acceptable.
    fn negotiate(accept: &[u8]) -> Format {
        let accept = String::from_utf8_lossy(accept).to_ascii_lowercase();
        // Per format: (specificity, q, position) of its best match so far.
        let mut best = [None::<(u8, u32, usize)>; 3];
        for (position, range) in accept.split(',').enumerate() {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let mut q = 1000;
            let mut version = None;
            for param in parts {
                match param.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                    Some(("q", v)) => q = qvalue(v),
                    Some(("version", v)) => version = Some(v.trim_matches('"')),
                    _ => {}
                }
            }
            for (i, format) in [Format::Json, Format::Csv, Format::Prometheus]
                .into_iter()
                .enumerate()
            {
                let (kind, sub) = match format {
                    Format::Json => ("application", "json"),
                    Format::Csv => ("text", "csv"),
                    Format::Prometheus => ("text", "plain"),
                };
                let specificity = match media.split_once('/') {
                    Some(("*", "*")) => 1,
                    Some((k, "*")) if k == kind => 2,
                    Some((k, s)) if k == kind && s == sub => {
                        if format == Format::Prometheus && version != Some("0.0.4") {
                            continue;
                        }
                        3
                    }
                    _ => continue,
                };
                if best[i].is_none_or(|(s, _, _)| specificity > s) {
                    best[i] = Some((specificity, q, position));
                }
            }
        }
        let mut pick = (Format::Json, 0, usize::MAX);
        for (i, format) in [Format::Json, Format::Csv, Format::Prometheus]
            .into_iter()
            .enumerate()
        {
            if let Some((_, q, position)) = best[i] {
                if q > pick.1 || (q == pick.1 && q > 0 && position < pick.2) {
                    pick = (format, q, position);
                }
            }
        }
        pick.0
    }
}

/// A qvalue (RFC 9110 §12.4.2) in thousandths; what does not parse counts as 1.
fn qvalue(v: &str) -> u32 {
    match v.parse::<f64>() {
        Ok(q) if (0.0..=1.0).contains(&q) => (q * 1000.0).round() as u32,
        _ => 1000,
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
    fn accept_weights_choose_and_zero_refuses() {
        let pick = |a: &str| Format::select("", Some(a.as_bytes())).unwrap();
        assert_eq!(pick("text/csv;q=0, application/json"), Format::Json);
        assert_eq!(pick("application/json, text/csv;q=0.1"), Format::Json);
        assert_eq!(pick("text/csv, application/json"), Format::Csv);
        assert_eq!(pick("application/json;q=0.5, text/csv"), Format::Csv);
        assert_eq!(pick("text/plain"), Format::Json);
        assert_eq!(pick("*/*"), Format::Json);
        assert_eq!(pick("text/*, application/json;q=0.9"), Format::Csv);
        assert_eq!(pick("text/*;q=0, */*"), Format::Json);
        // A specific range overrides a wildcard: csv refused, text/* does not bring it back.
        assert_eq!(
            pick("text/csv;q=0, text/*;q=0.8, application/json;q=0.5"),
            Format::Prometheus
        );
        // What Prometheus sends when it scrapes.
        assert_eq!(
            pick("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
            Format::Prometheus
        );
        assert_eq!(pick("application/json;q=0"), Format::Json);
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
