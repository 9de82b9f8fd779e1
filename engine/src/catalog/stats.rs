//! Aggregates for metrics and status: a `tierback run` writes the metrics after every run, and
//! loading every artifact of a catalog that holds a year of backups for that would cost more
//! than the run itself.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rusqlite::params;

use super::{ArtifactRecord, Catalog, CopyState};
use crate::Result;
use crate::id::{ServiceName, TierName};

/// One service's copies on one tier.
#[derive(Debug, Clone, PartialEq)]
pub struct TierUsage {
    pub tier: TierName,
    pub service: ServiceName,
    /// Present (readable) copies, and their stored bytes.
    pub files: u64,
    pub bytes: u64,
    /// Copies whose latest check failed (the copy's state is its latest check's outcome).
    pub corrupt: u64,
    /// The oldest last successful check among the copies the tier holds (present or corrupt;
    /// a copy never checked counts from when it was stored).
    pub oldest_check: Option<i64>,
}

impl Catalog {
    /// Per tier and service: copies, bytes, oldest check; ordered by tier, then service.
    pub fn tier_usage(&self) -> Result<Vec<TierUsage>> {
        // Two plain scans summed here: joining each copy to its artifact and backup in SQL
        // costs a seek per copy and a sort, and every `run` writes the metrics.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT a.id, b.service, a.stored_size FROM artifacts a JOIN backups b ON b.id = a.backup_id",
            )
            .map_err(|e| self.err(e))?;
        let mut services = Vec::new();
        let mut artifacts: HashMap<i64, (Arc<str>, u64)> = HashMap::new();
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let service = r
                .get_ref(1)
                .and_then(|v| Ok(v.as_str()?))
                .map_err(|e| self.err(e))?;
            let service = super::artifacts::shared_name(&mut services, service);
            let id: i64 = r.get(0).map_err(|e| self.err(e))?;
            let size: i64 = r.get(2).map_err(|e| self.err(e))?;
            artifacts.insert(id, (service, size as u64));
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT artifact_id, tier, state, coalesce(verified_at, stored_at) FROM copies \
                 WHERE state != 'missing'",
            )
            .map_err(|e| self.err(e))?;
        let mut usage: BTreeMap<(TierName, Arc<str>), TierUsage> = BTreeMap::new();
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let id: i64 = r.get(0).map_err(|e| self.err(e))?;
            let Some((service, size)) = artifacts.get(&id) else {
                continue;
            };
            let tier: TierName = r.get(1).map_err(|e| self.err(e))?;
            let state: CopyState = r.get(2).map_err(|e| self.err(e))?;
            let checked: i64 = r.get(3).map_err(|e| self.err(e))?;
            let u = match usage.entry((tier, service.clone())) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let (tier, service) = e.key();
                    let usage = TierUsage {
                        tier: tier.clone(),
                        service: ServiceName::new(&**service)?,
                        files: 0,
                        bytes: 0,
                        corrupt: 0,
                        oldest_check: None,
                    };
                    e.insert(usage)
                }
            };
            match state {
                CopyState::Present => {
                    u.files += 1;
                    u.bytes += *size;
                }
                CopyState::Corrupt => u.corrupt += 1,
                CopyState::Missing => {}
            }
            u.oldest_check = Some(u.oldest_check.map_or(checked, |o| o.min(checked)));
        }
        Ok(usage.into_values().collect())
    }

    /// The artifacts (without facts or copies) of `service`'s newest backup that still has files.
    pub fn newest_backup(&self, service: &ServiceName) -> Result<Vec<ArtifactRecord>> {
        let columns = super::artifacts::ARTIFACT_COLUMNS.replace("a.facts", "'null'");
        let sql = format!(
            "SELECT {columns} FROM artifacts a JOIN backups b ON b.id = a.backup_id \
             WHERE a.backup_id = (SELECT b2.id FROM backups b2 \
                 WHERE b2.service = ?1 AND EXISTS (SELECT 1 FROM artifacts a2 WHERE a2.backup_id = b2.id) \
                 ORDER BY b2.taken_at DESC LIMIT 1) \
             ORDER BY a.file"
        );
        self.query_artifacts(&sql, params![service])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{artifact, service, tier};

    #[test]
    fn usage_per_tier_and_the_newest_backup() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let (svc, local) = (service("svc"), tier("local"));
        c.record_backup(&svc, 100, "command", None, &local, &[artifact("a")])
            .unwrap();
        let newest = c
            .record_backup(
                &svc,
                200,
                "command",
                None,
                &local,
                &[artifact("b"), artifact("c")],
            )
            .unwrap();
        let usage = c.tier_usage().unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!((usage[0].files, usage[0].bytes), (3, 21));
        let files: Vec<String> = c
            .newest_backup(&svc)
            .unwrap()
            .into_iter()
            .map(|a| a.file)
            .collect();
        assert_eq!(files, ["b", "c"]);
        c.remove_backup_copies(newest, &local).unwrap();
        assert_eq!(
            c.newest_backup(&svc).unwrap()[0].file,
            "a",
            "a backup with no files left is history"
        );
        assert!(c.newest_backup(&service("other")).unwrap().is_empty());
    }
}
