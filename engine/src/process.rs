//! Every child process tierback starts goes through here, under one contract:
//! - it dies with tierback: a `kill -9` of tierback (or a crash) must not leave a dump tool,
//!   rclone or a scratch server running;
//! - its stderr is drained on its own thread into a bounded tail, so neither pipe can deadlock
//!   the other and a chatty child cannot grow memory; errors quote that tail;
//! - stdout is the caller's: streamed ([`Running::take_stdout`]) or collected ([`run`]);
//! - a child its owner lets go of before it ended is killed and reaped;
//! - its exit comes back with that tail ([`Exit`]): a bad one becomes the caller's error (a
//!   failed dump, a failed rclone call, a failed restore test) quoting it.
//!
//! A long-lived child (`rclone serve`) is started through a [`Spawner`], whose thread lives as
//! long as the child's owner, and its tail is read while it runs ([`Running::tail`]).

use std::io::Read;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How much of a child's stderr is kept: its last lines say what failed, and the bound holds
/// however chatty it gets (`rclone -vv` prints a line per chunk).
const TAIL_BYTES: usize = 16 * 1024;
pub const TAIL_LINES: usize = 20;

/// A child started under the contract. Dropped before it ended, it is killed and reaped.
pub struct Running {
    program: String,
    guard: ChildGuard,
    tail: Tail,
}

/// How a child ended: its status and the last lines of its stderr.
#[derive(Debug)]
pub struct Exit {
    pub program: String,
    pub status: ExitStatus,
    pub tail: String,
}

/// A child run to its end with its stdout collected.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub exit: Exit,
}

impl Running {
    /// Starts `cmd` with its stderr drained into a tail. Stdin and stdout are as `cmd` sets
    /// them (piped, to stream).
    pub fn spawn(mut cmd: Command) -> std::io::Result<Running> {
        cmd.stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn()?;
        let tail = Tail::drain(child.stderr.take().expect("stderr is piped"));
        Ok(Running {
            program,
            guard: ChildGuard(child),
            tail,
        })
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.guard.0.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.guard.0.stdout.take()
    }

    /// Its status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.guard.0.try_wait()
    }

    /// True while it has not exited (an error asking counts as exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.guard.0.id()
    }

    /// Its stderr tail, readable while it runs (a server's last words when a request to it
    /// fails).
    pub fn tail(&self) -> &Tail {
        &self.tail
    }

    /// Kills it (if it still runs) and reaps it; the last lines of its stderr.
    pub fn stop(self) -> String {
        let Running { guard, tail, .. } = self;
        drop(guard);
        tail.finish()
    }

    /// Waits until it exits, or kills it once `deadline` has passed (`Ok(false)`). Polling
    /// starts fast because most short commands end within ~70 ms.
    pub fn exits_within(&mut self, deadline: Duration) -> std::io::Result<bool> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            if self.try_wait()?.is_some() {
                return Ok(true);
            }
            if start.elapsed() >= deadline {
                let _ = self.guard.0.kill();
                return Ok(false);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Waits for it to exit; its status and the last lines of its stderr.
    pub fn wait(mut self) -> Result<Exit> {
        let status = self
            .guard
            .0
            .wait()
            .map_err(|e| Error::io(format!("waiting for `{}`", self.program), e))?;
        Ok(Exit {
            status,
            tail: self.tail.finish(),
            program: std::mem::take(&mut self.program),
        })
    }
}

/// Runs `cmd` to its end under the contract: stdin `/dev/null`, stdout collected
/// (`Command::output`, with a bounded stderr and die-with-parent).
pub fn run(mut cmd: Command) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = Running::spawn(cmd)?;
    let mut stdout = child.take_stdout().expect("stdout is piped");
    let mut collected = Vec::new();
    let read = stdout.read_to_end(&mut collected);
    let exit = child.wait().map_err(std::io::Error::other)?;
    read?;
    Ok(Output {
        stdout: collected,
        exit,
    })
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills and reaps a child that is still running when its owner goes away (error paths,
/// unwinding), so none outlives the operation that started it.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A child's stderr drained on its own thread into a bounded buffer that can be read while the
/// child still runs (a long-lived server's tail is reported when a request to it fails).
#[derive(Clone)]
pub struct Tail {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Tail {
    pub fn drain(mut stderr: impl Read + Send + 'static) -> Tail {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut tail = sink.lock().unwrap_or_else(|e| e.into_inner());
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > 2 * TAIL_BYTES {
                    let cut = tail.len() - TAIL_BYTES;
                    tail.drain(..cut);
                }
            }
        });
        Tail {
            buf,
            thread: Arc::new(Mutex::new(Some(thread))),
        }
    }

    /// The last lines so far.
    pub fn text(&self) -> String {
        let tail = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        last_lines(&String::from_utf8_lossy(&tail), TAIL_LINES)
    }

    /// Waits for the pipe to close (the child has exited) and returns the last lines.
    pub fn finish(&self) -> String {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        self.text()
    }
}

/// A thread that only starts children, for a long-lived child started from short-lived threads
/// (block reads run on pool threads): the kernel's parent-death signal is tied to the *thread*
/// that forked, so starting the child here ties its life to the spawner's owner instead. The
/// owner drops its children before the spawner (whose thread's end would SIGTERM them).
pub struct Spawner {
    tx: mpsc::Sender<(Command, mpsc::Sender<std::io::Result<Running>>)>,
}

impl Spawner {
    /// Starts the thread, named `name`.
    pub fn new(name: &str) -> Spawner {
        let (tx, rx) = mpsc::channel::<(Command, mpsc::Sender<std::io::Result<Running>>)>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for (cmd, reply) in rx {
                    let _ = reply.send(Running::spawn(cmd));
                }
            })
            .expect("spawn a spawner thread");
        Spawner { tx }
    }

    /// [`Running::spawn`] on the spawner's thread.
    pub fn spawn(&self, cmd: Command) -> std::io::Result<Running> {
        let gone = || std::io::Error::other("spawner thread is gone");
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx.send((cmd, reply_tx)).map_err(|_| gone())?;
        reply_rx.recv().map_err(|_| gone())?
    }
}

/// Asks the kernel to SIGTERM the child when the thread that started it ends, so a `kill -9`
/// of tierback does not leave rclone running. Callers make sure that thread outlives the child
/// (short commands are waited for by their caller; a long-lived one is started by a
/// [`Spawner`]).
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("parent exited"));
            }
            Ok(())
        });
    }
}
