//! The stats endpoint's formats: JSON (`{"global": {...}}`), CSV and Prometheus text 0.0.4.

use std::fmt::Write;

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

/// Renders `metrics` (name, value) in `format`. `now_ms` and `server` are the JSON extras.
pub fn render(format: Format, metrics: &[(String, i64)], now_ms: u128, server: &str) -> String {
    let mut out = String::with_capacity(64 * metrics.len() + 128);
    match format {
        Format::Json => {
            out.push_str("{\"global\": {");
            for (name, value) in metrics {
                let _ = write!(out, "\"{}\": {value}, ", json_escape(name));
            }
            let _ = writeln!(
                out,
                "\"current_time_epoch_ms\": {now_ms}, \"server\": \"{}\"}}}}",
                json_escape(server)
            );
        }
        Format::Csv => {
            for (name, value) in metrics {
                let _ = writeln!(out, "{name},{value}");
            }
        }
        Format::Prometheus => {
            for (name, value) in metrics {
                let n = prometheus_name(name);
                let kind = if is_counter(name) { "counter" } else { "gauge" };
                let _ = writeln!(out, "# TYPE {n} {kind}\n{n} {value}");
            }
        }
    }
    out
}

/// Counters are the cumulative `total_*`, `*_requests`, `*_responses`, hits, misses and
/// error/pause counts; everything else is a gauge.
fn is_counter(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.starts_with("total_")
        || last.ends_with("_requests")
        || last.ends_with("_responses")
        || matches!(
            last,
            "hits" | "misses" | "accept_errors" | "accept_pauses" | "connections_throttled_in"
        )
}

/// Prometheus metric names allow `[a-zA-Z_:][a-zA-Z0-9_:]*`: dots and anything else
/// become underscores, and a leading digit gets an underscore in front.
pub fn prometheus_name(name: &str) -> String {
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

fn json_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
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
    fn prometheus_lines_have_types_and_clean_names() {
        let m = vec![("proxy.process.net.port.8080.total_accepts".to_string(), 3)];
        let out = render(Format::Prometheus, &m, 0, "x");
        assert_eq!(out, "# TYPE proxy_process_net_port_8080_total_accepts counter\nproxy_process_net_port_8080_total_accepts 3\n");
    }

    #[test]
    fn json_has_global_time_and_server() {
        let m = vec![("a.b".to_string(), -1)];
        let out = render(Format::Json, &m, 5, "turnstile/0.1");
        assert_eq!(out, "{\"global\": {\"a.b\": -1, \"current_time_epoch_ms\": 5, \"server\": \"turnstile/0.1\"}}\n");
    }
}
