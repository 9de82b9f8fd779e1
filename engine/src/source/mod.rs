//! Sources: where backups come from. A [`Source`] plans its artifacts (one per PostgreSQL
//! database, one RDB, one tar…) and opens each as a [`Dump`]: a byte stream plus, once the stream
//! has ended, the facts about it or the reason it failed.

pub mod http;
pub mod piped;
pub mod process;

/// Every driver: its module (`source/<name>.rs`, which owns its settings, its facts and its
/// restore test) and its entry in [`DRIVERS`]. A new driver is one file and its name here.
macro_rules! drivers {
    ($($driver:ident),* $(,)?) => {
        $(pub mod $driver;)*
        /// Every driver tierback knows, by the name `driver = "…"` takes.
        pub static DRIVERS: &[Driver] = &[$(Driver::of::<$driver::Settings>()),*];
    };
}
drivers![
    command,
    files,
    postgres,
    postgres_wal,
    redis,
    qdrant,
    vault,
    n8n,
    minio,
    ollama,
];

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::DeValue;

use crate::Result;
use crate::catalog::ArtifactRecord;
use crate::config::{Mistake, Retention, ServiceConfig, ServiceContext};
use crate::id::{ServiceName, TierName};
use crate::restore_test::{Outcome, Replay};

/// A driver's keys as written in its service's table (`#[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]`), checked into the service's [`Source`] when the config loads.
pub trait DriverSettings: DeserializeOwned {
    /// What `driver = "…"` names it.
    const DRIVER: &'static str;
    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake>;
}

/// Reads a driver's settings from its service's table (without the keys every service
/// shares) and checks them into the service's source.
pub type Configure =
    fn(Spanned<DeValue<'_>>, &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake>;

/// One entry of [`DRIVERS`].
pub struct Driver {
    pub name: &'static str,
    /// The service keys its settings take.
    pub keys: fn() -> &'static [&'static str],
    pub configure: Configure,
}

impl Driver {
    const fn of<S: DriverSettings>() -> Driver {
        Driver {
            name: S::DRIVER,
            keys: crate::config::keys_of::<S>,
            configure: configure::<S>,
        }
    }
}

fn configure<S: DriverSettings>(
    table: Spanned<DeValue<'_>>,
    service: &ServiceContext<'_>,
) -> Result<Arc<dyn Source>, Mistake> {
    let settings: S =
        crate::config::from_table(table).map_err(|(span, m)| service.error(span, m))?;
    settings.build(service)
}

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

/// A configured driver: what one service's backups are, and how a restore test checks them.
pub trait Source: std::fmt::Debug + Send + Sync + std::any::Any {
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
    fn restore_test_archive(
        &self,
        _artifacts: &[ArtifactRecord],
        _tier: &TierName,
    ) -> Option<Outcome> {
        None
    }
    /// This driver's retention when its service sets none.
    fn default_retention(&self) -> Option<Retention> {
        None
    }
    /// Checks what this service's settings say about the others, once every one is read.
    fn check_services(
        &self,
        _services: &BTreeMap<ServiceName, ServiceConfig>,
    ) -> Result<(), Mistake> {
        Ok(())
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
