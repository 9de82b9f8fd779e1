//! `driver = "command"`: the stdout of any argv is the backup.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::process::ChildDump;
use super::{ArtifactPlan, DriverSettings, Dump, Source};
use crate::Result;
use crate::config::{Mistake, ServiceContext};
use crate::secret::SecretRef;

/// The service keys of `driver = "command"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// argv, run without a shell.
    command: Option<Spanned<Vec<String>>>,
    /// File name stem; default: the service name.
    artifact: Option<Spanned<String>>,
    /// The decompressed file's extension; default `bin`.
    extension: Option<Spanned<String>>,
    /// Variables added to the command's environment, by secret reference.
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "command";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        let argv = service.needs(Self::DRIVER, self.command, "command")?;
        if argv.get_ref().is_empty() {
            return Err(service.error(argv.span(), "command is empty"));
        }
        let part = |value: Option<Spanned<String>>, default: &str, what: &str| match value {
            Some(v) => service.file_part(v, what),
            None => Ok(default.to_owned()),
        };
        let env = self
            .env
            .into_iter()
            .map(|(k, v)| Ok((k, service.secret(v)?)))
            .collect::<Result<_, Mistake>>()?;
        Ok(Arc::new(CommandSource {
            service: service.name.to_string(),
            argv: argv.into_inner(),
            env,
            plan: ArtifactPlan {
                stem: part(self.artifact, service.name.as_str(), "artifact")?,
                extension: part(self.extension, "bin", "extension")?,
            },
        }))
    }
}

#[derive(Debug)]
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
