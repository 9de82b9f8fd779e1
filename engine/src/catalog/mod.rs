//! The catalog: the one place that knows what exists. SQLite in WAL mode (readers such as the
//! mount never block the engine), a busy timeout for concurrent cron runs, versioned migrations.
//! Holds no secrets: only names, sizes, hashes, states and the dump tools' stderr tails.

mod schema;
mod snapshots;
mod stats;
mod view;

pub use stats::TierUsage;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::artifact::BlockIndex;
use crate::clock::now;
use crate::error::IoContext;
use crate::{Error, Result};

/// Copy states on a tier.
pub const PRESENT: &str = "present";
pub const CORRUPT: &str = "corrupt";
pub const MISSING: &str = "missing";

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

/// One artifact of a backup (one database of a PostgreSQL backup, one RDB, one tar…).
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRecord {
    pub id: i64,
    pub backup_id: i64,
    pub service: String,
    pub taken_at: i64,
    pub driver: String,
    /// Decompressed file name: `zentoria_main_120000.sql`.
    pub file: String,
    /// Object key on every tier: `postgresql/2026-01-16/zentoria_main_120000.sql.gz`.
    pub key: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    pub block_size: u32,
    pub compression_level: i32,
    pub block_count: u64,
    pub facts: serde_json::Value,
    /// Pinned by `tierback pin`: kept on every tier that holds it, whatever retention says.
    pub pinned: bool,
    pub copies: Vec<CopyRecord>,
}

impl ArtifactRecord {
    pub fn copy_on(&self, tier: &str) -> Option<&CopyRecord> {
        self.copies.iter().find(|c| c.tier == tier)
    }

    /// A record with only what the planning tests look at (one artifact per backup, no copies).
    #[cfg(test)]
    pub(crate) fn for_test(backup_id: i64, service: &str, taken_at: i64) -> ArtifactRecord {
        ArtifactRecord {
            id: backup_id,
            backup_id,
            service: service.into(),
            taken_at,
            driver: "command".into(),
            file: format!("f{backup_id}"),
            key: format!("{service}/d/f{backup_id}.gz"),
            raw_size: 0,
            raw_sha256: String::new(),
            stored_size: 0,
            stored_sha256: String::new(),
            block_size: 1,
            compression_level: 9,
            block_count: 1,
            facts: serde_json::Value::Null,
            pinned: false,
            copies: vec![],
        }
    }
}

