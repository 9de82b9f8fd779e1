//! `tierback prune [--dry-run] [--json]`: plan, print, then apply.

use anyhow::Result;
use tierback_engine::catalog::now;
use tierback_engine::config::Config;
use tierback_engine::layout::rfc3339;
use tierback_engine::retention::{apply, plan};

use super::EXIT_OK;

pub fn run(config: &Config, dry_run: bool, json: bool) -> Result<i32> {
    let mut catalog = super::open_catalog(config)?;
    let decisions = plan(config, &catalog.artifacts(None)?, now());
    if json && dry_run {
        println!("{}", serde_json::to_string_pretty(&decisions)?);
        return Ok(EXIT_OK);
    }
    if !json {
        for d in &decisions {
            println!(
                "{:<6}  {:<10} {:<14} {}  {}",
                if d.keep { "keep" } else { "remove" },
                d.tier,
                d.service,
                rfc3339(d.taken_at),
                d.reasons.join(", ")
            );
        }
    }
    let removing = decisions.iter().filter(|d| !d.keep).count();
    if dry_run {
        println!(
            "dry run: {removing} backup copies would be removed, {} kept",
            decisions.len() - removing
        );
        return Ok(EXIT_OK);
    }
    let run = catalog.begin_run("*", "prune")?;
    let result = apply(config, &mut catalog, &decisions);
    match &result {
        Ok(_) => catalog.finish_run(run, "ok", None, None)?,
        Err(e) => catalog.finish_run(run, "failed", Some(&e.to_string()), None)?,
    }
    let report = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "removed {} files' backups ({removing} backup copies)",
            report.removed.len()
        );
    }
    Ok(EXIT_OK)
}
