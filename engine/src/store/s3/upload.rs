//! Uploads: a single PUT or a multipart upload, each part carrying its SHA-256, and the check of
//! the stored object (the server's checksum, or a read-back) before an upload counts as done.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::base64;
use sha2::{Digest, Sha256};

use super::{MAX_ATTEMPTS, S3Store};
use crate::store::check_key;
use crate::{Error, Result};

/// Parts uploaded concurrently by one multipart upload. Memory is bounded by this times
/// `part_size` (16 MiB by default → 64 MiB); four streams saturate a loopback Garage.
const PARTS_IN_FLIGHT: usize = 4;

/// S3 allows at most this many parts per upload; `part_size` is raised for larger files.
const MAX_PARTS: u64 = 10_000;

/// S3's smallest allowed part (except the last one).
pub(super) const MIN_PART_SIZE: u64 = 5 << 20;

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

impl S3Store {
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
    pub(super) async fn put_bytes_async(&self, key: &str, bytes: &[u8]) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_reader_notices_a_size_change() {
        let data = vec![7u8; 3000];
        assert!(hash_reader(&mut &data[..], 3000).is_ok());
        assert!(hash_reader(&mut &data[..], 2999).is_err());
    }
}
