//! A real kernel mount of `tierback mount` for tests: started as a child process, waited for in
//! /proc/self/mountinfo, and torn down in `Drop` (SIGTERM, then SIGKILL, then
//! `umount2(MNT_DETACH)`) so a failing test never leaves a dead mount behind.
//!
//! [`TestUsers`]: real unprivileged users and a group, to read the mount as someone else
//! (`/dev/fuse` is root-only here: the mount runs as root with `allow_other` and the reads go
//! through `runuser -u USER --`), removed again in `Drop`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// A group and users made with `groupadd`/`useradd` for one test, deleted on drop (also when
/// the test panics). Names are unique: `tb<pid><time>` plus a suffix.
pub struct TestUsers {
    pub group: String,
    /// The users, in the order asked for.
    pub users: Vec<String>,
    made_group: bool,
}

/// Runs an account tool, retrying while another one holds the lock on /etc/passwd or /etc/group.
fn account_tool(args: &[&str]) -> Output {
    let mut tries = 0;
    loop {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("lock") || tries == 20 {
            return out;
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn check(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestUsers {
    /// A new group, and one user per `(suffix, in_group)`. Each user has its own primary group
    /// (`--user-group`); a user `in_group` has the new group as a supplementary group.
    pub fn create(users: &[(&str, bool)]) -> TestUsers {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let base = format!("tb{}{:x}", std::process::id(), nanos & 0xfffff);
        let mut made = TestUsers {
            group: format!("{base}g"),
            users: Vec::new(),
            made_group: false,
        };
        let args = ["groupadd", made.group.as_str()];
        check(&args, &account_tool(&args));
        made.made_group = true;
        for (suffix, in_group) in users {
            let name = format!("{base}{suffix}");
            let mut args = vec![
                "useradd",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
            ];
            if *in_group {
                args.extend(["--groups", made.group.as_str()]);
            }
            args.push(&name);
            let out = account_tool(&args);
            check(&args, &out);
            made.users.push(name);
        }
        made
    }

    /// `id FLAG NAME`, as a number (`-u` uid, `-g` primary gid) or list (`-G`).
    pub fn id(flag: &str, name: &str) -> Vec<u32> {
        let out = Command::new("id").args([flag, name]).output().unwrap();
        check(&["id", flag, name], &out);
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    }

    /// The group's gid.
    pub fn gid(&self) -> u32 {
        let out = Command::new("getent")
            .args(["group", &self.group])
            .output()
            .unwrap();
        let line = String::from_utf8(out.stdout).unwrap();
        line.split(':').nth(2).unwrap().trim().parse().unwrap()
    }

    /// Runs `args` as `user` (`runuser -u USER --`), from `/` so that the test's own working
    /// directory does not matter.
    pub fn run(user: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", user, "--"])
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .expect("runuser")
    }
}

impl Drop for TestUsers {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = account_tool(&["userdel", user]);
            // userdel removes the user's own group when nobody else is in it; make sure.
            let _ = account_tool(&["groupdel", user]);
        }
        if self.made_group {
            let _ = account_tool(&["groupdel", &self.group]);
        }
    }
}
