//! A TOML document as this crate reads it: the values `toml` parses, with the line of
//! every key kept, so that an error can say `records.toml:14`. `toml::Table` forgets
//! where things were and `toml::Spanned` cannot be asked for on a table that has no span
//! of its own (`proxy` in `[proxy.config.net]`), so keys carry the spans here instead.
//! Also renders values back as inline TOML for [`crate::Config::to_toml`].

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::Problem;

/// A TOML value; tables keep their keys in document order with their lines.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// No record takes a date-time; kept (as text) only to say so.
    Datetime(String),
    Array(Vec<Value>),
    Table(Vec<Entry>),
}

/// One `key = value` of a table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    /// 1-based line of the key; `None` for values that did not come from a file.
    /// (While deserializing this briefly holds the key's byte offset.)
    pub(crate) line: Option<usize>,
    pub(crate) value: Value,
}

impl Value {
    /// Parses a whole document. A syntax error comes back with its line, if known.
    pub(crate) fn parse_document(text: &str) -> Result<Value, (Option<usize>, String)> {
        let mut doc: Value = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            (line, one_line(e.message()))
        })?;
        // Where each line ends, once: a file with thousands of entries (10,000
        // [[ssl_multicert]] tables) is then read in linear time, not quadratic.
        let newlines: Vec<usize> = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i)
            .collect();
        doc.offsets_to_lines(&newlines);
        Ok(doc)
    }

    /// Parses one inline TOML value such as `["a", "b"]` (from an environment variable);
    /// the result has no lines.
    pub(crate) fn parse_inline(text: &str) -> Result<Value, String> {
        let doc: Value = toml::from_str(&format!("value = {text}"))
            .map_err(|e| format!("not a TOML value ({})", one_line(e.message())))?;
        match doc {
            Value::Table(mut entries) if entries.len() == 1 && entries[0].key == "value" => {
                let mut value = entries.remove(0).value;
                value.forget_lines();
                Ok(value)
            }
            _ => Err("not a single TOML value".to_string()),
        }
    }

    /// The value at the dotted `name` (`proxy.config.admin.socket`), walking tables key by
    /// key as the file's nested tables and dotted keys make them.
    pub(crate) fn get_dotted(&self, name: &str) -> Option<&Value> {
        name.split('.').try_fold(self, |value, key| match value {
            Value::Table(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        })
    }

    /// Turns byte offsets into line numbers, given where the text's line feeds are.
    fn offsets_to_lines(&mut self, newlines: &[usize]) {
        match self {
            Value::Array(items) => items.iter_mut().for_each(|v| v.offsets_to_lines(newlines)),
            Value::Table(entries) => {
                for e in entries {
                    e.line = e
                        .line
                        .map(|offset| newlines.partition_point(|&nl| nl < offset) + 1);
                    e.value.offsets_to_lines(newlines);
                }
            }
            _ => {}
        }
    }

    fn forget_lines(&mut self) {
        match self {
            Value::Array(items) => items.iter_mut().for_each(Value::forget_lines),
            Value::Table(entries) => {
                for e in entries {
                    e.line = None;
                    e.value.forget_lines();
                }
            }
            _ => {}
        }
    }

    /// How the value is named after "got" in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => self.to_toml(),
            Value::Datetime(s) => format!("the date-time {s}"),
            Value::Array(_) => "an array".to_string(),
            Value::Table(_) => "a table".to_string(),
        }
    }

    /// Inline TOML text for this value.
    pub(crate) fn to_toml(&self) -> String {
        match self {
            Value::Str(s) => toml::Value::String(s.clone()).to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => toml::Value::Float(*f).to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Datetime(s) => s.clone(),
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(Value::to_toml).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Table(entries) if entries.is_empty() => "{}".to_string(),
            Value::Table(entries) => {
                let fields: Vec<String> = entries
                    .iter()
                    .map(|e| format!("{} = {}", toml_key(&e.key), e.value.to_toml()))
                    .collect();
                format!("{{ {} }}", fields.join(", "))
            }
        }
    }

    /// A table of `(key, value)` pairs, for rendering.
    pub(crate) fn table<'k>(fields: impl IntoIterator<Item = (&'k str, Value)>) -> Value {
        Value::Table(
            fields
                .into_iter()
                .map(|(key, value)| Entry {
                    key: key.to_string(),
                    line: None,
                    value,
                })
                .collect(),
        )
    }
}

/// A key as TOML text: bare when it can be, quoted otherwise.
pub(crate) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        toml::Value::String(key.to_string()).to_string()
    }
}

