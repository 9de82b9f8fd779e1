//! One backup as one restic snapshot: writing it (the artifacts' decompressed streams plus their
//! sidecars), listing tierback's snapshots, forgetting them, pruning, checking, and reading the
//! sidecars back for `catalog rebuild`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Cursor, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustic_core::repofile::{Metadata, Node, NodeType, SnapshotFile, SnapshotId};
use rustic_core::{
    BackupOptions, CheckOptions, Id, IndexedFullStatus, ParentOptions, PruneOptions, ReadSource,
    ReadSourceEntry, ReadSourceOpen, Repository, RusticResult, SnapshotOptions,
};
use sha2::{Digest, Sha256};

use super::ResticTier;
use crate::artifact::BlockIndex;
use crate::artifact::metadata::ArtifactMetadata;
use crate::artifact::reader::{Depth, verify_member};
use crate::catalog::ArtifactRecord;
use crate::layout::{INDEX_SUFFIX, META_SUFFIX};
use crate::{Error, Result};

/// Where tierback keeps an artifact's sidecars inside a snapshot, next to the file.
pub const SIDECAR_DIR: &str = ".tierback";
const TAG: &str = "tierback";

/// One artifact of a backup, as sync hands it over: its record (with facts), its block index,
/// and a local `.gz` copy already checked against the catalog.
pub struct SnapshotArtifact {
    pub record: ArtifactRecord,
    pub index: BlockIndex,
    pub source: PathBuf,
}

/// A tierback snapshot in the repository.
#[derive(Debug, Clone)]
pub struct BackupSnapshot {
    pub id: String,
    pub service: String,
    /// `<service>-<YYYYMMDDTHHMMSSZ>`, as in the metadata sidecar.
    pub backup_id: String,
    /// `/<service>/<YYYY-MM-DD>`: the directory holding its files.
    pub dir: String,
}

/// The path of an artifact's decompressed file in a snapshot: its key without `.gz`.
pub fn raw_path(key: &str) -> &str {
    key.strip_suffix(".gz").unwrap_or(key)
}

impl ResticTier {
    /// Stores one backup's artifacts as one snapshot and returns its id. Every artifact's
    /// stream is read and checked block by block as restic takes it; a snapshot whose streams
    /// did not all arrive whole is deleted again, never recorded.
    pub fn store_backup(&self, artifacts: &[SnapshotArtifact]) -> Result<String> {
        let first = artifacts
            .first()
            .ok_or_else(|| Error::Invalid("a backup with no artifacts".into()))?;
        let service = first.record.service.clone();
        let taken_at = first.record.taken_at;
        let backup_id = crate::artifact::metadata::backup_id(service.as_str(), taken_at);
        let dir = first
            .record
            .key
            .rsplit_once('/')
            .map(|(d, _)| d.to_owned())
            .unwrap_or_default();
        let mtime = rustic_core::jiff::Timestamp::from_second(taken_at)
            .map_err(|e| Error::Invalid(format!("backup time {taken_at}: {e}")))?;

        let mut entries = Vec::new();
        let mut outcomes = Vec::new();
        for a in artifacts {
            let r = &a.record;
            let raw = raw_path(&r.key).to_owned();
            let name = raw.rsplit('/').next().unwrap_or(&raw).to_owned();
            let outcome = Arc::new(Mutex::new(None));
            outcomes.push((r, Arc::clone(&outcome)));
            let file = File::open(&a.source)
                .map_err(|e| Error::io(format!("opening {}", a.source.display()), e))?;
            let stream = ArtifactStream {
                file,
                index: a.index.clone(),
                label: a.source.display().to_string(),
                next: 0,
                block: Vec::new(),
                pos: 0,
                decompressor: libdeflater::Decompressor::new(),
                hasher: Sha256::new(),
                len: 0,
                outcome,
            };
            entries.push((raw.clone(), r.raw_size, Content::Artifact(Box::new(stream))));
            let line = format!("{}  {name}\n", r.raw_sha256);
            entries.push((
                format!("{raw}.sha256"),
                line.len() as u64,
                Content::Bytes(line.into_bytes()),
            ));
            let meta = ArtifactMetadata::from_record(r);
            for (key, bytes) in meta.sidecars(&r.key, &a.index) {
                if !(key.ends_with(INDEX_SUFFIX) || key.ends_with(META_SUFFIX)) {
                    continue; // the stored file's sha256 line names a file this tier has not
                }
                let file_name = key.rsplit('/').next().unwrap_or(&key);
                entries.push((
                    format!("{dir}/{SIDECAR_DIR}/{file_name}"),
                    bytes.len() as u64,
                    Content::Bytes(bytes),
                ));
            }
        }
        // The archiver builds directories from paths in order.
        entries.sort_by(|a, b| Path::new(&a.0).cmp(Path::new(&b.0)));
        let size = entries.iter().map(|e| e.1).sum();
        let entries = entries
            .into_iter()
            .map(|(path, size, open)| {
                let path = PathBuf::from(format!("/{path}"));
                let name = path.file_name().unwrap_or(OsStr::new("")).to_owned();
                let meta = Metadata {
                    mode: Some(0o600),
                    mtime: Some(mtime),
                    size,
                    ..Metadata::default()
                };
                ReadSourceEntry {
                    path,
                    node: Node::new_node(&name, NodeType::File, meta),
                    open: Some(open),
                }
            })
            .collect();

        let snap = SnapshotOptions::default()
            .add_tags(TAG)
            .and_then(|o| o.add_tags(&format!("service={service}")))
            .and_then(|o| o.add_tags(&format!("backup={backup_id}")))
            .map(|o| {
                o.time(mtime.to_zoned(rustic_core::jiff::tz::TimeZone::UTC))
                    .description(format!("tierback backup {backup_id}"))
            })
            .and_then(|o| o.to_snapshot())
            .map_err(|e| self.error("describing the snapshot", &e))?;
        let repo = self
            .open_repo()?
            .to_indexed_ids()
            .map_err(|e| self.error("reading the index", &e))?;
        // Never take a file's content from an earlier snapshot because its size and time match:
        // every stream is read (restic's chunks still deduplicate it).
        let options = BackupOptions::default().parent_opts(ParentOptions::default().force(true));
        let source = Entries {
            entries: Mutex::new(entries),
            size,
        };
        let saved = repo
            .archive(&options, &source, snap, &[PathBuf::from(format!("/{dir}"))])
            .map_err(|e| self.error(&format!("storing {backup_id}"), &e))?;
        let id = full_id(&saved.id);

        for (r, outcome) in outcomes {
            let got = outcome.lock().unwrap_or_else(|e| e.into_inner()).take();
            let problem = match got {
                Some(Ok((sha, len))) if sha == r.raw_sha256 && len == r.raw_size => None,
                Some(Ok((sha, len))) => Some(format!(
                    "restic took {len} bytes with SHA-256 {sha}, the catalog has {} bytes with {}",
                    r.raw_size, r.raw_sha256
                )),
                Some(Err(e)) => Some(e),
                None => Some("restic did not read the whole stream".into()),
            };
            if let Some(problem) = problem {
                let _ = repo.delete_snapshots(&[saved.id]);
                return Err(Error::integrity(
                    format!("{}:{}", self.name, r.key),
                    None,
                    problem,
                ));
            }
        }
        Ok(id)
    }

