//! The TOML configuration (keys in DESIGN.md). Unknown keys are errors that name the key and its
//! line; values are checked here, once, so the rest of the engine works with typed settings.
//! This module reads the shared sections; a service's driver keys are read by the driver's own
//! module in `source/` ([`service`] hands them over).

mod checks;
mod mount;
mod retention;
mod service;
#[cfg(test)]
mod tests;
mod tier;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use self::checks::{check_block_size, check_level, line_of, transport_of};
pub use self::mount::MountConfig;
pub use self::retention::Retention;
pub use self::service::{ServiceConfig, ServiceContext, from_table, keys_of};
pub use self::tier::{
    DEFAULT_NONCURRENT_EXPIRY, LOCAL_VERIFY_WINDOW, REMOTE_VERIFY_WINDOW, S3Checksums,
    ServerSideEncryption, TierConfig, TierKind,
};
use crate::id::ServiceName;
use crate::{Error, Result};

/// Where `--config` / `TIERBACK_CONFIG` point when neither is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tierback/tierback.toml";

/// The commented example that `tierback init` writes: the seed's services, tiers and schedules.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../docs/tierback.example.toml");

/// A mistake in the file: where (a byte range of the text) and what, in words.
pub type Mistake = (std::ops::Range<usize>, String);

/// The loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub catalog_path: PathBuf,
    pub defaults: Defaults,
    /// In the order written: the first is where backups are written.
    pub tiers: Vec<TierConfig>,
    pub mount: MountConfig,
    pub services: BTreeMap<ServiceName, ServiceConfig>,
    pub jobs: Jobs,
    pub metrics: MetricsConfig,
}

/// When `tierback run` does the jobs that are not backups (cron expressions, UTC). The defaults
/// are the seed's: verification at 07:00, cleanup at 23:00; sync on every run (copy policies
/// decide what each tier receives).
#[derive(Debug, Clone)]
pub struct Jobs {
    /// Empty: every run.
    pub sync: Vec<String>,
    pub verify: Vec<String>,
    pub prune: Vec<String>,
    /// Every service's newest backup replayed and compared (`restore-test`).
    pub restore_test: Vec<String>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            sync: Vec::new(),
            verify: vec!["0 7 * * *".into()],
            prune: vec!["0 23 * * *".into()],
            // The seed's weekly full restore test: Sunday 14:00.
            restore_test: vec!["0 14 * * 0".into()],
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Prometheus textfile-collector file, rewritten after each `run`.
    pub textfile: Option<PathBuf>,
    /// Address for `tierback metrics --serve` (default 127.0.0.1:9188).
    pub listen: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub compression_level: i32,
    pub block_size: usize,
    /// Compression and decompression threads; default: every core.
    pub threads: usize,
}

/// The lock directory beside the catalog (also where a source remembers what it must undo after
/// a crash).
pub fn lock_dir_of(catalog_path: &Path) -> PathBuf {
    catalog_path
        .parent()
        .map(|p| p.join("locks"))
        .unwrap_or_else(|| PathBuf::from("locks"))
}

/// The file being read: what errors name, and what relative paths are relative to.
pub(crate) struct ConfigFile<'a> {
    path: &'a Path,
    text: &'a str,
}

impl ConfigFile<'_> {
    fn error(&self, message: String) -> Error {
        Error::Config {
            path: self.path.to_owned(),
            message,
        }
    }

    /// An error at a place in the file: named by its line.
    fn at(&self, span: std::ops::Range<usize>, message: String) -> Error {
        self.error(format!(
            "line {}: {message}",
            line_of(self.text, span.start)
        ))
    }

    fn resolve(&self, path: PathBuf) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            None if path.is_relative() => Path::new(".").join(path),
            _ => path,
        }
    }
}

// ---- the file as written (services: read in a second step, see [`service`]) ---------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    catalog: Option<RawCatalog>,
    defaults: Option<RawDefaults>,
    #[serde(default)]
    tiers: IndexMap<String, Spanned<tier::RawTier>>,
    mount: Option<mount::RawMount>,
    /// Each service's table is read by [`service::parse_all`], from the text again.
    #[serde(default, rename = "services")]
    _services: IndexMap<String, serde::de::IgnoredAny>,
    jobs: Option<RawJobs>,
    metrics: Option<RawMetrics>,
    vault: Option<Spanned<RawVault>>,
}

/// `[vault]`: how `vault:` secret references reach Vault (address and token stay the Vault
/// CLI's `VAULT_ADDR` and `VAULT_TOKEN`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    ca_file: Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    sync: Option<Spanned<Vec<String>>>,
    verify: Option<Spanned<Vec<String>>>,
    prune: Option<Spanned<Vec<String>>>,
    restore_test: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    textfile: Option<PathBuf>,
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    compression_level: Option<Spanned<i64>>,
    block_size: Option<Spanned<String>>,
    threads: Option<Spanned<i64>>,
}

