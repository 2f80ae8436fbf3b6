//! The record table: for every record of SPEC §3, its full name, whether it reloads live,
//! and how its value is checked, stored in [`Config`] and read back. Parsing a file,
//! environment overrides, [`Config::to_toml`] and reload diffs all go through this one
//! table, so a record cannot be readable one way and not another.

use std::path::PathBuf;

use crate::connect_ports::ConnectPorts;
use crate::env::EnvForm;
use crate::error::Problem;
use crate::ipnet::IpNet;
use crate::parent::{parents_from_value, parents_to_value};
use crate::ports::{format_server_ports, ports_from_value, MAX_ACCEPT_THREADS};
use crate::remap::rules_from_value;
use crate::schema::{Affinity, CacheSpan, Config, SockOptions, ThrottleMode, WaitForCache};
use crate::size::{format_size, parse_size};
use crate::ssl::{certs_from_value, certs_to_value, VerifyPolicy};
use crate::value::{expect_str, range_text, read_tables, Value};

/// Longest timeout in seconds any record accepts: one year. Longer values are surely
/// typos, and keeping them bounded keeps `Instant + timeout` from overflowing.
pub const MAX_TIMEOUT_S: i64 = 365 * 24 * 3600;

/// One record.
pub(crate) struct Record {
    /// Full name, e.g. `proxy.config.net.accept_period`; `remap` for the rules.
    pub(crate) name: &'static str,
    /// Applies on reload without a restart (SPEC's "(R)").
    pub(crate) reloadable: bool,
    pub(crate) kind: Kind,
}

/// How a record's value is checked and stored. `set` functions are only ever called with
/// a value already checked against the record's range, so their narrowing casts are exact.
pub(crate) enum Kind {
    /// A TOML integer in `min..=max`; `unit` names it in messages.
    Int {
        min: i64,
        max: i64,
        unit: &'static str,
        get: fn(&Config) -> i64,
        set: fn(&mut Config, i64),
    },
    /// A number (integer or float) in `(above, max]`.
    Float {
        above: f64,
        max: f64,
        get: fn(&Config) -> f64,
        set: fn(&mut Config, f64),
    },
    /// `true` or `false`.
    Bool {
        get: fn(&Config) -> bool,
        set: fn(&mut Config, bool),
    },
    /// Bytes, as an integer or a size string (`"64M"`), in `min..=max`; written back as a
    /// size string when `as_string`, else as an integer.
    Size {
        min: u64,
        max: u64,
        as_string: bool,
        get: fn(&Config) -> u64,
        set: fn(&mut Config, u64),
    },
    /// One of `choices`; `get` and `set` use the index into it.
    Choice {
        choices: &'static [&'static str],
        get: fn(&Config) -> usize,
        set: fn(&mut Config, usize),
    },
    /// Anything else: its own reader and writer, and how an environment variable's text
    /// becomes a value (`None`: not settable from text).
    Custom {
        env: Option<EnvForm>,
        get: fn(&Config) -> Value,
        apply: fn(&mut Config, &Value) -> Result<(), Vec<Problem>>,
    },
}

