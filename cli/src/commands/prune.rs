//! `tierback prune [--dry-run] [--json]`: plan, print, then apply. The plan is the desired state
//! that `sync --dry-run` prints too.

use anyhow::Result;
use tierback_engine::catalog::{ALL_SERVICES, RunKind, RunStatus};
use tierback_engine::clock::now;
use tierback_engine::config::Config;
use tierback_engine::layout::rfc3339;
use tierback_engine::plan::{Action, Entry, from_catalog};
use tierback_engine::prune::apply;

use super::EXIT_OK;

pub fn run(config: &Config, dry_run: bool, json: bool) -> Result<i32> {
    let mut catalog = super::open_catalog(config)?;
    let plan = from_catalog(config, &catalog, now())?;
    if json && dry_run {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(EXIT_OK);
    }
    if !json {
        print_plan(&plan);
    }
    let count = |a: Action| plan.iter().filter(|e| e.action == a).count();
    let removing = count(Action::Remove);
    if dry_run {
        println!(
            "dry run: {removing} backup copies would be removed, {} kept ({} to upload or repair by sync)",
            count(Action::Keep),
            count(Action::Upload) + count(Action::Repair)
        );
        return Ok(EXIT_OK);
    }
    let run = catalog.begin_run(ALL_SERVICES, RunKind::Prune)?;
    let result = apply(config, &mut catalog, &plan);
    match &result {
        Ok(_) => catalog.finish_run(run, RunStatus::Ok, None, None)?,
        Err(e) => catalog.finish_run(run, RunStatus::Failed, Some(&e.to_string()), None)?,
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

/// One line per backup per tier: what happens to it and why.
pub fn print_plan(plan: &[Entry]) {
    for e in plan {
        println!(
            "{:<7} {:<10} {:<14} {}  {}",
            e.action.as_str(),
            e.tier,
            e.service,
            rfc3339(e.taken_at),
            e.reasons.join(", ")
        );
    }
}
