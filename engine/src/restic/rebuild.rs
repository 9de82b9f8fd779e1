//! `catalog rebuild --from` a restic tier: every tierback snapshot names its backup, and its
//! hidden sidecars (`.tierback/<file>.gz.meta.json`, `.idx`) describe each artifact exactly as
//! they do on every other tier. Each sidecar is bounded before it is read, held to the layout,
//! and the file itself is read in full and checked block by block against the index and as a
//! whole against the metadata's raw SHA-256 before the copy is trusted.

use std::io::Write;

use sha2::{Digest, Sha256};

use super::{ResticStore, ResticTier, raw_path};
use crate::Result;
use crate::artifact::BlockIndex;
use crate::artifact::index::{Version, encoded_len};
use crate::artifact::metadata::ArtifactMetadata;
use crate::artifact::reader::ArtifactReader;
use crate::catalog::NewArtifact;
use crate::layout::{INDEX_SUFFIX, META_SUFFIX};

/// The largest sidecar read from a snapshot: the index of a 1.6 TiB artifact in 1 MiB blocks.
/// (The repository is authenticated, so only a holder of the password could write a larger
/// one; the bound keeps memory sane even then.)
const MAX_SIDECAR: u64 = 128 << 20;

/// One artifact found in a snapshot, checked.
pub struct FoundCopy {
    pub meta: ArtifactMetadata,
    pub artifact: NewArtifact,
    pub snapshot: String,
}

/// Every artifact the tier's snapshots hold; those that fail a check are named in the second
/// list with why, and left out.
pub fn found(tier: ResticTier, threads: usize) -> Result<(Vec<FoundCopy>, Vec<String>)> {
    let repo = tier.open_for_reads()?;
    let snapshots = tier.snapshots_in(&repo)?;
    let name = tier.name().to_owned();
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut sidecar_sets = Vec::new();
    for snap in &snapshots {
        match tier.sidecars(&repo, snap, MAX_SIDECAR) {
            Ok(files) => sidecar_sets.push((snap.clone(), files)),
            Err(e) => skipped.push(format!("{name}: snapshot {}: {e}", snap.id)),
        }
    }
    drop(repo);
    let store = ResticStore::new(tier);
    for (snap, files) in sidecar_sets {
        for (file, bytes) in files.iter().filter(|(f, _)| f.ends_with(META_SUFFIX)) {
            let gz = file.strip_suffix(META_SUFFIX).unwrap_or(file);
            let idx = files
                .iter()
                .find(|(f, _)| *f == format!("{gz}{INDEX_SUFFIX}"))
                .map(|(_, b)| b.as_slice());
            match check(&store, bytes, idx, threads) {
                Ok((meta, artifact)) => found.push(FoundCopy {
                    meta,
                    artifact,
                    snapshot: snap.id.clone(),
                }),
                Err(why) => skipped.push(format!("{name}: snapshot {}: {gz}: {why}", snap.id)),
            }
        }
    }
    Ok((found, skipped))
}

fn check(
    store: &ResticStore,
    meta_bytes: &[u8],
    idx: Option<&[u8]>,
    threads: usize,
) -> std::result::Result<(ArtifactMetadata, NewArtifact), String> {
    let meta = ArtifactMetadata::parse(meta_bytes).map_err(|e| format!("metadata: {e}"))?;
    meta.check().map_err(|e| format!("metadata: {e}"))?;
    let key = crate::layout::object_key(&meta.service, meta.taken_at_unix, &meta.file);
    let idx = idx.ok_or("no index sidecar beside the metadata")?;
    if Version::of_len(idx.len() as u64, meta.block_count).is_none() {
        return Err(format!(
            "the index is {} bytes; an index of {} blocks is {}",
            idx.len(),
            meta.block_count,
            encoded_len(Version::V2, meta.block_count)
        ));
    }
    let index = BlockIndex::decode(idx).map_err(|e| format!("index: {e}"))?;
    if index.raw_size() != meta.raw_size || index.block_size != meta.block_size {
        return Err("the index and the metadata disagree on the sizes".into());
    }
    let reader = ArtifactReader {
        store,
        key: &key,
        index: &index,
    };
    let mut hashing = HashingSink(Sha256::new());
    reader
        .copy_to(&mut hashing, threads)
        .map_err(|e| format!("{}: {e}", raw_path(&key)))?;
    if hex::encode(hashing.0.finalize()) != meta.raw_sha256 {
        return Err(format!(
            "{}: its SHA-256 differs from the metadata's",
            raw_path(&key)
        ));
    }
    let artifact = NewArtifact {
        file: meta.file.clone(),
        key,
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

struct HashingSink(Sha256);

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
