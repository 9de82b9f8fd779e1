//! Restore tests (the seed's weekly recovery test): the newest backup of a service is replayed
//! into a scratch target and compared with the facts recorded when it was taken. Bytes come
//! through the verified block reader, so a corrupt block fails the test before it is replayed.
//! What "replayed" means is each driver's own ([`Source::restore_test`]); this module finds the
//! backup, hands each artifact to its driver, and holds the tools several drivers share
//! (listing or unpacking a tar into a scratch directory).

use std::io::Read;
use std::process::{Command, Stdio};

use serde::de::DeserializeOwned;

use crate::artifact::reader::ArtifactReader;
use crate::catalog::ArtifactRecord;
use crate::id::TierName;
use crate::process::{Exit, Running, last_lines};
use crate::source::Source;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed(String),
    Failed(String),
    /// Not replayed, for the reason given (not a failure).
    Skipped(String),
}

/// One stored artifact offered to its driver's restore test.
pub struct Replay<'a> {
    pub artifact: &'a ArtifactRecord,
    /// The name the driver planned it under (`zentoria_main` of `zentoria_main_120000.sql`).
    pub stem: &'a str,
    /// Its bytes, verified block by block.
    pub reader: &'a ArtifactReader<'a>,
    pub threads: usize,
}

impl Replay<'_> {
    /// The facts its driver recorded when the backup was taken, as that driver's type. A fact
    /// an older backup did not record is the type's default.
    pub fn facts<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.artifact.facts).map_err(|e| {
            Error::Invalid(format!(
                "the facts recorded with {} cannot be read: {e}",
                self.artifact.file
            ))
        })
    }

    /// Every block read and verified: the test of an artifact there is nothing to replay into.
    pub fn read_every_block(&self) -> Result<Outcome> {
        let bytes = self.reader.copy_to(&mut std::io::sink(), self.threads)?;
        Ok(Outcome::Passed(format!(
            "{bytes} bytes read, every block verified (nothing to replay it into alone)"
        )))
    }

    /// Pipes the artifact through `tar -t`; returns tar's status and the entry count.
    pub fn tar_list(&self) -> Result<(std::process::ExitStatus, u64)> {
        let mut tar = Command::new("tar");
        tar.args(["-tf", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut tar = Running::spawn(tar).map_err(|e| Error::io("running tar", e))?;
        let mut stdin = tar.take_stdin().expect("piped");
        let mut stdout = tar.take_stdout().expect("piped");
        let lister = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).map(|_| s.lines().count())
        });
        let copied = self.reader.copy_to(&mut stdin, self.threads);
        drop(stdin);
        let status = tar.wait()?.status;
        match copied {
            // A block that failed its check names itself; a tar that gave up (a broken archive)
            // is the caller's failed test, not the broken pipe it left behind.
            Err(e @ Error::Integrity { .. }) => return Err(e),
            Err(e) if status.success() => return Err(e),
            _ => {}
        }
        let listed = lister.join().unwrap_or(Ok(0)).unwrap_or(0) as u64;
        Ok((status, listed))
    }

    /// A tar listed by `tar -t`, its entry count against the one recorded (if any).
    pub fn tar_entries_as_recorded(&self, recorded: Option<u64>) -> Result<Outcome> {
        let (status, listed) = self.tar_list()?;
        Ok(match (status.success(), recorded) {
            (false, _) => Outcome::Failed(format!("tar -t failed ({status})")),
            (true, Some(n)) if n != listed => Outcome::Failed(format!(
                "the tar lists {listed} entries, the backup recorded {n}"
            )),
            (true, _) => Outcome::Passed(format!("tar lists {listed} entries, as recorded")),
        })
    }

    /// Unpacks the artifact with `tar MODE -` (`-xf`, or `-xzf` for a gzipped tar) into a new
    /// scratch directory (removed on drop); a broken archive is the failed test.
    pub fn unpack(&self, mode: &str) -> Result<std::result::Result<tempfile::TempDir, Outcome>> {
        let scratch = scratch_dir()?;
        let mut tar = Command::new("tar");
        tar.args([mode, "-", "-C"])
            .arg(scratch.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        let mut tar = Running::spawn(tar).map_err(|e| Error::io("running tar", e))?;
        let mut stdin = tar.take_stdin().expect("piped");
        let copied = self.reader.copy_to(&mut stdin, self.threads);
        drop(stdin);
        Ok(match tar_verdict(copied, tar.wait()?)? {
            Some(failed) => Err(failed),
            None => Ok(scratch),
        })
    }
}

/// A new scratch directory, removed on drop.
pub fn scratch_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("tierback-restore-test-")
        .tempdir()
        .map_err(|e| Error::io("creating a scratch directory", e))
}

/// Replays one artifact of a backup of `source`, read through `reader` (verified block by
/// block).
pub fn test_artifact(
    source: &dyn Source,
    artifact: &ArtifactRecord,
    reader: &ArtifactReader<'_>,
    threads: usize,
) -> Result<Outcome> {
    // Files are named `<stem>_<HHMMSS>.<extension>` from the driver's own plan.
    let stem = artifact
        .file
        .rsplit_once('_')
        .map_or(artifact.file.as_str(), |(s, _)| s);
    source.restore_test(&Replay {
        artifact,
        stem,
        reader,
        threads,
    })
}

/// What tar's run says: a failed extraction is a failed test with tar's words, unless the bytes
/// themselves failed their check (that error names the block, and wins).
fn tar_verdict(copied: Result<u64>, tar: Exit) -> Result<Option<Outcome>> {
    match copied {
        Err(e @ Error::Integrity { .. }) => Err(e),
        _ if !tar.status.success() => Ok(Some(Outcome::Failed(format!(
            "the archive does not unpack: {}",
            last_lines(&tar.tail, 3)
        )))),
        Err(e) => Err(e),
        Ok(_) => Ok(None),
    }
}

/// The artifacts of the newest backup that `tier` holds, from a service's `artifacts`.
pub fn newest_backup<'a>(
    artifacts: &'a [ArtifactRecord],
    tier: &TierName,
) -> Vec<&'a ArtifactRecord> {
    let present = |a: &&ArtifactRecord| {
        a.copy_on(tier)
            .is_some_and(|c| c.state != crate::catalog::CopyState::Missing)
    };
    let Some(newest) = artifacts
        .iter()
        .filter(present)
        .max_by_key(|a| (a.taken_at, a.backup_id))
        .map(|a| a.backup_id)
    else {
        return Vec::new();
    };
    artifacts
        .iter()
        .filter(|a| a.backup_id == newest)
        .filter(present)
        .collect()
}
