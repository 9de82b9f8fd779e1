//! Extended attributes: a backup file's hashes, backup id, tier, last verification and pin;
//! the root's counters.

use std::sync::atomic::Ordering;

use tierback_engine::layout::rfc3339;

use super::{Filesystem, MAY_READ};
use crate::audit::Caller;
use crate::error::{FsError, FsResult};
use crate::tree::Content;

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

impl Filesystem {
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
            (Content::Copy(f), "user.tierback.tier") => f.tier.to_string(),
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
}