impl Record {
    /// Checks `value` and stores it in `cfg`; on error `cfg` is unchanged.
    pub(crate) fn apply(&self, cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
        let one = |m: String| vec![Problem::new(m)];
        match &self.kind {
            Kind::Int {
                min,
                max,
                unit,
                set,
                ..
            } => match value {
                Value::Int(i) if (*min..=*max).contains(i) => {
                    set(cfg, *i);
                    Ok(())
                }
                other => {
                    let of = if unit.is_empty() {
                        String::new()
                    } else {
                        format!(" of {unit}")
                    };
                    Err(one(format!(
                        "expected a whole number{of} {}, got {}",
                        range_text(*min, *max),
                        other.describe()
                    )))
                }
            },
            Kind::Float {
                above, max, set, ..
            } => {
                let n = match value {
                    Value::Float(f) => Some(*f),
                    Value::Int(i) => Some(*i as f64),
                    _ => None,
                };
                match n {
                    Some(n) if n > *above && n <= *max => {
                        set(cfg, n);
                        Ok(())
                    }
                    _ => Err(one(format!(
                        "expected a number > {above} and ≤ {max}, got {}",
                        value.describe()
                    ))),
                }
            }
            Kind::Bool { set, .. } => match value {
                Value::Bool(b) => {
                    set(cfg, *b);
                    Ok(())
                }
                other => Err(one(format!(
                    "expected true or false, got {}",
                    other.describe()
                ))),
            },
            Kind::Size { min, max, set, .. } => {
                let range = if *max == u64::MAX {
                    format!("≥ {}", format_size(*min))
                } else {
                    format!("from {} to {}", format_size(*min), format_size(*max))
                };
                let bytes = match value {
                    Value::Int(i) => u64::try_from(*i).map_err(|_| {
                        format!("expected a size in bytes {range}, got {i}")
                    }),
                    Value::Str(s) => parse_size(s),
                    other => Err(format!(
                        "expected a size in bytes (an integer or a string such as \"64M\") {range}, got {}",
                        other.describe()
                    )),
                }
                .map_err(one)?;
                if (*min..=*max).contains(&bytes) {
                    {
                        set(cfg, bytes);
                        Ok(())
                    }
                } else {
                    Err(one(format!(
                        "expected a size in bytes {range}, got {}",
                        value.describe()
                    )))
                }
            }
            Kind::Choice { choices, set, .. } => {
                let index = match value {
                    Value::Str(s) => choices.iter().position(|c| c == s),
                    _ => None,
                };
                let Some(i) = index else {
                    let list: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
                    return Err(one(format!(
                        "expected one of {}, got {}",
                        list.join(", "),
                        value.describe()
                    )));
                };
                set(cfg, i);
                Ok(())
            }
            Kind::Custom { apply, .. } => apply(cfg, value),
        }
    }

    /// The record's current value in `cfg`, as it is written in records.toml.
    pub(crate) fn get(&self, cfg: &Config) -> Value {
        match &self.kind {
            Kind::Int { get, .. } => Value::Int(get(cfg)),
            Kind::Float { get, .. } => Value::Float(get(cfg)),
            Kind::Bool { get, .. } => Value::Bool(get(cfg)),
            Kind::Size { get, as_string, .. } => {
                let bytes = get(cfg);
                match i64::try_from(bytes) {
                    Ok(i) if !as_string => Value::Int(i),
                    _ => Value::Str(format_size(bytes)),
                }
            }
            Kind::Choice { choices, get, .. } => Value::Str(choices[get(cfg)].to_string()),
            Kind::Custom { get, .. } => get(cfg),
        }
    }

    /// How an environment variable's text is read for this record, if it can be.
    pub(crate) fn env_form(&self) -> Option<EnvForm> {
        match &self.kind {
            Kind::Int { .. } => Some(EnvForm::Int),
            Kind::Float { .. } => Some(EnvForm::Float),
            Kind::Bool { .. } => Some(EnvForm::Bool),
            Kind::Size { .. } => Some(EnvForm::Size),
            Kind::Choice { .. } => Some(EnvForm::Str),
            Kind::Custom { env, .. } => *env,
        }
    }
}

/// The record named `name`.
pub(crate) fn find(name: &str) -> Option<&'static Record> {
    RECORDS.iter().find(|r| r.name == name)
}

/// Whether `name` is a table holding records (`proxy.config.net`).
pub(crate) fn is_table(name: &str) -> bool {
    RECORDS.iter().any(|r| {
        r.name.len() > name.len()
            && r.name.starts_with(name)
            && r.name.as_bytes()[name.len()] == b'.'
    })
}

/// Every record name, in records.toml order.
pub fn record_names() -> impl Iterator<Item = &'static str> {
    RECORDS.iter().map(|r| r.name)
}

/// The pseudo-record naming a port's own `accept_threads` token, for [`reloadable`].
pub const PORT_ACCEPT_THREADS: &str = "proxy.config.http.server_ports.accept_threads";

/// Whether a change to `record` applies on reload without a restart: the (R) records of
/// SPEC §3, `remap`, and [`PORT_ACCEPT_THREADS`]. Unknown names are not reloadable.
pub fn reloadable(record: &str) -> bool {
    record == PORT_ACCEPT_THREADS || find(record).is_some_and(|r| r.reloadable)
}

