//! `driver = "ollama"`: Ollama's models, from its model directory (`~/.ollama/models`, or the
//! volume the container mounts there). The artifact is one tar laid out as the directory is —
//! `manifests/<registry>/<namespace>/<model>/<tag>` and `blobs/sha256-<hex>` — so a restore is
//! `tar -x -C MODELS_DIR`. Ollama's API has no endpoint that hands out a model's blobs, so the
//! directory is the source.
//!
//! Only what the manifests name is archived (a blob still being pulled has no manifest yet), each
//! blob once however many models share it, and each is hashed as it is read: a blob that does not
//! match its digest is a failed backup naming the model, not a corrupt model kept for months.
//! The restore test unpacks the tar and checks every blob of every manifest by its digest.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::piped::Piped;
use super::{ArtifactPlan, DriverSettings, Dump, Source, facts_of};
use crate::config::{Mistake, ServiceContext};
use crate::restore_test::{Outcome, Replay};
use crate::{Error, Result};

/// The service keys of `driver = "ollama"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Ollama's model directory: the one holding `manifests/` and `blobs/`.
    models_dir: Option<Spanned<PathBuf>>,
    /// Models to keep (`llama3:8b`, `nomic-embed-text:latest`); every model when absent.
    models: Option<Spanned<Vec<String>>>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "ollama";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        let dir = service.needs(Self::DRIVER, self.models_dir, "models_dir")?;
        let only = match self.models {
            Some(m) if m.get_ref().is_empty() => {
                return Err(service.error(m.span(), "models is empty (leave it out for every model)"));
            }
            Some(m) => Some(m.into_inner().into_iter().map(|n| full_name(&n)).collect()),
            None => None,
        };
        Ok(Arc::new(OllamaSource {
            service: service.name.to_string(),
            models_dir: service.resolve(dir.into_inner()),
            only,
        }))
    }
}

/// What a backup of the models recorded; the restore test holds the unpacked tar to it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OllamaFacts {
    /// Every model archived, by its full name (`registry.ollama.ai/library/llama3:8b`).
    pub models: Vec<String>,
    /// Distinct blobs archived (layers and configs), and their bytes.
    pub blobs: u64,
    pub blob_bytes: u64,
}

#[derive(Debug)]
pub struct OllamaSource {
    service: String,
    models_dir: PathBuf,
    /// Full names of the models to keep; `None`: all.
    only: Option<BTreeSet<String>>,
}

/// A manifest's part that matters here (the OCI/Docker image manifest Ollama writes).
#[derive(Deserialize)]
struct Manifest {
    config: Option<Layer>,
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    digest: String,
    size: u64,
}

impl Manifest {
    fn blobs(&self) -> impl Iterator<Item = &Layer> {
        self.config.iter().chain(&self.layers)
    }
}

/// One model found in the directory.
struct Model {
    name: String,
    /// The manifest's path relative to the models directory.
    manifest: PathBuf,
    parsed: Manifest,
}

impl Source for OllamaSource {
    fn driver(&self) -> &'static str {
        "ollama"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan {
            stem: "models".into(),
            extension: "tar".into(),
        }])
    }

    fn open(&self, _artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        let models = find_models(&self.models_dir).map_err(|e| self.fail(e))?;
        let models = match &self.only {
            None => models,
            Some(only) => {
                let found: BTreeSet<&str> = models.iter().map(|m| m.name.as_str()).collect();
                if let Some(missing) = only.iter().find(|n| !found.contains(n.as_str())) {
                    return Err(self.fail(format!(
                        "model {missing} has no manifest under {}",
                        self.models_dir.display()
                    )));
                }
                models.into_iter().filter(|m| only.contains(&m.name)).collect()
            }
        };
        if models.is_empty() {
            return Err(self.fail(format!(
                "no model manifests under {}",
                self.models_dir.join("manifests").display()
            )));
        }
        let dir = self.models_dir.clone();
        let service = self.service.clone();
        Ok(Box::new(Piped::spawn(move |writer| {
            write_models(writer, &dir, &models).map_err(|e| Error::source(&service, e))
        })?))
    }

    fn restore_test(&self, replay: &Replay<'_>) -> Result<Outcome> {
        let recorded: OllamaFacts = replay.facts()?;
        let scratch = match replay.unpack("-xf")? {
            Ok(dir) => dir,
            Err(failed) => return Ok(failed),
        };
        Ok(check_unpacked(scratch.path(), &recorded))
    }
}

impl OllamaSource {
    fn fail(&self, why: String) -> Error {
        Error::source(&self.service, why)
    }
}

/// `llama3` → `registry.ollama.ai/library/llama3:latest`, as Ollama resolves names.
fn full_name(name: &str) -> String {
    let (path, tag) = match name.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (name, "latest"),
    };
    let path = match path.matches('/').count() {
        0 => format!("registry.ollama.ai/library/{path}"),
        1 => format!("registry.ollama.ai/{path}"),
        _ => path.to_owned(),
    };
    format!("{path}:{tag}")
}

