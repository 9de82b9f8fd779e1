//! The catalog: the one place that knows what exists. SQLite in WAL mode (readers such as the
//! mount never block the engine), a busy timeout for concurrent cron runs, versioned migrations.
//! Holds no secrets: only names, sizes, hashes, states and the dump tools' stderr tails.
//!
//! This module opens and migrates the catalog and defines its records; `artifacts` records and
//! reads backups and their artifacts, `copies` the tiers' copies and their verifications, `runs`
//! the run history.

mod artifacts;
mod copies;
mod runs;
mod schema;
mod snapshots;
mod state;
mod stats;
#[cfg(test)]
mod tests;
mod view;

pub use state::{CopyState, RunKind, RunStatus};
pub use stats::TierUsage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::artifact::BlockIndex;
use crate::error::IoContext;
use crate::id::{ArtifactId, BackupId, RunId, ServiceName, TierName};
use crate::{Error, Result};

/// The `service` of a run that is about no one service: prune, and `run`'s sync and
/// restore-test jobs.
pub const ALL_SERVICES: &str = "*";

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

/// One artifact of a backup (one database of a PostgreSQL backup, one RDB, one tar…).
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRecord {
    pub id: ArtifactId,
    pub backup_id: BackupId,
    pub service: ServiceName,
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
    pub fn copy_on(&self, tier: &TierName) -> Option<&CopyRecord> {
        self.copies.iter().find(|c| c.tier == *tier)
    }

    /// A record with only what the planning tests look at (one artifact per backup, no copies).
    #[cfg(test)]
    pub(crate) fn for_test(backup_id: i64, service: &str, taken_at: i64) -> ArtifactRecord {
        ArtifactRecord {
            id: ArtifactId::new(backup_id),
            backup_id: BackupId::new(backup_id),
            service: ServiceName::new(service).expect("a test's service name"),
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
    pub id: BackupId,
    /// Shared: a year of history is tens of thousands of entries of a handful of services.
    pub service: std::sync::Arc<str>,
    pub taken_at: i64,
    pub pinned: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CopyRecord {
    pub tier: TierName,
    pub state: CopyState,
    pub stored_at: i64,
    pub verified_at: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: RunId,
    /// What the run was about: a service, a tier (syncs and tier verifications), or
    /// [`ALL_SERVICES`] (jobs), so not always a [`ServiceName`].
    pub service: String,
    pub kind: RunKind,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: RunStatus,
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
}
