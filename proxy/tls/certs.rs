//! The certificates of `[[ssl_multicert]]`: each file read and parsed (chain, key, the
//! names it serves), then a [`CertStore`] that picks one for a handshake by SNI with two
//! hash lookups (the exact name, then the wildcard of its parent domain) and no scan, by
//! local address (`dest_ip = "IP"`), or the default (`dest_ip = "*"`).
//!
//! Loading reads files and runs on the main thread (start-up, reload, `check`), never
//! on an event thread; the store it builds is read-only and shared by every handshake
//! begun while it is current.

use crate::error::{Error, Result};
use config::{DestIp, SslCert};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where relative certificate and key names are found.
#[derive(Clone, Debug)]
pub struct CertDirs {
    /// `ssl.server.cert.path`, resolved against the configuration file's directory.
    pub certs: PathBuf,
    /// `ssl.server.private_key.path`, resolved the same way.
    pub keys: PathBuf,
}

impl CertDirs {
    /// The directories of `cfg`, relative ones under the directory of the file it was
    /// read from (the working directory for the embedded default).
    pub fn of(cfg: &config::Config) -> CertDirs {
        let base = config_dir(cfg);
        CertDirs {
            certs: base.join(&cfg.ssl.server_cert_path),
            keys: base.join(&cfg.ssl.server_private_key_path),
        }
    }
}

