//! `[tiers.NAME]`: where copies live (a local directory, an S3 bucket, an rclone remote), with
//! each tier's copy policy, retention and verification share.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::checks::{check_copy, mode, transport_of};
use super::retention::{RawRetention, Retention, retention};
use super::{ConfigFile, Jobs};
use crate::Result;
use crate::id::TierName;
use crate::secret::SecretRef;
use crate::tls::Transport;
use crate::units::{parse_age, parse_size};

#[derive(Debug, Clone)]
pub struct TierConfig {
    pub name: TierName,
    pub kind: TierKind,
    /// Which backups this tier receives (`all`, `daily`, `weekly`).
    pub copy: Vec<String>,
    pub retention: Retention,
    /// When `tierback run` syncs this tier (cron, UTC); `None`: `[jobs] sync`.
    pub sync: Option<Vec<String>>,
    /// When `tierback run` verifies this tier; `None`: `[jobs] verify`.
    pub verify: Option<Vec<String>>,
    /// Every copy on the tier is read in full at least once per window (seconds): a scheduled
    /// verification reads the share that keeps to it, oldest first.
    pub verify_window: u64,
    /// At most this many stored bytes read by one scheduled verification.
    pub verify_budget: Option<u64>,
    /// s3 tiers: `tiers setup` expires replaced or deleted object versions after this long.
    pub noncurrent_expiry: u64,
}

impl TierConfig {
    /// A tier with every setting at its default: receives every backup, keeps everything.
    pub fn new(name: TierName, kind: TierKind) -> TierConfig {
        let verify_window = match kind {
            TierKind::Local { .. } => LOCAL_VERIFY_WINDOW,
            _ => REMOTE_VERIFY_WINDOW,
        };
        TierConfig {
            name,
            kind,
            copy: vec!["all".into()],
            retention: Retention::default(),
            sync: None,
            verify: None,
            verify_window,
            verify_budget: None,
            noncurrent_expiry: DEFAULT_NONCURRENT_EXPIRY,
        }
    }

    /// The cron expressions of this tier's sync (empty: every run).
    pub fn sync_schedule<'a>(&'a self, jobs: &'a Jobs) -> &'a [String] {
        self.sync.as_deref().unwrap_or(&jobs.sync)
    }

    /// The cron expressions of this tier's scheduled verification.
    pub fn verify_schedule<'a>(&'a self, jobs: &'a Jobs) -> &'a [String] {
        self.verify.as_deref().unwrap_or(&jobs.verify)
    }
}

/// Replaced or deleted object versions kept by an s3 tier's bucket: the seed's 30 days.
pub const DEFAULT_NONCURRENT_EXPIRY: u64 = 30 * 86_400;

/// Default verification window of a local tier: read in full every day.
pub const LOCAL_VERIFY_WINDOW: u64 = 86_400;
/// Default verification window of a remote tier: every copy read within 30 days, a thirtieth a
/// day (restic's `check --read-data-subset` idea).
pub const REMOTE_VERIFY_WINDOW: u64 = 30 * 86_400;

#[derive(Debug, Clone)]
pub enum TierKind {
    Local {
        path: PathBuf,
        /// Who may read the tier besides its owner: files get `mode` and this group.
        group: Option<String>,
        /// Mode of the tier's files (directories: the same plus search where readable):
        /// 0600 by default, 0640 with a `group`.
        mode: u32,
    },
    S3 {
        endpoint: String,
        bucket: String,
        region: String,
        prefix: String,
        access_key: Option<SecretRef>,
        secret_key: Option<SecretRef>,
        /// Path-style addressing (`endpoint/bucket/key`), what MinIO and Garage expect.
        path_style: bool,
        /// Send and validate checksums only "when_required" (non-AWS servers such as Garage
        /// reject the SDK's streaming checksums) or "when_supported" (AWS S3).
        checksums: S3Checksums,
        /// Objects at least this large are uploaded in parts of `part_size`.
        multipart_threshold: u64,
        part_size: u64,
        /// Per-request timeout: a dead server becomes an error, not a hang.
        timeout_secs: u64,
        /// https:// required off this machine; a private CA.
        transport: Transport,
        /// Server-side encryption asked for on every PUT (and as the bucket default by
        /// `tiers setup`).
        server_side_encryption: Option<ServerSideEncryption>,
    },
    Rclone {
        remote: String,
        /// The rclone binary.
        binary: PathBuf,
        /// Options of the remote rclone reads from its environment
        /// (`RCLONE_CONFIG_<REMOTE>_<KEY>`), by secret reference: a OneDrive token, a crypt
        /// password. Never in argv or a file.
        secrets: BTreeMap<String, SecretRef>,
        /// Per-operation timeout for reads.
        timeout_secs: u64,
    },
    /// A restic repository (see [`crate::restic`]) in a local directory.
    Restic {
        path: PathBuf,
        /// Unlocks the repository: a secret reference, never the password itself.
        password: SecretRef,
    },
}

