//! Housekeeping of the bucket: its multipart uploads (those a killed upload left behind) and the
//! buckets the credentials see. The bucket policy is [`crate::store::s3_policy`].

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;

use super::S3Store;
use crate::Result;
use crate::store::check_key;

impl S3Store {
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
}
