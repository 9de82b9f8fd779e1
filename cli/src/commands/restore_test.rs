//! `tierback restore-test SERVICE [--tier T] [--json]`: replay the newest backup of SERVICE on
//! tier T (default: the first tier) into a scratch target and compare it with what was recorded
//! at backup time. Exit 1 if any artifact fails; the outcome feeds
//! `backup_restore_test_success`.

use anyhow::{Result, bail};
use tierback_engine::artifact::reader::ArtifactReader;
use tierback_engine::catalog::{RunKind, RunStatus};
use tierback_engine::config::Config;
use tierback_engine::restore_test::{Outcome, newest_backup, test_artifact};
use tierback_engine::store::open_tier;

use super::{EXIT_FAILURE, EXIT_OK};

/// `quiet`: print only FAILED lines (what `run` does under cron).
pub fn run(
    config: &Config,
    service: &str,
    tier: Option<&str>,
    json: bool,
    quiet: bool,
) -> Result<i32> {
    let _span = tracing::info_span!("restore_test", service).entered();
    let svc = config.service(service)?;
    let tier = match tier {
        Some(t) => config.tier(t)?,
        None => &config.tiers[0],
    };
    let catalog = super::open_catalog(config)?;
    let artifacts = catalog.artifacts(Some(&svc.name))?;
    let backup = newest_backup(&artifacts, &tier.name);
    if backup.is_empty() {
        bail!("no backup of {service} on tier {} to test", tier.name);
    }
    let store = open_tier(tier)?;
    let source = svc.driver.as_ref();
    let run = catalog.begin_run(service, RunKind::RestoreTest)?;
    let mut failed = Vec::new();
    let mut report = Vec::new();
    let mut checks: Vec<(String, tierback_engine::Result<Outcome>)> = backup
        .into_iter()
        .map(|a| {
            let path = format!(
                "{service}/{}/{}/{}",
                tier.name,
                a.key.split('/').nth(1).unwrap_or(""),
                a.file
            );
            let outcome = catalog.block_index(a.id).and_then(|index| {
                let reader = ArtifactReader {
                    store: store.as_ref(),
                    key: &a.key,
                    index: &index,
                };
                test_artifact(source, a, &reader, config.defaults.threads)
            });
            (path, outcome)
        })
        .collect();
    if let Some(outcome) = source.restore_test_archive(&artifacts, &tier.name) {
        checks.push((format!("{service}/{} (archive)", tier.name), Ok(outcome)));
    }
    for (path, outcome) in checks {
        let (word, detail) = match outcome {
            Ok(Outcome::Passed(d)) => ("PASSED", d),
            Ok(Outcome::Skipped(d)) => ("SKIPPED", d),
            Ok(Outcome::Failed(d)) => ("FAILED", d),
            Err(e) => ("FAILED", e.to_string()),
        };
        if word == "FAILED" {
            failed.push(format!("{path}: {detail}"));
        }
        if json {
            report.push(
                serde_json::json!({"path": path, "result": word.to_lowercase(), "detail": detail}),
            );
        } else if !quiet || word == "FAILED" {
            println!("{word:8}{path}  {detail}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if failed.is_empty() {
        catalog.finish_run(run, RunStatus::Ok, None, None)?;
        Ok(EXIT_OK)
    } else {
        catalog.finish_run(run, RunStatus::Failed, Some(&failed.join("\n")), None)?;
        Ok(EXIT_FAILURE)
    }
}
