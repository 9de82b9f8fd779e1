//! `driver = "vault"`: a Raft snapshot (`snapshot_HHMMSS.raft`) from Vault's
//! `GET /v1/sys/storage/raft/snapshot`, the API behind `vault operator raft snapshot save`. The
//! token reaches Vault in the `X-Vault-Token` header only and needs `read` on
//! `sys/storage/raft/snapshot`. The snapshot is a gzipped tar (`meta.json`, `state.bin`,
//! `SHA256SUMS`); anything else is refused.
//!
//! Restore: `vault operator raft snapshot restore FILE` (needs the unseal keys of the cluster
//! that took it, which tierback does not hold).

use std::io::Read;

use super::http::{Api, Download, Expected};
use super::{ArtifactPlan, Dump, Facts, Source};
use crate::Result;
use crate::secret::SecretRef;

pub struct VaultSource {
    pub service: String,
    pub url: String,
    pub token: SecretRef,
}

impl Source for VaultSource {
    fn driver(&self) -> &'static str {
        "vault"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![ArtifactPlan {
            stem: "snapshot".into(),
            extension: "raft".into(),
        }])
    }

    fn open(&self, _artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        let api = Api::new(
            &self.service,
            &self.url,
            Some(("X-Vault-Token", self.token.resolve()?)),
        );
        let download = api.download("/v1/sys/storage/raft/snapshot", Expected::default())?;
        Ok(Box::new(RaftDump { api, download }))
    }
}

struct RaftDump {
    api: Api,
    download: Download,
}

impl Read for RaftDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.download.read(buf)
    }
}

impl Dump for RaftDump {
    fn finish(mut self: Box<Self>) -> Result<Facts> {
        let facts = self.download.check()?;
        if !self.download.head().starts_with(&[0x1f, 0x8b]) {
            return Err(self
                .api
                .fail("the answer is not a Raft snapshot (not gzip); nothing was stored".into()));
        }
        Ok(facts)
    }
}
