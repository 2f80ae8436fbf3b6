//! The stats endpoint of SPEC §6: formats, negotiation, headers, access control, and a
//! Prometheus form that promtool accepts.

mod util;

use std::time::Duration;
use util::http::{self, Conn};
use util::origin::{ok, Origin};
use util::{run, wait_until, Daemon, TempDir};

fn get_with(addr: std::net::SocketAddr, path: &str, accept: Option<&str>) -> http::Response {
    let mut c = Conn::open(addr).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{accept}\r\n").as_bytes())
        .unwrap();
    c.read_response("GET").unwrap()
}

#[test]
fn check_refuses_a_stats_path_ending_with_a_slash_naming_the_record() {
    let dir = TempDir::new("stats-path");
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, "[proxy.config.stats]\npath = \"/_stats/\"\n").unwrap();
    let (code, _, err) = run(&dir.0, &["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml:2: proxy.config.stats.path: expected a path not ending with \"/\""),
        "{err}"
    );
    let (code, _, err) = run(&dir.0, &["check"], &[("PROXY_CONFIG_STATS_PATH", "/")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "PROXY_CONFIG_STATS_PATH: proxy.config.stats.path: expected a path not ending"
        ),
        "{err}"
    );
}

const REQUIRED: &[&str] = &[
    "proxy.process.net.accepts_currently_open",
    "proxy.process.net.connections_currently_open",
    "proxy.process.tcp.total_accepts",
    "proxy.process.net.connections_throttled_in",
    "proxy.process.net.accept_errors",
    "proxy.process.net.accept_pauses",
    "proxy.process.net.accept_queue_delay_us.p50",
    "proxy.process.net.accept_queue_delay_us.p99",
    "proxy.process.net.accept_queue_delay_us.max",
    "proxy.process.exec_thread.count",
    "proxy.process.http.current_client_connections",
    "proxy.process.http.total_client_connections",
    "proxy.process.http.incoming_requests",
    "proxy.process.http.completed_requests",
    "proxy.process.http.2xx_responses",
    "proxy.process.http.3xx_responses",
    "proxy.process.http.4xx_responses",
    "proxy.process.http.5xx_responses",
    "proxy.process.cache.hits",
    "proxy.process.cache.misses",
    "proxy.process.proxy.cache_ready_time",
    "proxy.process.proxy.ports_ready",
];

#[test]
fn json_is_the_default_with_every_required_metric() {
    let d = Daemon::start();
    let r = http::get(d.addr(), "t", "/_stats").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let text = r.text();
    assert!(text.starts_with("{\"global\": {"));
    for name in REQUIRED {
        assert!(text.contains(&format!("\"{name}\": ")), "{name} missing");
    }
    assert!(text.contains("\"current_time_epoch_ms\": "));
    assert!(text.contains("\"server\": \"turnstile/"));
    let port = d.addr().port();
    assert!(text.contains(&format!(
        "\"proxy.process.net.port.{port}.total_accepts\": "
    )));
    assert_eq!(get_with(d.addr(), "/_stats/json", None).status, 200);
}

#[test]
fn csv_by_path_and_by_accept() {
    let d = Daemon::start();
    for r in [
        get_with(d.addr(), "/_stats/csv", None),
        get_with(d.addr(), "/_stats", Some("text/csv")),
    ] {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        for line in r.text().lines() {
            let (name, value) = line.split_once(',').expect("name,value");
            assert!(name.starts_with("proxy."), "{line}");
            value.parse::<i64>().expect("numeric");
        }
        assert!(r.text().contains("proxy.process.tcp.total_accepts,"));
    }
    // A weight of 0 refuses a type (RFC 9110 §12.4.2); the heavier type wins.
    for accept in [
        "text/csv;q=0, application/json",
        "application/json, text/csv;q=0.1",
    ] {
        let r = get_with(d.addr(), "/_stats", Some(accept));
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{accept}"
        );
    }
}

#[test]
fn prometheus_output_parses_line_by_line() {
    let d = Daemon::start();
    for r in [
        get_with(d.addr(), "/_stats/prometheus", None),
        get_with(d.addr(), "/_stats", Some("text/plain; version=0.0.4")),
    ] {
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().contains("version=0.0.4"));
        let text = r.text();
        let families = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(families.contains_key("proxy_process_net_accepts_currently_open"));
    }
}