    /// tierback's snapshots in the repository (others, e.g. made by `restic backup`, are left
    /// alone), oldest first.
    pub fn snapshots(&self) -> Result<Vec<BackupSnapshot>> {
        self.snapshots_in(&self.open_repo()?)
    }

    /// [`ResticTier::snapshots`] of a repository already open (opening one derives the key
    /// from the password: scrypt, deliberately slow).
    pub fn snapshots_in<S: rustic_core::Open>(
        &self,
        repo: &Repository<S>,
    ) -> Result<Vec<BackupSnapshot>> {
        let mut snaps = repo
            .get_all_snapshots()
            .map_err(|e| self.error("listing snapshots", &e))?;
        snaps.sort();
        Ok(snaps.iter().filter_map(describe).collect())
    }

    /// Forgets these snapshots (their data goes at the next [`ResticTier::prune`]).
    pub fn forget(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids
            .iter()
            .map(|s| {
                s.parse::<Id>()
                    .map(SnapshotId::from)
                    .map_err(|e| self.error(&format!("snapshot id {s:?}"), &e))
            })
            .collect::<Result<Vec<_>>>()?;
        self.open_repo()?
            .delete_snapshots(&ids)
            .map_err(|e| self.error("forgetting snapshots", &e))
    }

    /// Removes data no snapshot references. rustic's two-phase deletion keeps removed packs a
    /// day before deleting them, so a mount reading the repository meanwhile keeps working.
    pub fn prune(&self) -> Result<()> {
        let repo = self.open_repo()?;
        let options = PruneOptions::default();
        let plan = repo
            .prune_plan(&options)
            .map_err(|e| self.error("planning prune", &e))?;
        repo.prune(&options, plan)
            .map_err(|e| self.error("pruning", &e))
    }

    /// rustic's check: the repository's structure, and with `read_data` every pack's contents.
    /// Returns the problems found (empty: healthy).
    pub fn check(&self, read_data: bool) -> Result<Vec<String>> {
        let repo = self.open_repo()?;
        let results = repo
            .check(CheckOptions::default().read_data(read_data))
            .map_err(|e| self.error("checking", &e))?;
        Ok(results
            .0
            .iter()
            .map(|(level, e)| format!("{level:?}: {e}"))
            .collect())
    }

    /// The repository opened for reading files.
    pub fn open_for_reads(&self) -> Result<Repository<IndexedFullStatus>> {
        self.open_repo()?
            .to_indexed()
            .map_err(|e| self.error("reading the index", &e))
    }

