//! The typed configuration: one field per record of SPEC §3, grouped as the record names
//! are (`proxy.config.net.accept_period` is `config.net.accept_period_ms`), each holding a
//! value already checked against its record's range. Defaults here are the documented
//! ones; `records.toml` must say the same (a test holds them together).

use std::net::IpAddr;
use std::path::PathBuf;

use crate::connect_ports::ConnectPorts;
use crate::ipnet::IpNet;
use crate::lines::Lines;
use crate::parent::ParentRule;
use crate::ports::PortSpec;
use crate::remap::RemapRule;
use crate::ssl::{Ssl, SslCert};

/// Where [`Config::default`] (and a configuration read from [`crate::DEFAULT_RECORDS`])
/// says it came from.
pub const EMBEDDED_ORIGIN: &str = "<embedded records.toml>";

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the configuration was read from: a file path, or [`EMBEDDED_ORIGIN`].
    pub origin: String,
    /// Records overridden after the file, in the order applied, as `(record, source)`:
    /// the source is the environment variable name, or the name given to
    /// [`Config::set`] (such as a command-line flag).
    pub env_overrides: Vec<(String, String)>,
    /// The file's line of each record it set ([`Config::source_of`] says where a value
    /// came from).
    pub lines: Lines,
    /// `proxy.config.accept_threads`: dedicated blocking accept threads per port;
    /// 0 = accept on the ET_NET event threads. 0..=256. Reloadable.
    pub accept_threads: u32,
    /// `proxy.config.exec_thread.*`: the ET_NET event threads.
    pub exec_thread: ExecThread,
    /// `proxy.config.net.*`: accepting and client sockets.
    pub net: Net,
    /// `proxy.config.http.*`: ports and HTTP timeouts.
    pub http: Http,
    /// `proxy.config.cache.*`.
    pub cache: Cache,
    /// `proxy.config.stats.*`: the stats endpoint.
    pub stats: Stats,
    /// `proxy.config.admin.*`.
    pub admin: Admin,
    /// `proxy.config.stop.*`.
    pub stop: Stop,
    /// `proxy.config.upgrade.*`: the zero-downtime binary upgrade.
    pub upgrade: Upgrade,
    /// `proxy.config.pid_file`: file holding the serving process's pid (rewritten by the
    /// new process of an upgrade); empty = none.
    pub pid_file: PathBuf,
    /// `proxy.config.log.*`.
    pub log: Log,
    /// `proxy.config.url_remap.*`.
    pub url_remap: UrlRemap,
    /// `[[remap]]` rules, in file order. Reloadable.
    pub remap: Vec<RemapRule>,
    /// `proxy.config.proxy_name`: this proxy's name in `Via` (and so in loop detection);
    /// empty = the host name.
    pub proxy_name: String,
    /// `[[parent]]` rules, in file order. Reloadable.
    pub parents: Vec<ParentRule>,
    /// `proxy.config.ssl.*`: TLS files and the origin verification policy.
    pub ssl: Ssl,
    /// `[[ssl_multicert]]` certificates, in file order. Reloadable.
    pub ssl_multicert: Vec<SslCert>,
}

/// `proxy.config.exec_thread.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecThread {
    /// `.autoconfig.enabled`: size ET_NET from the CPU count (× `autoconfig_scale`)
    /// instead of `limit`.
    pub autoconfig_enabled: bool,
    /// `.autoconfig.scale`: ET_NET threads per core; > 0 and ≤ 64.
    pub autoconfig_scale: f64,
    /// `.limit`: ET_NET threads when autoconfig is off; 1..=1024.
    pub limit: u32,
    /// `.affinity`: whether to pin ET_NET threads to cores.
    pub affinity: Affinity,
    /// `.listen`: with accept_threads = 0, one SO_REUSEPORT listening socket per ET_NET
    /// thread instead of one shared socket.
    pub listen: bool,
}

impl ExecThread {
    /// ET_NET threads to start on a machine with `cores` CPUs: `cores × scale` (at least
    /// one) with autoconfig, else `limit`.
    pub fn threads(&self, cores: usize) -> usize {
        if self.autoconfig_enabled {
            ((cores as f64 * self.autoconfig_scale) as usize).max(1)
        } else {
            self.limit as usize
        }
    }
}

