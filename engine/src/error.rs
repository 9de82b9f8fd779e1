//! Typed errors with the context an operator needs: which file, which line, which block, which
//! service. Secrets never appear here: [`crate::secret::Secret`] has no `Display`.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad or missing configuration; `message` names the key and line where known.
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },

    /// A secret reference that could not be resolved (the reference, never the value).
    #[error("secret {reference}: {message}")]
    Secret { reference: String, message: String },

    /// An object is absent from a tier.
    #[error("tier {tier}: {key}: not found")]
    NotFound { tier: String, key: String },

    /// Stored bytes do not match what the catalog recorded: never hand them out.
    #[error("integrity check failed: {file}{}: {reason}", block.map(|b| format!(": block {b}")).unwrap_or_default())]
    Integrity {
        file: String,
        block: Option<u64>,
        reason: String,
    },

    /// A source (dump command, tar of paths, …) failed; `stderr_tail` is its last output.
    #[error("service {service}: {message}{}", tail_suffix(stderr_tail))]
    Source {
        service: String,
        message: String,
        stderr_tail: String,
    },

    /// Another process holds the service's lock.
    #[error("service {service} is being backed up by another process (lock {path})")]
    Locked { service: String, path: PathBuf },

    #[error("catalog {path}: {}", explain_catalog(path, source))]
    Catalog {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A request that names something that does not exist or makes no sense.
    #[error("{0}")]
    Invalid(String),
}

/// SQLite's own words ("unable to open database file: Error code 14", "disk I/O error") do not
/// say what to fix: say it, from what the catalog's directory looks like, then add theirs.
fn explain_catalog(path: &std::path::Path, e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let why = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => {
            Some(format!("the file system holding {} is full", dir.display()))
        }
        Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::CannotOpen)
        | Some(ErrorCode::SystemIoFailure) => {
            if path.exists() && !crate::fsutil::readable(path) {
                Some(format!(
                    "not readable by this user (uid {}): the catalog is owner-only",
                    // SAFETY: getuid cannot fail.
                    unsafe { libc::getuid() }
                ))
            } else if crate::fsutil::free_bytes(dir) == Some(0) {
                Some(format!("the file system holding {} is full", dir.display()))
            } else if !crate::fsutil::writable(dir) {
                Some(format!(
                    "{} is not writable (a read-only file system, or missing permission)",
                    dir.display()
                ))
            } else if e.sqlite_error_code() == Some(ErrorCode::CannotOpen) {
                Some("cannot open or create the database file".to_owned())
            } else {
                None
            }
        }
        Some(ErrorCode::NotADatabase) => {
            Some("not a tierback catalog (damaged, or another file)".to_owned())
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            Some("another tierback process has held it for over 30 s".to_owned())
        }
        _ => None,
    };
    match why {
        Some(why) => format!("{why} ({e})"),
        None => e.to_string(),
    }
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- stderr (last lines) ---\n{}", tail.trim_end())
    }
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A source's own failure, with no stderr to show (an API's answer, a path, a check).
    pub fn source(service: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Source {
            service: service.into(),
            message: message.into(),
            stderr_tail: String::new(),
        }
    }

    pub fn integrity(
        file: impl Into<String>,
        block: Option<u64>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Integrity {
            file: file.into(),
            block,
            reason: reason.into(),
        }
    }

    /// True when retrying later may succeed (used by sync and remote reads).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Io { source, .. } if matches!(source.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionRefused |
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::Interrupted))
    }
}

/// Adds a context string to `std::io::Result`s.
pub trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::io(context(), source))
    }
}
