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

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::base64;
use sha2::{Digest, Sha256};

use super::{ObjectMeta, Store, check_key};
use crate::config::{S3Checksums, ServerSideEncryption, TierConfig, TierKind};
use crate::{Error, Result};

/// Request attempts per S3 call (the first plus two retries): enough to ride out a node restart
/// or a dropped connection, few enough that a dead server fails in seconds, not minutes.
pub const MAX_ATTEMPTS: u32 = 3;

/// Parts uploaded concurrently by one multipart upload. Memory is bounded by this times
/// `part_size` (16 MiB by default → 64 MiB); four streams saturate a loopback Garage.
const PARTS_IN_FLIGHT: usize = 4;

/// S3 allows at most this many parts per upload; `part_size` is raised for larger files.
const MAX_PARTS: u64 = 10_000;

/// S3's smallest allowed part (except the last one).
const MIN_PART_SIZE: u64 = 5 << 20;

/// Read-back verification fetches the object in ranges of this size, bounding memory.
const READBACK_CHUNK: u64 = 16 << 20;

/// A finished UploadPart request: its part number and the SDK's answer.
type PartResult = (
    i32,
    std::result::Result<
        aws_sdk_s3::operation::upload_part::UploadPartOutput,
        SdkError<aws_sdk_s3::operation::upload_part::UploadPartError, HttpResponse>,
    >,
);

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

    /// The names of every bucket the credentials can list (for the minio source).
    pub fn list_buckets(&self) -> Result<Vec<String>> {
        self.run("LIST BUCKETS", "", async {
            let out = self
                .client
                .list_buckets()
                .send()
                .await
                .map_err(|e| self.sdk_error("LIST BUCKETS", "", e))?;
            Ok(out
                .buckets()
                .iter()
                .filter_map(|b| b.name().map(str::to_owned))
                .collect())
        })
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

    /// Uploads the file at `src` under `key`, verifies the stored object against what was read,
    /// and returns the SHA-256 of the file's bytes (so the caller can compare it with the
    /// catalog's). Files of at least `multipart_threshold` bytes go up in parts read one by one
    /// from the file (at most [`PARTS_IN_FLIGHT`] parts in memory); a failed multipart upload is
    /// aborted so no parts linger.
    pub fn put_file_sha256(&self, key: &str, src: &Path) -> Result<[u8; 32]> {
        check_key(key)?;
        let ctx = |what: &str| format!("tier {}: {what} {} for {key}", self.name, src.display());
        let file = File::open(src).map_err(|e| Error::io(ctx("opening"), e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(ctx("stat of"), e))?
            .len();
        // A multipart upload moves many parts: give it time in proportion to its size on top
        // of the per-request bound.
        let parts = size.div_ceil(self.part_size).max(1);
        let limit =
            self.timeout * (MAX_ATTEMPTS + 1) * (parts as u32).min(1000) + Duration::from_secs(10);
        if size >= self.multipart_threshold && size > 0 {
            self.run_within(
                "multipart upload",
                key,
                limit,
                self.put_multipart(key, file, size),
            )
        } else {
            self.run_within(
                "PUT",
                key,
                limit,
                self.put_single_file(key, file, src, size),
            )
        }
    }

    /// Single PUT of a file below the multipart threshold: hash it (fast, from the page cache),
    /// then stream it from disk with the digest in `x-amz-checksum-sha256`, which the server
    /// checks against the bytes it received.
    async fn put_single_file(
        &self,
        key: &str,
        mut file: File,
        src: &Path,
        size: u64,
    ) -> Result<[u8; 32]> {
        let digest = hash_reader(&mut file, size).map_err(|e| {
            Error::io(
                format!("tier {}: reading {} for {key}", self.name, src.display()),
                e,
            )
        })?;
        let body = ByteStream::read_from()
            .path(src)
            .length(aws_sdk_s3::primitives::Length::Exact(size))
            .build()
            .await
            .map_err(|e| {
                Error::io(
                    format!("tier {}: reading {} for {key}", self.name, src.display()),
                    std::io::Error::other(e),
                )
            })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_length(size as i64)
            .checksum_sha256(base64::encode(digest))
            .set_server_side_encryption(self.sse_header())
            .set_ssekms_key_id(self.sse_kms_key_id())
            .body(body)
            .send()
            .await
            .map_err(|e| self.sdk_error("PUT", key, e))?;
        self.verify_stored(key, size, &base64::encode(digest), &digest)
            .await?;
        Ok(digest)
    }

    async fn put_multipart(&self, key: &str, mut file: File, size: u64) -> Result<[u8; 32]> {
        let part_size = self.part_size.max(size.div_ceil(MAX_PARTS));
        let full_key = self.full_key(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full_key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_server_side_encryption(self.sse_header())
            .set_ssekms_key_id(self.sse_kms_key_id())
            .send()
            .await
            .map_err(|e| self.sdk_error("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        if upload_id.is_empty() {
            return Err(self.protocol_error("CreateMultipartUpload", key, "no upload id"));
        }
        let result = self
            .upload_parts_and_complete(key, &full_key, &upload_id, &mut file, size, part_size)
            .await;
        match result {
            Ok((digest, composite)) => {
                self.verify_stored(key, size, &composite, &digest).await?;
                Ok(digest)
            }
            Err(e) => {
                // Leave no parts behind: they cost space and are invisible to listings.
                if let Err(abort) = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full_key)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(
                        tier = %self.name, key,
                        "aborting the failed multipart upload failed too (the bucket's lifecycle rule will clean it): {}",
                        self.sdk_error("AbortMultipartUpload", key, abort)
                    );
                }
                Err(e)
            }
        }
    }

    /// Reads parts sequentially from `file`, uploads up to [`PARTS_IN_FLIGHT`] at a time and
    /// completes the upload. Returns the file's SHA-256 and the expected composite checksum.
    async fn upload_parts_and_complete(
        &self,
        key: &str,
        full_key: &str,
        upload_id: &str,
        file: &mut File,
        size: u64,
        part_size: u64,
    ) -> Result<([u8; 32], String)> {
        let mut whole = Sha256::new();
        let mut part_digests: Vec<u8> = Vec::new();
        let mut in_flight = tokio::task::JoinSet::new();
        let mut completed: Vec<CompletedPart> = Vec::new();
        let mut offset = 0u64;
        let mut number = 0i32;
        while offset < size {
            let len = part_size.min(size - offset);
            let mut buf = vec![0u8; len as usize];
            // A blocking read on the calling thread (this future runs inside block_on there),
            // which is the thread that asked for the upload anyway.
            file.read_exact(&mut buf).map_err(|e| {
                Error::io(
                    format!(
                        "tier {}: reading part at {offset} of the file for {key}",
                        self.name
                    ),
                    e,
                )
            })?;
            whole.update(&buf);
            let digest: [u8; 32] = Sha256::digest(&buf).into();
            part_digests.extend_from_slice(&digest);
            number += 1;
            offset += len;
            while in_flight.len() >= PARTS_IN_FLIGHT {
                completed.push(self.join_part(key, &mut in_flight).await?);
            }
            let request = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(len as i64)
                .checksum_sha256(base64::encode(digest))
                .body(ByteStream::from(buf));
            in_flight.spawn(async move { (number, request.send().await) });
        }
        while !in_flight.is_empty() {
            completed.push(self.join_part(key, &mut in_flight).await?);
        }
        // Guard against a file that grew while it was read: what was uploaded must be the
        // whole file as it was stat'ed.
        let mut probe = [0u8; 1];
        if file
            .read(&mut probe)
            .map_err(|e| Error::io(format!("tier {}: reading the file for {key}", self.name), e))?
            != 0
        {
            return Err(Error::integrity(
                key,
                None,
                format!("the source file grew during the upload (beyond {size} bytes)"),
            ));
        }
        completed.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.sdk_error("CompleteMultipartUpload", key, e))?;
        let composite = format!(
            "{}-{number}",
            base64::encode(Sha256::digest(&part_digests).as_slice())
        );
        Ok((whole.finalize().into(), composite))
    }

    async fn join_part(
        &self,
        key: &str,
        set: &mut tokio::task::JoinSet<PartResult>,
    ) -> Result<CompletedPart> {
        let joined = set
            .join_next()
            .await
            .expect("caller checked the set is not empty");
        let (number, sent) = joined.map_err(|e| {
            self.protocol_error("UploadPart", key, &format!("upload task failed: {e}"))
        })?;
        let out = sent.map_err(|e| self.sdk_error(&format!("UploadPart {number}"), key, e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .set_checksum_sha256(out.checksum_sha256().map(str::to_owned))
            .build())
    }

    /// Checks that the stored object has `size` bytes and the expected content: through the
    /// checksum the server stored (`expected_checksum`, as S3 formats it) when the server returns
    /// one, else by reading the object back and comparing its SHA-256 with `sha256`.
    async fn verify_stored(
        &self,
        key: &str,
        size: u64,
        expected_checksum: &str,
        sha256: &[u8; 32],
    ) -> Result<()> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| self.sdk_error("HEAD (verify)", key, e))?;
        let stored_size = head.content_length().unwrap_or(-1);
        if stored_size != size as i64 {
            return Err(Error::integrity(
                self.describe(key),
                None,
                format!("stored object has {stored_size} bytes, the source {size}"),
            ));
        }
        match head.checksum_sha256() {
            Some(stored) if stored == expected_checksum => Ok(()),
            Some(stored) => Err(Error::integrity(
                self.describe(key),
                None,
                format!(
                    "stored SHA-256 checksum {stored} differs from the uploaded bytes' {expected_checksum}"
                ),
            )),
            None => {
                tracing::debug!(tier = %self.name, key, "server returned no checksum: reading the object back");
                let read = self.read_back_sha256(key, size).await?;
                if &read == sha256 {
                    Ok(())
                } else {
                    Err(Error::integrity(
                        self.describe(key),
                        None,
                        format!(
                            "read-back SHA-256 {} differs from the source's {}",
                            hex::encode(read),
                            hex::encode(sha256)
                        ),
                    ))
                }
            }
        }
    }

    async fn read_back_sha256(&self, key: &str, size: u64) -> Result<[u8; 32]> {
        let mut hasher = Sha256::new();
        let mut offset = 0;
        while offset < size {
            let len = READBACK_CHUNK.min(size - offset);
            hasher.update(self.get_range_async(key, offset, len).await?);
            offset += len;
        }
        Ok(hasher.finalize().into())
    }

    /// Aborts the tier's multipart uploads that were started more than `older_than` ago (a
    /// `kill -9` mid-upload leaves one behind; its parts use space but are invisible to
    /// listings). Returns how many were aborted. The bucket's lifecycle rule does the same
    /// after days where the server supports it; this is for servers or moments where it does not.
    pub fn abort_incomplete_uploads(&self, older_than: Duration) -> Result<usize> {
        // The server's upload dates: compared with the system clock, never TIERBACK_NOW.
        let cutoff = crate::clock::system_now() - older_than.as_secs() as i64;
        self.run("ListMultipartUploads", "", async {
            let mut aborted = 0;
            let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
            loop {
                let page = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(&self.prefix)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await
                    .map_err(|e| self.sdk_error("ListMultipartUploads", "", e))?;
                for upload in page.uploads() {
                    let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                        continue;
                    };
                    if upload.initiated().is_some_and(|t| t.secs() > cutoff) {
                        continue; // possibly still running
                    }
                    self.client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .send()
                        .await
                        .map_err(|e| self.sdk_error("AbortMultipartUpload", key, e))?;
                    aborted += 1;
                }
                if page.is_truncated() != Some(true) {
                    break;
                }
                key_marker = page.next_key_marker().map(str::to_owned);
                id_marker = page.next_upload_id_marker().map(str::to_owned);
                if key_marker.is_none() {
                    break;
                }
            }
            Ok(aborted)
        })
    }

    /// Multipart uploads in progress (or abandoned) under the tier's prefix: (key, upload id).
    pub fn incomplete_uploads(&self) -> Result<Vec<(String, String)>> {
        self.run("ListMultipartUploads", "", async {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .send()
                .await
                .map_err(|e| self.sdk_error("ListMultipartUploads", "", e))?;
            Ok(page
                .uploads()
                .iter()
                .filter_map(|u| Some((u.key()?.to_owned(), u.upload_id()?.to_owned())))
                .collect())
        })
    }

    /// For tests: a plain PUT of a file streamed from disk with no checksum of ours, so the
    /// SDK's own checksum behaviour (the `checksums` setting) decides what is sent. Not
    /// verified; not for production use.
    #[doc(hidden)]
    pub fn put_file_sdk_default(&self, key: &str, src: &Path) -> Result<()> {
        check_key(key)?;
        self.run("PUT", key, async {
            let body = ByteStream::from_path(src)
                .await
                .map_err(|e| self.protocol_error("PUT", key, &e.to_string()))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .body(body)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.sdk_error("PUT", key, e))
        })
    }

    /// For tests: starts a multipart upload with one part and leaves it open, as a process
    /// killed mid-upload would. Returns the upload id. Not for production use.
    #[doc(hidden)]
    pub fn begin_abandoned_upload(&self, key: &str) -> Result<String> {
        check_key(key)?;
        self.run("CreateMultipartUpload", key, async {
            let id = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .send()
                .await
                .map_err(|e| self.sdk_error("CreateMultipartUpload", key, e))?
                .upload_id()
                .unwrap_or_default()
                .to_owned();
            self.client
                .upload_part()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .upload_id(&id)
                .part_number(1)
                .body(ByteStream::from(vec![1u8; 1024]))
                .send()
                .await
                .map_err(|e| self.sdk_error("UploadPart", key, e))?;
            Ok(id)
        })
    }

    /// For tests that show the server checks checksums: PUTs `bytes` with `claimed` as its
    /// `x-amz-checksum-sha256`, without verification. Not for production use.
    #[doc(hidden)]
    pub fn put_bytes_claiming_sha256(
        &self,
        key: &str,
        bytes: &[u8],
        claimed: &[u8; 32],
    ) -> Result<()> {
        check_key(key)?;
        self.run("PUT", key, async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .checksum_sha256(base64::encode(claimed))
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.sdk_error("PUT", key, e))
        })
    }

    /// The checksum the server stored for `key` (`x-amz-checksum-sha256` on a HEAD with
    /// checksum mode enabled), if it keeps one.
    pub fn stored_sha256_checksum(&self, key: &str) -> Result<Option<String>> {
        check_key(key)?;
        self.run("HEAD", key, async {
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .map(|h| h.checksum_sha256().map(str::to_owned))
                .map_err(|e| self.sdk_error("HEAD", key, e))
        })
    }

    async fn put_bytes_async(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_length(bytes.len() as i64)
            .checksum_sha256(base64::encode(digest))
            .set_server_side_encryption(self.sse_header())
            .set_ssekms_key_id(self.sse_kms_key_id())
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| self.sdk_error("PUT", key, e))?;
        self.verify_stored(key, bytes.len() as u64, &base64::encode(digest), &digest)
            .await
    }

    async fn get_range_async(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.get_range_matching(key, offset, len, None).await
    }

    /// The object's size, ETag and modification time (seconds since the epoch), or `None` if
    /// absent: what reading an object that may change needs (the minio source).
    pub fn head_version(&self, key: &str) -> Result<Option<(u64, String, i64)>> {
        check_key(key)?;
        let head = self.run("HEAD", key, self.head_object(key))?;
        Ok(head.map(|out| {
            (
                out.content_length().unwrap_or(0).max(0) as u64,
                out.e_tag().unwrap_or_default().to_owned(),
                out.last_modified().map_or(0, |t| t.secs()),
            )
        }))
    }

    /// HEAD of an object; `None` if absent.
    async fn head_object(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if http_status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.sdk_error("HEAD", key, e)),
        }
    }

    /// [`Store::get_range`] of one version of an object: an object replaced since `etag` was
    /// read is an error, never a mix of two versions.
    pub fn get_range_if_match(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        etag: &str,
    ) -> Result<Vec<u8>> {
        check_key(key)?;
        self.run(
            "GET",
            key,
            self.get_range_matching(key, offset, len, Some(etag)),
        )
    }

    async fn get_range_matching(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>> {
        if len == 0 {
            // An HTTP range cannot be empty: check the offset against the size instead.
            let size =
                self.head_async(key)
                    .await?
                    .map(|m| m.size)
                    .ok_or_else(|| Error::NotFound {
                        tier: self.name.clone(),
                        key: key.to_owned(),
                    })?;
            return if offset <= size {
                Ok(Vec::new())
            } else {
                Err(self.range_error(key, offset, len, size))
            };
        }
        let end = offset
            .checked_add(len - 1)
            .ok_or_else(|| Error::Invalid(format!("range {offset}+{len} overflows")))?;
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={offset}-{end}"))
            .set_if_match(if_match.map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                if http_status(&e) == Some(412) {
                    Error::Invalid(format!(
                        "tier {}: {key} changed while it was being read (its ETag moved on)",
                        self.name
                    ))
                } else {
                    self.sdk_error("GET", key, e)
                }
            })?;
        // Chunks are appended straight into one buffer of the expected size (the SDK's
        // `AggregatedBytes::to_vec` copies byte by byte: a tenth of the mount's CPU at 400 MB/s).
        let mut stream = resp.body;
        let read_body = async {
            let mut body = Vec::with_capacity(len as usize);
            while let Some(chunk) = stream.try_next().await? {
                body.extend_from_slice(&chunk);
            }
            Ok::<_, aws_sdk_s3::primitives::ByteStreamError>(body)
        };
        let body = tokio::time::timeout(self.timeout * MAX_ATTEMPTS, read_body)
            .await
            .map_err(|_| {
                Error::io(
                    format!("tier {}: GET {key}: reading the body", self.name),
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "body stalled"),
                )
            })?
            .map_err(|e| {
                Error::io(
                    format!("tier {}: GET {key}: reading the body", self.name),
                    std::io::Error::new(std::io::ErrorKind::ConnectionReset, e),
                )
            })?;
        if body.len() as u64 != len {
            // S3 answers a range that runs past the end with the bytes that exist.
            return Err(Error::io(
                format!("tier {}: GET {key} bytes {offset}..{}", self.name, end + 1),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("got {} bytes, asked for {len}", body.len()),
                ),
            ));
        }
        Ok(body)
    }

    async fn head_async(&self, key: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.head_object(key).await?.map(|out| ObjectMeta {
            key: key.to_owned(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
        }))
    }

    async fn list_async(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full_key(prefix))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.sdk_error("LIST", prefix, e))?;
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key: key.to_owned(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) && !t.is_empty() => {
                    token = Some(t.to_owned())
                }
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
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

    fn describe(&self, key: &str) -> String {
        format!(
            "tier {}: s3://{}/{}",
            self.name,
            self.bucket,
            self.full_key(key)
        )
    }

    fn range_error(&self, key: &str, offset: u64, len: u64, size: u64) -> Error {
        Error::io(
            format!("tier {}: GET {key} bytes {offset}+{len}", self.name),
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the object has only {size} bytes"),
            ),
        )
    }

    fn protocol_error(&self, op: &str, key: &str, what: &str) -> Error {
        Error::io(
            format!("tier {}: {op} {key}", self.name),
            std::io::Error::other(what.to_owned()),
        )
    }

    /// Turns an SDK error into an [`Error`] with context; see the module doc for the mapping.
    pub(crate) fn sdk_error<E>(&self, op: &str, key: &str, err: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let context = format!("tier {}: {op} {key}", self.name);
        if matches!(&err, SdkError::ServiceError(_))
            && (err.code() == Some("NoSuchKey") || err.code() == Some("NotFound"))
        {
            return Error::NotFound {
                tier: self.name.clone(),
                key: key.to_owned(),
            };
        }
        Error::io(context, sdk_io_error(err))
    }
}

