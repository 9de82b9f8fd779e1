//! Path walks and directory listings: `lookup`, `opendir`, `access` and `readdir`.

use super::{Attr, DirEntry, Filesystem, Kind, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::audit::{Caller, Event};
use crate::error::{FsError, FsResult};
use crate::tree::Content;

impl Filesystem {
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
}
