//! The one error type of the crate: a [`ConfigError`] names where a bad value came from
//! (file and line, environment variable, or command-line flag), which record it was for
//! and what was wrong; [`ConfigErrors`] carries every one found in a pass, so an operator
//! fixes a file in one go instead of one error per restart.

use std::fmt;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the value came from: the file name given to [`crate::parse`] (a path, or
    /// [`crate::EMBEDDED_ORIGIN`]), `environment variable NAME`, or the source given to
    /// [`crate::Config::set`].
    pub origin: String,
    /// 1-based line in `origin`, when it is a file and the line is known.
    pub line: Option<usize>,
    /// Full record name (`proxy.config.net.accept_period`, `remap`); empty when the error
    /// is not about one record (TOML syntax, unreadable file).
    pub record: String,
    /// What is wrong, with the value found (`expected ... ≥ 1, got -5`).
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `records.toml:14: proxy.config.net.accept_period: expected ..., got -5`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.record.is_empty() {
            write!(f, ": {}", self.record)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every error found while reading one configuration, in the order found (file order,
/// then environment overrides). Never empty when returned as an `Err`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One error a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A problem found in one record's value, before it is tied to an origin and record name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Line of the offending key inside the value (an entry of an array of tables);
    /// `None` means the record's own line.
    pub(crate) line: Option<usize>,
    pub(crate) message: String,
}

impl Problem {
    /// A problem with the record's value as a whole.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Problem {
            line: None,
            message: message.into(),
        }
    }

    /// A problem at a known line.
    pub(crate) fn at(line: Option<usize>, message: impl Into<String>) -> Self {
        Problem {
            line,
            message: message.into(),
        }
    }
}
