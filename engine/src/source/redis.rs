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
use std::process::Command;
use std::time::{Duration, Instant};

use super::piped::Piped;
use super::process::{ChildDump, Invocation, last_lines};
use super::{ArtifactPlan, Dump, Facts, Source};
use crate::secret::{Secret, SecretRef};
use crate::{Error, Result};

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
            let mut facts = super::files::write_tar(writer, &paths, &service)?;
            facts.insert("keys_when_copied".into(), keys.into());
            Ok(facts)
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
        crate::process::die_with_parent(&mut cmd);
        let out = cmd
            .output()
            .map_err(|e| self.fail(format!("cannot run redis-cli: {e}")))?;
        if !out.status.success() {
            let why = if out.status.code() == Some(124) {
                format!("timed out after {CLI_TIMEOUT} s")
            } else {
                "failed".to_owned()
            };
            return Err(Error::Source {
                service: self.service.clone(),
                message: format!("redis-cli {} {why}", args.join(" ")),
                stderr_tail: last_lines(&String::from_utf8_lossy(&out.stderr), 5),
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
