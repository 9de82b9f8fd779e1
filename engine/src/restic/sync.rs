//! Sync to a restic tier: each backup the plan wants there and the tier lacks becomes one
//! snapshot, written from a local `.gz` checked against the catalog first. One backup at a time,
//! under the tier's sync lock (restic's repository has one writer).

use std::collections::BTreeMap;

use super::{ResticTier, SnapshotArtifact};
use crate::Result;
use crate::catalog::{ArtifactRecord, Catalog};
use crate::config::{Config, TierConfig};
use crate::id::BackupId;
use crate::store::local::LocalStore;
use crate::sync::{TierReport, checked_source};

pub(crate) fn sync_tier(
    config: &Config,
    catalog: &mut Catalog,
    primary: &LocalStore,
    tier: &TierConfig,
    todo: &[&ArtifactRecord],
) -> Result<TierReport> {
    let name = tier.name.as_str();
    let mut report = TierReport {
        tier: name.to_owned(),
        ..TierReport::default()
    };
    let restic = ResticTier::open(tier)?;
    if let Err(e) = restic.setup() {
        report.error = Some(e.to_string());
        report.deferred = todo.len();
        return Ok(report);
    }
    let mut backups: BTreeMap<BackupId, Vec<&ArtifactRecord>> = BTreeMap::new();
    for a in todo {
        backups.entry(a.backup_id).or_default().push(a);
    }
    for artifacts in backups.values() {
        let mut temps = Vec::new();
        let result = (|| -> Result<String> {
            let mut parts = Vec::new();
            for a in artifacts {
                let (source, temp) = checked_source(primary, config, a)?;
                temps.extend(temp);
                parts.push(SnapshotArtifact {
                    record: ArtifactRecord {
                        facts: catalog.facts(a.id)?,
                        ..(*a).clone()
                    },
                    index: catalog.block_index(a.id)?,
                    source,
                });
            }
            restic.store_backup(&parts)
        })();
        for t in temps {
            let _ = std::fs::remove_file(t);
        }
        match result {
            Ok(snapshot) => {
                let mut replaced = Vec::new();
                for a in artifacts {
                    replaced.extend(catalog.copy_snapshot(a.id, &tier.name)?);
                    catalog.set_copy_present(a.id, &tier.name)?;
                    catalog.set_copy_snapshot(a.id, &tier.name, &snapshot)?;
                    tracing::info!(tier = %name, key = %a.key, %snapshot, "stored and verified");
                    report.uploaded.push(format!("{}/{}", a.service, a.file));
                    report.bytes += a.raw_size;
                }
                // A corrupt copy stored again: its old snapshot holds nothing the catalog
                // refers to any more.
                replaced.retain(|s| *s != snapshot);
                replaced.dedup();
                let mut stale = Vec::new();
                for s in replaced {
                    if !catalog.snapshot_in_use(&tier.name, &s)? {
                        stale.push(s);
                    }
                }
                if let Err(e) = restic.forget(&stale) {
                    tracing::warn!(tier = %name, "cannot forget replaced snapshots: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(tier = %name, "storing a backup failed: {e}");
                for a in artifacts {
                    report.failed.push(format!("{}/{}: {e}", a.service, a.file));
                }
            }
        }
    }
    Ok(report)
}
