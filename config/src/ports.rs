//! `proxy.config.http.server_ports` (SPEC §3.1): the ATS descriptor string
//! (`"8080 8080:ipv6 9000:blind:tunnel=[127.0.0.1:5432] 8081:accept_threads=4"`) and the
//! equivalent array of tables, both read into [`PortSpec`]s through one draft so the two
//! forms cannot disagree about what is valid.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::Problem;
use crate::value::{expect_bool, expect_int, expect_str, read_tables, Value};

/// Largest number of accept threads a port (or `proxy.config.accept_threads`) may ask for.
pub const MAX_ACCEPT_THREADS: u32 = 256;

/// Address family a port listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Family {
    /// IPv4 (`ipv4`, the default).
    #[default]
    Ipv4,
    /// IPv6 (`ipv6`).
    Ipv6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// `"ipv4"` or `"ipv6"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// What a port does with its connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum PortKind {
    /// The HTTP proxy.
    #[default]
    Http,
    /// A raw TCP relay (`blind`) to `tunnel`.
    Blind {
        /// `HOST:PORT` to relay to, as written (an IPv6 host in brackets).
        tunnel: String,
    },
}

/// One listening port.
///
/// # Examples
/// ```
/// let ports = config::parse_server_ports("8080 9000:blind:tunnel=[127.0.0.1:5432]").unwrap();
/// assert_eq!(ports[1].to_string(), "9000:blind:tunnel=[127.0.0.1:5432]");
/// assert_eq!(ports[0].bind_addr().to_string(), "0.0.0.0:8080");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// TCP port; 0 asks the OS for an ephemeral port.
    pub port: u16,
    /// Address family; agrees with `ip_in` when that is set.
    pub family: Family,
    /// Address to bind (`ip-in=`); `None` binds the family's any-address.
    pub ip_in: Option<IpAddr>,
    /// An inherited, already listening socket to use instead of binding (`fd=N`).
    pub fd: Option<i32>,
    /// HTTP or blind tunnel.
    pub kind: PortKind,
    /// Per-port override of `proxy.config.accept_threads` (0..=256); reloadable.
    pub accept_threads: Option<u32>,
    /// Accept by periodic NetAccept events (SPEC §4) instead of threads or epoll.
    pub periodic: bool,
    /// Set SO_REUSEPORT on the listening socket.
    pub reuseport: bool,
    /// Every connection starts with a PROXY protocol v1 or v2 header (`pp`, SPEC §10);
    /// HTTP ports only.
    pub pp: bool,
    /// Terminate TLS (`ssl`, SPEC §9): HTTP over TLS, or with `blind`, TLS terminated
    /// and then the relay.
    pub ssl: bool,
}

impl PortSpec {
    /// An IPv4 HTTP port on every address with no overrides, as the descriptor `"PORT"`.
    pub fn new(port: u16) -> PortSpec {
        PortSpec {
            port,
            family: Family::Ipv4,
            ip_in: None,
            fd: None,
            kind: PortKind::Http,
            accept_threads: None,
            periodic: false,
            reuseport: false,
            pp: false,
            ssl: false,
        }
    }

    /// The address to bind: `ip_in`, else `0.0.0.0` or `[::]` by family.
    pub fn bind_addr(&self) -> SocketAddr {
        let ip = self.ip_in.unwrap_or(match self.family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        SocketAddr::new(ip, self.port)
    }

    /// Whether `other` is the same listening socket, differing at most in
    /// `accept_threads` — the one port setting a reload can change live.
    pub fn same_listener(&self, other: &PortSpec) -> bool {
        PortSpec {
            accept_threads: None,
            ..self.clone()
        } == PortSpec {
            accept_threads: None,
            ..other.clone()
        }
    }
}

/// For each port of `running`, the port of `new` that is the same listener
/// ([`PortSpec::same_listener`]) of the same rank among equal ones, if any: `"0 0"` are
/// two ports, so the second running one is the second new one, not the first again.
/// Ranks are counted within each list, so equal ports match in order wherever the
/// others moved to.
pub fn match_listeners<'a>(running: &[PortSpec], new: &'a [PortSpec]) -> Vec<Option<&'a PortSpec>> {
    running
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let rank = running[..i].iter().filter(|q| q.same_listener(p)).count();
            new.iter().filter(|q| q.same_listener(p)).nth(rank)
        })
        .collect()
}

