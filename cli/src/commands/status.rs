//! `tierback status [--json]`: is every service backed up, how old is its newest backup, did the
//! last run work, how full is each tier.

use anyhow::Result;
use tierback_engine::catalog::now;
use tierback_engine::config::Config;
use tierback_engine::layout::rfc3339;
use tierback_engine::store::open_tier;
use tierback_engine::units::human_bytes;

use super::EXIT_OK;
use crate::output::age;

pub fn run(config: &Config, json: bool) -> Result<i32> {
    let catalog = super::open_catalog(config)?;
    let artifacts = catalog.artifacts(None)?;
    let runs = catalog.runs(1000)?;
    let t = now();
    let mut services = Vec::new();
    for name in config.services.keys() {
        let newest = artifacts.iter().find(|a| a.service == name.as_str());
        let last_run = runs
            .iter()
            .find(|r| r.service == name.as_str() && r.kind == "backup");
        services.push(serde_json::json!({
            "service": name.as_str(),
            "newest_backup": newest.map(|a| rfc3339(a.taken_at)),
            "age_seconds": newest.map(|a| t - a.taken_at),
            "backups": artifacts.iter().filter(|a| a.service == name.as_str()).map(|a| a.backup_id).collect::<std::collections::BTreeSet<_>>().len(),
            "last_run": last_run.map(|r| serde_json::json!({
                "status": r.status, "started_at": rfc3339(r.started_at), "error": r.error,
            })),
        }));
    }
    let mut tiers = Vec::new();
    for tier in &config.tiers {
        let used = open_tier(tier)
            .and_then(|s| s.list(""))
            .map(|l| l.iter().map(|m| m.size).sum::<u64>());
        tiers.push(serde_json::json!({
            "tier": tier.name.as_str(),
            "type": tier.kind.type_name(),
            "used_bytes": used.as_ref().ok(),
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
        let last = match run["status"].as_str() {
            None => "never".to_string(),
            Some("ok") => format!("ok at {}", run["started_at"].as_str().unwrap_or("")),
            Some(st) => format!(
                "{st} at {}: {}",
                run["started_at"].as_str().unwrap_or(""),
                run["error"].as_str().unwrap_or("")
            ),
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
        match tier["used_bytes"].as_u64() {
            Some(b) => println!(
                "tier {:<10} {:<7} {} used",
                tier["tier"].as_str().unwrap_or(""),
                tier["type"].as_str().unwrap_or(""),
                human_bytes(b)
            ),
            None => println!(
                "tier {:<10} {:<7} unavailable: {}",
                tier["tier"].as_str().unwrap_or(""),
                tier["type"].as_str().unwrap_or(""),
                tier["error"].as_str().unwrap_or("")
            ),
        }
    }
    Ok(EXIT_OK)
}
