//! Sync: upload what the desired state ([`crate::plan`]) says a tier lacks, repair corrupt
//! copies, verify every upload, record each copy (and its verification) in the catalog.
//!
//! Idempotent and resumable: a copy is recorded only after its upload is verified, so a crash
//! means that one artifact is uploaded again and nothing verified is. Corrupt copies (found by
//! `verify` or a read) are uploaded again from a good one. One tier being down delays its copies
//! and never stops the other tiers; after a few consecutive failures the rest of that tier's work
//! waits for the next run instead of timing out one by one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::artifact::metadata::ArtifactMetadata;
use crate::backup::{lock_dir, primary_store};
use crate::catalog::{ArtifactRecord, Catalog, CopyState, RunKind, RunStatus};
use crate::clock::now;
use crate::config::{Config, TierConfig};
use crate::error::IoContext;
use crate::id::BackupId;
use crate::lock::ServiceLock;
use crate::store::local::LocalStore;
use crate::store::retry::RetryStore;
use crate::store::{Store, open_tier};
use crate::{Error, Result};

/// Uploads in flight per tier: enough to hide per-request latency, few enough for 2 cores.
const TRANSFERS: usize = 4;
/// Consecutive failures after which a tier is considered down for this run.
const BREAKER: usize = 3;

#[derive(Debug, Default, serde::Serialize)]
pub struct TierReport {
    pub tier: String,
    pub uploaded: Vec<String>,
    /// Bytes of the uploaded `.gz` files.
    pub bytes: u64,
    pub failed: Vec<String>,
    /// Wanted but not attempted (tier down) — waits for the next run.
    pub deferred: usize,
    pub error: Option<String>,
    /// Another process (a long `run`) is syncing this tier: left to it, not a failure.
    pub busy: bool,
}

impl TierReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.deferred == 0 && self.error.is_none()
    }
}

/// Uploads what the desired state says each tier (or only `only`) lacks, and repairs corrupt
/// copies, from a tier that holds a good one.
pub fn sync(config: &Config, catalog: &mut Catalog, only: Option<&str>) -> Result<Vec<TierReport>> {
    let tiers: Vec<&TierConfig> = config
        .tiers
        .iter()
        .filter(|t| only.is_none_or(|o| o == t.name.as_str()))
        .collect();
    sync_tiers(config, catalog, &tiers)
}