impl fmt::Display for PortSpec {
    /// The descriptor string form; [`parse_server_ports`] reads it back to an equal spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if self.family == Family::Ipv6 {
            f.write_str(":ipv6")?;
        }
        match self.ip_in {
            Some(IpAddr::V4(a)) => write!(f, ":ip-in={a}")?,
            Some(IpAddr::V6(a)) => write!(f, ":ip-in=[{a}]")?,
            None => {}
        }
        if let Some(fd) = self.fd {
            write!(f, ":fd={fd}")?;
        }
        if let PortKind::Blind { tunnel } = &self.kind {
            write!(f, ":blind:tunnel=[{tunnel}]")?;
        }
        if self.ssl {
            f.write_str(":ssl")?;
        }
        if let Some(n) = self.accept_threads {
            write!(f, ":accept_threads={n}")?;
        }
        if self.periodic {
            f.write_str(":periodic")?;
        }
        if self.reuseport {
            f.write_str(":reuseport")?;
        }
        if self.pp {
            f.write_str(":pp")?;
        }
        Ok(())
    }
}

/// Renders ports as one descriptor string, space separated.
pub fn format_server_ports(ports: &[PortSpec]) -> String {
    let descriptors: Vec<String> = ports.iter().map(PortSpec::to_string).collect();
    descriptors.join(" ")
}

/// Parses the descriptor string of `proxy.config.http.server_ports`. Descriptors are
/// separated by spaces or commas, tokens by `:`; a value holding `:` goes in brackets.
/// Never panics; the error names the descriptor and token at fault.
///
/// # Examples
/// ```
/// let err = config::parse_server_ports("8080 8081:foo").unwrap_err();
/// assert_eq!(err, r#"descriptor "8081:foo": unknown token "foo""#);
/// ```
pub fn parse_server_ports(s: &str) -> Result<Vec<PortSpec>, String> {
    let descriptors = split_top_level(s, |c| c.is_whitespace() || c == ',')
        .map_err(|m| format!("{m} in {s:?}"))?;
    let mut ports = Vec::new();
    for d in descriptors.into_iter().filter(|d| !d.is_empty()) {
        let spec = parse_descriptor(d).map_err(|m| format!("descriptor \"{d}\": {m}"))?;
        ports.push(spec);
    }
    check_port_list(&ports)?;
    Ok(ports)
}

/// Reads either form of the record's value.
pub(crate) fn ports_from_value(value: &Value) -> Result<Vec<PortSpec>, Vec<Problem>> {
    match value {
        Value::Str(s) => parse_server_ports(s).map_err(|m| vec![Problem::new(m)]),
        Value::Array(_) => {
            let ports = read_tables(
                value,
                "an array of port tables",
                PortDraft::table_field,
                PortDraft::finish,
            )?;
            check_port_list(&ports).map_err(|m| vec![Problem::new(m)])?;
            Ok(ports)
        }
        other => Err(vec![Problem::new(format!(
            "expected a descriptor string such as \"8080 8080:ipv6\" or an array of port tables, got {}",
            other.describe()
        ))]),
    }
}

/// The rules that hold for the list as a whole.
fn check_port_list(ports: &[PortSpec]) -> Result<(), String> {
    if ports.is_empty() {
        return Err("no ports given; at least one, such as \"8080\", is needed".to_string());
    }
    let mut seen: HashMap<(u16, Family, Option<IpAddr>), &PortSpec> = HashMap::new();
    for p in ports.iter().filter(|p| p.port != 0) {
        if let Some(first) = seen.insert((p.port, p.family, p.ip_in), p) {
            return Err(format!(
                "descriptor \"{p}\" duplicates \"{first}\" (same port, family and address)"
            ));
        }
    }
    Ok(())
}

