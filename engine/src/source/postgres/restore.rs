//! The postgres restore test: each database replayed into a scratch database on the same
//! server and its rows counted against the dump's own counts; a base backup unpacked and judged
//! by `pg_verifybackup` (every file against the backup manifest's checksums, and the WAL it needs
//! present and parseable).

use std::io::Write;
use std::process::{Command, Stdio};

use super::DumpFacts;
use crate::process::{self, Running, last_lines};
use crate::restore_test::{Outcome, Replay};
use crate::{Error, Result};

/// Unpacks a `pg_basebackup` tar and lets PostgreSQL's own `pg_verifybackup` judge it.
pub fn base_backup(replay: &Replay<'_>) -> Result<Outcome> {
    let scratch = match replay.unpack("-xf")? {
        Ok(dir) => dir,
        Err(failed) => return Ok(failed),
    };
    let mut verify = Command::new(pg_verifybackup());
    verify.arg(scratch.path());
    let check = process::run(verify).map_err(|e| Error::io("running pg_verifybackup", e))?;
    let passed = check.exit.status.success();
    let said = if passed {
        last_lines(&String::from_utf8_lossy(&check.stdout), 3)
    } else {
        last_lines(&check.exit.tail, 3)
    }
    .replace('\n', "; ");
    Ok(if passed {
        Outcome::Passed(format!("pg_verifybackup: {said}"))
    } else {
        Outcome::Failed(format!("pg_verifybackup: {said}"))
    })
}

/// `pg_verifybackup` of the newest PostgreSQL install (Debian keeps it out of PATH, in
/// /usr/lib/postgresql/<version>/bin beside the pg_waldump it calls), else from PATH.
fn pg_verifybackup() -> std::path::PathBuf {
    let mut installed: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin/pg_verifybackup");
            bin.exists().then_some((version, bin))
        })
        .collect();
    installed.sort();
    match installed.pop() {
        Some((_, bin)) => bin,
        None => "pg_verifybackup".into(),
    }
}

/// How to reach the server a postgres service backs up.
pub struct Psql<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: Option<&'a str>,
}

impl Psql<'_> {
    fn command(&self, db: &str) -> Command {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t"])
            .args([
                "-h",
                self.host,
                "-p",
                &self.port.to_string(),
                "-U",
                self.user,
            ])
            .args(["-d", db])
            .env("PGCONNECT_TIMEOUT", "30");
        if let Some(p) = self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd
    }

    /// Runs one SQL command; its output, or its error output as the error.
    fn sql(&self, db: &str, sql: &str) -> std::result::Result<String, String> {
        let mut psql = self.command(db);
        psql.args(["-c", sql]);
        let out = process::run(psql).map_err(|e| format!("cannot run psql: {e}"))?;
        if out.exit.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(last_lines(&out.exit.tail, 5))
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Replays the dump of `replay.stem` into a scratch database on the same server
/// (`CREATE DATABASE` needed), counts every table's rows against the dump's own counts, and drops
/// it again.
pub fn database(pg: &Psql<'_>, replay: &Replay<'_>) -> Result<Outcome> {
    let database = replay.stem;
    let scratch: String = format!("tierback_restore_test_{database}")
        .chars()
        .take(63)
        .collect();
    let scratch_q = quote_ident(&scratch);
    if let Err(e) = pg
        .sql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {scratch_q} WITH (FORCE)"),
        )
        .and_then(|_| pg.sql("postgres", &format!("CREATE DATABASE {scratch_q}")))
    {
        return Ok(Outcome::Failed(format!(
            "cannot create the scratch database {scratch}: {e}"
        )));
    }
    let outcome = replay_and_count(pg, &scratch, replay);
    // The scratch database goes whatever happened.
    let dropped = pg.sql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {scratch_q} WITH (FORCE)"),
    );
    let outcome = outcome?;
    Ok(match (outcome, dropped) {
        (Outcome::Passed(p), Err(e)) => {
            Outcome::Failed(format!("{p}, but dropping {scratch} failed: {e}"))
        }
        (o, _) => o,
    })
}

fn replay_and_count(pg: &Psql<'_>, scratch: &str, replay: &Replay<'_>) -> Result<Outcome> {
    let recorded: DumpFacts = replay.facts()?;
    let mut psql = pg.command(scratch);
    psql.stdin(Stdio::piped()).stdout(Stdio::null());
    let mut psql = Running::spawn(psql).map_err(|e| Error::io("running psql", e))?;
    let mut stdin = psql.take_stdin().expect("piped");
    let copied = replay.reader.copy_to(&mut stdin, replay.threads);
    let _ = stdin.flush();
    drop(stdin);
    let exit = psql.wait()?;
    let status = exit.status;
    if let Err(e) = copied {
        // A broken pipe means psql stopped early: its own error says why.
        if !matches!(&e, Error::Io { .. }) || status.success() {
            return Err(e);
        }
    }
    if !status.success() {
        return Ok(Outcome::Failed(format!(
            "psql stopped replaying the dump: {}",
            last_lines(&exit.tail, 5)
        )));
    }
    let Some(recorded) = recorded.row_counts else {
        return Ok(Outcome::Passed(
            "replayed; no row counts were recorded to compare".into(),
        ));
    };
    if recorded.is_empty() {
        return Ok(Outcome::Passed("replayed; the dump has no tables".into()));
    }
    let query = recorded
        .keys()
        .map(|t| format!("SELECT {}, count(*) FROM {t}", quote_literal(t)))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let counted = match pg.sql(scratch, &query) {
        Ok(text) => text,
        Err(e) => return Ok(Outcome::Failed(format!("counting rows: {e}"))),
    };
    let mut mismatches = Vec::new();
    for line in counted.lines() {
        let Some((table, n)) = line.rsplit_once('\t') else {
            continue;
        };
        let want = recorded.get(table).copied();
        if want != n.parse().ok() {
            mismatches.push(format!("{table}: {n} rows, recorded {want:?}"));
        }
    }
    Ok(if mismatches.is_empty() {
        let rows: u64 = recorded.values().sum();
        Outcome::Passed(format!(
            "replayed into {scratch}; {} tables, {rows} rows, every count as recorded",
            recorded.len()
        ))
    } else {
        Outcome::Failed(format!("row counts differ: {}", mismatches.join("; ")))
    })
}
