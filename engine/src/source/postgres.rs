//! `driver = "postgres"`: one plain-SQL `pg_dump` per database (so `psql -f file` restores it)
//! and the roles and tablespaces with `pg_dumpall --globals-only`. The password reaches the
//! child through `PGPASSWORD`, never its argv. Row counts per table are read from the dump
//! stream itself (the lines of each `COPY … FROM stdin;` block), so they describe exactly what
//! was stored, and restore tests can compare against them.
//!
//! With `base_backup = true` a physical `pg_basebackup` of the whole cluster is taken as well, as
//! one tar that includes the WAL needed to make it consistent: restorable on its own, and the
//! starting point that archived WAL (`postgres_wal`) replays forward to a point in time.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::process::{ChildDump, Invocation};
use super::{ArtifactPlan, DriverSettings, Dump, Facts, Source, facts_of};
use crate::Result;
use crate::config::{Mistake, ServiceContext};
use crate::restore_test::{Outcome, Replay};
use crate::secret::{Secret, SecretRef};

mod restore;

/// The artifact stem of the globals dump (a database of this name is refused by the config).
pub const GLOBALS: &str = "globals";
/// The artifact stem of the physical base backup.
pub const BASE: &str = "base";

/// The service keys of `driver = "postgres"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    databases: Option<Spanned<Vec<String>>>,
    globals: Option<bool>,
    base_backup: Option<bool>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "postgres";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        let base_backup = self.base_backup.unwrap_or(false);
        // A base backup alone is a whole cluster: databases are optional then.
        let databases = match self.databases {
            Some(d) => d,
            None if base_backup => Spanned::new(service.span.clone(), Vec::new()),
            None => {
                return Err(service.error(
                    service.span.clone(),
                    "driver \"postgres\" needs `databases` (or base_backup = true)",
                ));
            }
        };
        let globals = self.globals.unwrap_or(!databases.get_ref().is_empty());
        if databases.get_ref().is_empty() && !base_backup {
            return Err(service.error(databases.span(), "databases is empty"));
        }
        for db in databases.get_ref() {
            crate::id::validate_file_part(db, "database name")
                .map_err(|e| service.error(databases.span(), e))?;
            for (taken, stem, key) in [(globals, GLOBALS, "globals"), (base_backup, BASE, "base_backup")] {
                if taken && db == stem {
                    return Err(service.error(
                        databases.span(),
                        format!(
                            "a database named {stem:?} would clash with the {stem} artifact; set {key} = false"
                        ),
                    ));
                }
            }
        }
        Ok(Arc::new(PostgresSource {
            service: service.name.to_string(),
            host: self
                .host
                .map_or_else(|| "127.0.0.1".into(), Spanned::into_inner),
            port: service.port(self.port, 5432)?,
            user: self
                .user
                .map_or_else(|| "postgres".into(), Spanned::into_inner),
            password: self.password.map(|p| service.secret(p)).transpose()?,
            databases: databases.into_inner(),
            globals,
            base_backup,
        }))
    }
}

/// What a database dump records, read from the dump stream itself.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpFacts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Rows of every table: what the restore test counts in the replayed database.
    pub row_counts: Option<BTreeMap<String, u64>>,
}

#[derive(Debug)]
pub struct PostgresSource {
    pub service: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<SecretRef>,
    pub databases: Vec<String>,
    pub globals: bool,
    pub base_backup: bool,
}

impl PostgresSource {
    fn is_base(&self, artifact: &ArtifactPlan) -> bool {
        self.base_backup && artifact.stem == BASE
    }