/// Splits `s` at `is_sep` characters outside brackets.
fn split_top_level(s: &str, is_sep: impl Fn(char) -> bool) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => return Err("\"]\" without \"[\"".to_string()),
            ']' => depth -= 1,
            c if depth == 0 && is_sep(c) => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err("\"[\" without \"]\"".to_string());
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_descriptor(d: &str) -> Result<PortSpec, String> {
    let mut draft = PortDraft::default();
    for token in split_top_level(d, |c| c == ':')? {
        draft.token(token)?;
    }
    draft.finish()
}

/// `[v]` → `v`, when the brackets enclose the whole value.
fn unbracket(v: &str) -> &str {
    let Some(inner) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return v;
    };
    // "[a]:[b]" starts and ends with brackets but they are not one pair.
    let mut depth = 0usize;
    for c in inner.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => return v,
            ']' => depth -= 1,
            _ => {}
        }
    }
    inner
}

/// A port being read, token by token or field by field; `finish` checks the whole.
#[derive(Default)]
struct PortDraft {
    port: Option<u16>,
    family: Option<Family>,
    ip_in: Option<IpAddr>,
    fd: Option<i32>,
    blind: Option<bool>,
    tunnel: Option<String>,
    accept_threads: Option<u32>,
    periodic: Option<bool>,
    reuseport: Option<bool>,
    pp: Option<bool>,
    ssl: Option<bool>,
}

const TABLE_FIELDS: &str =
    "port, family, ip_in, fd, kind, tunnel, accept_threads, periodic, reuseport, pp, ssl";

/// Stores `value` in `slot` unless the descriptor already set it.
fn once<T>(slot: &mut Option<T>, value: T, token: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("token \"{token}\" conflicts with an earlier one"));
    }
    *slot = Some(value);
    Ok(())
}

/// Digits only, as an i64 (so range checks are shared with TOML integers).
fn digits(v: &str, what: &str) -> Result<i64, String> {
    if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected {what}, got {v:?}"));
    }
    v.parse().map_err(|_| format!("expected {what}, got {v:?}"))
}

fn port_number(n: i64) -> Result<u16, String> {
    expect_int(&Value::Int(n), 0, 65535, "a port number").map(|n| n as u16)
}

fn fd_number(n: i64) -> Result<i32, String> {
    expect_int(&Value::Int(n), 0, i64::from(i32::MAX), "a file descriptor").map(|n| n as i32)
}

fn accept_threads_number(n: i64) -> Result<u32, String> {
    expect_int(
        &Value::Int(n),
        0,
        i64::from(MAX_ACCEPT_THREADS),
        "a number of accept threads",
    )
    .map(|n| n as u32)
}

fn ip_address(v: &str) -> Result<IpAddr, String> {
    unbracket(v)
        .parse()
        .map_err(|_| format!("expected an IPv4 or [IPv6] address, got {v:?}"))
}

/// Whether a blind port `port` (bound to `ip_in`, else every address) relays to
/// itself: the same port on a loopback or unspecified address, `localhost`, or its own
/// bound address.
fn tunnels_to_itself(port: u16, ip_in: Option<IpAddr>, tunnel: &str) -> bool {
    let Some((host, to)) = tunnel.rsplit_once(':') else {
        return false;
    };
    if port == 0 || to.parse() != Ok(port) {
        return false;
    }
    let host = host.trim_matches(['[', ']']);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| {
        Some(ip) == ip_in || (ip_in.is_none() && (ip.is_loopback() || ip.is_unspecified()))
    })
}

/// `HOST:PORT`, the host possibly a bracketed IPv6 address.
fn tunnel_target(v: &str) -> Result<String, String> {
    let bad = || format!("expected HOST:PORT, got {v:?}");
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    let port = digits(port, "a port number").map_err(|_| bad())?;
    if !host_ok || !(1..=65535).contains(&port) {
        return Err(bad());
    }
    Ok(v.to_string())
}

