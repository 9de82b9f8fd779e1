//! What the HTTP drivers (qdrant, vault, n8n) share: one client with their timeouts, JSON calls
//! whose failures name the service, the URL path and the server's own message, and a streamed
//! download as a [`Dump`] that checks its length and SHA-256 when the server announced them.
//!
//! Credentials travel in headers only; URLs, errors and facts never carry them.

use std::io::Read;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Dump, Facts};
use crate::secret::Secret;
use crate::tls::Transport;
use crate::{Error, Result};

/// A service's HTTP API: base URL, its credential header, and the service name for errors.
pub struct Api {
    service: String,
    base: String,
    auth: Option<(&'static str, Secret)>,
    agent: ureq::Agent,
}

/// How much of an error response body goes into the message.
const ERROR_BODY_BYTES: usize = 300;
/// The longest a response body may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// The largest JSON answer read (an n8n page of 250 big workflows stays far below).
const JSON_LIMIT: u64 = 256 << 20;

impl Api {
    pub fn new(
        service: &str,
        base: &str,
        transport: &Transport,
        auth: Option<(&'static str, Secret)>,
    ) -> Result<Api> {
        let tls = transport
            .ureq_tls()
            .map_err(|e| Error::source(service, e.to_string()))?;
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(10)))
            // Creating a snapshot of a large collection (`wait=true`) takes minutes.
            .timeout_recv_response(Some(Duration::from_secs(1800)))
            // A backstop for a stalled download (ureq has no idle timeout): hours, for
            // snapshots of many GB over a slow link.
            .timeout_recv_body(Some(BODY_TIMEOUT))
            // Credentials travel in custom headers, which a redirect would carry to any
            // Location: a redirect is an error that names where to point `url` instead.
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Api {
            service: service.to_owned(),
            base: base.trim_end_matches('/').to_owned(),
            auth,
            agent,
        })
    }

    pub fn fail(&self, message: String) -> Error {
        Error::source(&self.service, message)
    }

    fn call(&self, method: &str, path: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let url = format!("{}{path}", self.base);
        let result = match method {
            "GET" => self.with_auth(self.agent.get(&url)).call(),
            // Cleanup, possibly from a drop: bounded well below the creation calls.
            "DELETE" => self
                .with_auth(self.agent.delete(&url))
                .config()
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .build()
                .call(),
            _ => self.with_auth(self.agent.post(&url)).send_empty(),
        };
        let mut resp = result.map_err(|e| self.fail(format!("{method} {url}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let mut body = String::new();
            let _ = resp
                .body_mut()
                .as_reader()
                .take(ERROR_BODY_BYTES as u64)
                .read_to_string(&mut body);
            let location = resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(|l| format!(" (redirected to {l}: point `url` there)"))
                .unwrap_or_default();
            let hint = match status.as_u16() {
                401 | 403 => " (check the credential in the config)",
                300..=399 => location.as_str(),
                _ => "",
            };
            return Err(self.fail(format!(
                "{method} {url}: HTTP {status}{hint}: {}",
                body.trim()
            )));
        }
        Ok(resp)
    }

    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some((header, secret)) => req.header(*header, secret.expose()),
            None => req,
        }
    }

    /// `method path` answered with JSON.
    pub fn json(&self, method: &str, path: &str) -> Result<serde_json::Value> {
        let resp = self.call(method, path)?;
        let mut text = String::new();
        resp.into_body()
            .into_reader()
            .take(JSON_LIMIT)
            .read_to_string(&mut text)
            .map_err(|e| self.fail(format!("{method} {path}: reading the answer: {e}")))?;
        serde_json::from_str(&text)
            .map_err(|e| self.fail(format!("{method} {path}: the answer is not JSON: {e}")))
    }

    /// A streamed GET. `expect` holds the size and SHA-256 the server announced, if it did.
    pub fn download(&self, path: &str, expect: Expected) -> Result<Download> {
        let resp = self.call("GET", path)?;
        Ok(Download {
            service: self.service.clone(),
            path: path.to_owned(),
            body: Box::new(resp.into_body().into_reader()),
            hasher: Sha256::new(),
            bytes: 0,
            expect,
        })
    }
}

/// Percent-encodes one URL path segment or query value (RFC 3986 unreserved bytes stay).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Default, Clone)]
pub struct Expected {
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

/// A response body being read; [`Dump::finish`] fails unless it matched what was announced.
pub struct Download {
    service: String,
    path: String,
    body: Box<dyn Read + Send>,
    hasher: Sha256,
    bytes: u64,
    expect: Expected,
}

/// What a checked download records.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DownloadFacts {
    pub downloaded_bytes: Option<u64>,
    /// The SHA-256 of the bytes received (and announced, when the server announced one).
    pub downloaded_sha256: Option<String>,
}

impl Download {
    /// Checks the body against what was announced; returns the facts of a good download.
    pub fn check(&mut self) -> Result<DownloadFacts> {
        let fail = |message: String| {
            Error::source(
                &self.service,
                format!("GET {}: {message}; nothing was stored", self.path),
            )
        };
        if let Some(size) = self.expect.size
            && size != self.bytes
        {
            return Err(fail(format!(
                "the server announced {size} bytes and sent {}",
                self.bytes
            )));
        }
        let sha = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if let Some(want) = &self.expect.sha256
            && !want.eq_ignore_ascii_case(&sha)
        {
            return Err(fail(format!(
                "SHA-256 {sha} differs from the announced {want}"
            )));
        }
        Ok(DownloadFacts {
            downloaded_bytes: Some(self.bytes),
            downloaded_sha256: Some(sha),
        })
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.body.read(buf).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "service {}: GET {}: {e} after {} bytes",
                    self.service, self.path, self.bytes
                ),
            )
        })?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl Dump for Download {
    fn finish(mut self: Box<Self>) -> Result<Facts> {
        self.check().map(|facts| super::facts_of(&facts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("docs-2026.snapshot"), "docs-2026.snapshot");
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
    }

    fn download(body: &'static [u8], expect: Expected) -> Box<Download> {
        Box::new(Download {
            service: "svc".into(),
            path: "/x".into(),
            body: Box::new(body),
            hasher: Sha256::new(),
            bytes: 0,
            expect,
        })
    }

    #[test]
    fn announced_size_and_checksum_are_enforced() {
        let sha = hex::encode(Sha256::digest(b"hello"));
        let mut d = download(
            b"hello",
            Expected {
                size: Some(5),
                sha256: Some(sha.clone()),
            },
        );
        std::io::copy(&mut d, &mut std::io::sink()).unwrap();
        assert_eq!(d.finish().unwrap()["downloaded_sha256"], sha.as_str());

        let mut d = download(
            b"hellO",
            Expected {
                size: Some(5),
                sha256: Some(sha),
            },
        );
        std::io::copy(&mut d, &mut std::io::sink()).unwrap();
        let e = d.finish().unwrap_err().to_string();
        assert!(
            e.contains("differs from the announced") && e.contains("svc"),
            "{e}"
        );

        let mut d = download(
            b"hell",
            Expected {
                size: Some(5),
                sha256: None,
            },
        );
        std::io::copy(&mut d, &mut std::io::sink()).unwrap();
        let e = d.finish().unwrap_err().to_string();
        assert!(e.contains("announced 5 bytes and sent 4"), "{e}");
    }
}