    /// The argv and environment that dump `artifact`; no secret is in the argv.
    fn command(&self, artifact: &ArtifactPlan) -> Result<Invocation> {
        let mut argv: Vec<String> = if artifact.stem == GLOBALS && self.globals {
            vec!["pg_dumpall".into(), "--globals-only".into()]
        } else if self.is_base(artifact) {
            // A tar on stdout; `-X fetch` puts the WAL written during the backup into it, and
            // a fast checkpoint starts the backup now rather than at the next scheduled one.
            ["pg_basebackup", "-D", "-", "-F", "tar", "-X", "fetch"]
                .into_iter()
                .chain(["--checkpoint=fast", "--label=tierback"])
                .map(String::from)
                .collect()
        } else {
            vec!["pg_dump".into(), "--format=plain".into()]
        };
        // -w: never prompt for a password (cron has no terminal); it comes from PGPASSWORD.
        for a in [
            "-w",
            "-h",
            &self.host,
            "-p",
            &self.port.to_string(),
            "-U",
            &self.user,
        ] {
            argv.push(a.to_owned());
        }
        if argv[0] == "pg_dump" {
            argv.push("-d".into());
            argv.push(artifact.stem.clone());
        }
        let mut env = vec![("PGCONNECT_TIMEOUT".to_owned(), Secret::new("30"))];
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD".to_owned(), p.resolve()?));
        }
        Ok((argv, env))
    }
}

impl Source for PostgresSource {
    fn driver(&self) -> &'static str {
        "postgres"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        let sql = |stem: &str| ArtifactPlan {
            stem: stem.to_owned(),
            extension: "sql".into(),
        };
        let mut plan: Vec<ArtifactPlan> = self.databases.iter().map(|d| sql(d)).collect();
        if self.globals {
            plan.push(sql(GLOBALS));
        }
        if self.base_backup {
            plan.push(ArtifactPlan {
                stem: BASE.into(),
                extension: "tar".into(),
            });
        }
        Ok(plan)
    }

    fn open(&self, artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        let (argv, env) = self.command(artifact)?;
        let inner = ChildDump::spawn(&self.service, &argv, &env)?;
        if self.is_base(artifact) {
            return Ok(Box::new(inner));
        }
        Ok(Box::new(PgDump {
            inner,
            scan: DumpScan::default(),
        }))
    }

    /// Each database into a scratch database on the same server; the base backup through
    /// `pg_verifybackup`. The globals are not replayed: roles are cluster-wide and would change
    /// the live server.
    fn restore_test(&self, replay: &Replay<'_>) -> Result<Outcome> {
        if self.base_backup && replay.stem == BASE {
            return restore::base_backup(replay);
        }
        if replay.stem == GLOBALS {
            return Ok(Outcome::Skipped(
                "roles and tablespaces are cluster-wide: not replayed into a live server".into(),
            ));
        }
        let password = self.password.as_ref().map(|p| p.resolve()).transpose()?;
        let pg = restore::Psql {
            host: &self.host,
            port: self.port,
            user: &self.user,
            password: password.as_ref().map(|p| p.expose()),
        };
        restore::database(&pg, replay)
    }
}

/// A pg_dump stream, scanned for facts as it passes.
struct PgDump {
    inner: ChildDump,
    scan: DumpScan,
}

impl Read for PgDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan.feed(&buf[..n]);
        Ok(n)
    }
}

impl Dump for PgDump {
    fn abandon(self: Box<Self>) -> Option<crate::Error> {
        Box::new(self.inner).abandon()
    }

    fn finish(self: Box<Self>) -> Result<Facts> {
        let PgDump { inner, scan } = *self;
        let mut facts = Box::new(inner).finish()?;
        facts.extend(facts_of(&scan.into_facts()));
        Ok(facts)
    }
}

/// Reads a plain pg_dump stream line by line: the server version from its header comment, and
/// the rows of each `COPY table (…) FROM stdin;` block up to its `\.` line.
#[derive(Default)]
pub struct DumpScan {
    /// The start of the current line (only the first bytes matter; a data line may be huge).
    line: Vec<u8>,
    line_len: usize,
    copying: Option<String>,
    rows: BTreeMap<String, u64>,
    server_version: Option<String>,
}

/// Enough of a line to recognise `COPY <name> (…` and the version comment.
const LINE_PREFIX: usize = 1024;

