//! The s3 tier: any S3-compatible server (Garage, MinIO, AWS) through aws-sdk-s3.
//!
//! The [`Store`] trait is synchronous and is called from many threads at once (parallel block
//! readers, FUSE threads, sync workers), so each [`S3Store`] owns a small tokio runtime and every
//! call `block_on`s it from the calling thread. The calling threads must not themselves be inside
//! a tokio runtime.
//!
//! Failure behaviour:
//! - every request attempt has a timeout (`timeout_secs`), and each operation as a whole is bounded
//!   too, so a dead or frozen server becomes an error, never a hang;
//! - the SDK retries transient failures ([`MAX_ATTEMPTS`] attempts with exponential backoff);
//! - what is still failing after that becomes an [`Error::Io`] whose kind makes
//!   [`Error::is_transient`] true for timeouts, refused or reset connections and 5xx answers
//!   (a Garage cluster without quorum answers 503), and false for refusals such as 403;
//! - server errors carry the tier, the operation, the key and the server's code and message,
//!   never credentials (the SDK's `Credentials` redacts itself, and we never format them).
//!
//! Integrity of uploads ([`S3Store::put_file_sha256`]): every PUT and every part carries an
//! `x-amz-checksum-sha256` header computed here from the bytes read. The server checks it on
//! receipt and stores it; after the upload a HEAD with `x-amz-checksum-mode: ENABLED` must show
//! the expected size and checksum (the plain SHA-256 for a single PUT, the composite
//! "SHA-256 of the part digests" `-N` for a multipart upload). Garage (v2) supports exactly this:
//! it validates `x-amz-checksum-sha256` on PutObject and UploadPart (a wrong value is refused with
//! `InvalidDigest`/`BadDigest`) and returns the stored checksum on HEAD when asked; see
//! `tests/s3.rs`. A server that returns no checksum on HEAD gets a read-back instead: the object is
//! downloaded in ranges and hashed, so a completed `put_file` always means "the stored object is
//! byte for byte the file that was read".
//!
//! This module holds the client and the [`Store`] impl; `upload` the PUTs and their check,
//! `read` the GETs, HEADs and listings, `admin` the bucket's housekeeping (abandoned multipart
//! uploads), `error` the mapping of SDK failures.

mod admin;
mod error;
mod read;
mod upload;

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

use super::{ObjectMeta, Store, check_key};
use crate::config::{S3Checksums, ServerSideEncryption, TierConfig, TierKind};
use crate::{Error, Result};

pub(crate) use error::{http_status, sdk_io_error};
use upload::MIN_PART_SIZE;

/// Request attempts per S3 call (the first plus two retries): enough to ride out a node restart
/// or a dropped connection, few enough that a dead server fails in seconds, not minutes.
pub const MAX_ATTEMPTS: u32 = 3;

pub struct S3Store {
    name: String,
    bucket: String,
    /// "" or a prefix ending in '/', prepended to every key.
    prefix: String,
    client: Client,
    runtime: tokio::runtime::Runtime,
    multipart_threshold: u64,
    part_size: u64,
    timeout: Duration,
    /// Asked for on every PUT and multipart upload.
    sse: Option<ServerSideEncryption>,
}

/// The tier settings [`S3Store`] needs, unpacked from a [`TierConfig`].
struct Settings<'a> {
    endpoint: &'a str,
    region: &'a str,
    path_style: bool,
    checksums: S3Checksums,
    timeout: Duration,
    /// PEM of a private CA the server's certificate chains to.
    ca_pem: Option<Vec<u8>>,
}

