//! `tierback status [--json]`: is every service backed up, how old is its newest backup, did the
//! last run work; per tier: usage, copies waiting for sync, corrupt copies.

use anyhow::Result;
use tierback_engine::catalog::{CopyState, RunKind};
use tierback_engine::clock::now;
use tierback_engine::config::{Config, TierKind};
use tierback_engine::layout::rfc3339;
use tierback_engine::plan::{Action, from_catalog};
use tierback_engine::store::local::LocalStore;
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
        let backups: std::collections::BTreeSet<_> = artifacts
            .iter()
            .filter(|a| a.service == name)
            .map(|a| a.backup_id)
            .collect();
        let last_run = catalog.last_run(name, RunKind::Backup)?.map(|(r, _)| r);
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
            .filter(|a| {
                a.copy_on(&tier.name)
                    .is_some_and(|c| c.state == CopyState::Corrupt)
            })
            .count();
        // A local tier readable beyond what the config allows (files from before owner-only
        // modes, or a chmod by hand): backups hold whole databases.
        let wider = match &tier.kind {
            TierKind::Local { path, group, mode } => {
                LocalStore::open_with_access(name, path, group.as_deref(), *mode)
                    .ok()
                    .map(|s| (s.wider_than_configured(), *mode, path.clone()))
            }
            _ => None,
        };
        let access = wider.as_ref().filter(|w| w.0.0 > 0).map(|((count, examples), mode, path)| {
            serde_json::json!({
                "count": count,
                "examples": examples,
                "advice": format!(
                    "files and directories of {} are readable beyond the configured mode {mode:04o}: `chmod -R go-rwx {}`, or give a group access with [tiers.{name}] group",
                    path.display(),
                    path.display()
                ),
            })
        });
        tiers.push(serde_json::json!({
            "tier": name,
            "type": tier.kind.type_name(),
            "used_bytes": used.as_ref().ok(),
            "pending_copies": pending,
            "corrupt_copies": corrupt,
            "wider_access": access,
            "error": used.as_ref().err().map(|e| e.to_string()),
        }));
    }
    let catalog_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&config.catalog_path).map_or(0, |m| m.permissions().mode() & 0o777)
    };
    let catalog_warning = (catalog_mode & 0o077 != 0).then(|| {
        format!(
            "catalog {} is readable by other users (mode {catalog_mode:04o}): `chmod 600 {0} {0}-wal {0}-shm`",
            config.catalog_path.display()
        )
    });
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"services": services, "tiers": tiers, "catalog_warning": catalog_warning})
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
        if let Some(access) = tier["wider_access"].as_object() {
            println!(
                "  WARNING: {} {}; e.g. {}",
                access["count"],
                access["advice"].as_str().unwrap_or(""),
                access["examples"][0].as_str().unwrap_or("")
            );
        }
    }
    if let Some(w) = &catalog_warning {
        println!("WARNING: {w}");
    }
    Ok(EXIT_OK)
}