/// `server_side_encryption` of an s3 tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-S3: keys the server manages (`AES256`).
    Aes256,
    /// SSE-KMS with this key id (the server's default key when `None`).
    Kms(Option<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Checksums {
    WhenRequired,
    WhenSupported,
}

impl TierKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            TierKind::Local { .. } => "local",
            TierKind::S3 { .. } => "s3",
            TierKind::Rclone { .. } => "rclone",
            TierKind::Restic { .. } => "restic",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    path: Option<PathBuf>,
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    prefix: Option<String>,
    access_key: Option<Spanned<String>>,
    secret_key: Option<Spanned<String>>,
    remote: Option<String>,
    password: Option<Spanned<String>>,
    path_style: Option<bool>,
    checksums: Option<Spanned<String>>,
    multipart_threshold: Option<Spanned<String>>,
    part_size: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rclone: Option<PathBuf>,
    group: Option<String>,
    mode: Option<Spanned<String>>,
    copy: Option<Spanned<Vec<String>>>,
    retention: Option<Spanned<RawRetention>>,
    sync: Option<Spanned<Vec<String>>>,
    verify: Option<Spanned<Vec<String>>>,
    verify_window: Option<Spanned<String>>,
    verify_budget: Option<Spanned<String>>,
    noncurrent_expiry: Option<Spanned<String>>,
    ca_file: Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
    server_side_encryption: Option<Spanned<String>>,
    sse_kms_key_id: Option<String>,
    #[serde(default)]
    secrets: BTreeMap<String, Spanned<String>>,
}

