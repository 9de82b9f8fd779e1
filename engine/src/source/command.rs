//! `driver = "command"`: the stdout of any argv is the backup.

use std::collections::BTreeMap;

use super::process::ChildDump;
use super::{ArtifactPlan, Dump, Source};
use crate::Result;
use crate::secret::SecretRef;

pub struct CommandSource {
    pub service: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, SecretRef>,
    pub plan: ArtifactPlan,
}

impl Source for CommandSource {
    fn driver(&self) -> &'static str {
        "command"
    }

    fn plan(&self) -> Result<Vec<ArtifactPlan>> {
        Ok(vec![self.plan.clone()])
    }

    fn open(&self, _artifact: &ArtifactPlan) -> Result<Box<dyn Dump>> {
        let env = self
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.resolve()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(ChildDump::spawn(&self.service, &self.argv, &env)?))
    }
}