/// A near-miss record name for an unknown one: same last segment, or a small edit away.
pub(crate) fn suggest(name: &str) -> Option<&'static str> {
    let last = name.rsplit('.').next().unwrap_or(name);
    let same_last: Vec<&str> = record_names()
        .filter(|r| r.rsplit('.').next() == Some(last))
        .collect();
    if let [only] = same_last[..] {
        return Some(only);
    }
    record_names()
        .map(|r| (edit_distance(r, name), r))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, r)| r)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

// ---- Custom records -----------------------------------------------------------------

/// A list of strings, each read by `item`.
fn string_list<T>(
    value: &Value,
    what: &str,
    item: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, Vec<Problem>> {
    let Value::Array(items) = value else {
        return Err(vec![Problem::new(format!(
            "expected an array of {what}, got {}",
            value.describe()
        ))]);
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for v in items {
        match expect_str(v, what).and_then(&item) {
            Ok(t) => out.push(t),
            Err(m) => problems.push(Problem::new(m)),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

const SOCK_OPTIONS: [&str; 3] = ["nodelay", "keepalive", "linger0"];

fn apply_sock_options(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let names = string_list(value, "socket options", |s| {
        SOCK_OPTIONS
            .iter()
            .position(|o| *o == s)
            .ok_or_else(|| format!("unknown socket option {s:?}; expected any of \"nodelay\", \"keepalive\", \"linger0\""))
    })?;
    cfg.net.sock_options_in = SockOptions {
        nodelay: names.contains(&0),
        keepalive: names.contains(&1),
        linger0: names.contains(&2),
    };
    Ok(())
}

fn get_sock_options(cfg: &Config) -> Value {
    let o = cfg.net.sock_options_in;
    let on = [o.nodelay, o.keepalive, o.linger0];
    Value::Array(
        SOCK_OPTIONS
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(name, _)| Value::Str(name.to_string()))
            .collect(),
    )
}

fn apply_allow_ip(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    cfg.stats.allow_ip = string_list(value, "addresses or CIDR blocks", |s| s.parse::<IpNet>())?;
    Ok(())
}

fn get_allow_ip(cfg: &Config) -> Value {
    Value::Array(
        cfg.stats
            .allow_ip
            .iter()
            .map(|n| Value::Str(n.to_string()))
            .collect(),
    )
}

fn apply_server_ports(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    cfg.http.server_ports = ports_from_value(value)?;
    Ok(())
}

fn get_server_ports(cfg: &Config) -> Value {
    Value::Str(format_server_ports(&cfg.http.server_ports))
}

#[derive(Default)]
struct SpanDraft {
    path: Option<PathBuf>,
    size: Option<u64>,
}

fn apply_storage(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let spans = read_tables(
        value,
        "an array of tables { path = \"...\", size = \"256M\" }",
        |d: &mut SpanDraft, key, v| {
            match key {
                "path" => match expect_str(v, "a path")? {
                    "" => return Err("expected a path, got \"\"".to_string()),
                    p => d.path = Some(PathBuf::from(p)),
                },
                "size" => {
                    let size = match v {
                        Value::Int(i) => u64::try_from(*i)
                            .map_err(|_| format!("expected a size ≥ 1, got {i}"))?,
                        Value::Str(s) => parse_size(s)?,
                        other => {
                            return Err(format!(
                                "expected a size such as \"256M\", got {}",
                                other.describe()
                            ))
                        }
                    };
                    if size == 0 {
                        return Err("a span needs a size ≥ 1".to_string());
                    }
                    d.size = Some(size);
                }
                _ => return Err("unknown field; expected path and size".to_string()),
            }
            Ok(())
        },
        |d| match (d.path, d.size) {
            (Some(path), Some(size)) => Ok(CacheSpan { path, size }),
            (None, _) => Err("missing path".to_string()),
            (_, None) => Err("missing size".to_string()),
        },
    )?;
    for (i, span) in spans.iter().enumerate() {
        if let Some(j) = spans[..i].iter().position(|s| s.path == span.path) {
            return Err(vec![Problem::new(format!(
                "entry {}: path {:?} is already span {}",
                i + 1,
                span.path,
                j + 1
            ))]);
        }
    }
    cfg.cache.storage = spans;
    Ok(())
}

fn get_storage(cfg: &Config) -> Value {
    Value::Array(
        cfg.cache
            .storage
            .iter()
            .map(|s| {
                Value::table([
                    ("path", Value::Str(s.path.to_string_lossy().into_owned())),
                    ("size", Value::Str(format_size(s.size))),
                ])
            })
            .collect(),
    )
}

fn apply_connect_ports(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    let s = expect_str(value, "ports and ranges, as \"443 8000-8100\" or \"*\"").map_err(one)?;
    cfg.http.connect_ports = ConnectPorts::parse(s).map_err(one)?;
    Ok(())
}

fn apply_targeted(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    let names = expect_str(value, "field names separated by commas").map_err(one)?;
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let token = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(one(format!("{name:?} is not a header field name")));
        }
    }
    cfg.http.targeted_cache_control_headers = names.to_string();
    Ok(())
}

fn apply_stats_path(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    let path = expect_str(value, "a path starting with \"/\"").map_err(one)?;
    if !path.starts_with('/')
        || path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(one(format!(
            "expected a path starting with \"/\" without spaces, \"?\" or \"#\", got {path:?}"
        )));
    }
    cfg.stats.path = path.to_string();
    Ok(())
}

fn apply_access_log(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    match expect_str(value, "a file path, or \"\" for none").map_err(one)? {
        p if p.contains('\0') => Err(one("a file path cannot contain NUL".to_string())),
        p => {
            cfg.log.access_log = PathBuf::from(p);
            Ok(())
        }
    }
}

fn apply_pid_file(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    match expect_str(value, "a file path, or \"\" for none").map_err(one)? {
        p if p.contains('\0') => Err(one("a file path cannot contain NUL".to_string())),
        p => {
            cfg.pid_file = PathBuf::from(p);
            Ok(())
        }
    }
}

fn apply_admin_socket(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    match expect_str(value, "a socket path").map_err(one)? {
        "" => Err(one("expected a socket path, got \"\"".to_string())),
        p if p.contains('\0') => Err(one("a socket path cannot contain NUL".to_string())),
        p => {
            cfg.admin.socket = PathBuf::from(p);
            Ok(())
        }
    }
}

/// A file or directory path record: `what` names it in messages; `empty_ok` lets `""`
/// through (meaning none).
fn path_value(value: &Value, what: &str, empty_ok: bool) -> Result<PathBuf, Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    match expect_str(value, what).map_err(one)? {
        "" if !empty_ok => Err(one(format!("expected {what}, got \"\""))),
        p if p.contains('\0') => Err(one("a path cannot contain NUL".to_string())),
        p => Ok(PathBuf::from(p)),
    }
}

