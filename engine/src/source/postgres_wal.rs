//! `driver = "postgres_wal"`: PostgreSQL's write-ahead log, for point-in-time recovery. WAL
//! reaches a spool directory from `pg_receivewal --directory SPOOL` (streaming, nothing installed
//! beside the server) or from an `archive_command` that writes each file under a temporary name
//! and renames it. Each backup takes every completed file in the spool, one artifact per file;
//! only once the catalog holds them are they removed from the spool, so a crash at any point
//! archives a file twice at worst, never loses one. `tierback wal-fetch` is the matching
//! `restore_command`.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use super::{ArtifactPlan, Dump, Facts, Source};
use crate::error::IoContext;
use crate::store::local::sync_dir;
use crate::{Error, Result};

/// The fact that names the WAL file an artifact holds (what `restore_command` asks for).
pub const WAL_FILE: &str = "wal_file";

pub struct WalSpool {
    pub service: String,
    pub spool: PathBuf,
}

/// What kind of WAL file a spool entry is, from its name; `None` for anything else (the
/// `.partial` segment pg_receivewal is still writing, temporary names, stray files).
pub fn wal_kind(name: &str) -> Option<&'static str> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex(name, 24) {
        return Some("wal");
    }
    match name.split('.').collect::<Vec<_>>()[..] {
        [tli, "history"] if hex(tli, 8) => Some("history"),
        [seg, offset, "backup"] if hex(seg, 24) && hex(offset, 8) => Some("backup"),
        _ => None,
    }
}

/// The spool file an artifact was planned from (the inverse of [`WalSpool::plan`]'s naming).
fn spool_name(artifact: &ArtifactPlan) -> String {
    match artifact.extension.as_str() {
        "wal" => artifact.stem.clone(),
        ext => format!("{}.{ext}", artifact.stem.replace('-', ".")),
    }
}

impl WalSpool {
    /// Completed WAL files in the spool, oldest first (WAL names sort in log order). A segment
    /// whose size is not a WAL segment size (a power of two, 1 MiB to 1 GiB) is still being
    /// copied by a careless archive_command and waits for the next run.
    fn completed(&self) -> Result<Vec<(String, &'static str)>> {
        let dir = std::fs::read_dir(&self.spool).ctx(|| {
            format!(
                "[services.{}] reading spool {}",
                self.service,
                self.spool.display()
            )
        })?;
        let mut files = Vec::new();
        for entry in dir {
            let entry = entry.ctx(|| format!("reading {}", self.spool.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(kind) = wal_kind(&name) else {
                // Skipping these would let WAL pile up unarchived while every run looks fine.
                if let Some((segment, _)) = name.rsplit_once('.')
                    && wal_kind(segment) == Some("wal")
                    && [".gz", ".lz4", ".zst"].iter().any(|c| name.ends_with(c))
                {
                    return Err(Error::source(
                        &self.service,
                        format!(
                            "spool {} holds {name}, a compressed segment: run pg_receivewal without --compress (tierback compresses and checksums WAL itself)",
                            self.spool.display()
                        ),
                    ));
                }
                continue;
            };
            let meta = entry
                .metadata()
                .ctx(|| format!("stat {}", entry.path().display()))?;
            if !meta.is_file() {
                continue;
            }
            let len = meta.len();
            if kind == "wal" && !(len.is_power_of_two() && (1 << 20..=1 << 30).contains(&len)) {
                tracing::warn!(
                    service = %self.service,
                    file = %entry.path().display(),
                    size = len,
                    "not a whole WAL segment yet; left in the spool"
                );
                continue;
            }
            files.push((name, kind));
        }
        files.sort();
        Ok(files)
    }
}

impl Source for WalSpool {
    fn driver(&self) -> &'static str {
        "postgres_wal"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(self
            .completed()?
            .into_iter()
            .map(|(name, kind)| ArtifactPlan {
                // A label's dots would read as an extension: `<seg>.<offset>.backup` → `<seg>-<offset>`.
                stem: name
                    .strip_suffix(&format!(".{kind}"))
                    .unwrap_or(&name)
                    .replace('.', "-"),
                extension: kind.to_owned(),
            })
            .collect())
    }

    fn open(&self, artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        let name = spool_name(artifact);
        let path = self.spool.join(&name);
        let file = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
        Ok(Box::new(SpoolFile { file, name }))
    }

    fn published(&self, artifacts: &[ArtifactPlan]) -> Result<()> {
        for a in artifacts {
            let path = self.spool.join(spool_name(a));
            std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
        }
        sync_dir(&self.spool)
    }
}

struct SpoolFile {
    file: File,
    name: String,
}

impl Read for SpoolFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

impl Dump for SpoolFile {
    fn finish(self: Box<Self>) -> Result<Facts> {
        let mut facts = Facts::new();
        facts.insert(WAL_FILE.into(), self.name.into());
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_names_are_recognised_and_everything_else_is_left_alone() {
        assert_eq!(wal_kind("000000010000000000000003"), Some("wal"));
        assert_eq!(wal_kind("00000002.history"), Some("history"));
        assert_eq!(
            wal_kind("000000010000000000000002.00000028.backup"),
            Some("backup")
        );
        for other in [
            "000000010000000000000003.partial",
            "000000010000000000000003.tmp",
            "00000001000000000000003",
            "archive_status",
            "0000000G0000000000000003",
            "",
        ] {
            assert_eq!(wal_kind(other), None, "{other}");
        }
    }

    #[test]
    fn plan_takes_whole_segments_in_log_order_and_skips_partial_ones() {
        let dir = tempfile::tempdir().unwrap();
        let seg = |name: &str, len: usize| std::fs::write(dir.path().join(name), vec![0u8; len]);
        seg("000000010000000000000004", 1 << 20).unwrap();
        seg("000000010000000000000003", 1 << 20).unwrap();
        seg("000000010000000000000005", 4096).unwrap(); // still being copied
        seg("000000010000000000000006.partial", 1 << 20).unwrap();
        seg("00000002.history", 41).unwrap();
        seg("000000010000000000000003.00000028.backup", 300).unwrap();
        let spool = WalSpool {
            service: "pg-wal".into(),
            spool: dir.path().to_owned(),
        };
        let plan = spool.plan().unwrap();
        // A compressed segment would never be archived: that is an error, not a skip.
        seg("000000010000000000000007.gz", 100).unwrap();
        let e = spool.plan().unwrap_err().to_string();
        assert!(
            e.contains("000000010000000000000007.gz") && e.contains("--compress"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("000000010000000000000007.gz")).unwrap();
        seg("000000010000000000000007.partial.gz", 100).unwrap();
        assert_eq!(spool.plan().unwrap(), plan);
        let files: Vec<(&str, &str)> = plan
            .iter()
            .map(|p| (p.stem.as_str(), p.extension.as_str()))
            .collect();
        assert_eq!(
            files,
            [
                ("000000010000000000000003", "wal"),
                ("000000010000000000000003-00000028", "backup"),
                ("000000010000000000000004", "wal"),
                ("00000002", "history"),
            ]
        );
        spool.published(&plan[1..2]).unwrap();
        spool.published(&plan[3..]).unwrap();
        assert!(
            !dir.path()
                .join("000000010000000000000003.00000028.backup")
                .exists()
        );
        assert!(!dir.path().join("00000002.history").exists());
        assert!(dir.path().join("000000010000000000000003").exists());
    }
}
