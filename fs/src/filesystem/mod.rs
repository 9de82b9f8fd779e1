//! The filesystem itself, as typed methods with no kernel in sight: lookups, attributes,
//! directory listings, opens and reads answer from an immutable [`Tree`] snapshot and the block
//! cache. `fuse.rs` adapts these to fuser; the unit tests below drive them directly.
//!
//! Access is decided here, not by the kernel (the mount has no `default_permissions`), so that
//! refused attempts reach the audit log: [`permits`] is the kernel's generic permission check,
//! applied to the caller the kernel names (uid, gid, pid → supplementary groups from `/proc`).
//! A lookup needs search permission on the directory; an open, a directory read, `access(2)`
//! and reading a `user.` attribute need their permission on the node and search permission on
//! every directory above it. Attributes (`stat`) stay readable to whoever reaches the node, as
//! with the kernel. Writes are refused with EROFS before any of that. When some caller may be
//! refused a walk, the kernel is told not to cache names ([`Filesystem::names_cacheable`]), so
//! that every walk comes here.
//!
//! This module holds the view's types and its snapshot of the tree; `access` the permission
//! check and the audit of who was allowed or refused what, `dir` lookups and directory
//! listings, `read` opening files and reading them through the block cache, `xattr` the
//! extended attributes.

mod access;
mod dir;
mod read;
#[cfg(test)]
mod tests;
mod xattr;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use tierback_engine::artifact::BlockIndex;
use tierback_engine::id::{ArtifactId, TierName};
use tierback_engine::store::Store;
use tracing::info;

use crate::audit::{AuditLog, Identities, SystemIdentities};
use crate::cache::{Block, BlockCache};
use crate::catalog::CatalogSource;
use crate::error::{FsError, FsResult};
use crate::inode::Inodes;
use crate::readahead::Prefetcher;
use crate::tree::{Content, Tree};

use access::Audit;
pub use access::{MAY_EXEC, MAY_READ, MAY_WRITE, permits};
use read::{Handle, MAX_READAHEAD_BLOCKS, Shared};

/// How the view presents itself and how much memory it may use.
#[derive(Debug, Clone)]
pub struct Settings {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    /// Byte budget of the decompressed-block cache.
    pub cache_bytes: usize,
    /// Threads decoding ahead of sequential readers.
    pub readahead_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub files: u64,
    pub block_size: u32,
}

/// Bytes of a read: a slice of one cached block (no copy), or assembled from several.
pub enum ReadData {
    Slice(Block, std::ops::Range<usize>),
    Shared(Arc<[u8]>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

impl ReadData {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ReadData::Slice(b, r) => &b[r.clone()],
            ReadData::Shared(b, r) => &b[r.clone()],
            ReadData::Owned(v) => v,
        }
    }
}

/// Counters exposed as xattrs on the root directory (`user.tierback.<name>`).
#[derive(Default)]
pub struct Stats {
    pub integrity_failures: AtomicU64,
    pub tier_errors: AtomicU64,
}

struct Snapshot {
    tree: Arc<Tree>,
    version: i64,
}

pub struct Filesystem {
    settings: Settings,
    tiers: Vec<TierName>,
    stores: HashMap<TierName, Arc<dyn Store>>,
    shared: Arc<Shared>,
    snapshot: RwLock<Snapshot>,
    inodes: Mutex<Inodes>,
    indexes: Mutex<HashMap<ArtifactId, Arc<BlockIndex>>>,
    handles: RwLock<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    prefetcher: Prefetcher,
    /// Blocks decoded ahead at most: a sequential reader never holds more than a quarter of
    /// the cache in flight, so read-ahead cannot evict what it is about to be asked for.
    max_window: usize,
    audit: Option<Audit>,
    identities: Arc<dyn Identities>,
}