/// A daemon with two ports, a cache span and some traffic, so that every kind of family
/// shows: counters, gauges, per-port and per-span labels, summaries with samples.
#[test]
fn prometheus_output_passes_promtool_and_the_strict_parser() {
    let span = TempDir::new("prom-span");
    let origin = Origin::start(|_| Some(ok(b"cached", &[("Cache-Control", "max-age=60")])));
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0 0:accept_threads=0")
        .config(&format!(
            "[proxy.config.http]\nwait_for_cache = 1\n[proxy.config.cache]\n\
             storage = [{{ path = \"{}\", size = \"4M\" }}]\n\
             [[remap]]\nfrom = \"/\"\nto = \"http://{}/\"\n\
             [[parent]]\ndest_domain = \"parent.test\"\nparents = [\"127.0.0.1:9\"]\n",
            span.0.display(),
            origin.addr
        ))
        .start();
    let ports: Vec<u16> = d.addrs().iter().map(|a| a.port()).collect();
    assert_eq!(ports.len(), 2, "{}", d.log_text());
    for addr in d.addrs() {
        for _ in 0..2 {
            assert_eq!(http::get(addr, "t", "/object").unwrap().status, 200);
        }
    }
    let fetch = || get_with(d.addr(), "/_stats/prometheus", None).text();
    // The per-span gauges appear once the cache has reported its usage.
    assert!(
        wait_until(Duration::from_secs(10), || fetch()
            .contains("proxy_process_cache_span_objects{span=\"0\"}")),
        "{}",
        fetch()
    );
    let text = fetch();

    let families = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for port in &ports {
        let port = port.to_string();
        for (family, kind) in [
            ("proxy_process_net_port_total_accepts_total", "counter"),
            ("proxy_process_net_port_accepts_currently_open", "gauge"),
            ("proxy_process_net_port_accept_threads", "gauge"),
        ] {
            let f = &families[family];
            assert_eq!(f.kind, kind, "{family}");
            assert!(
                f.samples
                    .iter()
                    .any(|s| s.labels == [("port".to_string(), port.clone())]),
                "{family} has no port {port}"
            );
        }
    }
    for (family, kind) in [
        ("proxy_process_http_parent_requests_total", "counter"),
        ("proxy_process_http_parent_up", "gauge"),
    ] {
        let f = &families[family];
        assert_eq!(f.kind, kind, "{family}");
        assert_eq!(
            f.samples[0].label("parent"),
            Some("127.0.0.1:9"),
            "{family}"
        );
    }
    let accepts = &families["proxy_process_net_port_total_accepts_total"];
    assert!(accepts.samples.iter().all(|s| s.value >= 2.0), "{text}");
    let delay = &families["proxy_process_net_accept_queue_delay_seconds"];
    assert_eq!(delay.kind, "summary");
    let quantiles: Vec<&str> = delay
        .samples
        .iter()
        .filter_map(|s| s.label("quantile"))
        .collect();
    assert_eq!(quantiles, ["0.5", "0.99", "1"]);
    let count = delay
        .samples
        .iter()
        .find(|s| s.name == "proxy_process_net_accept_queue_delay_seconds_count")
        .expect("_count");
    assert!(count.value >= 4.0, "{text}");
    assert!(
        delay.samples.iter().all(|s| s.value < 60.0),
        "in seconds: {text}"
    );
    // One miss fills the cache; the other three requests hit.
    assert_eq!(
        families["proxy_process_cache_misses_total"].samples[0].value,
        1.0
    );
    assert_eq!(
        families["proxy_process_cache_hits_total"].samples[0].value,
        3.0
    );
    assert_eq!(
        families["proxy_process_tcp_total_accepts_total"].kind,
        "counter"
    );
    assert_eq!(families["proxy_process_exec_threads"].kind, "gauge");
    assert_eq!(
        families["proxy_process_cache_writes_shed_total"].kind,
        "counter"
    );
    for (name, f) in &families {
        assert!(
            !f.help.starts_with("Turnstile "),
            "{name} has no description of its own: {}",
            f.help
        );
    }

    match exposition::promtool(&text) {
        Some((ok, said)) => assert!(ok && said.is_empty(), "promtool check metrics:\n{said}"),
        None => eprintln!("promtool is not on PATH: checked by the strict parser only"),
    }
}

