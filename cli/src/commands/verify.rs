//! `tierback verify [--service S] [--tier T]`: exit 1 if any copy has a problem.

use anyhow::Result;
use tierback_engine::catalog::MISSING;
use tierback_engine::config::Config;
use tierback_engine::store::{Store, open_tier};
use tierback_engine::verify::verify_copy;

use super::{EXIT_FAILURE, EXIT_OK};

pub fn run(config: &Config, service: Option<&str>, tier: Option<&str>, json: bool) -> Result<i32> {
    if let Some(s) = service {
        config.service(s)?;
    }
    let tiers: Vec<_> = match tier {
        Some(t) => vec![config.tier(t)?],
        None => config.tiers.iter().collect(),
    };
    let catalog = super::open_catalog(config)?;
    let mut stores: Vec<(String, Box<dyn Store>)> = Vec::new();
    // A tier that cannot be opened is a failed check, not a skipped one.
    let mut unreachable = 0;
    for t in tiers {
        match open_tier(t) {
            Ok(s) => stores.push((t.name.to_string(), s)),
            Err(e) => {
                unreachable += 1;
                println!("FAILED  tier {}: {e}", t.name);
            }
        }
    }
    let (mut checked, mut bad) = (0, unreachable);
    let mut results = Vec::new();
    let artifacts = catalog.artifacts(service)?;
    // One run per service, so metrics can report each service's verification time.
    let mut runs: std::collections::BTreeMap<String, (i64, bool)> =
        std::collections::BTreeMap::new();
    for a in &artifacts {
        if !runs.contains_key(&a.service) {
            runs.insert(
                a.service.clone(),
                (catalog.begin_run(&a.service, "verify")?, true),
            );
        }
    }
    for artifact in artifacts {
        let index = catalog.block_index(artifact.id)?;
        for (tier_name, store) in &stores {
            let Some(copy) = artifact.copy_on(tier_name) else {
                continue;
            };
            if copy.state == MISSING {
                continue;
            }
            let problems = verify_copy(store.as_ref(), &artifact, &index, config.defaults.threads)?;
            catalog.record_verification(artifact.id, tier_name, &problems)?;
            checked += 1;
            let path = format!(
                "{}/{}/{}/{}",
                artifact.service,
                tier_name,
                tierback_engine::layout::date_of(artifact.taken_at),
                artifact.file
            );
            if problems.is_empty() {
                if !json {
                    println!("OK      {path}");
                }
            } else {
                bad += 1;
                if let Some(r) = runs.get_mut(&artifact.service) {
                    r.1 = false;
                }
                if !json {
                    println!("FAILED  {path}");
                    for p in &problems {
                        println!("        {p}");
                    }
                }
            }
            results.push(
                serde_json::json!({"path": path, "ok": problems.is_empty(), "problems": problems}),
            );
        }
    }
    for (run, ok) in runs.values() {
        let status = if *ok { "ok" } else { "failed" };
        catalog.finish_run(
            *run,
            status,
            (!ok).then_some("verification found problems"),
            None,
        )?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!("{checked} copies checked, {bad} with problems");
    }
    Ok(if bad == 0 { EXIT_OK } else { EXIT_FAILURE })
}
