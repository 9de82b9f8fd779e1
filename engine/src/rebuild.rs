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
//!
//! A tier may be hostile. Nothing it holds is read before its size, as the tier's listing gives
//! it, is checked against what a legitimate object of its kind can be: the metadata sidecar is
//! at most [`metadata::MAX_LEN`], the `.sha256` line is exactly one line for the file, the index
//! is exactly [`encoded_len`] of the block count the metadata gives (in either format version),
//! and the stored file is the stored size the metadata gives, which the metadata's block count
//! and block size bound. Names
//! are held to the config's rules and the layout's shape. Objects the listing does not show as
//! regular files (a symlink, a FIFO) are never opened. The index and the stored file are read in
//! pieces of at most [`PIECE`] bytes and checked as they stream, so memory stays bounded whatever
//! the tier claims. One bad artifact is skipped and named, with what is wrong in words; the rest
//! of the rebuild goes on.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::artifact::format::{HEADER_LEN, describe_len as size, parse_header};
use crate::artifact::index::{IndexDecoder, Version, encoded_len};
use crate::artifact::metadata::{self, ArtifactMetadata};
use crate::catalog::{Catalog, NewArtifact};
use crate::id::{ServiceName, TierName, escape_control};
use crate::layout::{INDEX_SUFFIX, META_SUFFIX, SHA256_SUFFIX};
use crate::restic::ResticTier;
use crate::store::Store;
use crate::units::human_bytes;
use crate::{Error, Result};

/// The most bytes read from a tier at once.
pub const PIECE: u64 = 4 << 20;

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
    tiers: Vec<TierName>,
}

