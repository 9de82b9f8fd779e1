//! `driver = "minio"`: each bucket of an S3-compatible server (MinIO, Garage, AWS) mirrored into a
//! tar, `BUCKET_HHMMSS.tar`, one entry per object under its key (the seed's daily MinIO sync).
//! Objects are streamed in ranged GETs of one version (`If-Match` on the ETag of a HEAD), never
//! held whole; an object replaced mid-read fails the backup rather than mixing versions. Entries
//! keep the objects' modification times; content types and user metadata are not kept. Without
//! `buckets`, every bucket the key can list is taken except those this config's s3 tiers write
//! to: backing up the backup bucket would copy every backup into the next one.
//!
//! Restore: `tar -x -C DIR` and `mc mirror DIR ALIAS/BUCKET` (or `aws s3 sync`).
//! Directory markers (empty objects whose key ends in `/`) are skipped; a key that cannot be a
//! path (`a//b`, `../x`) fails the backup, naming the key.

use std::io::Read;

use super::piped::Piped;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ArtifactPlan, DriverSettings, Dump, Facts, Source, facts_of};
use crate::config::{Mistake, ServiceContext};
use crate::config::{S3Checksums, TierConfig, TierKind};
use crate::id::TierName;
use crate::restore_test::{Outcome, Replay};
use crate::secret::SecretRef;
use crate::store::Store;
use crate::store::s3::S3Store;
use crate::tls::Transport;
use crate::{Error, Result};

/// Bytes fetched per ranged GET.
const CHUNK: u64 = 8 << 20;

/// The service keys of `driver = "minio"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    endpoint: Option<Spanned<String>>,
    region: Option<String>,
    access_key: Option<Spanned<String>>,
    secret_key: Option<Spanned<String>>,
    /// Buckets to mirror; default: every bucket the key can list but the tiers' own.
    buckets: Option<Spanned<Vec<String>>>,
    ca_file: Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "minio";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        let transport = service.transport(&self.ca_file, self.allow_insecure_http)?;
        let buckets = service.names(self.buckets, "buckets", "bucket")?;
        let endpoint = service.url(self.endpoint, "http://127.0.0.1:9000", &transport)?;
        let same = |e: &str| e.trim_end_matches('/') == endpoint.trim_end_matches('/');
        let need = |key: Option<Spanned<String>>, name: &str| {
            service.secret(service.needs(Self::DRIVER, key, name)?)
        };
        Ok(Arc::new(MinioSource {
            service: service.name.to_string(),
            region: self.region.unwrap_or_else(|| "us-east-1".into()),
            access_key: need(self.access_key, "access_key")?,
            secret_key: need(self.secret_key, "secret_key")?,
            buckets,
            // The buckets this config's s3 tiers write to on the same server.
            exclude: service
                .tiers
                .iter()
                .filter_map(|t| match &t.kind {
                    TierKind::S3 {
                        bucket, endpoint, ..
                    } if same(endpoint) => Some(bucket.clone()),
                    _ => None,
                })
                .collect(),
            endpoint,
            transport,
        }))
    }
}

/// What a bucket mirror records.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MirrorFacts {
    /// Objects in the tar: what the restore test's `tar -t` must list.
    pub entries: Option<u64>,
    pub object_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_markers_skipped: Option<u64>,
}

#[derive(Debug)]
pub struct MinioSource {
    pub service: String,
    pub endpoint: String,
    pub transport: Transport,
    pub region: String,
    pub access_key: SecretRef,
    pub secret_key: SecretRef,
    /// None: every listable bucket but `exclude`.
    pub buckets: Option<Vec<String>>,
    /// The buckets this config's s3 tiers write to.
    pub exclude: Vec<String>,
}

impl MinioSource {
    fn fail(&self, message: String) -> Error {
        Error::source(&self.service, message)
    }

    /// A client for `bucket`, built the way an s3 tier's is (path-style, MinIO-safe checksums).
    fn store(&self, bucket: &str) -> Result<S3Store> {
        let tier = TierConfig::new(
            TierName::new(&self.service)?,
            TierKind::S3 {
                endpoint: self.endpoint.clone(),
                bucket: bucket.to_owned(),
                region: self.region.clone(),
                prefix: String::new(),
                access_key: Some(self.access_key.clone()),
                secret_key: Some(self.secret_key.clone()),
                path_style: true,
                checksums: S3Checksums::WhenRequired,
                multipart_threshold: u64::MAX,
                part_size: CHUNK,
                timeout_secs: 60,
                transport: self.transport.clone(),
                server_side_encryption: None,
            },
        );
        S3Store::open(&tier)
    }
}

