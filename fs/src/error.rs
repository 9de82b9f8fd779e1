//! Every failure the filesystem core can report, and the one place where each becomes an errno.
//! Variants carry the cause as text (they are cloned to every reader waiting on a shared block
//! load); the cause is logged once, where the error is created, never replaced by a bare EIO.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// No such name in a directory, or an inode that no longer exists (pruned).
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    /// The caller's uid and groups do not give it the access asked for (the mount checks
    /// owner, group and mode itself, so that refusals reach the audit log).
    #[error("permission denied")]
    PermissionDenied,
    /// Any attempt to change the view: it shows backups, which are immutable.
    #[error("read-only file system")]
    ReadOnly,
    /// A file handle the kernel should not have: a bug or a handle from before a remount.
    #[error("unknown file handle {0}")]
    BadHandle(u64),
    /// A block whose bytes do not match the catalog's index: never hand them out.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// The tier or catalog could not deliver (missing object, I/O error, timeout).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No extended attribute of that name.
    #[error("no such attribute")]
    NoXattr,
    /// The caller's buffer is too small for an attribute value or list.
    #[error("buffer too small")]
    Range,
}

impl FsError {
    /// The errno the kernel passes on to the application.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::PermissionDenied => libc::EACCES,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::BadHandle(_) => libc::EBADF,
            // Both mean "these bytes cannot be delivered"; EIO is what cp, tar and psql report.
            FsError::Integrity(_) | FsError::Unavailable(_) => libc::EIO,
            FsError::NoXattr => libc::ENODATA,
            FsError::Range => libc::ERANGE,
        }
    }
}

impl From<tierback_engine::Error> for FsError {
    fn from(e: tierback_engine::Error) -> Self {
        match e {
            tierback_engine::Error::Integrity { .. } => FsError::Integrity(e.to_string()),
            other => FsError::Unavailable(other.to_string()),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_and_unavailable_are_eio_writes_are_erofs() {
        assert_eq!(FsError::Integrity("x".into()).errno(), libc::EIO);
        assert_eq!(FsError::Unavailable("x".into()).errno(), libc::EIO);
        assert_eq!(FsError::ReadOnly.errno(), libc::EROFS);
        let e: FsError = tierback_engine::Error::integrity("f", Some(3), "bad").into();
        assert!(
            matches!(e, FsError::Integrity(ref m) if m.contains("block 3")),
            "{e}"
        );
    }
}