/// Every manifest under `dir/manifests` (`<registry>/<namespace>/<model>/<tag>`), by name.
fn find_models(dir: &Path) -> std::result::Result<Vec<Model>, String> {
    let root = dir.join("manifests");
    let mut files = Vec::new();
    walk_files(&root, &mut files)
        .map_err(|e| format!("reading {}: {e}", root.display()))?;
    files.sort();
    let mut models = Vec::new();
    for path in files {
        let rel = path.strip_prefix(dir).expect("under the directory").to_owned();
        let parts: Vec<String> = path
            .strip_prefix(&root)
            .expect("under manifests")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let [registry, namespace, model, tag] = &parts[..] else {
            return Err(format!(
                "{} is not where Ollama keeps a manifest (manifests/REGISTRY/NAMESPACE/MODEL/TAG)",
                rel.display()
            ));
        };
        let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", rel.display()))?;
        let parsed: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a model manifest: {e}", rel.display()))?;
        models.push(Model {
            name: format!("{registry}/{namespace}/{model}:{tag}"),
            manifest: rel,
            parsed,
        });
    }
    Ok(models)
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk_files(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// `sha256:<64 hex>` → the blob's file name (`sha256-<hex>`), refusing anything else: a digest
/// comes from a file on disk and becomes a path.
fn blob_name(digest: &str) -> std::result::Result<String, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("sha256-{hex}"))
        }
        _ => Err(format!("{digest:?} is not a sha256 digest")),
    }
}

/// Writes the manifests, then each blob they name once, hashing every blob as it goes.
fn write_models(
    writer: std::io::PipeWriter,
    dir: &Path,
    models: &[Model],
) -> std::result::Result<super::Facts, String> {
    let mut tar = tar::Builder::new(writer);
    let mut facts = OllamaFacts::default();
    for m in models {
        tar.append_path_with_name(dir.join(&m.manifest), &m.manifest)
            .map_err(|e| format!("archiving {}: {e}", m.manifest.display()))?;
        facts.models.push(m.name.clone());
    }
    let mut done = BTreeSet::new();
    for m in models {
        for layer in m.parsed.blobs() {
            let name = blob_name(&layer.digest).map_err(|e| format!("model {}: {e}", m.name))?;
            if !done.insert(name.clone()) {
                continue;
            }
            let rel = Path::new("blobs").join(&name);
            let file = std::fs::File::open(dir.join(&rel))
                .map_err(|e| format!("model {}: blob {name}: {e}", m.name))?;
            let meta = file
                .metadata()
                .map_err(|e| format!("model {}: blob {name}: {e}", m.name))?;
            if meta.len() != layer.size {
                return Err(format!(
                    "model {}: blob {name} is {} bytes, its manifest says {}",
                    m.name,
                    meta.len(),
                    layer.size
                ));
            }
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            let mut hashed = Hashed {
                inner: file.take(layer.size),
                hasher: Sha256::new(),
            };
            tar.append_data(&mut header, &rel, &mut hashed)
                .map_err(|e| format!("model {}: archiving blob {name}: {e}", m.name))?;
            if format!("sha256:{}", hex::encode(hashed.hasher.finalize())) != layer.digest {
                return Err(format!(
                    "model {}: blob {name} does not match its digest (the file is damaged; \
                     `ollama pull {}` fetches it again)",
                    m.name,
                    m.name.rsplit('/').next().unwrap_or(&m.name)
                ));
            }
            facts.blobs += 1;
            facts.blob_bytes += layer.size;
        }
    }
    tar.finish().map_err(|e| format!("ending the archive: {e}"))?;
    Ok(facts_of(&facts))
}

/// A reader that hashes what passes through it.
struct Hashed<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The restore test's verdict on an unpacked archive: the models recorded, each with every
/// blob its manifest names, each blob matching its digest and size.
fn check_unpacked(dir: &Path, recorded: &OllamaFacts) -> Outcome {
    let models = match find_models(dir) {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(e),
    };
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    if names != recorded.models {
        return Outcome::Failed(format!(
            "the archive holds models {names:?}, the backup recorded {:?}",
            recorded.models
        ));
    }
    let mut checked = BTreeSet::new();
    for m in &models {
        for layer in m.parsed.blobs() {
            let name = match blob_name(&layer.digest) {
                Ok(n) => n,
                Err(e) => return Outcome::Failed(format!("model {}: {e}", m.name)),
            };
            if !checked.insert(name.clone()) {
                continue;
            }
            match sha256_file(&dir.join("blobs").join(&name)) {
                Ok((size, digest)) if size == layer.size && digest == layer.digest => {}
                Ok(_) => {
                    return Outcome::Failed(format!(
                        "model {}: blob {name} does not match its manifest",
                        m.name
                    ));
                }
                Err(e) => return Outcome::Failed(format!("model {}: blob {name}: {e}", m.name)),
            }
        }
    }
    Outcome::Passed(format!(
        "{} models unpacked, all {} blobs match their manifests' digests",
        models.len(),
        checked.len()
    ))
}