/// The fallback is a real check: each rule refuses what breaks it, for that reason. It
/// is stricter than promtool 2.42, which lets a split family, a summary sample without
/// `quantile`, a duplicate series, a timestamp or a comment line through.
#[test]
fn strict_parser_refuses_each_kind_of_bad_exposition() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{port=\"1\"} 3\n\
                # HELP wait_seconds W.\n# TYPE wait_seconds summary\n\
                wait_seconds{quantile=\"0.5\"} 0.1\nwait_seconds{quantile=\"1\"} 2e-1\nwait_seconds_count 4\n";
    exposition::parse(good).unwrap();
    for (bad, why) in [
        ("a_total 1\n", "a sample before its HELP and TYPE"),
        ("# TYPE a_total counter\na_total 1\n", "TYPE without a HELP"),
        ("# HELP a_total A.\na_total 1\n", "not followed by its TYPE"),
        ("# HELP a A.\n# TYPE a counter\na 1\n", "must end in _total"),
        ("# HELP a_total A.\n# TYPE a_total gauge\na_total 1\n", "only counters may end in _total"),
        ("# HELP a_count A.\n# TYPE a_count gauge\na_count 1\n", "belong to summaries"),
        ("# HELP a_us A.\n# TYPE a_us gauge\na_us 1\n", "abbreviated unit"),
        ("# HELP a A.\n# TYPE a gauge\na x\n", "not a float"),
        ("# HELP a A.\n# TYPE a gauge\na 1 1700000000\n", "not a float"),
        ("# HELP a A.\n# TYPE a gauge\na{b=\"1\" 1\n", "labels not closed"),
        ("# HELP a A.\n# TYPE a gauge\na{1b=\"1\"} 1\n", "bad label name"),
        ("# HELP a A.\n# TYPE a gauge\na{b=1} 1\n", "label without"),
        ("# HELP a A.\n# TYPE a gauge\na{b=\"\\x\"} 1\n", "bad escape"),
        ("# HELP a A.\n# TYPE a gauge\na{b=\"1\",b=\"2\"} 1\n", "label b twice"),
        ("# HELP a A.\n# TYPE a gauge\na 1\na 2\n", "the same series twice"),
        ("# HELP a.b A.\n# TYPE a.b gauge\na.b 1\n", "bad metric name"),
        (
            "# HELP a A.\n# TYPE a gauge\na{p=\"1\"} 1\n# HELP c C.\n# TYPE c gauge\nc 1\na{p=\"2\"} 1\n",
            "outside its family",
        ),
        (
            "# HELP a A.\n# TYPE a gauge\na 1\n# HELP a A.\n# TYPE a gauge\n",
            "appears twice",
        ),
        ("# HELP a A.\n# TYPE a gauge\n# comment\na 1\n", "neither HELP, TYPE nor a sample"),
        ("# HELP wait W.\n# TYPE wait summary\nwait 1\nwait_count 1\n", "without a quantile label"),
        (
            "# HELP wait W.\n# TYPE wait summary\nwait{quantile=\"2\"} 1\nwait_count 1\n",
            "outside [0, 1]",
        ),
        ("# HELP wait W.\n# TYPE wait summary\nwait{quantile=\"0.5\"} 1\n", "has no _count"),
        ("# HELP a_total A.\n# TYPE a_total counter\na_total -1\n", "below zero"),
        ("# HELP a A.\n# TYPE a gauge\na 1", "does not end with a line feed"),
        ("# HELP a A.\n# TYPE a gauge\n", "has no samples"),
    ] {
        match exposition::parse(bad) {
            Ok(_) => panic!("accepted, though {why}:\n{bad}"),
            Err(e) => assert!(e.contains(why), "refused for another reason than {why:?}: {e}"),
        }
    }
}

/// A strict reader of the Prometheus text format 0.0.4 as this endpoint writes it, with
/// promtool's lint rules: the check that runs whether or not promtool is installed.
mod exposition {
    use std::collections::{BTreeMap, HashSet};
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// One family: its TYPE, its HELP text and its samples in order.
    #[derive(Debug)]
    pub struct Family {
        pub kind: String,
        pub help: String,
        pub samples: Vec<Sample>,
    }

    /// One sample line.
    #[derive(Debug)]
    pub struct Sample {
        pub name: String,
        pub labels: Vec<(String, String)>,
        pub value: f64,
    }

