//! Taking a backup: source → blocked-gzip writer → local tier → catalog.
//!
//! Nothing is visible until everything worked: each artifact is written under a temporary name
//! in the tier's staging directory and fsynced; only when every artifact of the backup is
//! complete and its source exited cleanly are the sidecars and then the `.gz` files renamed into
//! place, and the catalog records the backup in one transaction. A failure or a `kill -9` at any
//! point leaves no partial file under the tier and no catalog row pointing at a missing file.

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::artifact::metadata::{ArtifactMetadata, backup_id};
use crate::artifact::writer::{WriteOptions, Written, write_artifact};
use crate::catalog::{Catalog, NewArtifact, RunKind, RunStatus};
use crate::clock::now;
use crate::config::{Config, ServiceConfig, TierKind};
use crate::error::IoContext;
use crate::id::{RunId, TierName};
use crate::layout;
use crate::lock::ServiceLock;
use crate::source::Facts;
use crate::store::Store;
use crate::store::local::{LocalStore, sync_dir};
use crate::{Error, Result};

/// Progress callbacks for people watching a terminal; the engine does not draw anything itself.
pub trait Progress: Sync {
    fn start(&self, _what: &str) {}
    fn advance(&self, _raw_bytes: u64) {}
    fn done(&self) {}
}

/// No progress display (cron, pipes, tests).
pub struct Quiet;
impl Progress for Quiet {}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub service: String,
    pub backup_id: String,
    pub taken_at: i64,
    pub artifacts: Vec<ArtifactReport>,
    pub seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ArtifactReport {
    pub file: String,
    pub key: String,
    pub raw_size: u64,
    pub stored_size: u64,
    pub blocks: usize,
}

/// Where per-service locks live: beside the catalog.
pub fn lock_dir(config: &Config) -> PathBuf {
    crate::config::lock_dir_of(&config.catalog_path)
}

/// Opens the first tier, where backups are written.
pub fn primary_store(config: &Config) -> Result<LocalStore> {
    let tier = config.primary_tier()?;
    match &tier.kind {
        TierKind::Local { path, group, mode } => {
            LocalStore::open_with_access(tier.name.as_str(), path, group.as_deref(), *mode)
        }
        _ => unreachable!("config validation requires the first tier to be local"),
    }
}

/// Takes one backup of `service` now.
pub fn backup_service(
    config: &Config,
    catalog: &mut Catalog,
    service: &ServiceConfig,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let name = service.name.as_str();
    let _span = tracing::info_span!("backup", service = name).entered();
    let _lock = ServiceLock::acquire(&lock_dir(config), name)?;
    catalog.reap_interrupted()?;
    let store = primary_store(config)?;
    store.remove_stale_partials()?;
    let tier = config.primary_tier()?.name.clone();

    let run = catalog.begin_run(name, RunKind::Backup)?;
    let started = Instant::now();
    let result = take(config, catalog, service, &store, &tier, run, progress);
    match &result {
        Ok(r) => {
            catalog.finish_run(run, RunStatus::Ok, None, None)?;
            tracing::debug!(artifacts = r.artifacts.len(), "backup recorded");
        }
        Err(e) => {
            let tail = match e {
                Error::Source { stderr_tail, .. } if !stderr_tail.is_empty() => {
                    Some(stderr_tail.as_str())
                }
                _ => None,
            };
            catalog.finish_run(run, RunStatus::Failed, Some(&e.to_string()), tail)?;
        }
    }
    result.map(|mut r| {
        r.seconds = started.elapsed().as_secs_f64();
        r
    })
}

struct Staged {
    tmp: PathBuf,
    file: String,
    key: String,
    written: Written,
    facts: Facts,
}

