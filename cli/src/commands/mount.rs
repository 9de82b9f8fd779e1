//! `tierback mount MOUNTPOINT` (not implemented yet).

use std::path::Path;

use anyhow::{Result, bail};
use tierback_engine::config::Config;

pub fn run(
    _config: &Config,
    mountpoint: &Path,
    _cache_size: Option<&str>,
    _daemon: bool,
) -> Result<i32> {
    bail!(
        "mount {}: not available in this build yet",
        mountpoint.display()
    )
}