/// Where a syntax error lies when its line is one `key = value`: the record (the key's
/// full dotted name, or the array of tables holding it) and, inside an array of tables,
/// `entry N: key: ` to put before the message. Found exactly, by parsing `text` again
/// with that line's value replaced by `0`: the parser itself says which table the key
/// is in. None when the line is not a `key = value` the parser then accepts.
pub(crate) fn key_on_line(text: &str, line: usize) -> Option<(String, String)> {
    let start = match line {
        0 => return None,
        1 => 0,
        n => text.match_indices('\n').nth(n - 2)?.0 + 1,
    };
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let (key, _) = text[start..end].split_once('=')?;
    if key.trim().is_empty() {
        return None;
    }
    let mended = format!("{}{key}= 0{}", &text[..start], &text[end..]);
    let Ok(Value::Table(root)) = Value::parse_document(&mended) else {
        return None;
    };
    let mut path = Vec::new();
    if !find_leaf(&root, line, &mut path) {
        return None;
    }
    let split = path.iter().position(|s| matches!(s, Step::Entry(_)));
    let (record, inside) = path.split_at(split.unwrap_or(path.len()));
    let record: Vec<&str> = record
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Entry(_) => None,
        })
        .collect();
    let prefix: String = inside
        .iter()
        .map(|s| match s {
            Step::Key(k) => format!("{k}: "),
            Step::Entry(n) => format!("entry {n}: "),
        })
        .collect();
    Some((record.join("."), prefix))
}

/// One step from a table down to a value: a key, or a 1-based entry of an array of
/// tables.
enum Step {
    Key(String),
    Entry(usize),
}

/// Pushes onto `path` the steps to the value `0` whose key is at `line`; false if there
/// is none.
fn find_leaf(entries: &[Entry], line: usize, path: &mut Vec<Step>) -> bool {
    for e in entries {
        path.push(Step::Key(e.key.clone()));
        let found = match &e.value {
            Value::Int(0) => e.line == Some(line),
            Value::Table(inner) => find_leaf(inner, line, path),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let Value::Table(inner) = item else {
                    return false;
                };
                path.push(Step::Entry(i + 1));
                let found = find_leaf(inner, line, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        };
        if found {
            return true;
        }
        path.pop();
    }
    false
}

/// toml's messages may span lines; an error here is one line.
fn one_line(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    parts.join("; ")
}

/// 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads an array of tables (`[[remap]]`, cache spans, server ports), checking every
/// field of every table and reporting all problems, each at its key's line and prefixed
/// with `entry N:`. `field` stores one `key = value` into the table's draft `D` (or says
/// what is wrong, including for unknown keys); `finish` checks the draft as a whole.
pub(crate) fn read_tables<D: Default, T>(
    value: &Value,
    expected: &str,
    mut field: impl FnMut(&mut D, &str, &Value) -> Result<(), String>,
    mut finish: impl FnMut(D) -> Result<T, String>,
) -> Result<Vec<T>, Vec<Problem>> {
    let Value::Array(items) = value else {
        return Err(vec![Problem::new(format!(
            "expected {expected}, got {}",
            value.describe()
        ))]);
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let Value::Table(entries) = item else {
            problems.push(Problem::new(format!(
                "entry {n}: expected a table, got {}",
                item.describe()
            )));
            continue;
        };
        let mut draft = D::default();
        let mut ok = true;
        for e in entries {
            if let Err(m) = field(&mut draft, &e.key, &e.value) {
                problems.push(Problem::at(e.line, format!("entry {n}: {}: {m}", e.key)));
                ok = false;
            }
        }
        if ok {
            match finish(draft) {
                Ok(t) => out.push(t),
                Err(m) => {
                    let line = entries.first().and_then(|e| e.line);
                    problems.push(Problem::at(line, format!("entry {n}: {m}")));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Refuses `items`, read by [`read_tables`] from `value`, when an entry repeats an
/// earlier one's `key` (`of` gives it): the first such entry is reported at its `key`
/// line, `said(entry, earlier)` telling what it repeats (`earlier` 1-based).
pub(crate) fn no_repeats<T, K: PartialEq + ?Sized>(
    value: &Value,
    items: &[T],
    key: &str,
    of: impl Fn(&T) -> &K,
    said: impl Fn(&T, usize) -> String,
) -> Result<(), Vec<Problem>> {
    for (i, item) in items.iter().enumerate() {
        if let Some(j) = items[..i].iter().position(|x| of(x) == of(item)) {
            return Err(vec![Problem::at(
                entry_key_line(value, i, key),
                format!("entry {}: {}", i + 1, said(item, j + 1)),
            )]);
        }
    }
    Ok(())
}

/// The line of `key` in entry `index` (0-based) of an array of tables, if it has one:
/// where a problem found after [`read_tables`] (a duplicate) is to be reported.
fn entry_key_line(value: &Value, index: usize, key: &str) -> Option<usize> {
    match value {
        Value::Array(items) => match items.get(index)? {
            Value::Table(entries) => entries.iter().find(|e| e.key == key)?.line,
            _ => None,
        },
        _ => None,
    }
}

/// The string in `value`, or the usual "expected a string" message.
pub(crate) fn expect_str<'v>(value: &'v Value, what: &str) -> Result<&'v str, String> {
    match value {
        Value::Str(s) => Ok(s),
        other => Err(format!("expected {what}, got {}", other.describe())),
    }
}

/// The integer in `value` if it lies in `min..=max`.
pub(crate) fn expect_int(value: &Value, min: i64, max: i64, what: &str) -> Result<i64, String> {
    match value {
        Value::Int(i) if (min..=max).contains(i) => Ok(*i),
        other => Err(format!(
            "expected {what} {}, got {}",
            range_text(min, max),
            other.describe()
        )),
    }
}

/// The boolean in `value`.
pub(crate) fn expect_bool(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => Err(format!("expected true or false, got {}", other.describe())),
    }
}

/// `from 1 to 60000`, `≥ 1`, or nothing for the whole i64 range.
pub(crate) fn range_text(min: i64, max: i64) -> String {
    match (min, max) {
        (i64::MIN, i64::MAX) => String::new(),
        (min, i64::MAX) => format!("≥ {min}"),
        (min, max) => format!("from {min} to {max}"),
    }
}

// ---- Deserialization ----------------------------------------------------------------

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

/// toml hands a date-time over as a one-entry map under this key.
const DATETIME_FIELD: &str = "$__toml_private_datetime";

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key.offset.is_none() && key.name == DATETIME_FIELD {
                let text: String = map.next_value()?;
                return Ok(Value::Datetime(text));
            }
            let value = map.next_value::<Value>()?;
            entries.push(Entry {
                key: key.name,
                line: key.offset,
                value,
            });
        }
        Ok(Value::Table(entries))
    }
}

