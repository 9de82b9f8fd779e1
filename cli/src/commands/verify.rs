//! `tierback verify [--all | --tier T | --service S]`: exit 1 if any copy checked has a problem.
//! Bare `verify` is the scheduled pass (each tier's due share, oldest-checked first, within its
//! budget); `--all`, `--tier` and `--service` read every copy they name.

use anyhow::Result;
use tierback_engine::clock::now;
use tierback_engine::config::Config;
use tierback_engine::units::human_bytes;
use tierback_engine::verify::{Scope, verify};

use super::{EXIT_FAILURE, EXIT_OK};

pub fn run(
    config: &Config,
    service: Option<&str>,
    tier: Option<&str>,
    all: bool,
    json: bool,
) -> Result<i32> {
    // `--service`, held to the config's names: a name the config has is a valid one.
    let service = service
        .map(|s| config.service(s))
        .transpose()?
        .map(|svc| &svc.name);
    let tiers: Vec<_> = match tier {
        Some(t) => vec![config.tier(t)?],
        None => config.tiers.iter().collect(),
    };
    let scope = if all || tier.is_some() || service.is_some() {
        Scope::All
    } else {
        Scope::Due
    };
    let catalog = super::open_catalog(config)?;
    let mut results = Vec::new();
    let summaries = verify(config, &catalog, &tiers, service, scope, now(), |c| {
        if json {
            results.push(c.clone());
            return;
        }
        if c.problems.is_empty() {
            println!("OK      {}", c.path);
        } else {
            println!("FAILED  {}", c.path);
            for p in &c.problems {
                println!("        {p}");
            }
        }
    })?;
    let bad: usize = summaries
        .iter()
        .map(|s| s.failed + usize::from(s.error.is_some()))
        .sum();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "copies": results.iter().map(|c| serde_json::json!({
                    "tier": c.tier, "path": c.path, "ok": c.problems.is_empty(), "problems": c.problems,
                })).collect::<Vec<_>>(),
                "tiers": summaries,
            }))?
        );
    } else {
        for s in &summaries {
            match &s.error {
                Some(e) => println!("FAILED  tier {}: {e}", s.tier),
                None if scope == Scope::Due => println!(
                    "tier {:<10} {} of {} copies checked ({} read; the rest by rotation, `verify --all` reads every copy), {} with problems",
                    s.tier,
                    s.checked,
                    s.copies,
                    human_bytes(s.bytes),
                    s.failed
                ),
                None => println!(
                    "tier {:<10} {} copies checked ({} read), {} with problems",
                    s.tier,
                    s.checked,
                    human_bytes(s.bytes),
                    s.failed
                ),
            }
        }
        let checked: usize = summaries.iter().map(|s| s.checked).sum();
        println!("{checked} copies checked, {bad} with problems");
    }
    Ok(if bad == 0 { EXIT_OK } else { EXIT_FAILURE })
}
