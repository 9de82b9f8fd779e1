//! Tiers as object stores: put a complete file, get a byte range, head, list, delete.
//!
//! Keys are relative paths with the same layout on every tier
//! (`<service>/<YYYY-MM-DD>/<name>_<HHMMSS>.<ext>.gz` and its sidecars). Every implementation
//! passes [`conformance::run`]. Cross-cutting behaviour (fault injection, later retry) wraps the
//! trait instead of living in each backend.

pub mod conformance;
pub mod faulty;
pub mod local;
pub mod memory;
pub mod rclone;
pub mod rclone_cmd;
pub mod rclone_serve;
pub mod retry;
pub mod s3;
pub mod s3_policy;

use std::path::Path;
use std::sync::Arc;

use crate::Result;

/// What a listing or `head` knows about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

pub trait Store: Send + Sync {
    /// The tier's name, for messages.
    fn name(&self) -> &str;

    /// Stores the complete file at `src` under `key`, atomically: readers see either no object
    /// or the whole new one, never a prefix. Replaces an existing object.
    fn put_file(&self, key: &str, src: &Path) -> Result<()>;

    /// Stores `bytes` under `key`, atomically like [`Store::put_file`].
    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()>;

    /// Reads `len` bytes at `offset`. A missing object is [`crate::Error::NotFound`]; a range
    /// past the end is an error, not a short read.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// The object's size, or `None` if absent.
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Removes the object; removing an absent object succeeds.
    fn delete(&self, key: &str) -> Result<()>;

    /// Removes what uploads interrupted by a dead process left on the tier (staging files,
    /// unfinished multipart uploads); returns how many. Sync calls it with the tier's lock held,
    /// so no live upload of this host is touched.
    fn clean_staging(&self) -> Result<usize> {
        Ok(0)
    }

    /// Drops whatever bytes of `key` a caching wrapper holds, because they failed a check: the
    /// next read fetches them again (a copy repaired by `sync` then reads correctly). Stores
    /// that cache nothing have nothing to do.
    fn forget(&self, _key: &str) {}

    /// A hint that `len` bytes at `offset` will be read soon (a sequential reader's read-ahead):
    /// a store that can start fetching them without blocking the caller does (the local tier
    /// asks the kernel to read them into the page cache). Nothing is promised or returned.
    fn will_read(&self, _key: &str, _offset: u64, _len: u64) {}

    /// Whether a copy on this tier is the artifact's decompressed stream (a restic tier)
    /// rather than its blocked-gzip file: reads then check each block's bytes against its raw
    /// SHA-256 instead of inflating a member.
    fn holds_decompressed(&self) -> bool {
        false
    }

    /// Reads a whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let meta = self.head(key)?.ok_or_else(|| crate::Error::NotFound {
            tier: self.name().to_owned(),
            key: key.to_owned(),
        })?;
        self.get_range(key, 0, meta.size)
    }
}

/// Rejects keys that could escape a tier's root.
pub fn check_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\0')
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(crate::Error::Invalid(format!("invalid object key {key:?}")))
    } else {
        Ok(())
    }
}

/// Opens the store behind a configured tier. Remote stores are opened once per process and
/// shared: a `run` that syncs, verifies and prunes the offsite tier starts one rclone server
/// (and builds one S3 client), not one per step.
pub fn open_tier(tier: &crate::config::TierConfig) -> Result<Box<dyn Store>> {
    use crate::config::TierKind;
    type Shared = std::sync::Mutex<std::collections::HashMap<String, Arc<dyn Store>>>;
    static OPEN: std::sync::OnceLock<Shared> = std::sync::OnceLock::new();
    if let TierKind::Local { path, group, mode } = &tier.kind {
        return Ok(Box::new(local::LocalStore::open_with_access(
            tier.name.as_str(),
            path,
            group.as_deref(),
            *mode,
        )?));
    }
    // The whole definition is the key: tests open several configs in one process.
    let key = format!("{}\0{:?}", tier.name, tier.kind);
    let mut open = OPEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(store) = open.get(&key) {
        return Ok(Box::new(Arc::clone(store)));
    }
    let store: Arc<dyn Store> = match &tier.kind {
        TierKind::S3 { .. } => Arc::new(s3::S3Store::open(tier)?),
        TierKind::Restic { .. } => Arc::new(crate::restic::ResticStore::new(
            crate::restic::ResticTier::open(tier)?,
        )),
        _ => Arc::new(rclone::RcloneStore::open(tier)?),
    };
    open.insert(key, Arc::clone(&store));
    Ok(Box::new(store))
}

/// A boxed or shared store is a store, so wrappers such as [`retry::RetryStore`] take any tier.
/// Every method is forwarded, default ones too: relying on a default would drop the inner
/// store's own version (`conformance::forwards_every_method` checks each wrapper).
macro_rules! forward_store {
    ($($wrapper:ident),*) => {$(
        impl<S: Store + ?Sized> Store for $wrapper<S> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn put_file(&self, key: &str, src: &Path) -> Result<()> {
                (**self).put_file(key, src)
            }
            fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
                (**self).put_bytes(key, bytes)
            }
            fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
                (**self).get_range(key, offset, len)
            }
            fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
                (**self).head(key)
            }
            fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
                (**self).list(prefix)
            }
            fn delete(&self, key: &str) -> Result<()> {
                (**self).delete(key)
            }
            fn forget(&self, key: &str) {
                (**self).forget(key)
            }
            fn will_read(&self, key: &str, offset: u64, len: u64) {
                (**self).will_read(key, offset, len)
            }
            fn holds_decompressed(&self) -> bool {
                (**self).holds_decompressed()
            }
            fn clean_staging(&self) -> Result<usize> {
                (**self).clean_staging()
            }
            fn get(&self, key: &str) -> Result<Vec<u8>> {
                (**self).get(key)
            }
        }
    )*};
}
forward_store!(Box, Arc);
