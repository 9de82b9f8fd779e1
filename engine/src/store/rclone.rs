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

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

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

/// How an upload is checked against its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// A crypt remote reports no hashes of the plaintext; `rclone cryptcheck` encrypts the
    /// source with the object's nonce and compares the underlying remote's hash of the
    /// ciphertext (no download). `rclone check` would compare sizes only.
    CryptCheck,
    /// The remote stores SHA-256 (local, some others): ours of the source against its.
    Sha256,
    /// Another hash the remote keeps (OneDrive: `quickxor`, no SHA-256): rclone computes it of
    /// the local source too, so both sides use the same algorithm, and nothing is downloaded.
    RemoteHash(String),
    /// No usable hash: download the object and compare its SHA-256 with the source's.
    Download,
}

#[derive(Debug, Clone)]
struct Features {
    verify: Verify,
    /// Server-side Move: decides whether uploads go through the staging directory.
    server_side_move: bool,
}

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

    fn copy_and_verify(&self, src: &Path, size: u64, dest: &str, verify: &Verify) -> Result<()> {
        let (dir, name) = local_parts(&self.name, src)?;
        self.rc(
            "operations/copyfile",
            serde_json::json!({
                "srcFs": dir, "srcRemote": name,
                "dstFs": self.remote, "dstRemote": dest,
            }),
            self.rclone.transfer_deadline(size),
        )?
        .ok_or_else(|| {
            Error::io(
                format!("tier {}: uploading {}", self.name, src.display()),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "rclone cannot find the source",
                ),
            )
        })?;
        self.verify(src, size, dest, verify)
    }

    /// Checks that the object at `dest` holds exactly the bytes of `src`.
    fn verify(&self, src: &Path, size: u64, dest: &str, how: &Verify) -> Result<()> {
        let deadline = self.rclone.transfer_deadline(size);
        let mismatch = |detail: String| {
            Error::integrity(
                format!("{}:{dest}", self.name),
                None,
                format!(
                    "upload does not match its source {}: {detail}",
                    src.display()
                ),
            )
        };
        match how {
            Verify::CryptCheck => self.cryptcheck(src, dest, deadline),
            Verify::Sha256 => {
                let ours = sha256_file(src)?;
                let theirs = self.remote_hash("sha256", dest, false, deadline)?;
                if theirs.is_empty() {
                    // The backend may not have the hash for this object: fall back.
                    return self.verify(src, size, dest, &Verify::Download);
                }
                (ours == theirs)
                    .then_some(())
                    .ok_or_else(|| mismatch(format!("sha256 {theirs} != {ours}")))
            }
            Verify::RemoteHash(h) => {
                let ours = self.local_hash(h, src)?;
                let theirs = self.remote_hash(h, dest, false, deadline)?;
                if theirs.is_empty() || ours.is_empty() {
                    return self.verify(src, size, dest, &Verify::Download);
                }
                (ours == theirs)
                    .then_some(())
                    .ok_or_else(|| mismatch(format!("{h} {theirs} != {ours}")))
            }
            Verify::Download => {
                let ours = sha256_file(src)?;
                let theirs = self.remote_hash("sha256", dest, true, deadline)?;
                (ours == theirs)
                    .then_some(())
                    .ok_or_else(|| mismatch(format!("downloaded sha256 {theirs} != {ours}")))
            }
        }
    }

    /// `rclone cryptcheck` compares directories by name, so the source is presented as a
    /// private directory holding one symlink named like the object (followed with `-L`), and
    /// `--one-way` ignores the other objects in the destination directory.
    fn cryptcheck(&self, src: &Path, dest: &str, deadline: Duration) -> Result<()> {
        let (dir, name) = match dest.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", dest),
        };
        let stage = tempfile::Builder::new()
            .prefix("tierback-cryptcheck-")
            .tempdir()
            .ctx(|| format!("tier {}: creating a temporary directory", self.name))?;
        let src_abs = std::path::absolute(src)
            .ctx(|| format!("tier {}: resolving {}", self.name, src.display()))?;
        std::os::unix::fs::symlink(&src_abs, stage.path().join(name)).ctx(|| {
            format!(
                "tier {}: linking {} for cryptcheck",
                self.name,
                src.display()
            )
        })?;
        let stage_str = stage
            .path()
            .to_str()
            .expect("temp dirs are UTF-8")
            .to_owned();
        match self.try_run(
            &format!("cryptcheck {dest}"),
            &[
                "cryptcheck",
                "--one-way",
                "-L",
                &stage_str,
                &self.at(dir),
                "--include",
                &format!("/{}", glob_escape(name)),
            ],
            deadline,
        ) {
            Ok(_) => Ok(()),
            // Exit 1 with "hashes differ" / "file not in": a mismatch, an integrity failure.
            Err(f) if f.code == Some(1) && is_mismatch(&f.error.to_string()) => {
                Err(Error::integrity(
                    format!("{}:{dest}", self.name),
                    None,
                    format!("cryptcheck: upload does not match its source: {}", f.error),
                ))
            }
            Err(f) => Err(f.error),
        }
    }

    /// The hex digest `hash` the remote keeps of `dest` ("" if it has none for this object);
    /// with `download`, rclone reads the object and hashes it (`hashsum --download`: the API
    /// has no such call, so this one is a process).
    fn remote_hash(
        &self,
        hash: &str,
        dest: &str,
        download: bool,
        deadline: Duration,
    ) -> Result<String> {
        if download {
            let target = self.at(dest);
            let args = ["hashsum", hash, &target, "--download"];
            let out = self.run(&format!("hashsum {hash} {dest}"), &args, deadline)?;
            return Ok(first_token(&out));
        }
        let entry = self
            .stat(&self.remote, dest, Some(hash))?
            .ok_or_else(|| Error::NotFound {
                tier: self.name.clone(),
                key: dest.to_owned(),
            })?;
        Ok(entry.hash(hash))
    }

    /// rclone computing hash `H` of a local file (for hashes we do not implement, e.g. quickxor).
    fn local_hash(&self, hash: &str, src: &Path) -> Result<String> {
        let (dir, name) = local_parts(&self.name, src)?;
        Ok(self
            .stat(&dir, &name, Some(hash))?
            .map(|e| e.hash(hash))
            .unwrap_or_default())
    }
}

