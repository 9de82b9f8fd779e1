//! `driver = "postgres_wal"`: PostgreSQL's write-ahead log, for point-in-time recovery. WAL
//! reaches a spool directory from `pg_receivewal --directory SPOOL` (streaming, nothing installed
//! beside the server) or from an `archive_command` that writes each file under a temporary name
//! and renames it. Each backup takes every completed file in the spool, one artifact per file;
//! only once the catalog holds them are they removed from the spool, so a crash at any point
//! archives a file twice at worst, never loses one. `tierback wal-fetch` is the matching
//! `restore_command`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::postgres::PostgresSource;
use super::{ArtifactPlan, DriverSettings, Dump, Facts, Source, facts_of};
use crate::catalog::ArtifactRecord;
use crate::config::{Mistake, Retention, ServiceConfig, ServiceContext};
use crate::error::IoContext;
use crate::id::{ServiceName, TierName};
use crate::restore_test::Outcome;
use crate::store::local::sync_dir;
use crate::{Error, Result};

/// What an archived WAL file records.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WalFacts {
    /// The WAL file's name in `pg_wal` (what `restore_command` asks for; the catalog finds it
    /// by this).
    pub wal_file: Option<String>,
}

/// The service keys of `driver = "postgres_wal"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where complete WAL files appear.
    spool: Option<Spanned<PathBuf>>,
    /// The `postgres` service (with `base_backup = true`) whose base backups this WAL rolls
    /// forward.
    base: Option<Spanned<String>>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "postgres_wal";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        if let Some(schedule) = service.schedule
            && schedule.get_ref().is_empty()
        {
            return Err(service.error(
                schedule.span(),
                "schedule is empty: WAL left in the spool is not archived",
            ));
        }
        let spool = service.needs(Self::DRIVER, self.spool, "spool")?;
        Ok(Arc::new(WalSpool {
            service: service.name.to_string(),
            spool: service.resolve(spool.into_inner()),
            base: self.base.map(|b| (b.span(), b.into_inner())),
        }))
    }
}

#[derive(Debug)]
pub struct WalSpool {
    pub service: String,
    pub spool: PathBuf,
    /// The `postgres` service whose base backups this WAL rolls forward (and where `base` is
    /// written): prune keeps the WAL from its newest base backup on, whatever `retention` says.
    base: Option<(Range<usize>, String)>,
}

impl WalSpool {
    /// The service whose base backups this WAL rolls forward.
    pub fn base(&self) -> Option<&str> {
        self.base.as_ref().map(|(_, name)| name.as_str())
    }
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

    /// A WAL archive is only as good as its unbroken chain: the archive on `tier` checked for
    /// gaps (each segment's blocks are read by the default test; WAL is replayed by a recovery,
    /// through `wal-fetch`).
    fn restore_test_archive(
        &self,
        artifacts: &[ArtifactRecord],
        tier: &TierName,
    ) -> Option<Outcome> {
        Some(wal_chain(artifacts, tier))
    }

    /// The seed keeps WAL for 24 hours.
    fn default_retention(&self) -> Option<Retention> {
        Some(Retention {
            keep_within: Some(24 * 3600),
            ..Retention::default()
        })
    }

    /// `base` must name a service that takes base backups.
    fn check_services(&self, services: &BTreeMap<ServiceName, ServiceConfig>) -> Result<(), Mistake> {
        let Some((span, base)) = &self.base else {
            return Ok(());
        };
        let takes_base = services.values().any(|s| {
            s.name.as_str() == base
                && s.driver_as::<PostgresSource>().is_some_and(|p| p.base_backup)
        });
        if takes_base {
            return Ok(());
        }
        Err((
            span.clone(),
            format!(
                "[services.{}] base = {base:?} is not a postgres service with base_backup = true",
                self.service
            ),
        ))
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
        Ok(facts_of(&WalFacts {
            wal_file: Some(self.name),
        }))
    }
}

