//! TLS (SPEC §9) with rustls on the event threads: termination on `ssl` ports with the
//! certificates of `[[ssl_multicert]]` (`certs.rs`), TLS to `https://` origins checked
//! as `ssl.client.verify.server.policy` says (`verify.rs`), and the sans-I/O glue a
//! session's transport drives (`layer.rs`).
//!
//! What is built here ([`TlsServer`], [`TlsClient`]) is built on the main thread, at
//! start-up and on reload (files are read and certificates parsed there), then handed
//! to the event threads in the live settings: a reload swaps it in at once, and a
//! connection keeps the configuration it started with. The crypto provider is rustls's
//! default, aws-lc-rs (see the README's TLS section for why), and the session ticket key
//! and session cache outlive reloads ([`TlsKeep`]), so a client resumes across them.

pub mod certs;
pub mod layer;
mod verify;

pub use certs::{CertDirs, CertStore};
pub use layer::{Failure, RawIo, TlsLayer, Wrote};

use crate::error::{Error, Result};
use iocore::stats::{Counter, Gauge, Histogram};
use iocore::Registry;
use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::{ClientConfig, ServerConfig};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Server-side TLS sessions kept for resumption by session ID (TLS 1.2, and TLS 1.3
/// clients that do not take tickets), at most.
pub const SESSION_CACHE_SIZE: usize = 20_480;

/// TLS counters and the handshake time (SPEC §9).
pub struct TlsMetrics {
    /// ClientHellos begun (a first byte came) on `ssl` ports: each ends in a success or
    /// a failure (a connection that sent no byte is no attempt).
    pub attempts_in: Arc<Counter>,
    /// Client handshakes completed.
    pub success_in: Arc<Counter>,
    /// Client handshakes that failed, for any reason.
    pub failures_in: Arc<Counter>,
    /// ... by reason ([`Failure`]'s order).
    pub failures_by_reason: Vec<Arc<Counter>>,
    /// Client handshakes that resumed a session (ticket or session ID).
    pub resumed_in: Arc<Counter>,
    /// First ClientHello byte to the end of the handshake, µs.
    pub handshake_time_us: Arc<Histogram>,
    /// Open client connections on `ssl` ports.
    pub current_in: Arc<Gauge>,
    /// Handshakes with origins begun (the TCP connect done): each ends in a success or
    /// a failure.
    pub attempts_out: Arc<Counter>,
    /// Handshakes with origins completed.
    pub success_out: Arc<Counter>,
    /// Handshakes with origins that failed, for any reason.
    pub failures_out: Arc<Counter>,
    /// ... by reason, indexed as `failures_by_reason`: `Some` for [`Failure::OUT`].
    pub failures_out_by_reason: Vec<Option<Arc<Counter>>>,
    /// Origin certificates that did not verify (refused under ENFORCED, logged under
    /// PERMISSIVE).
    pub origin_bad_cert: Arc<Counter>,
    /// Certificates loaded from `[[ssl_multicert]]` now.
    pub certificates: Arc<Gauge>,
    /// Reloads that swapped the certificates in.
    pub cert_reloads: Arc<Counter>,
    /// Reloads refused because a certificate or key file was bad.
    pub cert_reload_failures: Arc<Counter>,
}

impl std::fmt::Debug for TlsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMetrics")
    }
}

impl TlsMetrics {
    /// The metrics, registered in `r`.
    pub fn new(r: &Registry) -> Arc<TlsMetrics> {
        let p = "proxy.process.ssl";
        Arc::new(TlsMetrics {
            attempts_in: r.counter(&format!("{p}.total_attempts_handshake_count_in")),
            success_in: r.counter(&format!("{p}.total_success_handshake_count_in")),
            failures_in: r.counter(&format!("{p}.total_handshake_failures_in")),
            failures_by_reason: Failure::ALL
                .iter()
                .map(|f| r.counter(&format!("{p}.failure.{}.handshakes_in", f.name())))
                .collect(),
            resumed_in: r.counter(&format!("{p}.total_resumed_handshake_count_in")),
            handshake_time_us: r.histogram(&format!("{p}.handshake_time_us")),
            current_in: r.gauge(&format!("{p}.user_agent_sessions")),
            attempts_out: r.counter(&format!("{p}.total_attempts_handshake_count_out")),
            success_out: r.counter(&format!("{p}.total_success_handshake_count_out")),
            failures_out: r.counter(&format!("{p}.total_handshake_failures_out")),
            failures_out_by_reason: Failure::ALL
                .iter()
                .map(|f| {
                    Failure::OUT
                        .contains(f)
                        .then(|| r.counter(&format!("{p}.failure.{}.handshakes_out", f.name_out())))
                })
                .collect(),
            origin_bad_cert: r.counter(&format!("{p}.origin_server_bad_cert")),
            certificates: r.gauge(&format!("{p}.certificates_loaded")),
            cert_reloads: r.counter(&format!("{p}.certificate_reloads")),
            cert_reload_failures: r.counter(&format!("{p}.certificate_reload_failures")),
        })
    }

    /// Counts a handshake an `ssl` port refused before it began (no TLS configuration
    /// for the connection): an attempt that failed, so the two still add up.
    pub fn handshake_refused(&self, why: Failure) {
        self.attempts_in.inc();
        self.failures_in.inc();
        self.failures_by_reason[why as usize].inc();
    }
}

/// What outlives a reload: the provider, the ticket key (rotating on its own) and the
/// session cache, so sessions resume across certificate swaps.
#[derive(Clone)]
pub struct TlsKeep {
    provider: Arc<CryptoProvider>,
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
}

