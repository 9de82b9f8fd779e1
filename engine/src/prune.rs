//! Prune: removes from each tier what it holds and the desired state ([`crate::plan`]) does not
//! want. Planned first (printed by `prune --dry-run`), then applied idempotently, so a crash
//! halfway is finished by the next prune.

use std::collections::BTreeMap;

use crate::artifact::metadata::ArtifactMetadata;
use crate::catalog::Catalog;
use crate::config::{Config, TierKind};
use crate::plan::{Action, Entry};
use crate::restic::ResticTier;
use crate::store::open_tier;
use crate::{Error, Result};

#[derive(Debug, Default, serde::Serialize)]
pub struct PruneReport {
    pub removed: Vec<String>,
    pub failed: Vec<String>,
}

/// Removes what the plan says a tier holds and should not: the catalog marks the copy as being deleted (readers stop
/// using it), the files go (metadata first, so a half-deleted copy never looks complete to
/// `catalog rebuild`), then the catalog forgets the copy. A crash or a failed delete leaves the
/// mark, and the next prune finishes the job.
pub fn apply(config: &Config, catalog: &mut Catalog, plan: &[Entry]) -> Result<PruneReport> {
    let _span = tracing::info_span!("prune").entered();
    let mut report = PruneReport::default();
    let mut stores = BTreeMap::new();
    let mut restic_tiers = BTreeMap::new();
    for d in plan.iter().filter(|d| d.action == Action::Remove) {
        let tier = config.tier(d.tier.as_str())?;
        if matches!(tier.kind, TierKind::Restic { .. }) {
            let restic = match restic_tiers.entry(d.tier.clone()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(ResticTier::open(tier)),
            };
            match restic {
                Ok(restic) => forget_backup(catalog, restic, d, &mut report)?,
                Err(e) => report.failed.push(format!("{}: {e}", d.tier)),
            }
            continue;
        }
        let store = match stores.entry(d.tier.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(open_tier(config.tier(d.tier.as_str())?))
            }
        };
        let store = match store {
            Ok(s) => s,
            Err(e) => {
                report.failed.push(format!("{}: {e}", d.tier));
                continue;
            }
        };
        catalog.mark_backup_copies_missing(d.backup_id, &d.tier)?;
        let failures_before = report.failed.len();
        for key in &d.keys {
            let mut keys: Vec<String> = ArtifactMetadata::sidecar_keys(key)
                .into_iter()
                .rev()
                .collect();
            keys.push(key.clone());
            // metadata, sha256, index, then the file
            for k in &keys {
                if let Err(e) = store.delete(k) {
                    report.failed.push(format!("{}:{k}: {e}", d.tier));
                }
            }
            report.removed.push(format!("{}:{key}", d.tier));
        }
        // Only a fully deleted copy is forgotten; otherwise the tombstone makes the next prune
        // try again.
        if report.failed.len() == failures_before {
            catalog.remove_backup_copies(d.backup_id, &d.tier)?;
        }
    }
    // Forgotten snapshots free their data only when the repository is pruned: once per tier.
    for (name, restic) in &restic_tiers {
        if let Ok(restic) = restic
            && let Err(e) = restic.prune()
        {
            report.failed.push(format!("{name}: {e}"));
        }
    }
    tracing::debug!(
        removed = report.removed.len(),
        failed = report.failed.len(),
        "prune applied"
    );
    if report.failed.is_empty() {
        Ok(report)
    } else {
        Err(Error::Invalid(format!(
            "prune could not delete: {}",
            report.failed.join("; ")
        )))
    }
}

/// A restic tier drops a backup by forgetting the snapshot that holds it (found through the
/// catalog, or by the backup's tag when the catalog has no id). Marked first, forgotten after,
/// like the files of any other tier.
fn forget_backup(
    catalog: &mut Catalog,
    restic: &ResticTier,
    d: &Entry,
    report: &mut PruneReport,
) -> Result<()> {
    catalog.mark_backup_copies_missing(d.backup_id, &d.tier)?;
    let mut snapshots = catalog.backup_snapshots(d.backup_id, &d.tier)?;
    if snapshots.is_empty() {
        let backup = catalog.backup_tag(d.backup_id)?.unwrap_or_default();
        snapshots = match restic.snapshots() {
            Ok(all) => all
                .into_iter()
                .filter(|s| s.backup_id == backup)
                .map(|s| s.id)
                .collect(),
            Err(e) => {
                report.failed.push(format!("{}: {e}", d.tier));
                return Ok(());
            }
        };
    }
    match restic.forget(&snapshots) {
        Ok(()) => {
            for key in &d.keys {
                report.removed.push(format!("{}:{key}", d.tier));
            }
            catalog.remove_backup_copies(d.backup_id, &d.tier)
        }
        Err(e) => {
            report.failed.push(format!("{}: {e}", d.tier));
            Ok(())
        }
    }
}
