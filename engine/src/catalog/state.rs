//! The states and kinds the catalog records, as enums. Each is stored as the same text the
//! catalog has always held (`'present'`, `'ok'`, `'sync-job'`, …), so catalogs written before
//! these types existed open unchanged, and serializes to that text in JSON output.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Serialize, Serializer};

macro_rules! stored_enum {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal {
            $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The text the catalog stores.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value the catalog's `text` stands for, if any.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {} {text:?}", $what).into())
                })
            }
        }
    };
}

stored_enum!(
    /// What a tier holds of an artifact (`copies.state`).
    CopyState, "copy state" {
        /// Stored whole; readable.
        Present = "present",
        /// Its latest check failed.
        Corrupt = "corrupt",
        /// Being deleted by prune: a tombstone the next prune finishes, never read.
        Missing = "missing",
    }
);

stored_enum!(
    /// How a run ended, or that it has not (`runs.status`).
    RunStatus, "run status" {
        Running = "running",
        Ok = "ok",
        Failed = "failed",
        /// Its process died before finishing (reaped by a later command).
        Interrupted = "interrupted",
    }
);

impl RunStatus {
    /// How a run that has ended went.
    pub fn ended(ok: bool) -> RunStatus {
        if ok { RunStatus::Ok } else { RunStatus::Failed }
    }
}

stored_enum!(
    /// What a run did (`runs.kind`). Its `service` column names a service, a tier (for
    /// [`RunKind::Sync`] and [`RunKind::VerifyTier`]) or [`super::ALL_SERVICES`] for the jobs.
    RunKind, "run kind" {
        /// One service's backup.
        Backup = "backup",
        /// One tier's sync.
        Sync = "sync",
        /// `run`'s sync of every tier that is due.
        SyncJob = "sync-job",
        Prune = "prune",
        /// One service's copies checked by `verify`.
        Verify = "verify",
        /// One tier's share of scheduled verification.
        VerifyTier = "verify-tier",
        /// Verification as one job, as versions before per-tier schedules recorded it: only read.
        VerifyJob = "verify-job",
        /// One service's restore test.
        RestoreTest = "restore-test",
        /// `run`'s restore test of every service.
        RestoreTestJob = "restore-test-job",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_round_trips() {
        for s in [CopyState::Present, CopyState::Corrupt, CopyState::Missing] {
            assert_eq!(CopyState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RunKind::parse("sync-job"), Some(RunKind::SyncJob));
        assert_eq!(RunStatus::Interrupted.to_string(), "interrupted");
        assert_eq!(RunKind::parse("*"), None);
        assert_eq!(
            serde_json::to_string(&RunKind::RestoreTestJob).unwrap(),
            "\"restore-test-job\""
        );
    }
}
