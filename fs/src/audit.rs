//! The audit trail (`[mount] audit_log`): one JSON line per attempt to read through the mount —
//! every open of a file, every directory read (`opendir`) and every path walk the mount refused —
//! saying when, who (uid, user name, gid, pid, command), which path, and whether it was allowed,
//! so an auditor sees refused attempts as well as granted ones. Never file contents.
//!
//! Appended with `O_APPEND`, one `write` per line, so lines from concurrent requests never
//! interleave. Rotated by size: when a line would take the file past its limit, `NAME` becomes
//! `NAME.1` (`NAME.1` becomes `NAME.2`, and so on; [`KEEP`] old generations are kept, the oldest
//! is dropped) and a new `NAME` is created owner-only (0600). A failure to log never fails the
//! request: it is counted ([`AuditLog::failures`], the root's `user.tierback.audit_failures`)
//! and logged once until the log is writable again.
//!
//! This module also says who a caller is beyond what the kernel sends (uid, gid, pid):
//! [`Identities`] reads supplementary groups and the command from `/proc/<pid>` and the user
//! name from the user database.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tierback_engine::layout::rfc3339;
use tracing::{error, info};

/// Old generations kept by rotation: `NAME.1` (newest) to `NAME.3`.
pub const KEEP: u32 = 3;

/// The rotation size when none is given (`[mount] audit_log_max_size`).
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;

/// The longest command name recorded (the kernel's own limit is 15 bytes).
const MAX_COMMAND: u64 = 64;

/// How long a user name looked up once is trusted.
const NAME_TTL: Duration = Duration::from_secs(60);

/// Who asked, as the kernel reports it: the fs uid and gid of the calling thread, and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The calling thread's id (0 for requests the kernel makes on its own).
    pub pid: u32,
}

/// What a caller is, beyond what the kernel sends with a request.
pub trait Identities: Send + Sync {
    /// The supplementary groups of thread `pid`; `None` if they cannot be read (it has exited).
    fn groups(&self, pid: u32) -> Option<Vec<u32>>;
    /// The thread's command name; `None` if unknown.
    fn command(&self, pid: u32) -> Option<String>;
    /// The user's name; `None` if the user database has no entry for `uid`.
    fn user_name(&self, uid: u32) -> Option<String>;
}

/// The running system: `/proc/<pid>/status` (`Groups:`), `/proc/<pid>/comm` and `getpwuid_r`.
#[derive(Default)]
pub struct SystemIdentities {
    names: Mutex<HashMap<u32, (Option<String>, Instant)>>,
}

impl Identities for SystemIdentities {
    fn groups(&self, pid: u32) -> Option<Vec<u32>> {
        if pid == 0 {
            return None;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        parse_groups(&status)
    }

    fn command(&self, pid: u32) -> Option<String> {
        if pid == 0 {
            return None;
        }
        let mut raw = Vec::new();
        File::open(format!("/proc/{pid}/comm"))
            .ok()?
            .take(MAX_COMMAND)
            .read_to_end(&mut raw)
            .ok()?;
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim_end_matches('\n');
        (!text.is_empty()).then(|| text.to_owned())
    }

    fn user_name(&self, uid: u32) -> Option<String> {
        if let Some((name, at)) = self.names.lock().expect("name cache poisoned").get(&uid)
            && at.elapsed() < NAME_TTL
        {
            return name.clone();
        }
        // Outside the lock: the user database may be a network service.
        let name = user_name(uid);
        let mut names = self.names.lock().expect("name cache poisoned");
        if names.len() > 4096 {
            names.clear();
        }
        names.insert(uid, (name.clone(), Instant::now()));
        name
    }
}

/// The `Groups:` line of a `/proc/<pid>/status`.
pub fn parse_groups(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    line.split_whitespace().map(|g| g.parse().ok()).collect()
}

/// `uid`'s name from the user database (`/etc/passwd`, or whatever NSS says), if it has one.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: getpwuid_r writes into `pw` and `buf` (whose length it is given) and sets
        // `result` to `&pw` or null; nothing is shared between threads.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(pw.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An open of a file (a backup, a `.sha256` line, a `metadata.json`).
    Open,
    /// An open of a directory to list it.
    OpenDir,
    /// A path walk into a directory, recorded when it is refused (the kernel resolves a path
    /// one name at a time: the rest of the path never reaches the mount).
    Lookup,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Open => "open",
            Event::OpenDir => "opendir",
            Event::Lookup => "lookup",
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// Refused by the mount's rules: `"permission denied"`, `"read-only file system"`.
    Refused(String),
    /// Permitted, but it could not be done (the tier is down, the index is unreadable).
    Failed(String),
}

/// One audit line.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub event: Event,
    /// The path as the mount shows it, relative to the mount point (`.` is the mount point);
    /// `None` for a node that disappeared in a refresh.
    pub path: Option<&'a str>,
    pub caller: Caller,
    pub user: Option<&'a str>,
    pub command: Option<&'a str>,
    pub outcome: &'a Outcome,
}

