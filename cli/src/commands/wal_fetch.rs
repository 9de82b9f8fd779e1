//! `tierback wal-fetch SERVICE WAL_FILE DEST`: PostgreSQL's `restore_command`.

use std::path::Path;

use tierback_engine::catalog::Catalog;
use tierback_engine::config::Config;
use tierback_engine::wal_fetch::{Fetched, fetch};

use super::{EXIT_FAILURE, EXIT_OK};

/// Above 125, PostgreSQL treats a restore_command's exit as fatal and stops recovery: an
/// archived segment that cannot be read must not look like the end of the archive, or
/// recovery would finish early and promote a server that is missing committed work.
pub const EXIT_ABORT_RECOVERY: i32 = 126;

/// Never fails with the default exit code 1: any error (an unreadable config or catalog
/// included) is [`EXIT_ABORT_RECOVERY`], and 1 means only "not archived".
pub fn run(config_path: &Path, service: &str, wal_file: &str, dest: &Path) -> i32 {
    let fetched = Config::load(config_path).and_then(|config| {
        let catalog = Catalog::open_read_only(&config.catalog_path)?;
        fetch(&config, &catalog, service, wal_file, dest)
    });
    match fetched {
        Ok(Fetched::Restored { tier, bytes }) => {
            tracing::info!(%service, %wal_file, %tier, bytes, "WAL restored");
            EXIT_OK
        }
        Ok(Fetched::NotArchived) => {
            eprintln!("tierback: wal-fetch: {wal_file} is not in the archive of {service}");
            EXIT_FAILURE
        }
        Err(e) => {
            eprintln!("tierback: error: wal-fetch {wal_file}: {e}");
            EXIT_ABORT_RECOVERY
        }
    }
}
