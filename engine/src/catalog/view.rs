//! Queries the read-only mount needs: a cheap "has anything changed?" probe, so the mount can poll
//! every second without re-reading the whole catalog.

use super::Catalog;
use crate::Result;

impl Catalog {
    /// SQLite's `PRAGMA data_version`: a number that changes whenever *another* connection
    /// commits to the database (a backup, a verification, a prune). Costs no table read, so a
    /// mount can poll it every second.
    pub fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_version_moves_on_foreign_commits_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = Catalog::open(&path).unwrap();
        let reader = Catalog::open_read_only(&path).unwrap();
        let v0 = reader.data_version().unwrap();
        assert_eq!(reader.data_version().unwrap(), v0, "no commit, no change");
        writer
            .begin_run("svc", crate::catalog::RunKind::Backup)
            .unwrap();
        assert_ne!(
            reader.data_version().unwrap(),
            v0,
            "a commit elsewhere shows"
        );
    }
}
