//! `tierback run`: what cron starts every few minutes. Backs up every service that is due, syncs,
//! runs the verify and prune jobs when due, writes the metrics textfile. One service's failure
//! never stops the others; the exit code says whether everything, something or nothing worked.

use anyhow::Result;
use tierback_engine::Error;
use tierback_engine::backup::backup_service;
use tierback_engine::catalog::{ALL_SERVICES, Catalog, RunKind, RunStatus};
use tierback_engine::clock::now;
use tierback_engine::config::{Config, TierConfig};
use tierback_engine::plan::from_catalog;
use tierback_engine::schedule::is_due;
use tierback_engine::sync::sync_tiers;
use tierback_engine::verify::{Scope, verify};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL};
use crate::output::Bar;

pub fn run(config: &Config, quiet: bool) -> Result<i32> {
    let mut catalog = super::open_catalog(config)?;
    let t = now();
    let _span = tracing::info_span!("run", at = t).entered();
    let (mut ok, mut failed) = (0, 0);
    let bar = Bar::new(quiet);

    for svc in config.services.values() {
        let last = catalog
            .last_run(svc.name.as_str(), RunKind::Backup)?
            .map(|(r, _)| r.started_at);
        if !is_due(&svc.schedule, last, t) {
            continue;
        }
        match backup_service(config, &mut catalog, svc, &bar) {
            Ok(r) => {
                ok += 1;
                if !quiet {
                    println!(
                        "backup {}: {} artifacts in {:.1}s",
                        r.service,
                        r.artifacts.len(),
                        r.seconds
                    );
                }
            }
            // Another `run` (or a manual backup) is on it: not a failure of this one.
            Err(Error::Locked { .. }) => {
                tracing::info!("{} is being backed up by another process", svc.name)
            }
            Err(e) => {
                failed += 1;
                eprintln!("tierback: error: backup of {} failed: {e}", svc.name);
            }
        }
    }

    // Each tier syncs on its own schedule (the seed: offsite at 07:00 and Sunday 04:30).
    let sync_due: Vec<&TierConfig> = config
        .tiers
        .iter()
        .map(|tier| {
            // A sync that failed (a tier down) is tried again at every run, not at the next
            // slot: the tier catches up as soon as it is back.
            let schedule = tier.sync_schedule(&config.jobs);
            let last = catalog
                .last_ok_run(tier.name.as_str(), RunKind::Sync)?
                .map(|(r, _)| r.started_at);
            Ok((tier, schedule.is_empty() || is_due(schedule, last, t)))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter_map(|(tier, due)| due.then_some(tier))
        .collect();
    if config.tiers.len() > 1 && !sync_due.is_empty() {
        let run = catalog.begin_run(ALL_SERVICES, RunKind::SyncJob)?;
        let reports = match sync_tiers(config, &mut catalog, &sync_due) {
            Ok(r) => r,
            Err(e) => {
                catalog.finish_run(run, RunStatus::Failed, Some(&e.to_string()), None)?;
                return Err(e.into());
            }
        };
        let all_ok = reports.iter().all(|r| r.ok());
        for r in &reports {
            if !quiet && !r.uploaded.is_empty() {
                println!("sync {}: {} uploaded", r.tier, r.uploaded.len());
            }
            if !quiet && r.busy {
                println!("sync {}: another process is syncing it", r.tier);
            }
            if !r.ok() {
                eprintln!(
                    "tierback: error: sync to {}: {} failed, {} deferred{}",
                    r.tier,
                    r.failed.len(),
                    r.deferred,
                    r.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
        }
        catalog.finish_run(run, RunStatus::ended(all_ok), None, None)?;
        if all_ok { ok += 1 } else { failed += 1 }
    }

    // Each tier verifies on its own schedule, the share its window and budget allow.
    let verify_due: Vec<&TierConfig> = config
        .tiers
        .iter()
        .map(|tier| {
            let schedule = tier.verify_schedule(&config.jobs);
            Ok((
                tier,
                job_due(
                    &catalog,
                    schedule,
                    tier.name.as_str(),
                    RunKind::VerifyTier,
                    t,
                )?,
            ))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter_map(|(tier, due)| due.then_some(tier))
        .collect();
    if !verify_due.is_empty() {
        let summaries = verify(config, &catalog, &verify_due, None, Scope::Due, t, |c| {
            if !c.problems.is_empty() {
                eprintln!(
                    "tierback: error: verify {}: {}",
                    c.path,
                    c.problems.join("; ")
                );
            }
        })?;
        let mut all_ok = true;
        for s in &summaries {
            if let Some(e) = &s.error {
                eprintln!("tierback: error: verify tier {}: {e}", s.tier);
            }
            all_ok &= s.error.is_none() && s.failed == 0;
            if !quiet && s.checked > 0 {
                println!(
                    "verify {}: {} of {} copies checked",
                    s.tier, s.checked, s.copies
                );
            }
        }
        if all_ok { ok += 1 } else { failed += 1 }
    }

    if job_due(
        &catalog,
        &config.jobs.prune,
        ALL_SERVICES,
        RunKind::Prune,
        t,
    )? {
        let run = catalog.begin_run(ALL_SERVICES, RunKind::Prune)?;
        let result = from_catalog(config, &catalog, t)
            .and_then(|plan| tierback_engine::prune::apply(config, &mut catalog, &plan));
        match result {
            Ok(report) => {
                catalog.finish_run(run, RunStatus::Ok, None, None)?;
                ok += 1;
                if !quiet && !report.removed.is_empty() {
                    println!("prune: {} files' backups removed", report.removed.len());
                }
            }
            Err(e) => {
                catalog.finish_run(run, RunStatus::Failed, Some(&e.to_string()), None)?;
                failed += 1;
                eprintln!("tierback: error: prune: {e}");
            }
        }
    }

    if job_due(
        &catalog,
        &config.jobs.restore_test,
        ALL_SERVICES,
        RunKind::RestoreTestJob,
        t,
    )? {
        let run = catalog.begin_run(ALL_SERVICES, RunKind::RestoreTestJob)?;
        let mut all_ok = true;
        for svc in config.services.values() {
            let name = svc.name.as_str();
            // Nothing to test yet is not a failed test.
            if catalog.artifacts(Some(&svc.name))?.is_empty() {
                continue;
            }
            match super::restore_test::run(config, name, None, false, quiet) {
                Ok(EXIT_OK) => {}
                Ok(_) => all_ok = false,
                Err(e) => {
                    all_ok = false;
                    eprintln!("tierback: error: restore test of {name}: {e}");
                }
            }
        }
        catalog.finish_run(run, RunStatus::ended(all_ok), None, None)?;
        if all_ok { ok += 1 } else { failed += 1 }
    }

    if let Some(path) = &config.metrics.textfile {
        let text = tierback_engine::metrics::render(config, &catalog, now())?;
        tierback_engine::metrics::write_textfile(path, &text)?;
    }

    Ok(match (ok, failed) {
        (_, 0) => EXIT_OK,
        (0, _) => EXIT_FAILURE,
        _ => EXIT_PARTIAL,
    })
}

/// Whether a job is due: a slot of `schedule` fired since the last run of `kind` for `owner`
/// ([`ALL_SERVICES`], or a tier). An empty schedule means "every run".
fn job_due(
    catalog: &Catalog,
    schedule: &[String],
    owner: &str,
    kind: RunKind,
    t: i64,
) -> Result<bool> {
    if schedule.is_empty() {
        return Ok(true);
    }
    let last = catalog.last_run(owner, kind)?.map(|(r, _)| r.started_at);
    Ok(is_due(schedule, last, t))
}
