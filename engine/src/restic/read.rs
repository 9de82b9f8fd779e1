//! Reads from a restic tier through the [`Store`] every read path already uses (`cat`, the
//! mount, restore tests, `wal-fetch`): a key `svc/date/file.gz` names the decompressed file
//! `svc/date/file` of the snapshot that holds it, and a byte range is a range of that
//! decompressed file. [`Store::holds_decompressed`] tells the block reader to check those bytes
//! against the block's raw SHA-256 instead of inflating them.
//!
//! rustic_core reads through the repository's index; each blob it hands out has been
//! decrypted and authenticated (Poly1305). The repository's index is loaded on the first read
//! and loaded again when a file is not found or a read fails: a long-running mount sees the
//! snapshots sync adds, and packs a prune rewrote.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use rustic_core::vfs::OpenFile;
use rustic_core::{IndexedFullStatus, Repository};

use super::ResticTier;
use super::snapshot::raw_path;
use crate::store::{ObjectMeta, Store};
use crate::{Error, Result};

type Repo = Repository<IndexedFullStatus>;
/// A file found in a snapshot, opened, and its size.
type Found = Option<(Arc<OpenFile>, u64)>;

pub struct ResticStore {
    tier: ResticTier,
    repo: RwLock<Option<Arc<Repo>>>,
    /// Held while the repository is opened, so that concurrent first reads (the mount's
    /// read-ahead) derive the key and load the index once, not once each.
    opening: Mutex<()>,
    /// Files found so far: key → the open file and its size.
    files: Mutex<HashMap<String, (Arc<OpenFile>, u64)>>,
}

impl ResticStore {
    pub fn new(tier: ResticTier) -> ResticStore {
        ResticStore {
            tier,
            repo: RwLock::new(None),
            opening: Mutex::new(()),
            files: Mutex::new(HashMap::new()),
        }
    }

    /// The repository with its index; `reload` reads the index again.
    fn repo(&self, reload: bool) -> Result<Arc<Repo>> {
        let seen = self.repo.read().expect("repo lock poisoned").clone();
        if !reload && let Some(repo) = &seen {
            return Ok(Arc::clone(repo));
        }
        let _opening = self.opening.lock().expect("opening lock poisoned");
        // Another reader may have opened it, or read the index again, while this one waited.
        if let Some(now) = self.repo.read().expect("repo lock poisoned").as_ref()
            && (!reload || !seen.as_ref().is_some_and(|seen| Arc::ptr_eq(seen, now)))
        {
            return Ok(Arc::clone(now));
        }
        let repo = Arc::new(self.tier.open_for_reads()?);
        *self.repo.write().expect("repo lock poisoned") = Some(Arc::clone(&repo));
        Ok(repo)
    }

    /// Opens the repository now (key derivation, index), so that the first read does not wait
    /// for it: the mount calls this in the background as it starts.
    pub fn open_now(&self) -> Result<()> {
        self.repo(false).map(drop)
    }

    /// The file a key names, searched in the snapshots of its service and day; searched again
    /// with a fresh index if it is not there.
    fn file(&self, key: &str) -> Result<Found> {
        if let Some(found) = self.files.lock().expect("file map poisoned").get(key) {
            return Ok(Some(found.clone()));
        }
        let loaded = self.repo.read().expect("repo lock poisoned").is_some();
        let mut found = self.search(&*self.repo(false)?, key)?;
        if found.is_none() && loaded {
            found = self.search(&*self.repo(true)?, key)?;
        }
        if let Some(f) = &found {
            self.files
                .lock()
                .expect("file map poisoned")
                .insert(key.to_owned(), f.clone());
        }
        Ok(found)
    }

    fn search(&self, repo: &Repo, key: &str) -> Result<Found> {
        let path = raw_path(key);
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let mut found = None;
        for snap in self
            .tier
            .snapshots_in(repo)?
            .iter()
            .rev()
            .filter(|s| s.dir == dir)
        {
            let snap_file = repo
                .get_snapshots(&[snap.id.as_str()])
                .map_err(|e| {
                    self.tier
                        .error(&format!("reading snapshot {}", snap.id), &e)
                })?
                .pop();
            let Some(snap_file) = snap_file else { continue };
            match repo.node_from_snapshot_and_path(&snap_file, path) {
                Ok(node) if node.is_file() => {
                    let open = repo
                        .open_file(&node)
                        .map_err(|e| self.tier.error(&format!("opening {path}"), &e))?;
                    found = Some((Arc::new(open), node.meta.size));
                    break;
                }
                _ => continue,
            }
        }
        Ok(found)
    }

    fn read_only(&self, what: &str) -> Error {
        Error::Invalid(format!(
            "restic tier {}: {what}: the repository is written only by sync (one snapshot per backup)",
            self.tier.name()
        ))
    }
}

impl Store for ResticStore {
    fn name(&self) -> &str {
        self.tier.name()
    }

    fn put_file(&self, key: &str, _src: &Path) -> Result<()> {
        Err(self.read_only(key))
    }

    fn put_bytes(&self, key: &str, _bytes: &[u8]) -> Result<()> {
        Err(self.read_only(key))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let (file, size) = self.file(key)?.ok_or_else(|| Error::NotFound {
            tier: self.tier.name().to_owned(),
            key: raw_path(key).to_owned(),
        })?;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::Invalid(format!(
                "restic tier {}: {}: {len} bytes at {offset} are past its end ({size} bytes)",
                self.tier.name(),
                raw_path(key)
            )));
        }
        // A pack a prune rewrote is read from its new place once the index is read again.
        let bytes = match self
            .repo(false)?
            .read_file_at(&file, offset as usize, len as usize)
        {
            Ok(bytes) => bytes,
            Err(_) => self
                .repo(true)?
                .read_file_at(&file, offset as usize, len as usize)
                .map_err(|e| self.tier.error(&format!("reading {}", raw_path(key)), &e))?,
        };
        if bytes.len() as u64 != len {
            return Err(Error::integrity(
                format!("{}:{}", self.tier.name(), raw_path(key)),
                None,
                format!("asked for {len} bytes at {offset}, got {}", bytes.len()),
            ));
        }
        Ok(bytes.to_vec())
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.file(key)?.map(|(_, size)| ObjectMeta {
            key: key.to_owned(),
            size,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Err(self.read_only(&format!("listing {prefix}")))
    }

    fn delete(&self, key: &str) -> Result<()> {
        Err(self.read_only(key))
    }

    fn holds_decompressed(&self) -> bool {
        true
    }
}
