//! Sources: where backups come from. A [`Source`] plans its artifacts (one per PostgreSQL
//! database, one RDB, one tar…) and opens each as a [`Dump`]: a byte stream plus, once the stream
//! has ended, the facts about it or the reason it failed.

pub mod command;
pub mod files;
pub mod http;
pub mod minio;
pub mod n8n;
pub mod piped;
pub mod postgres;
pub mod postgres_wal;
pub mod process;
pub mod qdrant;
pub mod redis;
pub mod vault;

use std::io::Read;

use crate::Result;
use crate::catalog::ArtifactRecord;
use crate::config::{Driver, ServiceConfig};
use crate::restore_test::{Outcome, Replay};

/// Facts recorded with an artifact (server version, row counts, paths, …), as JSON.
pub type Facts = serde_json::Map<String, serde_json::Value>;

/// A driver's typed facts as the JSON object stored with its artifact (and read back by its
/// restore test through [`Replay::facts`]).
pub fn facts_of(facts: &impl serde::Serialize) -> Facts {
    match serde_json::to_value(facts) {
        Ok(serde_json::Value::Object(map)) => map,
        other => unreachable!("facts are a struct of plain values: {other:?}"),
    }
}

/// One file a backup produces: `<stem>_<HHMMSS>.<extension>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPlan {
    pub stem: String,
    pub extension: String,
}

pub trait Source {
    fn driver(&self) -> &'static str;
    /// The artifacts one backup of this service produces.
    fn plan(&self) -> Result<Vec<ArtifactPlan>>;
    /// Starts producing one artifact's bytes.
    fn open(&self, artifact: &ArtifactPlan) -> Result<Box<dyn Dump>>;
    /// These artifacts are now in the catalog: a source that consumes its input (a WAL
    /// spool) may let go of it.
    fn published(&self, _artifacts: &[ArtifactPlan]) -> Result<()> {
        Ok(())
    }
    /// The restore test of one stored artifact: replayed into a scratch target and compared
    /// with the facts recorded when it was taken. By default every block is read and verified
    /// (there is nothing to replay it into alone).
    fn restore_test(&self, replay: &Replay<'_>) -> Result<Outcome> {
        replay.read_every_block()
    }
    /// A restore test of what `tier` holds as a whole, beyond the newest backup (a WAL archive
    /// is only as good as its unbroken chain); `None`: nothing to check.
    fn restore_test_archive(&self, _artifacts: &[ArtifactRecord], _tier: &str) -> Option<Outcome> {
        None
    }
}

/// A dump in progress. Read it to its end, then call [`Dump::finish`]: only a dump that
/// finishes cleanly may be kept. Dropping an unfinished dump stops its producer.
pub trait Dump: Read + Send {
    fn finish(self: Box<Self>) -> Result<Facts>;

    /// The reader stopped before the end with its own error (a full disk, say): stop the
    /// producer and return the source's own failure if it had already failed, which explains
    /// more. Must not block: a producer still writing into a full pipe would never end. The
    /// default drops the dump (producers see a closed pipe and stop).
    fn abandon(self: Box<Self>) -> Option<crate::Error> {
        None
    }
}

/// The source a service's config describes. `state_dir` is where a source may remember what it
/// must undo after a crash (the lock directory).
pub fn for_service(service: &ServiceConfig, state_dir: &std::path::Path) -> Box<dyn Source> {
    let name = service.name.to_string();
    match &service.driver {
        Driver::Command {
            argv,
            artifact,
            extension,
            env,
        } => Box::new(command::CommandSource {
            service: name,
            argv: argv.clone(),
            env: env.clone(),
            plan: ArtifactPlan {
                stem: artifact.clone(),
                extension: extension.clone(),
            },
        }),
        Driver::Files { paths } => Box::new(files::FilesSource {
            service: name,
            paths: paths.clone(),
        }),
        Driver::Postgres {
            host,
            port,
            user,
            password,
            databases,
            globals,
            base_backup,
        } => Box::new(postgres::PostgresSource {
            service: name,
            host: host.clone(),
            port: *port,
            user: user.clone(),
            password: password.clone(),
            databases: databases.clone(),
            globals: *globals,
            base_backup: *base_backup,
        }),
        Driver::PostgresWal { spool, .. } => Box::new(postgres_wal::WalSpool {
            service: name,
            spool: spool.clone(),
        }),
        Driver::Redis {
            host,
            port,
            password,
            aof_dir,
        } => Box::new(redis::RedisSource {
            service: name,
            host: host.clone(),
            port: *port,
            password: password.clone(),
            aof_dir: aof_dir.clone(),
            state_dir: state_dir.to_owned(),
        }),
        Driver::Qdrant {
            url,
            transport,
            api_key,
            collections,
            full,
        } => Box::new(qdrant::QdrantSource {
            service: name,
            url: url.clone(),
            transport: transport.clone(),
            api_key: api_key.clone(),
            collections: collections.clone(),
            full: *full,
        }),
        Driver::Vault {
            url,
            transport,
            token,
        } => Box::new(vault::VaultSource {
            service: name,
            url: url.clone(),
            transport: transport.clone(),
            token: token.clone(),
        }),
        Driver::N8n {
            url,
            transport,
            api_key,
        } => Box::new(n8n::N8nSource {
            service: name,
            url: url.clone(),
            transport: transport.clone(),
            api_key: api_key.clone(),
        }),
        Driver::Minio {
            endpoint,
            transport,
            region,
            access_key,
            secret_key,
            buckets,
            exclude,
        } => Box::new(minio::MinioSource {
            service: name,
            endpoint: endpoint.clone(),
            transport: transport.clone(),
            region: region.clone(),
            access_key: access_key.clone(),
            secret_key: secret_key.clone(),
            buckets: buckets.clone(),
            exclude: exclude.clone(),
        }),
    }
}
