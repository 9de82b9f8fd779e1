//! Who may do what: the kernel's permission check applied here (the mount has no
//! `default_permissions`), and the audit log of opens, directory reads and refused walks.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Attr, Filesystem, Kind};
use crate::audit::{AuditLog, Caller, Entry, Event, Identities, Outcome};
use crate::error::{FsError, FsResult};
use crate::tree::{Content, Node, Tree};

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
pub(super) struct Who<'a> {
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

/// The audit log and what it needs to name a caller.
pub(super) struct Audit {
    pub(super) log: AuditLog,
    /// Refused lookups recently logged: (pid, parent, name, when).
    pub(super) recent_refusals: Mutex<Vec<(u32, u64, String, Instant)>>,
}

impl Filesystem {
    pub(super) fn who(&self, caller: Caller) -> Who<'_> {
        Who {
            caller,
            ids: self.identities.as_ref(),
            groups: OnceLock::new(),
        }
    }

    /// True if `who` may do `mask` on `node` and search every directory above it.
    pub(super) fn allowed(&self, tree: &Tree, node: &Node, who: &Who, mask: u32) -> bool {
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
    pub(super) fn path_of(tree: &Tree, node: &Node) -> String {
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
    pub(super) fn audit<T>(
        &self,
        event: Event,
        path: Option<&str>,
        caller: Caller,
        result: &FsResult<T>,
    ) {
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
    pub(super) fn audit_refused_lookup(&self, tree: &Tree, dir: &Node, caller: Caller, name: &str) {
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
}
