//! `tierback`: parses the command line, loads the config, calls the engine. Each error is
//! printed once, here, and becomes the exit code.

mod args;
mod commands;
mod output;

use clap::Parser;

fn main() {
    // Everything tierback creates (tiers, catalog, locks, logs, staging, restore-test scratch)
    // is owner-only unless the config gives a group access: backups hold whole databases and
    // password hashes. Tiers with `group` set their modes themselves.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    let args = args::Cli::parse();
    // Commands that only print behave like other Unix tools in a pipeline (`tierback cat … |
    // head` ends quietly). The others keep SIGPIPE ignored: they write into pipes of their own
    // (a tar producer, `tar`/`psql` in a restore test) and must see EPIPE as an error, not die.
    if matches!(
        args.command,
        args::Command::Cat { .. }
            | args::Command::List { .. }
            | args::Command::Status { .. }
            | args::Command::Metrics { serve: false }
            | args::Command::Completions { .. }
            | args::Command::Man
    ) {
        // SAFETY: resetting a signal disposition at startup, before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // A daemon's stderr becomes its log file: no colour codes in it.
    let daemon = matches!(args.command, args::Command::Mount { daemon: true, .. });
    output::init_logging(args.verbose, args.quiet, !daemon);
    let code = match tierback_engine::clock::check_env()
        .map_err(anyhow::Error::msg)
        .and_then(|()| commands::run(args))
    {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tierback: error: {}", output::chain(&e));
            commands::EXIT_FAILURE
        }
    };
    std::process::exit(code);
}
