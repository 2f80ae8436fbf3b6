//! Loop protection (SPEC §10): the `Via` entry this proxy adds names it
//! (`proxy.config.proxy_name`, else the host name) and carries a token drawn when the
//! process starts, `1.1 NAME (turnstile/VERSION; id=TOKEN)` — a received-by pseudonym and
//! a comment, as RFC 9110 §7.6.3 allows — so that two Turnstiles on one host, or two
//! with one name, are never taken for each other. A request whose `Via` already holds
//! this process's token has been here before: it is answered 508 and never forwarded.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// This proxy's `Via` entry and the token in it.
#[derive(Clone, Debug)]
pub struct ViaEntry {
    /// The whole entry, e.g. `1.1 edge-1 (turnstile/0.1.0; id=5f0c…)`.
    pub entry: String,
    /// `id=TOKEN`, what the loop check looks for.
    pub token: String,
}

impl ViaEntry {
    /// The entry for a proxy called `name` (empty: the host name) running `server`, with
    /// a fresh token.
    pub fn new(name: &str, server: &str) -> ViaEntry {
        let name = if name.is_empty() {
            host_name()
        } else {
            name.to_string()
        };
        let token = format!("id={:016x}", instance_token());
        ViaEntry {
            entry: format!("1.1 {name} ({server}; {token})"),
            token,
        }
    }

    /// Whether any of `values` (the request's `Via` field lines) holds this token.
    pub fn seen_in<'a>(&self, values: impl Iterator<Item = &'a [u8]>) -> bool {
        let token = self.token.as_bytes();
        values.into_iter().any(|v| {
            v.windows(token.len()).enumerate().any(|(i, w)| {
                // The token, not a longer one that begins with it.
                w == token && !matches!(v.get(i + token.len()), Some(b) if b.is_ascii_hexdigit())
            })
        })
    }
}

/// 64 random bits: std's per-process random hash keys, over the pid and the clock.
fn instance_token() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.finish()
}

/// The host name (Linux's), as a Via pseudonym; "localhost" when it cannot be read.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_via_holding_our_token_is_a_loop_and_others_are_not() {
        let me = ViaEntry::new("edge", "turnstile/0");
        let other = ViaEntry::new("edge", "turnstile/0");
        assert_ne!(me.token, other.token, "two processes, two tokens");
        assert!(me.entry.starts_with("1.1 edge (turnstile/0; id="));
        let vias = [b"1.0 fred".as_slice(), other.entry.as_bytes()];
        assert!(!me.seen_in(vias.into_iter()));
        let looped = format!("1.1 a, {}", me.entry);
        assert!(me.seen_in([looped.as_bytes()].into_iter()));
        let longer = format!("{}0", me.token);
        assert!(!me.seen_in([longer.as_bytes()].into_iter()));
    }

    #[test]
    fn the_default_name_is_the_host_name() {
        let e = ViaEntry::new("", "turnstile/0");
        let name = e.entry.split(' ').nth(1).unwrap();
        assert!(!name.is_empty() && !name.contains('('));
    }
}
