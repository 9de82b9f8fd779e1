//! Terminal output: logging setup, progress bars (only on a terminal), human formatting.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use tierback_engine::backup::Progress;

/// Logs to stderr; colours only when it is a terminal that stays attached (`ansi`).
pub fn init_logging(verbose: u8, quiet: bool, ansi: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // TIERBACK_LOG, else the usual RUST_LOG (`RUST_LOG=tierback=debug` matches every crate of
    // tierback's), else what -v/-q say.
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIERBACK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi && std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// An error and its causes on one line.
pub fn chain(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s
}

/// A byte-progress bar on stderr when it is a terminal; nothing otherwise (cron, pipes).
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {bytes} read, {binary_bytes_per_sec}, {elapsed}",
                )
                .expect("valid template"),
            );
            b
        });
        Bar { bar }
    }
}

impl Progress for Bar {
    fn start(&self, what: &str) {
        if let Some(b) = &self.bar {
            b.reset();
            b.set_message(what.to_owned());
            b.enable_steady_tick(std::time::Duration::from_millis(120));
        }
    }
    fn advance(&self, raw_bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_position(raw_bytes);
        }
    }
    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `3.21x`.
pub fn ratio(raw: u64, stored: u64) -> String {
    if stored == 0 {
        "-".into()
    } else {
        format!("{:.2}x", raw as f64 / stored as f64)
    }
}

/// `2h 5m`, `3d 4h`: an age for people.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}