impl S3Store {
    /// Builds the client for an `s3` tier. Resolves the credentials now (so a bad secret
    /// reference fails here) but does not contact the server.
    pub fn open(tier: &TierConfig) -> Result<S3Store> {
        let name = tier.name.as_str().to_owned();
        let TierKind::S3 {
            endpoint,
            bucket,
            region,
            prefix,
            access_key,
            secret_key,
            path_style,
            checksums,
            multipart_threshold,
            part_size,
            timeout_secs,
            transport,
            server_side_encryption,
        } = &tier.kind
        else {
            return Err(Error::Invalid(format!("tier {name} is not an s3 tier")));
        };
        let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
            return Err(Error::Invalid(format!(
                "tier {name}: an s3 tier needs both `access_key` and `secret_key`"
            )));
        };
        // Credentials::new keeps the secret out of Debug output; the values go nowhere else.
        let credentials = Credentials::new(
            access_key.resolve()?.expose(),
            secret_key.resolve()?.expose(),
            None,
            None,
            "tierback-config",
        );
        let timeout = Duration::from_secs((*timeout_secs).max(1));
        let client = build_client(
            credentials,
            &Settings {
                endpoint,
                region,
                path_style: *path_style,
                checksums: *checksums,
                timeout,
                ca_pem: transport
                    .ca_pem()
                    .map_err(|e| Error::Invalid(format!("tier {name}: {e}")))?,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            // The machine has few cores and the work is I/O: two workers keep PARTS_IN_FLIGHT
            // uploads and many concurrent ranged GETs moving without competing with the
            // compression threads.
            .worker_threads(2)
            .thread_name(format!("s3-{name}"))
            .enable_all()
            .build()
            .map_err(|e| Error::io(format!("tier {name}: starting the S3 runtime"), e))?;
        Ok(S3Store {
            name,
            bucket: bucket.clone(),
            prefix: normalize_prefix(prefix),
            client,
            runtime,
            multipart_threshold: *multipart_threshold,
            part_size: (*part_size).max(MIN_PART_SIZE),
            timeout,
            sse: server_side_encryption.clone(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix inside the bucket ("" or ending in '/').
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The SDK client and the runtime to drive it, for bucket administration
    /// ([`super::s3_policy`]).
    pub(crate) fn client(&self) -> (&Client, &tokio::runtime::Runtime) {
        (&self.client, &self.runtime)
    }

    /// `x-amz-server-side-encryption` of every PUT, as configured.
    fn sse_header(&self) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
        use aws_sdk_s3::types::ServerSideEncryption as Sse;
        self.sse.as_ref().map(|s| match s {
            ServerSideEncryption::Aes256 => Sse::Aes256,
            ServerSideEncryption::Kms(_) => Sse::AwsKms,
        })
    }

    fn sse_kms_key_id(&self) -> Option<String> {
        match &self.sse {
            Some(ServerSideEncryption::Kms(id)) => id.clone(),
            _ => None,
        }
    }

    /// The configured server-side encryption (for `tiers setup`'s bucket default).
    pub(crate) fn server_side_encryption(&self) -> Option<&ServerSideEncryption> {
        self.sse.as_ref()
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one operation to completion on the store's runtime, bounded in time as a whole so
    /// that nothing (a stalled body, a retry loop) can hang the caller.
    fn run<T>(
        &self,
        op: &str,
        key: &str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        // Every attempt is bounded by `timeout` and there are at most MAX_ATTEMPTS with backoff
        // of at most a few seconds between them.
        let limit = self.timeout * (MAX_ATTEMPTS + 1) + Duration::from_secs(10);
        self.run_within(op, key, limit, fut)
    }

    fn run_within<T>(
        &self,
        op: &str,
        key: &str,
        limit: Duration,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.runtime.block_on(async {
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::io(
                    format!("tier {}: {op} {key}", self.name),
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no result within {} s", limit.as_secs()),
                    ),
                )),
            }
        })
    }

    async fn delete_async(&self, key: &str) -> Result<()> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // S3 answers 204 for an absent key; some servers say 404. Either way it is gone.
            Err(e) if http_status(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.sdk_error("DELETE", key, e)),
        }
    }
}

fn build_client(credentials: Credentials, s: &Settings<'_>) -> Client {
    let (request, response) = match s.checksums {
        S3Checksums::WhenRequired => (
            RequestChecksumCalculation::WhenRequired,
            ResponseChecksumValidation::WhenRequired,
        ),
        S3Checksums::WhenSupported => (
            RequestChecksumCalculation::WhenSupported,
            ResponseChecksumValidation::WhenSupported,
        ),
    };
    use aws_smithy_http_client::tls;
    // rustls on ring, trusting the system's roots, or only the private CA of `ca_file`.
    let trust = match &s.ca_pem {
        Some(pem) => tls::TrustStore::empty().with_pem_certificate(pem.clone()),
        None => tls::TrustStore::default(),
    };
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a trust store of PEM certificates always builds");
    let config = aws_sdk_s3::Config::builder().http_client(
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(context)
            .build_https(),
    );
    let config = config
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(s.endpoint)
        .region(Region::new(s.region.to_owned()))
        .credentials_provider(credentials)
        .force_path_style(s.path_style)
        .request_checksum_calculation(request)
        .response_checksum_validation(response)
        .timeout_config(
            TimeoutConfig::builder()
                // A refused or black-holed connection shows within a few seconds.
                .connect_timeout(s.timeout.min(Duration::from_secs(10)))
                .operation_attempt_timeout(s.timeout)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(300))
                .with_max_backoff(Duration::from_secs(3)),
        )
        .build();
    Client::from_conf(config)
}

fn normalize_prefix(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

impl Store for S3Store {
    fn name(&self) -> &str {
        &self.name
    }

    /// Multipart uploads started over an hour ago (a sync killed mid-upload): their parts take
    /// space and never show in listings.
    fn clean_staging(&self) -> Result<usize> {
        self.abort_incomplete_uploads(Duration::from_secs(3600))
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<()> {
        self.put_file_sha256(key, src).map(|_| ())
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        check_key(key)?;
        self.run("PUT", key, self.put_bytes_async(key, bytes))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_key(key)?;
        self.run("GET", key, self.get_range_async(key, offset, len))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        check_key(key)?;
        self.run("HEAD", key, self.head_async(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.run("LIST", prefix, self.list_async(prefix))
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.run("DELETE", key, self.delete_async(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("tierback"), "tierback/");
        assert_eq!(normalize_prefix("/a/b/"), "a/b/");
    }
}