/// The directory of the file `cfg` was read from; `.` for the embedded default.
pub fn config_dir(cfg: &config::Config) -> PathBuf {
    if cfg.origin == config::EMBEDDED_ORIGIN {
        return PathBuf::from(".");
    }
    match Path::new(&cfg.origin).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// One loaded certificate: its chain and key, and the names it serves.
struct Loaded {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    dest_ip: Option<DestIp>,
}

/// The certificates a handshake can be given, by name and by address.
#[derive(Default)]
pub struct CertStore {
    /// Exact DNS names, lower-case.
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.example.com` certificates by the suffix they cover (`example.com`).
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `dest_ip = "IP"`: served on connections to that local address when no name
    /// matches.
    by_addr: HashMap<IpAddr, Arc<CertifiedKey>>,
    /// `dest_ip = "*"`.
    default: Option<Arc<CertifiedKey>>,
    /// Certificates loaded.
    count: usize,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("certificates", &self.count)
            .field("names", &self.exact.len())
            .field("wildcards", &self.wildcard.len())
            .field("default", &self.default.is_some())
            .finish()
    }
}

/// Why a name was or was not found (the failure is counted by reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// An exact or wildcard name matched.
    Name,
    /// No name matched; the address's or the default certificate was given.
    Fallback,
    /// Nothing to give.
    None,
}

impl CertStore {
    /// Loads every `[[ssl_multicert]]` entry. The error names each entry that failed
    /// and its file, one a line: an operator mends them all at once, as for records.
    pub fn load(
        certs: &[SslCert],
        dirs: &CertDirs,
        provider: &CryptoProvider,
    ) -> Result<CertStore> {
        CertStore::load_placed(certs, dirs, provider, &|n, key| {
            format!("ssl_multicert: entry {n}: {key}")
        })
    }

    /// [`CertStore::load`], each error led by `place(N, KEY)`: where entry N's `KEY`
    /// (`ssl_cert_name` or `ssl_key_name`, whichever names the bad file) was written.
    pub fn load_placed(
        certs: &[SslCert],
        dirs: &CertDirs,
        provider: &CryptoProvider,
        place: &dyn Fn(usize, &str) -> String,
    ) -> Result<CertStore> {
        let mut store = CertStore::default();
        let mut errors = Vec::new();
        for (i, entry) in certs.iter().enumerate() {
            match load_one(entry, dirs, provider) {
                Ok(loaded) => store.add(loaded),
                Err((key, e)) => errors.push(e.within(place(i + 1, key))),
            }
        }
        match Error::joined(errors) {
            None => Ok(store),
            Some(e) => Err(e),
        }
    }

    fn add(&mut self, l: Loaded) {
        self.count += 1;
        for name in &l.names {
            // The first certificate to claim a name keeps it, as in ATS.
            match name.strip_prefix("*.") {
                Some(suffix) => self.wildcard.entry(suffix.into()),
                None => self.exact.entry(name.as_str().into()),
            }
            .or_insert_with(|| l.key.clone());
        }
        match l.dest_ip {
            Some(DestIp::Any) => self.default = Some(l.key),
            Some(DestIp::Ip(ip)) => {
                self.by_addr.insert(ip, l.key);
            }
            None => {}
        }
    }

    /// Certificates loaded.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether a certificate is kept for connections to local address `ip`.
    pub fn has_addr(&self, ip: IpAddr) -> bool {
        self.by_addr.contains_key(&ip)
    }

    /// Local addresses with a certificate of their own.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.by_addr.keys().copied()
    }

    /// The certificate for SNI `name` (any case) on a connection to `local`
    /// (`None`: the default one), and how it was found.
    pub fn pick(
        &self,
        name: Option<&str>,
        local: Option<IpAddr>,
    ) -> (Option<Arc<CertifiedKey>>, Pick) {
        if let Some(name) = name {
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                lower.as_str()
            } else {
                name
            };
            let name = name.strip_suffix('.').unwrap_or(name);
            if let Some(k) = self.exact.get(name) {
                return (Some(k.clone()), Pick::Name);
            }
            // A wildcard covers one label: `*.example.com` serves `a.example.com`, not
            // `example.com` nor `a.b.example.com`.
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return (Some(k.clone()), Pick::Name);
                }
            }
        }
        let fallback = local
            .and_then(|ip| self.by_addr.get(&ip))
            .or(self.default.as_ref());
        match fallback {
            Some(k) => (Some(k.clone()), Pick::Fallback),
            None => (None, Pick::None),
        }
    }
}

/// rustls's view of a [`CertStore`] for connections to one local address (or to any).
#[derive(Debug)]
pub(crate) struct Resolver {
    pub(crate) store: Arc<CertStore>,
    pub(crate) local: Option<IpAddr>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.pick(hello.server_name(), self.local).0
    }
}

/// A file's path: as written when absolute, else under `dir`.
fn under(dir: &Path, name: &Path) -> PathBuf {
    dir.join(name)
}

/// One entry's certificate and key; an error comes with the key naming the bad file.
fn load_one(
    entry: &SslCert,
    dirs: &CertDirs,
    provider: &CryptoProvider,
) -> std::result::Result<Loaded, (&'static str, Error)> {
    const CERT: &str = "ssl_cert_name";
    let cert_path = under(&dirs.certs, &entry.cert);
    let (key_name, key_path) = match &entry.key {
        Some(k) => ("ssl_key_name", under(&dirs.keys, k)),
        None => (CERT, cert_path.clone()),
    };
    let file_err = |name: &'static str, path: &Path, why: &dyn fmt::Display| {
        (name, Error::config(format!("{}: {why}", path.display())))
    };
    let pem = std::fs::read(&cert_path).map_err(|e| file_err(CERT, &cert_path, &e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| file_err(CERT, &cert_path, &super::pem_error(&e)))?;
    if chain.is_empty() {
        return Err(file_err(CERT, &cert_path, &"no certificate in it"));
    }
    let key_pem = if key_path == cert_path {
        pem
    } else {
        std::fs::read(&key_path).map_err(|e| file_err(key_name, &key_path, &e))?
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        file_err(
            key_name,
            &key_path,
            &format_args!("no private key in it ({e})"),
        )
    })?;
    let names = names_of(&chain[0]).map_err(|why| file_err(CERT, &cert_path, &why))?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        file_err(
            key_name,
            &key_path,
            &format_args!("key unusable with {}: {e}", cert_path.display()),
        )
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        names,
        dest_ip: entry.dest_ip,
    })
}

/// The DNS names a certificate serves: its subjectAltName's, else its CN; lower-case.
pub fn names_of(cert: &CertificateDer<'_>) -> std::result::Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, x509) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let GeneralName::DNSName(n) = gn {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a self-signed certificate for `names` (CN `cn`) as `file`.pem/.key.
    fn write(dir: &Path, file: &str, names: &[&str], cn: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    #[test]
    fn a_cut_pem_file_is_named_in_words() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
        let e = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap_err();
        assert_eq!(
            crate::tls::pem_error(&e),
            "not PEM: no \"-----END CERTIFICATE-----\" line (the file is cut short?)"
        );
    }

    fn entry(file: &str, dest_ip: Option<DestIp>) -> SslCert {
        SslCert {
            cert: format!("{file}.pem").into(),
            key: Some(format!("{file}.key").into()),
            dest_ip,
        }
    }

    #[test]
    fn names_then_the_local_address_then_the_default() {
        let dir = std::env::temp_dir().join(format!("ts-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = write(&dir, "a", &["a.test"], "a");
        let a2 = write(&dir, "a2", &["a.test", "b.test"], "a2");
        let w = write(&dir, "w", &["*.w.test"], "w");
        let ip = write(&dir, "ip", &["ip.test"], "ip");
        let d = write(&dir, "d", &[], "Default.Test");
        let local: IpAddr = "127.0.0.2".parse().unwrap();
        let entries = [
            entry("a", None),
            entry("a2", None),
            entry("w", None),
            entry("ip", Some(DestIp::Ip(local))),
            entry("d", Some(DestIp::Any)),
        ];
        let dirs = CertDirs {
            certs: dir.clone(),
            keys: dir.clone(),
        };
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let store = CertStore::load(&entries, &dirs, &provider).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let der = |name: Option<&str>, local: Option<IpAddr>| {
            let (k, how) = store.pick(name, local);
            (k.map(|k| k.cert[0].to_vec()), how)
        };
        assert_eq!(der(Some("a.test"), None), (Some(a.clone()), Pick::Name));
        assert_eq!(
            der(Some("A.TEST."), None),
            (Some(a), Pick::Name),
            "case, root dot"
        );
        assert_eq!(der(Some("b.test"), None), (Some(a2), Pick::Name));
        assert_eq!(der(Some("x.w.test"), None), (Some(w), Pick::Name));
        assert_eq!(der(Some("w.test"), None), (Some(d.clone()), Pick::Fallback));
        assert_eq!(
            der(Some("default.test"), None),
            (Some(d.clone()), Pick::Name),
            "CN"
        );
        assert_eq!(der(None, Some(local)), (Some(ip.clone()), Pick::Fallback));
        assert_eq!(
            der(Some("zz.test"), Some(local)),
            (Some(ip), Pick::Fallback)
        );
        assert_eq!(
            der(None, Some("127.0.0.1".parse().unwrap())),
            (Some(d), Pick::Fallback)
        );
        assert_eq!(store.len(), 5);
        assert!(store.has_addr(local));
        let none = CertStore::default();
        assert_eq!(none.pick(Some("a.test"), None).1, Pick::None);
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("ts-certs-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir, "one", &["one.test"], "one");
        write(&dir, "two", &["two.test"], "two");
        let entry = SslCert {
            cert: "one.pem".into(),
            key: Some("two.key".into()),
            dest_ip: None,
        };
        let dirs = CertDirs {
            certs: dir.clone(),
            keys: dir.clone(),
        };
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let err = CertStore::load(&[entry], &dirs, &provider)
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            err.contains("ssl_multicert: entry 1: ssl_key_name") && err.contains("two.key"),
            "{err}"
        );
    }

    #[test]
    fn every_entry_that_fails_is_named() {
        let dir = std::env::temp_dir().join(format!("ts-certs-all-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir, "good", &["good.test"], "good");
        let entry = |name: &str| SslCert {
            cert: format!("{name}.pem").into(),
            key: Some(format!("{name}.key").into()),
            dest_ip: None,
        };
        let dirs = CertDirs {
            certs: dir.clone(),
            keys: dir.clone(),
        };
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let entries = [entry("missing1"), entry("good"), entry("missing3")];
        let err = CertStore::load(&entries, &dirs, &provider)
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            lines[0].contains("ssl_multicert: entry 1: ssl_cert_name")
                && lines[0].contains("missing1.pem"),
            "{err}"
        );
        assert!(
            lines[1].contains("ssl_multicert: entry 3: ssl_cert_name")
                && lines[1].contains("missing3.pem"),
            "{err}"
        );
    }
}