    impl Sample {
        pub fn label(&self, name: &str) -> Option<&str> {
            self.labels
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Tokens promtool's lint refuses as abbreviated units.
    const UNIT_ABBREVIATIONS: &[&str] = &[
        "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
    ];

    fn metric_name_ok(n: &str) -> bool {
        n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn label_name_ok(n: &str) -> bool {
        n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !n.starts_with("__")
    }

    /// Checks every line of `text`; the families by name, or the first problem found.
    pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
        if !text.ends_with('\n') {
            return Err("the exposition does not end with a line feed".into());
        }
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut help: Option<(String, String)> = None;
        let mut series = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let at = |m: String| format!("line {}: {m}: {line:?}", i + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                if let Some((name, _)) = &help {
                    return Err(at(format!("HELP for {name} not followed by its TYPE")));
                }
                let (name, text) = rest
                    .split_once(' ')
                    .ok_or_else(|| at("no HELP text".into()))?;
                if !metric_name_ok(name) {
                    return Err(at("bad metric name".into()));
                }
                if text.trim().is_empty() {
                    return Err(at("empty HELP text".into()));
                }
                if families.contains_key(name) {
                    return Err(at(format!("family {name} appears twice")));
                }
                help = Some((name.to_string(), text.to_string()));
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or_else(|| at("no type".into()))?;
                let Some((help_name, help_text)) = help.take() else {
                    return Err(at("TYPE without a HELP before it".into()));
                };
                if help_name != name {
                    return Err(at(format!("TYPE after the HELP of {help_name}")));
                }
                lint_family(name, kind).map_err(at)?;
                families.insert(
                    name.to_string(),
                    Family {
                        kind: kind.to_string(),
                        help: help_text,
                        samples: Vec::new(),
                    },
                );
                current = Some(name.to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                return Err(at("a line that is neither HELP, TYPE nor a sample".into()));
            }
            if let Some((name, _)) = &help {
                return Err(at(format!("HELP for {name} not followed by its TYPE")));
            }
            let sample = parse_sample(line).map_err(at)?;
            let Some(family_name) = &current else {
                return Err(at("a sample before its HELP and TYPE".into()));
            };
            let family = families
                .get_mut(family_name)
                .expect("current family exists");
            check_sample(family_name, &family.kind, &sample).map_err(at)?;
            let mut key: Vec<String> = sample
                .labels
                .iter()
                .map(|(n, v)| format!("{n}={v:?}"))
                .collect();
            key.sort();
            if !series.insert((sample.name.clone(), key)) {
                return Err(at("the same series twice".into()));
            }
            family.samples.push(sample);
        }
        if let Some((name, _)) = help {
            return Err(format!("HELP for {name} at the end, without TYPE"));
        }
        for (name, f) in &families {
            if f.samples.is_empty() {
                return Err(format!("family {name} has no samples"));
            }
            if f.kind == "summary" {
                check_summary_counts(name, f)?;
            }
        }
        Ok(families)
    }

    /// promtool's naming rules for a family of `kind`.
    fn lint_family(name: &str, kind: &str) -> Result<(), String> {
        if !metric_name_ok(name) {
            return Err("bad metric name".into());
        }
        if !matches!(kind, "counter" | "gauge" | "summary") {
            return Err(format!("unexpected type {kind}"));
        }
        if kind == "counter" && !name.ends_with("_total") {
            return Err("a counter's name must end in _total".into());
        }
        if kind != "counter" && name.ends_with("_total") {
            return Err("only counters may end in _total".into());
        }
        if ["_count", "_sum", "_bucket"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            return Err("_count, _sum and _bucket belong to summaries and histograms".into());
        }
        if name.split('_').any(|t| UNIT_ABBREVIATIONS.contains(&t)) {
            return Err("an abbreviated unit in the name".into());
        }
        Ok(())
    }

    /// `name{label="value",...} value`.
    fn parse_sample(line: &str) -> Result<Sample, String> {
        let name_end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..name_end];
        if !metric_name_ok(name) {
            return Err("bad metric name".into());
        }
        let mut rest = &line[name_end..];
        let mut labels: Vec<(String, String)> = Vec::new();
        if let Some(mut l) = rest.strip_prefix('{') {
            loop {
                let (label, after) = l.split_once("=\"").ok_or("label without =\"value\"")?;
                if !label_name_ok(label) {
                    return Err(format!("bad label name {label:?}"));
                }
                if labels.iter().any(|(n, _)| n == label) {
                    return Err(format!("label {label} twice"));
                }
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err("bad escape in a label value".into()),
                        },
                        Some((j, '"')) => break j,
                        Some((_, c)) => value.push(c),
                        None => return Err("unterminated label value".into()),
                    }
                };
                labels.push((label.to_string(), value));
                let after = &after[end + 1..];
                if let Some(next) = after.strip_prefix(',') {
                    l = next;
                } else if let Some(done) = after.strip_prefix('}') {
                    rest = done;
                    break;
                } else {
                    return Err("labels not closed by }".into());
                }
            }
        }
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => v
                .parse()
                .map_err(|_| format!("value {v:?} is not a float"))?,
            v => return Err(format!("value {v:?} is not a float (or has a timestamp)")),
        };
        Ok(Sample {
            name: name.to_string(),
            labels,
            value,
        })
    }

    /// The sample belongs to `family` of `kind` and has the labels its kind requires.
    fn check_sample(family: &str, kind: &str, s: &Sample) -> Result<(), String> {
        let quantile = s.label("quantile");
        if s.labels.iter().any(|(n, _)| n == "le") {
            return Err("an le label outside a histogram".into());
        }
        match kind {
            "summary" if s.name == family => {
                let q: f64 = quantile
                    .ok_or("a summary sample without a quantile label")?
                    .parse()
                    .map_err(|_| "a quantile that is not a number")?;
                if !(0.0..=1.0).contains(&q) {
                    return Err("a quantile outside [0, 1]".into());
                }
            }
            "summary"
                if s.name == format!("{family}_count") || s.name == format!("{family}_sum") =>
            {
                if quantile.is_some() {
                    return Err("a quantile label on _count or _sum".into());
                }
            }
            "counter" | "gauge" if s.name == family => {
                if quantile.is_some() {
                    return Err("a quantile label outside a summary".into());
                }
                if kind == "counter" && (s.value.is_nan() || s.value < 0.0) {
                    return Err("a counter below zero".into());
                }
            }
            _ => {
                return Err(format!(
                    "sample {} outside its family (inside {family}): families must not be split",
                    s.name
                ))
            }
        }
        Ok(())
    }

    /// Each labelled instance of a summary has its `_count`.
    fn check_summary_counts(name: &str, f: &Family) -> Result<(), String> {
        let instance = |s: &Sample| -> Vec<(String, String)> {
            s.labels
                .iter()
                .filter(|(n, _)| n != "quantile")
                .cloned()
                .collect()
        };
        for s in f.samples.iter().filter(|s| s.name == name) {
            let want = instance(s);
            if !f
                .samples
                .iter()
                .any(|c| c.name == format!("{name}_count") && instance(c) == want)
            {
                return Err(format!("summary {name} {want:?} has no _count"));
            }
        }
        Ok(())
    }

    /// `promtool check metrics` on `text`: whether it passed and what it said, or None
    /// when promtool is not on PATH.
    pub fn promtool(text: &str) -> Option<(bool, String)> {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some((out.status.success(), said))
    }
}

