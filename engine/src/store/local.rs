//! The local-disk tier: one file per object under `root`, written under a temporary name in
//! `root/.partial/`, fsynced, then renamed, so a crash never leaves a partial object visible.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ObjectMeta, Store, check_key};
use crate::error::IoContext;
use crate::{Error, Result};

/// Staging directory inside the tier root (same filesystem, so `rename` is atomic).
pub const PARTIAL_DIR: &str = ".partial";

pub struct LocalStore {
    name: String,
    root: PathBuf,
    /// Mode of the files the tier publishes; directories get it plus search where readable.
    file_mode: u32,
    /// Group the published files and directories belong to, when a group may read the tier.
    gid: Option<u32>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalStore {
    /// Opens a stored object for reading: not through a symlink, and not blocking on a FIFO
    /// someone put in the tier; anything but a regular file is refused.
    fn open_object(&self, key: &str) -> Result<File> {
        check_key(key)?;
        let path = self.path_of(key);
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound {
                    tier: self.name.clone(),
                    key: key.to_owned(),
                },
                _ => Error::io(format!("tier {}: opening {}", self.name, path.display()), e),
            })?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(Error::Invalid(format!(
                "tier {}: {} is not a regular file",
                self.name,
                path.display()
            )));
        }
        Ok(file)
    }

    /// Opens (and creates) the tier directory; files are owner-only (0600).
    pub fn open(name: &str, root: &Path) -> Result<LocalStore> {
        LocalStore::open_with_access(name, root, None, 0o600)
    }

    /// Opens (and creates) the tier directory; published files get `file_mode` and, if given,
    /// `group` (directories the same, plus search where readable). Staging stays owner-only.
    pub fn open_with_access(
        name: &str,
        root: &Path,
        group: Option<&str>,
        file_mode: u32,
    ) -> Result<LocalStore> {
        let gid = group
            .map(|g| {
                crate::fsutil::group_id(g).ok_or_else(|| {
                    Error::Invalid(format!(
                        "tier {name}: group {g:?} does not exist on this host"
                    ))
                })
            })
            .transpose()?;
        let store = LocalStore {
            name: name.to_owned(),
            root: root.to_owned(),
            file_mode,
            gid,
        };
        if !root.exists() {
            store.create_dirs(root)?;
        }
        fs::create_dir_all(root.join(PARTIAL_DIR))
            .ctx(|| format!("tier {name}: creating {}", root.display()))?;
        Ok(store)
    }

    /// The mode of the tier's directories: the file mode plus search wherever it reads.
    fn dir_mode(&self) -> u32 {
        self.file_mode | ((self.file_mode & 0o444) >> 2)
    }

    /// Gives a file or directory the tier's mode and group.
    fn set_access(&self, path: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .ctx(|| format!("tier {}: setting the mode of {}", self.name, path.display()))?;
        if let Some(gid) = self.gid {
            std::os::unix::fs::chown(path, None, Some(gid)).ctx(|| {
                format!(
                    "tier {}: setting the group of {}",
                    self.name,
                    path.display()
                )
            })?;
        }
        Ok(())
    }

    /// Creates `dir` and its missing parents, each with the tier's directory mode and group (so
    /// a group given access can reach the tier through the directories tierback made).
    fn create_dirs(&self, dir: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            missing.push(d);
            at = d.parent();
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(d) {
                Ok(()) => self.set_access(d, self.dir_mode())?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("tier {}: creating {}", self.name, d.display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Files and directories in the tier whose mode or group is wider than configured: how
    /// many, and the first few, for `status`.
    pub fn wider_than_configured(&self) -> (usize, Vec<String>) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mut count = 0;
        let mut examples = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let mut check = |path: &Path, meta: &fs::Metadata, allowed: u32| {
                let mode = meta.permissions().mode() & 0o777;
                let foreign_group =
                    meta.mode() & 0o070 != 0 && self.gid.is_none_or(|g| g != meta.gid());
                if mode & !allowed != 0 || foreign_group {
                    count += 1;
                    if examples.len() < 3 {
                        examples.push(format!("{} ({:04o})", path.display(), mode));
                    }
                }
            };
            if let Ok(meta) = fs::symlink_metadata(&dir) {
                check(&dir, &meta, self.dir_mode());
            }
            for e in entries.flatten() {
                let path = e.path();
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_dir() {
                    if e.file_name() != PARTIAL_DIR {
                        stack.push(path);
                    }
                } else {
                    check(&path, &meta, self.file_mode);
                }
            }
        }
        (count, examples)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file an object lives in.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// A fresh temporary path in the staging directory; the caller writes there and hands it to
    /// [`Store::put_file`], which then renames instead of copying. The name carries the pid so
    /// [`LocalStore::remove_stale_partials`] can tell abandoned files from live ones.
    pub fn temp_path(&self, hint: &str) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let hint: String = hint
            .chars()
            .map(|c| if c == '/' { '_' } else { c })
            .collect();
        self.root
            .join(PARTIAL_DIR)
            .join(format!("{}.{n}.{hint}", std::process::id()))
    }

    /// Removes staging files left by processes that no longer exist (a `kill -9` mid-backup).
    pub fn remove_stale_partials(&self) -> Result<usize> {
        let dir = self.root.join(PARTIAL_DIR);
        let mut removed = 0;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid: Option<i32> = name.split('.').next().and_then(|p| p.parse().ok());
            let alive = pid.is_some_and(crate::lock::process_alive);
            if !alive && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn staging(&self) -> PathBuf {
        self.root.join(PARTIAL_DIR)
    }

    /// Renames a complete, fsynced staging file into place (with the tier's mode and group) and
    /// makes the rename durable.
    fn publish(&self, tmp: &Path, key: &str) -> Result<()> {
        let dest = self.path_of(key);
        let parent = dest.parent().expect("keys are relative paths");
        self.create_dirs(parent)?;
        self.set_access(tmp, self.file_mode)?;
        fs::rename(tmp, &dest)
            .ctx(|| format!("tier {}: renaming into {}", self.name, dest.display()))?;
        sync_dir(parent)
    }
}

/// fsync a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("fsync {}", dir.display()))
}

