//! The tiers' copies of each artifact: present after an upload, missing while prune deletes
//! it, corrupt when its latest check failed; and the verifications that set those states.

use rusqlite::params;

use super::{Catalog, CopyState};
use crate::clock::now;
use crate::id::{ArtifactId, BackupId, TierName};
use crate::{Error, Result};

impl Catalog {
    /// True if some copy on `tier` failed its last check (an index lookup: `copies_corrupt`).
    pub fn has_corrupt_copy(&self, tier: &TierName) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM copies WHERE tier = ?1 AND state = 'corrupt')",
                [tier],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Records that `tier` holds a verified copy of the artifact (after an upload), and that
    /// verification: a copy repaired by sync stops counting as failed at once.
    pub fn set_copy_present(&mut self, artifact_id: ArtifactId, tier: &TierName) -> Result<()> {
        let at = now();
        let path = self.path.clone();
        let err = |source| Error::Catalog {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO copies (artifact_id, tier, state, stored_at, verified_at) VALUES (?1, ?2, 'present', ?3, ?3) \
             ON CONFLICT (artifact_id, tier) DO UPDATE SET state = 'present', stored_at = ?3, verified_at = ?3, error = NULL",
            params![artifact_id, tier, at],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO verifications (artifact_id, tier, at, ok, detail) VALUES (?1, ?2, ?3, 1, 'uploaded and verified by sync')",
            params![artifact_id, tier, at],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Makes the copies of the artifact stored under `key` exactly `tiers`, verified now (a
    /// catalog rebuild that read and checked each of them).
    pub fn set_copies(&mut self, key: &str, tiers: &[TierName]) -> Result<()> {
        let path = self.path.clone();
        let err = |source| Error::Catalog {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let id: ArtifactId = tx
            .query_row("SELECT id FROM artifacts WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .map_err(err)?;
        tx.execute("DELETE FROM copies WHERE artifact_id = ?1", [id])
            .map_err(err)?;
        let at = now();
        for tier in tiers {
            tx.execute(
                "INSERT INTO copies (artifact_id, tier, state, stored_at, verified_at) VALUES (?1, ?2, 'present', ?3, ?3)",
                params![id, tier, at],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Marks `tier`'s copies of a backup as being deleted, before prune deletes their files: a
    /// crash in between leaves a tombstone that the next prune finishes, and readers never use it.
    pub fn mark_backup_copies_missing(&self, backup_id: BackupId, tier: &TierName) -> Result<()> {
        self.conn
            .execute(
                "UPDATE copies SET state = 'missing', error = 'being pruned' \
                 WHERE tier = ?2 AND artifact_id IN (SELECT id FROM artifacts WHERE backup_id = ?1)",
                params![backup_id, tier],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets `tier`'s copies of a backup once prune deleted their files, and remembers that the
    /// tier dropped it (sync never sends it back). Once no tier holds any of it, its artifacts go
    /// too; the backup row stays as history.
    pub fn remove_backup_copies(&mut self, backup_id: BackupId, tier: &TierName) -> Result<()> {
        let path = self.path.clone();
        let err = |source| Error::Catalog {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "DELETE FROM copies WHERE tier = ?2 AND artifact_id IN (SELECT id FROM artifacts WHERE backup_id = ?1)",
            params![backup_id, tier],
        )
        .map_err(err)?;
        let remaining: i64 = tx
            .query_row(
                "SELECT count(*) FROM copies WHERE artifact_id IN (SELECT id FROM artifacts WHERE backup_id = ?1)",
                [backup_id],
                |r| r.get(0),
            )
            .map_err(err)?;
        if remaining == 0 {
            // Nothing of it is left to send anywhere, so which tiers retired it no longer
            // matters: the table stays the size of what the tiers hold, not of all history.
            tx.execute("DELETE FROM artifacts WHERE backup_id = ?1", [backup_id])
                .map_err(err)?;
            tx.execute("DELETE FROM retired WHERE backup_id = ?1", [backup_id])
                .map_err(err)?;
        } else {
            tx.execute(
                "INSERT OR REPLACE INTO retired (backup_id, tier, at) VALUES (?1, ?2, ?3)",
                params![backup_id, tier, now()],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Records a verification and the copy's resulting state.
    pub fn record_verification(
        &self,
        artifact_id: ArtifactId,
        tier: &TierName,
        problems: &[String],
    ) -> Result<()> {
        self.record_verifications(tier, &[(artifact_id, problems.to_vec())])
    }

    /// Records verifications of `tier`'s copies (artifact id, problems found) and each copy's
    /// resulting state, in one transaction: one commit for a batch, not two per copy.
    pub fn record_verifications(
        &self,
        tier: &TierName,
        checked: &[(ArtifactId, Vec<String>)],
    ) -> Result<()> {
        let at = now();
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO verifications (artifact_id, tier, at, ok, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(|e| self.err(e))?;
        let mut update = tx
            .prepare_cached(
                "UPDATE copies SET state = ?3, verified_at = coalesce(?4, verified_at), error = ?5 \
                 WHERE artifact_id = ?1 AND tier = ?2",
            )
            .map_err(|e| self.err(e))?;
        for (artifact_id, problems) in checked {
            let ok = problems.is_empty();
            let detail = (!ok).then(|| problems.join("; "));
            insert
                .execute(params![artifact_id, tier, at, ok, detail])
                .map_err(|e| self.err(e))?;
            let (state, verified_at) = if ok {
                (CopyState::Present, Some(at))
            } else {
                (CopyState::Corrupt, None)
            };
            update
                .execute(params![artifact_id, tier, state, verified_at, detail])
                .map_err(|e| self.err(e))?;
        }
        drop((insert, update));
        tx.commit().map_err(|e| self.err(e))
    }
}
