//! Remap rules (ATS remap.config `map`, parsed by `config`): `from` prefix → `to` origin. Longest match
//! wins; a `from` without a host matches any host. Built at start-up and on reload, so
//! origin names are resolved here, off the request path.

use crate::error::{Error, ErrorKind, Result};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// One resolved rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Lower-cased host the rule is for (with `:port` when the `from` URL names one);
    /// None: any host.
    pub from_host: Option<String>,
    /// Path prefix, starting with `/`.
    pub from_path: String,
    /// Where to connect.
    pub to_addr: SocketAddr,
    /// The Host header sent to the origin (`host[:port]` of the `to` URL); shared, so
    /// that a request takes it without a copy.
    pub to_host: Arc<str>,
    /// Path prefix replacing `from_path`.
    pub to_path: String,
    /// An `https://` origin: TLS with this name (SNI, and the name its certificate
    /// must have).
    pub to_tls: Option<rustls::pki_types::ServerName<'static>>,
}

/// The rules, ordered so the first match is the longest.
#[derive(Clone, Debug, Default)]
pub struct RemapTable {
    rules: Vec<Rule>,
}

/// Splits `host[:port]` (IPv6 as `[addr][:port]`), lower-casing the host.
pub fn split_authority(a: &str) -> Option<(String, Option<u16>)> {
    if a.is_empty() || a.contains('@') {
        return None;
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let end = rest.find(']')?;
        // Brackets hold an IPv6 address (RFC 3986 §3.2.2), nothing else.
        rest[..end].parse::<std::net::Ipv6Addr>().ok()?;
        let host = &a[..end + 2];
        match &rest[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace() || b == b'/') {
        return None;
    }
    let port = match port {
        None => None,
        // Digits only (RFC 3986 §3.2.3): `parse` would take a leading `+` too.
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Resolves `host:port` (blocking; used at table build time and, on the resolver
/// threads, by the forward proxy), preferring an IPv4 address as ATS does by default
/// (`hostdb.ip_resolve = "ipv4;ipv6"`): a name such as `localhost` that has both then
/// reaches an origin listening on IPv4 only.
///
/// # Errors
///
/// [`ErrorKind::ResolveFailed`], its context "cannot resolve HOST: why".
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let failed = |why: &dyn std::fmt::Display| {
        Error::new(ErrorKind::ResolveFailed).context(format!("cannot resolve {host}: {why}"))
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| failed(&e))?
        .collect();
    prefer_ipv4(&addrs).ok_or_else(|| failed(&"no address"))
}

/// The first IPv4 address of `addrs`, else the first.
fn prefer_ipv4(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

impl RemapTable {
    /// Builds the table from the configured rules, resolving each origin; an error
    /// ([`ErrorKind::Config`]) names the rule.
    pub fn build(config_rules: &[config::RemapRule]) -> Result<RemapTable> {
        let mut rules = Vec::with_capacity(config_rules.len());
        for r in config_rules {
            let with_port = |host: &str, port: Option<u16>| {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                match port {
                    Some(p) if p != 80 => format!("{host}:{p}"),
                    _ => host,
                }
            };
            let from_host = r.from.host.as_deref().map(|h| with_port(h, r.from.port));
            let to_name = r.to.host.as_deref().unwrap_or("localhost");
            let rule_name = || format!("remap {} → {}", r.from, r.to);
            let to_addr =
                resolve(to_name, r.to.port_or_default()).map_err(|e| e.into_config(rule_name()))?;
            let to_tls = if r.to.tls {
                let name = rustls::pki_types::ServerName::try_from(to_name.to_string())
                    .map_err(|e| Error::config(format!("{}: {e}", rule_name())))?;
                Some(name)
            } else {
                None
            };
            rules.push(Rule {
                from_host,
                from_path: r.from.path.clone(),
                to_addr,
                to_host: if r.to.tls {
                    match r.to.port {
                        Some(p) if p != 443 => format!("{}:{p}", with_port(to_name, None)),
                        _ => with_port(to_name, None),
                    }
                } else {
                    with_port(to_name, r.to.port)
                }
                .into(),
                to_path: r.to.path.clone(),
                to_tls,
            });
        }
        // Longest first: host-specific before host-less at equal length.
        rules.sort_by_key(|r| {
            let host_len = r.from_host.as_ref().map_or(0, |h| h.len() + 1);
            std::cmp::Reverse(host_len + r.from_path.len())
        });
        Ok(RemapTable { rules })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule for a request to `host` (as sent, maybe with a port) and `path`, and the
    /// path to send to the origin.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<(&Rule, String)> {
        // Host names compare without case, and ":80" is the port a rule names by none.
        let host = host.map(|h| h.strip_suffix(":80").unwrap_or(h));
        self.rules.iter().find_map(|r| {
            if let Some(rh) = &r.from_host {
                let h = host?;
                // A rule without a port matches the host on any port.
                let matches = h.eq_ignore_ascii_case(rh)
                    || (!rh.contains(':')
                        && h.rsplit_once(':')
                            .is_some_and(|(n, _)| n.eq_ignore_ascii_case(rh)));
                if !matches {
                    return None;
                }
            }
            // `OPTIONS *` asks about the server as a whole (RFC 9110 §9.3.7): the rule
            // that maps the host's root takes it, and its origin gets it as `*`.
            if path == "*" {
                return (r.from_path == "/").then(|| (r, path.to_string()));
            }
            let rest = path.strip_prefix(r.from_path.as_str())?;
            // "/a" must not match "/ab": a prefix ends at a path boundary.
            if !(r.from_path.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?'])) {
                return None;
            }
            let mut to = r.to_path.clone();
            if to.ends_with('/') && rest.starts_with('/') {
                to.pop();
            }
            to.push_str(rest);
            Some((r, to))
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn ipv4_is_preferred_when_a_name_has_both() {
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v4b: SocketAddr = "127.0.0.2:80".parse().unwrap();
        assert_eq!(prefer_ipv4(&[v6, v4, v4b]), Some(v4));
        assert_eq!(prefer_ipv4(&[v6]), Some(v6));
        assert_eq!(prefer_ipv4(&[]), None);
    }
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> RemapTable {
        let rules: Vec<config::RemapRule> = pairs
            .iter()
            .map(|(from, to)| config::RemapRule {
                from: config::RemapUrl::parse(from, true).unwrap(),
                to: config::RemapUrl::parse(to, false).unwrap(),
            })
            .collect();
        RemapTable::build(&rules).unwrap()
    }

    #[test]
    fn longest_match_wins_and_hostless_matches_any_host() {
        let t = table(&[
            ("/", "http://127.0.0.1:9000/"),
            ("http://www.example.com/", "http://127.0.0.1:9001/"),
            (
                "http://www.example.com/img/",
                "http://127.0.0.1:9002/static/",
            ),
        ]);
        let port =
            |h: Option<&str>, p: &str| t.lookup(h, p).map(|(r, path)| (r.to_addr.port(), path));
        assert_eq!(port(Some("other"), "/x"), Some((9000, "/x".into())));
        assert_eq!(
            port(Some("www.example.com"), "/x?q"),
            Some((9001, "/x?q".into()))
        );
        assert_eq!(
            port(Some("WWW.example.com:8080"), "/img/a.png"),
            Some((9002, "/static/a.png".into()))
        );
        assert_eq!(port(None, "/img/a.png"), Some((9000, "/img/a.png".into())));
        // `OPTIONS *` goes to the rule for the host's root, still as `*`.
        assert_eq!(port(Some("www.example.com"), "*"), Some((9001, "*".into())));
        assert_eq!(port(Some("other"), "*"), Some((9000, "*".into())));
        let sub = table(&[("http://a.test/api/", "http://127.0.0.1:9000/")]);
        assert!(sub.lookup(Some("a.test"), "*").is_none());
    }

    #[test]
    fn host_names_match_without_case_and_port_80_is_no_port() {
        let t = table(&[("http://Mixed.Test/", "http://127.0.0.1:9000/")]);
        for host in ["mixed.test", "MIXED.TEST:80", "Mixed.Test:8080"] {
            assert!(t.lookup(Some(host), "/").is_some(), "{host}");
        }
        assert!(t.lookup(Some("mixed.test.other"), "/").is_none());
    }

    #[test]
    fn no_match_is_none_and_prefixes_respect_boundaries() {
        let t = table(&[("http://a.test/api", "http://127.0.0.1:9000/v1")]);
        assert!(t.lookup(Some("b.test"), "/api").is_none());
        assert!(t.lookup(Some("a.test"), "/apix").is_none());
        assert_eq!(t.lookup(Some("a.test"), "/api/x").unwrap().1, "/v1/x");
    }

    #[test]
    fn authorities_parse() {
        assert_eq!(
            split_authority("[::1]:8080"),
            Some(("[::1]".into(), Some(8080)))
        );
        assert_eq!(split_authority("Host"), Some(("host".into(), None)));
        // A port is digits; brackets hold IPv6 only.
        assert_eq!(split_authority("127.0.0.1:+80"), None);
        assert_eq!(split_authority("h:"), None);
        assert_eq!(split_authority("[127.0.0.1]:80"), None);
        assert_eq!(split_authority("h:0"), None);
        assert_eq!(split_authority("h:x"), None);
    }
}
