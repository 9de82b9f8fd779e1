//! The rclone tier: any rclone remote (`onedrive:Zentoria/Backups` in production, a `crypt`
//! remote for encryption at rest), driven through the real `rclone` binary.
//!
//! One long-lived `rclone serve http --rc` on loopback ([`super::rclone_serve`]) does the work:
//! - Reads: HTTP `Range` requests; a block read is a local HTTP request, not a process.
//! - Writes: `operations/copyfile` into a private staging directory on the remote,
//!   verification of the staged object against the source (see [`Verify`]), then
//!   `operations/movefile` onto the key.
//! - Listing: `operations/list` (recursive, files only); head: `operations/stat`; delete:
//!   `operations/deletefile`.
//!
//! Only the verifications rclone's API cannot do start a process of their own: `cryptcheck`
//! for crypt remotes and `hashsum --download` for remotes that keep no hash.
//!
//! Atomicity of `put_file`. rclone 1.60 writes an upload straight to its destination name on
//! most backends (the `.partial` + rename scheme arrived in 1.63), so a reader of the key could
//! see a prefix. We therefore upload to `.tierback-partial/<unique>/<name>` and move the
//! verified object onto the key: on remotes with server-side Move (local: rename(2);
//! OneDrive, Google Drive, sftp: a server-side rename; crypt over any of them) the key changes
//! from the old object to the complete new one in one step. Remotes without server-side Move
//! (S3-like, WebDAV without MOVE) would make `moveto` a copy, so there we upload straight to
//! the key and verify it in place: readers may briefly see a partial object, as with rclone
//! itself; block reads verify hashes and never hand such bytes on.
//!
//! Every rclone child follows the contract of `source/process.rs` ([`super::rclone_cmd`]):
//! bounded stderr tail in errors, deadline from the tier's `timeout`, killed on drop, nothing
//! secret on argv.
//!
//! How an upload is checked against its source is in `verify`.

mod verify;

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use super::rclone_cmd::{Failure, Rclone, check_remote};
use super::rclone_serve::ServeHttp;
use super::{ObjectMeta, Store, check_key};
use crate::config::{TierConfig, TierKind};
use crate::error::IoContext;
use crate::{Error, Result};

/// Remote directory for uploads in progress. Hidden (leading dot) so `list` skips it, as the
/// local tier skips its `.partial`.
pub const STAGING_DIR: &str = ".tierback-partial";

static UPLOAD_COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct RcloneStore {
    name: String,
    remote: String,
    rclone: Rclone,
    serve: ServeHttp,
    /// What the remote supports, asked once on the first upload (asking may need the network,
    /// so `open` does not).
    features: OnceLock<Features>,
}

pub use verify::Verify;
use verify::{Features, parse_features};

/// One entry of an `operations/list` or `operations/stat` answer.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Path")]
    path: String,
    #[serde(rename = "Size")]
    size: i64,
    #[serde(rename = "IsDir")]
    is_dir: bool,
    #[serde(rename = "Hashes", default)]
    hashes: std::collections::HashMap<String, String>,
}

