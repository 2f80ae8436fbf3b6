//! The record table: for every record of SPEC §3, its full name, whether it reloads live,
//! and how its value is checked, stored in [`Config`] and read back. Parsing a file,
//! environment overrides, [`Config::to_toml`] and reload diffs all go through this one
//! table, so a record cannot be readable one way and not another.

use crate::env::EnvForm;
use crate::error::Problem;
use crate::schema::Config;
use crate::size::{format_size, parse_size};
use crate::value::{range_text, Value};

mod custom;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use table::RECORDS;

/// Longest timeout in seconds any record accepts: one year. Longer values are surely
/// typos, and keeping them bounded keeps `Instant + timeout` from overflowing.
pub const MAX_TIMEOUT_S: i64 = 365 * 24 * 3600;

/// Longest admin socket path in bytes: a Unix socket's address holds it in `sun_path`,
/// 108 bytes on Linux with the terminating NUL.
pub const MAX_SOCKET_PATH_LEN: usize = 107;

/// Smallest cache span in bytes: room for the span header and some records.
pub const MIN_SPAN_SIZE: u64 = 1 << 20;

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
    /// A number (integer or float) in `(min, max]`, or `[min, max]` when `min_allowed`.
    Float {
        min: f64,
        min_allowed: bool,
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
                min,
                min_allowed,
                max,
                set,
                ..
            } => {
                let n = match value {
                    Value::Float(f) => Some(*f),
                    Value::Int(i) => Some(*i as f64),
                    _ => None,
                };
                match n {
                    Some(n) if (n > *min || (*min_allowed && n == *min)) && n <= *max => {
                        set(cfg, n);
                        Ok(())
                    }
                    _ => Err(one(format!(
                        "expected a number {} {min} and ≤ {max}, got {}",
                        if *min_allowed { "≥" } else { ">" },
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