impl Entry<'_> {
    /// The JSON line, newline included, at Unix time `now`.
    pub fn line(&self, now: i64) -> String {
        let (outcome, reason) = match self.outcome {
            Outcome::Allowed => ("allowed", None),
            Outcome::Refused(r) => ("refused", Some(r.as_str())),
            Outcome::Failed(r) => ("failed", Some(r.as_str())),
        };
        let mut v = serde_json::json!({
            "time": rfc3339(now),
            "unix": now,
            "event": self.event.as_str(),
            "path": self.path,
            "uid": self.caller.uid,
            "user": self.user,
            "gid": self.caller.gid,
            "pid": self.caller.pid,
            "command": self.command,
            "outcome": outcome,
        });
        if let Some(r) = reason {
            v["reason"] = r.into();
        }
        let mut line = v.to_string();
        line.push('\n');
        line
    }
}

struct State {
    /// `None` after a failed reopen; the next line tries again.
    file: Option<File>,
    /// Bytes in the current file, as far as this process knows.
    size: u64,
    /// A regular file (rotated); a device or pipe (`/dev/stderr`) never is.
    rotatable: bool,
}

pub struct AuditLog {
    path: PathBuf,
    max_size: u64,
    state: Mutex<State>,
    failures: AtomicU64,
    /// Set while writes fail: the first failure is logged, the rest only counted.
    failing: AtomicBool,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl AuditLog {
    /// Opens the log for appending, creating it (owner-only) and its directory as needed;
    /// rotates at [`DEFAULT_MAX_SIZE`] unless [`AuditLog::with_max_size`] says otherwise.
    /// An existing file keeps its mode until it is rotated.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let meta = file.metadata()?;
        Ok(AuditLog {
            path: path.to_owned(),
            max_size: DEFAULT_MAX_SIZE,
            state: Mutex::new(State {
                file: Some(file),
                size: meta.len(),
                rotatable: meta.is_file(),
            }),
            failures: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        })
    }

