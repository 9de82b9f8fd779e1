//! `driver = "files"`: a tar of configured paths (the seed's config backups). Symlinks are stored
//! as symlinks, permissions, owners and times are kept; names are stored without the leading `/`
//! as GNU tar does, so `tar -x -C /` puts them back.

use std::io::{PipeReader, Read};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::{ArtifactPlan, Dump, Facts, Source};
use crate::{Error, Result};

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
                return Err(Error::Source {
                    service: self.service.clone(),
                    message: format!("path {} cannot be read: {e}", p.display()),
                    stderr_tail: String::new(),
                });
            }
        }
        let (reader, writer) = std::io::pipe().map_err(|e| Error::io("creating a pipe", e))?;
        let paths = self.paths.clone();
        let service = self.service.clone();
        let producer = std::thread::spawn(move || write_tar(writer, &paths, &service));
        Ok(Box::new(TarDump {
            reader,
            producer: Some(producer),
        }))
    }
}

fn write_tar(writer: std::io::PipeWriter, paths: &[PathBuf], service: &str) -> Result<Facts> {
    let fail = |p: &Path, e: std::io::Error| Error::Source {
        service: service.to_owned(),
        message: format!("archiving {}: {e}", p.display()),
        stderr_tail: String::new(),
    };
    let mut tar = tar::Builder::new(writer);
    tar.follow_symlinks(false);
    let mut entries = 0u64;
    for p in paths {
        let name = p.strip_prefix("/").unwrap_or(p);
        let meta = std::fs::symlink_metadata(p).map_err(|e| fail(p, e))?;
        if meta.is_dir() {
            tar.append_dir_all(name, p).map_err(|e| fail(p, e))?;
            entries += walkdir_count(p);
        } else {
            tar.append_path_with_name(p, name).map_err(|e| fail(p, e))?;
            entries += 1;
        }
    }
    tar.finish()
        .map_err(|e| fail(Path::new("<archive end>"), e))?;
    let mut facts = Facts::new();
    facts.insert(
        "paths".into(),
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .into(),
    );
    facts.insert("entries".into(), entries.into());
    Ok(facts)
}

/// Entries under a directory, itself included, symlinks not followed.
fn walkdir_count(dir: &Path) -> u64 {
    let mut n = 1;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => n += walkdir_count(&e.path()),
                _ => n += 1,
            }
        }
    }
    n
}

struct TarDump {
    reader: PipeReader,
    producer: Option<JoinHandle<Result<Facts>>>,
}

impl Read for TarDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Dump for TarDump {
    fn finish(mut self: Box<Self>) -> Result<Facts> {
        let producer = self.producer.take().expect("finish is called once");
        producer
            .join()
            .map_err(|_| Error::Invalid("the tar thread panicked".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
