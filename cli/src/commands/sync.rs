//! `tierback sync [--tier T]`: exit 0 when every wanted copy exists and is verified.

use anyhow::Result;
use tierback_engine::config::Config;
use tierback_engine::sync::sync;

use super::{EXIT_FAILURE, EXIT_OK};

pub fn run(config: &Config, tier: Option<&str>, json: bool) -> Result<i32> {
    if let Some(t) = tier {
        config.tier(t)?;
    }
    let catalog = super::open_catalog(config)?;
    let reports = sync(config, &catalog, tier)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            if r.busy {
                println!(
                    "{:<10} busy      another process is syncing this tier",
                    r.tier
                );
                continue;
            }
            for u in &r.uploaded {
                println!("{:<10} uploaded  {u}", r.tier);
            }
            for f in &r.failed {
                println!("{:<10} FAILED    {f}", r.tier);
            }
            if let Some(e) = &r.error {
                println!("{:<10} ERROR     {e}", r.tier);
            }
            println!(
                "{:<10} {} uploaded, {} failed, {} deferred",
                r.tier,
                r.uploaded.len(),
                r.failed.len(),
                r.deferred
            );
        }
    }
    Ok(if reports.iter().all(|r| r.ok()) {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}
