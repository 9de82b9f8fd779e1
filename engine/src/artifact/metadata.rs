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