/// A table key and the byte offset where it starts, when the deserializer knows it.
struct Key {
    name: String,
    offset: Option<usize>,
}

/// Asks for a key with its span the way `toml::Spanned` does (serde_spanned's
/// struct-name protocol, which toml 0.8 honours for keys), but unlike `Spanned<String>`
/// also accepts a plain string key, which is how the date-time map's key arrives.
struct KeySeed;

const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key {
            name: v.to_string(),
            offset: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let mut offset = None;
        let mut name = None;
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                SPANNED_START => offset = Some(map.next_value::<usize>()?),
                SPANNED_END => {
                    map.next_value::<usize>()?;
                }
                SPANNED_VALUE => name = Some(map.next_value::<String>()?),
                other => return Err(de::Error::unknown_field(other, SPANNED_FIELDS)),
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field(SPANNED_VALUE))?;
        Ok(Key { name, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_lines_even_under_implicit_tables() {
        let doc = Value::parse_document("# c\n[a.b]\n\nx = 1\ny = [\n 2,\n]\n").unwrap();
        let Value::Table(root) = doc else { panic!() };
        assert_eq!(root[0].line, Some(2));
        let Value::Table(a) = &root[0].value else {
            panic!()
        };
        let Value::Table(b) = &a[0].value else {
            panic!()
        };
        assert_eq!((b[0].key.as_str(), b[0].line), ("x", Some(4)));
        assert_eq!((b[1].key.as_str(), b[1].line), ("y", Some(5)));
    }

    #[test]
    fn datetime_is_read_as_a_value_not_a_failure() {
        let doc = Value::parse_document("when = 1979-05-27T07:32:00Z\n").unwrap();
        let Value::Table(root) = doc else { panic!() };
        assert!(matches!(&root[0].value, Value::Datetime(s) if s.starts_with("1979")));
    }

    #[test]
    fn inline_values_render_back_to_the_same_value() {
        let text = r#"[{ path = "/a b", size = "1G" }, 1, 2.5, true, "q\"uote"]"#;
        let v = Value::parse_inline(text).unwrap();
        assert_eq!(Value::parse_inline(&v.to_toml()).unwrap(), v);
        assert_eq!(Value::Float(1.0).to_toml(), "1.0");
    }

    #[test]
    fn inline_parse_refuses_extra_keys() {
        assert!(Value::parse_inline("1\nother = 2").is_err());
    }
}
