//! `driver = "redis"`: the server's RDB snapshot, taken with `redis-cli --rdb` (a replica-style
//! full sync: no `SAVE` on the server, no access to its data directory). The password reaches
//! redis-cli through `REDISCLI_AUTH`, never its argv.
//!
//! redis-cli writes the RDB to a scratch file, not stdout: on stdout (`--rdb -`) it leaves the
//! 40-byte end-of-transfer marker of a diskless sync after the data, and that file is not a
//! valid RDB. The scratch file is deleted when the dump is finished or dropped.
//!
//! With `aof_dir`, a second artifact archives the append-only files (`aof_archive_HHMMSS.tar`),
//! following Redis's documented AOF backup procedure: automatic rewrites are switched off
//! (`auto-aof-rewrite-percentage 0`), a rewrite in progress is waited out, the directory is
//! copied, and the setting is put back — also when the copy fails. Files are archived at the
//! length they had when opened; Redis loads a tail cut mid-command (`aof-load-truncated`).

use std::fs::File;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::files::TarFacts;
use super::piped::Piped;
use super::process::{ChildDump, Invocation};
use super::{ArtifactPlan, DriverSettings, Dump, Facts, Source, facts_of};
use crate::config::{Mistake, ServiceContext};
use crate::process::{self, Running, last_lines};
use crate::restore_test::{Outcome, Replay, scratch_dir};
use crate::secret::{Secret, SecretRef};
use crate::{Error, Result};

/// What the AOF archive records: the tar's facts and the keys the server held meanwhile.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AofFacts {
    #[serde(flatten)]
    pub tar: TarFacts,
    /// What a scratch server loading the archive should find (about; writes go on meanwhile).
    pub keys_when_copied: Option<u64>,
}

/// The stem of the AOF archive.
pub const AOF_ARCHIVE: &str = "aof_archive";

/// Seconds one redis-cli call may take.
const CLI_TIMEOUT: &str = "30";

/// The keys of every database in an `INFO keyspace` answer.
pub fn keyspace_keys(info: &str) -> u64 {
    info.lines()
        .filter_map(|l| l.trim().split_once(":keys="))
        .filter_map(|(_, rest)| rest.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// How long a running AOF rewrite may take before the backup gives up waiting.
const REWRITE_WAIT: Duration = Duration::from_secs(30 * 60);

/// The service keys of `driver = "redis"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    password: Option<Spanned<String>>,
    /// The server's append-only directory, as this machine sees it.
    aof_dir: Option<Spanned<PathBuf>>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "redis";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        Ok(Arc::new(RedisSource {
            service: service.name.to_string(),
            host: self
                .host
                .map_or_else(|| "127.0.0.1".into(), Spanned::into_inner),
            port: service.port(self.port, 6379)?,
            password: self.password.map(|p| service.secret(p)).transpose()?,
            aof_dir: self.aof_dir.map(|d| service.resolve(d.into_inner())),
            state_dir: service.state_dir.to_owned(),
        }))
    }
}

#[derive(Debug)]
pub struct RedisSource {
    pub service: String,
    pub host: String,
    pub port: u16,
    pub password: Option<SecretRef>,
    pub aof_dir: Option<PathBuf>,
    /// Where a paused rewrite setting is remembered until it is put back (the lock directory).
    pub state_dir: PathBuf,
}

