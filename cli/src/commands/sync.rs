//! `tierback sync [--tier T] [--dry-run]`: exit 0 when every copy the desired state wants exists
//! and is verified.

use anyhow::Result;
use tierback_engine::clock::now;
use tierback_engine::config::Config;
use tierback_engine::plan::{Action, from_catalog};
use tierback_engine::sync::sync;

use super::{EXIT_FAILURE, EXIT_OK};

pub fn run(config: &Config, tier: Option<&str>, dry_run: bool, json: bool) -> Result<i32> {
    if let Some(t) = tier {
        config.tier(t)?;
    }
    let mut catalog = super::open_catalog(config)?;
    if dry_run {
        let plan: Vec<_> = from_catalog(config, &catalog, now())?
            .into_iter()
            .filter(|e| tier.is_none_or(|t| e.tier == t))
            .collect();
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            super::prune::print_plan(&plan);
            let sending = plan
                .iter()
                .filter(|e| matches!(e.action, Action::Upload | Action::Repair))
                .count();
            println!("dry run: {sending} backup copies would be uploaded or repaired");
        }
        return Ok(EXIT_OK);
    }
    let reports = sync(config, &mut catalog, tier)?;
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
