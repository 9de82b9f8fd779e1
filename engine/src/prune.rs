//! Prune: removes from each tier what it holds and the desired state ([`crate::plan`]) does not
//! want. Planned first (printed by `prune --dry-run`), then applied idempotently, so a crash
//! halfway is finished by the next prune.

use std::collections::BTreeMap;

use crate::artifact::metadata::ArtifactMetadata;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::plan::{Action, Entry};
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
    for d in plan.iter().filter(|d| d.action == Action::Remove) {
        let store = match stores.entry(d.tier.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(open_tier(config.tier(&d.tier)?))
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