impl Source for RedisSource {
    fn driver(&self) -> &'static str {
        "redis"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        let mut plan = vec![ArtifactPlan {
            stem: "dump".into(),
            extension: "rdb".into(),
        }];
        if self.aof_dir.is_some() {
            plan.push(ArtifactPlan {
                stem: AOF_ARCHIVE.into(),
                extension: "tar".into(),
            });
        }
        Ok(plan)
    }

    fn open(&self, artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        match &self.aof_dir {
            Some(dir) if artifact.stem == AOF_ARCHIVE => self.open_aof(dir),
            _ => self.open_rdb(),
        }
    }

    /// The RDB checked by `redis-check-rdb`; the AOF archive loaded by a scratch
    /// `redis-server` on a Unix socket (no port, nothing shared with the live server).
    fn restore_test(&self, replay: &Replay<'_>) -> Result<Outcome> {
        if replay.stem == AOF_ARCHIVE {
            return redis_aof(replay);
        }
        let mut rdb = tempfile::NamedTempFile::new()
            .map_err(|e| Error::io("creating a scratch file for the RDB", e))?;
        replay.reader.copy_to(rdb.as_file_mut(), replay.threads)?;
        let mut check = Command::new("redis-check-rdb");
        check.arg(rdb.path());
        let out = process::run(check).map_err(|e| Error::io("running redis-check-rdb", e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(if out.exit.status.success() {
            Outcome::Passed("redis-check-rdb: RDB looks OK".into())
        } else {
            Outcome::Failed(format!("redis-check-rdb: {}", last_lines(&text, 5)))
        })
    }
}

impl RedisSource {
    fn open_rdb(&self) -> Result<Box<dyn Dump>> {
        let scratch = tempfile::Builder::new()
            .prefix("tierback-redis-")
            .suffix(".rdb")
            .tempfile()
            .map_err(|e| Error::io("creating a scratch file for the RDB", e))?;
        let (argv, env) = self
            .cli()?
            .invocation(&["--rdb", &scratch.path().to_string_lossy()]);
        // The transfer runs to completion before a byte is read: the RDB is only valid whole.
        // (The server may wait `repl-diskless-sync-delay`, 5 s by default, before sending.)
        let mut child = ChildDump::spawn(&self.service, &argv, &env)?;
        std::io::copy(&mut child, &mut std::io::sink())
            .map_err(|e| Error::io("reading redis-cli's output", e))?;
        let mut facts = Box::new(child).finish()?;
        let mut file = scratch
            .reopen()
            .map_err(|e| Error::io("reopening the RDB", e))?;
        let mut magic = [0u8; 9];
        file.read_exact(&mut magic).ok();
        file.rewind()
            .map_err(|e| Error::io("rewinding the RDB", e))?;
        if &magic[..5] != b"REDIS" {
            return Err(Error::source(
                &self.service,
                "redis-cli produced no RDB (the file does not start with REDIS)",
            ));
        }
        facts.insert(
            "rdb_version".into(),
            String::from_utf8_lossy(&magic[5..]).into_owned().into(),
        );
        Ok(Box::new(RdbDump {
            file,
            _scratch: scratch,
            facts: Some(facts),
        }))
    }

    fn cli(&self) -> Result<Cli> {
        Ok(Cli {
            service: self.service.clone(),
            host: self.host.clone(),
            port: self.port,
            password: self.password.as_ref().map(|p| p.resolve()).transpose()?,
        })
    }

    fn open_aof(&self, dir: &std::path::Path) -> Result<Box<dyn Dump>> {
        let cli = self.cli()?;
        if cli.config_get("appendonly")? != "yes" {
            return Err(cli.fail(format!(
                "aof_dir is {} but the server runs with appendonly no: it writes no AOF",
                dir.display()
            )));
        }
        if !dir.is_dir() && !dir.is_file() {
            return Err(cli.fail(format!(
                "aof_dir {} does not exist here (the server's `dir` + `appenddirname`, as this machine sees it)",
                dir.display()
            )));
        }
        // The value to put back is remembered on disk before it is changed: if this process
        // dies mid-copy, the next backup puts it back instead of taking 0 for the original.
        let saved = self
            .state_dir
            .join(format!("{}.aof-rewrite-percentage", self.service));
        let percentage = match std::fs::read_to_string(&saved) {
            Ok(v) if !v.trim().is_empty() => {
                tracing::warn!(service = %self.service, "a backup died with AOF rewrites paused: putting auto-aof-rewrite-percentage back to {}", v.trim());
                v.trim().to_owned()
            }
            _ => {
                let v = cli.config_get("auto-aof-rewrite-percentage")?;
                crate::fsutil::write_atomic(&saved, v.as_bytes())?;
                v
            }
        };
        let pause = RewritePause {
            cli,
            percentage,
            saved,
            restored: false,
        };
        pause
            .cli
            .run(&["CONFIG", "SET", "auto-aof-rewrite-percentage", "0"])?;
        pause.wait_for_rewrites()?;
        let keys = pause.cli.keys()?;
        let paths = vec![dir.to_owned()];
        let service = self.service.clone();
        let tar = Piped::spawn(move |writer| {
            let tar = super::files::write_tar(writer, &paths, &service)?;
            Ok(facts_of(&AofFacts {
                tar,
                keys_when_copied: Some(keys),
            }))
        })?;
        Ok(Box::new(AofDump {
            tar: Box::new(tar),
            pause,
        }))
    }
}

/// `redis-cli -e` against the service's server (the password in `REDISCLI_AUTH`).
struct Cli {
    service: String,
    host: String,
    port: u16,
    password: Option<Secret>,
}

impl Cli {
    fn fail(&self, message: String) -> Error {
        Error::source(&self.service, message)
    }

    /// `redis-cli ARGS` against the server, and the password for its environment.
    fn invocation(&self, args: &[&str]) -> Invocation {
        let mut argv = vec!["redis-cli".to_owned(), "-h".into(), self.host.clone()];
        argv.extend(["-p".to_owned(), self.port.to_string()]);
        argv.extend(args.iter().map(|a| a.to_string()));
        let env = self
            .password
            .iter()
            .map(|p| ("REDISCLI_AUTH".to_owned(), p.clone()))
            .collect();
        (argv, env)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        // `timeout`: redis-cli has no timeout of its own, and a hung server must not hang the
        // backup (nor the drop that puts the rewrite setting back). -e: an error reply is a
        // non-zero exit (redis-cli exits 0 otherwise).
        let (argv, env) = self.invocation(&[&["-e"], args].concat());
        let mut cmd = Command::new("timeout");
        cmd.arg(CLI_TIMEOUT).args(&argv);
        for (k, v) in &env {
            cmd.env(k, v.expose());
        }
        let out = process::run(cmd).map_err(|e| self.fail(format!("cannot run redis-cli: {e}")))?;
        if !out.exit.status.success() {
            let why = if out.exit.status.code() == Some(124) {
                format!("timed out after {CLI_TIMEOUT} s")
            } else {
                "failed".to_owned()
            };
            return Err(Error::Source {
                service: self.service.clone(),
                message: format!("redis-cli {} {why}", args.join(" ")),
                stderr_tail: last_lines(&out.exit.tail, 5),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Keys in every database (`INFO keyspace`: `db0:keys=12,expires=0,…`).
    fn keys(&self) -> Result<u64> {
        Ok(keyspace_keys(&self.run(&["INFO", "keyspace"])?))
    }

    /// The value of one config parameter (`CONFIG GET` prints the name, then the value).
    fn config_get(&self, name: &str) -> Result<String> {
        let out = self.run(&["CONFIG", "GET", name])?;
        out.lines()
            .nth(1)
            .map(str::to_owned)
            .ok_or_else(|| self.fail(format!("CONFIG GET {name}: no value in the answer")))
    }
}

/// Automatic AOF rewrites switched off for the copy; dropping it switches them back on.
struct RewritePause {
    cli: Cli,
    percentage: String,
    /// The file remembering `percentage` until it is back on the server.
    saved: PathBuf,
    restored: bool,
}

impl RewritePause {
    /// Waits until no rewrite runs or is scheduled (files would be replaced under the copy).
    fn wait_for_rewrites(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            let info = self.cli.run(&["INFO", "persistence"])?;
            let busy = info.lines().any(|l| {
                let l = l.trim();
                l == "aof_rewrite_in_progress:1" || l == "aof_rewrite_scheduled:1"
            });
            if !busy {
                return Ok(());
            }
            if start.elapsed() > REWRITE_WAIT {
                return Err(self.cli.fail(format!(
                    "an AOF rewrite still runs after {} min; try again later",
                    REWRITE_WAIT.as_secs() / 60
                )));
            }
            tracing::info!(service = %self.cli.service, "waiting for the server's AOF rewrite to end");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Puts the setting back; the remembered value is forgotten only once that worked.
    fn restore(&mut self) -> Result<()> {
        self.cli
            .run(&[
                "CONFIG",
                "SET",
                "auto-aof-rewrite-percentage",
                &self.percentage,
            ])
            .map_err(|e| {
                self.cli.fail(format!(
                    "could not switch AOF rewrites back on (the next backup retries; or run CONFIG SET auto-aof-rewrite-percentage {} by hand): {e}",
                    self.percentage
                ))
            })?;
        self.restored = true;
        let _ = std::fs::remove_file(&self.saved);
        Ok(())
    }
}

impl Drop for RewritePause {
    fn drop(&mut self) {
        if !self.restored
            && let Err(e) = self.restore()
        {
            tracing::error!("{e}");
        }
    }
}

struct AofDump {
    tar: Box<Piped>,
    pause: RewritePause,
}

impl Read for AofDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tar.read(buf)
    }
}

impl Dump for AofDump {
    fn finish(mut self: Box<Self>) -> Result<Facts> {
        let facts = self.tar.finish();
        self.pause.restore()?;
        facts
    }
}

struct RdbDump {
    file: File,
    /// Deleted on drop.
    _scratch: tempfile::NamedTempFile,
    facts: Option<Facts>,
}

impl Read for RdbDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

impl Dump for RdbDump {
    fn finish(mut self: Box<Self>) -> Result<Facts> {
        Ok(self.facts.take().unwrap_or_default())
    }
}

/// Unpacks an AOF archive and starts a scratch `redis-server` on it: Redis's own loader is the
/// judge (it accepts a tail cut mid-command, as it would after a crash). The keys it loads are
/// compared with the count taken when the files were copied.
fn redis_aof(replay: &Replay<'_>) -> Result<Outcome> {
    let recorded: AofFacts = replay.facts()?;
    let root = match replay.unpack("-xf")? {
        Ok(dir) => dir,
        Err(failed) => return Ok(failed),
    };
    // The server's socket and log go beside the files, outside what was unpacked.
    let scratch = scratch_dir()?;
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
        .stdout(Stdio::null());
    let mut server = match Running::spawn(cmd) {
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
    let recorded = recorded.keys_when_copied;
    let deadline = Instant::now() + Duration::from_secs(300);
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
        if Instant::now() > deadline {
            return Ok(Outcome::Failed(
                "the scratch redis-server did not finish loading in 5 min".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys = server
        .cli(&["INFO", "keyspace"])
        .map(|info| keyspace_keys(&info))
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
    child: Running,
    socket: std::path::PathBuf,
}

impl ScratchRedis {
    fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cli = Command::new("timeout");
        cli.args(["30", "redis-cli", "-e", "-s"])
            .arg(&self.socket)
            .args(args);
        process::run(cli)
            .ok()
            .filter(|o| o.exit.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for ScratchRedis {
    fn drop(&mut self) {
        // SHUTDOWN NOSAVE ends a rewrite child too; SIGKILL only if it does not answer.
        let _ = self.cli(&["SHUTDOWN", "NOSAVE"]);
        // Killed after 5 s; reaped when `child` drops.
        let _ = self.child.exits_within(Duration::from_secs(5));
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
