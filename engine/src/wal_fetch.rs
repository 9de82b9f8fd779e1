//! `tierback wal-fetch SERVICE %f %p`: PostgreSQL's `restore_command` for point-in-time
//! recovery. The WAL file is found in the catalog, read through the verified block reader from
//! the first tier holding an intact copy (the next one if a copy fails its check), and written
//! to `%p` under a temporary name, fsynced and renamed: PostgreSQL never replays a partial or
//! unverified segment.

use std::path::Path;

use crate::artifact::reader::ArtifactReader;
use crate::catalog::{Catalog, CopyState};
use crate::config::Config;
use crate::error::IoContext;
use crate::source::postgres_wal::WalSpool;
use crate::store::open_tier;
use crate::{Error, Result};

#[derive(Debug)]
pub enum Fetched {
    /// Written to the destination from this tier.
    Restored { tier: String, bytes: u64 },
    /// Not in the archive (PostgreSQL asks for files that may not exist, such as the next
    /// timeline's history; recovery ends at the last one that does).
    NotArchived,
}

pub fn fetch(
    config: &Config,
    catalog: &Catalog,
    service: &str,
    wal_file: &str,
    dest: &Path,
) -> Result<Fetched> {
    let svc = config.service(service)?;
    if svc.driver_as::<WalSpool>().is_none() {
        return Err(Error::Invalid(format!(
            "service {service:?} is a {} service, not postgres_wal: it holds no WAL",
            svc.driver.driver()
        )));
    }
    let Some(artifact) = catalog.find_wal(&svc.name, wal_file)? else {
        return Ok(Fetched::NotArchived);
    };
    let index = catalog.block_index(artifact.id)?;
    let mut failures = Vec::new();
    for tier in &config.tiers {
        if artifact
            .copy_on(&tier.name)
            .is_none_or(|c| c.state != CopyState::Present)
        {
            continue;
        }
        match write_from(tier, &artifact.key, &index, dest, config.defaults.threads) {
            Ok(bytes) => {
                return Ok(Fetched::Restored {
                    tier: tier.name.to_string(),
                    bytes,
                });
            }
            Err(e) => {
                tracing::warn!(tier = %tier.name, key = %artifact.key, error = %e, "WAL copy unusable; trying the next tier");
                failures.push(format!("{}: {e}", tier.name));
            }
        }
    }
    Err(Error::Invalid(format!(
        "{wal_file} is archived as {} but no tier gave an intact copy ({})",
        artifact.key,
        if failures.is_empty() {
            "no tier holds one".to_owned()
        } else {
            failures.join("; ")
        }
    )))
}

fn write_from(
    tier: &crate::config::TierConfig,
    key: &str,
    index: &crate::artifact::index::BlockIndex,
    dest: &Path,
    threads: usize,
) -> Result<u64> {
    let store = open_tier(tier)?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tierback-wal-")
        .tempfile_in(dir)
        .ctx(|| format!("creating a temporary file in {}", dir.display()))?;
    let reader = ArtifactReader {
        store: store.as_ref(),
        key,
        index,
    };
    let bytes = reader.copy_to(tmp.as_file_mut(), threads)?;
    tmp.as_file()
        .sync_all()
        .ctx(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(dest)
        .map_err(|e| Error::io(format!("renaming to {}", dest.display()), e.error))?;
    Ok(bytes)
}
