//! `driver = "redis"`: the server's RDB snapshot, taken with `redis-cli --rdb` (a replica-style
//! full sync: no `SAVE` on the server, no access to its data directory). The password reaches
//! redis-cli through `REDISCLI_AUTH`, never its argv.
//!
//! redis-cli writes the RDB to a scratch file, not stdout: on stdout (`--rdb -`) it leaves the
//! 40-byte end-of-transfer marker of a diskless sync after the data, and that file is not a
//! valid RDB. The scratch file is deleted when the dump is finished or dropped.

use std::fs::File;
use std::io::{Read, Seek};

use super::process::{ChildDump, Invocation};
use super::{ArtifactPlan, Dump, Facts, Source};
use crate::secret::SecretRef;
use crate::{Error, Result};

pub struct RedisSource {
    pub service: String,
    pub host: String,
    pub port: u16,
    pub password: Option<SecretRef>,
}

impl RedisSource {
    fn command(&self, target: &str) -> Result<Invocation> {
        let argv = [
            "redis-cli",
            "-h",
            &self.host,
            "-p",
            &self.port.to_string(),
            "--rdb",
            target,
        ]
        .map(str::to_owned)
        .to_vec();
        let mut env = Vec::new();
        if let Some(p) = &self.password {
            env.push(("REDISCLI_AUTH".to_owned(), p.resolve()?));
        }
        Ok((argv, env))
    }
}

impl Source for RedisSource {
    fn driver(&self) -> &'static str {
        "redis"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan {
            stem: "dump".into(),
            extension: "rdb".into(),
        }])
    }

    fn open(&self, _artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        let scratch = tempfile::Builder::new()
            .prefix("tierback-redis-")
            .suffix(".rdb")
            .tempfile()
            .map_err(|e| Error::io("creating a scratch file for the RDB", e))?;
        let (argv, env) = self.command(&scratch.path().to_string_lossy())?;
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
            return Err(Error::Source {
                service: self.service.clone(),
                message: "redis-cli produced no RDB (the file does not start with REDIS)".into(),
                stderr_tail: String::new(),
            });
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
