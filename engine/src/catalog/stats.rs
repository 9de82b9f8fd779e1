//! Aggregates for metrics and status, computed by SQLite: a `tierback run` writes the metrics
//! after every run, and loading every artifact of a catalog that holds a year of backups for
//! that would cost more than the run itself.

use rusqlite::params;

use super::{ArtifactRecord, Catalog};
use crate::Result;

/// One service's copies on one tier.
#[derive(Debug, Clone, PartialEq)]
pub struct TierUsage {
    pub tier: String,
    pub service: String,
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
    /// Per tier and service: copies, bytes, oldest check.
    pub fn tier_usage(&self) -> Result<Vec<TierUsage>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.tier, b.service, sum(c.state = 'present'), \
                 sum(CASE WHEN c.state = 'present' THEN a.stored_size ELSE 0 END), \
                 min(coalesce(c.verified_at, c.stored_at)), sum(c.state = 'corrupt') \
                 FROM copies c JOIN artifacts a ON a.id = c.artifact_id JOIN backups b ON b.id = a.backup_id \
                 WHERE c.state != 'missing' GROUP BY c.tier, b.service ORDER BY c.tier, b.service",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok(TierUsage {
                tier: r.get(0)?,
                service: r.get(1)?,
                files: r.get::<_, i64>(2)? as u64,
                bytes: r.get::<_, i64>(3)? as u64,
                oldest_check: r.get(4)?,
                corrupt: r.get::<_, i64>(5)? as u64,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The artifacts (without facts or copies) of `service`'s newest backup that still has files.
    pub fn newest_backup(&self, service: &str) -> Result<Vec<ArtifactRecord>> {
        let columns = super::ARTIFACT_COLUMNS.replace("a.facts", "'null'");
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
    use crate::catalog::tests::artifact;

    #[test]
    fn usage_per_tier_and_the_newest_backup() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        c.record_backup("svc", 100, "command", None, "local", &[artifact("a")])
            .unwrap();
        let newest = c
            .record_backup(
                "svc",
                200,
                "command",
                None,
                "local",
                &[artifact("b"), artifact("c")],
            )
            .unwrap();
        let usage = c.tier_usage().unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!((usage[0].files, usage[0].bytes), (3, 21));
        let files: Vec<String> = c
            .newest_backup("svc")
            .unwrap()
            .into_iter()
            .map(|a| a.file)
            .collect();
        assert_eq!(files, ["b", "c"]);
        c.remove_backup_copies(newest, "local").unwrap();
        assert_eq!(
            c.newest_backup("svc").unwrap()[0].file,
            "a",
            "a backup with no files left is history"
        );
        assert!(c.newest_backup("other").unwrap().is_empty());
    }
}
