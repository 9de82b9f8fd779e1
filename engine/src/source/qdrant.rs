//! `driver = "qdrant"`: a snapshot of each collection (`<collection>_HHMMSS.snapshot`) and, unless
//! `full = false`, a full-storage snapshot (`full_cluster_HHMMSS.snapshot`), through Qdrant's
//! REST API: create (`POST …/snapshots?wait=true`), download, delete. The server announces each
//! snapshot's size and SHA-256; a download that differs is an error and nothing is kept. The
//! snapshot is deleted from the server once downloaded (or abandoned), so Qdrant's disk does not
//! fill with copies. The API key reaches Qdrant in the `api-key` header only.
//!
//! Restore: a collection snapshot through `PUT /collections/{c}/snapshots/recover` or the upload
//! endpoint; a full snapshot only at startup (`qdrant --storage-snapshot FILE`).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::http::{Api, Download, DownloadFacts, Expected, encode};
use super::{ArtifactPlan, DriverSettings, Dump, Facts, Source, facts_of};
use crate::Result;
use crate::config::{Mistake, ServiceContext};
use crate::restore_test::{Outcome, Replay};
use crate::secret::SecretRef;
use crate::tls::Transport;

/// The stem of the full-storage snapshot.
pub const FULL: &str = "full_cluster";

/// What a snapshot records.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SnapshotFacts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qdrant_version: Option<String>,
    /// The collection's points when it was taken (none for the full snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Its name on the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// What was received: the restore test checks the stored bytes are these.
    #[serde(flatten)]
    pub download: DownloadFacts,
}

/// The service keys of `driver = "qdrant"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    url: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    /// Collections to snapshot; default: every collection the server lists.
    collections: Option<Spanned<Vec<String>>>,
    /// Also the full-storage snapshot; default true.
    full: Option<bool>,
    ca_file: Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "qdrant";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        let transport = service.transport(&self.ca_file, self.allow_insecure_http)?;
        let collections = service.names(self.collections, "collections", "collection")?;
        Ok(Arc::new(QdrantSource {
            service: service.name.to_string(),
            url: service.url(self.url, "http://127.0.0.1:6333", &transport)?,
            transport,
            api_key: self.api_key.map(|k| service.secret(k)).transpose()?,
            collections,
            full: self.full.unwrap_or(true),
        }))
    }
}

#[derive(Debug)]
pub struct QdrantSource {
    pub service: String,
    pub url: String,
    pub transport: Transport,
    pub api_key: Option<SecretRef>,
    /// None: every collection the server has.
    pub collections: Option<Vec<String>>,
    pub full: bool,
}

impl QdrantSource {
    fn api(&self) -> Result<Api> {
        let auth = match &self.api_key {
            Some(k) => Some(("api-key", k.resolve()?)),
            None => None,
        };
        Api::new(&self.service, &self.url, &self.transport, auth)
    }
}

impl Source for QdrantSource {
    fn driver(&self) -> &'static str {
        "qdrant"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        let api = self.api()?;
        let names = match &self.collections {
            Some(c) => c.clone(),
            None => {
                let listed = api.json("GET", "/collections")?;
                listed["result"]["collections"]
                    .as_array()
                    .ok_or_else(|| api.fail("GET /collections: no result.collections".into()))?
                    .iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            }
        };
        let mut plan = Vec::new();
        for name in names {
            crate::id::validate_file_part(&name, "collection name")
                .map_err(|e| api.fail(format!("collection {name:?} cannot name a file: {e}")))?;
            if name == FULL && self.full {
                return Err(api.fail(format!(
                    "a collection named {FULL:?} would clash with the full snapshot; set full = false"
                )));
            }
            plan.push(ArtifactPlan {
                stem: name,
                extension: "snapshot".into(),
            });
        }
        if self.full {
            plan.push(ArtifactPlan {
                stem: FULL.into(),
                extension: "snapshot".into(),
            });
        }
        if plan.is_empty() {
            return Err(api.fail(
                "the server has no collections and full = false: nothing to back up".into(),
            ));
        }
        Ok(plan)
    }

    fn open(&self, artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        let api = Arc::new(self.api()?);
        let mut facts = SnapshotFacts::default();
        if let Ok(about) = api.json("GET", "/") {
            facts.qdrant_version = about["version"].as_str().map(str::to_owned);
        }
        let base = if artifact.stem == FULL {
            "/snapshots".to_owned()
        } else {
            let collection = format!("/collections/{}", encode(&artifact.stem));
            let info = api.json("GET", &collection)?;
            facts.points_count = info["result"]["points_count"].as_u64();
            facts.collection = Some(artifact.stem.clone());
            format!("{collection}/snapshots")
        };
        let created = api.json("POST", &format!("{base}?wait=true"))?;
        let snapshot = &created["result"];
        let name = snapshot["name"]
            .as_str()
            .ok_or_else(|| api.fail(format!("POST {base}: no result.name in the answer")))?
            .to_owned();
        facts.snapshot = Some(name.clone());
        let path = format!("{base}/{}", encode(&name));
        let expect = Expected {
            size: snapshot["size"].as_u64(),
            sha256: snapshot["checksum"].as_str().map(str::to_owned),
        };
        let download = match api.download(&path, expect) {
            Ok(d) => d,
            Err(e) => {
                delete(&api, &path);
                return Err(e);
            }
        };
        Ok(Box::new(SnapshotDump {
            api,
            path,
            download,
            facts: Some(facts),
        }))
    }

    /// The snapshot is the one Qdrant sent and a readable tar. Not replayed: recovering it
    /// would create a collection on the live server.
    fn restore_test(&self, replay: &Replay<'_>) -> Result<Outcome> {
        let recorded: SnapshotFacts = replay.facts()?;
        let announced = recorded.download.downloaded_sha256.unwrap_or_default();
        let stored = &replay.artifact.raw_sha256;
        if !announced.eq_ignore_ascii_case(stored) {
            return Ok(Outcome::Failed(format!(
                "the stored snapshot's SHA-256 {stored} is not the {announced:?} Qdrant sent"
            )));
        }
        let (status, listed) = replay.tar_list()?;
        Ok(if status.success() && listed > 0 {
            Outcome::Passed(format!(
                "the snapshot is the one Qdrant sent (SHA-256) and a readable tar of {listed} entries"
            ))
        } else {
            Outcome::Failed(format!(
                "the snapshot is not a readable tar (tar -t: {status}, {listed} entries)"
            ))
        })
    }
}

/// Deletes a snapshot from the server; a failure leaves a file on Qdrant's disk, not a bad backup.
fn delete(api: &Api, path: &str) {
    if let Err(e) = api.json("DELETE", path) {
        tracing::warn!("could not delete the snapshot from Qdrant (delete it by hand): {e}");
    }
}

struct SnapshotDump {
    api: Arc<Api>,
    path: String,
    download: Download,
    /// Taken by `finish`; while present, drop deletes the snapshot.
    facts: Option<SnapshotFacts>,
}

impl Read for SnapshotDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.download.read(buf)
    }
}

impl Dump for SnapshotDump {
    fn finish(mut self: Box<Self>) -> Result<Facts> {
        let mut facts = self.facts.take().unwrap_or_default();
        let checked = self.download.check();
        delete(&self.api, &self.path);
        facts.download = checked?;
        Ok(facts_of(&facts))
    }
}

impl Drop for SnapshotDump {
    fn drop(&mut self) {
        if self.facts.is_some() {
            delete(&self.api, &self.path);
        }
    }
}
