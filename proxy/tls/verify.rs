//! How origin certificates are checked (`ssl.client.verify.server.policy`): against
//! the system's trust store and `ssl.client.CA.cert.filename` with webpki, then
//! ENFORCED refuses what fails (the handshake ends, the request gets a 502 and the log
//! a line naming why), PERMISSIVE logs it and goes on, DISABLED does not check.
//! Handshake signatures are always checked against the certificate's key. Built on the
//! main thread; run by rustls on the event threads.

use super::TlsMetrics;
use crate::error::{Error, Result};
use config::VerifyPolicy;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct OriginVerifier {
    policy: VerifyPolicy,
    /// None when no trust anchor could be found at all: every certificate fails.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    metrics: Arc<TlsMetrics>,
}

/// `ssl.client.CA.cert.filename`, resolved against the configuration file's directory;
/// None when empty.
fn ca_file(cfg: &config::Config) -> Option<PathBuf> {
    let f = &cfg.ssl.client_ca_cert_filename;
    (!f.as_os_str().is_empty()).then(|| super::certs::config_dir(cfg).join(f))
}

/// The certificates of the CA file (none when it is not set); the error names it.
pub(super) fn read_ca_file(cfg: &config::Config) -> Result<Vec<CertificateDer<'static>>> {
    let Some(path) = ca_file(cfg) else {
        return Ok(Vec::new());
    };
    let bad = |why: &dyn std::fmt::Display| {
        const RECORD: &str = "proxy.config.ssl.client.CA.cert.filename";
        Error::config(format!(
            "{}: {RECORD}: {}: {why}",
            cfg.source_of(RECORD),
            path.display()
        ))
    };
    let pem = std::fs::read(&path).map_err(|e| bad(&e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&super::pem_error(&e)))?;
    if certs.is_empty() {
        return Err(bad(&"no certificate in it"));
    }
    Ok(certs)
}

impl OriginVerifier {
    /// The verifier of `cfg`'s policy, trusting the system's store and `ca`, the
    /// certificates of the CA file ([`read_ca_file`]).
    pub(super) fn new(
        cfg: &config::Config,
        ca: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
        metrics: Arc<TlsMetrics>,
    ) -> Result<OriginVerifier> {
        let policy = cfg.ssl.client_verify_server_policy;
        let mut roots = RootCertStore::empty();
        if policy != VerifyPolicy::Disabled {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                log::debug!("system trust store: {e}");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            log::debug!("system trust store: {added} CAs ({ignored} unusable)");
            for c in ca {
                roots.add(c).map_err(|e| {
                    Error::config(format!(
                        "proxy.config.ssl.client.CA.cert.filename: {}: {e}",
                        ca_file(cfg).unwrap_or_default().display()
                    ))
                })?;
            }
        }
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::config(format!("origin certificate verifier: {e}")))?,
            )
        };
        Ok(OriginVerifier {
            policy,
            webpki,
            provider,
            metrics,
        })
    }
}

impl ServerCertVerifier for OriginVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if self.policy == VerifyPolicy::Disabled {
            return Ok(ServerCertVerified::assertion());
        }
        let verdict = match &self.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::General(
                "no trust anchors: the system store and the CA file are empty".into(),
            )),
        };
        match verdict {
            Ok(ok) => Ok(ok),
            Err(e) => {
                self.metrics.origin_bad_cert.inc();
                if self.policy == VerifyPolicy::Permissive {
                    log::warn!(
                        "origin {}: certificate does not verify ({e}); going on (policy PERMISSIVE)",
                        server_name.to_str()
                    );
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(e)
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
