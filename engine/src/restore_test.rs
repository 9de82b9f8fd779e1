//! Restore tests (the seed's weekly recovery test): the newest backup of a service is replayed
//! into a scratch target and compared with the facts recorded when it was taken. Bytes come
//! through the verified block reader, so a corrupt block fails the test before it is replayed.
//!
//! - postgres: each database into a scratch database on the same server (`CREATE DATABASE`
//!   needed), every table's rows counted against the dump's own counts, then dropped. The
//!   globals are not replayed: roles are cluster-wide and would change the live server.
//! - postgres base backup: unpacked and checked by `pg_verifybackup` (every file against the
//!   backup manifest's checksums, and the WAL it needs present and parseable).
//! - postgres_wal: every block read and verified (WAL is replayed by a recovery, through
//!   `wal-fetch`), and the whole archive on the tier checked for gaps ([`wal_chain`]): recovery
//!   cannot replay past a missing segment.
//! - redis: the RDB checked by `redis-check-rdb`; the AOF archive loaded by a scratch
//!   `redis-server` on a Unix socket (no port, nothing shared with the live server).
//! - files, minio: the tar listed by `tar -t`, its entry count against the recorded one.
//! - qdrant: the snapshot listed by `tar -t` (replaying would create a collection on the live
//!   server).
//! - vault: the snapshot unpacked and its `SHA256SUMS` checked by `sha256sum -c`.
//! - n8n: the export parsed, its workflow count against the recorded one.
//! - command: every block read and verified (tierback knows nothing to replay it into).

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use crate::artifact::reader::ArtifactReader;
use crate::catalog::ArtifactRecord;
use crate::config::Driver;
use crate::source::postgres::{BASE, GLOBALS};
use crate::source::process::last_lines;
use crate::source::redis::AOF_ARCHIVE;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed(String),
    Failed(String),
    /// Not replayed, for the reason given (not a failure).
    Skipped(String),
}

