//! `tierback tiers setup` (not implemented yet).

use anyhow::{Result, bail};
use tierback_engine::config::Config;

pub fn setup(_config: &Config, _tier: Option<&str>) -> Result<i32> {
    bail!("tiers setup: not available in this build yet")
}
