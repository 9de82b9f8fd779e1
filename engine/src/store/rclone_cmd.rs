//! Running the `rclone` binary: one invocation is a child process under [`crate::process`]'s
//! contract (stderr drained into a bounded tail, killed and reaped if the caller unwinds), with
//! its stdout collected, a deadline after which it is killed, and a non-zero exit an error
//! carrying the tail and classified (not found, transient).
//!
//! Nothing secret is ever put on argv: the remote string is checked by [`check_remote`] (no
//! inline connection-string parameters), keys and local paths are not secret, and credentials
//! reach rclone only through its config file or `RCLONE_*` environment variables.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::process::Running;
use crate::{Error, Result};

/// rclone's documented exit codes that mean "the path is not there" (3: directory not found,
/// 4: file not found).
pub const EXIT_DIR_NOT_FOUND: i32 = 3;
pub const EXIT_FILE_NOT_FOUND: i32 = 4;
/// rclone's exit code for "temporary error (one that more retries might fix)".
const EXIT_TEMPORARY: i32 = 5;

/// The slowest upload/download rate treated as alive when sizing a transfer's deadline: a
/// transfer may take `timeout + bytes / MIN_TRANSFER_RATE`. 1 MiB/s is far below any link an
/// offsite copy is usable over, yet keeps a multi-GiB upload from being cut off.
const MIN_TRANSFER_RATE: u64 = 1024 * 1024;

/// How to run rclone for one tier.
#[derive(Clone)]
pub struct Rclone {
    pub tier: String,
    pub binary: PathBuf,
    /// Connect/idle timeout given to rclone, and the deadline of every non-transfer command.
    pub timeout: Duration,
    /// Extra environment for every child (e.g. `RCLONE_CONFIG_*` resolved by the caller).
    pub env: Vec<(String, String)>,
    /// Counts every process started, so tests can show that block reads start none.
    pub spawned: Arc<AtomicU64>,
}

/// A finished, successful invocation.
pub struct Output {
    pub stdout: Vec<u8>,
}

/// A failed invocation, before it becomes an [`Error`]: the caller may treat some exit codes
/// (not found) as answers rather than failures.
pub struct Failure {
    pub code: Option<i32>,
    pub error: Error,
}

impl Rclone {
    /// The deadline for a command that moves `bytes` over the network.
    pub fn transfer_deadline(&self, bytes: u64) -> Duration {
        self.timeout + Duration::from_secs(bytes / MIN_TRANSFER_RATE)
    }

    /// A `Command` for `rclone ARGS` with the flags every invocation gets.
    pub fn command(&self, args: &[OsString]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            // rclone's own connect and idle-I/O timeouts, so it gives up on a dead remote
            // before our deadline kills it, with a message in its stderr.
            .arg("--contimeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .arg("--timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            // Whole-operation retries belong to the caller (sync retries with backoff); a
            // failed attempt is reported at once. Low-level retries (throttling) stay rclone's.
            .arg("--retries")
            .arg("1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        crate::process::die_with_parent(&mut cmd);
        cmd
    }

    /// Runs `rclone ARGS` to completion within `deadline`.
    pub fn run(
        &self,
        what: &str,
        args: &[OsString],
        deadline: Duration,
    ) -> std::result::Result<Output, Failure> {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped());
        let mut child = Running::spawn(cmd).map_err(|e| Failure {
            code: None,
            error: Error::io(
                format!(
                    "tier {}: cannot start rclone ({})",
                    self.tier,
                    self.binary.display()
                ),
                e,
            ),
        })?;
        self.spawned.fetch_add(1, Ordering::Relaxed);
        let mut stdout = child.take_stdout().expect("stdout is piped");
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            stdout.read_to_end(&mut buf).map(|_| buf)
        });
        let waiting = |e| Failure {
            code: None,
            error: Error::io(format!("tier {}: waiting for rclone {what}", self.tier), e),
        };
        let in_time = child.exits_within(deadline).map_err(waiting)?;
        let exit = child.wait().map_err(|e| Failure {
            code: None,
            error: e,
        })?;
        let (status, tail_text) = (exit.status, exit.tail);
        if !in_time {
            return Err(Failure {
                code: None,
                error: self.failed(
                    what,
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {} s; rclone was killed",
                        deadline.as_secs()
                    ),
                    &tail_text,
                ),
            });
        }
        let stdout = out.join().unwrap_or_else(|_| Ok(Vec::new()));
        if !status.success() {
            return Err(Failure {
                code: status.code(),
                error: self.failed(
                    what,
                    classify(status, &tail_text),
                    status.to_string(),
                    &tail_text,
                ),
            });
        }
        let stdout = stdout.map_err(|e| Failure {
            code: None,
            error: Error::io(
                format!("tier {}: reading rclone {what} output", self.tier),
                e,
            ),
        })?;
        Ok(Output { stdout })
    }

    /// The error for a failed invocation: the tier, what was attempted, and rclone's own words.
    pub fn failed(
        &self,
        what: &str,
        kind: std::io::ErrorKind,
        message: String,
        tail: &str,
    ) -> Error {
        Error::io(
            format!("tier {}: rclone {what}", self.tier),
            std::io::Error::new(kind, with_tail(message, tail)),
        )
    }
}

