//! Environment overrides: every record can be set by a variable named as the record
//! upper-cased with dots as underscores (`PROXY_CONFIG_NET_ACCEPT_PERIOD=20`). The text
//! becomes a TOML-like value of the record's type here and is then checked by the same
//! code as a file's value, so both report the same errors.

use crate::value::Value;

/// The environment variable overriding `record`.
///
/// # Examples
/// ```
/// assert_eq!(config::env_var_name("proxy.config.net.accept_period"), "PROXY_CONFIG_NET_ACCEPT_PERIOD");
/// ```
pub fn env_var_name(record: &str) -> String {
    record.to_ascii_uppercase().replace('.', "_")
}

/// How a record's text form is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvForm {
    /// A whole number.
    Int,
    /// A number.
    Float,
    /// `true`/`false`/`1`/`0`.
    Bool,
    /// Bytes: digits alone are an integer, anything else a size string.
    Size,
    /// A string, as is.
    Str,
    /// A list: an inline TOML array, or items separated by commas or whitespace.
    List,
    /// `server_ports`: the descriptor string, or an inline TOML array of port tables.
    Ports,
    /// `cache.storage`: an inline TOML array of span tables, or `PATH:SIZE` items
    /// separated by commas or whitespace.
    Storage,
}

/// Reads `text` as a value of the given form. Text that is not of the form's type
/// becomes a string, so the record's own check reports it with the usual message.
pub(crate) fn text_to_value(form: EnvForm, text: &str) -> Result<Value, String> {
    let t = text.trim();
    let value = match form {
        EnvForm::Int => t
            .parse()
            .map(Value::Int)
            .unwrap_or_else(|_| Value::Str(text.to_string())),
        EnvForm::Float => match (t.parse::<i64>(), t.parse::<f64>()) {
            (Ok(i), _) => Value::Int(i),
            (_, Ok(f)) => Value::Float(f),
            _ => Value::Str(text.to_string()),
        },
        EnvForm::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => Value::Str(text.to_string()),
        },
        EnvForm::Size => t
            .parse()
            .map(Value::Int)
            .unwrap_or_else(|_| Value::Str(t.to_string())),
        EnvForm::Str => Value::Str(text.to_string()),
        EnvForm::Ports if t.starts_with('[') => Value::parse_inline(t)?,
        EnvForm::Ports => Value::Str(text.to_string()),
        EnvForm::List | EnvForm::Storage if t.starts_with('[') => Value::parse_inline(t)?,
        EnvForm::List => Value::Array(items(t).map(|s| Value::Str(s.to_string())).collect()),
        EnvForm::Storage => Value::Array(
            items(t)
                .map(|item| {
                    let (path, size) = item
                        .rsplit_once(':')
                        .ok_or_else(|| format!("expected PATH:SIZE items, got {item:?}"))?;
                    Ok(Value::table([
                        ("path", Value::Str(path.to_string())),
                        ("size", Value::Str(size.to_string())),
                    ]))
                })
                .collect::<Result<_, String>>()?,
        ),
    };
    Ok(value)
}

fn items(t: &str) -> impl Iterator<Item = &str> {
    t.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_as_their_type_or_fall_back_to_text() {
        assert_eq!(text_to_value(EnvForm::Int, " 20 "), Ok(Value::Int(20)));
        assert_eq!(
            text_to_value(EnvForm::Int, "2x"),
            Ok(Value::Str("2x".into()))
        );
        assert_eq!(text_to_value(EnvForm::Float, "1.5"), Ok(Value::Float(1.5)));
        assert_eq!(text_to_value(EnvForm::Bool, "0"), Ok(Value::Bool(false)));
        assert_eq!(text_to_value(EnvForm::Bool, "TRUE"), Ok(Value::Bool(true)));
        assert_eq!(
            text_to_value(EnvForm::Bool, "yes"),
            Ok(Value::Str("yes".into()))
        );
        assert_eq!(
            text_to_value(EnvForm::Size, "64M"),
            Ok(Value::Str("64M".into()))
        );
    }

    #[test]
    fn lists_split_on_commas_and_spaces_or_read_toml() {
        let want = Value::Array(vec![Value::Str("a".into()), Value::Str("b".into())]);
        assert_eq!(text_to_value(EnvForm::List, "a, b"), Ok(want.clone()));
        assert_eq!(text_to_value(EnvForm::List, "a b"), Ok(want.clone()));
        assert_eq!(text_to_value(EnvForm::List, r#"["a", "b"]"#), Ok(want));
        assert_eq!(text_to_value(EnvForm::List, ""), Ok(Value::Array(vec![])));
        assert!(text_to_value(EnvForm::List, "[oops").is_err());
    }

    #[test]
    fn storage_items_are_path_colon_size() {
        let v = text_to_value(EnvForm::Storage, "/a:1G,/b/c:256M").unwrap();
        let Value::Array(items) = v else { panic!() };
        assert_eq!(items.len(), 2);
        assert!(text_to_value(EnvForm::Storage, "/nosize").is_err());
    }
}
