//! What the filesystem needs from the catalog, as a small trait so the core can be tested
//! against an in-memory double, plus the real implementation over the engine's [`Catalog`]
//! (which owns every SQL statement; this crate writes none).

use std::path::PathBuf;
use std::sync::Mutex;

use tierback_engine::Result;
use tierback_engine::artifact::BlockIndex;
use tierback_engine::catalog::{ArtifactRecord, Catalog};

pub trait CatalogSource: Send + Sync {
    /// Every artifact with its copies.
    fn artifacts(&self) -> Result<Vec<ArtifactRecord>>;
    /// A value that changes whenever the catalog does (polled every second: must be cheap).
    fn version(&self) -> Result<i64>;
    fn block_index(&self, artifact_id: i64) -> Result<BlockIndex>;
    /// Records that a copy failed a check (the copy becomes `corrupt`).
    fn mark_corrupt(&self, artifact_id: i64, tier: &str, problem: &str) -> Result<()>;
}

/// The catalog file, read through one read-only connection; the rare corruption mark opens a
/// short-lived writable one (the mount must not hold a writer open against the engine).
pub struct SqliteCatalog {
    path: PathBuf,
    reader: Mutex<Catalog>,
}

impl SqliteCatalog {
    pub fn open(path: PathBuf) -> Result<SqliteCatalog> {
        let reader = Mutex::new(Catalog::open_read_only(&path)?);
        Ok(SqliteCatalog { path, reader })
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.reader.lock().expect("catalog connection poisoned")
    }
}

impl CatalogSource for SqliteCatalog {
    fn artifacts(&self) -> Result<Vec<ArtifactRecord>> {
        self.reader().artifacts(None)
    }

    fn version(&self) -> Result<i64> {
        self.reader().data_version()
    }

    fn block_index(&self, artifact_id: i64) -> Result<BlockIndex> {
        self.reader().block_index(artifact_id)
    }

    fn mark_corrupt(&self, artifact_id: i64, tier: &str, problem: &str) -> Result<()> {
        Catalog::open(&self.path)?.record_verification(artifact_id, tier, &[problem.to_owned()])
    }
}
