//! Reading a configuration: the file's tables walked record by record, then environment
//! overrides, every error collected rather than stopping at the first; and SPEC §2's rule
//! for which file to read.

use std::borrow::Cow;
use std::path::Path;

use crate::env::{env_var_name, text_to_value};
use crate::error::{ConfigError, ConfigErrors};
use crate::records::{self, Record, RECORDS};
use crate::schema::{Config, EMBEDDED_ORIGIN};
use crate::value::{key_on_line, Entry, Value};

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
    let doc = Value::parse_document(text).map_err(|(line, message)| {
        let (record, within) = line.and_then(|l| key_on_line(text, l)).unwrap_or_default();
        ConfigError {
            origin: origin.to_string(),
            line,
            record,
            message: format!("{within}TOML syntax error: {message}"),
        }
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
    let (text, origin) = read_source(path)?;
    parse(&text, &origin, env)
}

/// The text SPEC §2 says to read and its name for errors: `path` if given; else
/// `./records.toml` if present; else [`DEFAULT_RECORDS`].
fn read_source(path: Option<&Path>) -> Result<(Cow<'static, str>, String), ConfigError> {
    let local = Path::new("records.toml");
    let path = match path {
        Some(p) => p,
        None if local.exists() => local,
        None => return Ok((Cow::Borrowed(DEFAULT_RECORDS), EMBEDDED_ORIGIN.to_string())),
    };
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((Cow::Owned(text), origin)),
        Err(e) => Err(ConfigError {
            origin,
            line: None,
            record: String::new(),
            message: format!("cannot read the configuration: {e}"),
        }),
    }
}

/// The defaults with one record as [`load_with`] would set it, read leniently: from the
/// file if its own line there reads well, whatever else in the file is wrong; then from
/// its environment variable if that reads well. Any problem leaves the record's default.
///
/// For `ctl`, which needs only the admin socket: reloading a broken file must still reach
/// the daemon, which refuses the file and says why.
///
/// # Examples
/// ```
/// # let dir = std::env::temp_dir().join(format!("lenient-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("records.toml");
/// std::fs::write(&path, "[proxy.config.net]\naccept_period = 0\n[proxy.config.admin]\nsocket = \"a.sock\"\n").unwrap();
/// assert!(config::load_with(Some(&path), &|_| None).is_err());
/// let cfg = config::load_record_leniently(Some(&path), "proxy.config.admin.socket", &|_| None);
/// assert_eq!(cfg.admin.socket, std::path::Path::new("a.sock"));
/// assert_eq!(cfg.net.accept_period_ms, config::Config::default().net.accept_period_ms);
/// // A file that is not TOML at all elsewhere: the socket's own line still reads.
/// std::fs::write(&path, "[proxy.config.net]\naccept_period = 10ms\n[proxy.config.admin]\nsocket = \"b.sock\"\n").unwrap();
/// let cfg = config::load_record_leniently(Some(&path), "proxy.config.admin.socket", &|_| None);
/// assert_eq!(cfg.admin.socket, std::path::Path::new("b.sock"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn load_record_leniently(
    path: Option<&Path>,
    record: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Config {
    let mut cfg = Config::default();
    let Some(rec) = records::find(record) else {
        return cfg;
    };
    if let Ok((text, _)) = read_source(path) {
        let value = match Value::parse_document(&text) {
            Ok(doc) => doc.get_dotted(record).cloned(),
            Err(_) => record_line(&text, record),
        };
        if let Some(value) = value {
            // A bad value leaves `cfg` unchanged.
            let _ = rec.apply(&mut cfg, &value);
        }
    }
    if let (Some(form), Some(text)) = (rec.env_form(), env(&env_var_name(record))) {
        // A bad value leaves `cfg` unchanged.
        let _ = override_record(&mut cfg, rec, form, &text, "");
    }
    cfg
}

/// `record`'s value in a document that does not parse as a whole (a syntax error, a
/// duplicate key elsewhere): each line read alone under the table header above it, the
/// first that sets the record.
fn record_line(text: &str, record: &str) -> Option<Value> {
    let mut header = "";
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            header = if trimmed.starts_with("[[") {
                "[-]"
            } else {
                line
            };
            continue;
        }
        let alone = format!("{header}\n{line}\n");
        if let Some(v) = Value::parse_document(&alone)
            .ok()
            .and_then(|doc| doc.get_dotted(record).cloned())
        {
            return Some(v);
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKET: &str = "proxy.config.admin.socket";

    /// Writes `text` to a file of its own and reads [`SOCKET`] leniently from it.
    fn socket_from(text: &str, env: &dyn Fn(&str) -> Option<String>) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "config-lenient-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("records.toml");
        std::fs::write(&path, text).unwrap();
        let cfg = load_record_leniently(Some(&path), SOCKET, env);
        std::fs::remove_dir_all(&dir).unwrap();
        cfg.admin.socket
    }

    #[test]
    fn one_record_is_read_from_a_file_with_errors_elsewhere() {
        let text = "[proxy.config.net]\naccept_period = 0\nbogus = 1\n\
                    [proxy.config.admin]\nsocket = \"/run/t.sock\"\n";
        assert!(parse(text, "f", &|_| None).is_err());
        assert_eq!(socket_from(text, &|_| None), Path::new("/run/t.sock"));
        // Dotted keys name the same record.
        let dotted = "[proxy.config]\nadmin.socket = \"d.sock\"\naccept_threads = -1\n";
        assert_eq!(socket_from(dotted, &|_| None), Path::new("d.sock"));
    }

    #[test]
    fn a_bad_or_unreadable_record_keeps_its_default_and_the_environment_wins() {
        let default = Config::default().admin.socket;
        let bad = "[proxy.config.admin]\nsocket = 5\n";
        assert_eq!(socket_from(bad, &|_| None), default);
        // A syntax error elsewhere: the record's own line, read alone, still counts.
        let syntax = "[proxy.config.admin]\nsocket = \"a.sock\"\nx = \n";
        assert_eq!(socket_from(syntax, &|_| None), Path::new("a.sock"));
        let only_broken = "[proxy.config.admin]\nsocket = \"a.sock\nx = 1\n";
        assert_eq!(socket_from(only_broken, &|_| None), default);
        let env = |var: &str| (var == "PROXY_CONFIG_ADMIN_SOCKET").then(|| "e.sock".to_string());
        assert_eq!(socket_from(syntax, &env), Path::new("e.sock"));
        let good = "[proxy.config.admin]\nsocket = \"a.sock\"\n";
        assert_eq!(socket_from(good, &env), Path::new("e.sock"));
        let empty_env = |var: &str| (var == "PROXY_CONFIG_ADMIN_SOCKET").then(String::new);
        assert_eq!(socket_from(good, &empty_env), Path::new("a.sock"));
    }
}