    /// Rotates once a line would take the file past `bytes` (at least one line per file).
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes.max(1);
        self
    }

    /// Lines that could not be written (or rotations that failed) since the mount started.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Appends one line at the tierback clock's time. A failure is counted and logged (once
    /// until writes work again); it never reaches the caller.
    pub fn record(&self, entry: &Entry) {
        let line = entry.line(tierback_engine::clock::now());
        match self.append(line.as_bytes()) {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!(
                        "the audit log {} is writable again ({} failures so far)",
                        self.path.display(),
                        self.failures()
                    );
                }
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    error!(
                        "cannot write the audit log {}: {e} (reads go on; further failures are \
                         counted in user.tierback.audit_failures on the mount's root)",
                        self.path.display()
                    );
                }
            }
        }
    }

    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().expect("audit log poisoned");
        let mut rotate_err = None;
        if st.rotatable && st.size > 0 && st.size + line.len() as u64 > self.max_size {
            // Someone may have truncated the file (logrotate copytruncate): trust the disk.
            if let Some(f) = &st.file
                && let Ok(m) = f.metadata()
            {
                st.size = m.len();
            }
            if st.size > 0
                && st.size + line.len() as u64 > self.max_size
                && let Err(e) = self.rotate(&mut st)
            {
                // The line still goes into the current file: better too long than lost.
                rotate_err = Some(std::io::Error::new(
                    e.kind(),
                    format!("rotating it failed: {e}"),
                ));
            }
        }
        if st.file.is_none() {
            let file = open_append(&self.path)?;
            st.size = file.metadata()?.len();
            st.file = Some(file);
        }
        let file = st.file.as_mut().expect("opened above");
        file.write_all(line)?;
        st.size += line.len() as u64;
        rotate_err.map_or(Ok(()), Err)
    }

    /// `NAME.{KEEP-1}` → `NAME.{KEEP}`, …, `NAME` → `NAME.1`, then a new, empty `NAME`.
    fn rotate(&self, st: &mut State) -> std::io::Result<()> {
        let generation = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        for n in (1..KEEP).rev() {
            match std::fs::rename(generation(n), generation(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, generation(1))?;
        // From here on the old file is NAME.1: never append to it again.
        st.file = None;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        st.file = Some(file);
        st.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry<'a>(path: &'a str, outcome: &'a Outcome, user: Option<&'a str>) -> Entry<'a> {
        Entry {
            event: Event::Open,
            path: Some(path),
            caller: Caller {
                uid: 1000,
                gid: 1001,
                pid: 42,
            },
            user,
            command: Some("cat"),
            outcome,
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn appends_one_json_line_per_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let allowed = Outcome::Allowed;
        let refused = Outcome::Refused("permission denied".into());
        log.record(&entry("pg/local/2026-01-16/x.sql", &allowed, Some("alice")));
        log.record(&Entry {
            event: Event::Lookup,
            ..entry("pg", &refused, None)
        });
        let l = lines(&path);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0]["uid"], 1000);
        assert_eq!(l[0]["user"], "alice");
        assert_eq!(l[0]["command"], "cat");
        assert_eq!(l[0]["event"], "open");
        assert_eq!(l[0]["outcome"], "allowed");
        assert!(l[0].get("reason").is_none());
        assert!(l[0]["time"].as_str().unwrap().ends_with('Z'));
        assert!(l[0]["unix"].as_i64().unwrap() > 1_700_000_000);
        assert_eq!(l[1]["event"], "lookup");
        assert_eq!(
            l[1]["user"],
            serde_json::Value::Null,
            "a missing name is null"
        );
        assert_eq!(l[1]["outcome"], "refused");
        assert_eq!(l[1]["reason"], "permission denied");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
        assert_eq!(log.failures(), 0);
    }

    #[test]
    fn rotates_by_size_keeping_three_generations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let allowed = Outcome::Allowed;
        let one = entry(
            "svc/local/2026-01-16/file_120000.sql",
            &allowed,
            Some("bob"),
        )
        .line(tierback_engine::clock::now())
        .len() as u64;
        // Room for three lines per file.
        let max = 3 * one + one / 2;
        let log = AuditLog::open(&path).unwrap().with_max_size(max);
        let gen_path = |n: u32| dir.path().join(format!("audit.jsonl.{n}"));
        for i in 0..3 {
            log.record(&entry(
                "svc/local/2026-01-16/file_120000.sql",
                &allowed,
                Some("bob"),
            ));
            assert!(!gen_path(1).exists(), "rotated after {} lines", i + 1);
        }
        // The fourth line would pass the limit: the file moves to .1 and a new one starts.
        log.record(&entry(
            "svc/local/2026-01-16/file_120000.sql",
            &allowed,
            Some("bob"),
        ));
        assert_eq!(lines(&gen_path(1)).len(), 3);
        assert_eq!(lines(&path).len(), 1);
        // Fill enough to push generations past KEEP: the oldest are dropped.
        for _ in 0..3 * 5 {
            log.record(&entry(
                "svc/local/2026-01-16/file_120000.sql",
                &allowed,
                Some("bob"),
            ));
        }
        for n in 1..=KEEP {
            let p = gen_path(n);
            assert_eq!(lines(&p).len(), 3, "{}", p.display());
            assert!(std::fs::metadata(&p).unwrap().len() <= max);
        }
        assert!(!gen_path(KEEP + 1).exists(), "only {KEEP} old generations");
        assert_eq!(lines(&path).len(), 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a new generation is owner-only");
        assert_eq!(log.failures(), 0);

        // A line longer than the limit still gets written, alone in its file.
        let tiny = AuditLog::open(&dir.path().join("tiny.jsonl"))
            .unwrap()
            .with_max_size(10);
        tiny.record(&entry("a", &allowed, None));
        tiny.record(&entry("b", &allowed, None));
        assert_eq!(lines(&dir.path().join("tiny.jsonl")).len(), 1);
        assert_eq!(lines(&dir.path().join("tiny.jsonl.1")).len(), 1);
    }

    #[test]
    fn a_truncated_log_is_not_rotated_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let allowed = Outcome::Allowed;
        let one = entry("p", &allowed, None)
            .line(tierback_engine::clock::now())
            .len() as u64;
        let log = AuditLog::open(&path).unwrap().with_max_size(2 * one + 10);
        log.record(&entry("p", &allowed, None));
        log.record(&entry("p", &allowed, None));
        // logrotate's copytruncate empties the file behind our back.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        log.record(&entry("p", &allowed, None));
        assert!(!dir.path().join("audit.jsonl.1").exists());
        assert_eq!(lines(&path).len(), 1);
    }

    #[test]
    fn write_failures_are_counted_never_raised() {
        // /dev/full fails every write with ENOSPC; a device is never rotated.
        let log = AuditLog::open(Path::new("/dev/full"))
            .unwrap()
            .with_max_size(1);
        let allowed = Outcome::Allowed;
        log.record(&entry("a", &allowed, None));
        log.record(&entry("b", &allowed, None));
        assert_eq!(log.failures(), 2);
        assert!(Path::new("/dev/full").exists());
    }

    #[test]
    fn groups_command_and_names_of_this_process() {
        assert_eq!(
            parse_groups("Name:\tx\nGroups:\t4 24 1001 \nNgid:\t0\n"),
            Some(vec![4, 24, 1001])
        );
        assert_eq!(parse_groups("Groups:\t\n"), Some(vec![]));
        assert_eq!(parse_groups("Name:\tx\n"), None);
        let ids = SystemIdentities::default();
        let pid = std::process::id();
        assert!(ids.groups(pid).is_some());
        assert!(
            ids.command(pid)
                .is_some_and(|c| !c.is_empty() && c.len() <= 64)
        );
        assert_eq!(ids.groups(0), None);
        assert_eq!(ids.command(0), None);
        assert_eq!(ids.user_name(0).as_deref(), Some("root"));
        // No user has this uid: recorded as null, not an error.
        assert_eq!(ids.user_name(4_000_000_123), None);
    }
}