/// [`sync`] for the given tiers (`tierback run` passes those whose sync schedule is due).
pub fn sync_tiers(
    config: &Config,
    catalog: &mut Catalog,
    tiers: &[&TierConfig],
) -> Result<Vec<TierReport>> {
    let primary = primary_store(config)?;
    // The first tier is only ever repaired: leave it out unless it holds a corrupt copy.
    let first = &config.primary_tier()?.name;
    let first_corrupt = catalog.has_corrupt_copy(first)?;
    let tiers: Vec<&TierConfig> = tiers
        .iter()
        .copied()
        .filter(|t| t.name != *first || first_corrupt)
        .collect();
    if tiers.is_empty() {
        return Ok(Vec::new());
    }
    let (names, bases) = crate::plan::upload_inputs(config, &tiers);
    let artifacts = catalog.artifacts_lacking(&names, &bases)?;
    let plan = crate::plan::uploads_from_catalog(config, catalog, &artifacts, now(), &tiers)?;
    let mut reports = Vec::new();
    for tier in tiers {
        let name = tier.name.as_str();
        let _span = tracing::info_span!("sync", tier = name).entered();
        let wanted: HashSet<BackupId> = plan
            .iter()
            .filter(|e| e.tier == tier.name)
            .map(|e| e.backup_id)
            .collect();
        let todo: Vec<&ArtifactRecord> = artifacts
            .iter()
            .filter(|a| wanted.contains(&a.backup_id))
            .filter(|a| {
                a.copy_on(&tier.name)
                    .is_none_or(|c| c.state != CopyState::Present)
            })
            .collect();
        if todo.is_empty() && tier.name == *first {
            continue;
        }
        let _lock = match ServiceLock::acquire(&lock_dir(config), &format!("sync.{name}")) {
            Ok(lock) => lock,
            // A slow offsite upload must not stop the other tiers, nor fail the cron runs
            // that start while it goes on.
            Err(Error::Locked { .. }) => {
                tracing::info!(tier = %name, "another process is syncing this tier; left to it");
                reports.push(TierReport {
                    tier: name.to_owned(),
                    busy: true,
                    ..TierReport::default()
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let run = catalog.begin_run(name, RunKind::Sync)?;
        let report = sync_tier(config, catalog, &primary, tier, &todo);
        let (status, error) = match &report {
            Ok(r) if r.ok() => (RunStatus::Ok, None),
            Ok(r) => (
                RunStatus::Failed,
                Some(r.error.clone().unwrap_or_else(|| r.failed.join("; "))),
            ),
            Err(e) => (RunStatus::Failed, Some(e.to_string())),
        };
        catalog.finish_run(run, status, error.as_deref(), None)?;
        if let Ok(r) = &report {
            catalog.set_run_bytes(run, r.bytes)?;
        }
        reports.push(report.unwrap_or_else(|e| TierReport {
            tier: name.to_owned(),
            error: Some(e.to_string()),
            ..TierReport::default()
        }));
    }
    Ok(reports)
}

fn sync_tier(
    config: &Config,
    catalog: &mut Catalog,
    primary: &LocalStore,
    tier: &TierConfig,
    todo: &[&ArtifactRecord],
) -> Result<TierReport> {
    let mut report = TierReport {
        tier: tier.name.to_string(),
        ..TierReport::default()
    };
    if matches!(tier.kind, crate::config::TierKind::Restic { .. }) {
        return crate::restic::sync::sync_tier(config, catalog, primary, tier, todo);
    }
    let store = match open_tier(tier) {
        Ok(s) => RetryStore::new(s, 3, Duration::from_secs(1)),
        Err(e) => {
            report.error = Some(e.to_string());
            report.deferred = todo.len();
            return Ok(report);
        }
    };
    // With the tier's lock held, staging left on it is a dead upload's: a killed sync's
    // partial files would otherwise stay for ever (a tier that is down is left for later).
    match store.clean_staging() {
        Ok(0) => {}
        Ok(n) => tracing::info!(tier = %tier.name, "removed {n} interrupted uploads' staging"),
        Err(e) => tracing::warn!(tier = %tier.name, "cannot clean interrupted uploads: {e}"),
    }
    if todo.is_empty() {
        return Ok(report);
    }

    // Workers upload; this thread owns the catalog and records each verified copy at once, so
    // a crash loses at most the uploads in flight.
    let next = AtomicUsize::new(0);
    let consecutive_failures = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<()>)>();
    let catalog_path = catalog.path().to_owned();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..TRANSFERS.min(todo.len()) {
            let tx = tx.clone();
            let (store, todo, next, failures, catalog_path) =
                (&store, &todo, &next, &consecutive_failures, &catalog_path);
            scope.spawn(move || {
                // Each worker needs its own catalog handle for block indexes (SQLite handles
                // are not shared across threads).
                let reader = Catalog::open_read_only(catalog_path);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= todo.len() || failures.load(Ordering::SeqCst) >= BREAKER {
                        break;
                    }
                    let result = match &reader {
                        Ok(reader) => upload(primary, store, reader, todo[i], config),
                        Err(e) => Err(Error::Invalid(e.to_string())),
                    };
                    if result.is_ok() {
                        failures.store(0, Ordering::SeqCst);
                    } else {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, result) in rx {
            let a = todo[i];
            let path = format!("{}/{}", a.service, a.file);
            match result {
                Ok(()) => {
                    catalog.set_copy_present(a.id, &tier.name)?;
                    tracing::info!(tier = %tier.name, key = %a.key, "uploaded and verified");
                    report.uploaded.push(path);
                    report.bytes += a.stored_size;
                }
                Err(e) => {
                    tracing::warn!(tier = %tier.name, key = %a.key, "upload failed: {e}");
                    report.failed.push(format!("{path}: {e}"));
                }
            }
        }
        Ok(())
    })?;
    report.deferred = todo.len() - report.uploaded.len() - report.failed.len();
    if report.deferred > 0 {
        report.error = Some(format!(
            "tier {} failed {BREAKER} times in a row; {} copies wait for the next sync",
            tier.name, report.deferred
        ));
    }
    Ok(report)
}

/// Uploads one artifact and its sidecars. The `.gz` goes first and the metadata last, so a tier
/// never shows metadata for a file it does not hold.
fn upload(
    primary: &LocalStore,
    store: &dyn Store,
    catalog: &Catalog,
    a: &ArtifactRecord,
    config: &Config,
) -> Result<()> {
    let index = catalog.block_index(a.id)?;
    // The plan's records carry no facts; the metadata sidecar needs them.
    let facts = catalog.facts(a.id)?;
    let (src, temp) = checked_source(primary, config, a)?;
    let mut written = false;
    let result = (|| {
        written = true;
        store.put_file(&a.key, &src)?;
        match store.head(&a.key)? {
            Some(m) if m.size == a.stored_size => {}
            other => {
                return Err(Error::integrity(
                    format!("{}:{}", store.name(), a.key),
                    None,
                    format!(
                        "after upload the object has size {:?}, expected {}",
                        other.map(|m| m.size),
                        a.stored_size
                    ),
                ));
            }
        }
        let record = ArtifactRecord { facts, ..a.clone() };
        for (key, bytes) in ArtifactMetadata::from_record(&record).sidecars(&a.key, &index) {
            store.put_bytes(&key, &bytes)?;
        }
        Ok(())
    })();
    if let Some(t) = temp {
        let _ = std::fs::remove_file(t);
    }
    if result.is_err() && written {
        // The catalog records no copy: leave no part of one on the tier (metadata first, as
        // prune deletes). Best effort; a tier that failed may refuse these too.
        let mut keys: Vec<String> = ArtifactMetadata::sidecar_keys(&a.key)
            .into_iter()
            .rev()
            .collect();
        keys.push(a.key.clone());
        for key in keys {
            let _ = store.delete(&key);
        }
    }
    result
}

/// [`source_file`], checked against the catalog's SHA-256 first: never spread a corrupt file.
/// The second path is a temporary download for the caller to remove.
pub(crate) fn checked_source(
    primary: &LocalStore,
    config: &Config,
    a: &ArtifactRecord,
) -> Result<(PathBuf, Option<PathBuf>)> {
    let (src, temp) = source_file(primary, config, a)?;
    match sha256_file(&src) {
        Ok(digest) if digest == a.stored_sha256 => Ok((src, temp)),
        other => {
            if let Some(t) = temp {
                let _ = std::fs::remove_file(t);
            }
            other?;
            Err(Error::integrity(
                format!("{}:{}", primary.name(), a.key),
                None,
                "SHA-256 of the source copy differs from the catalog; run `tierback verify`",
            ))
        }
    }
}

/// The local file to upload from: the primary tier's copy if it holds a good one, else a
/// download (into the primary's staging area) from another tier that does.
fn source_file(
    primary: &LocalStore,
    config: &Config,
    a: &ArtifactRecord,
) -> Result<(PathBuf, Option<PathBuf>)> {
    let primary_name = &config.primary_tier()?.name;
    if a.copy_on(primary_name)
        .is_some_and(|c| c.state == CopyState::Present)
        && primary.path_of(&a.key).exists()
    {
        return Ok((primary.path_of(&a.key), None));
    }
    for c in a
        .copies
        .iter()
        .filter(|c| c.state == CopyState::Present && c.tier != *primary_name)
    {
        let Ok(tier) = config.tier(c.tier.as_str()) else {
            continue;
        };
        let Ok(store) = open_tier(tier) else { continue };
        if store.holds_decompressed() {
            continue; // a restic tier holds the stream, not the `.gz` to copy
        }
        let tmp = primary.temp_path(&format!("{}.download", a.file));
        match download(store.as_ref(), &a.key, a.stored_size, &tmp) {
            Ok(()) => return Ok((tmp.clone(), Some(tmp))),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(tier = %c.tier, key = %a.key, "cannot fetch a source copy: {e}");
            }
        }
    }
    Err(Error::Invalid(format!(
        "{}/{}: no tier holds a good copy to upload from",
        a.service, a.file
    )))
}

fn download(store: &dyn Store, key: &str, size: u64, to: &Path) -> Result<()> {
    use std::io::Write;
    const CHUNK: u64 = 8 << 20;
    let mut f = std::fs::File::create(to).ctx(|| format!("creating {}", to.display()))?;
    let mut off = 0;
    while off < size {
        let len = CHUNK.min(size - off);
        f.write_all(&store.get_range(key, off, len)?)
            .ctx(|| format!("writing {}", to.display()))?;
        off += len;
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).ctx(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}