impl Store for LocalStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn clean_staging(&self) -> Result<usize> {
        self.remove_stale_partials()
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<()> {
        check_key(key)?;
        if src.parent() == Some(self.staging().as_path()) {
            // Already staged by the caller (and fsynced by it): just publish.
            return self.publish(src, key);
        }
        let tmp = self.temp_path(key);
        let result = (|| {
            fs::copy(src, &tmp).ctx(|| {
                format!(
                    "tier {}: copying {} to {}",
                    self.name,
                    src.display(),
                    tmp.display()
                )
            })?;
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .ctx(|| format!("tier {}: fsync {}", self.name, tmp.display()))?;
            self.publish(&tmp, key)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        check_key(key)?;
        let tmp = self.temp_path(key);
        let result = (|| {
            let mut f = File::create(&tmp)
                .ctx(|| format!("tier {}: creating {}", self.name, tmp.display()))?;
            f.write_all(bytes)
                .and_then(|_| f.sync_all())
                .ctx(|| format!("tier {}: writing {}", self.name, tmp.display()))?;
            self.publish(&tmp, key)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path_of(key);
        let file = self.open_object(key)?;
        let mut buf =
            vec![0u8; usize::try_from(len).map_err(|_| Error::Invalid("range too large".into()))?];
        file.read_exact_at(&mut buf, offset).ctx(|| {
            format!(
                "tier {}: reading {len} bytes at {offset} of {}",
                self.name,
                path.display()
            )
        })?;
        Ok(buf)
    }

    /// `POSIX_FADV_WILLNEED`: the kernel starts reading the range into the page cache and
    /// returns at once, so the reads that follow find it there instead of each waiting for the
    /// disk (a fresh descriptor per read gets no read-ahead of its own).
    fn will_read(&self, key: &str, offset: u64, len: u64) {
        if let Ok(file) = self.open_object(key) {
            // SAFETY: a valid descriptor; the call only reads its arguments.
            unsafe {
                libc::posix_fadvise(
                    file.as_raw_fd(),
                    offset as libc::off_t,
                    len as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                );
            }
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        check_key(key)?;
        match fs::symlink_metadata(self.path_of(key)) {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: m.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("tier {}: stat {key}", self.name), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        walk(&self.root, "", &mut out)
            .ctx(|| format!("tier {}: listing {}", self.name, self.root.display()))?;
        out.retain(|m| m.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let path = self.path_of(key);
        match fs::remove_file(&path) {
            Ok(()) => {
                // Drop the now-empty date directory, best effort; the service directory stays.
                if let Some(parent) = path.parent() {
                    let _ = fs::remove_dir(parent);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("tier {}: deleting {key}", self.name), e)),
        }
    }
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // staging area and other hidden files are not objects
        }
        let key = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else if ft.is_file() {
            out.push(ObjectMeta {
                key,
                size: entry.metadata()?.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open("local", dir.path()).unwrap();
        super::super::conformance::run(&store);
    }

    #[test]
    fn stale_partials_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open("local", dir.path()).unwrap();
        let live = store.temp_path("a.gz");
        fs::write(&live, b"live").unwrap();
        // pid 0x7ffffff0 does not exist
        let dead = dir.path().join(PARTIAL_DIR).join("2147483632.0.b.gz");
        fs::write(&dead, b"dead").unwrap();
        assert_eq!(store.remove_stale_partials().unwrap(), 1);
        assert!(live.exists() && !dead.exists());
        assert!(
            store.list("").unwrap().is_empty(),
            "staging files must not list as objects"
        );
    }
}