impl Filesystem {
    /// Builds the view. `stores` maps tier names to their stores; `tiers` is the configured
    /// order (copies on other tiers are not shown).
    pub fn new(
        catalog: Arc<dyn CatalogSource>,
        tiers: Vec<TierName>,
        stores: HashMap<TierName, Arc<dyn Store>>,
        settings: Settings,
    ) -> FsResult<Filesystem> {
        let cache_blocks = settings.cache_bytes / (1 << 20);
        let fs = Filesystem {
            tiers,
            stores,
            shared: Arc::new(Shared {
                cache: BlockCache::new(settings.cache_bytes),
                catalog,
                stats: Stats::default(),
                reported: Mutex::default(),
            }),
            snapshot: RwLock::new(Snapshot {
                tree: Arc::new(Tree::default()),
                version: i64::MIN,
            }),
            inodes: Mutex::default(),
            indexes: Mutex::default(),
            handles: RwLock::default(),
            next_fh: AtomicU64::new(1),
            prefetcher: Prefetcher::new(settings.readahead_threads),
            max_window: (cache_blocks / 4).clamp(0, MAX_READAHEAD_BLOCKS),
            settings,
            audit: None,
            identities: Arc::new(SystemIdentities::default()),
        };
        fs.refresh_if_changed()?;
        Ok(fs)
    }

    /// Records every open of a file, every directory read and every refused path walk in `log`.
    pub fn with_audit_log(mut self, log: AuditLog) -> Self {
        self.audit = Some(Audit {
            log,
            recent_refusals: Mutex::default(),
        });
        self
    }

    /// Where callers' groups, commands and user names come from (the running system unless a
    /// test says otherwise).
    pub fn with_identities(mut self, ids: Arc<dyn Identities>) -> Self {
        self.identities = ids;
        self
    }

    /// True if the kernel may cache names: the directory mode lets every class search, so no
    /// path walk can be refused. Otherwise a cached name would let anyone walk where someone
    /// else walked in the last second without asking here, so every name is looked up afresh.
    pub fn names_cacheable(&self) -> bool {
        self.settings.dir_mode & 0o111 == 0o111
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    fn tree(&self) -> Arc<Tree> {
        self.snapshot
            .read()
            .expect("snapshot poisoned")
            .tree
            .clone()
    }

    /// Rebuilds the tree if the catalog changed since the last build. Cheap when nothing changed
    /// (one `PRAGMA`), so the mount calls it every second.
    pub fn refresh_if_changed(&self) -> FsResult<bool> {
        let catalog = &self.shared.catalog;
        let version = catalog.version()?;
        if self.snapshot.read().expect("snapshot poisoned").version == version {
            return Ok(false);
        }
        let artifacts = catalog.artifacts()?;
        let tree = {
            let mut inodes = self.inodes.lock().expect("inode table poisoned");
            Tree::build(&artifacts, &self.tiers, &mut inodes)
        };
        info!(
            artifacts = artifacts.len(),
            nodes = tree.len(),
            "view refreshed from the catalog"
        );
        *self.snapshot.write().expect("snapshot poisoned") = Snapshot {
            tree: Arc::new(tree),
            version,
        };
        Ok(true)
    }

    fn attr_of(&self, node: &crate::tree::Node) -> Attr {
        let dir = matches!(node.content, Content::Dir(_));
        Attr {
            ino: node.ino,
            kind: if dir { Kind::Dir } else { Kind::File },
            size: node.size(),
            mtime: node.mtime,
            perm: if dir {
                self.settings.dir_mode
            } else {
                self.settings.file_mode
            },
            nlink: if dir { 2 } else { 1 },
            uid: self.settings.uid,
            gid: self.settings.gid,
        }
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        self.tree()
            .get(ino)
            .map(|n| self.attr_of(n))
            .ok_or(FsError::NotFound)
    }

    pub fn statfs(&self) -> StatFs {
        let tree = self.tree();
        const BLOCK: u64 = 4096;
        StatFs {
            blocks: tree.total_bytes().div_ceil(BLOCK),
            files: tree.len() as u64,
            block_size: BLOCK as u32,
        }
    }
}
