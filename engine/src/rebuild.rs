//! Rebuilding a lost catalog from tiers' sidecars alone: the disaster-recovery path. Given
//! several tiers, an artifact found on more than one is recorded once with a copy on each (the
//! copies must be the same file: same stored SHA-256), so sync does not upload it again and
//! prune manages every copy.
//!
//! Every `<key>.meta.json` on the tier names an artifact. Its index sidecar (self-checksummed),
//! its `.sha256` line and the stored file itself must all agree with the metadata, and the
//! stored file's SHA-256 is recomputed; anything that disagrees is reported and skipped, never
//! trusted. The new catalog is written beside the old path and renamed into place, so a failed
//! rebuild leaves whatever was there.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::artifact::BlockIndex;
use crate::artifact::metadata::ArtifactMetadata;
use crate::catalog::{Catalog, NewArtifact};
use crate::layout::{INDEX_SUFFIX, META_SUFFIX, SHA256_SUFFIX};
use crate::store::Store;
use crate::{Error, Result};

#[derive(Debug, Default, serde::Serialize)]
pub struct RebuildReport {
    pub artifacts: usize,
    pub backups: usize,
    /// Verified copies recorded, per tier.
    pub copies: BTreeMap<String, usize>,
    /// Artifacts skipped, with why.
    pub skipped: Vec<String>,
}

/// One artifact as found, with the tiers that hold an intact copy of it.
struct Found {
    artifact: NewArtifact,
    tiers: Vec<String>,
}

/// Reads every artifact on `stores` into a new catalog at `catalog_path`.
/// An existing catalog file is replaced only if `replace` is set (it is kept as `.bak`).
pub fn rebuild(stores: &[&dyn Store], catalog_path: &Path, replace: bool) -> Result<RebuildReport> {
    if catalog_path.exists() && !replace {
        return Err(Error::Invalid(format!(
            "catalog {} exists: rebuilding replaces it; pass --force to keep the old one as {}.bak and replace it",
            catalog_path.display(),
            catalog_path.display()
        )));
    }
    let tmp = catalog_path.with_extension("rebuild.tmp");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
    }
    let mut report = RebuildReport::default();
    let mut catalog = Catalog::open(&tmp)?;

    // Group artifacts into backups by (service, time), and copies into artifacts by key.
    let mut backups: BTreeMap<(String, i64), (String, BTreeMap<String, Found>)> = BTreeMap::new();
    for store in stores {
        for object in store.list("")? {
            let Some(key) = object.key.strip_suffix(META_SUFFIX) else {
                continue;
            };
            let (meta, artifact) = match check_artifact(*store, key) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(tier = store.name(), key, "skipped: {e}");
                    report.skipped.push(format!("{}:{key}: {e}", store.name()));
                    continue;
                }
            };
            let files = &mut backups
                .entry((meta.service.clone(), meta.taken_at_unix))
                .or_insert_with(|| (meta.driver.clone(), BTreeMap::new()))
                .1;
            match files.get_mut(key) {
                None => {
                    files.insert(
                        key.to_owned(),
                        Found {
                            artifact,
                            tiers: vec![store.name().to_owned()],
                        },
                    );
                }
                Some(first) if first.artifact.stored_sha256 == artifact.stored_sha256 => {
                    first.tiers.push(store.name().to_owned());
                }
                Some(first) => report.skipped.push(format!(
                    "{}:{key}: not the file tier {} holds under this name (SHA-256 {} against {})",
                    store.name(),
                    first.tiers[0],
                    artifact.stored_sha256,
                    first.artifact.stored_sha256
                )),
            }
        }
    }
    for ((service, taken_at), (driver, files)) in backups {
        let copies: Vec<(String, Vec<String>)> = files
            .iter()
            .map(|(key, f)| (key.clone(), f.tiers.clone()))
            .collect();
        let artifacts: Vec<NewArtifact> = files.into_values().map(|f| f.artifact).collect();
        // Recorded on the first artifact's first tier, then each artifact's copies set right.
        catalog.record_backup(
            &service,
            taken_at,
            &driver,
            None,
            &copies[0].1[0],
            &artifacts,
        )?;
        for (key, tiers) in &copies {
            catalog.set_copies(key, tiers)?;
            for t in tiers {
                *report.copies.entry(t.clone()).or_default() += 1;
            }
        }
        report.artifacts += artifacts.len();
        report.backups += 1;
    }
    drop(catalog);

    if catalog_path.exists() {
        let bak = format!("{}.bak", catalog_path.display());
        std::fs::rename(catalog_path, &bak)
            .map_err(|e| Error::io(format!("keeping the old catalog as {bak}"), e))?;
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", catalog_path.display()));
        }
    }
    std::fs::rename(&tmp, catalog_path).map_err(|e| {
        Error::io(
            format!("moving the rebuilt catalog to {}", catalog_path.display()),
            e,
        )
    })?;
    Ok(report)
}

/// Checks one artifact's sidecars and stored file against each other.
fn check_artifact(store: &dyn Store, key: &str) -> Result<(ArtifactMetadata, NewArtifact)> {
    let bad = |why: String| Error::integrity(format!("{}:{key}", store.name()), None, why);
    let meta: ArtifactMetadata =
        serde_json::from_slice(&store.get(&format!("{key}{META_SUFFIX}"))?)
            .map_err(|e| bad(format!("metadata is not valid: {e}")))?;
    let expected_key = crate::layout::object_key(&meta.service, meta.taken_at_unix, &meta.file);
    if expected_key != key {
        return Err(bad(format!(
            "metadata describes {expected_key}, not this file"
        )));
    }
    let index = BlockIndex::decode(&store.get(&format!("{key}{INDEX_SUFFIX}"))?)
        .map_err(|e| bad(format!("index: {e}")))?;
    if index.stored_size() != meta.stored_size
        || index.raw_size() != meta.raw_size
        || index.entries.len() as u64 != meta.block_count
    {
        return Err(bad("index and metadata disagree on sizes".into()));
    }
    let gz_name = key.rsplit('/').next().unwrap_or(key);
    let line = store.get(&format!("{key}{SHA256_SUFFIX}"))?;
    if line != format!("{}  {gz_name}\n", meta.stored_sha256).as_bytes() {
        return Err(bad(".sha256 sidecar and metadata disagree".into()));
    }
    match store.head(key)? {
        Some(m) if m.size == meta.stored_size => {}
        Some(m) => {
            return Err(bad(format!(
                "stored file is {} bytes, metadata says {}",
                m.size, meta.stored_size
            )));
        }
        None => return Err(bad("stored file is missing".into())),
    }
    let mut h = Sha256::new();
    for e in &index.entries {
        h.update(store.get_range(key, e.offset, e.stored_len as u64)?);
    }
    if hex::encode(h.finalize()) != meta.stored_sha256 {
        return Err(bad(
            "SHA-256 of the stored file differs from its metadata".into()
        ));
    }
    let artifact = NewArtifact {
        file: meta.file.clone(),
        key: key.to_owned(),
        raw_size: meta.raw_size,
        raw_sha256: meta.raw_sha256.clone(),
        stored_size: meta.stored_size,
        stored_sha256: meta.stored_sha256.clone(),
        compression_level: meta.compression_level,
        index,
        facts: serde_json::Value::Object(meta.facts.clone()),
    };
    Ok((meta, artifact))
}