/// Whether the WAL segments archived on `tier` follow each other without a gap on each
/// timeline, from the oldest kept to the newest (retention removes only the oldest, so a gap
/// means a segment never arrived: the receiver's slot was lost, or a spool file was deleted).
fn wal_chain(artifacts: &[ArtifactRecord], tier: &TierName) -> Outcome {
    use std::collections::{BTreeMap, BTreeSet};
    let mut sizes = BTreeSet::new();
    let mut names = BTreeSet::new();
    for a in artifacts {
        let Ok(WalFacts {
            wal_file: Some(name),
        }) = WalFacts::deserialize(&a.facts)
        else {
            continue;
        };
        let name = name.as_str();
        if wal_kind(name) == Some("wal")
            && a.copy_on(tier)
                .is_some_and(|c| c.state == crate::catalog::CopyState::Present)
        {
            names.insert(name.to_owned());
            sizes.insert(a.raw_size);
        }
    }
    let segment_size = match sizes.len() {
        0 => return Outcome::Skipped(format!("no WAL segment on {tier}")),
        1 => *sizes.first().unwrap(),
        _ => return Outcome::Failed(format!("segments of different sizes {sizes:?}")),
    };
    let per_log = (1u64 << 32) / segment_size.max(1);
    let number = |hex: &str| u64::from_str_radix(hex, 16).unwrap_or(0);
    let mut timelines: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for n in &names {
        let seq = number(&n[8..16]) * per_log + number(&n[16..24]);
        timelines.entry(&n[..8]).or_default().push(seq);
    }
    let name = |tli: &str, seq: u64| format!("{tli}{:08X}{:08X}", seq / per_log, seq % per_log);
    let mut gaps = Vec::new();
    for (tli, seqs) in &timelines {
        for pair in seqs.windows(2) {
            if pair[1] != pair[0] + 1 {
                gaps.push(format!(
                    "{} to {} ({} segments)",
                    name(tli, pair[0] + 1),
                    name(tli, pair[1] - 1),
                    pair[1] - pair[0] - 1
                ));
            }
        }
    }
    if gaps.is_empty() {
        Outcome::Passed(format!(
            "{} WAL segments, {} to {}, no gap",
            names.len(),
            names.first().unwrap(),
            names.last().unwrap()
        ))
    } else {
        Outcome::Failed(format!(
            "missing from the archive, recovery cannot replay past them: {}",
            gaps.join(", ")
        ))
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
            base: None,
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

    fn tier(name: &str) -> TierName {
        TierName::new(name).unwrap()
    }

    fn segment(id: i64, name: &str, size: u64) -> ArtifactRecord {
        ArtifactRecord {
            raw_size: size,
            facts: serde_json::json!({ "wal_file": name }),
            copies: vec![crate::catalog::CopyRecord {
                tier: tier("local"),
                state: crate::catalog::CopyState::Present,
                stored_at: 0,
                verified_at: None,
                error: None,
            }],
            ..ArtifactRecord::for_test(id, "wal", id)
        }
    }

    #[test]
    fn a_wal_chain_across_a_log_boundary_and_a_new_timeline_has_no_gap() {
        let mb16 = 16 << 20;
        let list = [
            segment(1, "0000000100000000000000FE", mb16),
            segment(2, "0000000100000000000000FF", mb16),
            segment(3, "000000010000000100000000", mb16), // the next log file
            segment(4, "00000002.history", 41),
            segment(5, "000000020000000100000000", mb16), // promoted: timeline 2
            segment(6, "000000020000000100000001", mb16),
        ];
        let outcome = wal_chain(&list, &tier("local"));
        assert!(
            matches!(&outcome, Outcome::Passed(d) if d.starts_with("5 WAL segments")),
            "{outcome:?}"
        );
        // Not on this tier: nothing to check.
        assert!(matches!(wal_chain(&list, &tier("offsite")), Outcome::Skipped(_)));
    }

    #[test]
    fn a_missing_segment_is_named() {
        let mb16 = 16 << 20;
        let list = [
            segment(1, "0000000100000000000000FE", mb16),
            segment(3, "000000010000000100000001", mb16),
            segment(4, "000000010000000100000002", mb16),
        ];
        match wal_chain(&list, &tier("local")) {
            Outcome::Failed(d) => assert!(
                d.contains("0000000100000000000000FF to 000000010000000100000000 (2 segments)"),
                "{d}"
            ),
            other => panic!("{other:?}"),
        }
        let mixed = [
            segment(1, "000000010000000000000001", mb16),
            segment(2, "000000010000000000000002", 1 << 20),
        ];
        assert!(matches!(wal_chain(&mixed, &tier("local")), Outcome::Failed(_)));
    }
}