impl Source for MinioSource {
    fn driver(&self) -> &'static str {
        "minio"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        let buckets = match &self.buckets {
            Some(b) => b.clone(),
            None => {
                let all = self
                    .store("listing")?
                    .list_buckets()
                    .map_err(|e| self.fail(format!("listing buckets: {e}")))?;
                all.into_iter()
                    .filter(|b| {
                        let tier_bucket = self.exclude.contains(b);
                        if tier_bucket {
                            tracing::info!(service = %self.service, bucket = %b, "left out: a tier writes backups there");
                        }
                        !tier_bucket
                    })
                    .collect()
            }
        };
        if buckets.is_empty() {
            return Err(self.fail("no bucket to back up (the tiers' buckets are left out)".into()));
        }
        buckets
            .into_iter()
            .map(|b| {
                crate::id::validate_file_part(&b, "bucket name")?;
                Ok(ArtifactPlan {
                    stem: b,
                    extension: "tar".into(),
                })
            })
            .collect()
    }

    fn open(&self, artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        let bucket = artifact.stem.clone();
        let store = self.store(&bucket)?;
        let objects = store
            .list("")
            .map_err(|e| self.fail(format!("listing bucket {bucket}: {e}")))?;
        let service = self.service.clone();
        Ok(Box::new(Piped::spawn(move |writer| {
            write_tar(writer, &store, &objects).map_err(|message| {
                Error::source(
                    service,
                    format!("bucket {bucket}: {message}; nothing was stored"),
                )
            })
        })?))
    }

    /// A bucket mirror is a tar like a files backup, with its object count as `entries`.
    fn restore_test(&self, replay: &Replay<'_>) -> Result<Outcome> {
        let recorded: MirrorFacts = replay.facts()?;
        replay.tar_entries_as_recorded(recorded.entries)
    }
}

/// Writes every object of the listing into a tar on `writer`; returns the facts.
fn write_tar(
    writer: std::io::PipeWriter,
    store: &S3Store,
    objects: &[crate::store::ObjectMeta],
) -> std::result::Result<Facts, String> {
    let mut tar = tar::Builder::new(writer);
    let (mut count, mut bytes, mut markers) = (0u64, 0u64, 0u64);
    for obj in objects {
        if obj.key.ends_with('/') && obj.size == 0 {
            markers += 1;
            continue;
        }
        crate::store::check_key(&obj.key).map_err(|_| {
            format!(
                "object key {:?} cannot be a path in a tar (empty, `.` or `..` segments)",
                obj.key
            )
        })?;
        // Size, version and time from one HEAD: every ranged GET below must match that
        // version, so an object replaced meanwhile fails the backup instead of mixing versions.
        let Some((size, etag, mtime)) = store
            .head_version(&obj.key)
            .map_err(|e| format!("object {}: {e}", obj.key))?
        else {
            continue; // deleted since the listing
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(u64::try_from(mtime).unwrap_or(0));
        header.set_entry_type(tar::EntryType::Regular);
        let body = ObjectReader {
            store,
            key: &obj.key,
            etag: &etag,
            size,
            offset: 0,
            chunk: Vec::new(),
            at: 0,
        };
        tar.append_data(&mut header, &obj.key, body)
            .map_err(|e| format!("object {}: {e}", obj.key))?;
        count += 1;
        bytes += size;
    }
    tar.finish().map_err(|e| format!("ending the tar: {e}"))?;
    Ok(facts_of(&MirrorFacts {
        entries: Some(count),
        object_bytes: Some(bytes),
        directory_markers_skipped: (markers > 0).then_some(markers),
    }))
}

/// One object as a `Read`, fetched [`CHUNK`] bytes at a time.
struct ObjectReader<'a> {
    store: &'a S3Store,
    key: &'a str,
    etag: &'a str,
    size: u64,
    offset: u64,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            if self.offset == self.size {
                return Ok(0);
            }
            let len = CHUNK.min(self.size - self.offset);
            self.chunk = self
                .store
                .get_range_if_match(self.key, self.offset, len, self.etag)
                .map_err(std::io::Error::other)?;
            self.offset += len;
            self.at = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
