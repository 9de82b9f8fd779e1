//! One file per subcommand. Each returns the process exit code.

mod backup;
mod cat;
mod catalog;
mod init;
mod list;
mod man;
mod metrics;
mod mount;
mod pin;
mod prune;
mod restore_test;
mod run;
mod status;
mod sync;
mod tiers;
pub mod verify;
mod wal_fetch;

use anyhow::Result;
use tierback_engine::catalog::Catalog;
use tierback_engine::config::Config;

use crate::args::{CatalogCommand, Cli, Command, TiersCommand};

pub const EXIT_OK: i32 = 0;
/// Something failed (or, for `verify`, a problem was found).
pub const EXIT_FAILURE: i32 = 1;
/// Some services succeeded and some failed (`backup --all`).
pub const EXIT_PARTIAL: i32 = 3;

pub fn run(cli: Cli) -> Result<i32> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Init { force } => init::run(&cli.config, force),
        Command::Backup { service, all, json } => {
            let config = Config::load(&cli.config)?;
            backup::run(&config, service.as_deref(), all, json, quiet)
        }
        Command::Run => run::run(&Config::load(&cli.config)?, quiet),
        Command::Metrics { serve } => metrics::run(&Config::load(&cli.config)?, serve),
        Command::List { service, json } => {
            list::run(&Config::load(&cli.config)?, service.as_deref(), json)
        }
        Command::Cat { path } => cat::run(&Config::load(&cli.config)?, &path),
        Command::RestoreTest {
            service,
            tier,
            json,
        } => restore_test::run(
            &Config::load(&cli.config)?,
            &service,
            tier.as_deref(),
            json,
            quiet,
        ),
        Command::Verify {
            service,
            tier,
            all,
            json,
        } => verify::run(
            &Config::load(&cli.config)?,
            service.as_deref(),
            tier.as_deref(),
            all,
            json,
        ),
        Command::Prune { dry_run, json } => prune::run(&Config::load(&cli.config)?, dry_run, json),
        Command::WalFetch {
            service,
            wal_file,
            dest,
        } => Ok(wal_fetch::run(&cli.config, &service, &wal_file, &dest)),
        Command::Sync {
            tier,
            dry_run,
            json,
        } => sync::run(&Config::load(&cli.config)?, tier.as_deref(), dry_run, json),
        Command::Pin { path } => pin::run(&Config::load(&cli.config)?, &path, true),
        Command::Unpin { path } => pin::run(&Config::load(&cli.config)?, &path, false),
        Command::Catalog {
            command: CatalogCommand::Rebuild { from, force },
        } => catalog::rebuild(&Config::load(&cli.config)?, &from, force),
        Command::Mount {
            mountpoint,
            cache_size,
            daemon,
        } => mount::run(
            &Config::load(&cli.config)?,
            &mountpoint,
            cache_size.as_deref(),
            daemon,
        ),
        Command::Tiers {
            command: TiersCommand::Setup { tier },
        } => tiers::setup(&Config::load(&cli.config)?, tier.as_deref()),
        Command::Status { json } => status::run(&Config::load(&cli.config)?, json),
        // Neither needs a config.
        Command::Completions { shell } => man::completions(shell),
        Command::Man => man::man(),
    }
}

/// Opens the catalog for writing, marking runs of dead processes as interrupted.
fn open_catalog(config: &Config) -> Result<Catalog> {
    let catalog = Catalog::open(&config.catalog_path)?;
    catalog.reap_interrupted()?;
    Ok(catalog)
}
