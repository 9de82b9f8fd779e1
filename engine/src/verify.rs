//! Verification of a stored copy against the catalog (the root of trust): the stored file's size
//! and SHA-256, every member's header, CRC32, length and SHA-256, and the sidecars (`.sha256`,
//! `.idx`, `.meta.json`). Problems name the file and the block; results go to the catalog.

use sha2::{Digest, Sha256};

use crate::artifact::BlockIndex;
use crate::artifact::metadata::ArtifactMetadata;
use crate::artifact::reader::verify_member;
use crate::catalog::ArtifactRecord;
use crate::layout::{INDEX_SUFFIX, META_SUFFIX, SHA256_SUFFIX};
use crate::parallel::ordered_map;
use crate::store::Store;
use crate::{Error, Result};

/// Checks one copy; returns the problems found (empty: the copy is good). An `Err` is returned
/// only when the check itself could not run (the tier is unreachable).
pub fn verify_copy(
    store: &dyn Store,
    artifact: &ArtifactRecord,
    index: &BlockIndex,
    threads: usize,
) -> Result<Vec<String>> {
    let key = artifact.key.as_str();
    let label = format!("{}:{key}", store.name());
    let mut problems = Vec::new();

    match store.head(key)? {
        None => {
            problems.push(format!("{label}: missing"));
            return Ok(problems);
        }
        Some(m) if m.size != artifact.stored_size => problems.push(format!(
            "{label}: size {} differs from the catalog's {}",
            m.size, artifact.stored_size
        )),
        Some(_) => {}
    }

    // Every block, fetched once: its bytes feed both the per-block check and the file hash.
    let mut hasher = Sha256::new();
    let mut fetch_failed = None;
    ordered_map(
        (0..index.entries.len()).map(Ok::<usize, Error>),
        threads,
        threads * 2,
        libdeflater::Decompressor::new,
        |d, i| {
            let e = &index.entries[i];
            store
                .get_range(key, e.offset, e.stored_len as u64)
                .map(|member| {
                    let check = verify_member(&label, i, e, &member, d, true).map(|_| ());
                    (member, check)
                })
        },
        |fetched| {
            match fetched {
                Ok((member, check)) => {
                    hasher.update(&member);
                    if let Err(e) = check {
                        problems.push(e.to_string());
                    }
                }
                Err(e) => {
                    if fetch_failed.is_none() {
                        fetch_failed = Some(e);
                    }
                }
            }
            Ok(())
        },
    )?;
    if let Some(e) = fetch_failed {
        problems.push(format!("{label}: cannot read all blocks: {e}"));
    } else if hex::encode(hasher.finalize()) != artifact.stored_sha256 {
        problems.push(format!(
            "{label}: SHA-256 of the stored file differs from the catalog"
        ));
    }

    check_sidecars(store, artifact, index, &label, &mut problems);
    Ok(problems)
}

fn check_sidecars(
    store: &dyn Store,
    a: &ArtifactRecord,
    index: &BlockIndex,
    label: &str,
    problems: &mut Vec<String>,
) {
    let gz_name = a.key.rsplit('/').next().unwrap_or(&a.key);
    match store.get(&format!("{}{SHA256_SUFFIX}", a.key)) {
        Ok(bytes) if bytes == format!("{}  {gz_name}\n", a.stored_sha256).as_bytes() => {}
        Ok(_) => problems.push(format!(
            "{label}{SHA256_SUFFIX}: does not match the catalog"
        )),
        Err(e) => problems.push(format!("{label}{SHA256_SUFFIX}: {e}")),
    }
    match store.get(&format!("{}{INDEX_SUFFIX}", a.key)) {
        Ok(bytes) => match BlockIndex::decode(&bytes) {
            Ok(i) if &i == index => {}
            Ok(_) => problems.push(format!(
                "{label}{INDEX_SUFFIX}: differs from the catalog's index"
            )),
            Err(e) => problems.push(format!("{label}{INDEX_SUFFIX}: {e}")),
        },
        Err(e) => problems.push(format!("{label}{INDEX_SUFFIX}: {e}")),
    }
    match store.get(&format!("{}{META_SUFFIX}", a.key)) {
        Ok(bytes) => match serde_json::from_slice::<ArtifactMetadata>(&bytes) {
            Ok(m)
                if m.service == a.service
                    && m.file == a.file
                    && m.taken_at_unix == a.taken_at
                    && m.raw_size == a.raw_size
                    && m.raw_sha256 == a.raw_sha256
                    && m.stored_size == a.stored_size
                    && m.stored_sha256 == a.stored_sha256
                    && m.block_count == a.block_count => {}
            Ok(_) => problems.push(format!("{label}{META_SUFFIX}: differs from the catalog")),
            Err(e) => problems.push(format!("{label}{META_SUFFIX}: not valid metadata: {e}")),
        },
        Err(e) => problems.push(format!("{label}{META_SUFFIX}: {e}")),
    }
}