/// Reads every artifact on `stores` into a new catalog at `catalog_path`.
/// An existing catalog file is replaced only if `replace` is set (it is kept as `.bak`).
/// Restic tiers (`restic`) are read from their snapshots ([`crate::restic::rebuild`]).
pub fn rebuild(
    stores: &[&dyn Store],
    restic: Vec<ResticTier>,
    catalog_path: &Path,
    replace: bool,
) -> Result<RebuildReport> {
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
    let mut backups: BTreeMap<(ServiceName, i64), (String, BTreeMap<String, Found>)> =
        BTreeMap::new();
    for store in stores {
        // A configured tier's store, named as the config names it.
        let tier = TierName::new(store.name())?;
        // Sizes as the tier lists them: regular files only (a local tier lists no symlinks).
        let objects: BTreeMap<String, u64> = store
            .list("")?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        for key in objects.keys().filter_map(|k| k.strip_suffix(META_SUFFIX)) {
            let (meta, artifact) = match check_artifact(*store, key, &objects) {
                Ok(found) => found,
                Err(why) => {
                    let line = format!("{}:{}: {why}", store.name(), escape_control(key));
                    tracing::warn!("skipped {line}");
                    report.skipped.push(line);
                    continue;
                }
            };
            // Checked with the rest of the sidecar.
            let service = meta.service_name().map_err(Error::Invalid)?;
            let files = &mut backups
                .entry((service, meta.taken_at_unix))
                .or_insert_with(|| (meta.driver.clone(), BTreeMap::new()))
                .1;
            match files.get_mut(key) {
                None => {
                    files.insert(
                        key.to_owned(),
                        Found {
                            artifact,
                            tiers: vec![tier.clone()],
                        },
                    );
                }
                Some(first) if first.artifact.stored_sha256 == artifact.stored_sha256 => {
                    first.tiers.push(tier.clone());
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
    let mut snapshots = Vec::new();
    for tier in restic {
        let name = TierName::new(tier.name())?;
        let (copies, skipped) = crate::restic::rebuild::found(tier, 2)?;
        for line in skipped {
            tracing::warn!("skipped {line}");
            report.skipped.push(line);
        }
        for c in copies {
            // Checked with the rest of the sidecar.
            let service = c.meta.service_name().map_err(Error::Invalid)?;
            let files = &mut backups
                .entry((service, c.meta.taken_at_unix))
                .or_insert_with(|| (c.meta.driver.clone(), BTreeMap::new()))
                .1;
            let key = c.artifact.key.clone();
            match files.get_mut(&key) {
                None => {
                    files.insert(
                        key.clone(),
                        Found {
                            artifact: c.artifact,
                            tiers: vec![name.clone()],
                        },
                    );
                }
                Some(first) if first.artifact.raw_sha256 == c.artifact.raw_sha256 => {
                    first.tiers.push(name.clone());
                }
                Some(first) => {
                    report.skipped.push(format!(
                        "{name}:{key}: not the file tier {} holds under this name",
                        first.tiers[0]
                    ));
                    continue;
                }
            }
            snapshots.push((key, name.clone(), c.snapshot));
        }
    }
    for ((service, taken_at), (driver, files)) in backups {
        let copies: Vec<(String, Vec<TierName>)> = files
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
                *report.copies.entry(t.to_string()).or_default() += 1;
            }
        }
        report.artifacts += artifacts.len();
        report.backups += 1;
    }
    for (key, tier, snapshot) in &snapshots {
        catalog.set_key_snapshot(key, tier, snapshot)?;
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

/// The last component of a key, printable: the name of the file a message is about.
fn file_name(key: &str) -> String {
    escape_control(key.rsplit('/').next().unwrap_or(key)).into_owned()
}

/// Reads `len` bytes of a listed object in pieces of at most [`PIECE`], handing each to `each`.
fn stream(
    store: &dyn Store,
    key: &str,
    offset: u64,
    len: u64,
    mut each: impl FnMut(&[u8]) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let mut done = 0;
    while done < len {
        let n = PIECE.min(len - done);
        let piece = store
            .get_range(key, offset + done, n)
            .map_err(|e| format!("cannot read {}: {e}", file_name(key)))?;
        if piece.len() as u64 != n {
            return Err(format!(
                "{} gave {} bytes where {n} were asked for",
                file_name(key),
                piece.len()
            ));
        }
        each(&piece)?;
        done += n;
    }
    Ok(())
}

/// Checks one artifact's sidecars and stored file against each other and against the format,
/// reading nothing whose listed size is not what it should be. `Err` says what is wrong.
fn check_artifact(
    store: &dyn Store,
    key: &str,
    objects: &BTreeMap<String, u64>,
) -> std::result::Result<(ArtifactMetadata, NewArtifact), String> {
    let gz = file_name(key);
    let listed = |suffix: &str| -> std::result::Result<(String, u64), String> {
        let k = format!("{key}{suffix}");
        match objects.get(&k) {
            Some(&n) => Ok((k, n)),
            None => Err(format!(
                "{} is not on the tier as a regular file (missing, or a symlink or special \
                 file, which is never opened)",
                if suffix.is_empty() {
                    format!("stored file {gz}")
                } else {
                    format!("sidecar {gz}{suffix}")
                }
            )),
        }
    };

    // The metadata: bounded, then parsed, then held to the layout and the format.
    let (meta_key, meta_len) = listed(META_SUFFIX)?;
    let meta_name = format!("{gz}{META_SUFFIX}");
    if meta_len > metadata::MAX_LEN {
        return Err(format!(
            "sidecar {meta_name} is {}; a metadata sidecar is at most {}",
            size(meta_len),
            human_bytes(metadata::MAX_LEN)
        ));
    }
    let mut bytes = Vec::with_capacity(meta_len as usize);
    stream(store, &meta_key, 0, meta_len, |p| {
        bytes.extend_from_slice(p);
        Ok(())
    })?;
    let meta = ArtifactMetadata::parse(&bytes).map_err(|e| format!("sidecar {meta_name}: {e}"))?;
    drop(bytes);
    meta.check()
        .map_err(|e| format!("sidecar {meta_name}: {e}"))?;
    let expected_key = crate::layout::object_key(&meta.service, meta.taken_at_unix, &meta.file);
    if expected_key != key {
        return Err(format!(
            "sidecar {meta_name} describes {}, not this file",
            escape_control(&expected_key)
        ));
    }

    // The stored file, by its listed size.
    let (_, gz_len) = listed("")?;
    if gz_len != meta.stored_size {
        return Err(format!(
            "stored file {gz} is {}; its metadata says {}",
            size(gz_len),
            size(meta.stored_size)
        ));
    }

    // The sha256sum line: exactly one line for this file.
    let (sha_key, sha_len) = listed(SHA256_SUFFIX)?;
    let gz_raw_name = key.rsplit('/').next().unwrap_or(key);
    let line = meta.sha256_line(gz_raw_name);
    if sha_len != line.len() as u64 {
        return Err(format!(
            "sidecar {gz}{SHA256_SUFFIX} is {}; the sha256sum line for {gz} is {} bytes",
            size(sha_len),
            line.len()
        ));
    }
    let mut got = Vec::with_capacity(line.len());
    stream(store, &sha_key, 0, sha_len, |p| {
        got.extend_from_slice(p);
        Ok(())
    })?;
    if got != line.as_bytes() {
        return Err(format!(
            "sidecar {gz}{SHA256_SUFFIX} does not match the SHA-256 in {meta_name}"
        ));
    }

    // The index: exactly the length of an index of the metadata's block count, streamed and
    // checked entry by entry.
    let (idx_key, idx_len) = listed(INDEX_SUFFIX)?;
    let idx_name = format!("{gz}{INDEX_SUFFIX}");
    if Version::of_len(idx_len, meta.block_count).is_none() {
        return Err(format!(
            "sidecar {idx_name} is {}; an index of {} blocks is {} bytes ({} in format version 1)",
            size(idx_len),
            meta.block_count,
            encoded_len(Version::V2, meta.block_count),
            encoded_len(Version::V1, meta.block_count)
        ));
    }
    let mut decoder = IndexDecoder::new(idx_len, Some(meta.block_count))
        .map_err(|e| format!("sidecar {idx_name}: {e}"))?;
    stream(store, &idx_key, 0, idx_len, |p| {
        decoder
            .feed(p)
            .map_err(|e| format!("sidecar {idx_name}: {e}"))
    })?;
    let index = decoder
        .finish()
        .map_err(|e| format!("sidecar {idx_name}: {e}"))?;
    for (what, from_index, from_meta) in [
        (
            "block size",
            index.block_size as u64,
            meta.block_size as u64,
        ),
        ("raw size", index.raw_size(), meta.raw_size),
        ("stored size", index.stored_size(), meta.stored_size),
    ] {
        if from_index != from_meta {
            return Err(format!(
                "sidecars {idx_name} and {meta_name} disagree on the {what} ({from_index} against {from_meta})"
            ));
        }
    }

    // The stored file, streamed: each member's header must be its index entry, each member's
    // SHA-256 the index's (format version 2), and the whole file's SHA-256 the metadata's.
    let mut hasher = Sha256::new();
    for (i, e) in index.entries.iter().enumerate() {
        let mut first = true;
        let mut member_hasher = Sha256::new();
        stream(store, key, e.offset, e.stored_len as u64, |piece| {
            if std::mem::take(&mut first) {
                // Every member is longer than its header (the index checked it), and a piece
                // is longer still.
                let h = parse_header(&piece[..HEADER_LEN.min(piece.len())])
                    .map_err(|why| format!("stored file {gz}: block {i}: {why}"))?;
                if (h.member_len, h.raw_len, h.sha256) != (e.stored_len, e.raw_len, e.sha256) {
                    return Err(format!(
                        "stored file {gz}: block {i}: its header differs from {idx_name}"
                    ));
                }
            }
            hasher.update(piece);
            member_hasher.update(piece);
            Ok(())
        })?;
        if e.stored_sha256
            .is_some_and(|want| <[u8; 32]>::from(member_hasher.finalize()) != want)
        {
            return Err(format!(
                "stored file {gz}: block {i}: its SHA-256 differs from {idx_name}"
            ));
        }
    }
    if hex::encode(hasher.finalize()) != meta.stored_sha256 {
        return Err(format!(
            "stored file {gz}: its SHA-256 differs from the one in {meta_name}"
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