/// (size, `sha256:<hex>`) of a file.
fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok((size, format!("sha256:{}", hex::encode(hasher.finalize()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A models directory laid out as Ollama writes it, with two models sharing a blob.
    fn models_dir(root: &Path) {
        let blob = |bytes: &[u8]| {
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
            let name = blob_name(&digest).unwrap();
            std::fs::create_dir_all(root.join("blobs")).unwrap();
            std::fs::write(root.join("blobs").join(name), bytes).unwrap();
            serde_json::json!({"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": bytes.len()})
        };
        let shared = blob(b"GGUF shared weights");
        for (path, own) in [
            ("registry.ollama.ai/library/llama3/8b", &b"{\"model_family\":\"llama\"}"[..]),
            ("registry.ollama.ai/library/nomic-embed-text/latest", b"{\"model_family\":\"bert\"}"),
        ] {
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": blob(own),
                "layers": [shared.clone(), blob(path.as_bytes())],
            });
            let file = root.join("manifests").join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, serde_json::to_vec(&manifest).unwrap()).unwrap();
        }
        // A blob being pulled: no manifest names it yet.
        std::fs::write(root.join("blobs/sha256-partial"), b"half a model").unwrap();
    }

    fn source(dir: &Path, only: Option<&[&str]>) -> OllamaSource {
        OllamaSource {
            service: "ollama".into(),
            models_dir: dir.to_owned(),
            only: only.map(|o| o.iter().map(|n| full_name(n)).collect()),
        }
    }

    fn backup(src: &OllamaSource) -> Result<(Vec<u8>, OllamaFacts)> {
        let mut dump = src.open(&src.plan()?[0])?;
        let mut bytes = Vec::new();
        dump.read_to_end(&mut bytes).unwrap();
        let facts = dump.finish()?;
        Ok((bytes, serde_json::from_value(facts.into()).unwrap()))
    }

    fn unpack(bytes: &[u8]) -> tempfile::TempDir {
        let out = tempfile::tempdir().unwrap();
        tar::Archive::new(bytes).unpack(out.path()).unwrap();
        out
    }

    #[test]
    fn names_resolve_as_ollama_resolves_them() {
        assert_eq!(full_name("llama3"), "registry.ollama.ai/library/llama3:latest");
        assert_eq!(full_name("llama3:8b"), "registry.ollama.ai/library/llama3:8b");
        assert_eq!(full_name("me/tuned:v2"), "registry.ollama.ai/me/tuned:v2");
        assert_eq!(full_name("hf.co/org/model:q4"), "hf.co/org/model:q4");
    }

    #[test]
    fn archives_what_the_manifests_name_once_and_the_restore_test_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        models_dir(dir.path());
        let (bytes, facts) = backup(&source(dir.path(), None)).unwrap();
        assert_eq!(
            facts.models,
            [
                "registry.ollama.ai/library/llama3:8b",
                "registry.ollama.ai/library/nomic-embed-text:latest"
            ]
        );
        assert_eq!(facts.blobs, 5, "two configs, two own layers, one shared");
        let out = unpack(&bytes);
        assert!(!out.path().join("blobs/sha256-partial").exists());
        assert!(matches!(check_unpacked(out.path(), &facts), Outcome::Passed(_)));

        // A blob changed after the backup, as a damaged restore would have it.
        let blob = std::fs::read_dir(out.path().join("blobs")).unwrap().next().unwrap().unwrap();
        let mut b = std::fs::read(blob.path()).unwrap();
        b[0] ^= 1;
        std::fs::write(blob.path(), b).unwrap();
        match check_unpacked(out.path(), &facts) {
            Outcome::Failed(why) => assert!(why.contains("does not match its manifest"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_models_asked_for_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        models_dir(dir.path());
        let (_, facts) = backup(&source(dir.path(), Some(&["llama3:8b"]))).unwrap();
        assert_eq!(facts.models, ["registry.ollama.ai/library/llama3:8b"]);
        assert_eq!(facts.blobs, 3);
        let e = backup(&source(dir.path(), Some(&["mistral"]))).unwrap_err().to_string();
        assert!(e.contains("registry.ollama.ai/library/mistral:latest"), "{e}");
    }

    #[test]
    fn a_damaged_blob_fails_the_backup_naming_the_model() {
        let dir = tempfile::tempdir().unwrap();
        models_dir(dir.path());
        let victim = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| std::fs::read(p).unwrap() == b"GGUF shared weights")
            .unwrap();
        std::fs::write(&victim, b"GGUF shared weightz").unwrap();
        let e = backup(&source(dir.path(), None)).unwrap_err().to_string();
        assert!(e.contains("llama3:8b") && e.contains("does not match its digest"), "{e}");
    }
}
