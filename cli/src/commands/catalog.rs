//! `tierback catalog rebuild --from TIER [--force]`.

use anyhow::Result;
use tierback_engine::config::Config;
use tierback_engine::rebuild::rebuild as rebuild_catalog;
use tierback_engine::store::open_tier;

use super::{EXIT_FAILURE, EXIT_OK};

pub fn rebuild(config: &Config, from: &str, force: bool) -> Result<i32> {
    let store = open_tier(config.tier(from)?)?;
    let report = rebuild_catalog(store.as_ref(), &config.catalog_path, force)?;
    for s in &report.skipped {
        println!("SKIPPED  {s}");
    }
    println!(
        "rebuilt {} from tier {from}: {} backups, {} artifacts, {} skipped",
        config.catalog_path.display(),
        report.backups,
        report.artifacts,
        report.skipped.len()
    );
    Ok(if report.skipped.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}
