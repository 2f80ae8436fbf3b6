//! `[[remap]]` rules, like ATS remap.config `map`: a `from` URL (or a bare path, which
//! matches any host) and a `to` origin URL. Parsing splits them into parts; matching
//! (longest `from` wins) is the proxy's job.

use std::fmt;
use std::net::Ipv6Addr;

use crate::error::Problem;
use crate::value::{expect_str, no_repeats, read_tables, Value};

/// One remap rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemapRule {
    /// What a request must match: `http://host[:port]/path` or a path (`/`) for any host.
    pub from: RemapUrl,
    /// Where it goes: `http://host[:port]/path`, or `https://…` to speak TLS to it.
    pub to: RemapUrl,
}

/// A parsed remap URL: `http://`, or (for a `to`) `https://`, which [`RemapUrl::tls`]
/// records.
///
/// # Examples
/// ```
/// let u = config::RemapUrl::parse("http://WWW.Example.com:8080/a/b", true).unwrap();
/// assert_eq!(u.host.as_deref(), Some("www.example.com"));
/// assert_eq!((u.port_or_default(), u.path.as_str()), (8080, "/a/b"));
/// assert_eq!(u.to_string(), "http://www.example.com:8080/a/b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemapUrl {
    /// Lower-case host name or IP address (IPv6 without brackets); `None` for a
    /// path-only `from`, which matches any host.
    pub host: Option<String>,
    /// Port when written in the URL; see [`RemapUrl::port_or_default`].
    pub port: Option<u16>,
    /// Path prefix; always starts with `/`.
    pub path: String,
    /// `https://`: the origin is spoken to over TLS (only a `to` may say so).
    pub tls: bool,
}

impl RemapUrl {
    /// Parses `http://host[:port][/path]`, or when `path_only_ok`, also a bare `/path`.
    pub fn parse(s: &str, path_only_ok: bool) -> Result<RemapUrl, String> {
        if s.starts_with('/') && path_only_ok {
            check_path(s)?;
            return Ok(RemapUrl {
                host: None,
                port: None,
                path: s.to_string(),
                tls: false,
            });
        }
        let want = if path_only_ok {
            "an http:// URL or a path starting with \"/\""
        } else {
            "an http:// or https:// URL"
        };
        let (rest, tls) = match (s.get(..7), s.get(..8)) {
            (Some(scheme), _) if scheme.eq_ignore_ascii_case("http://") => (&s[7..], false),
            (_, Some(scheme)) if !path_only_ok && scheme.eq_ignore_ascii_case("https://") => {
                (&s[8..], true)
            }
            _ => return Err(format!("expected {want}, got {s:?}")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_authority(authority).map_err(|m| format!("{m} in {s:?}"))?;
        check_path(path).map_err(|m| format!("{m} in {s:?}"))?;
        Ok(RemapUrl {
            host: Some(host),
            port,
            path: path.to_string(),
            tls,
        })
    }

    /// The port to match or connect to: as written, else 443 for `https://` and 80
    /// for `http://`.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.tls { 443 } else { 80 })
    }

    /// The scheme: `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

fn split_authority(a: &str) -> Result<(String, Option<u16>), String> {
    if a.contains('@') {
        return Err("user information is not allowed".to_string());
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("unclosed \"[\"")?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("bad IPv6 address [{inner}]"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after \"]\"")?),
        };
        (inner.to_string(), port)
    } else {
        let (host, port) = match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        };
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("bad host {host:?}"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("bad port {p:?}")),
        },
    };
    Ok((host, port))
}

fn check_path(p: &str) -> Result<(), String> {
    match p
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '#' || *c == '?')
    {
        Some(c) => Err(format!("{c:?} is not allowed in a remap path")),
        None => Ok(()),
    }
}

impl fmt::Display for RemapUrl {
    /// The URL as it would be written in records.toml; parses back to an equal value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            let scheme = self.scheme();
            if host.contains(':') {
                write!(f, "{scheme}://[{host}]")?;
            } else {
                write!(f, "{scheme}://{host}")?;
            }
            if let Some(port) = self.port {
                write!(f, ":{port}")?;
            }
        }
        f.write_str(&self.path)
    }
}

#[derive(Default)]
struct RuleDraft {
    from: Option<RemapUrl>,
    to: Option<RemapUrl>,
}

/// Reads the `remap` array of tables.
pub(crate) fn rules_from_value(value: &Value) -> Result<Vec<RemapRule>, Vec<Problem>> {
    let rules = read_tables(
        value,
        "an array of [[remap]] tables",
        |d: &mut RuleDraft, key, v| {
            match key {
                "from" => d.from = Some(RemapUrl::parse(expect_str(v, "a URL")?, true)?),
                "to" => d.to = Some(RemapUrl::parse(expect_str(v, "a URL")?, false)?),
                _ => return Err("unknown field; expected from and to".to_string()),
            }
            Ok(())
        },
        |d| match (d.from, d.to) {
            (Some(from), Some(to)) => Ok(RemapRule { from, to }),
            (None, _) => Err("missing from".to_string()),
            (_, None) => Err("missing to".to_string()),
        },
    )?;
    no_repeats(
        value,
        &rules,
        "from",
        |r| &r.from,
        |r, j| format!("from \"{}\" is already mapped by entry {j}", r.from),
    )?;
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_parts() {
        let u = RemapUrl::parse("http://[::1]:9000", false).unwrap();
        assert_eq!(
            (u.host.as_deref(), u.port, u.path.as_str()),
            (Some("::1"), Some(9000), "/")
        );
        assert_eq!(u.to_string(), "http://[::1]:9000/");
        let any = RemapUrl::parse("/static/", true).unwrap();
        assert_eq!(
            (any.host, any.port, any.path.as_str()),
            (None, None, "/static/")
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "https://a/",
            "ftp://a/",
            "http://",
            "http:///x",
            "http://a:0/",
            "http://a:99999/",
            "http://a:/",
            "http://u@a/",
            "http://a b/",
            "http://[::1/",
            "http://[zz]/",
            "http://a/x y",
            "http://a/#f",
            "a.com/",
            "",
        ] {
            assert!(RemapUrl::parse(bad, true).is_err(), "{bad:?} accepted");
        }
        assert!(RemapUrl::parse("/", false).is_err(), "to must have a host");
    }

    #[test]
    fn https_is_for_origins_and_defaults_to_443() {
        let u = RemapUrl::parse("https://Origin.test/x", false).unwrap();
        assert!(u.tls);
        assert_eq!((u.port_or_default(), u.scheme()), (443, "https"));
        assert_eq!(u.to_string(), "https://origin.test/x");
        assert_eq!(RemapUrl::parse(&u.to_string(), false).unwrap(), u);
        assert!(
            RemapUrl::parse("https://a/", true).is_err(),
            "a from is http"
        );
    }
}
