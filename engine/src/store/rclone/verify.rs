//! Checking an upload against its source, by the best means the remote offers (see [`Verify`]),
//! and learning those means from `rclone backend features`.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::RcloneStore;
use crate::error::IoContext;
use crate::{Error, Result};

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
pub(super) struct Features {
    pub(super) verify: Verify,
    /// Server-side Move: decides whether uploads go through the staging directory.
    pub(super) server_side_move: bool,
}

impl RcloneStore {
    pub(super) fn copy_and_verify(
        &self,
        src: &Path,
        size: u64,
        dest: &str,
        verify: &Verify,
    ) -> Result<()> {
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
/// Picks the verification and upload strategy from `rclone backend features REMOTE` output.
pub(super) fn parse_features(json: &[u8]) -> std::result::Result<Features, serde_json::Error> {
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
