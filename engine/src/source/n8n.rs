//! `driver = "n8n"`: every workflow (`workflows_HHMMSS.json`) through n8n's public REST API
//! (`GET /api/v1/workflows`, followed page by page through `nextCursor`), written as one JSON
//! array — the shape of `n8n export:workflow --all`, so `n8n import:workflow --input=FILE`
//! restores it. The API key reaches n8n in the `X-N8N-API-KEY` header only. Credentials are not
//! exported: the public API never returns their secrets.

use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::sync::Arc;

use super::http::{Api, encode};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ArtifactPlan, DriverSettings, Dump, Facts, Source, facts_of};
use crate::Result;
use crate::config::{Mistake, ServiceContext};
use crate::restore_test::{Outcome, Replay};
use crate::secret::SecretRef;
use crate::tls::Transport;

/// Workflows per page (the API's maximum).
const PAGE: usize = 250;
/// A cursor loop longer than this is a server bug, not a big instance.
const MAX_PAGES: usize = 100_000;

/// What an export records.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkflowFacts {
    /// Workflows in the export: what the restore test must find in it.
    pub workflow_count: Option<u64>,
    pub active_workflows: Option<u64>,
}

/// The service keys of `driver = "n8n"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    url: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    ca_file: Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "n8n";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        let transport = service.transport(&self.ca_file, self.allow_insecure_http)?;
        let url = service.url(self.url, "http://127.0.0.1:5678", &transport)?;
        let api_key = service.needs(Self::DRIVER, self.api_key, "api_key")?;
        Ok(Arc::new(N8nSource {
            service: service.name.to_string(),
            url,
            transport,
            api_key: service.secret(api_key)?,
        }))
    }
}

#[derive(Debug)]
pub struct N8nSource {
    pub service: String,
    pub url: String,
    pub transport: Transport,
    pub api_key: SecretRef,
}

impl Source for N8nSource {
    fn driver(&self) -> &'static str {
        "n8n"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan {
            stem: "workflows".into(),
            extension: "json".into(),
        }])
    }

    fn open(&self, _artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        let api = Api::new(
            &self.service,
            &self.url,
            &self.transport,
            Some(("X-N8N-API-KEY", self.api_key.resolve()?)),
        )?;
        let mut workflows = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let mut path = format!("/api/v1/workflows?limit={PAGE}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", encode(c)));
            }
            let page = api.json("GET", &path)?;
            let data = page["data"]
                .as_array()
                .ok_or_else(|| api.fail(format!("GET {path}: no data array in the answer")))?;
            workflows.extend(data.iter().cloned());
            cursor = page["nextCursor"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            if let Some(c) = &cursor
                && !seen.insert(c.clone())
            {
                return Err(api.fail(format!(
                    "GET /api/v1/workflows: the server repeated a nextCursor after {} workflows",
                    workflows.len()
                )));
            }
            if cursor.is_none() {
                let active = workflows.iter().filter(|w| w["active"] == true).count();
                let facts = facts_of(&WorkflowFacts {
                    workflow_count: Some(workflows.len() as u64),
                    active_workflows: Some(active as u64),
                });
                let mut json = serde_json::to_vec_pretty(&workflows)
                    .map_err(|e| api.fail(format!("encoding the workflows: {e}")))?;
                json.push(b'\n');
                return Ok(Box::new(JsonDump {
                    data: Cursor::new(json),
                    facts,
                }));
            }
        }
        Err(api.fail(format!(
            "GET /api/v1/workflows: still a nextCursor after {MAX_PAGES} pages"
        )))
    }

    /// The export parsed, its workflow count against the recorded one.
    fn restore_test(&self, replay: &Replay<'_>) -> Result<Outcome> {
        let recorded: WorkflowFacts = replay.facts()?;
        let mut json = Vec::new();
        replay.reader.copy_to(&mut json, replay.threads)?;
        let listed = serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len));
        Ok(match (listed, recorded.workflow_count) {
            (None, _) => Outcome::Failed("the export is not a JSON array of workflows".into()),
            (Some(n), Some(r)) if n as u64 != r => Outcome::Failed(format!(
                "the export holds {n} workflows, the backup recorded {r}"
            )),
            (Some(n), _) => Outcome::Passed(format!("{n} workflows, as recorded")),
        })
    }
}

struct JsonDump {
    data: Cursor<Vec<u8>>,
    facts: Facts,
}

impl Read for JsonDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.data.read(buf)
    }
}

impl Dump for JsonDump {
    fn finish(self: Box<Self>) -> Result<Facts> {
        Ok(self.facts)
    }
}