/// `proxy.config.exec_thread.affinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Affinity {
    /// `"none"`: threads float.
    #[default]
    None = 0,
    /// `"core"`: pin each ET_NET thread to a core; accept threads avoid ET_NET cores
    /// while a free one exists.
    Core = 1,
}

/// `proxy.config.net.throttle_mode`: what to do at `connections_throttle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThrottleMode {
    /// `"pause"`: stop accepting at the cap, resume below 90 % of it.
    #[default]
    Pause = 0,
    /// `"close"`: accept and close at once, as ATS does.
    Close = 1,
}

macro_rules! named_choices {
    ($t:ty, [$($v:ident),+], [$($n:literal),+]) => {
        impl $t {
            /// Every value, indexed by discriminant.
            pub const ALL: &'static [$t] = &[$(<$t>::$v),+];
            /// The record's spelling of each value, indexed by discriminant.
            pub const NAMES: &'static [&'static str] = &[$($n),+];

            /// The record's spelling of this value.
            pub fn as_str(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }
    };
}

named_choices!(Affinity, [None, Core], ["none", "core"]);
named_choices!(ThrottleMode, [Pause, Close], ["pause", "close"]);

/// `proxy.config.net.sock_options_in`: options set on every accepted client socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SockOptions {
    /// `"nodelay"`: TCP_NODELAY.
    pub nodelay: bool,
    /// `"keepalive"`: SO_KEEPALIVE.
    pub keepalive: bool,
    /// `"linger0"`: SO_LINGER with a zero timeout (close sends RST).
    pub linger0: bool,
}

/// `proxy.config.net.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    /// `.accept_period`: period of periodic NetAccept events, ms; 1..=60000. Reloadable.
    pub accept_period_ms: u64,
    /// `.additional_accepts`: accepts per wake-up beyond the first; -1 = until EAGAIN.
    /// Reloadable. See [`Net::max_accepts_per_wakeup`].
    pub additional_accepts: i64,
    /// `.accept_coalesce`: after a wake-up that accepted, how long an accept thread waits
    /// before it looks at the queue again, µs; 0 = at once; 0..=10000. Reloadable.
    pub accept_coalesce_us: u64,
    /// `.throttle_delay`: pause after a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM),
    /// ms; 1..=60000. Reloadable.
    pub throttle_delay_ms: u64,
    /// `.listen_backlog`: listen(2) backlog; outside 1..=65535 means
    /// /proc/sys/net/core/somaxconn. See [`Net::effective_listen_backlog`].
    pub listen_backlog: i64,
    /// `.defer_accept`: TCP_DEFER_ACCEPT, s; 0 = off; 0..=3600.
    pub defer_accept_s: u32,
    /// `.send_batch`: an event thread sends what it held for its plain-TCP peers until
    /// the end of its batch of events in one io_uring submission (where the kernel has
    /// io_uring); false: a send(2) each.
    pub send_batch: bool,
    /// `.connections_throttle`: cap on open client connections; 0 = none. Reloadable.
    pub connections_throttle: u64,
    /// `.throttle_mode`. Reloadable.
    pub throttle_mode: ThrottleMode,
    /// `.sock_options_in`.
    pub sock_options_in: SockOptions,
    /// `.sock_recv_buffer_size_in`: SO_RCVBUF for client sockets, bytes; 0 = OS default;
    /// ≤ i32::MAX.
    pub sock_recv_buffer_size_in: u32,
    /// `.sock_send_buffer_size_in`: SO_SNDBUF for client sockets, bytes; 0 = OS default;
    /// ≤ i32::MAX.
    pub sock_send_buffer_size_in: u32,
    /// `.sock_notsent_lowat_in`: TCP_NOTSENT_LOWAT for client sockets, bytes; 0 = off;
    /// ≤ i32::MAX.
    pub sock_notsent_lowat_in: u32,
    /// `.default_inactivity_timeout`: s; ≥ 1.
    pub default_inactivity_timeout_s: u64,
}

