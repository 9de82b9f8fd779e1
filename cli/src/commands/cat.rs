//! `tierback cat SERVICE/TIER/DATE/FILE`: the decompressed bytes, each block verified before it
//! is written, so a corrupt block stops the output instead of reaching `psql`.

use std::fs::File;
use std::io::BufWriter;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

use anyhow::{Result, anyhow, bail};
use tierback_engine::artifact::reader::ArtifactReader;
use tierback_engine::catalog::{Catalog, CopyState};
use tierback_engine::config::Config;
use tierback_engine::id::ServiceName;
use tierback_engine::layout::ViewPath;
use tierback_engine::store::open_tier;

use super::EXIT_OK;

pub fn run(config: &Config, path: &str) -> Result<i32> {
    let view = ViewPath::parse(path)?;
    let tier = config.tier(&view.tier)?;
    let catalog = Catalog::open_read_only(&config.catalog_path)?;
    let service = ServiceName::new(view.service.as_str()).map_err(|e| anyhow!("{view}: {e}"))?;
    let Some(artifact) = catalog.find_artifact(&service, &view.date, &view.file)? else {
        bail!(
            "{view}: no such backup (see `tierback list --service {}`)",
            view.service
        );
    };
    match artifact.copy_on(&tier.name) {
        Some(c) if c.state != CopyState::Missing => {}
        _ => bail!("{view}: tier {} holds no copy of this backup", view.tier),
    }
    let index = catalog.block_index(artifact.id)?;
    let store = open_tier(tier)?;
    // Write straight to fd 1: std's stdout is line-buffered, which costs a scan of every block.
    // SAFETY: fd 1 is open for the life of the process; ManuallyDrop keeps it open after us.
    let stdout = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut out = BufWriter::with_capacity(1 << 20, &*stdout);
    let reader = ArtifactReader {
        store: store.as_ref(),
        key: &artifact.key,
        index: &index,
    };
    reader.copy_to(&mut out, config.defaults.threads)?;
    Ok(EXIT_OK)
}