fn path_text(p: &std::path::Path) -> Value {
    Value::Str(p.to_string_lossy().into_owned())
}

fn apply_remap(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    cfg.remap = rules_from_value(value)?;
    Ok(())
}

fn get_remap(cfg: &Config) -> Value {
    Value::Array(
        cfg.remap
            .iter()
            .map(|r| {
                Value::table([
                    ("from", Value::Str(r.from.to_string())),
                    ("to", Value::Str(r.to.to_string())),
                ])
            })
            .collect(),
    )
}

fn apply_proxy_protocol_allowlist(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    cfg.http.proxy_protocol_allowlist =
        string_list(value, "addresses or CIDR blocks", |s| s.parse::<IpNet>())?;
    Ok(())
}

fn get_proxy_protocol_allowlist(cfg: &Config) -> Value {
    Value::Array(
        cfg.http
            .proxy_protocol_allowlist
            .iter()
            .map(|n| Value::Str(n.to_string()))
            .collect(),
    )
}

fn apply_proxy_name(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    let name = expect_str(value, "a name, or \"\" for the host name").map_err(one)?;
    // It goes into Via as the received-by pseudonym: an HTTP token.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(token) || name.len() > 255 {
        return Err(one(format!(
            "expected a name of letters, digits and \"-._\" (a Via pseudonym, at most 255 bytes), got {name:?}"
        )));
    }
    cfg.proxy_name = name.to_string();
    Ok(())
}

fn apply_parents(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    cfg.parents = parents_from_value(value)?;
    Ok(())
}

// ---- The table ------------------------------------------------------------------------

const SECONDS: &str = "seconds";
const MS: &str = "milliseconds";