impl Entry {
    /// The digest of `hash`, lower-case hex, or "" if the remote has none.
    fn hash(&self, hash: &str) -> String {
        self.hashes
            .get(hash)
            .map(|h| h.to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// The remote's options given by secret reference, as the environment rclone reads them from
/// (`RCLONE_CONFIG_<REMOTE>_<KEY>`, upper case, `-` as `_`). Values are what rclone's config
/// file would hold (a crypt password obscured with `rclone obscure`).
fn secret_env(
    tier: &str,
    remote: &str,
    secrets: &std::collections::BTreeMap<String, crate::secret::SecretRef>,
) -> Result<Vec<(String, String)>> {
    if secrets.is_empty() {
        return Ok(Vec::new());
    }
    let section = remote.split(':').next().unwrap_or_default();
    if section.is_empty() {
        return Err(Error::Invalid(format!(
            "tier {tier}: `secrets` need a named remote (NAME:path), not {remote:?}"
        )));
    }
    secrets
        .iter()
        .map(|(key, reference)| {
            let var = format!("RCLONE_CONFIG_{section}_{key}")
                .replace('-', "_")
                .to_ascii_uppercase();
            Ok((var, reference.resolve()?.expose().to_owned()))
        })
        .collect()
}

impl RcloneStore {
    /// Opens the tier without touching the remote (that happens on first use).
    pub fn open(tier: &TierConfig) -> Result<RcloneStore> {
        RcloneStore::open_with_env(tier, Vec::new())
    }

    /// Like [`RcloneStore::open`], with environment variables added for every rclone this store
    /// starts — e.g. `RCLONE_CONFIG_<NAME>_*` values a caller resolved from secret references,
    /// or a test's private remotes. They never reach argv.
    pub fn open_with_env(tier: &TierConfig, env: Vec<(String, String)>) -> Result<RcloneStore> {
        let TierKind::Rclone {
            remote,
            binary,
            timeout_secs,
            secrets,
        } = &tier.kind
        else {
            return Err(Error::Invalid(format!(
                "tier {}: not an rclone tier",
                tier.name
            )));
        };
        let name = tier.name.as_str().to_owned();
        check_remote(&name, remote)?;
        let mut env = env;
        env.extend(secret_env(&name, remote, secrets)?);
        let rclone = Rclone {
            tier: name.clone(),
            binary: binary.clone(),
            timeout: Duration::from_secs((*timeout_secs).max(1)),
            env,
            spawned: Arc::new(AtomicU64::new(0)),
        };
        Ok(RcloneStore {
            serve: ServeHttp::new(rclone.clone(), remote.clone()),
            name,
            remote: remote.clone(),
            rclone,
            features: OnceLock::new(),
        })
    }

    /// How many rclone processes this store has started (commands and servers).
    pub fn processes_started(&self) -> u64 {
        self.rclone.spawned.load(Ordering::Relaxed)
    }

    /// The pid of the `serve http` process, if one runs.
    pub fn server_pid(&self) -> Option<u32> {
        self.serve.pid()
    }

    /// How uploads to this remote are verified (asks the remote on first use).
    pub fn verify_method(&self) -> Result<Verify> {
        Ok(self.features()?.verify)
    }

    /// `REMOTE/path` as rclone expects it (`offsite:` + `a/b`, `onedrive:X` + `/a/b`).
    fn at(&self, path: &str) -> String {
        if path.is_empty() {
            self.remote.clone()
        } else if self.remote.ends_with(':') || self.remote.ends_with('/') {
            format!("{}{path}", self.remote)
        } else {
            format!("{}/{path}", self.remote)
        }
    }

    /// Runs `rclone ARGS`; its stdout, or the failure with its exit code.
    fn try_run(&self, what: &str, args: &[&str], deadline: Duration) -> Result<Vec<u8>, Failure> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        self.rclone.run(what, &args, deadline).map(|o| o.stdout)
    }

    /// Runs `rclone ARGS`; its stdout, or the error.
    fn run(&self, what: &str, args: &[&str], deadline: Duration) -> Result<Vec<u8>> {
        self.try_run(what, args, deadline)
            .map_err(Failure::into_error)
    }

    /// Calls the server's remote-control API (`None`: not found).
    fn rc(
        &self,
        command: &str,
        input: serde_json::Value,
        timeout: Duration,
    ) -> Result<Option<serde_json::Value>> {
        self.serve.rc(command, &input, timeout)
    }

    /// `operations/stat` of `remote` in `fs`, with the hash `hash` if asked.
    fn stat(&self, fs: &str, remote: &str, hash: Option<&str>) -> Result<Option<Entry>> {
        let mut input = serde_json::json!({"fs": fs, "remote": remote});
        if let Some(h) = hash {
            input["opt"] = serde_json::json!({"showHash": true, "hashTypes": [h]});
        }
        let Some(answer) = self.rc("operations/stat", input, self.rclone.timeout)? else {
            return Ok(None);
        };
        if answer["item"].is_null() {
            return Ok(None);
        }
        serde_json::from_value(answer["item"].clone())
            .map(Some)
            .map_err(|e| {
                Error::Invalid(format!(
                    "tier {}: {remote}: bad operations/stat answer: {e}",
                    self.name
                ))
            })
    }

    fn features(&self) -> Result<Features> {
        if let Some(f) = self.features.get() {
            return Ok(f.clone());
        }
        let answer = self
            .rc(
                "operations/fsinfo",
                serde_json::json!({"fs": self.remote}),
                self.rclone.timeout,
            )?
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "tier {}: rclone does not know the remote",
                    self.name
                ))
            })?;
        let f = parse_features(answer.to_string().as_bytes()).map_err(|e| {
            Error::Invalid(format!(
                "tier {}: cannot parse rclone's operations/fsinfo answer: {e}",
                self.name
            ))
        })?;
        tracing::debug!(tier = %self.name, ?f, "rclone remote features");
        Ok(self.features.get_or_init(|| f).clone())
    }

    /// Uploads `src`, verifies it, and publishes it under `key` (see the module doc).
    fn upload(&self, key: &str, src: &Path) -> Result<()> {
        let size = std::fs::metadata(src)
            .ctx(|| format!("tier {}: reading {}", self.name, src.display()))?
            .len();
        let features = self.features()?;
        let name = key.rsplit('/').next().expect("checked keys have a name");
        if !features.server_side_move {
            self.copy_and_verify(src, size, key, &features.verify)?;
            self.serve.invalidate();
            return Ok(());
        }
        let dir = format!(
            "{STAGING_DIR}/{}-{}-{}",
            std::process::id(),
            UPLOAD_COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let staged = format!("{dir}/{name}");
        let result = self
            .copy_and_verify(src, size, &staged, &features.verify)
            .and_then(|()| {
                self.rc(
                    "operations/movefile",
                    serde_json::json!({
                        "srcFs": self.remote, "srcRemote": staged,
                        "dstFs": self.remote, "dstRemote": key,
                    }),
                    self.rclone.transfer_deadline(size),
                )?
                .map(drop)
                .ok_or_else(|| Error::NotFound {
                    tier: self.name.clone(),
                    key: staged.clone(),
                })
            });
        // The staging directory is ours alone: remove it whatever happened (best effort; a
        // leftover is hidden from `list` and harmless).
        let _ = self.rc(
            "operations/purge",
            serde_json::json!({"fs": self.remote, "remote": dir}),
            self.rclone.timeout,
        );
        result?;
        self.serve.invalidate();
        Ok(())
    }
}

