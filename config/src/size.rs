//! Byte sizes as operators write them: `"4096"`, `"256M"`, `"1G"` — digits with an
//! optional binary (1024-based) `K`, `M`, `G` or `T` suffix.

/// Parses a size string to bytes. Surrounding whitespace is ignored; the suffix may be
/// upper or lower case.
///
/// # Examples
/// ```
/// assert_eq!(config::parse_size("64M"), Ok(64 << 20));
/// assert_eq!(config::parse_size("4096"), Ok(4096));
/// assert!(config::parse_size("1.5G").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        Some(b'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected a size such as \"4096\", \"256M\" or \"1G\" (digits with an optional K, M, G or T suffix), got {s:?}"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Renders bytes with the largest suffix that divides them exactly (`64M`, `1000`), so
/// that [`parse_size`] gives the same number back.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0".to_string();
    }
    for (shift, suffix) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if bytes.trailing_zeros() >= shift {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_binary_and_case_insensitive() {
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("256M"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size(" 0 "), Ok(0));
    }

    #[test]
    fn malformed_and_overflowing_sizes_are_refused() {
        for bad in [
            "",
            "M",
            "-1",
            "1.5G",
            "1 G",
            "1MB",
            "0x10",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size("17000000000T")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn format_round_trips() {
        for n in [0, 1, 1000, 1024, 1536, 64 << 20, 3 << 30, 5 << 40, u64::MAX] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(64 << 20), "64M");
        assert_eq!(format_size(1536), "1536");
    }
}
