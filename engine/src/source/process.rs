//! A child process as a dump: stdout is the data, and the exit status decides (a non-zero exit
//! is an error carrying the child's stderr tail, and nothing is stored). The child runs under
//! [`crate::process`]'s contract. Secrets reach it through its environment, never its argv.

use std::io::Read;
use std::process::{ChildStdout, Command, Stdio};

use super::{Dump, Facts};
use crate::process::Running;
use crate::secret::Secret;
use crate::{Error, Result};

/// What a driver runs: an argv (never a secret in it) and the variables its child gets.
pub type Invocation = (Vec<String>, Vec<(String, Secret)>);

pub struct ChildDump {
    service: String,
    child: Running,
    /// None once abandoned: closing it unblocks anything still writing to it.
    stdout: Option<ChildStdout>,
}

impl ChildDump {
    /// Starts `argv` with `env` added to the inherited environment.
    pub fn spawn(service: &str, argv: &[String], env: &[(String, Secret)]) -> Result<ChildDump> {
        let program = argv.first().cloned().unwrap_or_default();
        let mut cmd = Command::new(&program);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v.expose());
        }
        // Started from the thread that takes the backup, which waits for it (die-with-parent).
        let mut child = Running::spawn(cmd)
            .map_err(|e| Error::source(service, format!("cannot start `{program}`: {e}")))?;
        let stdout = child.take_stdout();
        Ok(ChildDump {
            service: service.to_owned(),
            child,
            stdout,
        })
    }
}

impl Read for ChildDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.stdout {
            Some(out) => out.read(buf),
            None => Ok(0),
        }
    }
}

impl Dump for ChildDump {
    /// A child that already exited with a failure explains itself; one still running is killed.
    fn abandon(mut self: Box<Self>) -> Option<Error> {
        // Asked before stdout is closed: closing it would make a live child die of SIGPIPE and
        // look like the cause.
        let failed = matches!(self.child.try_wait(), Ok(Some(status)) if !status.success());
        // A grandchild holding stderr could otherwise block on a full stdout forever.
        self.stdout = None;
        if failed {
            self.finish().err()
        } else {
            None // drop kills and reaps it
        }
    }

    fn finish(self: Box<Self>) -> Result<Facts> {
        let ChildDump { service, child, .. } = *self;
        let exit = child.wait()?;
        if !exit.status.success() {
            return Err(Error::Source {
                service,
                message: format!(
                    "`{}` failed ({}); nothing was stored",
                    exit.program, exit.status
                ),
                stderr_tail: exit.tail,
            });
        }
        let mut facts = Facts::new();
        facts.insert("program".into(), exit.program.into());
        if !exit.tail.is_empty() {
            facts.insert("stderr_tail".into(), exit.tail.into());
        }
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Box<ChildDump> {
        Box::new(ChildDump::spawn("svc", &["sh".into(), "-c".into(), script.into()], &[]).unwrap())
    }

    #[test]
    fn stdout_is_data_and_exit_status_decides() {
        let mut d = sh("echo hello; echo warn >&2");
        let mut out = String::new();
        d.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello\n");
        assert_eq!(d.finish().unwrap()["stderr_tail"], "warn");

        let mut d = sh("echo partial; echo 'FATAL: no such database' >&2; exit 1");
        std::io::copy(&mut d, &mut std::io::sink()).unwrap();
        let e = d.finish().unwrap_err().to_string();
        assert!(
            e.contains("FATAL: no such database") && e.contains("exit status: 1"),
            "{e}"
        );
    }

    #[test]
    fn noisy_stderr_neither_deadlocks_nor_grows() {
        let mut d =
            sh("i=0; while [ $i -lt 3000 ]; do echo line $i >&2; i=$((i+1)); done; echo ok");
        let mut out = String::new();
        d.read_to_string(&mut out).unwrap();
        let facts = d.finish().unwrap();
        let tail = facts["stderr_tail"].as_str().unwrap();
        assert_eq!(tail.lines().count(), crate::process::TAIL_LINES);
        assert!(tail.ends_with("line 2999"));
    }

    #[test]
    fn secrets_go_to_env_not_argv() {
        let secret = crate::secret::SecretRef::parse("s3cr3t")
            .unwrap()
            .resolve()
            .unwrap();
        let mut d = Box::new(
            ChildDump::spawn(
                "svc",
                &["sh".into(), "-c".into(), "printf %s \"$PW\"".into()],
                &[("PW".into(), secret)],
            )
            .unwrap(),
        );
        let mut out = String::new();
        d.read_to_string(&mut out).unwrap();
        assert_eq!(out, "s3cr3t");
        d.finish().unwrap();
    }

    #[test]
    fn abandoning_a_child_never_blocks_and_keeps_its_own_failure() {
        // Still producing (blocked on a full pipe): killed, no error of its own.
        let d = sh("yes");
        let started = std::time::Instant::now();
        assert!(d.abandon().is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Already failed: its exit status and stderr come back.
        let mut d = sh("echo 'FATAL: disk quota' >&2; exit 3");
        while d.child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let e = d.abandon().unwrap().to_string();
        assert!(e.contains("FATAL: disk quota"), "{e}");
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let e = ChildDump::spawn("svc", &["/nonexistent/pg_dump".into()], &[])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("/nonexistent/pg_dump") && e.contains("svc"),
            "{e}"
        );
    }
}
