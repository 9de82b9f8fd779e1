//! `tierback`: parses the command line, loads the config, calls the engine. Each error is
//! printed once, here, and becomes the exit code.

mod args;
mod commands;
mod output;

use clap::Parser;

fn main() {
    // Behave like other Unix tools in a pipeline (`tierback cat … | head`).
    // SAFETY: resetting a signal disposition at startup, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = args::Cli::parse();
    // A daemon's stderr becomes its log file: no colour codes in it.
    let daemon = matches!(args.command, args::Command::Mount { daemon: true, .. });
    output::init_logging(args.verbose, args.quiet, !daemon);
    let code = match commands::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tierback: error: {}", output::chain(&e));
            commands::EXIT_FAILURE
        }
    };
    std::process::exit(code);
}