/// One backup as the history knows it (its files may be gone from every tier).
#[derive(Debug, Clone, PartialEq)]
pub struct BackupEntry {
    pub id: i64,
    /// Shared: a year of history is tens of thousands of entries of a handful of services.
    pub service: std::sync::Arc<str>,
    pub taken_at: i64,
    pub pinned: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CopyRecord {
    pub tier: String,
    pub state: String,
    pub stored_at: i64,
    pub verified_at: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub service: String,
    pub kind: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: String,
    pub error: Option<String>,
    pub stderr_tail: Option<String>,
}

/// What `record_backup` stores for each artifact.
pub struct NewArtifact {
    pub file: String,
    pub key: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    pub compression_level: i32,
    pub index: BlockIndex,
    pub facts: serde_json::Value,
}

const ARTIFACT_COLUMNS: &str = "a.id, a.backup_id, b.service, b.taken_at, b.driver, a.file, a.key, a.raw_size, \
     a.raw_sha256, a.stored_size, a.stored_sha256, a.block_size, a.compression_level, a.block_count, a.facts, b.pinned_at";

impl Catalog {
    /// Opens (creating and migrating) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Catalog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .ctx(|| format!("creating the catalog directory {}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(|source| Error::Catalog {
            path: path.to_owned(),
            source,
        })?;
        let mut c = Catalog {
            conn,
            path: path.to_owned(),
        };
        c.setup()?;
        c.migrate()?;
        Ok(c)
    }

    /// Opens an existing catalog without writing to it (the mount, `list`, `cat`).
    pub fn open_read_only(path: &Path) -> Result<Catalog> {
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Invalid(format!(
                    "no catalog at {}: run `tierback init` or take a backup first",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(Error::io(
                    format!(
                        "catalog {}: not readable by this user (uid {}; the catalog and its directory are owner-only)",
                        path.display(),
                        // SAFETY: getuid cannot fail.
                        unsafe { libc::getuid() }
                    ),
                    e,
                ));
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| Error::Catalog {
            path: path.to_owned(),
            source,
        })?;
        let c = Catalog {
            conn,
            path: path.to_owned(),
        };
        c.conn
            .busy_timeout(Duration::from_secs(30))
            .map_err(|e| c.err(e))?;
        let version: usize = c
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| c.err(e))?;
        if version != schema::MIGRATIONS.len() {
            return Err(Error::Invalid(format!(
                "catalog {} is at schema version {version}, this tierback expects {}: run any writing command (e.g. `tierback status`) to migrate",
                path.display(),
                schema::MIGRATIONS.len()
            )));
        }
        Ok(c)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Catalog {
            path: self.path.clone(),
            source,
        }
    }

    fn setup(&self) -> Result<()> {
        self.conn
            .busy_timeout(Duration::from_secs(30))
            .map_err(|e| self.err(e))?;
        self.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                 PRAGMA mmap_size = 268435456;",
            )
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let err = |source| Error::Catalog {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let version: usize = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version > schema::MIGRATIONS.len() {
            return Err(Error::Invalid(format!(
                "catalog {} has schema version {version}, newer than this tierback understands ({}); upgrade tierback",
                path.display(),
                schema::MIGRATIONS.len()
            )));
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", i + 1).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    // ---- runs ----------------------------------------------------------------------------

    pub fn begin_run(&self, service: &str, kind: &str) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (service, kind, started_at, status, pid) VALUES (?1, ?2, ?3, 'running', ?4)",
                params![service, kind, now(), std::process::id()],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(
        &self,
        run: i64,
        status: &str,
        error: Option<&str>,
        stderr_tail: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, error = ?4, stderr_tail = ?5 WHERE id = ?1",
                params![run, now(), status, error, stderr_tail],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records how many bytes a run moved (sync uploads).
    pub fn set_run_bytes(&self, run: i64, bytes: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET bytes = ?2 WHERE id = ?1",
                params![run, bytes as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The newest run of `kind` for `service` (a service, a tier for syncs, `*` for others).
    pub fn last_run(&self, service: &str, kind: &str) -> Result<Option<(RunRecord, Option<u64>)>> {
        self.last_run_where(service, kind, "")
    }

    /// The newest run of `kind` for `service` that has ended (metrics report outcomes, and a run
    /// in progress has none yet).
    pub fn last_finished_run(
        &self,
        service: &str,
        kind: &str,
    ) -> Result<Option<(RunRecord, Option<u64>)>> {
        self.last_run_where(service, kind, "AND status != 'running'")
    }

    /// The newest run of `kind` for `service` that succeeded (a failed sync is retried at the
    /// next run, not at the next slot of its schedule).
    pub fn last_ok_run(
        &self,
        service: &str,
        kind: &str,
    ) -> Result<Option<(RunRecord, Option<u64>)>> {
        self.last_run_where(service, kind, "AND status = 'ok'")
    }

    fn last_run_where(
        &self,
        service: &str,
        kind: &str,
        filter: &str,
    ) -> Result<Option<(RunRecord, Option<u64>)>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT id, service, kind, started_at, finished_at, status, error, stderr_tail, bytes \
                     FROM runs WHERE service = ?1 AND kind = ?2 {filter} ORDER BY id DESC LIMIT 1"
                ),
                params![service, kind],
                |r| Ok((run_from_row(r)?, r.get::<_, Option<i64>>(8)?.map(|b| b as u64))),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Services with a backup run in progress (its process alive), and when it started.
    pub fn running_backups(&self) -> Result<HashMap<String, i64>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT service, started_at, pid FROM runs \
                 WHERE status = 'running' AND kind = 'backup'",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, i64, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut running: HashMap<String, i64> = HashMap::new();
        for (service, started, pid) in rows {
            if pid.is_some_and(process_alive) {
                let e = running.entry(service).or_insert(started);
                *e = (*e).min(started);
            }
        }
        Ok(running)
    }

    /// Marks runs whose process is gone (a `kill -9`, a crash, a reboot) as interrupted.
    pub fn reap_interrupted(&self) -> Result<usize> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, pid FROM runs WHERE status = 'running'")
            .map_err(|e| self.err(e))?;
        let running: Vec<(i64, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut reaped = 0;
        for (id, pid) in running {
            if !pid.is_some_and(process_alive) {
                self.conn
                    .execute(
                        "UPDATE runs SET status = 'interrupted', finished_at = ?2, \
                         error = 'the process died before finishing (killed, crashed or rebooted); nothing it wrote was kept' \
                         WHERE id = ?1",
                        params![id, now()],
                    )
                    .map_err(|e| self.err(e))?;
                reaped += 1;
            }
        }
        Ok(reaped)
    }

    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, service, kind, started_at, finished_at, status, error, stderr_tail \
                 FROM runs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([limit as i64], run_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    // ---- backups -------------------------------------------------------------------------

    pub fn backup_exists(&self, service: &str, taken_at: i64) -> Result<bool> {
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
    pub fn backup_id(&self, service: &str, taken_at: i64) -> Result<Option<i64>> {
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
        service: &str,
        taken_at: i64,
        driver: &str,
        run: Option<i64>,
        tier: &str,
        artifacts: &[NewArtifact],
    ) -> Result<i64> {
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
        let backup_id = tx.last_insert_rowid();
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
    pub fn artifacts(&self, service: Option<&str>) -> Result<Vec<ArtifactRecord>> {
        self.artifacts_with(service, true)
    }

    /// [`Catalog::artifacts`] without their `facts` (null), in no particular order: what
    /// planning needs on every `tierback run`, at a fraction of the cost for the thousands of
    /// artifacts a catalog holds.
    pub fn artifacts_without_facts(&self, service: Option<&str>) -> Result<Vec<ArtifactRecord>> {
        self.artifacts_with(service, false)
    }

    fn artifacts_with(&self, service: Option<&str>, facts: bool) -> Result<Vec<ArtifactRecord>> {
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
        tiers: &[&str],
        services: &[&str],
    ) -> Result<Vec<ArtifactRecord>> {
        let mut present: HashMap<i64, usize> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT artifact_id, tier FROM copies WHERE state = 'present'")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (id, tier) = row.map_err(|e| self.err(e))?;
            if tiers.contains(&tier.as_str()) {
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
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut wanted = std::collections::BTreeSet::new();
        for row in rows {
            let (id, backup_id, service) = row.map_err(|e| self.err(e))?;
            if present.get(&id).copied().unwrap_or(0) < tiers.len()
                || services.contains(&service.as_str())
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

    /// True if some copy on `tier` failed its last check (an index lookup: `copies_corrupt`).
    pub fn has_corrupt_copy(&self, tier: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM copies WHERE tier = ?1 AND state = 'corrupt')",
                [tier],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
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
        let mut copies: HashMap<i64, Vec<CopyRecord>> = HashMap::new();
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
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
    pub fn retired(&self, tiers: Option<&[&str]>) -> Result<HashMap<String, HashSet<i64>>> {
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
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut retired: HashMap<String, HashSet<i64>> = HashMap::new();
        for row in rows {
            let (id, tier) = row.map_err(|e| self.err(e))?;
            retired.entry(tier).or_default().insert(id);
        }
        Ok(retired)
    }

    /// Pins or unpins a backup. Returns false if no backup has this id.
    pub fn set_pinned(&self, backup_id: i64, pinned: bool) -> Result<bool> {
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
        service: &str,
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
    pub fn find_wal(&self, service: &str, wal_file: &str) -> Result<Option<ArtifactRecord>> {
        let sql = format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts a JOIN backups b ON b.id = a.backup_id \
             WHERE b.service = ?1 AND json_extract(a.facts, '$.wal_file') = ?2 \
             ORDER BY b.taken_at DESC LIMIT 1"
        );
        let mut list = self.query_artifacts(&sql, params![service, wal_file])?;
        self.attach_copies(&mut list)?;
        Ok(list.pop())
    }

    fn query_artifacts(
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
    pub fn facts(&self, artifact_id: i64) -> Result<serde_json::Value> {
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
    pub fn block_index(&self, artifact_id: i64) -> Result<BlockIndex> {
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

    /// Records that `tier` holds a verified copy of the artifact (after an upload), and that
    /// verification: a copy repaired by sync stops counting as failed at once.
    pub fn set_copy_present(&mut self, artifact_id: i64, tier: &str) -> Result<()> {
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
    pub fn set_copies(&mut self, key: &str, tiers: &[String]) -> Result<()> {
        let path = self.path.clone();
        let err = |source| Error::Catalog {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let id: i64 = tx
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
    pub fn mark_backup_copies_missing(&self, backup_id: i64, tier: &str) -> Result<()> {
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
    pub fn remove_backup_copies(&mut self, backup_id: i64, tier: &str) -> Result<()> {
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
        artifact_id: i64,
        tier: &str,
        problems: &[String],
    ) -> Result<()> {
        self.record_verifications(tier, &[(artifact_id, problems.to_vec())])
    }

    /// Records verifications of `tier`'s copies (artifact id, problems found) and each copy's
    /// resulting state, in one transaction: one commit for a batch, not two per copy.
    pub fn record_verifications(&self, tier: &str, checked: &[(i64, Vec<String>)]) -> Result<()> {
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
                (PRESENT, Some(at))
            } else {
                (CORRUPT, None)
            };
            update
                .execute(params![artifact_id, tier, state, verified_at, detail])
                .map_err(|e| self.err(e))?;
        }
        drop((insert, update));
        tx.commit().map_err(|e| self.err(e))
    }
}

/// `name` as one of the few service names a long scan meets, each allocated once.
fn shared_name(seen: &mut Vec<std::sync::Arc<str>>, name: &str) -> std::sync::Arc<str> {
    if let Some(s) = seen.iter().find(|s| &***s == name) {
        return s.clone();
    }
    seen.push(name.into());
    seen[seen.len() - 1].clone()
}

/// A run row whose first eight columns are id, service, kind, started_at, finished_at,
/// status, error, stderr_tail.
fn run_from_row(r: &rusqlite::Row) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        service: r.get(1)?,
        kind: r.get(2)?,
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        status: r.get(5)?,
        error: r.get(6)?,
        stderr_tail: r.get(7)?,
    })
}

fn process_alive(pid: i64) -> bool {
    i32::try_from(pid).is_ok_and(crate::lock::process_alive)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::artifact::BlockEntry;

    pub(super) fn artifact(file: &str) -> NewArtifact {
        NewArtifact {
            file: file.into(),
            key: format!("svc/2026-01-16/{file}.gz"),
            raw_size: 10,
            raw_sha256: "aa".into(),
            stored_size: 7,
            stored_sha256: "bb".into(),
            compression_level: 9,
            index: BlockIndex {
                block_size: 16,
                entries: vec![BlockEntry {
                    offset: 0,
                    stored_len: 7,
                    raw_len: 10,
                    sha256: [3; 32],
                    stored_sha256: Some([4; 32]),
                }],
            },
            facts: serde_json::json!({"rows": 3}),
        }
    }

    #[test]
    fn records_and_finds_backups() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("sub/catalog.db")).unwrap();
        let run = c.begin_run("svc", "backup").unwrap();
        c.record_backup(
            "svc",
            1_768_564_800,
            "command",
            Some(run),
            "local",
            &[artifact("a_120000.sql")],
        )
        .unwrap();
        c.finish_run(run, "ok", None, None).unwrap();
        assert!(c.backup_exists("svc", 1_768_564_800).unwrap());
        let found = c
            .find_artifact("svc", "2026-01-16", "a_120000.sql")
            .unwrap()
            .unwrap();
        assert_eq!(found.copies[0].state, PRESENT);
        assert_eq!(found.facts["rows"], 3);
        assert_eq!(c.block_index(found.id).unwrap().entries.len(), 1);
        c.record_verification(found.id, "local", &["block 0: bad".into()])
            .unwrap();
        let again = c
            .find_artifact("svc", "2026-01-16", "a_120000.sql")
            .unwrap()
            .unwrap();
        assert_eq!(again.copies[0].state, CORRUPT);
        // Reopening applies no migration twice.
        drop(c);
        let ro = Catalog::open_read_only(&dir.path().join("sub/catalog.db")).unwrap();
        assert_eq!(ro.artifacts(None).unwrap().len(), 1);
        assert_eq!(ro.runs(10).unwrap()[0].status, "ok");
    }

    #[test]
    fn artifacts_lacking_are_the_backups_a_tier_lacks_something_of() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        for (service, t, files) in [
            ("a", 1, &["a1", "a2"][..]),
            ("a", 2, &["b1"]),
            ("a", 3, &["c1"]),
            ("base", 4, &["d1"]),
        ] {
            let new: Vec<NewArtifact> = files.iter().map(|f| artifact(f)).collect();
            c.record_backup(service, t, "command", None, "local", &new)
                .unwrap();
        }
        let id_of = |c: &Catalog, file: &str| {
            let all = c.artifacts(None).unwrap();
            let a = all.iter().find(|a| a.file == file).unwrap();
            (a.id, a.backup_id)
        };
        let [a1, a2, b1, c1, d1] = ["a1", "a2", "b1", "c1", "d1"].map(|f| id_of(&c, f));
        // s3 holds a1 (not a2), b1, a corrupt c1, and d1.
        for (id, _) in [a1, b1, c1, d1] {
            c.set_copy_present(id, "s3").unwrap();
        }
        c.record_verification(c1.0, "s3", &["bad".into()]).unwrap();

        let mut got: Vec<(i64, usize)> = c
            .artifacts_lacking(&["s3"], &["base"])
            .unwrap()
            .iter()
            .map(|a| (a.id, a.copies.len()))
            .collect();
        got.sort();
        // Both files of the half-sent backup, with their copies; the corrupt one; every base.
        assert_eq!(got, [(a1.0, 2), (a2.0, 1), (c1.0, 2), (d1.0, 2)]);
        // Nothing lacks anything on local; only the base service is asked for whole.
        let on_local: Vec<i64> = c
            .artifacts_lacking(&["local"], &["base"])
            .unwrap()
            .iter()
            .map(|a| a.backup_id)
            .collect();
        assert_eq!(on_local, [d1.1]);
        assert!(c.has_corrupt_copy("s3").unwrap());
        assert!(!c.has_corrupt_copy("local").unwrap());
    }

    #[test]
    fn dead_runs_are_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let live = c.begin_run("svc", "backup").unwrap();
        let dead = c.begin_run("svc", "backup").unwrap();
        c.conn
            .execute("UPDATE runs SET pid = 2147483632 WHERE id = ?1", [dead])
            .unwrap();
        assert_eq!(c.reap_interrupted().unwrap(), 1);
        let runs = c.runs(10).unwrap();
        assert_eq!(
            runs.iter().find(|r| r.id == dead).unwrap().status,
            "interrupted"
        );
        assert_eq!(
            runs.iter().find(|r| r.id == live).unwrap().status,
            "running"
        );
    }

    #[test]
    fn duplicate_key_rolls_back_whole_backup() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        c.record_backup("svc", 1, "command", None, "local", &[artifact("a")])
            .unwrap();
        let r = c.record_backup(
            "svc",
            2,
            "command",
            None,
            "local",
            &[artifact("b"), artifact("a")],
        );
        assert!(r.is_err());
        assert!(
            !c.backup_exists("svc", 2).unwrap(),
            "a failed record leaves nothing behind"
        );
    }
}