impl Net {
    /// The backlog to pass to listen(2), or `None` to use /proc/sys/net/core/somaxconn.
    pub fn effective_listen_backlog(&self) -> Option<i32> {
        (1..=65535)
            .contains(&self.listen_backlog)
            .then_some(self.listen_backlog as i32)
    }

    /// Sockets one wake-up may accept, or `None` for "until EAGAIN".
    pub fn max_accepts_per_wakeup(&self) -> Option<u64> {
        u64::try_from(self.additional_accepts)
            .ok()
            .map(|n| n.saturating_add(1))
    }
}

/// `proxy.config.http.wait_for_cache` (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WaitForCache {
    /// 0: open ports at once.
    #[default]
    No = 0,
    /// 1: open ports when cache initialisation ends, well or not.
    Wait = 1,
    /// 2: as 1, and exit 1 if no span is usable.
    WaitRequireAny = 2,
    /// 3: as 1, and exit 1 if any span fails.
    WaitRequireAll = 3,
}

impl WaitForCache {
    /// Every value, indexed by its record number.
    pub const ALL: &'static [WaitForCache] = &[
        WaitForCache::No,
        WaitForCache::Wait,
        WaitForCache::WaitRequireAny,
        WaitForCache::WaitRequireAll,
    ];

    /// The record's number, 0..=3.
    pub fn level(self) -> u8 {
        self as u8
    }
}

/// `proxy.config.http.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    /// `.accept_no_activity_timeout`: a new connection that sends nothing this long is
    /// closed, s; ≥ 1.
    pub accept_no_activity_timeout_s: u64,
    /// `.keep_alive_no_activity_timeout_in`: idle keep-alive client connections, s; ≥ 1.
    pub keep_alive_no_activity_timeout_in_s: u64,
    /// `.keep_alive_no_activity_timeout_out`: idle pooled origin connections are closed
    /// after this long, s; ≥ 1.
    pub keep_alive_no_activity_timeout_out_s: u64,
    /// `.server_ports`: listening ports (SPEC §3.1); never empty. Only per-port
    /// `accept_threads` is reloadable.
    pub server_ports: Vec<PortSpec>,
    /// `.request_header_max_size`: bytes of request header section, more → 431;
    /// 1024..=16 MiB.
    pub request_header_max_size: usize,
    /// `.connect_attempts_timeout`: origin connect timeout → 502, s; ≥ 1. Also how long
    /// a request waits for a place under `per_server.connection.max` (then 503).
    pub connect_attempts_timeout_s: u64,
    /// `.per_server.connection.max`: origin connections in use (each carrying one
    /// transaction) to one origin address, over all threads; more requests wait for one
    /// to finish. Idle pooled connections do not count. 0 = no limit. Reloadable.
    pub per_server_connection_max: usize,
    /// `.transaction_no_activity_timeout_out`: origin silent this long → 504, s; ≥ 1.
    pub transaction_no_activity_timeout_out_s: u64,
    /// `.transaction_no_activity_timeout_in`: a client silent this long in the middle
    /// of sending a request body → 408, s; ≥ 1.
    pub transaction_no_activity_timeout_in_s: u64,
    /// `.underscores_in_headers`: forward request fields whose name holds `_` (nginx's
    /// `underscores_in_headers`); false drops them.
    pub underscores_in_headers: bool,
    /// `.connect_ports`: origin ports a CONNECT may tunnel to (forward proxying only).
    /// Reloadable.
    pub connect_ports: ConnectPorts,
    /// `.wait_for_cache`.
    pub wait_for_cache: WaitForCache,
    /// `.cache.http`: cache HTTP responses.
    pub cache_http: bool,
    /// `.cache.heuristic_min_lifetime`: least heuristic freshness, s. Reloadable.
    pub heuristic_min_lifetime_s: u64,
    /// `.cache.heuristic_max_lifetime`: most heuristic freshness, s. Reloadable.
    pub heuristic_max_lifetime_s: u64,
    /// `.background_fill_completed_threshold`: a response being stored whose client
    /// leaves is still read from its origin and stored when at least this share of it
    /// had come (0: always; of a body of unknown length only at 0). Reloadable.
    pub background_fill_threshold: f64,
    /// `.cache.heuristic_lm_factor`: heuristic freshness as this share of the time since
    /// Last-Modified. Reloadable.
    pub heuristic_lm_factor: f64,
    /// `.cache.max_stale_age`: nothing stale by more than this is served, s. Reloadable.
    pub max_stale_age_s: u64,
    /// `.cache.targeted_cache_control_headers`: RFC 9213 fields this cache obeys before
    /// Cache-Control, most specific first, as written (comma-separated); "" = none.
    /// Reloadable.
    pub targeted_cache_control_headers: String,
    /// `.cache.purge_allow_ip`: who may send PURGE. Reloadable.
    pub purge_allow_ip: Vec<IpNet>,
    /// `.parent_proxy.*`: parent health and retries (SPEC §10).
    pub parent_proxy: ParentProxy,
    /// `.proxy_protocol_allowlist`: addresses whose PROXY protocol headers `pp` ports
    /// accept. Reloadable.
    pub proxy_protocol_allowlist: Vec<IpNet>,
}

