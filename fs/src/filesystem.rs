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

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tierback_engine::artifact::BlockIndex;
use tierback_engine::artifact::reader::ArtifactReader;
use tierback_engine::layout::rfc3339;
use tierback_engine::store::Store;
use tracing::{debug, error, info, warn};

use crate::audit::{AuditLog, Caller, Entry, Event, Identities, Outcome, SystemIdentities};
use crate::cache::{Block, BlockCache, BlockKey};
use crate::catalog::CatalogSource;
use crate::error::{FsError, FsResult};
use crate::inode::Inodes;
use crate::readahead::{Prefetcher, Sequence};
use crate::tree::{Content, CopyFile, Node, Tree};

/// Permission bits as `access(2)` spells them.
pub const MAY_READ: u32 = 4;
pub const MAY_WRITE: u32 = 2;
pub const MAY_EXEC: u32 = 1;

/// The kernel's generic permission check (`generic_permission`, no ACLs) of `mask`
/// ([`MAY_READ`] | [`MAY_WRITE`] | [`MAY_EXEC`]) on a node with `attr`: the owner's bits if
/// `uid` owns it, else the group's if `gid` or one of the caller's supplementary groups
/// (`in_group`) is its group, else the others' — only that one class counts, as in the kernel.
/// Root may still read anything, search any directory and execute a file anyone may execute
/// (CAP_DAC_READ_SEARCH / CAP_DAC_OVERRIDE); root's writes are not granted here (the view is
/// read-only). `in_group` is asked only when the answer depends on it.
pub fn permits(
    attr: &Attr,
    uid: u32,
    gid: u32,
    in_group: impl FnOnce(u32) -> bool,
    mask: u32,
) -> bool {
    let mode = u32::from(attr.perm);
    let mask = mask & 7;
    // Root's capabilities grant whatever the bits would, and more: decide without the groups.
    if uid == 0
        && mask & MAY_WRITE == 0
        && (attr.kind == Kind::Dir || mask & MAY_EXEC == 0 || mode & 0o111 != 0)
    {
        return true;
    }
    let class = if uid == attr.uid {
        mode >> 6
    } else if gid == attr.gid || ((mode >> 3) & 7 != mode & 7 && in_group(attr.gid)) {
        mode >> 3
    } else {
        mode
    };
    mask & !class & 7 == 0
}

/// A caller with its supplementary groups read at most once per request, and only if needed.
struct Who<'a> {
    caller: Caller,
    ids: &'a dyn Identities,
    groups: OnceLock<Vec<u32>>,
}

impl Who<'_> {
    fn in_group(&self, gid: u32) -> bool {
        self.groups
            .get_or_init(|| {
                self.ids.groups(self.caller.pid).unwrap_or_else(|| {
                    debug!(
                        pid = self.caller.pid,
                        "supplementary groups unreadable (the caller exited?): none assumed"
                    );
                    Vec::new()
                })
            })
            .contains(&gid)
    }
}

/// A refused lookup repeated by the same thread for the same name within this long is one
/// attempt: the kernel asks twice when it revalidates an expired entry and then looks it up.
const REFUSAL_ECHO: Duration = Duration::from_secs(1);

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

/// The audit log and what it needs to name a caller.
struct Audit {
    log: AuditLog,
    /// Refused lookups recently logged: (pid, parent, name, when).
    recent_refusals: Mutex<Vec<(u32, u64, String, Instant)>>,
}

/// An open backup copy.
struct OpenCopy {
    ino: u64,
    file: Arc<CopyFile>,
    index: Arc<BlockIndex>,
    store: Arc<dyn Store>,
    seq: Mutex<Sequence>,
    /// The furthest byte handed out through this handle: read-ahead skips blocks wholly before
    /// it (a reader that overtook read-ahead decoded them itself, and the cache let them go).
    read_upto: AtomicU64,
}

impl OpenCopy {
    /// Moves `read_upto` on; a jump back (a seek, beyond the slack of requests the kernel sends
    /// out of order) starts it again from there.
    fn note_read(&self, offset: u64, end: u64) {
        let slack = 2 * self.index.block_size as u64;
        let upto = self.read_upto.load(Ordering::Relaxed);
        if offset + slack < upto {
            self.read_upto.store(end, Ordering::Relaxed);
        } else {
            self.read_upto.fetch_max(end, Ordering::Relaxed);
        }
    }
}

enum Handle {
    Copy(Arc<OpenCopy>),
    Bytes(Arc<[u8]>),
}

/// What read-ahead jobs share with the reading threads.
struct Shared {
    cache: BlockCache,
    catalog: Arc<dyn CatalogSource>,
    stats: Stats,
    /// Blocks already reported corrupt (log and catalog mark once, not on every retry).
    reported: Mutex<HashSet<BlockKey>>,
}

thread_local! {
    // One decompressor per thread: libdeflate's is cheap to reuse, not to share.
    static DECOMPRESSOR: RefCell<libdeflater::Decompressor> = RefCell::new(libdeflater::Decompressor::new());
}

impl Shared {
    /// Block `i` of an open copy: cached, or fetched, inflated and verified once.
    fn block(&self, copy: &OpenCopy, i: usize) -> FsResult<Block> {
        let key = BlockKey {
            copy: copy.ino,
            block: i,
        };
        self.cache.get_or_load(key, || {
            let reader = ArtifactReader {
                store: copy.store.as_ref(),
                key: &copy.file.key,
                index: &copy.index,
            };
            let read = || DECOMPRESSOR.with(|d| reader.read_block(i, &mut d.borrow_mut()));
            match read() {
                // Bytes a wrapper kept (a coalesced window) may predate a repair of this copy:
                // fetch them once more before calling the block corrupt.
                Err(tierback_engine::Error::Integrity { .. }) => {
                    copy.store.forget(&copy.file.key);
                    read()
                }
                other => other,
            }
            .map_err(|e| self.failed(copy, key, e))
        })
    }

