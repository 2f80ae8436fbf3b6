//! Reading a configuration: the file's tables walked record by record, then environment
//! overrides, every error collected rather than stopping at the first; and SPEC §2's rule
//! for which file to read.

use std::path::Path;

use crate::env::{env_var_name, text_to_value};
use crate::error::{ConfigError, ConfigErrors};
use crate::records::{self, Record, RECORDS};
use crate::schema::{Config, EMBEDDED_ORIGIN};
use crate::value::{Entry, Value};

/// The default configuration, as shipped in `records.toml` at the workspace root.
pub const DEFAULT_RECORDS: &str = include_str!("../../records.toml");

/// Parses records.toml `text` (named `origin` in errors), then applies environment
/// overrides looked up through `env` (pass `&|_| None` for none). Records missing from
/// the file keep their defaults.
///
/// # Examples
/// ```
/// let cfg = config::parse(
///     "[proxy.config.net]\naccept_period = 5\n",
///     "records.toml",
///     &|var| (var == "PROXY_CONFIG_ACCEPT_THREADS").then(|| "4".to_string()),
/// ).unwrap();
/// assert_eq!((cfg.net.accept_period_ms, cfg.accept_threads), (5, 4));
///
/// let err = config::parse("[proxy.config.net]\naccept_period = -5\n", "records.toml", &|_| None)
///     .unwrap_err();
/// assert!(err.to_string().starts_with("records.toml:2: proxy.config.net.accept_period: expected"));
/// ```
pub fn parse(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let doc = Value::parse_document(text).map_err(|(line, message)| ConfigError {
        origin: origin.to_string(),
        line,
        record: String::new(),
        message: format!("TOML syntax error: {message}"),
    })?;
    let mut cfg = Config {
        origin: origin.to_string(),
        ..Config::default()
    };
    let mut errors = Vec::new();
    if let Value::Table(root) = &doc {
        apply_table(&mut cfg, "", root, origin, &mut errors);
    }
    for record in RECORDS {
        let Some(form) = record.env_form() else {
            continue;
        };
        let var = env_var_name(record.name);
        if let Some(text) = env(&var) {
            let source = format!("environment variable {var}");
            match override_record(&mut cfg, record, form, &text, &source) {
                Ok(()) => note_override(&mut cfg, record.name, &var),
                Err(e) => errors.extend(e),
            }
        }
    }
    if errors.is_empty() {
        if let Some(p) = cfg.http.server_ports.iter().find(|p| p.ssl) {
            if cfg.ssl_multicert.is_empty() {
                errors.push(ConfigError {
                    origin: origin.to_string(),
                    line: None,
                    record: "ssl_multicert".to_string(),
                    message: format!(
                        "port {p} terminates TLS but no [[ssl_multicert]] certificate is configured"
                    ),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Loads the configuration as SPEC §2 says: `path` if given; else `./records.toml` if
/// present; else [`DEFAULT_RECORDS`]. Environment overrides come from the process
/// environment.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_with(path, &|var| {
        std::env::var_os(var).map(|v| v.to_string_lossy().into_owned())
    })
}

/// [`load`] with an injectable environment.
pub fn load_with(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let local = Path::new("records.toml");
    let path = match path {
        Some(p) => p,
        None if local.exists() => local,
        None => return parse(DEFAULT_RECORDS, EMBEDDED_ORIGIN, env),
    };
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &origin, env),
        Err(e) => Err(ConfigError {
            origin,
            line: None,
            record: String::new(),
            message: format!("cannot read the configuration: {e}"),
        }
        .into()),
    }
}

impl Config {
    /// Sets `record` from text, read as its environment variable would be, and notes
    /// `(record, source)` in [`Config::env_overrides`]. For command-line overrides:
    /// `cfg.set("proxy.config.accept_threads", "4", "--accept-threads")`. On error `self`
    /// is unchanged and the error's origin is `source`.
    pub fn set(&mut self, record: &str, text: &str, source: &str) -> Result<(), ConfigError> {
        let error = |message: String| ConfigError {
            origin: source.to_string(),
            line: None,
            record: record.to_string(),
            message,
        };
        let rec = records::find(record).ok_or_else(|| error("unknown record".to_string()))?;
        let form = rec
            .env_form()
            .ok_or_else(|| error("cannot be set from text".to_string()))?;
        override_record(self, rec, form, text, source).map_err(|mut e| e.remove(0))?;
        note_override(self, rec.name, source);
        Ok(())
    }
}

/// Applies one override; every problem becomes an error with `source` as its origin.
fn override_record(
    cfg: &mut Config,
    record: &Record,
    form: crate::env::EnvForm,
    text: &str,
    source: &str,
) -> Result<(), Vec<ConfigError>> {
    let error = |message: String| ConfigError {
        origin: source.to_string(),
        line: None,
        record: record.name.to_string(),
        message,
    };
    let value = text_to_value(form, text).map_err(|m| vec![error(m)])?;
    record
        .apply(cfg, &value)
        .map_err(|problems| problems.into_iter().map(|p| error(p.message)).collect())
}

fn note_override(cfg: &mut Config, record: &str, source: &str) {
    cfg.lines.forget(record);
    cfg.env_overrides.retain(|(r, _)| r != record);
    cfg.env_overrides
        .push((record.to_string(), source.to_string()));
}

/// Applies every `key = value` of a table whose full name is `prefix`.
fn apply_table(
    cfg: &mut Config,
    prefix: &str,
    entries: &[Entry],
    origin: &str,
    errors: &mut Vec<ConfigError>,
) {
    for e in entries {
        let name = if prefix.is_empty() {
            e.key.clone()
        } else {
            format!("{prefix}.{}", e.key)
        };
        let mut error = |line: Option<usize>, message: String| {
            errors.push(ConfigError {
                origin: origin.to_string(),
                line,
                record: name.clone(),
                message,
            })
        };
        if e.key.contains('.') {
            error(
                e.line,
                "a quoted key holding \".\" is not a record name; write nested tables or dotted keys"
                    .to_string(),
            );
        } else if let Some(record) = records::find(&name) {
            match record.apply(cfg, &e.value) {
                Ok(()) => cfg.lines.note(&name, e.line, &e.value),
                Err(problems) => {
                    for p in problems {
                        error(p.line.or(e.line), p.message);
                    }
                }
            }
        } else if records::is_table(&name) {
            match &e.value {
                Value::Table(inner) => apply_table(cfg, &name, inner, origin, errors),
                other => error(
                    e.line,
                    format!("expected a table of records, got {}", other.describe()),
                ),
            }
        } else {
            let hint = records::suggest(&name)
                .map(|s| format!("; did you mean {s}?"))
                .unwrap_or_default();
            error(e.line, format!("unknown record{hint}"));
        }
    }
}