#[test]
fn a_client_outside_allow_ip_gets_403_and_nothing_else() {
    let d = Daemon::builder()
        .env("PROXY_CONFIG_HTTP_SERVER_PORTS", "0:ip-in=0.0.0.0")
        .start();
    let port = d.addr().port();
    let from = |ip: &str| {
        let sock = std::net::TcpListener::bind((ip, 0)).ok().map(|_| ());
        sock?;
        // Bind the client to `ip` before connecting.
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor we create and own.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let mut sin: libc::sockaddr_in = std::mem::zeroed();
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_addr.s_addr = u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap()).to_be();
            if libc::bind(
                fd,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            ) != 0
            {
                return None;
            }
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            if libc::connect(
                fd,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            ) != 0
            {
                return None;
            }
            let s = std::net::TcpStream::from_raw_fd(fd);
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            Some(Conn {
                reader: std::io::BufReader::new(s),
            })
        }
    };
    let mut other = from("127.0.0.2").expect("127.0.0.2 is loopback on Linux");
    let r = other.get("t", "/_stats").unwrap();
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("proxy.process"), "{}", r.text());
    let mut allowed = from("127.0.0.1").unwrap();
    assert_eq!(allowed.get("t", "/_stats").unwrap().status, 200);
}

#[test]
fn head_carries_the_content_length_a_get_would_have_and_no_body() {
    let d = Daemon::start();
    let mut c = Conn::open(d.addr()).unwrap();
    let get = c.get("t", "/_stats").unwrap();
    assert_eq!(get.status, 200);
    c.send(b"HEAD /_stats HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let head = c.read_response("HEAD").unwrap();
    assert_eq!(head.status, 200);
    let length: usize = head
        .header("content-length")
        .expect("a Content-Length")
        .parse()
        .unwrap();
    // Counters moved between the two requests, so the lengths may differ by a few digits.
    assert!(
        length.abs_diff(get.body.len()) < 64,
        "HEAD says {length}, GET sent {}",
        get.body.len()
    );
    // No body followed the HEAD's head: the next answer on the connection parses.
    let again = c.get("t", "/_stats").unwrap();
    assert_eq!(again.status, 200);
    assert!(again.text().contains("proxy.process"), "{}", again.text());
    // Other methods are refused (one with a body would close the connection after the
    // answer, its body unread).
    c.send(b"DELETE /_stats HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let refused = c.read_response("DELETE").unwrap();
    assert_eq!(
        (refused.status, refused.header("allow")),
        (405, Some("GET, HEAD"))
    );
    assert_eq!(c.get("t", "/_stats").unwrap().status, 200);
}