    /// The sidecars (`.idx`, `.meta.json`) of every artifact in a snapshot: `(name, bytes)`,
    /// each refused if larger than `max`.
    pub fn sidecars(
        &self,
        repo: &Repository<IndexedFullStatus>,
        snap: &BackupSnapshot,
        max: u64,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let snap_file = repo
            .get_snapshots(&[snap.id.as_str()])
            .map_err(|e| self.error(&format!("reading snapshot {}", snap.id), &e))?
            .pop()
            .ok_or_else(|| Error::Invalid(format!("snapshot {} vanished", snap.id)))?;
        let dir = format!("{}/{SIDECAR_DIR}", snap.dir);
        let node = repo
            .node_from_snapshot_and_path(&snap_file, &dir)
            .map_err(|e| self.error(&format!("snapshot {}: {dir}", snap.id), &e))?;
        let tree_id = node.subtree.ok_or_else(|| {
            Error::Invalid(format!("snapshot {}: {dir} is not a directory", snap.id))
        })?;
        let tree = repo
            .get_tree(&tree_id)
            .map_err(|e| self.error(&format!("snapshot {}: {dir}", snap.id), &e))?;
        let mut out = Vec::new();
        for node in tree.nodes.iter().filter(|n| n.is_file()) {
            let name = node.name().to_string_lossy().into_owned();
            if node.meta.size > max {
                return Err(Error::Invalid(format!(
                    "restic tier {}: snapshot {}: {dir}/{name} is {} bytes, more than a sidecar can be",
                    self.name, snap.id, node.meta.size
                )));
            }
            let mut bytes = Vec::with_capacity(node.meta.size as usize);
            repo.dump(node, &mut bytes)
                .map_err(|e| self.error(&format!("reading {dir}/{name}"), &e))?;
            out.push((name, bytes));
        }
        Ok(out)
    }
}

/// All 64 hex digits: `Display` shows restic's 8-digit short form.
fn full_id(id: &SnapshotId) -> String {
    (*id.to_hex()).to_owned()
}

/// A snapshot tierback wrote: its tags name the service and the backup.
fn describe(s: &SnapshotFile) -> Option<BackupSnapshot> {
    if !s.tags.contains(TAG) {
        return None;
    }
    let tag = |name: &str| {
        s.tags
            .iter()
            .find_map(|t| t.strip_prefix(&format!("{name}=")).map(str::to_owned))
    };
    Some(BackupSnapshot {
        id: full_id(&s.id),
        service: tag("service")?,
        backup_id: tag("backup")?,
        dir: s.paths.iter().next()?.trim_start_matches('/').to_owned(),
    })
}

/// The files of one backup, handed to rustic's archiver once.
struct Entries {
    entries: Mutex<Vec<ReadSourceEntry<Content>>>,
    size: u64,
}

impl ReadSource for Entries {
    type Open = Content;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<Content>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(Some(self.size))
    }

    fn entries(&self) -> Self::Iter {
        let entries = std::mem::take(&mut *self.entries.lock().unwrap_or_else(|e| e.into_inner()));
        entries.into_iter().map(Ok).collect::<Vec<_>>().into_iter()
    }
}

enum Content {
    Bytes(Vec<u8>),
    Artifact(Box<ArtifactStream>),
}

impl ReadSourceOpen for Content {
    type Reader = Box<dyn Read + Send>;
    fn open(self) -> RusticResult<Self::Reader> {
        Ok(match self {
            Content::Bytes(b) => Box::new(Cursor::new(b)),
            Content::Artifact(s) => s,
        })
    }
}

/// What an artifact's stream ended with: its SHA-256 and length, or why it broke off.
type Outcome = Arc<Mutex<Option<std::result::Result<(String, u64), String>>>>;

/// The decompressed stream of a local `.gz`, every block checked against the index as it is
/// read; at the end (or at the first bad block) it leaves its outcome for the caller.
struct ArtifactStream {
    file: File,
    index: BlockIndex,
    label: String,
    next: usize,
    block: Vec<u8>,
    pos: usize,
    decompressor: libdeflater::Decompressor,
    hasher: Sha256,
    len: u64,
    outcome: Outcome,
}

impl ArtifactStream {
    fn fill(&mut self) -> Result<bool> {
        let Some(entry) = self.index.entries.get(self.next) else {
            return Ok(false);
        };
        let mut member = vec![0u8; entry.stored_len as usize];
        self.file
            .read_exact_at(&mut member, entry.offset)
            .map_err(|e| Error::io(format!("reading {}", self.label), e))?;
        let block = verify_member(
            &self.label,
            self.next,
            entry,
            &member,
            &mut self.decompressor,
            Depth::Read,
        )?;
        self.block = block.into_vec();
        self.pos = 0;
        self.next += 1;
        Ok(true)
    }

    fn finish(&mut self, result: std::result::Result<(), String>) {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(result.map(|()| {
                (
                    hex::encode(std::mem::take(&mut self.hasher).finalize()),
                    self.len,
                )
            }));
        }
    }
}

impl Read for ArtifactStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.block.len() {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    self.finish(Ok(()));
                    return Ok(0);
                }
                Err(e) => {
                    self.finish(Err(e.to_string()));
                    return Err(std::io::Error::other(e.to_string()));
                }
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.hasher.update(&buf[..n]);
        self.pos += n;
        self.len += n as u64;
        Ok(n)
    }
}
