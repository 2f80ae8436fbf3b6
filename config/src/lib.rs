//! records.toml parsing (in progress).