/// `proxy.config.http.parent_proxy.*`. All reloadable.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentProxy {
    /// `.retry_time`: a parent marked down is tried again (by one request) after this
    /// long, s; ≥ 1.
    pub retry_time_s: u64,
    /// `.fail_threshold`: connect failures in a row that mark a parent down; ≥ 1.
    pub fail_threshold: u32,
    /// `.total_connect_attempts`: parents tried for one request before it goes to the
    /// origin (`go_direct`) or fails with 502; ≥ 1.
    pub total_connect_attempts: u32,
}

/// One cache span of `proxy.config.cache.storage`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheSpan {
    /// File or directory holding the span.
    pub path: PathBuf,
    /// Size, bytes; ≥ 1.
    pub size: u64,
}

/// `proxy.config.cache.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cache {
    /// `.storage`: spans; empty = no disk cache. Paths are distinct.
    pub storage: Vec<CacheSpan>,
    /// `.ram_cache.size`: bytes.
    pub ram_cache_size: u64,
    /// `.max_doc_size`: larger objects stream through uncached, bytes; 0 = no limit.
    pub max_doc_size: u64,
    /// `.fill_read_ahead`: bytes of responses being stored that all fills together may
    /// hold ahead of their clients; 0 = none (a fill goes at its client's pace).
    pub fill_read_ahead: u64,
    /// `.limits.http.max_alts`: variants (`Vary`) kept per URL, the oldest dropped
    /// beyond it; 0 = no limit.
    pub max_alts: usize,
}

/// `proxy.config.stats.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// `.path`: stats endpoint prefix on every HTTP port; starts with `/`.
    pub path: String,
    /// `.allow_ip`: client addresses or networks allowed to read stats. Reloadable.
    pub allow_ip: Vec<IpNet>,
}

impl Stats {
    /// Whether a client at `ip` may read stats.
    pub fn allows(&self, ip: &IpAddr) -> bool {
        self.allow_ip.iter().any(|net| net.contains(ip))
    }
}

/// `proxy.config.admin.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// `.socket`: path of the control Unix socket; not empty.
    pub socket: PathBuf,
}

/// `proxy.config.stop.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    /// `.shutdown_timeout`: graceful drain limit, s.
    pub shutdown_timeout_s: u64,
}

/// `proxy.config.upgrade.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Upgrade {
    /// `.ready_timeout`: how long a new binary has to become ready during an upgrade
    /// before it is abandoned, s; at least 1.
    pub ready_timeout_s: u64,
}

/// `proxy.config.log.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// `.access_log`: file the access log is appended to, one line per request; empty =
    /// no access log. Reopened on reload (for log rotation).
    pub access_log: PathBuf,
}

