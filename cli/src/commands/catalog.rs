//! `tierback catalog rebuild --from TIER [--from TIER…] [--force]`. Each artifact skipped is
//! one `SKIPPED` line naming the file and what is wrong with it; names from the tier are printed
//! with their control characters escaped, so a hostile name can neither forge a line nor drive
//! the terminal.

use anyhow::Result;
use tierback_engine::config::{Config, TierKind};
use tierback_engine::id::escape_control;
use tierback_engine::rebuild::rebuild as rebuild_catalog;
use tierback_engine::restic::ResticTier;
use tierback_engine::store::{Store, open_tier};

use super::{EXIT_FAILURE, EXIT_OK};

pub fn rebuild(config: &Config, from: &[String], force: bool) -> Result<i32> {
    let mut stores = Vec::new();
    let mut restic = Vec::new();
    for t in from {
        let tier = config.tier(t)?;
        match tier.kind {
            TierKind::Restic { .. } => restic.push(ResticTier::open(tier)?),
            _ => stores.push(open_tier(tier)?),
        }
    }
    let stores: Vec<&dyn Store> = stores.iter().map(|s| s.as_ref()).collect();
    let report = rebuild_catalog(&stores, restic, &config.catalog_path, force)?;
    for s in &report.skipped {
        println!("SKIPPED  {}", escape_control(s));
    }
    println!(
        "rebuilt {} from {} {}: {} backups, {} artifacts, {} skipped",
        config.catalog_path.display(),
        if from.len() == 1 { "tier" } else { "tiers" },
        from.join(", "),
        report.backups,
        report.artifacts,
        report.skipped.len()
    );
    if from.len() > 1 {
        let copies: Vec<String> = from
            .iter()
            .map(|t| format!("{t} {}", report.copies.get(t).copied().unwrap_or(0)))
            .collect();
        println!("copies: {}", copies.join(", "));
    }
    Ok(if report.skipped.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}