fn take(
    config: &Config,
    catalog: &mut Catalog,
    service: &ServiceConfig,
    store: &LocalStore,
    tier: &TierName,
    run: RunId,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let name = service.name.as_str();
    // Names carry the second: two backups of a service in the same second would collide.
    let mut taken_at = now();
    while catalog.backup_exists(&service.name, taken_at)? {
        std::thread::sleep(Duration::from_millis(200));
        taken_at = now();
    }
    let source = service.driver.as_ref();
    let opts = WriteOptions {
        block_size: service.block_size,
        level: service.compression_level,
        threads: config.defaults.threads,
    };

    let plans = source.plan()?;
    let bid = backup_id(name, taken_at);
    if plans.is_empty() {
        // An empty WAL spool: nothing happened since the last run, and no empty backup is made.
        return Ok(BackupReport {
            service: name.to_owned(),
            backup_id: bid,
            taken_at,
            artifacts: Vec::new(),
            seconds: 0.0,
        });
    }
    let mut staged: Vec<Staged> = Vec::new();
    let mut temps: Vec<PathBuf> = Vec::new();
    let outcome = (|| {
        for plan in &plans {
            let file = layout::artifact_file(&plan.stem, &plan.extension, taken_at);
            let key = layout::object_key(name, taken_at, &file);
            let tmp = store.temp_path(&format!("{file}.gz"));
            let out = std::fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
            // Registered before writing so that a failure below removes the temporary file.
            temps.push(tmp.clone());
            progress.start(&format!("{name}: {file}"));
            let mut dump = source.open(plan)?;
            let mut out = BufWriter::with_capacity(1 << 20, out);
            let written = write_artifact(&mut dump, &mut out, opts, &|n| progress.advance(n));
            progress.done();
            let written = match written {
                Ok(w) => w,
                // Name the file, so a full disk says which one.
                Err(Error::Io { context, source }) if context == "writing the artifact" => {
                    let e = Error::io(format!("writing {}", tmp.display()), source);
                    return Err(dump.abandon().unwrap_or(e));
                }
                Err(e) => return Err(dump.abandon().unwrap_or(e)),
            };
            let facts = dump.finish()?;
            let out = out
                .into_inner()
                .map_err(|e| Error::io(format!("writing {}", tmp.display()), e.into_error()))?;
            out.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
            staged.push(Staged {
                tmp,
                file,
                key,
                written,
                facts,
            });
        }
        Ok(())
    })();
    // On any failure below, nothing staged stays behind (renamed files are already gone from
    // the staging names, so this only removes what was not published).
    let discard_staged = || {
        for tmp in &temps {
            let _ = std::fs::remove_file(tmp);
        }
    };
    if let Err(e) = outcome {
        discard_staged();
        return Err(e);
    }

    // Publish: sidecars first, the .gz last, so a visible .gz always has its sidecars.
    let published = publish(
        store,
        &staged,
        name,
        &bid,
        taken_at,
        source.driver(),
        service.compression_level,
    );
    // A backup the catalog does not record must not stay on the tier, half (a lone `.idx`
    // when the disk filled between sidecars) or whole (when the catalog's disk is full).
    let unpublish = || {
        for st in &staged {
            let mut keys = ArtifactMetadata::sidecar_keys(&st.key);
            keys.push(st.key.clone());
            for key in keys {
                if let Err(e) = store.delete(&key) {
                    tracing::warn!(key, "cannot remove a file of the failed backup: {e}");
                }
            }
        }
    };
    let artifacts = match published {
        Ok(a) => a,
        Err(e) => {
            unpublish();
            discard_staged();
            return Err(e);
        }
    };
    if let Err(e) = catalog.record_backup(
        &service.name,
        taken_at,
        source.driver(),
        Some(run),
        tier,
        &artifacts,
    ) {
        unpublish();
        return Err(e);
    }
    source.published(&plans)?;

    Ok(BackupReport {
        service: name.to_owned(),
        backup_id: bid,
        taken_at,
        artifacts: staged
            .iter()
            .map(|s| ArtifactReport {
                file: s.file.clone(),
                key: s.key.clone(),
                raw_size: s.written.raw_size(),
                stored_size: s.written.stored_size(),
                blocks: s.written.index.entries.len(),
            })
            .collect(),
        seconds: 0.0,
    })
}

/// Renames staged artifacts into place with their sidecars; returns what the catalog records.
fn publish(
    store: &LocalStore,
    staged: &[Staged],
    name: &str,
    bid: &str,
    taken_at: i64,
    driver: &str,
    level: i32,
) -> Result<Vec<NewArtifact>> {
    let mut artifacts = Vec::new();
    for s in staged {
        let meta = ArtifactMetadata {
            service: name.to_owned(),
            backup_id: bid.to_owned(),
            file: s.file.clone(),
            taken_at: layout::rfc3339(taken_at),
            taken_at_unix: taken_at,
            driver: driver.to_owned(),
            raw_size: s.written.raw_size(),
            raw_sha256: hex::encode(s.written.raw_sha256),
            stored_size: s.written.stored_size(),
            stored_sha256: hex::encode(s.written.stored_sha256),
            block_size: s.written.index.block_size,
            block_count: s.written.index.entries.len() as u64,
            compression_level: level,
            tool: crate::TOOL_VERSION.to_owned(),
            facts: s.facts.clone(),
        };
        for (key, bytes) in meta.sidecars(&s.key, &s.written.index) {
            store.put_bytes(&key, &bytes)?;
        }
        store.put_file(&s.key, &s.tmp)?;
        artifacts.push(NewArtifact {
            file: s.file.clone(),
            key: s.key.clone(),
            raw_size: meta.raw_size,
            raw_sha256: meta.raw_sha256,
            stored_size: meta.stored_size,
            stored_sha256: meta.stored_sha256,
            compression_level: level,
            index: s.written.index.clone(),
            facts: serde_json::Value::Object(s.facts.clone()),
        });
    }
    if let Some(dir) = staged
        .first()
        .and_then(|s| store.path_of(&s.key).parent().map(|p| p.to_owned()))
        && let Some(service_dir) = dir.parent()
    {
        sync_dir(service_dir)?;
    }
    Ok(artifacts)
}
