//! `tierback pin PATH` / `tierback unpin PATH`: a pinned backup stays on every tier that holds it
//! whatever retention says, and tiers whose retention says `keep_pinned` receive it (the seed's
//! offsite Archive: manual, kept forever). Pins are per backup: pinning one file of a PostgreSQL
//! backup keeps its other databases and globals too, so the set restores together.

use anyhow::{Result, anyhow, bail};
use tierback_engine::config::Config;
use tierback_engine::id::ServiceName;
use tierback_engine::layout::{ViewPath, rfc3339};

use super::EXIT_OK;

pub fn run(config: &Config, path: &str, pin: bool) -> Result<i32> {
    let catalog = super::open_catalog(config)?;
    let (service, backup_id) = match ViewPath::parse(path) {
        Ok(view) => {
            config.tier(&view.tier)?;
            let service =
                ServiceName::new(view.service.as_str()).map_err(|e| anyhow!("{view}: {e}"))?;
            let Some(a) = catalog.find_artifact(&service, &view.date, &view.file)? else {
                bail!(
                    "{view}: no such backup (see `tierback list --service {}`)",
                    view.service
                );
            };
            (a.service, a.backup_id)
        }
        Err(_) => {
            let Some((service, time)) = path.trim_matches('/').split_once('/') else {
                bail!(
                    "{path:?}: name a file as SERVICE/TIER/DATE/FILE or a backup as SERVICE/TIME \
                     (TIME as `tierback list` prints it, e.g. 2026-01-16T12:00:00Z)"
                );
            };
            let taken_at = tierback_engine::clock::parse(time).map_err(|_| {
                anyhow::anyhow!(
                    "{path:?}: {time:?} is not a time like 2026-01-16T12:00:00Z (or name a file as SERVICE/TIER/DATE/FILE)"
                )
            })?;
            let service = ServiceName::new(service).map_err(|e| anyhow!("{path:?}: {e}"))?;
            let Some(id) = catalog.backup_id(&service, taken_at)? else {
                bail!(
                    "{path:?}: no backup of {service} taken at {}",
                    rfc3339(taken_at)
                );
            };
            (service, id)
        }
    };
    catalog.set_pinned(backup_id, pin)?;
    let files = catalog
        .artifacts(Some(&service))?
        .into_iter()
        .filter(|a| a.backup_id == backup_id)
        .collect::<Vec<_>>();
    let taken = files
        .first()
        .map(|a| rfc3339(a.taken_at))
        .unwrap_or_default();
    let mut tiers: Vec<&str> = files
        .iter()
        .flat_map(|a| a.copies.iter().map(|c| c.tier.as_str()))
        .collect();
    tiers.sort();
    tiers.dedup();
    if pin {
        println!(
            "pinned the {service} backup of {taken} ({} files): kept on {} whatever retention says",
            files.len(),
            tiers.join(", ")
        );
    } else {
        println!(
            "unpinned the {service} backup of {taken}: retention decides again at the next prune"
        );
    }
    Ok(EXIT_OK)
}
