//! Which restic snapshot holds each copy on a restic tier ([`crate::restic`]): recorded by
//! sync, used by prune to forget exactly the snapshots retention drops.

use rusqlite::{OptionalExtension, params};

use super::Catalog;
use crate::Result;
use crate::id::{ArtifactId, BackupId, TierName};

impl Catalog {
    /// Records that `snapshot` holds the artifact's copy on `tier`.
    pub fn set_copy_snapshot(
        &self,
        artifact_id: ArtifactId,
        tier: &TierName,
        snapshot: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE copies SET snapshot = ?3 WHERE artifact_id = ?1 AND tier = ?2",
                params![artifact_id, tier, snapshot],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// [`Catalog::set_copy_snapshot`] of the artifact stored under `key` (a rebuild).
    pub fn set_key_snapshot(&self, key: &str, tier: &TierName, snapshot: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE copies SET snapshot = ?3 WHERE tier = ?2 \
                 AND artifact_id = (SELECT id FROM artifacts WHERE key = ?1)",
                params![key, tier, snapshot],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The snapshot holding the artifact's copy on `tier`, if one is recorded.
    pub fn copy_snapshot(
        &self,
        artifact_id: ArtifactId,
        tier: &TierName,
    ) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT snapshot FROM copies WHERE artifact_id = ?1 AND tier = ?2",
                params![artifact_id, tier],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    /// The snapshots holding any of a backup's copies on `tier`.
    pub fn backup_snapshots(&self, backup_id: BackupId, tier: &TierName) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT c.snapshot FROM copies c JOIN artifacts a ON a.id = c.artifact_id \
                 WHERE a.backup_id = ?1 AND c.tier = ?2 AND c.snapshot IS NOT NULL ORDER BY 1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![backup_id, tier], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| self.err(e))
    }

    /// Whether any copy on `tier` still refers to `snapshot`.
    pub fn snapshot_in_use(&self, tier: &TierName, snapshot: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM copies WHERE tier = ?1 AND snapshot = ?2 LIMIT 1",
                params![tier, snapshot],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| self.err(e))
    }

    /// The backup's id as tags and sidecars spell it (`<service>-<YYYYMMDDTHHMMSSZ>`).
    pub fn backup_tag(&self, backup_id: BackupId) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT service, taken_at FROM backups WHERE id = ?1",
                params![backup_id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map(|row| row.map(|(service, at)| crate::artifact::metadata::backup_id(&service, at)))
            .map_err(|e| self.err(e))
    }
}
