//! The audit trail (`[mount] audit_log`): one JSON line per backup file opened through the mount
//! — when, by which uid, gid and process, which file, and whether the open was allowed — so an
//! auditor can see who looked at what. Appended with `O_APPEND`, one `write` per line, so lines
//! from concurrent opens never interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

/// Who asked, as the kernel reports it.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

pub struct AuditLog {
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating, mode 0640) the log for appending.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(AuditLog {
            file: Mutex::new(file),
        })
    }

    /// Appends one line. A failure to log is reported but never fails the read itself.
    pub fn record(&self, caller: Caller, path: &str, outcome: &str) {
        let now = tierback_engine::clock::now();
        let mut line = serde_json::json!({
            "time": now,
            "event": "open",
            "path": path,
            "uid": caller.uid,
            "gid": caller.gid,
            "pid": caller.pid,
            "outcome": outcome,
        })
        .to_string();
        line.push('\n');
        if let Err(e) = self
            .file
            .lock()
            .expect("audit log poisoned")
            .write_all(line.as_bytes())
        {
            tracing::error!("cannot write the audit log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_json_line_per_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.record(
            Caller {
                uid: 1000,
                gid: 1001,
                pid: 42,
            },
            "pg/local/2026-01-16/x.sql",
            "ok",
        );
        log.record(
            Caller {
                uid: 0,
                gid: 0,
                pid: 43,
            },
            "pg/local/2026-01-16/x.sql",
            "EROFS",
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["uid"], 1000);
        assert_eq!(lines[1]["outcome"], "EROFS");
    }
}