impl Store for RcloneStore {
    fn name(&self) -> &str {
        &self.name
    }

    /// Staging directories of uploads whose process is gone (`<pid>-<n>-<time>`).
    fn clean_staging(&self) -> Result<usize> {
        let Some(answer) = self.rc(
            "operations/list",
            serde_json::json!({"fs": self.remote, "remote": STAGING_DIR, "opt": {"dirsOnly": true}}),
            self.rclone.timeout,
        )?
        else {
            return Ok(0);
        };
        let entries: Vec<Entry> = serde_json::from_value(answer["list"].clone()).map_err(|e| {
            Error::Invalid(format!(
                "tier {}: bad operations/list answer for {STAGING_DIR}: {e}",
                self.name
            ))
        })?;
        let mut removed = 0;
        for e in entries.into_iter().filter(|e| e.is_dir) {
            let name = e.path.rsplit('/').next().unwrap_or_default();
            let pid: Option<i32> = name.split('-').next().and_then(|p| p.parse().ok());
            if pid.is_some_and(crate::lock::process_alive) {
                continue;
            }
            self.rc(
                "operations/purge",
                serde_json::json!({"fs": self.remote, "remote": e.path}),
                self.rclone.timeout,
            )?;
            removed += 1;
        }
        Ok(removed)
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<()> {
        check_key(key)?;
        self.upload(key, src)
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        check_key(key)?;
        let mut tmp = tempfile::NamedTempFile::new()
            .ctx(|| format!("tier {}: creating a temporary file", self.name))?;
        std::io::Write::write_all(&mut tmp, bytes)
            .ctx(|| format!("tier {}: writing a temporary file", self.name))?;
        self.upload(key, tmp.path())
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_key(key)?;
        self.serve.get_range(key, offset, len)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        check_key(key)?;
        let Some(e) = self.stat(&self.remote, key, None)? else {
            return Ok(None);
        };
        Ok((!e.is_dir).then(|| ObjectMeta {
            key: key.to_owned(),
            size: e.size.max(0) as u64,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        // List the deepest directory the prefix names completely, then filter by the rest.
        let dir = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let dir = dir.trim_end_matches('/');
        let Some(answer) = self.rc(
            "operations/list",
            serde_json::json!({
                "fs": self.remote, "remote": dir,
                "opt": {"recurse": true, "filesOnly": true, "noModTime": true, "noMimeType": true},
            }),
            self.rclone.timeout,
        )?
        else {
            return Ok(Vec::new());
        };
        let entries: Vec<Entry> = serde_json::from_value(answer["list"].clone()).map_err(|e| {
            Error::Invalid(format!(
                "tier {}: bad operations/list answer for {dir:?}: {e}",
                self.name
            ))
        })?;
        // Paths are relative to the remote's root; staging directories (hidden) are dropped.
        let mut out: Vec<ObjectMeta> = entries
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| ObjectMeta {
                key: e.path,
                size: e.size.max(0) as u64,
            })
            .filter(|m| m.key.starts_with(prefix) && !m.key.split('/').any(|p| p.starts_with('.')))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let result = self.rc(
            "operations/deletefile",
            serde_json::json!({"fs": self.remote, "remote": key}),
            self.rclone.timeout,
        );
        self.serve.invalidate();
        // Deleting an absent object succeeds (rclone answers 404: `None`).
        result?;
        // Drop the date directory once empty, as the local tier does (best effort: rmdir
        // refuses a non-empty directory).
        if let Some((parent, _)) = key.rsplit_once('/') {
            let _ = self.rc(
                "operations/rmdir",
                serde_json::json!({"fs": self.remote, "remote": parent}),
                self.rclone.timeout,
            );
        }
        Ok(())
    }
}