/// The std::io::Error (kind + message) that describes an SDK failure. The kind decides whether
/// [`Error::is_transient`] considers it worth retrying later.
pub(crate) fn sdk_io_error<E>(err: SdkError<E, HttpResponse>) -> std::io::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use std::io::ErrorKind;
    let status = http_status(&err);
    let kind = match &err {
        SdkError::TimeoutError(_) => ErrorKind::TimedOut,
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(c) if c.is_timeout() => ErrorKind::TimedOut,
            Some(c) => io_kind_in_chain(c).unwrap_or(ErrorKind::ConnectionReset),
            None => ErrorKind::ConnectionReset,
        },
        // 5xx: the server could not serve the request now (Garage without quorum says 503).
        // Reported as a reset connection so that callers retry later; the message says what
        // really happened.
        _ if status.is_some_and(|s| s >= 500) => ErrorKind::ConnectionReset,
        _ if status == Some(403) => ErrorKind::PermissionDenied,
        SdkError::ResponseError(_) => ErrorKind::InvalidData,
        _ => ErrorKind::Other,
    };
    let message = match (err.code(), err.message(), status) {
        (Some(code), Some(msg), Some(s)) => format!("HTTP {s} {code}: {msg}"),
        (Some(code), None, Some(s)) => format!("HTTP {s} {code}"),
        (None, _, Some(s)) if s >= 300 => format!("HTTP {s}"),
        // No error code: a transport failure, or a response the SDK could not parse.
        (_, _, Some(s)) => format!("HTTP {s}: {}", error_chain(&err)),
        _ => error_chain(&err),
    };
    std::io::Error::new(kind, message)
}

/// The HTTP status of a failed request, if a response arrived.
pub(crate) fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The kind of the first std::io::Error in an error's source chain (connection refused, …).
fn io_kind_in_chain(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                k @ (std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::TimedOut) => k,
                // Broken pipes, aborted connections, unreachable hosts: transport trouble.
                _ => std::io::ErrorKind::ConnectionReset,
            });
        }
        cur = e.source();
    }
    None
}

/// "outer: inner: innermost", since the SDK's own Display often says only "dispatch failure".
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
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

fn hash_reader(r: &mut impl Read, size: u64) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if total != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file changed size while being read ({size} → {total} bytes)"),
        ));
    }
    Ok(hasher.finalize().into())
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

    #[test]
    fn hash_reader_notices_a_size_change() {
        let data = vec![7u8; 3000];
        assert!(hash_reader(&mut &data[..], 3000).is_ok());
        assert!(hash_reader(&mut &data[..], 2999).is_err());
    }
}
