//! The Turnstile daemon: start-up, ports, HTTP proxying, blind tunnels, the stats
//! endpoint, the cache and the control socket, wired onto `iocore` and `config`.

#![deny(missing_docs, unreachable_pub)]

pub mod access_log;
pub mod cache;
pub mod ctl;
pub mod daemon;
pub mod error;
pub mod gate;
pub mod http;
pub mod log;
pub mod notify;
pub mod pid_file;
pub mod ports;
pub mod signals;
pub mod stats_http;
pub mod tls;
pub mod upgrade;
