//! `tierback list [--service S] [--json]`.

use anyhow::Result;
use tierback_engine::catalog::Catalog;
use tierback_engine::config::Config;
use tierback_engine::layout::{date_of, rfc3339};
use tierback_engine::units::human_bytes;

use super::EXIT_OK;
use crate::output::ratio;

pub fn run(config: &Config, service: Option<&str>, json: bool) -> Result<i32> {
    if let Some(s) = service {
        config.service(s)?;
    }
    let catalog = Catalog::open_read_only(&config.catalog_path)?;
    let artifacts = catalog.artifacts(service)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&artifacts)?);
        return Ok(EXIT_OK);
    }
    if artifacts.is_empty() {
        println!("no backups yet");
        return Ok(EXIT_OK);
    }
    println!(
        "{:<20} {:<12} {:<44} {:>10} {:>10} {:>7}  COPIES",
        "TAKEN (UTC)", "SERVICE", "FILE", "SIZE", "STORED", "RATIO"
    );
    for a in &artifacts {
        let copies: Vec<String> = a
            .copies
            .iter()
            .map(|c| {
                if c.state == "present" {
                    c.tier.clone()
                } else {
                    format!("{}({})", c.tier, c.state)
                }
            })
            .collect();
        println!(
            "{:<20} {:<12} {:<44} {:>10} {:>10} {:>7}  {}{}",
            rfc3339(a.taken_at),
            a.service,
            a.file,
            human_bytes(a.raw_size),
            human_bytes(a.stored_size),
            ratio(a.raw_size, a.stored_size),
            copies.join(" "),
            if a.pinned { "  (pinned)" } else { "" }
        );
    }
    if let Some(a) = artifacts.first()
        && let Some(c) = a.copies.first()
    {
        println!(
            "\nrestore with: tierback cat {}/{}/{}/{} > {}",
            a.service,
            c.tier,
            date_of(a.taken_at),
            a.file,
            a.file
        );
    }
    Ok(EXIT_OK)
}
