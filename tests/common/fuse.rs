//! A real kernel mount of `tierback mount` for tests: started as a child process, waited for in
//! /proc/self/mountinfo, and torn down in `Drop` (SIGTERM, then SIGKILL, then
//! `umount2(MNT_DETACH)`) so a failing test never leaves a dead mount behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::Env;

pub struct Mount {
    pub dir: PathBuf,
    pub child: Option<Child>,
}

/// True if a FUSE filesystem is mounted exactly at `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    let want = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(4) == Some(&want) && l.contains(" - fuse")
        })
}

/// Lazily detaches whatever is mounted at `dir` (ignores "not mounted").
pub fn detach(dir: &Path) {
    // `umount -l` is umount2(MNT_DETACH); the helper crate has no libc dependency.
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(dir)
        .stderr(Stdio::null())
        .status();
}

fn send(pid: u32, signal: i32) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

impl Mount {
    /// Runs `tierback mount DIR EXTRA...` in the foreground and waits until the kernel mount is up.
    pub fn start(env: &Env, extra: &[&str]) -> Mount {
        let dir = env.path().join("mnt");
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec!["mount", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let child = env
            .cmd(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tierback mount");
        let mut m = Mount {
            dir,
            child: Some(child),
        };
        m.wait_mounted();
        m
    }

    pub fn wait_mounted(&mut self) {
        let t = Instant::now();
        while !is_mounted(&self.dir) {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait().unwrap()
            {
                panic!("tierback mount exited early: {status}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "mount did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends `signal` and waits (up to 10 s) for the process to exit; returns its status.
    pub fn signal_and_wait(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("mount process");
        send(child.id(), signal);
        let t = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if t.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("mount process ignored signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send(child.id(), 15);
            let t = Instant::now();
            while child.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        detach(&self.dir);
    }
}