    /// Logs a failed block once per block, counts it, and marks a corrupt copy in the catalog.
    fn failed(&self, copy: &OpenCopy, key: BlockKey, e: tierback_engine::Error) -> FsError {
        let integrity = matches!(e, tierback_engine::Error::Integrity { .. });
        let first = self
            .reported
            .lock()
            .expect("report set poisoned")
            .insert(key);
        if integrity {
            self.stats
                .integrity_failures
                .fetch_add(1, Ordering::Relaxed);
            if first {
                error!(file = %copy.file.view_path, block = key.block, "read returns EIO: {e}");
                if let Err(mark) = self.catalog.mark_corrupt(
                    copy.file.artifact_id,
                    &copy.file.tier,
                    &e.to_string(),
                ) {
                    error!(file = %copy.file.view_path, "could not mark the copy corrupt in the catalog: {mark}");
                }
            }
        } else {
            self.stats.tier_errors.fetch_add(1, Ordering::Relaxed);
            // Transient errors are logged every time: each is a new attempt.
            self.reported
                .lock()
                .expect("report set poisoned")
                .remove(&key);
            warn!(file = %copy.file.view_path, block = key.block, "tier read failed, read returns EIO: {e}");
        }
        e.into()
    }
}

struct Snapshot {
    tree: Arc<Tree>,
    version: i64,
}

pub struct Filesystem {
    settings: Settings,
    tiers: Vec<String>,
    stores: HashMap<String, Arc<dyn Store>>,
    shared: Arc<Shared>,
    snapshot: RwLock<Snapshot>,
    inodes: Mutex<Inodes>,
    indexes: Mutex<HashMap<i64, Arc<BlockIndex>>>,
    handles: RwLock<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    prefetcher: Prefetcher,
    /// Blocks decoded ahead at most: a sequential reader never holds more than a quarter of
    /// the cache in flight, so read-ahead cannot evict what it is about to be asked for.
    max_window: usize,
    audit: Option<Audit>,
    identities: Arc<dyn Identities>,
}

/// Extended attributes of a backup file, in `listxattr` order.
const COPY_XATTRS: [&str; 6] = [
    "user.tierback.sha256",
    "user.tierback.backup_id",
    "user.tierback.stored_sha256",
    "user.tierback.verified_at",
    "user.tierback.tier",
    "user.tierback.pinned",
];
const ROOT_XATTRS: [&str; 5] = [
    "user.tierback.integrity_failures",
    "user.tierback.tier_errors",
    "user.tierback.cache_hits",
    "user.tierback.cache_misses",
    "user.tierback.audit_failures",
];

/// Decoding ahead further than this (1 MiB blocks) gains nothing on two cores and costs memory.
const MAX_READAHEAD_BLOCKS: usize = 16;

impl Filesystem {
    /// Builds the view. `stores` maps tier names to their stores; `tiers` is the configured
    /// order (copies on other tiers are not shown).
    pub fn new(
        catalog: Arc<dyn CatalogSource>,
        tiers: Vec<String>,
        stores: HashMap<String, Arc<dyn Store>>,
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

    fn who(&self, caller: Caller) -> Who<'_> {
        Who {
            caller,
            ids: self.identities.as_ref(),
            groups: OnceLock::new(),
        }
    }

    /// True if `who` may do `mask` on `node` and search every directory above it.
    fn allowed(&self, tree: &Tree, node: &Node, who: &Who, mask: u32) -> bool {
        let (uid, gid) = (who.caller.uid, who.caller.gid);
        if !permits(&self.attr_of(node), uid, gid, |g| who.in_group(g), mask) {
            return false;
        }
        let mut ino = node.ino;
        while ino != crate::inode::ROOT {
            let Some(parent) = tree.get(ino).and_then(|n| tree.get(n.parent)) else {
                return false;
            };
            if !permits(
                &self.attr_of(parent),
                uid,
                gid,
                |g| who.in_group(g),
                MAY_EXEC,
            ) {
                return false;
            }
            ino = parent.ino;
        }
        true
    }

    /// The path of `node` as the mount shows it (`.` for the root).
    fn path_of(tree: &Tree, node: &Node) -> String {
        if let Content::Copy(file) = &node.content {
            return file.view_path.clone();
        }
        let mut parts = Vec::new();
        let mut ino = node.ino;
        while ino != crate::inode::ROOT {
            let Some(n) = tree.get(ino) else { break };
            if let Some(Content::Dir(children)) = tree.get(n.parent).map(|p| &p.content)
                && let Some((name, _)) = children.iter().find(|(_, i)| **i == ino)
            {
                parts.push(name.as_str());
            }
            ino = n.parent;
        }
        if parts.is_empty() {
            return ".".into();
        }
        parts.reverse();
        parts.join("/")
    }