/// Replays one artifact of a backup, read through `reader` (verified block by block).
pub fn test_artifact(
    driver: &Driver,
    artifact: &ArtifactRecord,
    reader: &ArtifactReader<'_>,
    threads: usize,
) -> Result<Outcome> {
    let stem = artifact
        .file
        .rsplit_once('_')
        .map_or(artifact.file.as_str(), |(s, _)| s);
    match driver {
        Driver::Postgres {
            base_backup: true, ..
        } if stem == BASE => base_backup(reader, threads),
        Driver::Postgres {
            host,
            port,
            user,
            password,
            ..
        } => {
            if stem == GLOBALS {
                return Ok(Outcome::Skipped(
                    "roles and tablespaces are cluster-wide: not replayed into a live server"
                        .into(),
                ));
            }
            let password = password.as_ref().map(|p| p.resolve()).transpose()?;
            let pg = Psql {
                host,
                port: *port,
                user,
                password: password.as_ref().map(|p| p.expose()),
            };
            postgres(&pg, stem, artifact, reader, threads)
        }
        Driver::Redis { .. } if stem == AOF_ARCHIVE => redis_aof(artifact, reader, threads),
        Driver::Redis { .. } => {
            let mut rdb = tempfile::NamedTempFile::new()
                .map_err(|e| Error::io("creating a scratch file for the RDB", e))?;
            reader.copy_to(rdb.as_file_mut(), threads)?;
            let out = Command::new("redis-check-rdb")
                .arg(rdb.path())
                .output()
                .map_err(|e| Error::io("running redis-check-rdb", e))?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(if out.status.success() {
                Outcome::Passed("redis-check-rdb: RDB looks OK".into())
            } else {
                Outcome::Failed(format!("redis-check-rdb: {}", last_lines(&text, 5)))
            })
        }
        // A bucket mirror is a tar like a files backup, with its object count as `entries`.
        Driver::Files { .. } | Driver::Minio { .. } => {
            let (status, listed) = tar_list(reader, threads)?;
            let recorded = artifact.facts["entries"].as_u64();
            Ok(match (status.success(), recorded) {
                (false, _) => Outcome::Failed(format!("tar -t failed ({status})")),
                (true, Some(n)) if n != listed => Outcome::Failed(format!(
                    "the tar lists {listed} entries, the backup recorded {n}"
                )),
                (true, _) => Outcome::Passed(format!("tar lists {listed} entries, as recorded")),
            })
        }
        // A Qdrant snapshot is a tar; replaying it would create a collection on the live server.
        Driver::Qdrant { .. } => {
            let announced = artifact.facts["downloaded_sha256"]
                .as_str()
                .unwrap_or_default();
            if !announced.eq_ignore_ascii_case(&artifact.raw_sha256) {
                return Ok(Outcome::Failed(format!(
                    "the stored snapshot's SHA-256 {} is not the {announced:?} Qdrant sent",
                    artifact.raw_sha256
                )));
            }
            let (status, listed) = tar_list(reader, threads)?;
            Ok(if status.success() && listed > 0 {
                Outcome::Passed(format!(
                    "the snapshot is the one Qdrant sent (SHA-256) and a readable tar of {listed} entries"
                ))
            } else {
                Outcome::Failed(format!(
                    "the snapshot is not a readable tar (tar -t: {status}, {listed} entries)"
                ))
            })
        }
        Driver::Vault { .. } => vault_snapshot(reader, threads),
        Driver::N8n { .. } => {
            let mut json = Vec::new();
            reader.copy_to(&mut json, threads)?;
            let listed = serde_json::from_slice::<serde_json::Value>(&json)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len));
            let recorded = artifact.facts["workflow_count"].as_u64();
            Ok(match (listed, recorded) {
                (None, _) => Outcome::Failed("the export is not a JSON array of workflows".into()),
                (Some(n), Some(r)) if n as u64 != r => Outcome::Failed(format!(
                    "the export holds {n} workflows, the backup recorded {r}"
                )),
                (Some(n), _) => Outcome::Passed(format!("{n} workflows, as recorded")),
            })
        }
        Driver::Command { .. } | Driver::PostgresWal { .. } => {
            let bytes = reader.copy_to(&mut std::io::sink(), threads)?;
            Ok(Outcome::Passed(format!(
                "{bytes} bytes read, every block verified (nothing to replay it into alone)"
            )))
        }
    }
}

/// Pipes the artifact through `tar -t`; returns tar's status and the entry count.
fn tar_list(
    reader: &ArtifactReader<'_>,
    threads: usize,
) -> Result<(std::process::ExitStatus, u64)> {
    let mut tar = Command::new("tar")
        .args(["-tf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io("running tar", e))?;
    let mut stdin = tar.stdin.take().expect("piped");
    let mut stdout = tar.stdout.take().expect("piped");
    let lister = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s.lines().count())
    });
    let copied = reader.copy_to(&mut stdin, threads);
    drop(stdin);
    let status = tar.wait().map_err(|e| Error::io("waiting for tar", e))?;
    match copied {
        // A block that failed its check names itself; a tar that gave up (a broken archive)
        // is the caller's failed test, not the broken pipe it left behind.
        Err(e @ Error::Integrity { .. }) => return Err(e),
        Err(e) if status.success() => return Err(e),
        _ => {}
    }
    let listed = lister.join().unwrap_or(Ok(0)).unwrap_or(0) as u64;
    Ok((status, listed))
}

