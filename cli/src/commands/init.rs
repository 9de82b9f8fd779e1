//! `tierback init`: write the example config if there is none, then create the local tier and the
//! catalog the config names.

use std::path::Path;

use anyhow::{Context, Result};
use tierback_engine::config::{Config, EXAMPLE_CONFIG};

use super::EXIT_OK;

pub fn run(path: &Path, force: bool) -> Result<i32> {
    if force || !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, EXAMPLE_CONFIG)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote example config {}", path.display());
    } else {
        println!(
            "config {} exists; keeping it (use --force to overwrite)",
            path.display()
        );
    }
    let config = Config::load(path)?;
    let store = tierback_engine::backup::primary_store(&config)?;
    println!(
        "local tier {} ready at {}",
        config.primary_tier()?.name,
        store.root().display()
    );
    let catalog = super::open_catalog(&config)?;
    println!("catalog ready at {}", catalog.path().display());
    Ok(EXIT_OK)
}