impl DumpScan {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.take(&bytes[..i]);
                    self.end_line();
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.take(bytes);
                    return;
                }
            }
        }
    }

    fn take(&mut self, part: &[u8]) {
        let room = LINE_PREFIX.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
        self.line_len += part.len();
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let complete = self.line_len == line.len();
        self.line_len = 0;
        match &self.copying {
            Some(table) => {
                if complete && line == b"\\." {
                    self.copying = None;
                } else {
                    *self.rows.entry(table.clone()).or_default() += 1;
                }
            }
            None => {
                let text = String::from_utf8_lossy(&line);
                if let Some(rest) = text.strip_prefix("COPY ")
                    && text.ends_with("FROM stdin;")
                {
                    let table = rest.split(" (").next().unwrap_or(rest).trim();
                    self.rows.entry(table.to_owned()).or_default();
                    self.copying = Some(table.to_owned());
                } else if let Some(v) = text.strip_prefix("-- Dumped from database version ") {
                    self.server_version = Some(v.trim().to_owned());
                }
            }
        }
        self.line = line;
        self.line.clear();
    }

    pub fn into_facts(self) -> DumpFacts {
        DumpFacts {
            server_version: self.server_version,
            row_counts: Some(self.rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)\n\
        -- Dumped by pg_dump version 15.20\n\nCOPY public.accounts (id, name) FROM stdin;\n1\talice\n2\tbob\n3\t\\\\.x\n\\.\n\n\
        COPY public.\"Empty\" (id) FROM stdin;\n\\.\n\nCOPY public.notes (id, body) FROM stdin;\n1\tCOPY x (a) FROM stdin;\n\\.\n";

    fn scan(chunks: &[&[u8]]) -> Facts {
        let mut s = DumpScan::default();
        for c in chunks {
            s.feed(c);
        }
        facts_of(&s.into_facts())
    }

    #[test]
    fn counts_rows_per_table_and_reads_the_version() {
        let f = scan(&[DUMP.as_bytes()]);
        assert_eq!(f["server_version"], "15.20 (Debian 15.20-0+deb12u1)");
        assert_eq!(
            f["row_counts"],
            serde_json::json!({"public.accounts": 3, "public.\"Empty\"": 0, "public.notes": 1})
        );
    }

    #[test]
    fn any_split_of_the_stream_gives_the_same_facts() {
        let whole = scan(&[DUMP.as_bytes()]);
        let bytes = DUMP.as_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(scan(&[&bytes[..cut], &bytes[cut..]]), whole, "cut at {cut}");
        }
        let ones: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(scan(&ones), whole);
    }

    #[test]
    fn the_password_is_in_the_environment_never_the_argv() {
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("TIERBACK_TEST_PG_PASSWORD", "hunter2-secret") };
        let src = PostgresSource {
            service: "postgresql".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            user: "backup".into(),
            password: Some(SecretRef::parse("env:TIERBACK_TEST_PG_PASSWORD").unwrap()),
            databases: vec!["zentoria_main".into()],
            globals: true,
            base_backup: true,
        };
        let plan = src.plan().unwrap();
        assert_eq!(
            plan.iter().map(|p| p.stem.as_str()).collect::<Vec<_>>(),
            ["zentoria_main", "globals", "base"]
        );
        for a in &plan {
            let (argv, env) = src.command(a).unwrap();
            assert!(argv.iter().all(|x| !x.contains("hunter2")), "{argv:?}");
            assert!(
                env.iter()
                    .any(|(k, v)| k == "PGPASSWORD" && v.expose() == "hunter2-secret")
            );
        }
        let (argv, _) = src.command(&plan[1]).unwrap();
        assert_eq!(argv[..2], ["pg_dumpall", "--globals-only"]);
        let (argv, _) = src.command(&plan[0]).unwrap();
        assert_eq!(argv.last().unwrap(), "zentoria_main");
        let (argv, _) = src.command(&plan[2]).unwrap();
        assert_eq!(argv[..3], ["pg_basebackup", "-D", "-"]);
    }
}