impl Failure {
    /// True when rclone said the path does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self.code, Some(EXIT_DIR_NOT_FOUND | EXIT_FILE_NOT_FOUND))
    }
}

impl Failure {
    /// The error itself. (Not a `From` impl: a second `From<_> for Error` would break type
    /// inference of `?` elsewhere in the crate.)
    pub fn into_error(self) -> Error {
        self.error
    }
}

/// Appends rclone's stderr tail to a message.
pub fn with_tail(message: String, tail: &str) -> String {
    if tail.trim().is_empty() {
        message
    } else {
        format!(
            "{message}\n--- rclone stderr (last lines) ---\n{}",
            tail.trim_end()
        )
    }
}

/// Maps a failed run onto an `io::ErrorKind`, so that [`Error::is_transient`] is true for the
/// failures a later retry may fix: rclone reports network trouble only as text, so its words
/// are matched, then its "temporary error" exit code.
fn classify(status: ExitStatus, tail: &str) -> std::io::ErrorKind {
    classify_text(tail).unwrap_or(if status.code() == Some(EXIT_TEMPORARY) {
        std::io::ErrorKind::Interrupted
    } else {
        std::io::ErrorKind::Other
    })
}

/// The network failure rclone's stderr names, if any.
pub fn classify_text(tail: &str) -> Option<std::io::ErrorKind> {
    use std::io::ErrorKind;
    let t = tail.to_ascii_lowercase();
    if t.contains("connection refused") {
        Some(ErrorKind::ConnectionRefused)
    } else if t.contains("connection reset") || t.contains("broken pipe") {
        Some(ErrorKind::ConnectionReset)
    } else if t.contains("timeout") || t.contains("deadline exceeded") {
        Some(ErrorKind::TimedOut)
    } else {
        None
    }
}

/// Refuses remote strings that carry connection-string parameters (`remote,key=value:path` or
/// `:backend,key=value:path`): they may hold credentials and would land on rclone's argv, where
/// any local user can read them. The remote itself is not echoed, for the same reason.
pub fn check_remote(tier: &str, remote: &str) -> Result<()> {
    let Some(colon) = remote.find(':') else {
        return Err(Error::Invalid(format!(
            "tier {tier}: rclone remote must look like NAME:PATH (e.g. onedrive:Backups)"
        )));
    };
    // `:backend:path` starts with a colon: then the name part lies between the first two.
    let name_part = if colon == 0 {
        remote[1..].split(':').next().unwrap_or("")
    } else {
        &remote[..colon]
    };
    if name_part.contains(',') || name_part.contains('=') {
        return Err(Error::Invalid(format!(
            "tier {tier}: the rclone remote carries connection-string parameters, which would \
             appear on rclone's command line; define the remote in rclone's config or through \
             RCLONE_CONFIG_<NAME>_* environment variables instead"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_with_inline_parameters_are_refused_without_echoing_them() {
        assert!(check_remote("t", "onedrive:Zentoria/Backups").is_ok());
        assert!(check_remote("t", "offsite:").is_ok());
        assert!(check_remote("t", ":local:/tmp/x").is_ok());
        for bad in [
            ":s3,access_key_id=AKIA,secret_access_key=SEKRIT:bucket",
            "remote,pass=SEKRIT:path",
        ] {
            let e = check_remote("t", bad).unwrap_err().to_string();
            assert!(!e.contains("SEKRIT") && e.contains("RCLONE_CONFIG_"), "{e}");
        }
        assert!(check_remote("t", "no-colon").is_err());
    }

    #[test]
    fn network_failures_are_transient() {
        use std::os::unix::process::ExitStatusExt;
        let exit = |c: i32| ExitStatus::from_raw(c << 8);
        let kind = classify(exit(1), "dial tcp 127.0.0.1:1: connect: connection refused");
        assert_eq!(kind, std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(exit(5), "whatever"),
            std::io::ErrorKind::Interrupted
        );
        assert_eq!(
            classify(exit(1), "didn't find section in config file"),
            std::io::ErrorKind::Other
        );
    }
}
