//! `proxy.config.http.connect_ports`: the origin ports a CONNECT request may open a
//! tunnel to, as ATS writes them: ports and inclusive ranges separated by spaces or
//! commas (`"443 563 8000-8100"`), or `*` for every port.

use std::fmt;

/// Ports a CONNECT may tunnel to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPorts {
    /// Inclusive ranges, in the order written.
    ranges: Vec<(u16, u16)>,
}

impl ConnectPorts {
    /// Reads the record's string; the error says what is wrong with which item.
    pub fn parse(s: &str) -> Result<ConnectPorts, String> {
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port (0..=65535)"))
        };
        let mut ranges = Vec::new();
        for item in s.split([' ', ',', '\t']).filter(|i| !i.is_empty()) {
            ranges.push(match item {
                "*" => (0, u16::MAX),
                _ => match item.split_once('-') {
                    Some((lo, hi)) => {
                        let (lo, hi) = (port(lo)?, port(hi)?);
                        if lo > hi {
                            return Err(format!("range {item:?} runs backwards"));
                        }
                        (lo, hi)
                    }
                    None => {
                        let p = port(item)?;
                        (p, p)
                    }
                },
            });
        }
        Ok(ConnectPorts { ranges })
    }

    /// Whether a tunnel to `port` is allowed.
    pub fn allows(&self, port: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&port))
    }
}

impl Default for ConnectPorts {
    /// ATS's default: 443 only.
    fn default() -> ConnectPorts {
        ConnectPorts {
            ranges: vec![(443, 443)],
        }
    }
}

impl fmt::Display for ConnectPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match (lo, hi) {
                (0, u16::MAX) => f.write_str("*")?,
                (lo, hi) if lo == hi => write!(f, "{lo}")?,
                (lo, hi) => write!(f, "{lo}-{hi}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_ranges_and_star() {
        let p = ConnectPorts::parse("443, 563 8000-8100").unwrap();
        assert!(p.allows(443) && p.allows(563) && p.allows(8000) && p.allows(8100));
        assert!(!p.allows(80) && !p.allows(8101) && !p.allows(444));
        assert_eq!(p.to_string(), "443 563 8000-8100");
        assert_eq!(ConnectPorts::parse(&p.to_string()).unwrap(), p);
        let all = ConnectPorts::parse("*").unwrap();
        assert!(all.allows(0) && all.allows(1) && all.allows(65535));
        assert_eq!(all.to_string(), "*");
        let none = ConnectPorts::parse("").unwrap();
        assert!(!none.allows(443));
        assert_eq!(ConnectPorts::default().to_string(), "443");
    }

    #[test]
    fn bad_items_are_named() {
        for (s, needle) in [
            ("443 https", "\"https\" is not a port"),
            ("70000", "\"70000\" is not a port"),
            ("90-80", "range \"90-80\" runs backwards"),
            ("1-", "\"\" is not a port"),
            ("-5", "\"\" is not a port"),
        ] {
            let e = ConnectPorts::parse(s).unwrap_err();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }
}
