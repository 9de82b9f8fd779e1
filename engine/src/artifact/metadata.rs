//! The per-artifact metadata sidecar (`NAME.gz.meta.json`): what the seed's metadata files hold,
//! plus enough to rebuild the catalog from a tier alone.

use serde::{Deserialize, Serialize};

use crate::source::Facts;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMetadata {
    pub service: String,
    /// `<service>-<YYYYMMDDTHHMMSSZ>`: the backup this artifact belongs to.
    pub backup_id: String,
    pub file: String,
    pub taken_at: String,
    pub taken_at_unix: i64,
    pub driver: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    pub block_size: u32,
    pub block_count: u64,
    pub compression_level: i32,
    pub tool: String,
    pub facts: Facts,
}

/// A stable, readable backup id.
pub fn backup_id(service: &str, taken_at: i64) -> String {
    let date = crate::layout::rfc3339(taken_at).replace(['-', ':'], "");
    format!("{service}-{date}")
}

impl ArtifactMetadata {
    /// The metadata of an artifact the catalog knows, as the sidecar holds it.
    pub fn from_record(a: &crate::catalog::ArtifactRecord) -> ArtifactMetadata {
        ArtifactMetadata {
            service: a.service.clone(),
            backup_id: backup_id(&a.service, a.taken_at),
            file: a.file.clone(),
            taken_at: crate::layout::rfc3339(a.taken_at),
            taken_at_unix: a.taken_at,
            driver: a.driver.clone(),
            raw_size: a.raw_size,
            raw_sha256: a.raw_sha256.clone(),
            stored_size: a.stored_size,
            stored_sha256: a.stored_sha256.clone(),
            block_size: a.block_size,
            block_count: a.block_count,
            compression_level: a.compression_level,
            tool: crate::TOOL_VERSION.to_owned(),
            facts: match &a.facts {
                serde_json::Value::Object(m) => m.clone(),
                _ => Facts::new(),
            },
        }
    }

    /// The keys of the sidecars beside `key`, in the order they are written (metadata last).
    pub fn sidecar_keys(key: &str) -> Vec<String> {
        use crate::layout::{INDEX_SUFFIX, META_SUFFIX, SHA256_SUFFIX};
        vec![
            format!("{key}{INDEX_SUFFIX}"),
            format!("{key}{SHA256_SUFFIX}"),
            format!("{key}{META_SUFFIX}"),
        ]
    }

    /// The sidecars stored beside `key` on every tier, as (key, bytes): the block index, the
    /// `sha256sum` line of the stored file, and this metadata. The metadata comes last: its
    /// presence is what marks a complete copy on a tier.
    pub fn sidecars(
        &self,
        key: &str,
        index: &crate::artifact::BlockIndex,
    ) -> Vec<(String, Vec<u8>)> {
        use crate::layout::{INDEX_SUFFIX, META_SUFFIX, SHA256_SUFFIX};
        let gz_name = key.rsplit('/').next().unwrap_or(key);
        vec![
            (format!("{key}{INDEX_SUFFIX}"), index.encode()),
            (
                format!("{key}{SHA256_SUFFIX}"),
                format!("{}  {gz_name}\n", self.stored_sha256).into_bytes(),
            ),
            (
                format!("{key}{META_SUFFIX}"),
                serde_json::to_vec_pretty(self).expect("metadata serializes"),
            ),
        ]
    }
}
