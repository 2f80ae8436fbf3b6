//! TLS settings (SPEC §3, §9): the `proxy.config.ssl.*` records and the
//! `[[ssl_multicert]]` tables, like ATS's ssl_multicert.config. Only names and paths are
//! read here; the daemon opens and parses the files.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::error::Problem;
use crate::value::{expect_str, read_tables, Value};

/// `proxy.config.ssl.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssl {
    /// `.server.cert.path`: directory of relative `ssl_cert_name`s; itself relative to
    /// the configuration file's directory.
    pub server_cert_path: PathBuf,
    /// `.server.private_key.path`: directory of relative `ssl_key_name`s; itself relative
    /// to the configuration file's directory.
    pub server_private_key_path: PathBuf,
    /// `.client.verify.server.policy`: how origin certificates are checked. Reloadable.
    pub client_verify_server_policy: VerifyPolicy,
    /// `.client.CA.cert.filename`: PEM file of CAs trusted for origins beside the
    /// system's store; empty = none. Relative to the configuration file's directory.
    /// Reloadable.
    pub client_ca_cert_filename: PathBuf,
}

impl Default for Ssl {
    fn default() -> Ssl {
        Ssl {
            server_cert_path: PathBuf::from("."),
            server_private_key_path: PathBuf::from("."),
            client_verify_server_policy: VerifyPolicy::Enforced,
            client_ca_cert_filename: PathBuf::new(),
        }
    }
}

/// `proxy.config.ssl.client.verify.server.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VerifyPolicy {
    /// `"ENFORCED"`: an origin whose certificate does not verify gets no request (502).
    #[default]
    Enforced = 0,
    /// `"PERMISSIVE"`: a failed verification is logged and the request goes on.
    Permissive = 1,
    /// `"DISABLED"`: origin certificates are not checked.
    Disabled = 2,
}

impl VerifyPolicy {
    /// Every value, indexed by discriminant.
    pub const ALL: &'static [VerifyPolicy] = &[
        VerifyPolicy::Enforced,
        VerifyPolicy::Permissive,
        VerifyPolicy::Disabled,
    ];
    /// The record's spelling of each value, indexed by discriminant.
    pub const NAMES: &'static [&'static str] = &["ENFORCED", "PERMISSIVE", "DISABLED"];

    /// The record's spelling of this value.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Which connections a certificate serves besides the names in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestIp {
    /// `"*"`: the default certificate, for a client that sends no name or one that no
    /// certificate has.
    Any,
    /// Connections to this local address, when no certificate has the name asked for.
    Ip(IpAddr),
}

/// One `[[ssl_multicert]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SslCert {
    /// `ssl_cert_name`: PEM file holding the certificate and its chain; relative paths
    /// are under `ssl.server.cert.path`.
    pub cert: PathBuf,
    /// `ssl_key_name`: PEM file holding the private key; `None` when the key is in the
    /// certificate's file. Relative paths are under `ssl.server.private_key.path`.
    pub key: Option<PathBuf>,
    /// `dest_ip`: `None` when the certificate serves only its names.
    pub dest_ip: Option<DestIp>,
}

#[derive(Default)]
struct CertDraft {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    dest_ip: Option<DestIp>,
}

fn file_name(v: &Value) -> Result<PathBuf, String> {
    match expect_str(v, "a file name")? {
        "" => Err("expected a file name, got \"\"".to_string()),
        p if p.contains('\0') => Err("a file name cannot contain NUL".to_string()),
        p => Ok(PathBuf::from(p)),
    }
}

/// Reads the `ssl_multicert` array of tables.
pub(crate) fn certs_from_value(value: &Value) -> Result<Vec<SslCert>, Vec<Problem>> {
    let certs = read_tables(
        value,
        "an array of [[ssl_multicert]] tables",
        |d: &mut CertDraft, key, v| {
            match key {
                "ssl_cert_name" => d.cert = Some(file_name(v)?),
                "ssl_key_name" => d.key = Some(file_name(v)?),
                "dest_ip" => {
                    d.dest_ip = Some(match expect_str(v, "\"*\" or an IP address")? {
                        "*" => DestIp::Any,
                        ip => {
                            DestIp::Ip(ip.trim_matches(['[', ']']).parse().map_err(|_| {
                                format!("expected \"*\" or an IP address, got {ip:?}")
                            })?)
                        }
                    })
                }
                _ => {
                    return Err(
                        "unknown field; expected ssl_cert_name, ssl_key_name and dest_ip"
                            .to_string(),
                    )
                }
            }
            Ok(())
        },
        |d| match d.cert {
            Some(cert) => Ok(SslCert {
                cert,
                key: d.key,
                dest_ip: d.dest_ip,
            }),
            None => Err("missing ssl_cert_name".to_string()),
        },
    )?;
    for (i, c) in certs.iter().enumerate() {
        let Some(dest) = c.dest_ip else { continue };
        if let Some(j) = certs[..i].iter().position(|o| o.dest_ip == Some(dest)) {
            let what = match dest {
                DestIp::Any => "\"*\"".to_string(),
                DestIp::Ip(ip) => ip.to_string(),
            };
            return Err(vec![Problem::new(format!(
                "entry {}: dest_ip {what} is already entry {}'s",
                i + 1,
                j + 1
            ))]);
        }
    }
    Ok(certs)
}

/// The `ssl_multicert` tables as records.toml writes them.
pub(crate) fn certs_to_value(certs: &[SslCert]) -> Value {
    Value::Array(
        certs
            .iter()
            .map(|c| {
                let mut fields = vec![(
                    "ssl_cert_name",
                    Value::Str(c.cert.to_string_lossy().into_owned()),
                )];
                if let Some(k) = &c.key {
                    fields.push(("ssl_key_name", Value::Str(k.to_string_lossy().into_owned())));
                }
                match c.dest_ip {
                    Some(DestIp::Any) => fields.push(("dest_ip", Value::Str("*".into()))),
                    Some(DestIp::Ip(ip)) => fields.push(("dest_ip", Value::Str(ip.to_string()))),
                    None => {}
                }
                Value::table(fields)
            })
            .collect(),
    )
}