// ---- loading -------------------------------------------------------------------------------

impl Config {
    /// Reads and validates `path`. Errors name the file, the key and its line.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }
    /// Parses config text; `path` is only used in messages and for relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let file = ConfigFile { path, text };
        let err = |message: String| file.error(message);
        let at = |span, message| file.at(span, message);
        let resolve = |p| file.resolve(p);
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_owned()))?;

        let catalog_path = resolve(
            raw.catalog
                .and_then(|c| c.path)
                .unwrap_or_else(|| PathBuf::from("/var/lib/tierback/catalog.db")),
        );

        let rd = raw.defaults.unwrap_or(RawDefaults {
            compression_level: None,
            block_size: None,
            threads: None,
        });
        let compression_level = match &rd.compression_level {
            Some(l) => check_level(l).map_err(|m| at(l.span(), m))?,
            None => 9,
        };
        let block_size = match &rd.block_size {
            Some(b) => check_block_size(b).map_err(|m| at(b.span(), m))?,
            None => 1 << 20,
        };
        let threads = match &rd.threads {
            Some(t) if (1..=256).contains(t.get_ref()) => *t.get_ref() as usize,
            Some(t) => {
                return Err(at(
                    t.span(),
                    "defaults.threads must be between 1 and 256".into(),
                ));
            }
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let defaults = Defaults {
            compression_level,
            block_size,
            threads,
        };

        let tiers = raw
            .tiers
            .into_iter()
            .map(|(name, t)| tier::parse(&file, name, t))
            .collect::<Result<Vec<_>>>()?;
        if let Some(first) = tiers.first()
            && !matches!(first.kind, TierKind::Local { .. })
        {
            return Err(err(format!(
                "the first tier listed ([tiers.{}]) is where backups are written and must be type = \"local\"",
                first.name
            )));
        }
        let mount = MountConfig::parse(&file, raw.mount)?;
        let services = service::parse_all(&file, &tiers, &defaults, &lock_dir_of(&catalog_path))?;

        let mut jobs = Jobs::default();
        if let Some(j) = raw.jobs {
            for (field, value, name) in [
                (&mut jobs.sync, j.sync, "sync"),
                (&mut jobs.verify, j.verify, "verify"),
                (&mut jobs.prune, j.prune, "prune"),
                (&mut jobs.restore_test, j.restore_test, "restore_test"),
            ] {
                if let Some(v) = value {
                    for expr in v.get_ref() {
                        crate::schedule::parse(expr)
                            .map_err(|m| at(v.span(), format!("jobs.{name}: {m}")))?;
                    }
                    *field = v.into_inner();
                }
            }
        }
        if let Some(v) = raw.vault {
            let v = v.into_inner();
            crate::vault::set_transport(
                transport_of(&v.ca_file, v.allow_insecure_http, &resolve)
                    .map_err(|(sp, m)| at(sp, m))?,
            );
        }
        let metrics = raw
            .metrics
            .map(|m| MetricsConfig {
                textfile: m.textfile.map(&resolve),
                listen: m.listen,
            })
            .unwrap_or_default();

        Ok(Config {
            path: path.to_owned(),
            catalog_path,
            defaults,
            tiers,
            mount,
            services,
            jobs,
            metrics,
        })
    }

    /// The tier backups are written to.
    pub fn primary_tier(&self) -> Result<&TierConfig> {
        self.tiers.first().ok_or_else(|| Error::Config {
            path: self.path.clone(),
            message: "no [tiers.*] configured: add a local tier (see `tierback init`)".into(),
        })
    }

    pub fn tier(&self, name: &str) -> Result<&TierConfig> {
        self.tiers
            .iter()
            .find(|t| t.name.as_str() == name)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no tier named {name:?} in {} (tiers: {})",
                    self.path.display(),
                    self.tiers
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The retention for `service`'s backups on `tier`: the service's own for that tier, the
    /// service's own for every tier, or the tier's.
    pub fn retention_for<'a>(&'a self, service: &str, tier: &'a TierConfig) -> &'a Retention {
        let own = self.service(service).ok();
        own.and_then(|s| s.tier_retention.get(tier.name.as_str()))
            .or_else(|| own.and_then(|s| s.retention.as_ref()))
            .unwrap_or(&tier.retention)
    }

    /// Which of `service`'s backups `tier` receives: the service's own `copy` or the tier's.
    pub fn copy_for<'a>(&'a self, service: &str, tier: &'a TierConfig) -> &'a [String] {
        self.service(service)
            .ok()
            .and_then(|s| s.copy.as_deref())
            .unwrap_or(&tier.copy)
    }

    pub fn service(&self, name: &str) -> Result<&ServiceConfig> {
        self.services
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no service named {name:?} in {} (services: {})",
                    self.path.display(),
                    self.services
                        .keys()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}