impl PortDraft {
    /// One `:`-separated token of a descriptor.
    fn token(&mut self, token: &str) -> Result<(), String> {
        if token.is_empty() {
            return Err("empty token".to_string());
        }
        if token.bytes().all(|b| b.is_ascii_digit()) {
            let port = digits(token, "a port number")
                .and_then(port_number)
                .map_err(|_| format!("port \"{token}\" is not in 0..=65535"))?;
            if self.port.is_some() {
                return Err(format!("second port number \"{token}\""));
            }
            self.port = Some(port);
            return Ok(());
        }
        let (name, value) = match token.split_once('=') {
            Some((n, v)) => (n, Some(unbracket(v))),
            None => (token, None),
        };
        let in_token = |m: String| format!("token \"{token}\": {m}");
        match (name, value) {
            ("ipv4", None) => once(&mut self.family, Family::Ipv4, token),
            ("ipv6", None) => once(&mut self.family, Family::Ipv6, token),
            ("blind", None) => once(&mut self.blind, true, token),
            ("periodic", None) => once(&mut self.periodic, true, token),
            ("reuseport", None) => once(&mut self.reuseport, true, token),
            ("pp", None) => once(&mut self.pp, true, token),
            ("ssl", None) => once(&mut self.ssl, true, token),
            ("ip-in", Some(v)) => {
                let ip = ip_address(v).map_err(in_token)?;
                once(&mut self.ip_in, ip, token)
            }
            ("fd", Some(v)) => {
                let fd = digits(v, "a file descriptor")
                    .and_then(fd_number)
                    .map_err(in_token)?;
                once(&mut self.fd, fd, token)
            }
            ("tunnel", Some(v)) => {
                let t = tunnel_target(v).map_err(in_token)?;
                once(&mut self.tunnel, t, token)
            }
            ("accept_threads", Some(v)) => {
                let n = digits(v, "a number of accept threads")
                    .and_then(accept_threads_number)
                    .map_err(in_token)?;
                once(&mut self.accept_threads, n, token)
            }
            ("ipv4" | "ipv6" | "blind" | "periodic" | "reuseport" | "pp" | "ssl", Some(_)) => {
                Err(format!("token \"{token}\": \"{name}\" takes no value"))
            }
            ("ip-in" | "fd" | "tunnel" | "accept_threads", None) => {
                Err(format!("token \"{token}\" needs a value ({name}=...)"))
            }
            _ => Err(format!("unknown token \"{token}\"")),
        }
    }

    /// One field of the array-of-tables form.
    fn table_field(&mut self, key: &str, value: &Value) -> Result<(), String> {
        match key {
            "port" => self.port = Some(port_number(expect_int(value, 0, 65535, "a port number")?)?),
            "family" => {
                self.family = Some(match expect_str(value, "\"ipv4\" or \"ipv6\"")? {
                    "ipv4" => Family::Ipv4,
                    "ipv6" => Family::Ipv6,
                    other => return Err(format!("expected \"ipv4\" or \"ipv6\", got {other:?}")),
                })
            }
            "ip_in" => self.ip_in = Some(ip_address(expect_str(value, "an IP address")?)?),
            "fd" => {
                let n = expect_int(value, 0, i64::from(i32::MAX), "a file descriptor")?;
                self.fd = Some(fd_number(n)?);
            }
            "kind" => {
                self.blind = Some(match expect_str(value, "\"http\" or \"blind\"")? {
                    "http" => false,
                    "blind" => true,
                    other => return Err(format!("expected \"http\" or \"blind\", got {other:?}")),
                })
            }
            "tunnel" => {
                self.tunnel = Some(tunnel_target(expect_str(value, "HOST:PORT")?)?);
            }
            "accept_threads" => {
                let n = expect_int(
                    value,
                    0,
                    i64::from(MAX_ACCEPT_THREADS),
                    "a number of accept threads",
                )?;
                self.accept_threads = Some(accept_threads_number(n)?);
            }
            "periodic" => self.periodic = Some(expect_bool(value)?),
            "reuseport" => self.reuseport = Some(expect_bool(value)?),
            "pp" => self.pp = Some(expect_bool(value)?),
            "ssl" => self.ssl = Some(expect_bool(value)?),
            _ => return Err(format!("unknown field; expected one of {TABLE_FIELDS}")),
        }
        Ok(())
    }