/// One `[tiers.NAME]` table, checked.
pub(super) fn parse(
    file: &ConfigFile<'_>,
    name: String,
    raw_tier: Spanned<RawTier>,
) -> Result<TierConfig> {
    let at = |span, message| file.at(span, message);
    let resolve = |p| file.resolve(p);
    let span = raw_tier.span();
    let t = raw_tier.into_inner();
    let name =
        TierName::new(&name).map_err(|e| at(span.clone(), format!("[tiers.{name}]: {e}")))?;
    let need = |v: Option<String>, key: &str| {
        v.ok_or_else(|| at(span.clone(), format!("[tiers.{name}] needs `{key}`")))
    };
    let secret = |v: Option<Spanned<String>>| -> Result<Option<SecretRef>> {
        v.map(|s| SecretRef::parse(s.get_ref()).map_err(|m| at(s.span(), m)))
            .transpose()
    };
    let size = |v: &Option<Spanned<String>>, key: &str, default: u64| -> Result<u64> {
        match v {
            Some(v) => parse_size(v.get_ref())
                .map_err(|e| at(v.span(), format!("[tiers.{name}] {key}: {e}"))),
            None => Ok(default),
        }
    };
    let transport =
        transport_of(&t.ca_file, t.allow_insecure_http, &resolve).map_err(|(sp, m)| at(sp, m))?;
    let timeout_secs = match &t.timeout {
        Some(v) => parse_age(v.get_ref())
            .map_err(|e| at(v.span(), format!("[tiers.{name}] timeout: {e}")))?,
        None => 60,
    };
    // Keys of another tier type are mistakes (a copied block, a wrong `type`): refuse them.
    let present = [
        ("path", t.path.is_some()),
        ("endpoint", t.endpoint.is_some()),
        ("bucket", t.bucket.is_some()),
        ("region", t.region.is_some()),
        ("prefix", t.prefix.is_some()),
        ("access_key", t.access_key.is_some()),
        ("secret_key", t.secret_key.is_some()),
        ("path_style", t.path_style.is_some()),
        ("checksums", t.checksums.is_some()),
        ("multipart_threshold", t.multipart_threshold.is_some()),
        ("part_size", t.part_size.is_some()),
        ("remote", t.remote.is_some()),
        ("rclone", t.rclone.is_some()),
        ("noncurrent_expiry", t.noncurrent_expiry.is_some()),
        ("group", t.group.is_some()),
        ("mode", t.mode.is_some()),
        ("ca_file", t.ca_file.is_some()),
        ("allow_insecure_http", t.allow_insecure_http.is_some()),
        ("server_side_encryption", t.server_side_encryption.is_some()),
        ("sse_kms_key_id", t.sse_kms_key_id.is_some()),
        ("secrets", !t.secrets.is_empty()),
        ("password", t.password.is_some()),
    ];
    let allowed: &[&str] = match t.kind.get_ref().as_str() {
        "local" => &["path", "group", "mode"],
        "s3" => &[
            "endpoint",
            "bucket",
            "region",
            "prefix",
            "access_key",
            "secret_key",
            "path_style",
            "checksums",
            "multipart_threshold",
            "part_size",
            "noncurrent_expiry",
            "ca_file",
            "allow_insecure_http",
            "server_side_encryption",
            "sse_kms_key_id",
        ],
        "rclone" => &["remote", "rclone", "secrets"],
        "restic" => &["path", "password"],
        // An unknown type is reported below.
        _ => &[],
    };
    if !allowed.is_empty()
        && let Some((key, _)) = present.iter().find(|(k, set)| *set && !allowed.contains(k))
    {
        return Err(at(
            span.clone(),
            format!(
                "[tiers.{name}] key `{key}` does not apply to type {:?}",
                t.kind.get_ref()
            ),
        ));
    }
    let kind = match t.kind.get_ref().as_str() {
        "local" => {
            let default = if t.group.is_some() { 0o640 } else { 0o600 };
            let mode_span = t.mode.as_ref().map_or(span.clone(), |m| m.span());
            let mode = mode(t.mode, default).map_err(|(s, e)| at(s, e))?;
            if mode & 0o7007 != 0 || mode & 0o600 != 0o600 {
                return Err(at(
                    mode_span,
                    format!(
                        "[tiers.{name}] mode {mode:04o}: backups stay readable and writable by their owner and are never readable by everyone (e.g. \"0640\")"
                    ),
                ));
            }
            TierKind::Local {
                path: resolve(
                    t.path
                        .ok_or_else(|| at(span.clone(), format!("[tiers.{name}] needs `path`")))?,
                ),
                group: t.group,
                mode,
            }
        }
        "s3" => TierKind::S3 {
            endpoint: {
                let endpoint = need(t.endpoint, "endpoint")?;
                transport
                    .check_url(&endpoint, &format!("[tiers.{name}]"), "endpoint")
                    .map_err(|m| at(span.clone(), m))?;
                endpoint
            },
            transport,
            server_side_encryption: match &t.server_side_encryption {
                None if t.sse_kms_key_id.is_some() => {
                    return Err(at(
                        span.clone(),
                        format!(
                            "[tiers.{name}] sse_kms_key_id needs server_side_encryption = \"aws:kms\""
                        ),
                    ));
                }
                None => None,
                Some(v) => match v.get_ref().as_str() {
                    "AES256" if t.sse_kms_key_id.is_none() => Some(ServerSideEncryption::Aes256),
                    "aws:kms" => Some(ServerSideEncryption::Kms(t.sse_kms_key_id.clone())),
                    other => {
                        return Err(at(
                            v.span(),
                            format!(
                                "[tiers.{name}] server_side_encryption {other:?}: use \"AES256\" or \"aws:kms\" (with sse_kms_key_id)"
                            ),
                        ));
                    }
                },
            },
            bucket: need(t.bucket, "bucket")?,
            region: t.region.unwrap_or_else(|| "us-east-1".into()),
            prefix: t.prefix.unwrap_or_default(),
            access_key: secret(t.access_key)?,
            secret_key: secret(t.secret_key)?,
            path_style: t.path_style.unwrap_or(true),
            checksums: match &t.checksums {
                None => S3Checksums::WhenRequired,
                Some(c) => match c.get_ref().as_str() {
                    "when_required" => S3Checksums::WhenRequired,
                    "when_supported" => S3Checksums::WhenSupported,
                    other => {
                        return Err(at(
                            c.span(),
                            format!(
                                "[tiers.{name}] checksums {other:?}: use \"when_required\" (MinIO, Garage) or \"when_supported\" (AWS)"
                            ),
                        ));
                    }
                },
            },
            multipart_threshold: size(&t.multipart_threshold, "multipart_threshold", 64 << 20)?,
            part_size: size(&t.part_size, "part_size", 16 << 20)?,
            timeout_secs,
        },
        "rclone" => TierKind::Rclone {
            secrets: {
                let mut secrets = BTreeMap::new();
                for (key, value) in t.secrets {
                    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(at(
                            value.span(),
                            format!(
                                "[tiers.{name}] secrets: {key:?} is not an rclone option name (letters, digits, _)"
                            ),
                        ));
                    }
                    let r = SecretRef::parse(value.get_ref()).map_err(|m| at(value.span(), m))?;
                    secrets.insert(key, r);
                }
                secrets
            },
            remote: need(t.remote, "remote")?,
            binary: t.rclone.unwrap_or_else(|| PathBuf::from("rclone")),
            timeout_secs,
        },
        "restic" => TierKind::Restic {
            path: resolve(
                t.path
                    .ok_or_else(|| at(span.clone(), format!("[tiers.{name}] needs `path`")))?,
            ),
            password: secret(t.password)?.ok_or_else(|| {
                at(
                    span.clone(),
                    format!(
                        "[tiers.{name}] needs `password`: a secret reference (\"env:VAR\", \"file:/path\", \"vault:path#key\") to the repository's password"
                    ),
                )
            })?,
        },
        other => {
            return Err(at(
                t.kind.span(),
                format!(
                    "[tiers.{name}] type {other:?} is not one of \"local\", \"s3\", \"rclone\", \"restic\""
                ),
            ));
        }
    };
    let copy = match t.copy {
        Some(c) => check_copy(c, &format!("[tiers.{name}]")).map_err(|(sp, m)| at(sp, m))?,
        None => vec!["all".into()],
    };
    let retention = match t.retention {
        Some(r) => {
            let span = r.span();
            retention(r.into_inner())
                .map_err(|m| at(span, format!("[tiers.{name}] retention: {m}")))?
        }
        None => Retention::default(),
    };
    let schedule = |v: Option<Spanned<Vec<String>>>, key: &str| -> Result<_> {
        v.map(|v| {
            for expr in v.get_ref() {
                crate::schedule::parse(expr)
                    .map_err(|m| at(v.span(), format!("[tiers.{name}] {key}: {m}")))?;
            }
            Ok(v.into_inner())
        })
        .transpose()
    };
    let age = |v: &Option<Spanned<String>>, key: &str, default: u64| -> Result<u64> {
        match v {
            Some(v) => match parse_age(v.get_ref()) {
                Ok(0) => Err(at(v.span(), format!("[tiers.{name}] {key} must not be 0"))),
                Ok(secs) => Ok(secs),
                Err(e) => Err(at(v.span(), format!("[tiers.{name}] {key}: {e}"))),
            },
            None => Ok(default),
        }
    };
    let verify_window = age(
        &t.verify_window,
        "verify_window",
        match kind {
            TierKind::Local { .. } => LOCAL_VERIFY_WINDOW,
            _ => REMOTE_VERIFY_WINDOW,
        },
    )?;
    let verify_budget = t
        .verify_budget
        .as_ref()
        .map(|b| size(&Some(b.clone()), "verify_budget", 0))
        .transpose()?;
    let sync = schedule(t.sync, "sync")?;
    let verify = schedule(t.verify, "verify")?;
    let noncurrent_expiry = age(
        &t.noncurrent_expiry,
        "noncurrent_expiry",
        DEFAULT_NONCURRENT_EXPIRY,
    )?;
    Ok(TierConfig {
        name,
        kind,
        copy,
        retention,
        sync,
        verify,
        verify_window,
        verify_budget,
        noncurrent_expiry,
    })
}
