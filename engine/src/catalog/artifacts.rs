//! Backups and their artifacts: recording a backup whole, the listings planning and the mount
//! read (with each artifact's copies attached), the history retention counts, pins, and an
//! artifact's facts and block index.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};

use super::{ArtifactRecord, BackupEntry, Catalog, CopyRecord, NewArtifact};
use crate::artifact::BlockIndex;
use crate::clock::now;
use crate::id::{ArtifactId, BackupId, RunId, ServiceName, TierName};
use crate::{Error, Result};

pub(super) const ARTIFACT_COLUMNS: &str = "a.id, a.backup_id, b.service, b.taken_at, b.driver, a.file, a.key, a.raw_size, \
     a.raw_sha256, a.stored_size, a.stored_sha256, a.block_size, a.compression_level, a.block_count, a.facts, b.pinned_at";

impl Catalog {
    pub fn backup_exists(&self, service: &ServiceName, taken_at: i64) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM backups WHERE service = ?1 AND taken_at = ?2",
                params![service, taken_at],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }

    /// The id of `service`'s backup taken at `taken_at`.
    pub fn backup_id(&self, service: &ServiceName, taken_at: i64) -> Result<Option<BackupId>> {
        self.conn
            .query_row(
                "SELECT id FROM backups WHERE service = ?1 AND taken_at = ?2",
                params![service, taken_at],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records a complete backup and its copies on `tier`, all or nothing. Returns the backup id.
    pub fn record_backup(
        &mut self,
        service: &ServiceName,
        taken_at: i64,
        driver: &str,
        run: Option<RunId>,
        tier: &TierName,
        artifacts: &[NewArtifact],
    ) -> Result<BackupId> {
        let path = self.path.clone();
        let err = |source| Error::Catalog {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO backups (service, taken_at, driver, run_id) VALUES (?1, ?2, ?3, ?4)",
            params![service, taken_at, driver, run],
        )
        .map_err(err)?;
        let backup_id = BackupId::new(tx.last_insert_rowid());
        let at = now();
        for a in artifacts {
            tx.execute(
                "INSERT INTO artifacts (backup_id, file, key, raw_size, raw_sha256, stored_size, stored_sha256, \
                 block_size, compression_level, block_count, block_index, facts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    backup_id,
                    a.file,
                    a.key,
                    a.raw_size as i64,
                    a.raw_sha256,
                    a.stored_size as i64,
                    a.stored_sha256,
                    a.index.block_size,
                    a.compression_level,
                    a.index.entries.len() as i64,
                    a.index.encode(),
                    a.facts.to_string(),
                ],
            )
            .map_err(err)?;
            let artifact_id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO copies (artifact_id, tier, state, stored_at, verified_at) VALUES (?1, ?2, 'present', ?3, ?3)",
                params![artifact_id, tier, at],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(backup_id)
    }

    /// Every artifact, newest backup first, optionally of one service.
    pub fn artifacts(&self, service: Option<&ServiceName>) -> Result<Vec<ArtifactRecord>> {
        self.artifacts_with(service, true)
    }

    /// [`Catalog::artifacts`] without their `facts` (null), in no particular order: what
    /// planning needs on every `tierback run`, at a fraction of the cost for the thousands of
    /// artifacts a catalog holds.
    pub fn artifacts_without_facts(
        &self,
        service: Option<&ServiceName>,
    ) -> Result<Vec<ArtifactRecord>> {
        self.artifacts_with(service, false)
    }

    fn artifacts_with(
        &self,
        service: Option<&ServiceName>,
        facts: bool,
    ) -> Result<Vec<ArtifactRecord>> {
        let (columns, order) = if facts {
            (
                ARTIFACT_COLUMNS.to_owned(),
                "ORDER BY b.taken_at DESC, b.service, a.file",
            )
        } else {
            (ARTIFACT_COLUMNS.replace("a.facts", "'null'"), "")
        };
        let sql = format!(
            "SELECT {columns} FROM artifacts a JOIN backups b ON b.id = a.backup_id \
             WHERE ?1 IS NULL OR b.service = ?1 {order}"
        );
        let mut list = self.query_artifacts(&sql, params![service])?;
        // One query for every copy: a catalog holds thousands of artifacts and this runs on
        // every `tierback run`. All of them is a plain scan in insertion order, with no join
        // and no sort.
        let sql = match service {
            None => {
                "SELECT artifact_id, tier, state, stored_at, verified_at, error FROM copies \
                     WHERE ?1 IS NULL ORDER BY rowid"
            }
            Some(_) => {
                "SELECT c.artifact_id, c.tier, c.state, c.stored_at, c.verified_at, c.error \
                 FROM copies c JOIN artifacts a ON a.id = c.artifact_id JOIN backups b ON b.id = a.backup_id \
                 WHERE b.service = ?1 ORDER BY c.rowid"
            }
        };
        self.attach_copies_of(&mut list, sql, params![service])?;
        Ok(list)
    }

    /// [`Catalog::artifacts_without_facts`] of only the backups that lack something on one of
    /// `tiers` (an artifact with no present copy there), and of every backup of `services`:
    /// all that a sync to those tiers can send or repair, without reading the thousands of
    /// artifacts they already hold whole on every hourly run.
    pub fn artifacts_lacking(
        &self,
        tiers: &[&TierName],
        services: &[&ServiceName],
    ) -> Result<Vec<ArtifactRecord>> {
        let mut present: HashMap<ArtifactId, usize> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT artifact_id, tier FROM copies WHERE state = 'present'")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, ArtifactId>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (id, tier) = row.map_err(|e| self.err(e))?;
            if tiers.iter().any(|t| *t == tier.as_str()) {
                *present.entry(id).or_default() += 1;
            }
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT a.id, a.backup_id, b.service FROM artifacts a JOIN backups b ON b.id = a.backup_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, ArtifactId>(0)?,
                    r.get::<_, BackupId>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut wanted = std::collections::BTreeSet::new();
        for row in rows {
            let (id, backup_id, service) = row.map_err(|e| self.err(e))?;
            if present.get(&id).copied().unwrap_or(0) < tiers.len()
                || services.iter().any(|s| *s == service.as_str())
            {
                wanted.insert(backup_id);
            }
        }
        let ids = serde_json::to_string(&wanted).expect("a set of integers is JSON");
        let columns = ARTIFACT_COLUMNS.replace("a.facts", "'null'");
        let sql = format!(
            "SELECT {columns} FROM artifacts a JOIN backups b ON b.id = a.backup_id \
             WHERE a.backup_id IN (SELECT value FROM json_each(?1))"
        );
        let mut list = self.query_artifacts(&sql, params![ids])?;
        self.attach_copies_of(
            &mut list,
            "SELECT c.artifact_id, c.tier, c.state, c.stored_at, c.verified_at, c.error FROM copies c \
             JOIN artifacts a ON a.id = c.artifact_id \
             WHERE a.backup_id IN (SELECT value FROM json_each(?1)) ORDER BY c.rowid",
            params![ids],
        )?;
        Ok(list)
    }

    /// Fills each artifact's copies from `sql`, whose rows are (artifact id, tier, state,
    /// stored_at, verified_at, error) in the order each artifact's copies should keep.
    fn attach_copies_of(
        &self,
        list: &mut [ArtifactRecord],
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut copies: HashMap<ArtifactId, Vec<CopyRecord>> = HashMap::new();
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, ArtifactId>(0)?,
                    CopyRecord {
                        tier: r.get(1)?,
                        state: r.get(2)?,
                        stored_at: r.get(3)?,
                        verified_at: r.get(4)?,
                        error: r.get(5)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (id, copy) = row.map_err(|e| self.err(e))?;
            copies.entry(id).or_default().push(copy);
        }
        for a in list {
            a.copies = copies.remove(&a.id).unwrap_or_default();
        }
        Ok(())
    }

    /// Every backup ever recorded, in no particular order, including those whose files every
    /// tier has since removed: copy policies and retention count them as if each tier held
    /// them all. (It grows by every backup taken, and every run reads it: sorting is left to
    /// the caller, who groups it by service first.)
    pub fn history(&self) -> Result<Vec<BackupEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, service, taken_at, pinned_at IS NOT NULL FROM backups")
            .map_err(|e| self.err(e))?;
        let mut services: Vec<std::sync::Arc<str>> = Vec::new();
        let mut history = Vec::new();
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let name = r
                .get_ref(1)
                .and_then(|v| Ok(v.as_str()?))
                .map_err(|e| self.err(e))?;
            let service = shared_name(&mut services, name);
            history.push(BackupEntry {
                id: r.get(0).map_err(|e| self.err(e))?,
                service,
                taken_at: r.get(2).map_err(|e| self.err(e))?,
                pinned: r.get(3).map_err(|e| self.err(e))?,
            });
        }
        Ok(history)
    }

    /// Per tier (of `tiers`, or all), the backups prune removed from it that some tier still
    /// holds: sync never sends those again. (A backup no tier holds cannot be sent anywhere;
    /// [`Catalog::remove_backup_copies`] forgets it here when its last copy goes.)
    pub fn retired(
        &self,
        tiers: Option<&[&TierName]>,
    ) -> Result<HashMap<TierName, HashSet<BackupId>>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT backup_id, tier FROM retired \
                 WHERE ?1 IS NULL OR tier IN (SELECT value FROM json_each(?1))",
            )
            .map_err(|e| self.err(e))?;
        let tiers = tiers.map(|t| serde_json::to_string(t).expect("names are JSON"));
        let rows = stmt
            .query_map([tiers], |r| {
                Ok((r.get::<_, BackupId>(0)?, r.get::<_, TierName>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut retired: HashMap<TierName, HashSet<BackupId>> = HashMap::new();
        for row in rows {
            let (id, tier) = row.map_err(|e| self.err(e))?;
            retired.entry(tier).or_default().insert(id);
        }
        Ok(retired)
    }

    /// Pins or unpins a backup. Returns false if no backup has this id.
    pub fn set_pinned(&self, backup_id: BackupId, pinned: bool) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE backups SET pinned_at = CASE WHEN ?2 THEN coalesce(pinned_at, ?3) END WHERE id = ?1",
                params![backup_id, pinned, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// The artifact a view path names (`service`, UTC `date`, decompressed `file`).
    pub fn find_artifact(
        &self,
        service: &ServiceName,
        date: &str,
        file: &str,
    ) -> Result<Option<ArtifactRecord>> {
        let key = format!("{service}/{date}/{file}.gz");
        let sql = format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts a JOIN backups b ON b.id = a.backup_id WHERE a.key = ?1"
        );
        let mut list = self.query_artifacts(&sql, params![key])?;
        self.attach_copies(&mut list)?;
        Ok(list.pop())
    }

    /// The newest archived copy of a WAL file (`facts.wal_file`) in a `postgres_wal` service.
    pub fn find_wal(
        &self,
        service: &ServiceName,
        wal_file: &str,
    ) -> Result<Option<ArtifactRecord>> {
        let sql = format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts a JOIN backups b ON b.id = a.backup_id \
             WHERE b.service = ?1 AND json_extract(a.facts, '$.wal_file') = ?2 \
             ORDER BY b.taken_at DESC LIMIT 1"
        );
        let mut list = self.query_artifacts(&sql, params![service, wal_file])?;
        self.attach_copies(&mut list)?;
        Ok(list.pop())
    }

    pub(super) fn query_artifacts(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<ArtifactRecord>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        stmt.query_map(params, |r| {
            let facts: String = r.get(14)?;
            Ok(ArtifactRecord {
                id: r.get(0)?,
                backup_id: r.get(1)?,
                service: r.get(2)?,
                taken_at: r.get(3)?,
                driver: r.get(4)?,
                file: r.get(5)?,
                key: r.get(6)?,
                raw_size: r.get::<_, i64>(7)? as u64,
                raw_sha256: r.get(8)?,
                stored_size: r.get::<_, i64>(9)? as u64,
                stored_sha256: r.get(10)?,
                block_size: r.get(11)?,
                compression_level: r.get(12)?,
                block_count: r.get::<_, i64>(13)? as u64,
                facts: serde_json::from_str(&facts).unwrap_or(serde_json::Value::Null),
                pinned: r.get::<_, Option<i64>>(15)?.is_some(),
                copies: Vec::new(),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    fn attach_copies(&self, list: &mut [ArtifactRecord]) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT tier, state, stored_at, verified_at, error FROM copies WHERE artifact_id = ?1 ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        for a in list {
            a.copies = stmt
                .query_map([a.id], |r| {
                    Ok(CopyRecord {
                        tier: r.get(0)?,
                        state: r.get(1)?,
                        stored_at: r.get(2)?,
                        verified_at: r.get(3)?,
                        error: r.get(4)?,
                    })
                })
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The facts recorded with an artifact (what its driver learned at backup time).
    pub fn facts(&self, artifact_id: ArtifactId) -> Result<serde_json::Value> {
        let text: String = self
            .conn
            .query_row(
                "SELECT facts FROM artifacts WHERE id = ?1",
                [artifact_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// The block index of an artifact (kept apart from the record: it can be megabytes).
    pub fn block_index(&self, artifact_id: ArtifactId) -> Result<BlockIndex> {
        let blob: Vec<u8> = self
            .conn
            .query_row(
                "SELECT block_index FROM artifacts WHERE id = ?1",
                [artifact_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        BlockIndex::decode(&blob).map_err(|reason| {
            Error::integrity(
                format!("catalog {} artifact {artifact_id}", self.path.display()),
                None,
                reason,
            )
        })
    }
}

/// `name` as one of the few service names a long scan meets, each allocated once.
pub(super) fn shared_name(seen: &mut Vec<std::sync::Arc<str>>, name: &str) -> std::sync::Arc<str> {
    if let Some(s) = seen.iter().find(|s| &***s == name) {
        return s.clone();
    }
    seen.push(name.into());
    seen[seen.len() - 1].clone()
}