/// Every record, in records.toml order.
pub(crate) static RECORDS: &[Record] = &[
    Record {
        name: "proxy.config.accept_threads",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: MAX_ACCEPT_THREADS as i64,
            unit: "threads",
            get: |c| c.accept_threads.into(),
            set: |c, v| c.accept_threads = v as u32,
        },
    },
    Record {
        name: "proxy.config.proxy_name",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.proxy_name.clone()),
            apply: apply_proxy_name,
        },
    },
    Record {
        name: "proxy.config.pid_file",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.pid_file.to_string_lossy().into_owned()),
            apply: apply_pid_file,
        },
    },
    Record {
        name: "proxy.config.exec_thread.autoconfig.enabled",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.exec_thread.autoconfig_enabled,
            set: |c, v| c.exec_thread.autoconfig_enabled = v,
        },
    },
    Record {
        name: "proxy.config.exec_thread.autoconfig.scale",
        reloadable: false,
        kind: Kind::Float {
            above: 0.0,
            max: 64.0,
            get: |c| c.exec_thread.autoconfig_scale,
            set: |c, v| c.exec_thread.autoconfig_scale = v,
        },
    },
    Record {
        name: "proxy.config.exec_thread.limit",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: 1024,
            unit: "threads",
            get: |c| c.exec_thread.limit.into(),
            set: |c, v| c.exec_thread.limit = v as u32,
        },
    },
    Record {
        name: "proxy.config.exec_thread.affinity",
        reloadable: false,
        kind: Kind::Choice {
            choices: Affinity::NAMES,
            get: |c| c.exec_thread.affinity as usize,
            set: |c, i| c.exec_thread.affinity = Affinity::ALL[i],
        },
    },
    Record {
        name: "proxy.config.exec_thread.listen",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.exec_thread.listen,
            set: |c, v| c.exec_thread.listen = v,
        },
    },
    Record {
        name: "proxy.config.net.accept_period",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: 60_000,
            unit: MS,
            get: |c| c.net.accept_period_ms as i64,
            set: |c, v| c.net.accept_period_ms = v as u64,
        },
    },
    Record {
        name: "proxy.config.net.additional_accepts",
        reloadable: true,
        kind: Kind::Int {
            min: -1,
            max: i64::MAX,
            unit: "accepts",
            get: |c| c.net.additional_accepts,
            set: |c, v| c.net.additional_accepts = v,
        },
    },
    Record {
        name: "proxy.config.net.throttle_delay",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: 60_000,
            unit: MS,
            get: |c| c.net.throttle_delay_ms as i64,
            set: |c, v| c.net.throttle_delay_ms = v as u64,
        },
    },
    Record {
        name: "proxy.config.net.listen_backlog",
        reloadable: false,
        kind: Kind::Int {
            min: i64::MIN,
            max: i64::MAX,
            unit: "",
            get: |c| c.net.listen_backlog,
            set: |c, v| c.net.listen_backlog = v,
        },
    },
    Record {
        name: "proxy.config.net.defer_accept",
        reloadable: false,
        kind: Kind::Int {
            min: 0,
            max: 3600,
            unit: SECONDS,
            get: |c| c.net.defer_accept_s.into(),
            set: |c, v| c.net.defer_accept_s = v as u32,
        },
    },
    Record {
        name: "proxy.config.net.connections_throttle",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: i64::MAX,
            unit: "connections",
            get: |c| c.net.connections_throttle as i64,
            set: |c, v| c.net.connections_throttle = v as u64,
        },
    },
    Record {
        name: "proxy.config.net.throttle_mode",
        reloadable: true,
        kind: Kind::Choice {
            choices: ThrottleMode::NAMES,
            get: |c| c.net.throttle_mode as usize,
            set: |c, i| c.net.throttle_mode = ThrottleMode::ALL[i],
        },
    },
    Record {
        name: "proxy.config.net.sock_options_in",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::List),
            get: get_sock_options,
            apply: apply_sock_options,
        },
    },
    Record {
        name: "proxy.config.net.sock_recv_buffer_size_in",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: i32::MAX as u64,
            as_string: false,
            get: |c| c.net.sock_recv_buffer_size_in.into(),
            set: |c, v| c.net.sock_recv_buffer_size_in = v as u32,
        },
    },
    Record {
        name: "proxy.config.net.sock_send_buffer_size_in",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: i32::MAX as u64,
            as_string: false,
            get: |c| c.net.sock_send_buffer_size_in.into(),
            set: |c, v| c.net.sock_send_buffer_size_in = v as u32,
        },
    },
    Record {
        name: "proxy.config.net.sock_notsent_lowat_in",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: i32::MAX as u64,
            as_string: false,
            get: |c| c.net.sock_notsent_lowat_in.into(),
            set: |c, v| c.net.sock_notsent_lowat_in = v as u32,
        },
    },
    Record {
        name: "proxy.config.net.default_inactivity_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.net.default_inactivity_timeout_s as i64,
            set: |c, v| c.net.default_inactivity_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.server_ports",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Ports),
            get: get_server_ports,
            apply: apply_server_ports,
        },
    },
    Record {
        name: "proxy.config.http.accept_no_activity_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.accept_no_activity_timeout_s as i64,
            set: |c, v| c.http.accept_no_activity_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.keep_alive_no_activity_timeout_in",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.keep_alive_no_activity_timeout_in_s as i64,
            set: |c, v| c.http.keep_alive_no_activity_timeout_in_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.keep_alive_no_activity_timeout_out",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.keep_alive_no_activity_timeout_out_s as i64,
            set: |c, v| c.http.keep_alive_no_activity_timeout_out_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.request_header_max_size",
        reloadable: false,
        kind: Kind::Size {
            min: 1024,
            max: 16 << 20,
            as_string: false,
            get: |c| c.http.request_header_max_size as u64,
            set: |c, v| c.http.request_header_max_size = v as usize,
        },
    },
    Record {
        name: "proxy.config.http.connect_attempts_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.connect_attempts_timeout_s as i64,
            set: |c, v| c.http.connect_attempts_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.per_server.connection.max",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: 1_000_000,
            unit: "transactions",
            get: |c| c.http.per_server_connection_max as i64,
            set: |c, v| c.http.per_server_connection_max = v as usize,
        },
    },
    Record {
        name: "proxy.config.http.connect_ports",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.http.connect_ports.to_string()),
            apply: apply_connect_ports,
        },
    },
    Record {
        name: "proxy.config.http.transaction_no_activity_timeout_out",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.transaction_no_activity_timeout_out_s as i64,
            set: |c, v| c.http.transaction_no_activity_timeout_out_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.transaction_no_activity_timeout_in",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.transaction_no_activity_timeout_in_s as i64,
            set: |c, v| c.http.transaction_no_activity_timeout_in_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.underscores_in_headers",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.http.underscores_in_headers,
            set: |c, v| c.http.underscores_in_headers = v,
        },
    },
    Record {
        name: "proxy.config.http.wait_for_cache",
        reloadable: false,
        kind: Kind::Int {
            min: 0,
            max: 3,
            unit: "",
            get: |c| c.http.wait_for_cache.level().into(),
            set: |c, v| c.http.wait_for_cache = WaitForCache::ALL[v as usize],
        },
    },
    Record {
        name: "proxy.config.http.cache.http",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.http.cache_http,
            set: |c, v| c.http.cache_http = v,
        },
    },
    Record {
        name: "proxy.config.http.cache.heuristic_min_lifetime",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.heuristic_min_lifetime_s as i64,
            set: |c, v| c.http.heuristic_min_lifetime_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.cache.heuristic_max_lifetime",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.heuristic_max_lifetime_s as i64,
            set: |c, v| c.http.heuristic_max_lifetime_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.cache.heuristic_lm_factor",
        reloadable: true,
        kind: Kind::Float {
            above: 0.0,
            max: 1.0,
            get: |c| c.http.heuristic_lm_factor,
            set: |c, v| c.http.heuristic_lm_factor = v,
        },
    },
    Record {
        name: "proxy.config.http.cache.max_stale_age",
        reloadable: true,
        kind: Kind::Int {
            min: 0,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.max_stale_age_s as i64,
            set: |c, v| c.http.max_stale_age_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.cache.targeted_cache_control_headers",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.http.targeted_cache_control_headers.clone()),
            apply: apply_targeted,
        },
    },
    Record {
        name: "proxy.config.http.cache.purge_allow_ip",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::List),
            get: |c| {
                Value::Array(
                    c.http
                        .purge_allow_ip
                        .iter()
                        .map(|n| Value::Str(n.to_string()))
                        .collect(),
                )
            },
            apply: |c, v| {
                c.http.purge_allow_ip =
                    string_list(v, "addresses or CIDR blocks", |s| s.parse::<IpNet>())?;
                Ok(())
            },
        },
    },
    Record {
        name: "proxy.config.http.parent_proxy.retry_time",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.http.parent_proxy.retry_time_s as i64,
            set: |c, v| c.http.parent_proxy.retry_time_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.http.parent_proxy.fail_threshold",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: 1_000_000,
            unit: "failures",
            get: |c| c.http.parent_proxy.fail_threshold.into(),
            set: |c, v| c.http.parent_proxy.fail_threshold = v as u32,
        },
    },
    Record {
        name: "proxy.config.http.parent_proxy.total_connect_attempts",
        reloadable: true,
        kind: Kind::Int {
            min: 1,
            max: 1000,
            unit: "attempts",
            get: |c| c.http.parent_proxy.total_connect_attempts.into(),
            set: |c, v| c.http.parent_proxy.total_connect_attempts = v as u32,
        },
    },
    Record {
        name: "proxy.config.http.proxy_protocol_allowlist",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::List),
            get: get_proxy_protocol_allowlist,
            apply: apply_proxy_protocol_allowlist,
        },
    },
    Record {
        name: "proxy.config.cache.storage",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Storage),
            get: get_storage,
            apply: apply_storage,
        },
    },
    Record {
        name: "proxy.config.cache.ram_cache.size",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: u64::MAX,
            as_string: true,
            get: |c| c.cache.ram_cache_size,
            set: |c, v| c.cache.ram_cache_size = v,
        },
    },
    Record {
        name: "proxy.config.cache.max_doc_size",
        reloadable: false,
        kind: Kind::Size {
            min: 0,
            max: u64::MAX,
            as_string: true,
            get: |c| c.cache.max_doc_size,
            set: |c, v| c.cache.max_doc_size = v,
        },
    },
    Record {
        name: "proxy.config.cache.limits.http.max_alts",
        reloadable: false,
        kind: Kind::Int {
            min: 0,
            max: 65_535,
            unit: "variants",
            get: |c| c.cache.max_alts as i64,
            set: |c, v| c.cache.max_alts = v as usize,
        },
    },
    Record {
        name: "proxy.config.stats.path",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.stats.path.clone()),
            apply: apply_stats_path,
        },
    },
    Record {
        name: "proxy.config.stats.allow_ip",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::List),
            get: get_allow_ip,
            apply: apply_allow_ip,
        },
    },
    Record {
        name: "proxy.config.admin.socket",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.admin.socket.to_string_lossy().into_owned()),
            apply: apply_admin_socket,
        },
    },
    Record {
        name: "proxy.config.stop.shutdown_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 0,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.stop.shutdown_timeout_s as i64,
            set: |c, v| c.stop.shutdown_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.upgrade.ready_timeout",
        reloadable: false,
        kind: Kind::Int {
            min: 1,
            max: MAX_TIMEOUT_S,
            unit: SECONDS,
            get: |c| c.upgrade.ready_timeout_s as i64,
            set: |c, v| c.upgrade.ready_timeout_s = v as u64,
        },
    },
    Record {
        name: "proxy.config.log.access_log",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| Value::Str(c.log.access_log.to_string_lossy().into_owned()),
            apply: apply_access_log,
        },
    },
    Record {
        name: "proxy.config.url_remap.remap_required",
        reloadable: false,
        kind: Kind::Bool {
            get: |c| c.url_remap.remap_required,
            set: |c, v| c.url_remap.remap_required = v,
        },
    },
    Record {
        name: "proxy.config.ssl.server.cert.path",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| path_text(&c.ssl.server_cert_path),
            apply: |c, v| {
                c.ssl.server_cert_path = path_value(v, "a directory", false)?;
                Ok(())
            },
        },
    },
    Record {
        name: "proxy.config.ssl.server.private_key.path",
        reloadable: false,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| path_text(&c.ssl.server_private_key_path),
            apply: |c, v| {
                c.ssl.server_private_key_path = path_value(v, "a directory", false)?;
                Ok(())
            },
        },
    },
    Record {
        name: "proxy.config.ssl.client.verify.server.policy",
        reloadable: true,
        kind: Kind::Choice {
            choices: VerifyPolicy::NAMES,
            get: |c| c.ssl.client_verify_server_policy as usize,
            set: |c, i| c.ssl.client_verify_server_policy = VerifyPolicy::ALL[i],
        },
    },
    Record {
        name: "proxy.config.ssl.client.CA.cert.filename",
        reloadable: true,
        kind: Kind::Custom {
            env: Some(EnvForm::Str),
            get: |c| path_text(&c.ssl.client_ca_cert_filename),
            apply: |c, v| {
                c.ssl.client_ca_cert_filename =
                    path_value(v, "a PEM file, or \"\" for none", true)?;
                Ok(())
            },
        },
    },
    Record {
        name: "ssl_multicert",
        reloadable: true,
        kind: Kind::Custom {
            env: None,
            get: |c| certs_to_value(&c.ssl_multicert),
            apply: |c, v| {
                c.ssl_multicert = certs_from_value(v)?;
                Ok(())
            },
        },
    },
    Record {
        name: "remap",
        reloadable: true,
        kind: Kind::Custom {
            env: None,
            get: get_remap,
            apply: apply_remap,
        },
    },
    Record {
        name: "parent",
        reloadable: true,
        kind: Kind::Custom {
            env: None,
            get: |c| parents_to_value(&c.parents),
            apply: apply_parents,
        },
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_reads_back_what_it_writes() {
        let cfg = Config::default();
        for r in RECORDS {
            let mut copy = cfg.clone();
            r.apply(&mut copy, &r.get(&cfg))
                .unwrap_or_else(|e| panic!("{}: {e:?}", r.name));
            assert_eq!(copy, cfg, "{}", r.name);
        }
    }

    #[test]
    fn names_are_unique_and_tables_are_not_records() {
        for (i, r) in RECORDS.iter().enumerate() {
            assert!(
                RECORDS[..i].iter().all(|o| o.name != r.name),
                "{} twice",
                r.name
            );
            assert!(!is_table(r.name), "{} is both", r.name);
        }
        assert!(
            is_table("proxy")
                && is_table("proxy.config.net")
                && is_table("proxy.config.http.cache")
        );
        assert!(!is_table("proxy.config.ne"));
    }

    #[test]
    fn reloadable_matches_the_spec_list() {
        let r: Vec<&str> = RECORDS
            .iter()
            .filter(|r| r.reloadable)
            .map(|r| r.name)
            .collect();
        assert_eq!(
            r,
            [
                "proxy.config.accept_threads",
                "proxy.config.net.accept_period",
                "proxy.config.net.additional_accepts",
                "proxy.config.net.throttle_delay",
                "proxy.config.net.connections_throttle",
                "proxy.config.net.throttle_mode",
                "proxy.config.http.per_server.connection.max",
                "proxy.config.http.connect_ports",
                "proxy.config.http.cache.heuristic_min_lifetime",
                "proxy.config.http.cache.heuristic_max_lifetime",
                "proxy.config.http.cache.heuristic_lm_factor",
                "proxy.config.http.cache.max_stale_age",
                "proxy.config.http.cache.targeted_cache_control_headers",
                "proxy.config.http.cache.purge_allow_ip",
                "proxy.config.http.parent_proxy.retry_time",
                "proxy.config.http.parent_proxy.fail_threshold",
                "proxy.config.http.parent_proxy.total_connect_attempts",
                "proxy.config.http.proxy_protocol_allowlist",
                "proxy.config.stats.allow_ip",
                "proxy.config.ssl.client.verify.server.policy",
                "proxy.config.ssl.client.CA.cert.filename",
                "ssl_multicert",
                "remap",
                "parent",
            ]
        );
        assert!(reloadable(PORT_ACCEPT_THREADS));
        assert!(!reloadable("proxy.config.http.server_ports"));
        assert!(!reloadable("no.such.record"));
    }

    #[test]
    fn suggestions_find_near_misses() {
        assert_eq!(
            suggest("proxy.config.net.accept_perod"),
            Some("proxy.config.net.accept_period")
        );
        assert_eq!(
            suggest("server_ports"),
            Some("proxy.config.http.server_ports")
        );
        assert_eq!(suggest("proxy.config.zzz"), None);
    }
}
