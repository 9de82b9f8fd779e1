//! `tierback backup SERVICE | --all`.

use anyhow::Result;
use tierback_engine::backup::backup_service;
use tierback_engine::config::Config;
use tierback_engine::units::human_bytes;

use super::{EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL};
use crate::output::{Bar, ratio};

pub fn run(
    config: &Config,
    service: Option<&str>,
    all: bool,
    json: bool,
    quiet: bool,
) -> Result<i32> {
    let services: Vec<_> = if all {
        config.services.values().collect()
    } else {
        vec![config.service(service.expect("clap requires SERVICE without --all"))?]
    };
    let mut catalog = super::open_catalog(config)?;
    let bar = Bar::new(quiet || json);
    let (mut ok, mut failed) = (0, 0);
    let mut reports = Vec::new();
    for svc in services {
        match backup_service(config, &mut catalog, svc, &bar) {
            Ok(report) => {
                ok += 1;
                if !json && !quiet {
                    if report.artifacts.is_empty() {
                        println!("{}  nothing new to archive", report.service);
                    }
                    for a in &report.artifacts {
                        println!(
                            "{}  {}  {} -> {} ({}, {} blocks) in {:.1}s",
                            report.service,
                            a.key,
                            human_bytes(a.raw_size),
                            human_bytes(a.stored_size),
                            ratio(a.raw_size, a.stored_size),
                            a.blocks,
                            report.seconds
                        );
                    }
                }
                reports.push(
                    serde_json::json!({"service": report.service, "ok": true, "backup": report}),
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("tierback: error: backup of {} failed: {e}", svc.name);
                reports.push(serde_json::json!({"service": svc.name.as_str(), "ok": false, "error": e.to_string()}));
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(match (ok, failed) {
        (_, 0) => EXIT_OK,
        (0, _) => EXIT_FAILURE,
        _ => EXIT_PARTIAL,
    })
}