/// A local file as rclone's API names it: the directory (an fs) and the name in it.
fn local_parts(tier: &str, src: &Path) -> Result<(String, String)> {
    let abs =
        std::path::absolute(src).ctx(|| format!("tier {tier}: resolving {}", src.display()))?;
    let (Some(dir), Some(name)) = (
        abs.parent().and_then(Path::to_str),
        abs.file_name().and_then(|n| n.to_str()),
    ) else {
        return Err(Error::Invalid(format!(
            "tier {tier}: {} is not a UTF-8 file path",
            src.display()
        )));
    };
    // `:local:` so that a directory with a colon in its name is not taken for a remote.
    Ok((format!(":local:{dir}"), name.to_owned()))
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

/// Picks the verification and upload strategy from `rclone backend features REMOTE` output.
fn parse_features(json: &[u8]) -> std::result::Result<Features, serde_json::Error> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "String")]
        string: String,
        #[serde(rename = "Hashes")]
        hashes: Vec<String>,
        #[serde(rename = "Features")]
        features: std::collections::HashMap<String, serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(json)?;
    // rclone's crypt backend describes itself as "Encrypted drive 'NAME:PATH'".
    let verify = if raw.string.starts_with("Encrypted drive") {
        Verify::CryptCheck
    } else if raw.hashes.iter().any(|h| h == "sha256") {
        Verify::Sha256
    } else if let Some(h) = raw.hashes.first() {
        Verify::RemoteHash(h.clone())
    } else {
        Verify::Download
    };
    let server_side_move = raw.features.get("Move").and_then(|v| v.as_bool()) == Some(true);
    Ok(Features {
        verify,
        server_side_move,
    })
}

fn first_token(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .ctx(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Escapes rclone filter-glob metacharacters so a name matches only itself.
fn glob_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if "*?[]{}\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_mismatch(text: &str) -> bool {
    text.contains("hashes differ")
        || text.contains("file not in")
        || text.contains("differences found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_follows_the_remote() {
        let f = |s: &str, hashes: &str, mv: bool| {
            let json = format!(
                r#"{{"Name":"x","Root":"","String":"{s}","Precision":1,"Hashes":[{hashes}],"Features":{{"Move":{mv}}}}}"#
            );
            parse_features(json.as_bytes()).unwrap()
        };
        assert_eq!(
            f("Encrypted drive 'c:'", "", true).verify,
            Verify::CryptCheck
        );
        assert_eq!(
            f("Local file system at /x", r#""md5","sha256""#, true).verify,
            Verify::Sha256
        );
        let od = f("OneDrive root ''", r#""quickxor""#, true);
        assert_eq!(od.verify, Verify::RemoteHash("quickxor".into()));
        assert!(od.server_side_move);
        let dav = f("webdav root ''", "", false);
        assert_eq!(dav.verify, Verify::Download);
        assert!(!dav.server_side_move);
    }

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("a*b[1].gz"), "a\\*b\\[1\\].gz");
    }
}
