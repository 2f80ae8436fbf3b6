//! Where each record's value was written in the file, so that the daemon's checks of
//! what a value names (a certificate file, a CA file) can point at the line as the
//! records' own errors do.

use std::collections::HashMap;

use crate::value::Value;

/// The line of each record's key in the file read, and of each key of each table of an
/// array-of-tables record (`ssl_multicert.1.ssl_cert_name`, entries counted from 1).
///
/// It says where a value came from, not what it is: two configurations with the same
/// values compare equal wherever their lines were.
#[derive(Debug, Clone, Default)]
pub struct Lines(HashMap<String, usize>);

impl PartialEq for Lines {
    fn eq(&self, _: &Lines) -> bool {
        true
    }
}

impl Lines {
    /// The line of `key`: a record's full name, or `RECORD.N.KEY` for the key of the Nth
    /// table of an array of tables.
    pub fn get(&self, key: &str) -> Option<usize> {
        self.0.get(key).copied()
    }

    /// Notes that `record` was written at `line` with `value`.
    pub(crate) fn note(&mut self, record: &str, line: Option<usize>, value: &Value) {
        if let Some(line) = line {
            self.0.insert(record.to_string(), line);
        }
        if let Value::Array(items) = value {
            for (i, item) in items.iter().enumerate() {
                let Value::Table(entries) = item else {
                    continue;
                };
                for e in entries {
                    if let Some(line) = e.line {
                        self.0.insert(format!("{record}.{}.{}", i + 1, e.key), line);
                    }
                }
            }
        }
    }

    /// Forgets `record` and its tables' keys: its value now comes from elsewhere.
    pub(crate) fn forget(&mut self, record: &str) {
        self.0.retain(|k, _| {
            k != record
                && !k
                    .strip_prefix(record)
                    .is_some_and(|rest| rest.starts_with('.'))
        });
    }
}