/// `proxy.config.url_remap.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlRemap {
    /// `.remap_required`: false = also act as a forward proxy for absolute-form requests.
    pub remap_required: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            origin: EMBEDDED_ORIGIN.to_string(),
            env_overrides: Vec::new(),
            lines: Lines::default(),
            accept_threads: 1,
            exec_thread: ExecThread {
                autoconfig_enabled: true,
                autoconfig_scale: 1.0,
                limit: 2,
                affinity: Affinity::None,
                listen: false,
            },
            net: Net {
                accept_period_ms: 10,
                additional_accepts: -1,
                accept_coalesce_us: 100,
                throttle_delay_ms: 50,
                listen_backlog: -1,
                defer_accept_s: 0,
                send_batch: true,
                connections_throttle: 30_000,
                throttle_mode: ThrottleMode::Pause,
                sock_options_in: SockOptions {
                    nodelay: true,
                    keepalive: false,
                    linger0: false,
                },
                sock_recv_buffer_size_in: 0,
                sock_send_buffer_size_in: 0,
                sock_notsent_lowat_in: 131_072,
                default_inactivity_timeout_s: 86_400,
            },
            http: Http {
                accept_no_activity_timeout_s: 120,
                keep_alive_no_activity_timeout_in_s: 120,
                keep_alive_no_activity_timeout_out_s: 120,
                server_ports: vec![PortSpec::new(8080)],
                request_header_max_size: 131_072,
                connect_attempts_timeout_s: 30,
                per_server_connection_max: 0,
                connect_ports: ConnectPorts::default(),
                transaction_no_activity_timeout_out_s: 30,
                transaction_no_activity_timeout_in_s: 30,
                underscores_in_headers: false,
                wait_for_cache: WaitForCache::No,
                cache_http: true,
                heuristic_min_lifetime_s: 3600,
                heuristic_max_lifetime_s: 86_400,
                heuristic_lm_factor: 0.10,
                background_fill_threshold: 0.0,
                max_stale_age_s: 604_800,
                targeted_cache_control_headers: "CDN-Cache-Control".to_string(),
                purge_allow_ip: vec![
                    IpNet::host(IpAddr::from([127, 0, 0, 1])),
                    IpNet::host(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
                ],
                parent_proxy: ParentProxy {
                    retry_time_s: 300,
                    fail_threshold: 10,
                    total_connect_attempts: 4,
                },
                proxy_protocol_allowlist: vec![
                    IpNet::host(IpAddr::from([127, 0, 0, 1])),
                    IpNet::host(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
                ],
            },
            cache: Cache {
                storage: Vec::new(),
                ram_cache_size: 64 << 20,
                max_doc_size: 0,
                fill_read_ahead: 256 << 20,
                max_alts: 5,
            },
            stats: Stats {
                path: "/_stats".to_string(),
                allow_ip: vec![
                    IpNet::host(IpAddr::from([127, 0, 0, 1])),
                    IpNet::host(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
                ],
            },
            admin: Admin {
                socket: PathBuf::from("turnstile.sock"),
            },
            stop: Stop {
                shutdown_timeout_s: 30,
            },
            upgrade: Upgrade {
                ready_timeout_s: 30,
            },
            pid_file: PathBuf::new(),
            log: Log {
                access_log: PathBuf::new(),
            },
            url_remap: UrlRemap {
                remap_required: true,
            },
            remap: Vec::new(),
            proxy_name: String::new(),
            parents: Vec::new(),
            ssl: Ssl::default(),
            ssl_multicert: Vec::new(),
        }
    }
}

impl Config {
    /// Where `key` (a record's full name, or `RECORD.N.KEY` as [`Lines::get`] takes) got
    /// its value, as an error about it begins: `records.toml:12`, the file alone when the
    /// line is not known, or `environment variable NAME` (the source given to
    /// [`Config::set`]) when it was overridden.
    pub fn source_of(&self, key: &str) -> String {
        let of_record =
            |r: &str| key == r || key.strip_prefix(r).is_some_and(|k| k.starts_with('.'));
        let overridden = self.env_overrides.iter().find(|(r, _)| of_record(r));
        match (overridden, self.lines.get(key)) {
            (Some((r, source)), _) if *source == crate::env_var_name(r) => {
                format!("environment variable {source}")
            }
            (Some((_, source)), _) => source.clone(),
            (None, Some(line)) => format!("{}:{line}", self.origin),
            (None, None) => self.origin.clone(),
        }
    }

    /// Accept threads for `port`: its own `accept_threads`, else the global one.
    pub fn accept_threads_for(&self, port: &PortSpec) -> u32 {
        port.accept_threads.unwrap_or(self.accept_threads)
    }
}