    /// Writes one audit line, if there is a log.
    fn audit<T>(&self, event: Event, path: Option<&str>, caller: Caller, result: &FsResult<T>) {
        let Some(audit) = &self.audit else { return };
        let outcome = match result {
            Ok(_) => Outcome::Allowed,
            Err(e @ (FsError::PermissionDenied | FsError::ReadOnly)) => {
                Outcome::Refused(e.to_string())
            }
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let user = self.identities.user_name(caller.uid);
        let command = self.identities.command(caller.pid);
        audit.log.record(&Entry {
            event,
            path,
            caller,
            user: user.as_deref(),
            command: command.as_deref(),
            outcome: &outcome,
        });
    }

    /// Logs a refused lookup of `name` in `parent`, once per attempt.
    fn audit_refused_lookup(&self, tree: &Tree, dir: &Node, caller: Caller, name: &str) {
        let Some(audit) = &self.audit else { return };
        {
            let mut recent = audit.recent_refusals.lock().expect("refusals poisoned");
            recent.retain(|(.., at)| at.elapsed() < REFUSAL_ECHO);
            if recent
                .iter()
                .any(|(pid, parent, n, _)| *pid == caller.pid && *parent == dir.ino && n == name)
            {
                return;
            }
            if recent.len() >= 1024 {
                recent.remove(0);
            }
            recent.push((caller.pid, dir.ino, name.to_owned(), Instant::now()));
        }
        let parent = Self::path_of(tree, dir);
        let path = if parent == "." {
            name.to_owned()
        } else {
            format!("{parent}/{name}")
        };
        self.audit::<()>(
            Event::Lookup,
            Some(&path),
            caller,
            &Err(FsError::PermissionDenied),
        );
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

    /// `name` in directory `parent`, if `caller` may search it (and every directory above it).
    /// A refusal is audited: it is where a path walk of someone outside the modes ends.
    pub fn lookup(&self, caller: Caller, parent: u64, name: &str) -> FsResult<Attr> {
        let tree = self.tree();
        let dir = tree.get(parent).ok_or(FsError::NotFound)?;
        if !matches!(dir.content, Content::Dir(_)) {
            return Err(FsError::NotDir);
        }
        if !self.allowed(&tree, dir, &self.who(caller), MAY_EXEC) {
            self.audit_refused_lookup(&tree, dir, caller, name);
            return Err(FsError::PermissionDenied);
        }
        tree.lookup(parent, name)
            .map(|n| self.attr_of(n))
            .ok_or(FsError::NotFound)
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        self.tree()
            .get(ino)
            .map(|n| self.attr_of(n))
            .ok_or(FsError::NotFound)
    }

    /// Opens directory `ino` for listing: read permission on it, search on the directories above.
    /// Audited, allowed or not.
    pub fn opendir(&self, caller: Caller, ino: u64) -> FsResult<()> {
        let tree = self.tree();
        let Some(node) = tree.get(ino) else {
            let r = Err(FsError::NotFound);
            self.audit(Event::OpenDir, None, caller, &r);
            return r;
        };
        let result = if !matches!(node.content, Content::Dir(_)) {
            Err(FsError::NotDir)
        } else if self.allowed(&tree, node, &self.who(caller), MAY_READ) {
            Ok(())
        } else {
            Err(FsError::PermissionDenied)
        };
        if self.audit.is_some() {
            self.audit(
                Event::OpenDir,
                Some(&Self::path_of(&tree, node)),
                caller,
                &result,
            );
        }
        result
    }

    /// `access(2)` (and `chdir`): `mask` on `ino` for `caller`. Asking for write is EROFS.
    pub fn access(&self, caller: Caller, ino: u64, mask: u32) -> FsResult<()> {
        if mask & MAY_WRITE != 0 {
            return Err(FsError::ReadOnly);
        }
        let tree = self.tree();
        let node = tree.get(ino).ok_or(FsError::NotFound)?;
        if mask & 7 == 0 || self.allowed(&tree, node, &self.who(caller), mask) {
            Ok(())
        } else {
            Err(FsError::PermissionDenied)
        }
    }

    /// The entries of a directory, `.` and `..` first (on a handle [`Filesystem::opendir`] gave).
    pub fn readdir(&self, ino: u64) -> FsResult<Vec<DirEntry>> {
        let tree = self.tree();
        let node = tree.get(ino).ok_or(FsError::NotFound)?;
        let Content::Dir(children) = &node.content else {
            return Err(FsError::NotDir);
        };
        let mut out = Vec::with_capacity(children.len() + 2);
        out.push(DirEntry {
            ino,
            kind: Kind::Dir,
            name: ".".into(),
        });
        out.push(DirEntry {
            ino: node.parent,
            kind: Kind::Dir,
            name: "..".into(),
        });
        for (name, &child) in children {
            let kind = match tree.get(child).map(|n| &n.content) {
                Some(Content::Dir(_)) => Kind::Dir,
                _ => Kind::File,
            };
            out.push(DirEntry {
                ino: child,
                kind,
                name: name.clone(),
            });
        }
        Ok(out)
    }

    /// Opens a file for `caller`: any write access is refused (EROFS), reading needs read
    /// permission on the file and search permission on every directory above it. Returns the
    /// file handle. Audited, allowed or not.
    pub fn open(&self, caller: Caller, ino: u64, write: bool) -> FsResult<u64> {
        let tree = self.tree();
        let Some(node) = tree.get(ino) else {
            let r = Err(FsError::NotFound);
            self.audit(Event::Open, None, caller, &r);
            return r;
        };
        let result = if write {
            Err(FsError::ReadOnly)
        } else if !self.allowed(&tree, node, &self.who(caller), MAY_READ) {
            Err(FsError::PermissionDenied)
        } else {
            self.open_node(node)
        };
        if self.audit.is_some() {
            self.audit(
                Event::Open,
                Some(&Self::path_of(&tree, node)),
                caller,
                &result,
            );
        }
        result
    }

    fn open_node(&self, node: &Node) -> FsResult<u64> {
        let ino = node.ino;
        let handle = match &node.content {
            Content::Dir(_) => return Err(FsError::IsDir),
            Content::Bytes(b) => Handle::Bytes(b.clone()),
            Content::Copy(file) => {
                let store = self.stores.get(&file.tier).cloned().ok_or_else(|| {
                    FsError::Unavailable(format!("tier {} is not configured", file.tier))
                })?;
                let index = self.index(file)?;
                Handle::Copy(Arc::new(OpenCopy {
                    ino,
                    file: file.clone(),
                    index,
                    store,
                    seq: Mutex::default(),
                    read_upto: AtomicU64::new(0),
                }))
            }
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .expect("handle table poisoned")
            .insert(fh, handle);
        Ok(fh)
    }

    fn index(&self, file: &CopyFile) -> FsResult<Arc<BlockIndex>> {
        if let Some(i) = self
            .indexes
            .lock()
            .expect("index cache poisoned")
            .get(&file.artifact_id)
        {
            return Ok(i.clone());
        }
        let index = self
            .shared
            .catalog
            .block_index(file.artifact_id)
            .map_err(|e| {
                error!(file = %file.view_path, "cannot load the block index: {e}");
                FsError::from(e)
            })?;
        if index.raw_size() != file.raw_size {
            let msg = format!(
                "{}: block index covers {} bytes, the catalog says {}",
                file.view_path,
                index.raw_size(),
                file.raw_size
            );
            error!("{msg}");
            return Err(FsError::Integrity(msg));
        }
        let index = Arc::new(index);
        self.indexes
            .lock()
            .expect("index cache poisoned")
            .insert(file.artifact_id, index.clone());
        Ok(index)
    }

    pub fn release(&self, fh: u64) {
        if let Some(Handle::Copy(c)) = self
            .handles
            .write()
            .expect("handle table poisoned")
            .remove(&fh)
        {
            // Queued read-ahead for this handle is no longer wanted.
            c.seq
                .lock()
                .expect("sequence poisoned")
                .generation
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads up to `size` bytes at `offset`: exactly `size` unless the file ends first. A block
    /// that cannot be delivered fails the whole read (never a short read: the kernel would fill
    /// the rest of the page with zeros).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<ReadData> {
        let copy = match self.handles.read().expect("handle table poisoned").get(&fh) {
            None => return Err(FsError::BadHandle(fh)),
            Some(Handle::Bytes(b)) => {
                let start = (offset as usize).min(b.len());
                let end = (start + size as usize).min(b.len());
                return Ok(ReadData::Shared(b.clone(), start..end));
            }
            Some(Handle::Copy(c)) => c.clone(),
        };
        let total = copy.file.raw_size;
        if offset >= total || size == 0 {
            return Ok(ReadData::Owned(Vec::new()));
        }
        let end = (offset + size as u64).min(total);
        let index = &copy.index;
        let block_size = index.block_size as u64;
        let ahead = copy.seq.lock().expect("sequence poisoned").on_read(
            offset,
            end - offset,
            block_size,
            index.entries.len(),
            self.max_window,
        );
        if !ahead.is_empty() {
            self.read_ahead(&copy, ahead);
        }
        let first = index.block_of(offset);
        let last = index.block_of(end - 1);
        let key = |block| BlockKey {
            copy: copy.ino,
            block,
        };
        if first == last {
            let block = self.shared.block(&copy, first)?;
            let base = index.raw_offset(first);
            self.shared
                .cache
                .delivered(key(first), (end - offset) as usize);
            copy.note_read(offset, end);
            return Ok(ReadData::Slice(
                block,
                (offset - base) as usize..(end - base) as usize,
            ));
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for b in first..=last {
            let block = self.shared.block(&copy, b)?;
            let base = index.raw_offset(b);
            let from = offset.max(base) - base;
            let to = end.min(base + block.len() as u64) - base;
            out.extend_from_slice(&block[from as usize..to as usize]);
        }
        debug_assert_eq!(out.len() as u64, end - offset);
        // Counted only once the whole read succeeded: a failed read delivered nothing.
        for b in first..=last {
            let base = index.raw_offset(b);
            let len = index.entries[b].raw_len as u64;
            self.shared
                .cache
                .delivered(key(b), (end.min(base + len) - offset.max(base)) as usize);
        }
        copy.note_read(offset, end);
        Ok(ReadData::Owned(out))
    }

    fn read_ahead(&self, copy: &Arc<OpenCopy>, blocks: std::ops::Range<usize>) {
        let generation = copy
            .seq
            .lock()
            .expect("sequence poisoned")
            .generation
            .clone();
        let queued_at = generation.load(Ordering::Relaxed);
        if let (Some(first), Some(last)) = (
            copy.index.entries.get(blocks.start),
            copy.index.entries.get(blocks.end.saturating_sub(1)),
        ) {
            let end = last.offset + last.stored_len as u64;
            copy.store.will_read(
                &copy.file.key,
                first.offset,
                end.saturating_sub(first.offset),
            );
        }
        // Read-ahead runs on its own threads, in the span of the read that asked for it.
        let span = tracing::Span::current();
        for b in blocks {
            let (shared, copy, generation, span) = (
                self.shared.clone(),
                copy.clone(),
                generation.clone(),
                span.clone(),
            );
            self.prefetcher.submit(move || {
                let _span = span.entered();
                let key = BlockKey {
                    copy: copy.ino,
                    block: b,
                };
                let block_end = copy.index.raw_offset(b) + copy.index.entries[b].raw_len as u64;
                if generation.load(Ordering::Relaxed) != queued_at
                    || block_end <= copy.read_upto.load(Ordering::Relaxed)
                    || shared.cache.is_present_or_loading(key)
                {
                    return;
                }
                if let Err(e) = shared.block(&copy, b) {
                    // Already logged; the reader gets the error when it reaches the block.
                    debug!(file = %copy.file.view_path, block = b, "read-ahead failed: {e}");
                }
            });
        }
    }

    /// A `user.` attribute needs read permission, as the kernel has it; other names are no
    /// attribute of ours.
    pub fn getxattr(&self, caller: Caller, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        let tree = self.tree();
        let node = tree.get(ino).ok_or(FsError::NotFound)?;
        if !name.starts_with("user.") {
            return Err(FsError::NoXattr);
        }
        if !self.allowed(&tree, node, &self.who(caller), MAY_READ) {
            return Err(FsError::PermissionDenied);
        }
        let value = match (&node.content, name) {
            (Content::Copy(f), "user.tierback.sha256") => f.raw_sha256.clone(),
            (Content::Copy(f), "user.tierback.backup_id") => f.backup_id.to_string(),
            (Content::Copy(f), "user.tierback.stored_sha256") => f.stored_sha256.clone(),
            (Content::Copy(f), "user.tierback.verified_at") => {
                f.verified_at.map(rfc3339).unwrap_or_else(|| "never".into())
            }
            (Content::Copy(f), "user.tierback.tier") => f.tier.clone(),
            (Content::Copy(f), "user.tierback.pinned") => {
                (if f.pinned { "yes" } else { "no" }).into()
            }
            _ if ino == crate::inode::ROOT => {
                let s = &self.shared.stats;
                match name {
                    "user.tierback.integrity_failures" => {
                        s.integrity_failures.load(Ordering::Relaxed).to_string()
                    }
                    "user.tierback.tier_errors" => {
                        s.tier_errors.load(Ordering::Relaxed).to_string()
                    }
                    "user.tierback.cache_hits" => {
                        self.shared.cache.hits.load(Ordering::Relaxed).to_string()
                    }
                    "user.tierback.cache_misses" => {
                        self.shared.cache.misses.load(Ordering::Relaxed).to_string()
                    }
                    "user.tierback.audit_failures" => self
                        .audit
                        .as_ref()
                        .map_or(0, |a| a.log.failures())
                        .to_string(),
                    _ => return Err(FsError::NoXattr),
                }
            }
            _ => return Err(FsError::NoXattr),
        };
        Ok(value.into_bytes())
    }

    /// Attribute names, each followed by a NUL (the `listxattr(2)` format).
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let tree = self.tree();
        let node = tree.get(ino).ok_or(FsError::NotFound)?;
        let names: &[&str] = match &node.content {
            Content::Copy(_) => &COPY_XATTRS,
            _ if ino == crate::inode::ROOT => &ROOT_XATTRS,
            _ => &[],
        };
        Ok(names.iter().flat_map(|n| n.bytes().chain([0])).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inode::ROOT;
    use std::sync::atomic::AtomicI64;
    use tierback_engine::artifact::writer::{WriteOptions, write_artifact};
    use tierback_engine::catalog::ArtifactRecord;
    use tierback_engine::store::memory::MemoryStore;

    /// An in-memory catalog double.
    #[derive(Default)]
    struct FakeCatalog {
        artifacts: Mutex<Vec<ArtifactRecord>>,
        indexes: Mutex<HashMap<i64, BlockIndex>>,
        version: AtomicI64,
        marks: Mutex<Vec<(i64, String)>>,
    }

    impl CatalogSource for FakeCatalog {
        fn artifacts(&self) -> tierback_engine::Result<Vec<ArtifactRecord>> {
            Ok(self.artifacts.lock().unwrap().clone())
        }
        fn version(&self) -> tierback_engine::Result<i64> {
            Ok(self.version.load(Ordering::SeqCst))
        }
        fn block_index(&self, id: i64) -> tierback_engine::Result<BlockIndex> {
            Ok(self.indexes.lock().unwrap()[&id].clone())
        }
        fn mark_corrupt(&self, id: i64, tier: &str, _: &str) -> tierback_engine::Result<()> {
            self.marks.lock().unwrap().push((id, tier.into()));
            Ok(())
        }
    }

    const T: i64 = 1_768_564_800;
    const BS: usize = 4096;

    struct Fixture {
        fs: Filesystem,
        catalog: Arc<FakeCatalog>,
        store: Arc<MemoryStore>,
        data: Vec<u8>,
    }

    impl FakeCatalog {
        fn add(&self, store: &MemoryStore, id: i64, taken_at: i64, data: &[u8]) {
            let mut out = Vec::new();
            let w = write_artifact(
                &mut &data[..],
                &mut out,
                WriteOptions {
                    block_size: BS,
                    level: 1,
                    threads: 1,
                },
                &|_| {},
            )
            .unwrap();
            let mut rec = crate::tree::tests::record(
                id,
                "pg",
                taken_at,
                &format!("db{id}_120000.sql"),
                &["local"],
            );
            rec.raw_size = data.len() as u64;
            store.put_bytes(&rec.key, &out).unwrap();
            self.indexes.lock().unwrap().insert(id, w.index);
            self.artifacts.lock().unwrap().push(rec);
            self.version.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn fixture(cache_bytes: usize) -> Fixture {
        fixture_modes(cache_bytes, 0o444, 0o555)
    }

    fn fixture_modes(cache_bytes: usize, file_mode: u16, dir_mode: u16) -> Fixture {
        let data: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("{i},").into_bytes())
            .collect();
        let catalog = Arc::new(FakeCatalog::default());
        let store = Arc::new(MemoryStore::new("local"));
        catalog.add(&store, 1, T, &data);
        let mut stores: HashMap<String, Arc<dyn Store>> = HashMap::new();
        stores.insert("local".into(), store.clone());
        let fs = Filesystem::new(
            catalog.clone(),
            vec!["local".into()],
            stores,
            Settings {
                uid: 10,
                gid: 20,
                file_mode,
                dir_mode,
                cache_bytes,
                readahead_threads: 2,
            },
        )
        .unwrap();
        Fixture {
            fs,
            catalog,
            store,
            data,
        }
    }

    /// The mounting user (root), whom every mode lets in.
    const ME: Caller = Caller {
        uid: 0,
        gid: 0,
        pid: 0,
    };

    fn resolve_as(fs: &Filesystem, caller: Caller, path: &str) -> FsResult<Attr> {
        let mut attr = fs.getattr(ROOT)?;
        for part in path.split('/') {
            attr = fs.lookup(caller, attr.ino, part)?;
        }
        Ok(attr)
    }

    fn resolve(fs: &Filesystem, path: &str) -> FsResult<Attr> {
        resolve_as(fs, ME, path)
    }

    fn read_all(fs: &Filesystem, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        fs.read(fh, offset, size).map(|d| d.as_slice().to_vec())
    }

    #[test]
    fn attributes_and_listing() {
        let f = fixture(1 << 20);
        let a = resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
        assert_eq!(a.size, f.data.len() as u64);
        assert_eq!((a.perm, a.uid, a.gid, a.mtime), (0o444, 10, 20, T));
        let dir = resolve(&f.fs, "pg/local/2026-01-16").unwrap();
        assert_eq!((dir.kind, dir.perm), (Kind::Dir, 0o555));
        let names: Vec<_> =
            f.fs.readdir(dir.ino)
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
        assert_eq!(
            names,
            [
                ".",
                "..",
                "db1_120000.sql",
                "db1_120000.sql.sha256",
                "metadata.json"
            ]
        );
        assert_eq!(f.fs.lookup(ME, dir.ino, "nope"), Err(FsError::NotFound));
        assert_eq!(f.fs.lookup(ME, a.ino, "x"), Err(FsError::NotDir));
        assert_eq!(f.fs.open(ME, a.ino, true), Err(FsError::ReadOnly));
        assert_eq!(f.fs.open(ME, dir.ino, false), Err(FsError::IsDir));
        assert_eq!(
            f.fs.getxattr(ME, a.ino, "user.tierback.tier").unwrap(),
            b"local"
        );
        assert_eq!(
            f.fs.getxattr(ME, a.ino, "user.other"),
            Err(FsError::NoXattr)
        );
        assert_eq!(
            f.fs.getxattr(ME, a.ino, "user.tierback.pinned").unwrap(),
            b"no"
        );
        let list = f.fs.listxattr(a.ino).unwrap();
        assert_eq!(list.iter().filter(|&&b| b == 0).count(), 6);
        assert!(f.fs.statfs().blocks >= f.data.len() as u64 / 4096);
    }

    #[test]
    fn reads_at_any_offset_equal_the_source() {
        let f = fixture(64 << 10);
        let a = resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
        let fh = f.fs.open(ME, a.ino, false).unwrap();
        let n = f.data.len() as u64;
        let mut x = 12345u64;
        let mut offsets = vec![
            0,
            BS as u64 - 1,
            BS as u64,
            3 * BS as u64 - 7,
            n - 1,
            n - 10,
            n,
            n + 5,
        ];
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            offsets.push(x % n);
        }
        for (i, &off) in offsets.iter().enumerate() {
            let size = [1u32, 100, 4096, 10_000, 70_000][i % 5];
            let got = read_all(&f.fs, fh, off, size).unwrap();
            let s = (off.min(n)) as usize;
            let e = ((off + size as u64).min(n)) as usize;
            assert_eq!(got, &f.data[s..e], "read of {size} at {off}");
        }
        // Sequential whole-file read in kernel-sized chunks.
        let mut all = Vec::new();
        while (all.len() as u64) < n {
            all.extend(read_all(&f.fs, fh, all.len() as u64, 128 << 10).unwrap());
        }
        assert_eq!(all, f.data);
        assert!(f.fs.shared.cache.bytes() <= 64 << 10);
        f.fs.release(fh);
        assert_eq!(f.fs.read(fh, 0, 1).err(), Some(FsError::BadHandle(fh)));
    }

    #[test]
    fn corrupt_block_fails_only_reads_touching_it() {
        let f = fixture(1 << 20);
        let key = f.catalog.artifacts.lock().unwrap()[0].key.clone();
        let entry = f.catalog.indexes.lock().unwrap()[&1].entries[5];
        f.store
            .corrupt(&key, (entry.offset + entry.stored_len as u64 / 2) as usize);
        let a = resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
        let fh = f.fs.open(ME, a.ino, false).unwrap();
        let b5 = 5 * BS as u64;
        assert!(matches!(
            f.fs.read(fh, b5 + 10, 10),
            Err(FsError::Integrity(_))
        ));
        assert!(matches!(
            f.fs.read(fh, b5 - 10, 20),
            Err(FsError::Integrity(_))
        ));
        assert_eq!(
            read_all(&f.fs, fh, b5 - 10, 10).unwrap(),
            &f.data[b5 as usize - 10..b5 as usize]
        );
        let b6 = 6 * BS;
        assert_eq!(
            read_all(&f.fs, fh, b6 as u64, 10).unwrap(),
            &f.data[b6..b6 + 10]
        );
        assert!(f.fs.stats().integrity_failures.load(Ordering::Relaxed) >= 2);
        assert_eq!(
            *f.catalog.marks.lock().unwrap(),
            vec![(1, "local".to_string())],
            "marked once"
        );
    }

    #[test]
    fn refresh_shows_new_backups_and_keeps_inodes() {
        let f = fixture(1 << 20);
        let before = resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
        assert!(!f.fs.refresh_if_changed().unwrap(), "nothing changed");
        assert!(resolve(&f.fs, "pg/local/2026-01-17/db2_120000.sql").is_err());
        f.catalog.add(&f.store, 2, T + 86_400, b"new backup\n");
        assert!(f.fs.refresh_if_changed().unwrap());
        let new = resolve(&f.fs, "pg/local/2026-01-17/db2_120000.sql").unwrap();
        let fh = f.fs.open(ME, new.ino, false).unwrap();
        assert_eq!(read_all(&f.fs, fh, 0, 100).unwrap(), b"new backup\n");
        assert_eq!(
            resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap(),
            before
        );
        // A pruned backup disappears.
        f.catalog.artifacts.lock().unwrap().retain(|a| a.id != 1);
        f.catalog.version.fetch_add(1, Ordering::SeqCst);
        f.fs.refresh_if_changed().unwrap();
        assert_eq!(
            resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql"),
            Err(FsError::NotFound)
        );
        // The sidecar checks out against the data.
        let sha = resolve(&f.fs, "pg/local/2026-01-17/db2_120000.sql.sha256").unwrap();
        let fh = f.fs.open(ME, sha.ino, false).unwrap();
        let line = read_all(&f.fs, fh, 0, 4096).unwrap();
        assert!(line.ends_with(b"  db2_120000.sql\n"));
    }

    #[test]
    fn permits_is_the_kernels_generic_check() {
        let file = |perm| Attr {
            ino: 5,
            kind: Kind::File,
            size: 1,
            mtime: 0,
            perm,
            nlink: 1,
            uid: 10,
            gid: 20,
        };
        let dir = |perm| Attr {
            kind: Kind::Dir,
            ..file(perm)
        };
        let no = |_| false;
        let yes = |_| true;
        let unasked = |_: u32| -> bool { panic!("groups read although they cannot matter") };
        let f = file(0o440);
        // Owner, primary group, supplementary group, others.
        assert!(permits(&f, 10, 99, no, MAY_READ));
        assert!(!permits(&f, 10, 99, no, MAY_EXEC));
        assert!(!permits(&f, 10, 99, no, MAY_WRITE));
        assert!(permits(&f, 11, 20, no, MAY_READ));
        assert!(permits(&f, 12, 12, yes, MAY_READ));
        assert!(!permits(&f, 12, 12, yes, MAY_READ | MAY_WRITE));
        assert!(!permits(&f, 13, 13, no, MAY_READ));
        // Root reads anything, searches any directory, executes only what someone may.
        assert!(permits(&f, 0, 0, unasked, MAY_READ));
        assert!(!permits(&f, 0, 0, no, MAY_EXEC));
        assert!(permits(&file(0o550), 0, 0, unasked, MAY_EXEC));
        assert!(permits(&dir(0o000), 0, 0, unasked, MAY_READ | MAY_EXEC));
        assert!(!permits(&dir(0o000), 0, 0, no, MAY_WRITE));
        // Only the caller's own class counts, even when another class would allow more.
        assert!(!permits(&file(0o070), 10, 20, yes, MAY_READ), "owner");
        assert!(permits(&file(0o070), 11, 20, no, MAY_READ));
        assert!(!permits(&file(0o407), 12, 12, yes, MAY_READ), "group");
        assert!(permits(&file(0o407), 13, 13, no, MAY_READ), "others");
        // Group bits equal to the others' bits: membership cannot matter, so it is not read.
        assert!(permits(&file(0o444), 13, 13, unasked, MAY_READ));
        assert!(!permits(&dir(0o500), 13, 13, unasked, MAY_EXEC));
        assert!(!permits(&dir(0o550), 13, 13, no, MAY_EXEC));
        assert!(permits(&dir(0o550), 13, 13, yes, MAY_EXEC));
    }

    /// A fake system: supplementary groups by pid, user names by uid, command `cmd<pid>`.
    #[derive(Default)]
    struct FakeIds {
        groups: HashMap<u32, Vec<u32>>,
        names: HashMap<u32, &'static str>,
        group_reads: AtomicU64,
    }

    impl Identities for FakeIds {
        fn groups(&self, pid: u32) -> Option<Vec<u32>> {
            self.group_reads.fetch_add(1, Ordering::SeqCst);
            self.groups.get(&pid).cloned()
        }
        fn command(&self, pid: u32) -> Option<String> {
            Some(format!("cmd{pid}"))
        }
        fn user_name(&self, uid: u32) -> Option<String> {
            self.names.get(&uid).map(|n| n.to_string())
        }
    }

    const OWNER: Caller = Caller {
        uid: 10,
        gid: 99,
        pid: 100,
    };
    /// The mount's group (20) is this caller's primary group.
    const PRIMARY: Caller = Caller {
        uid: 11,
        gid: 20,
        pid: 101,
    };
    /// The mount's group is one of this caller's supplementary groups.
    const MEMBER: Caller = Caller {
        uid: 12,
        gid: 12,
        pid: 102,
    };
    const OUTSIDER: Caller = Caller {
        uid: 13,
        gid: 13,
        pid: 103,
    };
    const ROOT_CALLER: Caller = Caller {
        uid: 0,
        gid: 0,
        pid: 104,
    };

    #[test]
    fn modes_decide_who_reads_and_every_attempt_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("audit.jsonl");
        let ids = Arc::new(FakeIds {
            groups: HashMap::from([(102, vec![7, 20]), (103, vec![7]), (1102, vec![7])]),
            names: HashMap::from([(10, "owner"), (12, "member"), (13, "outsider"), (0, "root")]),
            ..FakeIds::default()
        });
        let f = fixture_modes(1 << 20, 0o440, 0o550);
        let fs =
            f.fs.with_identities(ids.clone())
                .with_audit_log(AuditLog::open(&log_path).unwrap());
        let rel = "pg/local/2026-01-16/db1_120000.sql";
        let file = resolve(&fs, rel).unwrap();
        let day = resolve(&fs, "pg/local/2026-01-16").unwrap();
        let sha = resolve(&fs, &format!("{rel}.sha256")).unwrap();
        let denied = Some(FsError::PermissionDenied);

        // Outside the group: no search in the root, no listing, no open even of an inode the
        // kernel has cached for someone else, no access(2), no user. attributes; stat still works.
        assert_eq!(resolve_as(&fs, OUTSIDER, rel).err(), denied);
        assert_eq!(
            fs.lookup(OUTSIDER, ROOT, "pg").err(),
            denied,
            "echo of one attempt"
        );
        assert_eq!(
            fs.lookup(OUTSIDER, ROOT, "nope").err(),
            denied,
            "EACCES, not ENOENT"
        );
        assert_eq!(fs.opendir(OUTSIDER, ROOT).err(), denied);
        assert_eq!(fs.open(OUTSIDER, file.ino, false).err(), denied);
        assert_eq!(fs.open(OUTSIDER, file.ino, true), Err(FsError::ReadOnly));
        assert_eq!(fs.access(OUTSIDER, file.ino, MAY_READ).err(), denied);
        assert_eq!(fs.access(OUTSIDER, day.ino, MAY_EXEC).err(), denied);
        assert_eq!(fs.access(OUTSIDER, file.ino, 0), Ok(()));
        assert_eq!(
            fs.access(OUTSIDER, file.ino, MAY_WRITE),
            Err(FsError::ReadOnly)
        );
        assert_eq!(
            fs.getxattr(OUTSIDER, ROOT, "user.tierback.cache_hits")
                .err(),
            denied
        );
        assert_eq!(fs.getattr(file.ino).unwrap().perm, 0o440);
        assert_eq!(FsError::PermissionDenied.errno(), libc::EACCES);
        assert!(!fs.names_cacheable(), "0550: a walk may be refused");
        assert!(
            fixture(1 << 20).fs.names_cacheable(),
            "0555: no walk is refused"
        );

        // In the group as a supplementary group: walks, lists and reads the exact bytes.
        let a = resolve_as(&fs, MEMBER, rel).unwrap();
        let fh = fs.open(MEMBER, a.ino, false).unwrap();
        assert_eq!(read_all(&fs, fh, 0, 1 << 20).unwrap(), f.data);
        fs.release(fh);
        assert_eq!(fs.opendir(MEMBER, day.ino), Ok(()));
        assert_eq!(fs.access(MEMBER, day.ino, MAY_READ | MAY_EXEC), Ok(()));
        assert_eq!(fs.access(MEMBER, file.ino, MAY_EXEC).err(), denied, "0440");
        fs.open(MEMBER, sha.ino, false).unwrap();
        // Primary group, owner and root read; a caller whose groups cannot be read gets none.
        fs.open(PRIMARY, file.ino, false).unwrap();
        fs.open(OWNER, file.ino, false).unwrap();
        let reads = ids.group_reads.load(Ordering::SeqCst);
        fs.open(ROOT_CALLER, file.ino, false).unwrap();
        assert_eq!(
            ids.group_reads.load(Ordering::SeqCst),
            reads,
            "root needs no groups"
        );
        assert_eq!(fs.access(ROOT_CALLER, file.ino, MAY_EXEC).err(), denied);
        let gone = Caller { pid: 999, ..MEMBER };
        assert_eq!(fs.open(gone, file.ino, false).err(), denied);
        // Another process of the same user is another attempt.
        let other = Caller {
            pid: 1102,
            ..OUTSIDER
        };
        assert_eq!(fs.lookup(other, ROOT, "pg").err(), denied);

        let text = std::fs::read_to_string(&log_path).unwrap();
        let got: Vec<(String, String, u64, String, String, String)> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| match &v[k] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert_eq!(v["command"], format!("cmd{}", v["pid"]), "{l}");
                assert!(v["time"].as_str().unwrap().ends_with('Z'));
                let outcome = match v.get("reason") {
                    Some(r) => format!("{} ({})", s("outcome"), r.as_str().unwrap()),
                    None => s("outcome"),
                };
                (
                    s("event"),
                    s("path"),
                    v["uid"].as_u64().unwrap(),
                    s("user"),
                    outcome,
                    s("pid"),
                )
            })
            .collect();
        let refused = "refused (permission denied)";
        let sha_rel = format!("{rel}.sha256");
        let want: Vec<(&str, &str, u64, &str, &str, &str)> = vec![
            ("lookup", "pg", 13, "outsider", refused, "103"),
            ("lookup", "nope", 13, "outsider", refused, "103"),
            ("opendir", ".", 13, "outsider", refused, "103"),
            ("open", rel, 13, "outsider", refused, "103"),
            (
                "open",
                rel,
                13,
                "outsider",
                "refused (read-only file system)",
                "103",
            ),
            ("open", rel, 12, "member", "allowed", "102"),
            (
                "opendir",
                "pg/local/2026-01-16",
                12,
                "member",
                "allowed",
                "102",
            ),
            ("open", &sha_rel, 12, "member", "allowed", "102"),
            ("open", rel, 11, "null", "allowed", "101"),
            ("open", rel, 10, "owner", "allowed", "100"),
            ("open", rel, 0, "root", "allowed", "104"),
            ("open", rel, 12, "member", refused, "999"),
            ("lookup", "pg", 13, "outsider", refused, "1102"),
        ];
        let want: Vec<_> = want
            .into_iter()
            .map(|(e, p, u, n, o, pid)| (e.into(), p.into(), u, n.into(), o.into(), pid.into()))
            .collect();
        assert_eq!(got, want, "{text}");
        assert_eq!(
            fs.getxattr(ME, ROOT, "user.tierback.audit_failures")
                .unwrap(),
            b"0"
        );
    }

    #[test]
    fn a_failing_audit_log_never_fails_a_read_and_is_counted() {
        let f = fixture(1 << 20);
        let fs =
            f.fs.with_audit_log(AuditLog::open(std::path::Path::new("/dev/full")).unwrap());
        let a = resolve(&fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
        let fh = fs.open(ME, a.ino, false).unwrap();
        assert_eq!(read_all(&fs, fh, 0, 10).unwrap(), &f.data[..10]);
        fs.opendir(ME, ROOT).unwrap();
        assert_eq!(
            fs.getxattr(ME, ROOT, "user.tierback.audit_failures")
                .unwrap(),
            b"2"
        );
        let names = fs.listxattr(ROOT).unwrap();
        assert!(
            String::from_utf8(names)
                .unwrap()
                .contains("user.tierback.audit_failures\0")
        );
    }
}
