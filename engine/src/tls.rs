//! Transport security for every remote endpoint (S3 tiers, the Vault, Qdrant, n8n and MinIO
//! sources, Vault secrets): `https://` unless the host is this machine or the config says
//! `allow_insecure_http = true` for that endpoint; a private CA by `ca_file`. Both HTTP stacks
//! (ureq and the S3 SDK's hyper) use rustls, which speaks TLS 1.2 and 1.3 only.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// How one endpoint may be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// PEM file of the CA (or CAs) that signed the server's certificate, instead of the
    /// public roots.
    pub ca_file: Option<PathBuf>,
    /// Plain `http://` to a host other than this machine.
    pub allow_insecure_http: bool,
}

impl Transport {
    /// Checks `url` against the policy. `section` and `key` name where it is set, for the
    /// message, which shows the host but never the whole URL (it could carry a user).
    pub fn check_url(
        &self,
        url: &str,
        section: &str,
        key: &str,
    ) -> std::result::Result<(), String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{section} {key} needs a scheme: https://HOST[:PORT]"))?;
        let host = host_of(rest);
        match scheme {
            "https" => Ok(()),
            "http" if self.allow_insecure_http || is_loopback(host) => Ok(()),
            "http" => Err(format!(
                "{section} {key}: plain http:// to {host} would send credentials and \
                 backups in clear text; use https:// (with `ca_file` for a private CA) or set \
                 `allow_insecure_http = true` in {section}"
            )),
            other => Err(format!(
                "{section} {key}: scheme {other:?} is not http or https"
            )),
        }
    }

    /// The PEM certificates of `ca_file`, checked to hold at least one.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>> {
        self.ca_file.as_deref().map(read_ca).transpose()
    }

    /// A ureq agent configuration with this endpoint's CA (the public roots without one).
    pub fn ureq_tls(&self) -> Result<ureq::tls::TlsConfig> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(pem) = self.ca_pem()? {
            let path = self.ca_file.as_deref().expect("ca_pem read it");
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| {
                    Error::Invalid(format!(
                        "ca_file {}: not PEM certificates: {e}",
                        path.display()
                    ))
                })?;
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        Ok(tls.build())
    }
}

/// Reads a CA bundle, refusing a file that holds no PEM certificate (a key, a DER file, a typo).
pub fn read_ca(path: &Path) -> Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .map_err(|e| Error::io(format!("reading ca_file {}", path.display()), e))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(Error::Invalid(format!(
            "ca_file {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(pem)
}

/// The host of `host[:port][/path]`, without brackets around an IPv6 address.
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// This machine: `localhost`, 127.0.0.0/8 or ::1. Nothing leaves the host, so TLS adds nothing.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_only_for_this_machine_unless_allowed() {
        let strict = Transport::default();
        for ok in [
            "https://minio.example:9000",
            "http://127.0.0.1:3900",
            "http://localhost:8200/",
            "http://[::1]:6333",
            "http://127.1.2.3",
        ] {
            assert_eq!(
                strict.check_url(ok, "[tiers.x]", "endpoint"),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "http://minio:9000",
            "http://10.0.0.5:9000",
            "http://user:hunter2@example.com/",
            "http://[2001:db8::1]:80",
        ] {
            let e = strict.check_url(bad, "[tiers.x]", "endpoint").unwrap_err();
            assert!(
                e.contains("allow_insecure_http = true` in [tiers.x]"),
                "{e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
        let lax = Transport {
            allow_insecure_http: true,
            ..Transport::default()
        };
        assert_eq!(
            lax.check_url("http://minio:9000", "[tiers.x]", "endpoint"),
            Ok(())
        );
        assert!(
            strict
                .check_url("ftp://x", "[tiers.x]", "endpoint")
                .is_err()
        );
        assert!(
            strict
                .check_url("minio:9000", "[tiers.x]", "endpoint")
                .is_err()
        );
    }
}
