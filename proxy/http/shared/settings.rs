//! The settings every HTTP session reads: fixed ones ([`HttpSettings`], with the
//! [`Timeouts`]) and those a reload swaps ([`Live`]). Plain data: any thread reads them.

use super::super::parent::via::ViaEntry;
use super::super::parent::ParentTable;
use super::super::remap::RemapTable;
use std::sync::Arc;
use std::time::Duration;

/// Timeouts of SPEC §3, as durations.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// A new connection that sends nothing (or not a whole head) is closed.
    pub accept_no_activity: Duration,
    /// Idle keep-alive client connections are closed.
    pub keep_alive_in: Duration,
    /// Idle pooled origin connections are closed.
    pub keep_alive_out: Duration,
    /// Origin silent this long → 504.
    pub transaction_no_activity_out: Duration,
    /// Client silent this long mid-body → 408.
    pub transaction_no_activity_in: Duration,
    /// Origin connect limit → 502.
    pub connect: Duration,
    /// Any connection idle this long is closed (tunnels, slow bodies).
    pub default_inactivity: Duration,
}

/// The settings that a reload may change while sessions run.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// Remap rules.
    pub remap: Arc<RemapTable>,
    /// Who may read the stats endpoint.
    pub allow: Arc<Vec<config::IpNet>>,
    /// `per_server.connection.max`: transactions in flight to one origin address at
    /// most, over every thread; more wait for a place. 0: no limit.
    pub origin_max: usize,
    /// `connect_ports`: where a CONNECT may open a tunnel.
    pub connect_ports: Arc<config::ConnectPorts>,
    /// What the cache obeys: heuristics, stale bounds, targeted fields.
    pub cache_policy: Arc<crate::http::caching::CachePolicy>,
    /// `http.cache.purge_allow_ip`: who may send PURGE.
    pub purge_allow: Arc<Vec<config::IpNet>>,
    /// `[[parent]]` rules and the parents' health.
    pub parents: Arc<ParentTable>,
    /// `http.proxy_protocol_allowlist`: whose PROXY headers `pp` ports accept.
    pub proxy_protocol_allow: Arc<Vec<config::IpNet>>,
    /// The certificates of `ssl` ports (`[[ssl_multicert]]`); None without any.
    pub tls_server: Option<Arc<crate::tls::TlsServer>>,
    /// TLS to `https://` origins; None when no rule has one.
    pub tls_client: Option<Arc<crate::tls::TlsClient>>,
}

/// Settings fixed for the daemon's life.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Stats endpoint prefix (`/_stats`).
    pub stats_path: String,
    /// Request header section limit in bytes (→ 431).
    pub max_head: usize,
    /// false: absolute-form requests with no rule are forwarded (forward proxy).
    pub remap_required: bool,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// `server` in stats, e.g. `turnstile/0.1.0`.
    pub server: String,
    /// This proxy's `Via` entry: `1.1 {proxy_name} ({server}; id={token})`.
    pub via: String,
    /// That entry and its instance token, for the loop check.
    pub instance: ViaEntry,
    /// Forward request fields with `_` in their name (`http.underscores_in_headers`).
    pub underscores: bool,
    /// `proxy.config.http.cache.http`.
    pub cache_http: bool,
    /// Largest object stored, bytes (`cache.max_doc_size`, or a bound derived from the
    /// cache's size when that is 0); larger ones stream through uncached.
    pub max_doc_size: u64,
    /// Bytes all fills may hold ahead of their clients (`cache.fill_read_ahead`).
    pub fill_read_ahead: usize,
    /// Variants kept per URL (`cache.limits.http.max_alts`); 0 = no limit.
    pub max_alts: usize,
    /// `net.send_batch`: a batch's plain sends go out in one io_uring submission.
    pub send_batch: bool,
}
