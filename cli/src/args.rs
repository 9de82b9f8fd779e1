//! The command line (DESIGN.md "Command line"): the contract that docs, runbooks and tests use.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueHint};

#[derive(Parser)]
#[command(
    name = "tierback",
    version,
    about = "Three-tier backups with a verified, read-only view of every copy",
    long_about = "Three-tier backups with a verified, read-only view of every copy.\n\n\
        tierback takes the backups of the services in its config (PostgreSQL, Redis, Qdrant, \
        MinIO, n8n, Vault, files, any command), stores each as an ordinary, checksummed .gz on \
        three tiers (a local disk, an S3-compatible object store, an rclone remote), records them \
        in a catalog, and shows every copy read-only as /SERVICE/TIER/DATE/FILE, so that a \
        restore is cp, psql -f FILE or tierback cat.",
    subcommand_value_name = "COMMAND"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "TIERBACK_CONFIG", default_value = tierback_engine::config::DEFAULT_CONFIG_PATH, value_hint = ValueHint::FilePath)]
    pub config: PathBuf,
    /// More log output (-v: debug, -vv: trace).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Write an example config (if none exists), create the local tier and the catalog.
    Init {
        /// Overwrite an existing config file.
        #[arg(long)]
        force: bool,
    },
    /// Take a backup of one service, or of every service with --all.
    Backup {
        /// The service, as named in [services.NAME].
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        service: Option<String>,
        /// Every service in the config.
        #[arg(long)]
        all: bool,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Do what is due: scheduled backups (a missed one is caught up once), then sync, and the
    /// verify and prune jobs when their schedules say so; then write the metrics textfile.
    /// Meant to be started by cron every few minutes.
    Run,
    /// Print the Prometheus metrics (the seed's names), or serve them over HTTP with --serve.
    Metrics {
        /// Serve GET /metrics on [metrics] listen (default 127.0.0.1:9188) until stopped.
        #[arg(long)]
        serve: bool,
    },
    /// List backups and where their copies are.
    List {
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Write a backup's decompressed, verified bytes to stdout. PATH is as the mount shows it:
    /// SERVICE/TIER/YYYY-MM-DD/FILE.
    Cat {
        /// SERVICE/TIER/YYYY-MM-DD/FILE, e.g. postgresql/local/2026-01-16/zentoria_main_120000.sql.
        path: String,
    },
    /// Check stored copies: each member's and block's SHA-256 and CRC, both whole-file hashes,
    /// sidecars. Exit 1 on any problem. Without options: each tier's scheduled share (oldest-checked first, within its
    /// verify_budget, every copy within its verify_window); --all, --tier or --service read every
    /// copy they name.
    Verify {
        /// Every copy of this service.
        #[arg(long)]
        service: Option<String>,
        /// Every copy on this tier.
        #[arg(long)]
        tier: Option<String>,
        /// Every copy on every tier.
        #[arg(long)]
        all: bool,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Replay the newest backup of SERVICE into a scratch target and compare it with the facts
    /// recorded at backup time (PostgreSQL: a scratch database and every table's row count).
    /// Exit 1 if anything differs.
    RestoreTest {
        /// The service, as named in [services.NAME].
        service: String,
        /// Test the copy on this tier (default: the first tier).
        #[arg(long)]
        tier: Option<String>,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// PostgreSQL's restore_command for point-in-time recovery: write archived WAL file WAL_FILE
    /// of a postgres_wal SERVICE, verified, to DEST (`restore_command = 'tierback wal-fetch
    /// SERVICE %f %p'`). Exit 1 if it is not archived; 126 if it is but no tier has an intact
    /// copy (PostgreSQL then stops recovery instead of ending it early, short of the target).
    WalFetch {
        /// The postgres_wal service, as named in [services.NAME].
        service: String,
        /// The WAL file PostgreSQL asks for (%f).
        wal_file: String,
        /// Where to write it (%p).
        #[arg(value_hint = ValueHint::FilePath)]
        dest: std::path::PathBuf,
    },
    /// Upload what each tier's desired state says it lacks (its copy policy and retention, pins)
    /// and repair corrupt copies; verify each upload.
    Sync {
        /// Only this tier.
        #[arg(long)]
        tier: Option<String>,
        /// Print the plan (every copy, kept, uploaded or removed, and why) without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Remove what each tier holds and its desired state does not want. Never removes a service's
    /// newest verified backup on a tier, a pinned backup, nor a copy another tier still waits for.
    Prune {
        /// Print the plan (every copy, kept or removed, and why) without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Keep a backup on every tier that holds it, whatever retention says (and send it to tiers
    /// whose retention has keep_pinned = true). PATH names a file as the mount shows it
    /// (SERVICE/TIER/DATE/FILE), which pins its whole backup, or a backup as SERVICE/TIME with
    /// TIME as `list` prints it (2026-01-16T12:00:00Z).
    Pin {
        /// SERVICE/TIER/DATE/FILE or SERVICE/TIME.
        path: String,
    },
    /// Undo `pin`: retention decides again.
    Unpin {
        /// SERVICE/TIER/DATE/FILE or SERVICE/TIME.
        path: String,
    },
    /// Catalog administration.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Mount the read-only view of every backup on every tier at MOUNTPOINT.
    Mount {
        /// An existing directory.
        #[arg(value_hint = ValueHint::DirPath)]
        mountpoint: std::path::PathBuf,
        /// Decompressed-block cache size (default: [mount] cache_size, 256MiB).
        #[arg(long)]
        cache_size: Option<String>,
        /// Detach and run in the background.
        #[arg(long)]
        daemon: bool,
    },
    /// Tier administration.
    Tiers {
        #[command(subcommand)]
        command: TiersCommand,
    },
    /// Each service's newest backup, age and last run; each tier's usage.
    Status {
        /// Print the result as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print the completion script for SHELL on stdout (`make install` installs bash's, zsh's and
    /// fish's; by hand: `tierback completions bash > /etc/bash_completion.d/tierback`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, tierback(1), as roff on stdout: `tierback man | man -l -`.
    Man,
}

#[derive(Subcommand)]
pub enum TiersCommand {
    /// Apply the bucket policy (versioning, noncurrent versions expired after the tier's
    /// `noncurrent_expiry`, cleanup of delete markers and incomplete uploads) where the server
    /// supports it. Current objects get no expiry rule: prune manages them, and an existing rule
    /// that expires them is removed (and reported).
    Setup {
        /// Only this tier (default: every s3 tier).
        #[arg(long)]
        tier: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Rebuild a lost catalog from tiers' sidecars alone (each file's hash is checked).
    Rebuild {
        /// A tier to read; repeat it (`--from minio --from offsite`) to record the copies on
        /// each, so sync does not upload them again and prune can manage them.
        #[arg(long, required = true)]
        from: Vec<String>,
        /// Replace an existing catalog (kept as CATALOG.bak).
        #[arg(long)]
        force: bool,
    },
}
