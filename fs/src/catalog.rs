//! What the filesystem needs from the catalog, as a small trait so the core can be tested
//! against an in-memory double, plus the real implementation over the engine's [`Catalog`]
//! (which owns every SQL statement; this crate writes none).

use std::path::PathBuf;
use std::sync::Mutex;

use tierback_engine::Result;
use tierback_engine::artifact::BlockIndex;
use tierback_engine::catalog::{ArtifactRecord, Catalog};
use tierback_engine::id::{ArtifactId, TierName};

pub trait CatalogSource: Send + Sync {
    /// Every artifact with its copies.
    fn artifacts(&self) -> Result<Vec<ArtifactRecord>>;
    /// A value that changes whenever the catalog does (polled every second: must be cheap).
    fn version(&self) -> Result<i64>;
    fn block_index(&self, artifact_id: ArtifactId) -> Result<BlockIndex>;
    /// Records that a copy failed a check (the copy becomes `corrupt`).
    fn mark_corrupt(&self, artifact_id: ArtifactId, tier: &TierName, problem: &str) -> Result<()>;
}

/// The catalog file, read through one read-only connection; the rare corruption mark opens a
/// short-lived writable one (the mount must not hold a writer open against the engine).
///
/// `catalog rebuild --force` replaces the file (the old one becomes `.bak`): a connection keeps
/// reading the file it opened, so each poll compares the path's inode with the open one's and
/// reopens when it changed.
pub struct SqliteCatalog {
    path: PathBuf,
    reader: Mutex<Reader>,
}

struct Reader {
    catalog: Catalog,
    /// (device, inode) of the file `catalog` reads.
    file: (u64, u64),
    /// How many times the file was replaced: part of the version, so a new file always counts
    /// as a change.
    generation: i64,
}

fn identity(path: &std::path::Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| (m.dev(), m.ino()))
        .map_err(|e| tierback_engine::Error::io(format!("catalog {}", path.display()), e))
}

impl SqliteCatalog {
    pub fn open(path: PathBuf) -> Result<SqliteCatalog> {
        let file = identity(&path)?;
        let catalog = Catalog::open_read_only(&path)?;
        Ok(SqliteCatalog {
            path,
            reader: Mutex::new(Reader {
                catalog,
                file,
                generation: 0,
            }),
        })
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Reader> {
        self.reader.lock().expect("catalog connection poisoned")
    }
}

impl CatalogSource for SqliteCatalog {
    fn artifacts(&self) -> Result<Vec<ArtifactRecord>> {
        self.reader().catalog.artifacts(None)
    }

    fn version(&self) -> Result<i64> {
        let mut reader = self.reader();
        let now = identity(&self.path)?;
        if now != reader.file {
            let catalog = Catalog::open_read_only(&self.path)?;
            tracing::info!(path = %self.path.display(), "the catalog was replaced; reading the new one");
            *reader = Reader {
                catalog,
                file: now,
                generation: reader.generation + 1,
            };
        }
        // data_version is small (one step per foreign commit): the generation above it.
        Ok(reader.catalog.data_version()? + (reader.generation << 40))
    }

    fn block_index(&self, artifact_id: ArtifactId) -> Result<BlockIndex> {
        self.reader().catalog.block_index(artifact_id)
    }

    fn mark_corrupt(&self, artifact_id: ArtifactId, tier: &TierName, problem: &str) -> Result<()> {
        Catalog::open(&self.path)?.record_verification(artifact_id, tier, &[problem.to_owned()])
    }
}
