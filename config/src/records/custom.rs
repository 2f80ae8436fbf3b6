//! Records with their own readers and writers: lists, tables, paths and names that the
//! plain kinds of [`Kind`](super::Kind) do not cover.

use std::path::PathBuf;

use crate::connect_ports::ConnectPorts;
use crate::error::Problem;
use crate::ipnet::IpNet;
use crate::parent::parents_from_value;
use crate::ports::{format_server_ports, ports_from_value};
use crate::remap::rules_from_value;
use crate::schema::{CacheSpan, Config, SockOptions};
use crate::size::{format_size, parse_size};
use crate::value::{expect_str, no_repeats, read_tables, Value};

use super::{MAX_SOCKET_PATH_LEN, MIN_SPAN_SIZE};

/// A list of strings, each read by `item`.
pub(super) fn string_list<T>(
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

pub(super) const SOCK_OPTIONS: [&str; 3] = ["nodelay", "keepalive", "linger0"];

pub(super) fn apply_sock_options(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
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

pub(super) fn get_sock_options(cfg: &Config) -> Value {
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

pub(super) fn apply_allow_ip(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    cfg.stats.allow_ip = string_list(value, "addresses or CIDR blocks", |s| s.parse::<IpNet>())?;
    Ok(())
}

pub(super) fn get_allow_ip(cfg: &Config) -> Value {
    Value::Array(
        cfg.stats
            .allow_ip
            .iter()
            .map(|n| Value::Str(n.to_string()))
            .collect(),
    )
}

pub(super) fn apply_server_ports(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    cfg.http.server_ports = ports_from_value(value)?;
    Ok(())
}

pub(super) fn get_server_ports(cfg: &Config) -> Value {
    Value::Str(format_server_ports(&cfg.http.server_ports))
}

#[derive(Default)]
struct SpanDraft {
    path: Option<PathBuf>,
    size: Option<u64>,
}

pub(super) fn apply_storage(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
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
                    if size < MIN_SPAN_SIZE {
                        return Err(format!(
                            "a span needs a size ≥ {} ({MIN_SPAN_SIZE} bytes), got {size} bytes",
                            format_size(MIN_SPAN_SIZE)
                        ));
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
    no_repeats(
        value,
        &spans,
        "path",
        |s| &s.path,
        |s, j| format!("path {:?} is already span {j}", s.path),
    )?;
    cfg.cache.storage = spans;
    Ok(())
}

pub(super) fn get_storage(cfg: &Config) -> Value {
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

pub(super) fn apply_connect_ports(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    let s = expect_str(value, "ports and ranges, as \"443 8000-8100\" or \"*\"").map_err(one)?;
    cfg.http.connect_ports = ConnectPorts::parse(s).map_err(one)?;
    Ok(())
}

pub(super) fn apply_targeted(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
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

pub(super) fn apply_stats_path(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
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
    // The formats are `PATH/csv` and `PATH/prometheus`: with a trailing "/" they would be
    // `PATH//csv`, and "/" itself would take every URL from the origins.
    if path.ends_with('/') {
        return Err(one(format!(
            "expected a path not ending with \"/\" (the formats are PATH/csv, PATH/prometheus), got {path:?}"
        )));
    }
    cfg.stats.path = path.to_string();
    Ok(())
}

pub(super) fn apply_access_log(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    match expect_str(value, "a file path, or \"\" for none").map_err(one)? {
        p if p.contains('\0') => Err(one("a file path cannot contain NUL".to_string())),
        p => {
            cfg.log.access_log = PathBuf::from(p);
            Ok(())
        }
    }
}

pub(super) fn apply_pid_file(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    match expect_str(value, "a file path, or \"\" for none").map_err(one)? {
        p if p.contains('\0') => Err(one("a file path cannot contain NUL".to_string())),
        p => {
            cfg.pid_file = PathBuf::from(p);
            Ok(())
        }
    }
}

pub(super) fn apply_admin_socket(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    match expect_str(value, "a socket path").map_err(one)? {
        "" => Err(one("expected a socket path, got \"\"".to_string())),
        p if p.contains('\0') => Err(one("a socket path cannot contain NUL".to_string())),
        p if p.len() > MAX_SOCKET_PATH_LEN => Err(one(format!(
            "a socket path is at most {MAX_SOCKET_PATH_LEN} bytes (sun_path), got {} bytes",
            p.len()
        ))),
        p => {
            cfg.admin.socket = PathBuf::from(p);
            Ok(())
        }
    }
}

/// A file or directory path record: `what` names it in messages; `empty_ok` lets `""`
/// through (meaning none).
pub(super) fn path_value(
    value: &Value,
    what: &str,
    empty_ok: bool,
) -> Result<PathBuf, Vec<Problem>> {
    let one = |m: String| vec![Problem::new(m)];
    match expect_str(value, what).map_err(one)? {
        "" if !empty_ok => Err(one(format!("expected {what}, got \"\""))),
        p if p.contains('\0') => Err(one("a path cannot contain NUL".to_string())),
        p => Ok(PathBuf::from(p)),
    }
}

pub(super) fn path_text(p: &std::path::Path) -> Value {
    Value::Str(p.to_string_lossy().into_owned())
}

pub(super) fn apply_remap(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    cfg.remap = rules_from_value(value)?;
    Ok(())
}

pub(super) fn get_remap(cfg: &Config) -> Value {
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

pub(super) fn apply_proxy_protocol_allowlist(
    cfg: &mut Config,
    value: &Value,
) -> Result<(), Vec<Problem>> {
    cfg.http.proxy_protocol_allowlist =
        string_list(value, "addresses or CIDR blocks", |s| s.parse::<IpNet>())?;
    Ok(())
}

pub(super) fn get_proxy_protocol_allowlist(cfg: &Config) -> Value {
    Value::Array(
        cfg.http
            .proxy_protocol_allowlist
            .iter()
            .map(|n| Value::Str(n.to_string()))
            .collect(),
    )
}

pub(super) fn apply_proxy_name(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
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

pub(super) fn apply_parents(cfg: &mut Config, value: &Value) -> Result<(), Vec<Problem>> {
    cfg.parents = parents_from_value(value)?;
    Ok(())
}
