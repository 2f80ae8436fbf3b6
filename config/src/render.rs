//! The effective configuration written back as TOML (`turnstile check`), in the layout of
//! records.toml, and the record-by-record comparison a reload needs.

use crate::ports::PortSpec;
use crate::records::RECORDS;
use crate::schema::Config;
use crate::value::{toml_key, Value};

const SERVER_PORTS: &str = "proxy.config.http.server_ports";

impl Config {
    /// The effective configuration as TOML, in records.toml's layout (server ports in the
    /// string form), led by one comment line per override. [`crate::parse`] of the result
    /// gives back an equal configuration (overrides aside, which become file values).
    pub fn to_toml(&self) -> String {
        let mut out = format!(
            "# Effective Turnstile configuration, from {}\n",
            self.origin.replace(['\n', '\r'], " ")
        );
        for (record, source) in &self.env_overrides {
            out.push_str(&format!("# {record} overridden by {source}\n"));
        }
        let mut table = None;
        let mut arrays_of_tables = String::new();
        for record in RECORDS {
            let value = record.get(self);
            let (t, key) = match record.name.strip_prefix("proxy.config.") {
                Some(rest) => match rest.split_once('.') {
                    Some((group, key)) => (format!("proxy.config.{group}"), key),
                    None => ("proxy.config".to_string(), rest),
                },
                None => {
                    // A top-level array of tables: `[[remap]]` blocks, written last.
                    if let Value::Array(items) = &value {
                        for item in items {
                            arrays_of_tables
                                .push_str(&format!("\n[[{}]]\n", toml_key(record.name)));
                            if let Value::Table(entries) = item {
                                for e in entries {
                                    arrays_of_tables.push_str(&format!(
                                        "{} = {}\n",
                                        toml_key(&e.key),
                                        e.value.to_toml()
                                    ));
                                }
                            }
                        }
                    }
                    continue;
                }
            };
            if table.as_ref() != Some(&t) {
                out.push_str(&format!("\n[{t}]\n"));
                table = Some(t);
            }
            out.push_str(&format!("{key} = {}\n", value.to_toml()));
        }
        out.push_str(&arrays_of_tables);
        out
    }

    /// Names of the records whose values differ between `self` and `new`, in
    /// records.toml order.
    pub fn changed_records(&self, new: &Config) -> Vec<String> {
        RECORDS
            .iter()
            .filter(|r| r.get(self) != r.get(new))
            .map(|r| r.name.to_string())
            .collect()
    }

    /// Names of the records that differ between `self` (running) and `new` and cannot be
    /// applied by a reload. `proxy.config.http.server_ports` is named when a port is
    /// added, removed or changed in anything but its own `accept_threads`.
    pub fn restart_required_changes(&self, new: &Config) -> Vec<String> {
        self.changed_records(new)
            .into_iter()
            .filter(|name| {
                if name == SERVER_PORTS {
                    !same_listeners(&self.http.server_ports, &new.http.server_ports)
                } else {
                    !crate::reloadable(name)
                }
            })
            .collect()
    }
}

/// Whether two port lists open the same sockets, in any order.
fn same_listeners(a: &[PortSpec], b: &[PortSpec]) -> bool {
    let key = |ports: &[PortSpec]| {
        let mut v: Vec<String> = ports
            .iter()
            .map(|p| {
                PortSpec {
                    accept_threads: None,
                    ..p.clone()
                }
                .to_string()
            })
            .collect();
        v.sort();
        v
    };
    key(a) == key(b)
}
