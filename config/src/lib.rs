//! records.toml for Turnstile: the schema of every record (SPEC §3), its defaults,
//! parsing with file-and-line errors (all of them at once), environment overrides, the
//! effective configuration written back as TOML, and what a reload may change live.
//!
//! This crate knows nothing of sockets: it hands the daemon a [`Config`] whose every field
//! is already checked, and the daemon trusts it.
//!
//! # Examples
//! ```
//! let cfg = config::parse(config::DEFAULT_RECORDS, config::EMBEDDED_ORIGIN, &|_| None).unwrap();
//! assert_eq!(cfg, config::Config::default());
//! assert_eq!(cfg.http.server_ports[0].port, 8080);
//! ```
#![deny(missing_docs, unreachable_pub)]

mod connect_ports;
mod env;
mod error;
mod ipnet;
mod lines;
mod load;
mod parent;
mod ports;
mod records;
mod remap;
mod render;
mod schema;
mod size;
mod ssl;
mod value;

pub use connect_ports::ConnectPorts;
pub use env::env_var_name;
pub use error::{ConfigError, ConfigErrors};
pub use ipnet::IpNet;
pub use lines::Lines;
pub use load::{load, load_record_leniently, load_with, parse, DEFAULT_RECORDS};
pub use parent::{ParentHost, ParentRule, RoundRobin, MAX_PARENT_WEIGHT};
pub use ports::{
    format_server_ports, match_listeners, parse_server_ports, Family, PortKind, PortSpec,
    MAX_ACCEPT_THREADS,
};
pub use records::{
    record_names, reloadable, MAX_SOCKET_PATH_LEN, MAX_TIMEOUT_S, MIN_SPAN_SIZE,
    PORT_ACCEPT_THREADS,
};
pub use remap::{RemapRule, RemapUrl};
pub use schema::{
    Admin, Affinity, Cache, CacheSpan, Config, ExecThread, Http, Log, Net, ParentProxy,
    SockOptions, Stats, Stop, ThrottleMode, UrlRemap, WaitForCache, EMBEDDED_ORIGIN,
};
pub use size::{format_size, parse_size};
pub use ssl::{DestIp, Ssl, SslCert, VerifyPolicy};
