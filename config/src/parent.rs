//! `[[parent]]` rules, like ATS parent.config (SPEC §3, §10): which requests go to a
//! parent proxy instead of their origin, which parents, and how one is picked. Parsing
//! checks every field; matching and the hash ring are the proxy's job.

use std::fmt;
use std::net::Ipv6Addr;

use crate::error::Problem;
use crate::value::{expect_bool, expect_str, read_tables, Value};

/// Largest weight a parent may have (`host:port|weight`): the hash ring holds 160
/// points per unit of weight, as nginx's does.
pub const MAX_PARENT_WEIGHT: u32 = 1000;

/// How a rule picks among its parents (`round_robin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RoundRobin {
    /// `"false"`: the first parent that is up, in the order listed.
    #[default]
    False = 0,
    /// `"strict"`: each request the next parent in turn.
    Strict = 1,
    /// `"consistent_hash"`: the request's URL picks its parent on a weighted hash ring
    /// (nginx's `hash $request_uri consistent`).
    ConsistentHash = 2,
}

impl RoundRobin {
    /// Every value, indexed by discriminant.
    pub const ALL: &'static [RoundRobin] = &[
        RoundRobin::False,
        RoundRobin::Strict,
        RoundRobin::ConsistentHash,
    ];
    /// The record's spelling of each value, indexed by discriminant.
    pub const NAMES: &'static [&'static str] = &["false", "strict", "consistent_hash"];

    /// The record's spelling of this value.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// One parent of a rule: `host:port` with a weight.
///
/// # Examples
/// ```
/// let p = config::ParentHost::parse("Cache-1.example.net:8080|3").unwrap();
/// assert_eq!((p.host.as_str(), p.port, p.weight), ("cache-1.example.net", 8080, 3));
/// assert_eq!(p.name(), "cache-1.example.net:8080");
/// assert_eq!(p.to_string(), "cache-1.example.net:8080|3");
/// let v6 = config::ParentHost::parse("[::1]:3128").unwrap();
/// assert_eq!((v6.host.as_str(), v6.name(), v6.weight), ("::1", "[::1]:3128".to_string(), 1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParentHost {
    /// Lower-case host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Relative share of the requests, 1..=[`MAX_PARENT_WEIGHT`]; 1 when not written.
    pub weight: u32,
}

impl ParentHost {
    /// Parses `host:port` or `host:port|weight`.
    pub fn parse(s: &str) -> Result<ParentHost, String> {
        let bad = || format!("expected \"host:port\" or \"host:port|weight\", got {s:?}");
        let (addr, weight) = match s.split_once('|') {
            Some((a, w)) => {
                let w = w
                    .parse::<u32>()
                    .ok()
                    .filter(|w| (1..=MAX_PARENT_WEIGHT).contains(w))
                    .ok_or_else(|| {
                        format!("weight {w:?} in {s:?} is not a whole number from 1 to {MAX_PARENT_WEIGHT}")
                    })?;
                (a, w)
            }
            None => (s, 1),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(bad)?;
            inner.parse::<Ipv6Addr>().map_err(|_| bad())?;
            inner.to_string()
        } else {
            let ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
            if !ok {
                return Err(bad());
            }
            host.to_ascii_lowercase()
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(format!("bad port {port:?} in {s:?}")),
        };
        Ok(ParentHost { host, port, weight })
    }

    /// `host:port` (an IPv6 host in brackets): the parent's name in stats, and what the
    /// hash ring hashes, as nginx hashes an upstream `server` as written.
    pub fn name(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ParentHost {
    /// As written in records.toml; the weight only when it is not 1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if self.weight != 1 {
            write!(f, "|{}", self.weight)?;
        }
        Ok(())
    }
}

/// One `[[parent]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParentRule {
    /// `"."` (any host), or a lower-case domain: the host itself and its subdomains.
    pub dest_domain: String,
    /// The parents, in the order written; never empty, no two with one `host:port`.
    pub parents: Vec<ParentHost>,
    /// How a parent is picked; `"false"` when not written (ATS's default).
    pub round_robin: RoundRobin,
    /// When no parent can take the request: go to the origin (true, ATS's default) or
    /// answer 502.
    pub go_direct: bool,
    /// true (ATS's default): the parents are proxies and get absolute-form requests;
    /// false: they are origin-side servers and get origin-form requests.
    pub parent_is_proxy: bool,
}

impl ParentRule {
    /// Whether a request for `host` (lower-case, without port) falls under this rule, and
    /// how specifically: `Some(len)` of the matched domain (0 for `"."`).
    pub fn matches(&self, host: &str) -> Option<usize> {
        if self.dest_domain == "." {
            return Some(0);
        }
        let d = self.dest_domain.as_str();
        let hit = host == d
            || (host.len() > d.len()
                && host.ends_with(d)
                && host.as_bytes()[host.len() - d.len() - 1] == b'.');
        hit.then_some(d.len())
    }
}