impl TlsKeep {
    /// A provider, a ticket key that rotates every 6 hours (tickets stay valid for the
    /// key before it: 12 hours at most) and an empty session cache.
    pub fn new() -> Result<TlsKeep> {
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| Error::config(format!("TLS session ticket key: {e}")))?;
        Ok(TlsKeep {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            ticketer,
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
        })
    }

    /// The crypto provider.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }
}

/// The server side of every `ssl` port: one rustls configuration for connections to
/// any address, and one per `dest_ip = "IP"` address.
pub struct TlsServer {
    store: Arc<CertStore>,
    any: Arc<ServerConfig>,
    by_addr: HashMap<IpAddr, Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("store", &self.store)
            .finish()
    }
}

impl TlsServer {
    /// Loads the certificates of `cfg` (none: `Ok(None)`). The error names the file.
    pub fn load(cfg: &config::Config, keep: &TlsKeep) -> Result<Option<Arc<TlsServer>>> {
        if cfg.ssl_multicert.is_empty() {
            return Ok(None);
        }
        let place = |n: usize, key: &str| {
            let source = cfg.source_of(&format!("ssl_multicert.{n}.{key}"));
            format!("{source}: ssl_multicert: entry {n}: {key}")
        };
        let store = Arc::new(CertStore::load_placed(
            &cfg.ssl_multicert,
            &CertDirs::of(cfg),
            &keep.provider,
            &place,
        )?);
        Ok(Some(Arc::new(TlsServer::with_store(store, keep)?)))
    }

    /// The configurations for the certificates of `store`.
    pub fn with_store(store: Arc<CertStore>, keep: &TlsKeep) -> Result<TlsServer> {
        let config = |local: Option<IpAddr>| -> Result<Arc<ServerConfig>> {
            let resolver = certs::Resolver {
                store: store.clone(),
                local,
            };
            let mut c = ServerConfig::builder_with_provider(keep.provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::config(format!("TLS: {e}")))?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(resolver));
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            c.session_storage = keep.sessions.clone();
            c.ticketer = keep.ticketer.clone();
            // One ticket per full handshake: a client resumes with one, and each costs
            // an encryption.
            c.send_tls13_tickets = 1;
            Ok(Arc::new(c))
        };
        let mut by_addr = HashMap::new();
        for ip in store.addrs() {
            by_addr.insert(ip, config(Some(ip))?);
        }
        Ok(TlsServer {
            any: config(None)?,
            by_addr,
            store,
        })
    }

    /// Certificates loaded.
    pub fn certificates(&self) -> usize {
        self.store.len()
    }

    /// The certificates.
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// A server connection for a client that connected to `local`.
    pub fn accept(
        &self,
        local: IpAddr,
    ) -> std::result::Result<rustls::ServerConnection, rustls::Error> {
        let config = if self.by_addr.is_empty() {
            &self.any
        } else {
            self.by_addr.get(&local).unwrap_or(&self.any)
        };
        rustls::ServerConnection::new(config.clone())
    }
}

/// The client side for `https://` origins.
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl TlsClient {
    /// The client configuration of `cfg`: the system's trust store and
    /// `ssl.client.CA.cert.filename`, checked as `ssl.client.verify.server.policy` says.
    /// Only built when an origin may be `https://`: a remap rule's, or any a forward
    /// proxy is asked for (`Ok(None)` otherwise). The CA file is read either way: it is
    /// configuration whether or not a rule uses it yet, so start-up, `check` and a
    /// reload all refuse a bad one. The error names it.
    pub fn load(
        cfg: &config::Config,
        keep: &TlsKeep,
        metrics: &Arc<TlsMetrics>,
    ) -> Result<Option<Arc<TlsClient>>> {
        let ca = verify::read_ca_file(cfg)?;
        if cfg.url_remap.remap_required && !cfg.remap.iter().any(|r| r.to.tls) {
            return Ok(None);
        }
        let verifier =
            verify::OriginVerifier::new(cfg, ca, keep.provider.clone(), metrics.clone())?;
        let mut c = ClientConfig::builder_with_provider(keep.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(TlsClient {
            config: Arc::new(c),
        })))
    }

    /// What tells these settings from any others in force while a connection made with
    /// them lives (each holds the configuration, so its address is not reused
    /// meanwhile): a pooled connection is reused only under the settings that made it,
    /// so a reload to a stricter policy or another CA file applies at once.
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.config) as usize
    }

    /// A client connection to the origin named `name`.
    pub fn connect(
        &self,
        name: &rustls::pki_types::ServerName<'static>,
    ) -> std::result::Result<rustls::ClientConnection, rustls::Error> {
        rustls::ClientConnection::new(self.config.clone(), name.clone())
    }
}

/// Why a file is not PEM, in words: the parser's own message shows the marker or line
/// it choked on as a list of byte values.
pub(crate) fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as Pem;
    match e {
        Pem::MissingSectionEnd { end_marker } => format!(
            "not PEM: no \"-----END {}-----\" line (the file is cut short?)",
            String::from_utf8_lossy(end_marker)
        ),
        Pem::IllegalSectionStart { line } => format!(
            "not PEM: bad section start \"{}\"",
            String::from_utf8_lossy(line)
        ),
        other => format!("not PEM: {other}"),
    }
}

/// Checks every TLS file `cfg` names (for start-up and `turnstile check`): the error
/// names each bad file, certificates and the origin CA file together. It builds what a
/// reload builds, with throwaway state, so the three cannot disagree about which files
/// are acceptable.
pub fn check(cfg: &config::Config) -> Result<()> {
    let keep = TlsKeep::new()?;
    let server = TlsServer::load(cfg, &keep).err();
    let client = TlsClient::load(cfg, &keep, &TlsMetrics::new(&Registry::new())).err();
    match Error::joined(server.into_iter().chain(client).collect()) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}
