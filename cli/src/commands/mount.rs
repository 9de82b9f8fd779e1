//! `tierback mount MOUNTPOINT [--cache-size SIZE] [--daemon]`: the read-only view of every backup
//! on every tier. Resolves the config into the fs crate's settings; the fs crate does the rest.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tierback_engine::config::{Config, TierConfig, TierKind};
use tierback_engine::id::TierName;
use tierback_engine::restic::{ResticStore, ResticTier};
use tierback_engine::store::{Store, open_tier};
use tierback_engine::units::parse_size;
use tierback_fs::catalog::SqliteCatalog;
use tierback_fs::coalesce::CoalescingStore;
use tierback_fs::fuse::MountSpec;
use tierback_fs::mount::{ServeOptions, check_mountpoint, serve};
use tierback_fs::{Filesystem, Settings};
use tracing::warn;

use super::EXIT_OK;

/// The longest a remote tier's client waits for one request in the mount (a shorter `timeout`
/// of the tier stands): a tier that stops answering makes a read EIO within about three of these
/// (the S3 client tries three times), on the reading thread, with no thread left behind.
const REMOTE_REQUEST_TIMEOUT_SECS: u64 = 10;
/// 1 MiB kernel read-ahead on the mount (FACTS.md: about 40 % faster than the default 128 KiB).
const READ_AHEAD_KB: u32 = 1024;

pub fn run(
    config: &Config,
    mountpoint: &Path,
    cache_size: Option<&str>,
    daemon: bool,
) -> Result<i32> {
    let cache_bytes = match cache_size {
        Some(s) => parse_size(s)
            .map_err(anyhow::Error::msg)
            .context("--cache-size")?,
        None => config.mount.cache_size,
    };
    let tier_dirs: Vec<PathBuf> = config
        .tiers
        .iter()
        .filter_map(|t| match &t.kind {
            TierKind::Local { path, .. } | TierKind::Restic { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    let mountpoint = check_mountpoint(mountpoint, &tier_dirs)?;
    let m = &config.mount;
    let uid = match &m.owner {
        Some(o) => resolve_user(o)?,
        None => unsafe { libc::geteuid() },
    };
    let gid = match &m.group {
        Some(g) => resolve_group(g)?,
        None => unsafe { libc::getegid() },
    };
    let settings = Settings {
        uid,
        gid,
        file_mode: m.file_mode as u16,
        dir_mode: m.dir_mode as u16,
        cache_bytes: usize::try_from(cache_bytes).unwrap_or(usize::MAX),
        // More workers than cores: a worker waiting on the tier's I/O leaves its core to another
        // that inflates. Remote tiers need several ranged GETs in flight to hide their latency
        // (a few ms each, with a long tail), so they get more.
        readahead_threads: if config.tiers.len() > 1 {
            2 * config.defaults.threads.max(1) + 6
        } else {
            2 * config.defaults.threads.max(1)
        },
    };
    let threads = config.defaults.threads.clamp(1, 8);
    let opts = ServeOptions {
        spec: MountSpec {
            mountpoint,
            threads,
            allow_other: m.allow_other,
        },
        daemon,
        read_ahead_kb: READ_AHEAD_KB,
        // A daemon has no terminal: its warnings and integrity errors go beside the catalog
        // unless [mount] log_file says otherwise.
        log_file: Some(m.log_file.clone().unwrap_or_else(|| {
            config
                .catalog_path
                .parent()
                .unwrap_or(Path::new("."))
                .join("mount.log")
        })),
        poll: Duration::from_secs(1),
    };
    let config = config.clone();
    serve(opts, move || {
        build(&config, settings).map_err(|e| format!("{e:#}"))
    })?;
    Ok(EXIT_OK)
}

/// A tier's store as the mount reads it.
fn open_store(tier: &TierConfig) -> tierback_engine::Result<Arc<dyn Store>> {
    Ok(match &tier.kind {
        // Read block by block like a local tier, with the repository opened (key derivation,
        // index) in the background now rather than by the first read.
        TierKind::Restic { .. } => {
            let store = Arc::new(ResticStore::new(ResticTier::open(tier)?));
            let opening = Arc::clone(&store);
            let name = tier.name.to_string();
            std::thread::spawn(move || {
                if let Err(e) = opening.open_now() {
                    warn!("tier {name}: {e}");
                }
            });
            store
        }
        TierKind::Local { .. } => Arc::from(open_tier(&with_read_deadline(tier))?),
        // Sequential reads of a remote tier coalesced into a few large ranged GETs.
        _ => Arc::new(CoalescingStore::new(Arc::from(open_tier(
            &with_read_deadline(tier),
        )?))),
    })
}

/// Opens the catalog and every tier. A tier that cannot be opened still appears in the tree;
/// its reads fail with EIO and say why.
fn build(config: &Config, settings: Settings) -> Result<Filesystem> {
    let catalog = Arc::new(SqliteCatalog::open(config.catalog_path.clone())?);
    let mut stores: HashMap<TierName, Arc<dyn Store>> = HashMap::new();
    for tier in &config.tiers {
        match open_store(tier) {
            Ok(store) => {
                stores.insert(tier.name.clone(), store);
            }
            Err(e) => warn!("tier {}: {e}; its files will fail with EIO", tier.name),
        }
    }
    let tiers = config.tiers.iter().map(|t| t.name.clone()).collect();
    let fs = Filesystem::new(catalog, tiers, stores, settings)?;
    Ok(match &config.mount.audit_log {
        Some(path) => fs.with_audit_log(
            tierback_fs::audit::AuditLog::open(path)
                .with_context(|| format!("opening the audit log {}", path.display()))?
                .with_max_size(config.mount.audit_log_max_size),
        ),
        None => fs,
    })
}

/// `tier` with its client's per-request timeout capped for the mount: a reader waits on a hung
/// tier for that client's own timeouts, not for a wrapper's thread.
fn with_read_deadline(tier: &TierConfig) -> TierConfig {
    let mut tier = tier.clone();
    match &mut tier.kind {
        TierKind::S3 { timeout_secs, .. } | TierKind::Rclone { timeout_secs, .. } => {
            *timeout_secs = (*timeout_secs).min(REMOTE_REQUEST_TIMEOUT_SECS);
        }
        TierKind::Local { .. } | TierKind::Restic { .. } => {}
    }
    tier
}

fn resolve_user(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = CString::new(name)?;
    // SAFETY: getpwnam returns a pointer to static storage or null; read before any other call.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        bail!("[mount] owner {name:?}: no such user");
    }
    Ok(unsafe { (*pw).pw_uid })
}

fn resolve_group(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = CString::new(name)?;
    // SAFETY: as for getpwnam.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        bail!("[mount] group {name:?}: no such group");
    }
    Ok(unsafe { (*gr).gr_gid })
}