#[derive(Default)]
struct RuleDraft {
    dest_domain: Option<String>,
    parents: Option<Vec<ParentHost>>,
    round_robin: Option<RoundRobin>,
    go_direct: Option<bool>,
    parent_is_proxy: Option<bool>,
}

const FIELDS: &str = "dest_domain, parents, round_robin, go_direct, parent_is_proxy";

fn domain(s: &str) -> Result<String, String> {
    if s == "." {
        return Ok(s.to_string());
    }
    let d = s.strip_prefix('.').unwrap_or(s);
    let ok = !d.is_empty()
        && !d.ends_with('.')
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' || b == b':');
    if !ok {
        return Err(format!("expected \".\" or a domain name, got {s:?}"));
    }
    Ok(d.to_ascii_lowercase())
}

fn parent_list(v: &Value) -> Result<Vec<ParentHost>, String> {
    let items: Vec<&str> = match v {
        // ATS's form: "p1:8080|1;p2:8080|2".
        Value::Str(s) => s
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| expect_str(i, "\"host:port\" strings"))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "expected an array of \"host:port\" or \"host:port|weight\" strings, got {}",
                other.describe()
            ))
        }
    };
    let mut out: Vec<ParentHost> = Vec::new();
    for i in items {
        let p = ParentHost::parse(i)?;
        if out.iter().any(|o| o.name() == p.name()) {
            return Err(format!("parent {} is listed twice", p.name()));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err("expected at least one parent".to_string());
    }
    Ok(out)
}

/// Reads the `parent` array of tables.
pub(crate) fn parents_from_value(value: &Value) -> Result<Vec<ParentRule>, Vec<Problem>> {
    let rules = read_tables(
        value,
        "an array of [[parent]] tables",
        |d: &mut RuleDraft, key, v| {
            match key {
                "dest_domain" => d.dest_domain = Some(domain(expect_str(v, "a domain")?)?),
                "parents" => d.parents = Some(parent_list(v)?),
                "round_robin" => {
                    let s = expect_str(v, "\"consistent_hash\", \"strict\" or \"false\"")?;
                    let i = RoundRobin::NAMES
                        .iter()
                        .position(|n| *n == s)
                        .ok_or_else(|| {
                            format!(
                                "expected \"consistent_hash\", \"strict\" or \"false\", got {s:?}"
                            )
                        })?;
                    d.round_robin = Some(RoundRobin::ALL[i]);
                }
                "go_direct" => d.go_direct = Some(expect_bool(v)?),
                "parent_is_proxy" => d.parent_is_proxy = Some(expect_bool(v)?),
                _ => return Err(format!("unknown field; expected one of {FIELDS}")),
            }
            Ok(())
        },
        |d| {
            let dest_domain = d.dest_domain.ok_or("missing dest_domain")?;
            let parents = d.parents.ok_or("missing parents")?;
            Ok(ParentRule {
                dest_domain,
                parents,
                round_robin: d.round_robin.unwrap_or_default(),
                go_direct: d.go_direct.unwrap_or(true),
                parent_is_proxy: d.parent_is_proxy.unwrap_or(true),
            })
        },
    )?;
    for (i, rule) in rules.iter().enumerate() {
        if let Some(j) = rules[..i]
            .iter()
            .position(|r| r.dest_domain == rule.dest_domain)
        {
            return Err(vec![Problem::new(format!(
                "entry {}: dest_domain {:?} already has a rule (entry {})",
                i + 1,
                rule.dest_domain,
                j + 1
            ))]);
        }
    }
    Ok(rules)
}

/// The rules as written in records.toml.
pub(crate) fn parents_to_value(rules: &[ParentRule]) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|r| {
                Value::table([
                    ("dest_domain", Value::Str(r.dest_domain.clone())),
                    (
                        "parents",
                        Value::Array(
                            r.parents
                                .iter()
                                .map(|p| Value::Str(p.to_string()))
                                .collect(),
                        ),
                    ),
                    (
                        "round_robin",
                        Value::Str(r.round_robin.as_str().to_string()),
                    ),
                    ("go_direct", Value::Bool(r.go_direct)),
                    ("parent_is_proxy", Value::Bool(r.parent_is_proxy)),
                ])
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parents_are_refused() {
        for bad in [
            "",
            "a",
            "a:",
            "a:0",
            "a:70000",
            "a:80|0",
            "a:80|x",
            "a:80|1001",
            "a b:80",
            "[::1:80",
            "[zz]:80",
            ":80",
        ] {
            assert!(ParentHost::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_most_specific_domain_is_measured() {
        let rule = |d: &str| ParentRule {
            dest_domain: d.to_string(),
            parents: vec![ParentHost::parse("p:1").unwrap()],
            round_robin: RoundRobin::False,
            go_direct: true,
            parent_is_proxy: true,
        };
        assert_eq!(rule(".").matches("x.com"), Some(0));
        assert_eq!(rule("example.com").matches("example.com"), Some(11));
        assert_eq!(rule("example.com").matches("a.example.com"), Some(11));
        assert_eq!(rule("example.com").matches("badexample.com"), None);
        assert_eq!(rule("example.com").matches("com"), None);
    }
}
