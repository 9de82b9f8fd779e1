//! The run history: one row per backup, sync, prune or verify run, its outcome and the dump
//! tool's stderr tail; runs whose process died are reaped as interrupted.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{Catalog, RunKind, RunRecord, RunStatus};
use crate::Result;
use crate::clock::now;
use crate::id::RunId;

impl Catalog {
    /// Records that a run of `kind` for `service` (a service, a tier, or
    /// [`super::ALL_SERVICES`]) started now, in this process.
    pub fn begin_run(&self, service: &str, kind: RunKind) -> Result<RunId> {
        self.conn
            .execute(
                "INSERT INTO runs (service, kind, started_at, status, pid) VALUES (?1, ?2, ?3, 'running', ?4)",
                params![service, kind, now(), std::process::id()],
            )
            .map_err(|e| self.err(e))?;
        Ok(RunId::new(self.conn.last_insert_rowid()))
    }

    pub fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        error: Option<&str>,
        stderr_tail: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, error = ?4, stderr_tail = ?5 WHERE id = ?1",
                params![run, now(), status, error, stderr_tail],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records how many bytes a run moved (sync uploads).
    pub fn set_run_bytes(&self, run: RunId, bytes: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET bytes = ?2 WHERE id = ?1",
                params![run, bytes as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The newest run of `kind` for `service` (a service, a tier for syncs, `*` for others).
    pub fn last_run(
        &self,
        service: &str,
        kind: RunKind,
    ) -> Result<Option<(RunRecord, Option<u64>)>> {
        self.last_run_where(service, kind, "")
    }

    /// The newest run of `kind` for `service` that has ended (metrics report outcomes, and a run
    /// in progress has none yet).
    pub fn last_finished_run(
        &self,
        service: &str,
        kind: RunKind,
    ) -> Result<Option<(RunRecord, Option<u64>)>> {
        self.last_run_where(service, kind, "AND status != 'running'")
    }

    /// The newest run of `kind` for `service` that succeeded (a failed sync is retried at the
    /// next run, not at the next slot of its schedule).
    pub fn last_ok_run(
        &self,
        service: &str,
        kind: RunKind,
    ) -> Result<Option<(RunRecord, Option<u64>)>> {
        self.last_run_where(service, kind, "AND status = 'ok'")
    }

    fn last_run_where(
        &self,
        service: &str,
        kind: RunKind,
        filter: &str,
    ) -> Result<Option<(RunRecord, Option<u64>)>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT id, service, kind, started_at, finished_at, status, error, stderr_tail, bytes \
                     FROM runs WHERE service = ?1 AND kind = ?2 {filter} ORDER BY id DESC LIMIT 1"
                ),
                params![service, kind],
                |r| Ok((run_from_row(r)?, r.get::<_, Option<i64>>(8)?.map(|b| b as u64))),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Services with a backup run in progress (its process alive), and when it started.
    pub fn running_backups(&self) -> Result<HashMap<String, i64>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT service, started_at, pid FROM runs \
                 WHERE status = 'running' AND kind = 'backup'",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, i64, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut running: HashMap<String, i64> = HashMap::new();
        for (service, started, pid) in rows {
            if pid.is_some_and(process_alive) {
                let e = running.entry(service).or_insert(started);
                *e = (*e).min(started);
            }
        }
        Ok(running)
    }

    /// Marks runs whose process is gone (a `kill -9`, a crash, a reboot) as interrupted.
    pub fn reap_interrupted(&self) -> Result<usize> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, pid FROM runs WHERE status = 'running'")
            .map_err(|e| self.err(e))?;
        let running: Vec<(RunId, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut reaped = 0;
        for (id, pid) in running {
            if !pid.is_some_and(process_alive) {
                self.conn
                    .execute(
                        "UPDATE runs SET status = 'interrupted', finished_at = ?2, \
                         error = 'the process died before finishing (killed, crashed or rebooted); nothing it wrote was kept' \
                         WHERE id = ?1",
                        params![id, now()],
                    )
                    .map_err(|e| self.err(e))?;
                reaped += 1;
            }
        }
        Ok(reaped)
    }

    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, service, kind, started_at, finished_at, status, error, stderr_tail \
                 FROM runs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([limit as i64], run_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

/// A run row whose first eight columns are id, service, kind, started_at, finished_at,
/// status, error, stderr_tail.
fn run_from_row(r: &rusqlite::Row) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        service: r.get(1)?,
        kind: r.get(2)?,
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        status: r.get(5)?,
        error: r.get(6)?,
        stderr_tail: r.get(7)?,
    })
}

fn process_alive(pid: i64) -> bool {
    i32::try_from(pid).is_ok_and(crate::lock::process_alive)
}
