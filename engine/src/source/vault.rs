//! `driver = "vault"`: a Raft snapshot (`snapshot_HHMMSS.raft`) from Vault's
//! `GET /v1/sys/storage/raft/snapshot`, the API behind `vault operator raft snapshot save`. The
//! token reaches Vault in the `X-Vault-Token` header only and needs `read` on
//! `sys/storage/raft/snapshot`. The snapshot is a gzipped tar (`meta.json`, `state.bin`,
//! `SHA256SUMS`, `SHA256SUMS.sealed`), listed by `tar -tz` as it streams past: an answer that is
//! not one is refused, and so is one without `SHA256SUMS.sealed` — Vault still answers 200 when
//! it fails midway through a snapshot, and only the missing sealed sums tell (its own client's
//! `ErrIncompleteSnapshot`).
//!
//! Restore: `vault operator raft snapshot restore FILE` (needs the unseal keys of the cluster
//! that took it, which tierback does not hold).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::http::{Api, Download, DownloadFacts, Expected};
use super::{ArtifactPlan, DriverSettings, Dump, Facts, Source, facts_of};
use crate::config::{Mistake, ServiceContext};
use crate::process::{self, Running, last_lines};
use crate::restore_test::{Outcome, Replay};
use crate::secret::SecretRef;
use crate::tls::Transport;
use crate::{Error, Result};

/// The service keys of `driver = "vault"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    url: Option<Spanned<String>>,
    /// Needs `read` on `sys/storage/raft/snapshot`.
    token: Option<Spanned<String>>,
    ca_file: Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
}

impl DriverSettings for Settings {
    const DRIVER: &'static str = "vault";

    fn build(self, service: &ServiceContext<'_>) -> Result<Arc<dyn Source>, Mistake> {
        let transport = service.transport(&self.ca_file, self.allow_insecure_http)?;
        let url = service.url(self.url, "http://127.0.0.1:8200", &transport)?;
        let token = service.needs(Self::DRIVER, self.token, "token")?;
        Ok(Arc::new(VaultSource {
            service: service.name.to_string(),
            url,
            transport,
            token: service.secret(token)?,
        }))
    }
}

#[derive(Debug)]
pub struct VaultSource {
    pub service: String,
    pub url: String,
    pub transport: Transport,
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
            &self.transport,
            Some(("X-Vault-Token", self.token.resolve()?)),
        )?;
        let download = api.download("/v1/sys/storage/raft/snapshot", Expected::default())?;
        let listing = Listing::start()?;
        Ok(Box::new(RaftDump {
            api,
            download,
            listing: Some(listing),
        }))
    }

    fn restore_test(&self, replay: &Replay<'_>) -> Result<Outcome> {
        check_snapshot(replay)
    }
}

/// A Vault Raft snapshot (a gzipped tar) unpacked into a scratch directory, and its
/// `SHA256SUMS` checked with `sha256sum -c` (what `vault operator raft snapshot restore` checks
/// before it replaces a cluster's data).
fn check_snapshot(replay: &Replay<'_>) -> Result<Outcome> {
    let scratch = match replay.unpack("-xzf")? {
        Ok(dir) => dir,
        Err(failed) => return Ok(failed),
    };
    for needed in ["SHA256SUMS", "SHA256SUMS.sealed"] {
        if !scratch.path().join(needed).exists() {
            return Ok(Outcome::Failed(format!(
                "the snapshot has no {needed}: it is incomplete"
            )));
        }
    }
    let mut sha256sum = Command::new("sha256sum");
    sha256sum
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(scratch.path());
    let check = process::run(sha256sum).map_err(|e| Error::io("running sha256sum", e))?;
    let said = last_lines(&String::from_utf8_lossy(&check.stdout), 5).replace('\n', "; ");
    Ok(if check.exit.status.success() {
        Outcome::Passed(format!("SHA256SUMS match: {said}"))
    } else {
        Outcome::Failed(format!("SHA256SUMS do not match: {said}"))
    })
}

/// What a Raft snapshot records.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RaftFacts {
    #[serde(flatten)]
    pub download: DownloadFacts,
    /// The names in the snapshot's tar, as `tar -tz` listed them while it streamed in.
    #[serde(default)]
    pub archive_entries: Vec<String>,
}

struct RaftDump {
    api: Api,
    download: Download,
    listing: Option<Listing>,
}

impl Read for RaftDump {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.download.read(buf)?;
        if let Some(l) = &mut self.listing {
            l.feed(&buf[..n]);
        }
        Ok(n)
    }
}

impl Dump for RaftDump {
    fn finish(mut self: Box<Self>) -> Result<Facts> {
        let download = self.download.check()?;
        let (ok, names) = self.listing.take().expect("finished once").finish();
        let refuse = |why: &str| Err(self.api.fail(format!("{why}; nothing was stored")));
        // `tar -tz` fails on anything that is not a whole gzipped tar.
        if !ok {
            return refuse("the answer is not a Raft snapshot (not a gzipped tar)");
        }
        if !names.iter().any(|n| n == "SHA256SUMS.sealed") {
            return refuse(
                "the snapshot is incomplete (no SHA256SUMS.sealed): Vault failed while sending it",
            );
        }
        Ok(facts_of(&RaftFacts {
            download,
            archive_entries: names,
        }))
    }
}

/// `tar -tz` fed the bytes as they stream past: the archive's entry names, without a second
/// copy of the snapshot.
struct Listing {
    /// Closed first: tar then ends (or is killed with the [`Running`] on drop).
    stdin: Option<ChildStdin>,
    child: Running,
    names: Option<JoinHandle<String>>,
}

impl Listing {
    fn start() -> Result<Listing> {
        let mut cmd = Command::new("tar");
        cmd.args(["-tzf", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child =
            Running::spawn(cmd).map_err(|e| Error::io("running tar to check the snapshot", e))?;
        let stdin = child.take_stdin();
        let mut stdout = child.take_stdout().expect("piped");
        let names = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        Ok(Listing {
            child,
            stdin,
            names: Some(names),
        })
    }

    fn feed(&mut self, bytes: &[u8]) {
        // tar gone (not a gzipped tar): stop feeding; its exit status tells.
        if let Some(stdin) = &mut self.stdin
            && stdin.write_all(bytes).is_err()
        {
            self.stdin = None;
        }
    }

    /// Whether tar read a whole archive, and the names it listed.
    fn finish(self) -> (bool, Vec<String>) {
        let Listing {
            stdin,
            child,
            names,
        } = self;
        drop(stdin);
        let ok = child.wait().is_ok_and(|exit| exit.status.success());
        let names = names.and_then(|h| h.join().ok()).unwrap_or_default();
        (ok, names.lines().map(str::to_owned).collect())
    }
}
