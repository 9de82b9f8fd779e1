//! `tierback list [--service S] [--json]`. The text table escapes control characters in every
//! field that comes from the catalog (`\x1b`, `\n`): a catalog rebuilt from a hostile tier
//! must not be able to drive the terminal or forge a line. JSON escapes them by itself.

use anyhow::Result;
use tierback_engine::catalog::{Catalog, CopyState};
use tierback_engine::config::Config;
use tierback_engine::id::escape_control as esc;
use tierback_engine::layout::{date_of, rfc3339};
use tierback_engine::units::human_bytes;

use super::EXIT_OK;
use crate::output::ratio;

pub fn run(config: &Config, service: Option<&str>, json: bool) -> Result<i32> {
    // `--service`, held to the config's names: a name the config has is a valid one.
    let service = service
        .map(|s| config.service(s))
        .transpose()?
        .map(|svc| &svc.name);
    // No catalog yet (a config just written, before `init` or the first backup) is an empty
    // list, like an empty catalog: nothing in text, `[]` in JSON. Any other reason the catalog
    // cannot be opened (not readable by this user, an old schema, damage) stays an error.
    let artifacts = match std::fs::metadata(&config.catalog_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        _ => Catalog::open_read_only(&config.catalog_path)?.artifacts(service)?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&artifacts)?);
        return Ok(EXIT_OK);
    }
    if artifacts.is_empty() {
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
                if c.state == CopyState::Present {
                    esc(c.tier.as_str()).into_owned()
                } else {
                    format!("{}({})", esc(c.tier.as_str()), c.state)
                }
            })
            .collect();
        println!(
            "{:<20} {:<12} {:<44} {:>10} {:>10} {:>7}  {}{}",
            rfc3339(a.taken_at),
            esc(a.service.as_str()),
            esc(&a.file),
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
            esc(a.service.as_str()),
            esc(c.tier.as_str()),
            date_of(a.taken_at),
            esc(&a.file),
            esc(&a.file)
        );
    }
    Ok(EXIT_OK)
}
