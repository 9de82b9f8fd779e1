//! Sync: copy each backup to the tiers whose policy wants it, verify every upload, record each
//! copy in the catalog.
//!
//! Idempotent and resumable: a copy is recorded only after its upload is verified, so a crash
//! means that one artifact is uploaded again and nothing verified is. Corrupt copies (found by
//! `verify` or a read) are uploaded again from a good one. One tier being down delays its copies
//! and never stops the other tiers; after a few consecutive failures the rest of that tier's work
//! waits for the next run instead of timing out one by one.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::artifact::metadata::ArtifactMetadata;
use crate::backup::{lock_dir, primary_store};
use crate::catalog::{ArtifactRecord, Catalog, PRESENT};
use crate::config::{Config, TierConfig};
use crate::error::IoContext;
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

/// Copies what each non-primary tier (or only `only`) is missing.
pub fn sync(config: &Config, catalog: &Catalog, only: Option<&str>) -> Result<Vec<TierReport>> {
    let primary = primary_store(config)?;
    let mut reports = Vec::new();
    for tier in config.tiers.iter().skip(1) {
        if only.is_some_and(|o| o != tier.name.as_str()) {
            continue;
        }
        let _lock = match ServiceLock::acquire(&lock_dir(config), &format!("sync.{}", tier.name)) {
            Ok(lock) => lock,
            // A slow offsite upload must not stop the other tiers, nor fail the cron runs
            // that start while it goes on.
            Err(Error::Locked { .. }) => {
                tracing::info!(tier = %tier.name, "another process is syncing this tier; left to it");
                reports.push(TierReport {
                    tier: tier.name.to_string(),
                    busy: true,
                    ..TierReport::default()
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let run = catalog.begin_run(tier.name.as_str(), "sync")?;
        let report = sync_tier(config, catalog, &primary, tier);
        let (status, error) = match &report {
            Ok(r) if r.ok() => ("ok", None),
            Ok(r) => (
                "failed",
                Some(r.error.clone().unwrap_or_else(|| r.failed.join("; "))),
            ),
            Err(e) => ("failed", Some(e.to_string())),
        };
        catalog.finish_run(run, status, error.as_deref(), None)?;
        if let Ok(r) = &report {
            catalog.set_run_bytes(run, r.bytes)?;
        }
        reports.push(report.unwrap_or_else(|e| TierReport {
            tier: tier.name.to_string(),
            error: Some(e.to_string()),
            ..TierReport::default()
        }));
    }
    Ok(reports)
}

fn sync_tier(
    config: &Config,
    catalog: &Catalog,
    primary: &LocalStore,
    tier: &TierConfig,
) -> Result<TierReport> {
    let mut report = TierReport {
        tier: tier.name.to_string(),
        ..TierReport::default()
    };
    let artifacts = catalog.artifacts(None)?;
    let wanted = wanted_by(config, tier, &artifacts);
    let todo: Vec<&ArtifactRecord> = artifacts
        .iter()
        .filter(|a| wanted.contains(&a.backup_id))
        .filter(|a| {
            a.copy_on(tier.name.as_str())
                .is_none_or(|c| c.state != PRESENT)
        })
        .collect();
    if todo.is_empty() {
        return Ok(report);
    }
    let store = match open_tier(tier) {
        Ok(s) => RetryStore::new(s, 3, Duration::from_secs(1)),
        Err(e) => {
            report.error = Some(e.to_string());
            report.deferred = todo.len();
            return Ok(report);
        }
    };

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
                    catalog.set_copy_present(a.id, tier.name.as_str())?;
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
    let (src, temp) = source_file(primary, config, a)?;
    let result = (|| {
        // Never spread a corrupt file: check the source against the catalog first.
        let digest = sha256_file(&src)?;
        if digest != a.stored_sha256 {
            return Err(Error::integrity(
                format!("{}:{}", primary.name(), a.key),
                None,
                "SHA-256 of the source copy differs from the catalog; run `tierback verify`",
            ));
        }
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
        for (key, bytes) in ArtifactMetadata::from_record(a).sidecars(&a.key, &index) {
            store.put_bytes(&key, &bytes)?;
        }
        Ok(())
    })();
    if let Some(t) = temp {
        let _ = std::fs::remove_file(t);
    }
    result
}

/// The local file to upload from: the primary tier's copy if it holds a good one, else a
/// download (into the primary's staging area) from another tier that does.
fn source_file(
    primary: &LocalStore,
    config: &Config,
    a: &ArtifactRecord,
) -> Result<(PathBuf, Option<PathBuf>)> {
    let primary_name = primary.name();
    if a.copy_on(primary_name).is_some_and(|c| c.state == PRESENT)
        && primary.path_of(&a.key).exists()
    {
        return Ok((primary.path_of(&a.key), None));
    }
    for c in a
        .copies
        .iter()
        .filter(|c| c.state == PRESENT && c.tier != primary_name)
    {
        let Ok(tier) = config.tier(&c.tier) else {
            continue;
        };
        let Ok(store) = open_tier(tier) else { continue };
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

/// The catalog ids of the backups `tier` receives: by the tier's `copy` policy, or by a
/// service's own `copy` where it has one (WAL: every segment, not the first of each day).
pub fn wanted_by(config: &Config, tier: &TierConfig, artifacts: &[ArtifactRecord]) -> HashSet<i64> {
    selected_backups(
        |service| {
            config
                .service(service)
                .ok()
                .and_then(|s| s.copy.as_deref())
                .unwrap_or(&tier.copy)
        },
        artifacts,
    )
}

/// The backups that each service's copy policy (`policy_of`) selects: everything for `all`;
/// otherwise the first backup of the service in each hour, day, ISO week (Monday) or month that
/// the policy names — the seed's "daily full, weekly" offsite sets.
fn selected_backups<'a>(
    policy_of: impl Fn(&str) -> &'a [String],
    artifacts: &[ArtifactRecord],
) -> HashSet<i64> {
    let mut by_service: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for a in artifacts {
        by_service
            .entry(a.service.as_str())
            .or_default()
            .push((a.taken_at, a.backup_id));
    }
    let mut selected = HashSet::new();
    for (service, mut backups) in by_service {
        backups.sort();
        backups.dedup();
        for p in policy_of(service) {
            if p == "all" {
                selected.extend(backups.iter().map(|b| b.1));
                continue;
            }
            let mut last = None;
            for &(taken_at, id) in &backups {
                // Config validation rejects other names; an unknown one selects nothing.
                let Some(period) = crate::retention::period(p, taken_at) else {
                    break;
                };
                if last != Some(period) {
                    selected.insert(id);
                    last = Some(period);
                }
            }
        }
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(backup_id: i64, service: &str, taken_at: i64) -> ArtifactRecord {
        ArtifactRecord::for_test(backup_id, service, taken_at)
    }

    #[test]
    fn daily_and_weekly_pick_the_first_of_each_period() {
        let day = 86_400;
        let monday = 1_768_780_800; // 2026-01-19 00:00 UTC, a Monday
        let list = vec![
            rec(1, "pg", monday + 3600),
            rec(2, "pg", monday + 7200),
            rec(3, "pg", monday + day + 60),
            rec(4, "redis", monday + 7200),
            rec(5, "pg", monday + 7 * day + 5),
            rec(6, "pg", monday - 60), // Sunday: the previous week
        ];
        let policy = |p: &str| vec![p.to_owned()];
        let (daily, weekly, all) = (policy("daily"), policy("weekly"), policy("all"));
        assert_eq!(
            selected_backups(|_| &daily, &list),
            HashSet::from([1, 3, 4, 5, 6])
        );
        assert_eq!(
            selected_backups(|_| &weekly, &list),
            HashSet::from([1, 4, 5, 6])
        );
        assert_eq!(selected_backups(|_| &all, &list).len(), 6);
        assert!(selected_backups(|_| &[], &list).is_empty());
        // A service's own policy: every pg backup, redis by the tier's (daily).
        let mixed = selected_backups(|s| if s == "pg" { &all } else { &daily }, &list);
        assert_eq!(mixed, HashSet::from([1, 2, 3, 4, 5, 6]));
    }
}