/// A Vault Raft snapshot (a gzipped tar) unpacked into a scratch directory, and its
/// `SHA256SUMS` checked with `sha256sum -c` (what `vault operator raft snapshot restore` checks
/// before it replaces a cluster's data).
fn vault_snapshot(reader: &ArtifactReader<'_>, threads: usize) -> Result<Outcome> {
    let scratch = match unpack(reader, threads, "-xzf")? {
        Ok(dir) => dir,
        Err(failed) => return Ok(failed),
    };
    for needed in ["SHA256SUMS", "SHA256SUMS.sealed"] {
        if !scratch.path().join(needed).exists() {
            return Ok(Outcome::Failed(format!(
                "the snapshot has no {needed}: it is incomplete"
            )));
        }
    }
    let check = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(scratch.path())
        .output()
        .map_err(|e| Error::io("running sha256sum", e))?;
    let said = last_lines(&String::from_utf8_lossy(&check.stdout), 5).replace('\n', "; ");
    Ok(if check.status.success() {
        Outcome::Passed(format!("SHA256SUMS match: {said}"))
    } else {
        Outcome::Failed(format!("SHA256SUMS do not match: {said}"))
    })
}

/// Unpacks a `pg_basebackup` tar and lets PostgreSQL's own `pg_verifybackup` judge it.
fn base_backup(reader: &ArtifactReader<'_>, threads: usize) -> Result<Outcome> {
    let scratch = match unpack(reader, threads, "-xf")? {
        Ok(dir) => dir,
        Err(failed) => return Ok(failed),
    };
    let check = Command::new(pg_verifybackup())
        .arg(scratch.path())
        .output()
        .map_err(|e| Error::io("running pg_verifybackup", e))?;
    let said = last_lines(
        &String::from_utf8_lossy(if check.status.success() {
            &check.stdout
        } else {
            &check.stderr
        }),
        3,
    )
    .replace('\n', "; ");
    Ok(if check.status.success() {
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

/// Unpacks an AOF archive and starts a scratch `redis-server` on it: Redis's own loader is the
/// judge (it accepts a tail cut mid-command, as it would after a crash). The keys it loads are
/// compared with the count taken when the files were copied.
fn redis_aof(
    artifact: &ArtifactRecord,
    reader: &ArtifactReader<'_>,
    threads: usize,
) -> Result<Outcome> {
    let root = match unpack(reader, threads, "-xf")? {
        Ok(dir) => dir,
        Err(failed) => return Ok(failed),
    };
    // The server's socket and log go beside the files, outside what was unpacked.
    let scratch = tempfile::Builder::new()
        .prefix("tierback-restore-test-")
        .tempdir()
        .map_err(|e| Error::io("creating a scratch directory", e))?;
    // Redis 7 keeps a directory with a manifest named after `appendfilename`; older versions
    // one file named `appendfilename`.
    let Some(found) = find_aof(root.path()) else {
        return Ok(Outcome::Failed(
            "the archive holds no AOF manifest or appendonly.aof".into(),
        ));
    };
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let dir = match &found {
        Aof::Manifest(m) => {
            let appenddir = m.parent().expect("inside root");
            let name = m.file_name().expect("a name").to_string_lossy();
            args.extend([
                "--appenddirname".into(),
                appenddir.file_name().expect("a name").into(),
            ]);
            args.extend([
                "--appendfilename".into(),
                name.trim_end_matches(".manifest").into(),
            ]);
            appenddir.parent().expect("inside root").to_owned()
        }
        Aof::File(f) => {
            args.extend([
                "--appendfilename".into(),
                f.file_name().expect("a name").into(),
            ]);
            f.parent().expect("inside root").to_owned()
        }
    };
    let socket = scratch.path().join("redis.sock");
    let log = scratch.path().join("redis.log");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", "0", "--save", "", "--appendonly", "yes"])
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--dir")
        .arg(&dir)
        .args(&args)
        .arg("--logfile")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::process::die_with_parent(&mut cmd);
    let mut server = match cmd.spawn() {
        Ok(child) => ScratchRedis {
            child,
            socket: socket.clone(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Outcome::Skipped(
                "redis-server is not installed here: the AOF was not replayed".into(),
            ));
        }
        Err(e) => return Err(Error::io("starting a scratch redis-server", e)),
    };
    let recorded = artifact.facts["keys_when_copied"].as_u64();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Ok(Outcome::Failed(format!(
                "redis-server refused the AOF ({status}): {}",
                last_lines(&log, 3)
            )));
        }
        let loaded = server
            .cli(&["INFO", "persistence"])
            .is_some_and(|info| info.lines().any(|l| l.trim() == "loading:0"));
        if loaded {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Ok(Outcome::Failed(
                "the scratch redis-server did not finish loading in 5 min".into(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let keys = server
        .cli(&["INFO", "keyspace"])
        .map(|info| crate::source::redis::keyspace_keys(&info))
        .unwrap_or(0);
    Ok(match recorded {
        Some(r) if r > 0 && keys == 0 => Outcome::Failed(format!(
            "the scratch redis-server loaded no keys; {r} were there when the files were copied"
        )),
        Some(r) => Outcome::Passed(format!(
            "the AOF loads into a scratch redis-server: {keys} keys ({r} when copied)"
        )),
        None => Outcome::Passed(format!(
            "the AOF loads into a scratch redis-server: {keys} keys"
        )),
    })
}

/// A scratch redis-server on a Unix socket; shut down (and reaped) on drop, whatever happened.
struct ScratchRedis {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl ScratchRedis {
    fn cli(&self, args: &[&str]) -> Option<String> {
        Command::new("timeout")
            .args(["30", "redis-cli", "-e", "-s"])
            .arg(&self.socket)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for ScratchRedis {
    fn drop(&mut self) {
        // SHUTDOWN NOSAVE ends a rewrite child too; SIGKILL only if it does not answer.
        let _ = self.cli(&["SHUTDOWN", "NOSAVE"]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unpacks the artifact with `tar MODE -` (`-xf`, or `-xzf` for a gzipped tar) into a new
/// scratch directory (removed on drop); a broken archive is the failed test.
fn unpack(
    reader: &ArtifactReader<'_>,
    threads: usize,
    mode: &str,
) -> Result<std::result::Result<tempfile::TempDir, Outcome>> {
    let scratch = tempfile::Builder::new()
        .prefix("tierback-restore-test-")
        .tempdir()
        .map_err(|e| Error::io("creating a scratch directory", e))?;
    let mut tar = Command::new("tar")
        .args([mode, "-", "-C"])
        .arg(scratch.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("running tar", e))?;
    let mut stdin = tar.stdin.take().expect("piped");
    let copied = reader.copy_to(&mut stdin, threads);
    drop(stdin);
    let out = tar
        .wait_with_output()
        .map_err(|e| Error::io("waiting for tar", e))?;
    Ok(match tar_verdict(copied, &out)? {
        Some(failed) => Err(failed),
        None => Ok(scratch),
    })
}

/// What tar's run says: a failed extraction is a failed test with tar's words, unless the bytes
/// themselves failed their check (that error names the block, and wins).
fn tar_verdict(copied: Result<u64>, out: &std::process::Output) -> Result<Option<Outcome>> {
    match copied {
        Err(e @ Error::Integrity { .. }) => Err(e),
        _ if !out.status.success() => Ok(Some(Outcome::Failed(format!(
            "the archive does not unpack: {}",
            last_lines(&String::from_utf8_lossy(&out.stderr), 3)
        )))),
        Err(e) => Err(e),
        Ok(_) => Ok(None),
    }
}

enum Aof {
    Manifest(std::path::PathBuf),
    File(std::path::PathBuf),
}

/// The first `*.manifest`, else the first `appendonly.aof`, under `root`.
fn find_aof(root: &std::path::Path) -> Option<Aof> {
    let mut file = None;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".manifest") {
                return Some(Aof::Manifest(path));
            } else if name == "appendonly.aof" && file.is_none() {
                file = Some(Aof::File(path));
            }
        }
    }
    file
}

/// How to reach the server a postgres service backs up.
struct Psql<'a> {
    host: &'a str,
    port: u16,
    user: &'a str,
    password: Option<&'a str>,
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
        let out = self
            .command(db)
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(last_lines(&String::from_utf8_lossy(&out.stderr), 5))
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn postgres(
    pg: &Psql<'_>,
    database: &str,
    artifact: &ArtifactRecord,
    reader: &ArtifactReader<'_>,
    threads: usize,
) -> Result<Outcome> {
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
    let outcome = replay_and_count(pg, &scratch, artifact, reader, threads);
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

fn replay_and_count(
    pg: &Psql<'_>,
    scratch: &str,
    artifact: &ArtifactRecord,
    reader: &ArtifactReader<'_>,
    threads: usize,
) -> Result<Outcome> {
    let errors = tempfile::tempfile().map_err(|e| Error::io("creating a scratch file", e))?;
    let mut psql = pg
        .command(scratch)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(
            errors
                .try_clone()
                .map_err(|e| Error::io("scratch file", e))?,
        )
        .spawn()
        .map_err(|e| Error::io("running psql", e))?;
    let mut stdin = psql.stdin.take().expect("piped");
    let copied = reader.copy_to(&mut stdin, threads);
    let _ = stdin.flush();
    drop(stdin);
    let status = psql.wait().map_err(|e| Error::io("waiting for psql", e))?;
    if let Err(e) = copied {
        // A broken pipe means psql stopped early: its own error says why.
        if !matches!(&e, Error::Io { .. }) || status.success() {
            return Err(e);
        }
    }
    if !status.success() {
        let mut text = String::new();
        let mut f = errors;
        use std::io::Seek;
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.read_to_string(&mut text);
        return Ok(Outcome::Failed(format!(
            "psql stopped replaying the dump: {}",
            last_lines(&text, 5)
        )));
    }
    let Some(recorded) = artifact.facts["row_counts"].as_object() else {
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
        let want = recorded.get(table).and_then(|v| v.as_u64());
        if want != n.parse().ok() {
            mismatches.push(format!("{table}: {n} rows, recorded {want:?}"));
        }
    }
    Ok(if mismatches.is_empty() {
        let rows: u64 = recorded.values().filter_map(|v| v.as_u64()).sum();
        Outcome::Passed(format!(
            "replayed into {scratch}; {} tables, {rows} rows, every count as recorded",
            recorded.len()
        ))
    } else {
        Outcome::Failed(format!("row counts differ: {}", mismatches.join("; ")))
    })
}

/// The artifacts of the newest backup that `tier` holds, from a service's `artifacts`.
/// Whether the WAL segments archived on `tier` follow each other without a gap on each
/// timeline, from the oldest kept to the newest (retention removes only the oldest, so a gap
/// means a segment never arrived: the receiver's slot was lost, or a spool file was deleted).
pub fn wal_chain(artifacts: &[ArtifactRecord], tier: &str) -> Outcome {
    use std::collections::{BTreeMap, BTreeSet};
    let mut sizes = BTreeSet::new();
    let mut names = BTreeSet::new();
    for a in artifacts {
        let Some(name) = a.facts[crate::source::postgres_wal::WAL_FILE].as_str() else {
            continue;
        };
        if crate::source::postgres_wal::wal_kind(name) == Some("wal")
            && a.copy_on(tier)
                .is_some_and(|c| c.state == crate::catalog::PRESENT)
        {
            names.insert(name.to_owned());
            sizes.insert(a.raw_size);
        }
    }
    let segment_size = match sizes.len() {
        0 => return Outcome::Skipped(format!("no WAL segment on {tier}")),
        1 => *sizes.first().unwrap(),
        _ => return Outcome::Failed(format!("segments of different sizes {sizes:?}")),
    };
    let per_log = (1u64 << 32) / segment_size.max(1);
    let number = |hex: &str| u64::from_str_radix(hex, 16).unwrap_or(0);
    let mut timelines: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for n in &names {
        let seq = number(&n[8..16]) * per_log + number(&n[16..24]);
        timelines.entry(&n[..8]).or_default().push(seq);
    }
    let name = |tli: &str, seq: u64| format!("{tli}{:08X}{:08X}", seq / per_log, seq % per_log);
    let mut gaps = Vec::new();
    for (tli, seqs) in &timelines {
        for pair in seqs.windows(2) {
            if pair[1] != pair[0] + 1 {
                gaps.push(format!(
                    "{} to {} ({} segments)",
                    name(tli, pair[0] + 1),
                    name(tli, pair[1] - 1),
                    pair[1] - pair[0] - 1
                ));
            }
        }
    }
    if gaps.is_empty() {
        Outcome::Passed(format!(
            "{} WAL segments, {} to {}, no gap",
            names.len(),
            names.first().unwrap(),
            names.last().unwrap()
        ))
    } else {
        Outcome::Failed(format!(
            "missing from the archive, recovery cannot replay past them: {}",
            gaps.join(", ")
        ))
    }
}

pub fn newest_backup<'a>(artifacts: &'a [ArtifactRecord], tier: &str) -> Vec<&'a ArtifactRecord> {
    let present = |a: &&ArtifactRecord| {
        a.copy_on(tier)
            .is_some_and(|c| c.state != crate::catalog::MISSING)
    };
    let Some(newest) = artifacts
        .iter()
        .filter(present)
        .max_by_key(|a| (a.taken_at, a.backup_id))
        .map(|a| a.backup_id)
    else {
        return Vec::new();
    };
    artifacts
        .iter()
        .filter(|a| a.backup_id == newest)
        .filter(present)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(id: i64, name: &str, size: u64) -> ArtifactRecord {
        ArtifactRecord {
            raw_size: size,
            facts: serde_json::json!({ "wal_file": name }),
            copies: vec![crate::catalog::CopyRecord {
                tier: "local".into(),
                state: crate::catalog::PRESENT.into(),
                stored_at: 0,
                verified_at: None,
                error: None,
            }],
            ..ArtifactRecord::for_test(id, "wal", id)
        }
    }

    #[test]
    fn a_wal_chain_across_a_log_boundary_and_a_new_timeline_has_no_gap() {
        let mb16 = 16 << 20;
        let list = [
            segment(1, "0000000100000000000000FE", mb16),
            segment(2, "0000000100000000000000FF", mb16),
            segment(3, "000000010000000100000000", mb16), // the next log file
            segment(4, "00000002.history", 41),
            segment(5, "000000020000000100000000", mb16), // promoted: timeline 2
            segment(6, "000000020000000100000001", mb16),
        ];
        let outcome = wal_chain(&list, "local");
        assert!(
            matches!(&outcome, Outcome::Passed(d) if d.starts_with("5 WAL segments")),
            "{outcome:?}"
        );
        // Not on this tier: nothing to check.
        assert!(matches!(wal_chain(&list, "offsite"), Outcome::Skipped(_)));
    }

    #[test]
    fn a_missing_segment_is_named() {
        let mb16 = 16 << 20;
        let list = [
            segment(1, "0000000100000000000000FE", mb16),
            segment(3, "000000010000000100000001", mb16),
            segment(4, "000000010000000100000002", mb16),
        ];
        match wal_chain(&list, "local") {
            Outcome::Failed(d) => assert!(
                d.contains("0000000100000000000000FF to 000000010000000100000000 (2 segments)"),
                "{d}"
            ),
            other => panic!("{other:?}"),
        }
        let mixed = [
            segment(1, "000000010000000000000001", mb16),
            segment(2, "000000010000000000000002", 1 << 20),
        ];
        assert!(matches!(wal_chain(&mixed, "local"), Outcome::Failed(_)));
    }
}
