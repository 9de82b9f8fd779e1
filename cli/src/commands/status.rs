//! `tierback status [--json]`: is every service backed up, how old is its newest backup, did the
//! last run work; per tier: usage, copies waiting for sync, corrupt copies.

use anyhow::Result;
use tierback_engine::catalog::CORRUPT;
use tierback_engine::clock::now;
use tierback_engine::config::Config;
use tierback_engine::layout::rfc3339;
use tierback_engine::plan::{Action, from_catalog};
use tierback_engine::store::open_tier;
use tierback_engine::units::human_bytes;

use super::EXIT_OK;
use crate::output::age;

pub fn run(config: &Config, json: bool) -> Result<i32> {
    let catalog = super::open_catalog(config)?;
    let mut artifacts = catalog.artifacts_without_facts(None)?;
    artifacts.sort_by_key(|a| std::cmp::Reverse(a.taken_at));
    let t = now();
    let mut services = Vec::new();
    for name in config.services.keys() {
        let name = name.as_str();
        let newest = artifacts.iter().find(|a| a.service == name);
        let backups: std::collections::BTreeSet<i64> = artifacts
            .iter()
            .filter(|a| a.service == name)
            .map(|a| a.backup_id)
            .collect();
        let last_run = catalog.last_run(name, "backup")?.map(|(r, _)| r);
        services.push(serde_json::json!({
            "service": name,
            "newest_backup": newest.map(|a| rfc3339(a.taken_at)),
            "age_seconds": newest.map(|a| t - a.taken_at),
            "backups": backups.len(),
            "last_run": last_run.map(|r| serde_json::json!({
                "status": r.status, "started_at": rfc3339(r.started_at), "error": r.error,
            })),
        }));
    }
    let mut tiers = Vec::new();
    let plan = from_catalog(config, &catalog, t)?;
    for tier in &config.tiers {
        let name = tier.name.as_str();
        let used = open_tier(tier)
            .and_then(|s| s.list(""))
            .map(|l| l.iter().map(|m| m.size).sum::<u64>());
        // Backups the desired state wants on this tier that sync has yet to upload or repair.
        let pending = plan
            .iter()
            .filter(|e| e.tier == name && matches!(e.action, Action::Upload | Action::Repair))
            .count();
        let corrupt = artifacts
            .iter()
            .filter(|a| a.copy_on(name).is_some_and(|c| c.state == CORRUPT))
            .count();
        tiers.push(serde_json::json!({
            "tier": name,
            "type": tier.kind.type_name(),
            "used_bytes": used.as_ref().ok(),
            "pending_copies": pending,
            "corrupt_copies": corrupt,
            "error": used.as_ref().err().map(|e| e.to_string()),
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"services": services, "tiers": tiers})
            )?
        );
        return Ok(EXIT_OK);
    }
    println!(
        "{:<14} {:<22} {:>9} {:>8}  LAST RUN",
        "SERVICE", "NEWEST BACKUP", "AGE", "BACKUPS"
    );
    for s in &services {
        let run = &s["last_run"];
        let started = run["started_at"].as_str().unwrap_or("");
        let last = match run["status"].as_str() {
            None => "never".to_string(),
            Some("ok") => format!("ok at {started}"),
            Some(st) => format!("{st} at {started}: {}", run["error"].as_str().unwrap_or("")),
        };
        println!(
            "{:<14} {:<22} {:>9} {:>8}  {}",
            s["service"].as_str().unwrap_or(""),
            s["newest_backup"].as_str().unwrap_or("none"),
            s["age_seconds"]
                .as_i64()
                .map(age)
                .unwrap_or_else(|| "-".into()),
            s["backups"].as_u64().unwrap_or(0),
            last.lines().next().unwrap_or("")
        );
    }
    println!();
    for tier in &tiers {
        let (name, kind) = (
            tier["tier"].as_str().unwrap_or(""),
            tier["type"].as_str().unwrap_or(""),
        );
        match tier["used_bytes"].as_u64() {
            Some(b) => println!(
                "tier {name:<10} {kind:<7} {} used, {} copies waiting for sync, {} corrupt",
                human_bytes(b),
                tier["pending_copies"],
                tier["corrupt_copies"]
            ),
            None => println!(
                "tier {name:<10} {kind:<7} unavailable: {}",
                tier["error"].as_str().unwrap_or("")
            ),
        }
    }
    Ok(EXIT_OK)
}
