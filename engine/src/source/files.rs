//! `driver = "files"`: a tar of configured paths (the seed's config backups). Symlinks are stored
//! as symlinks, permissions, owners and times are kept; names are stored without the leading `/`
//! as GNU tar does, so `tar -x -C /` puts them back.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::piped::Piped;
use super::{ArtifactPlan, DriverSettings, Dump, Source, facts_of};
use crate::config::{Mistake, ServiceContext};
use crate::restore_test::{Outcome, Replay};
use crate::{Error, Result};

/// The service keys of `driver = "files"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Files and directories to archive (relative to the config file's directory).
    paths: Option<Spanned<Vec<PathBuf>>>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "files";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        let paths = service.needs(Self::DRIVER, self.paths, "paths")?;
        if paths.get_ref().is_empty() {
            return Err(service.error(paths.span(), "paths is empty"));
        }
        Ok(Arc::new(FilesSource {
            service: service.name.to_string(),
            paths: paths
                .into_inner()
                .into_iter()
                .map(|p| service.resolve(p))
                .collect(),
        }))
    }
}

/// What a tar of paths records (the files driver's, and the start of the redis AOF archive's).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TarFacts {
    #[serde(default)]
    pub paths: Vec<String>,
    /// Entries written: what the restore test's `tar -t` must list.
    pub entries: Option<u64>,
    /// Files that grew while they were read: archived as they were when opened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grew_while_read: Vec<String>,
}

#[derive(Debug)]
pub struct FilesSource {
    pub service: String,
    pub paths: Vec<PathBuf>,
}

impl Source for FilesSource {
    fn driver(&self) -> &'static str {
        "files"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan {
            stem: self.service.clone(),
            extension: "tar".into(),
        }])
    }

    fn open(&self, _artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        for p in &self.paths {
            if let Err(e) = std::fs::symlink_metadata(p) {
                return Err(Error::source(
                    &self.service,
                    format!("path {} cannot be read: {e}", p.display()),
                ));
            }
        }
        let paths = self.paths.clone();
        let service = self.service.clone();
        Ok(Box::new(Piped::spawn(move |writer| {
            write_tar(writer, &paths, &service).map(|facts| facts_of(&facts))
        })?))
    }

    fn restore_test(&self, replay: &Replay<'_>) -> Result<Outcome> {
        let recorded: TarFacts = replay.facts()?;
        replay.tar_entries_as_recorded(recorded.entries)
    }
}

/// Writes `paths` (files, or directories walked in name order) as a tar on `writer`. `service`
/// names the service in errors. Used by the files driver and the redis AOF archive.
pub fn write_tar(
    writer: std::io::PipeWriter,
    paths: &[PathBuf],
    service: &str,
) -> Result<TarFacts> {
    let fail = |p: &Path, e: std::io::Error| {
        Error::source(service, format!("archiving {}: {e}", p.display()))
    };
    let mut tar = tar::Builder::new(writer);
    tar.follow_symlinks(false);
    let mut walk = Walk::default();
    for p in paths {
        let name = p.strip_prefix("/").unwrap_or(p);
        walk.append(&mut tar, p, name)
            .map_err(|(p, e)| fail(&p, e))?;
    }
    tar.finish()
        .map_err(|e| fail(Path::new("<archive end>"), e))?;
    Ok(TarFacts {
        paths: paths.iter().map(|p| p.display().to_string()).collect(),
        entries: Some(walk.entries),
        grew_while_read: walk.grew,
    })
}

/// What a walk appended.
#[derive(Default)]
struct Walk {
    entries: u64,
    /// Files that grew while they were read: archived as they were when opened.
    grew: Vec<String>,
}