    fn finish(self) -> Result<PortSpec, String> {
        let port = self.port.ok_or("no port number")?;
        let family = match (self.family, self.ip_in) {
            (Some(f), Some(ip)) if Family::of(&ip) != f => {
                return Err(format!("ip-in address {ip} is not {}", f.as_str()))
            }
            (_, Some(ip)) => Family::of(&ip),
            (f, None) => f.unwrap_or_default(),
        };
        let kind = match (self.blind.unwrap_or(false), self.tunnel) {
            (true, Some(tunnel)) if tunnels_to_itself(port, self.ip_in, &tunnel) => {
                return Err(format!(
                    "tunnel=[{tunnel}] is this port itself: each connection would open \
                     another until no descriptor is left"
                ))
            }
            (true, Some(tunnel)) => PortKind::Blind { tunnel },
            (true, None) => return Err("a blind port needs tunnel=[HOST:PORT]".to_string()),
            (false, Some(_)) => return Err("tunnel= is only for blind ports".to_string()),
            (false, None) => PortKind::Http,
        };
        let periodic = self.periodic.unwrap_or(false);
        if let (true, Some(n @ 1..)) = (periodic, self.accept_threads) {
            return Err(format!(
                "periodic conflicts with accept_threads={n} (periodic ports accept on event threads)"
            ));
        }
        let pp = self.pp.unwrap_or(false);
        if pp && matches!(kind, PortKind::Blind { .. }) {
            // A blind port relays a PROXY header untouched: the tunnel's target reads it.
            return Err(
                "pp is for HTTP ports; a blind port relays a PROXY header as it came, for its tunnel's target to read"
                    .to_string(),
            );
        }
        Ok(PortSpec {
            port,
            family,
            ip_in: self.ip_in,
            fd: self.fd,
            kind,
            accept_threads: self.accept_threads,
            periodic,
            reuseport: self.reuseport.unwrap_or(false),
            pp,
            ssl: self.ssl.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_respects_brackets() {
        assert_eq!(
            split_top_level("a:[b:c]:d", |c| c == ':').unwrap(),
            vec!["a", "[b:c]", "d"]
        );
        assert!(split_top_level("a:[b", |c| c == ':').is_err());
        assert!(split_top_level("a]:b", |c| c == ':').is_err());
        assert_eq!(unbracket("[[::1]:80]"), "[::1]:80");
        assert_eq!(unbracket("[a]:[b]"), "[a]:[b]");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let alphabet = [
            "8080",
            ":",
            "[",
            "]",
            "=",
            " ",
            ",",
            "ipv6",
            "ip-in",
            "é",
            "tunnel",
            "99999999999999999999",
            "::1",
            "fd",
            "blind",
            "0",
        ];
        // Every string of up to four pieces from the alphabet.
        let mut inputs = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &inputs {
                for a in alphabet {
                    next.push(format!("{s}{a}"));
                }
            }
            inputs.extend(next);
        }
        for s in inputs {
            let _ = parse_server_ports(&s);
        }
    }

    #[test]
    fn equal_ports_match_by_rank_wherever_the_others_moved() {
        let running = parse_server_ports("0 8080 0:accept_threads=2").unwrap();
        let new = parse_server_ports("8080:accept_threads=3 0:accept_threads=4 0 9000").unwrap();
        let threads: Vec<Option<Option<u32>>> = match_listeners(&running, &new)
            .into_iter()
            .map(|s| s.map(|s| s.accept_threads))
            .collect();
        assert_eq!(threads, [Some(Some(4)), Some(Some(3)), Some(None)]);
        let fewer = parse_server_ports("0").unwrap();
        let matched: Vec<bool> = match_listeners(&running, &fewer)
            .iter()
            .map(Option::is_some)
            .collect();
        assert_eq!(matched, [true, false, false]);
    }
}