impl Walk {
    fn append<W: std::io::Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        path: &Path,
        name: &Path,
    ) -> std::result::Result<(), (PathBuf, std::io::Error)> {
        let at = |e| (path.to_owned(), e);
        let meta = std::fs::symlink_metadata(path).map_err(at)?;
        if meta.is_dir() {
            tar.append_dir(name, path).map_err(at)?;
            self.entries += 1;
            let mut children = std::fs::read_dir(path)
                .and_then(|rd| {
                    rd.map(|e| e.map(|e| e.file_name()))
                        .collect::<std::io::Result<Vec<_>>>()
                })
                .map_err(at)?;
            children.sort();
            for child in children {
                self.append(tar, &path.join(&child), &name.join(&child))?;
            }
        } else if meta.is_file() {
            // Exactly the length seen at open: the tar crate would copy whatever a growing file
            // holds by the end and misalign every later entry.
            // Not following a symlink and not waiting on a FIFO swapped in since the stat.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)
                .map_err(at)?;
            let meta = file.metadata().map_err(at)?;
            if !meta.is_file() {
                return Err(at(std::io::Error::other(
                    "changed into something other than a file while being archived",
                )));
            }
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            let mut exact = Exact {
                inner: file,
                left: meta.len(),
            };
            tar.append_data(&mut header, name, &mut exact).map_err(at)?;
            if exact.inner.metadata().map_err(at)?.len() > meta.len() {
                self.grew.push(path.display().to_string());
            }
            self.entries += 1;
        } else {
            // Symlinks (as links), fifos, devices: headers only.
            tar.append_path_with_name(path, name).map_err(at)?;
            self.entries += 1;
        }
        Ok(())
    }
}

/// The first `left` bytes of a file; a file that ends sooner (shrank) is an error.
struct Exact {
    inner: std::fs::File,
    left: u64,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tars_paths_with_symlinks_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("nginx");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(etc.join("nginx.conf"), "worker_processes 4;\n").unwrap();
        std::fs::set_permissions(
            etc.join("nginx.conf"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("nginx.conf", etc.join("link.conf")).unwrap();
        let compose = dir.path().join("docker-compose.yaml");
        std::fs::write(&compose, "services: {}\n").unwrap();

        let src = FilesSource {
            service: "configs".into(),
            paths: vec![etc.clone(), compose],
        };
        let mut dump = src.open(&src.plan().unwrap()[0]).unwrap();
        let mut bytes = Vec::new();
        dump.read_to_end(&mut bytes).unwrap();
        let facts = dump.finish().unwrap();
        assert_eq!(facts["entries"], 4);
        assert!(facts.get("grew_while_read").is_none());

        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let h = e.header();
            if path.ends_with("link.conf") {
                assert_eq!(h.entry_type(), tar::EntryType::Symlink);
                assert_eq!(
                    h.link_name().unwrap().unwrap().display().to_string(),
                    "nginx.conf"
                );
            }
            if path.ends_with("nginx.conf") {
                assert_eq!(h.mode().unwrap() & 0o777, 0o640);
            }
            assert!(!path.starts_with('/'), "{path}");
            seen.push(path);
        }
        assert!(
            seen.iter().any(|p| p.ends_with("docker-compose.yaml")),
            "{seen:?}"
        );
    }

    #[test]
    fn a_growing_file_is_archived_as_it_was_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("appendonly.aof");
        std::fs::write(&log, vec![b'a'; 3 << 20]).unwrap();
        // A writer appends while the archive is read slowly.
        let (reader, writer) = std::io::pipe().unwrap();
        let paths = vec![dir.path().to_owned()];
        let producer = std::thread::spawn(move || write_tar(writer, &paths, "redis"));
        let mut reader = reader;
        // Past the directory's and the file's headers: the file has been opened and measured.
        let mut bytes = vec![0u8; 4096];
        reader.read_exact(&mut bytes).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(&vec![b'b'; 1 << 20])
            .unwrap();
        reader.read_to_end(&mut bytes).unwrap();
        let facts = producer.join().unwrap().unwrap();
        assert_eq!(facts.grew_while_read, [log.display().to_string()]);

        let mut archive = tar::Archive::new(&bytes[..]);
        let mut sizes = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            sizes.push((e.path().unwrap().display().to_string(), data.len()));
        }
        assert!(
            sizes
                .iter()
                .any(|(p, n)| p.ends_with("appendonly.aof") && *n == 3 << 20),
            "{sizes:?}"
        );
    }

    #[test]
    fn missing_path_is_named() {
        let src = FilesSource {
            service: "configs".into(),
            paths: vec!["/nonexistent/nginx".into()],
        };
        let e = src.open(&src.plan().unwrap()[0]).err().unwrap().to_string();
        assert!(
            e.contains("/nonexistent/nginx") && e.contains("configs"),
            "{e}"
        );
    }
}
