//! The TOML configuration (keys in DESIGN.md). Unknown keys are errors that name the key and its
//! line; values are checked here, once, so the rest of the engine works with typed settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::id::{ServiceName, TierName};
use crate::secret::SecretRef;
use crate::tls::Transport;
use crate::units::{parse_age, parse_size};
use crate::{Error, Result};

/// Where `--config` / `TIERBACK_CONFIG` point when neither is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tierback/tierback.toml";

/// The commented example that `tierback init` writes: the seed's services, tiers and schedules.
pub const EXAMPLE_CONFIG: &str = include_str!("../../docs/tierback.example.toml");

use crate::artifact::format::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};

/// The loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub catalog_path: PathBuf,
    pub defaults: Defaults,
    /// In the order written: the first is where backups are written.
    pub tiers: Vec<TierConfig>,
    pub mount: MountConfig,
    pub services: BTreeMap<ServiceName, ServiceConfig>,
    pub jobs: Jobs,
    pub metrics: MetricsConfig,
}

/// When `tierback run` does the jobs that are not backups (cron expressions, UTC). The defaults
/// are the seed's: verification at 07:00, cleanup at 23:00; sync on every run (copy policies
/// decide what each tier receives).
#[derive(Debug, Clone)]
pub struct Jobs {
    /// Empty: every run.
    pub sync: Vec<String>,
    pub verify: Vec<String>,
    pub prune: Vec<String>,
    /// Every service's newest backup replayed and compared (`restore-test`).
    pub restore_test: Vec<String>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            sync: Vec::new(),
            verify: vec!["0 7 * * *".into()],
            prune: vec!["0 23 * * *".into()],
            // The seed's weekly full restore test: Sunday 14:00.
            restore_test: vec!["0 14 * * 0".into()],
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Prometheus textfile-collector file, rewritten after each `run`.
    pub textfile: Option<PathBuf>,
    /// Address for `tierback metrics --serve` (default 127.0.0.1:9188).
    pub listen: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub compression_level: i32,
    pub block_size: usize,
    /// Compression and decompression threads; default: every core.
    pub threads: usize,
}

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
        }
    }
}

/// restic-style retention; `None` means the rule is not used, `u32::MAX` means "all".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Keep everything younger than this many seconds.
    pub keep_within: Option<u64>,
    /// Pinned backups (`tierback pin`) belong on this tier even if its copy policy did not pick
    /// them: sync sends them and they stay (the seed's offsite Archive, kept forever). A pin
    /// keeps a backup on the tiers that hold it whatever this says.
    pub keep_pinned: bool,
}

impl Retention {
    /// No rule at all: everything stays.
    pub fn is_unset(&self) -> bool {
        Retention {
            keep_pinned: false,
            ..self.clone()
        } == Retention::default()
    }
}

#[derive(Debug, Clone)]
pub struct MountConfig {
    pub cache_size: u64,
    pub allow_other: bool,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub file_mode: u32,
    pub dir_mode: u32,
    pub audit_log: Option<PathBuf>,
    /// The audit log is rotated (to `NAME.1`, …) when a line would take it past this.
    pub audit_log_max_size: u64,
    /// Where `mount --daemon` writes its log (a foreground mount logs to stderr).
    pub log_file: Option<PathBuf>,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            cache_size: 256 << 20,
            allow_other: false,
            owner: None,
            group: None,
            file_mode: 0o444,
            dir_mode: 0o555,
            audit_log: None,
            audit_log_max_size: 64 << 20,
            log_file: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: ServiceName,
    pub schedule: Vec<String>,
    pub compression_level: i32,
    pub block_size: usize,
    /// This service's own retention, used on every tier instead of the tier's policy.
    pub retention: Option<Retention>,
    /// This service's retention on particular tiers (`tier_retention = { offsite = {…} }`),
    /// before `retention` and the tier's own.
    pub tier_retention: BTreeMap<String, Retention>,
    /// This service's own copy policy, used for every tier instead of the tier's `copy`.
    pub copy: Option<Vec<String>>,
    pub driver: Driver,
}

#[derive(Debug, Clone)]
pub enum Driver {
    /// stdout of `argv` is the backup.
    Command {
        argv: Vec<String>,
        artifact: String,
        extension: String,
        env: BTreeMap<String, SecretRef>,
    },
    /// A tar of `paths`.
    Files { paths: Vec<PathBuf> },
    /// `pg_dump` of each database, and `pg_dumpall --globals-only`.
    Postgres {
        host: String,
        port: u16,
        user: String,
        password: Option<SecretRef>,
        databases: Vec<String>,
        globals: bool,
        /// A physical `pg_basebackup` tar too (the starting point of point-in-time recovery).
        base_backup: bool,
    },
    /// WAL segments that `pg_receivewal` or an `archive_command` completed in `spool`.
    PostgresWal {
        spool: PathBuf,
        /// The `postgres` service whose base backups this WAL rolls forward: prune keeps the
        /// WAL from its newest base backup on, whatever `retention` says.
        base: Option<String>,
    },
    /// The RDB snapshot, through `redis-cli --rdb`, and the AOF directory when `aof_dir` is set.
    Redis {
        host: String,
        port: u16,
        password: Option<SecretRef>,
        aof_dir: Option<PathBuf>,
    },
    /// Collection snapshots (and a full one) through Qdrant's REST API.
    Qdrant {
        url: String,
        transport: Transport,
        api_key: Option<SecretRef>,
        collections: Option<Vec<String>>,
        full: bool,
    },
    /// A Raft snapshot through Vault's API.
    Vault {
        url: String,
        transport: Transport,
        token: SecretRef,
    },
    /// Every workflow through n8n's public API.
    N8n {
        url: String,
        transport: Transport,
        api_key: SecretRef,
    },
    /// Each bucket of an S3-compatible server, mirrored into a tar.
    Minio {
        endpoint: String,
        transport: Transport,
        region: String,
        access_key: SecretRef,
        secret_key: SecretRef,
        buckets: Option<Vec<String>>,
        /// The buckets the config's s3 tiers write to (never taken when listing all).
        exclude: Vec<String>,
    },
}

impl Driver {
    pub fn name(&self) -> &'static str {
        match self {
            Driver::Command { .. } => "command",
            Driver::Files { .. } => "files",
            Driver::Postgres { .. } => "postgres",
            Driver::PostgresWal { .. } => "postgres_wal",
            Driver::Redis { .. } => "redis",
            Driver::Qdrant { .. } => "qdrant",
            Driver::Vault { .. } => "vault",
            Driver::N8n { .. } => "n8n",
            Driver::Minio { .. } => "minio",
        }
    }
}

/// Every driver, with the service keys that only it takes.
const DRIVER_KEYS: [(&str, &[&str]); 9] = [
    ("command", &["command", "artifact", "extension", "env"]),
    ("files", &["paths"]),
    (
        "postgres",
        &[
            "host",
            "port",
            "user",
            "password",
            "databases",
            "globals",
            "base_backup",
        ],
    ),
    ("postgres_wal", &["spool", "base"]),
    ("redis", &["host", "port", "password", "aof_dir"]),
    (
        "qdrant",
        &[
            "url",
            "api_key",
            "collections",
            "full",
            "ca_file",
            "allow_insecure_http",
        ],
    ),
    ("vault", &["url", "token", "ca_file", "allow_insecure_http"]),
    ("n8n", &["url", "api_key", "ca_file", "allow_insecure_http"]),
    (
        "minio",
        &[
            "endpoint",
            "region",
            "access_key",
            "secret_key",
            "buckets",
            "ca_file",
            "allow_insecure_http",
        ],
    ),
];

/// A `copy` policy: which backups a tier receives.
fn check_copy(
    list: Spanned<Vec<String>>,
    owner: &str,
) -> std::result::Result<Vec<String>, (std::ops::Range<usize>, String)> {
    for v in list.get_ref() {
        if !matches!(
            v.as_str(),
            "all" | "hourly" | "daily" | "weekly" | "monthly"
        ) {
            return Err((
                list.span(),
                format!("{owner} copy: {v:?} is not one of all, hourly, daily, weekly, monthly"),
            ));
        }
    }
    Ok(list.into_inner())
}

/// A TCP port, or `default` when absent.
fn check_port(
    port: Option<Spanned<i64>>,
    default: u16,
    service: &str,
) -> std::result::Result<u16, (std::ops::Range<usize>, String)> {
    match port {
        None => Ok(default),
        Some(p) => u16::try_from(*p.get_ref())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                (
                    p.span(),
                    format!(
                        "[services.{service}] port {} is not a TCP port",
                        p.get_ref()
                    ),
                )
            }),
    }
}

/// An optional list of names (collections, buckets) that each name a file: absent means "all",
/// present must hold at least one.
fn check_names(
    list: Option<Spanned<Vec<String>>>,
    key: &str,
    item: &str,
    service: &str,
) -> std::result::Result<Option<Vec<String>>, (std::ops::Range<usize>, String)> {
    let Some(list) = list else {
        return Ok(None);
    };
    if list.get_ref().is_empty() {
        return Err((
            list.span(),
            format!("[services.{service}] {key} is empty (leave it out for every {item})"),
        ));
    }
    for n in list.get_ref() {
        crate::id::validate_file_part(n, &format!("{item} name"))
            .map_err(|e| (list.span(), format!("[services.{service}] {e}")))?;
    }
    Ok(Some(list.into_inner()))
}

/// An http(s) base URL, or `default` when absent.
fn check_url(
    url: Option<Spanned<String>>,
    default: &str,
    service: &str,
    transport: &Transport,
) -> std::result::Result<String, (std::ops::Range<usize>, String)> {
    let Some(u) = url else {
        return Ok(default.to_owned());
    };
    let text = u.get_ref();
    let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        return Err((
            u.span(),
            format!("[services.{service}] url {text:?} is not an http:// or https:// URL"),
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    // Credentials belong in their own secret keys: a URL is printed in errors and logs.
    if authority.contains('@') || rest.contains('?') || rest.contains('#') || authority.is_empty() {
        return Err((
            u.span(),
            format!(
                "[services.{service}] url must be scheme://host[:port][/path], without user, query or fragment (credentials go in their own key)"
            ),
        ));
    }
    transport
        .check_url(text, &format!("[services.{service}]"), "url")
        .map_err(|m| (u.span(), m))?;
    Ok(u.into_inner())
}

/// An endpoint's `ca_file` (resolved, and checked to hold a PEM certificate now so a typo is
/// a config error with its line) and `allow_insecure_http`.
fn transport_of(
    ca_file: &Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> std::result::Result<Transport, (std::ops::Range<usize>, String)> {
    let ca_file = match ca_file {
        Some(p) => {
            let path = resolve(p.get_ref().clone());
            crate::tls::read_ca(&path).map_err(|e| (p.span(), e.to_string()))?;
            Some(path)
        }
        None => None,
    };
    Ok(Transport {
        ca_file,
        allow_insecure_http: allow_insecure_http.unwrap_or(false),
    })
}

/// An optional secret reference (`env:`, `file:`, `vault:`).
fn secret_opt(
    value: Option<Spanned<String>>,
) -> std::result::Result<Option<SecretRef>, (std::ops::Range<usize>, String)> {
    value
        .map(|v| SecretRef::parse(v.get_ref()).map_err(|m| (v.span(), m)))
        .transpose()
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    catalog: Option<RawCatalog>,
    defaults: Option<RawDefaults>,
    #[serde(default)]
    tiers: IndexMap<String, Spanned<RawTier>>,
    mount: Option<RawMount>,
    #[serde(default)]
    services: IndexMap<String, Spanned<RawService>>,
    jobs: Option<RawJobs>,
    metrics: Option<RawMetrics>,
    vault: Option<Spanned<RawVault>>,
}

/// `[vault]`: how `vault:` secret references reach Vault (address and token stay the Vault
/// CLI's `VAULT_ADDR` and `VAULT_TOKEN`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    ca_file: Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    sync: Option<Spanned<Vec<String>>>,
    verify: Option<Spanned<Vec<String>>>,
    prune: Option<Spanned<Vec<String>>>,
    restore_test: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    textfile: Option<PathBuf>,
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    compression_level: Option<Spanned<i64>>,
    block_size: Option<Spanned<String>>,
    threads: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<Count>,
    keep_hourly: Option<Count>,
    keep_daily: Option<Count>,
    keep_weekly: Option<Count>,
    keep_monthly: Option<Count>,
    keep_yearly: Option<Count>,
    keep_within: Option<String>,
    keep_pinned: Option<bool>,
}

/// A retention count: a number or the string "all" (anything else is reported by `retention`
/// with the key's name, not serde's "did not match any variant").
#[derive(Deserialize)]
#[serde(untagged)]
enum Count {
    N(i64),
    Word(String),
    Other(toml::Value),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    cache_size: Option<Spanned<String>>,
    allow_other: Option<bool>,
    owner: Option<String>,
    group: Option<String>,
    file_mode: Option<Spanned<String>>,
    dir_mode: Option<Spanned<String>>,
    audit_log: Option<PathBuf>,
    audit_log_max_size: Option<Spanned<String>>,
    log_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    driver: Spanned<String>,
    schedule: Option<Spanned<Vec<String>>>,
    compression_level: Option<Spanned<i64>>,
    block_size: Option<Spanned<String>>,
    retention: Option<Spanned<RawRetention>>,
    #[serde(default)]
    tier_retention: IndexMap<String, Spanned<RawRetention>>,
    copy: Option<Spanned<Vec<String>>>,
    // command
    command: Option<Spanned<Vec<String>>>,
    artifact: Option<Spanned<String>>,
    extension: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    // files
    paths: Option<Spanned<Vec<PathBuf>>>,
    // postgres, redis
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    databases: Option<Spanned<Vec<String>>>,
    globals: Option<bool>,
    base_backup: Option<bool>,
    aof_dir: Option<Spanned<PathBuf>>,
    // postgres_wal
    spool: Option<Spanned<PathBuf>>,
    base: Option<Spanned<String>>,
    // qdrant, vault, n8n
    url: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    collections: Option<Spanned<Vec<String>>>,
    full: Option<bool>,
    // minio
    endpoint: Option<Spanned<String>>,
    region: Option<String>,
    access_key: Option<Spanned<String>>,
    secret_key: Option<Spanned<String>>,
    buckets: Option<Spanned<Vec<String>>>,
    // qdrant, vault, n8n, minio
    ca_file: Option<Spanned<PathBuf>>,
    allow_insecure_http: Option<bool>,
}

// ---- loading -------------------------------------------------------------------------------

impl Config {
    /// Reads and validates `path`. Errors name the file, the key and its line.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` is only used in messages and for relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let err = |message: String| Error::Config {
            path: path.to_owned(),
            message,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_owned()))?;
        let at = |span: std::ops::Range<usize>, message: String| {
            err(format!("line {}: {message}", line_of(text, span.start)))
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };

        let catalog_path = resolve(
            raw.catalog
                .and_then(|c| c.path)
                .unwrap_or_else(|| PathBuf::from("/var/lib/tierback/catalog.db")),
        );

        let rd = raw.defaults.unwrap_or(RawDefaults {
            compression_level: None,
            block_size: None,
            threads: None,
        });
        let compression_level = match &rd.compression_level {
            Some(l) => check_level(l).map_err(|m| at(l.span(), m))?,
            None => 9,
        };
        let block_size = match &rd.block_size {
            Some(b) => check_block_size(b).map_err(|m| at(b.span(), m))?,
            None => 1 << 20,
        };
        let threads = match &rd.threads {
            Some(t) if (1..=256).contains(t.get_ref()) => *t.get_ref() as usize,
            Some(t) => {
                return Err(at(
                    t.span(),
                    "defaults.threads must be between 1 and 256".into(),
                ));
            }
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let defaults = Defaults {
            compression_level,
            block_size,
            threads,
        };

        let mut tiers = Vec::new();
        for (name, raw_tier) in raw.tiers {
            let span = raw_tier.span();
            let t = raw_tier.into_inner();
            let name = TierName::new(&name)
                .map_err(|e| at(span.clone(), format!("[tiers.{name}]: {e}")))?;
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
            let transport = transport_of(&t.ca_file, t.allow_insecure_http, &resolve)
                .map_err(|(sp, m)| at(sp, m))?;
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
                        path: resolve(t.path.ok_or_else(|| {
                            at(span.clone(), format!("[tiers.{name}] needs `path`"))
                        })?),
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
                            "AES256" if t.sse_kms_key_id.is_none() => {
                                Some(ServerSideEncryption::Aes256)
                            }
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
                    multipart_threshold: size(
                        &t.multipart_threshold,
                        "multipart_threshold",
                        64 << 20,
                    )?,
                    part_size: size(&t.part_size, "part_size", 16 << 20)?,
                    timeout_secs,
                },
                "rclone" => TierKind::Rclone {
                    secrets: {
                        let mut secrets = BTreeMap::new();
                        for (key, value) in t.secrets {
                            if key.is_empty()
                                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            {
                                return Err(at(
                                    value.span(),
                                    format!(
                                        "[tiers.{name}] secrets: {key:?} is not an rclone option name (letters, digits, _)"
                                    ),
                                ));
                            }
                            let r = SecretRef::parse(value.get_ref())
                                .map_err(|m| at(value.span(), m))?;
                            secrets.insert(key, r);
                        }
                        secrets
                    },
                    remote: need(t.remote, "remote")?,
                    binary: t.rclone.unwrap_or_else(|| PathBuf::from("rclone")),
                    timeout_secs,
                },
                other => {
                    return Err(at(
                        t.kind.span(),
                        format!(
                            "[tiers.{name}] type {other:?} is not one of \"local\", \"s3\", \"rclone\""
                        ),
                    ));
                }
            };
            let copy = match t.copy {
                Some(c) => {
                    check_copy(c, &format!("[tiers.{name}]")).map_err(|(sp, m)| at(sp, m))?
                }
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
            tiers.push(TierConfig {
                name,
                kind,
                copy,
                retention,
                sync,
                verify,
                verify_window,
                verify_budget,
                noncurrent_expiry,
            });
        }
        if let Some(first) = tiers.first()
            && !matches!(first.kind, TierKind::Local { .. })
        {
            return Err(err(format!(
                "the first tier listed ([tiers.{}]) is where backups are written and must be type = \"local\"",
                first.name
            )));
        }

        let mount = match raw.mount {
            None => MountConfig::default(),
            Some(m) => {
                let d = MountConfig::default();
                MountConfig {
                    cache_size: match m.cache_size {
                        Some(s) => parse_size(s.get_ref())
                            .map_err(|e| at(s.span(), format!("mount.cache_size: {e}")))?,
                        None => d.cache_size,
                    },
                    allow_other: m.allow_other.unwrap_or(false),
                    owner: m.owner,
                    group: m.group,
                    file_mode: mode(m.file_mode, d.file_mode).map_err(|(s, e)| at(s, e))?,
                    dir_mode: mode(m.dir_mode, d.dir_mode).map_err(|(s, e)| at(s, e))?,
                    audit_log: m.audit_log.map(&resolve),
                    audit_log_max_size: match m.audit_log_max_size {
                        Some(s) => parse_size(s.get_ref())
                            .and_then(|n| match n {
                                0 => Err("must be more than 0".to_owned()),
                                n => Ok(n),
                            })
                            .map_err(|e| at(s.span(), format!("mount.audit_log_max_size: {e}")))?,
                        None => d.audit_log_max_size,
                    },
                    log_file: m.log_file.map(&resolve),
                }
            }
        };

        let mut services = BTreeMap::new();
        let mut wal_bases = Vec::new();
        for (name, raw_service) in raw.services {
            let span = raw_service.span();
            let s = raw_service.into_inner();
            let sname = ServiceName::new(&name)
                .map_err(|e| at(span.clone(), format!("[services.{name}]: {e}")))?;
            let compression_level = match &s.compression_level {
                Some(l) => check_level(l).map_err(|m| at(l.span(), m))?,
                None => defaults.compression_level,
            };
            let block_size = match &s.block_size {
                Some(b) => check_block_size(b).map_err(|m| at(b.span(), m))?,
                None => defaults.block_size,
            };
            let mut tier_retention = BTreeMap::new();
            for (tier, r) in s.tier_retention {
                let sp = r.span();
                if !tiers.iter().any(|t: &TierConfig| t.name.as_str() == tier) {
                    return Err(at(
                        sp,
                        format!("[services.{name}] tier_retention: no tier named {tier:?}"),
                    ));
                }
                let r = retention(r.into_inner())
                    .map_err(|m| at(sp, format!("[services.{name}] tier_retention.{tier}: {m}")))?;
                tier_retention.insert(tier, r);
            }
            // Keys that belong to one driver are errors under another, named with their line.
            // (An unknown driver is reported below, by name.)
            let driver_keys = DRIVER_KEYS
                .iter()
                .find(|(d, _)| d == s.driver.get_ref())
                .map_or(&[][..], |(_, keys)| *keys);
            let known = DRIVER_KEYS.iter().any(|(d, _)| d == s.driver.get_ref());
            let set_keys = [
                ("command", s.command.is_some()),
                ("artifact", s.artifact.is_some()),
                ("extension", s.extension.is_some()),
                ("env", !s.env.is_empty()),
                ("paths", s.paths.is_some()),
                ("host", s.host.is_some()),
                ("port", s.port.is_some()),
                ("user", s.user.is_some()),
                ("password", s.password.is_some()),
                ("databases", s.databases.is_some()),
                ("globals", s.globals.is_some()),
                ("base_backup", s.base_backup.is_some()),
                ("spool", s.spool.is_some()),
                ("base", s.base.is_some()),
                ("aof_dir", s.aof_dir.is_some()),
                ("url", s.url.is_some()),
                ("api_key", s.api_key.is_some()),
                ("token", s.token.is_some()),
                ("collections", s.collections.is_some()),
                ("full", s.full.is_some()),
                ("endpoint", s.endpoint.is_some()),
                ("region", s.region.is_some()),
                ("access_key", s.access_key.is_some()),
                ("secret_key", s.secret_key.is_some()),
                ("buckets", s.buckets.is_some()),
                ("ca_file", s.ca_file.is_some()),
                ("allow_insecure_http", s.allow_insecure_http.is_some()),
            ];
            let misplaced = set_keys
                .into_iter()
                .find(|(k, set)| known && *set && !driver_keys.contains(k))
                .map(|(k, _)| k);
            if let Some(key) = misplaced {
                return Err(at(
                    span.clone(),
                    format!(
                        "[services.{name}] key `{key}` does not apply to driver {:?}",
                        s.driver.get_ref()
                    ),
                ));
            }
            let transport = transport_of(&s.ca_file, s.allow_insecure_http, &resolve)
                .map_err(|(sp, m)| at(sp, m))?;
            let driver = match s.driver.get_ref().as_str() {
                "command" => {
                    let argv = s.command.ok_or_else(|| {
                        at(
                            span.clone(),
                            format!("[services.{name}] driver \"command\" needs `command`"),
                        )
                    })?;
                    if argv.get_ref().is_empty() {
                        return Err(at(
                            argv.span(),
                            format!("[services.{name}] command is empty"),
                        ));
                    }
                    let part =
                        |v: Option<Spanned<String>>, default: &str, what: &str| -> Result<String> {
                            match v {
                                Some(v) => {
                                    crate::id::validate_file_part(v.get_ref(), what)
                                        .map_err(|e| at(v.span(), e.to_string()))?;
                                    Ok(v.into_inner())
                                }
                                None => Ok(default.to_owned()),
                            }
                        };
                    let mut env = BTreeMap::new();
                    for (k, v) in s.env {
                        env.insert(
                            k,
                            SecretRef::parse(v.get_ref()).map_err(|m| at(v.span(), m))?,
                        );
                    }
                    Driver::Command {
                        argv: argv.into_inner(),
                        artifact: part(s.artifact, &name, "artifact")?,
                        extension: part(s.extension, "bin", "extension")?,
                        env,
                    }
                }
                "files" => {
                    let paths = s.paths.ok_or_else(|| {
                        at(
                            span.clone(),
                            format!("[services.{name}] driver \"files\" needs `paths`"),
                        )
                    })?;
                    if paths.get_ref().is_empty() {
                        return Err(at(
                            paths.span(),
                            format!("[services.{name}] paths is empty"),
                        ));
                    }
                    Driver::Files {
                        paths: paths.into_inner().into_iter().map(&resolve).collect(),
                    }
                }
                "postgres" => {
                    let base_backup = s.base_backup.unwrap_or(false);
                    // A base backup alone is a whole cluster: databases are optional then.
                    let databases = match s.databases {
                        Some(d) => d,
                        None if base_backup => Spanned::new(span.clone(), Vec::new()),
                        None => {
                            return Err(at(
                                span.clone(),
                                format!(
                                    "[services.{name}] driver \"postgres\" needs `databases` (or base_backup = true)"
                                ),
                            ));
                        }
                    };
                    let globals = s.globals.unwrap_or(!databases.get_ref().is_empty());
                    if databases.get_ref().is_empty() && !base_backup {
                        return Err(at(
                            databases.span(),
                            format!("[services.{name}] databases is empty"),
                        ));
                    }
                    for db in databases.get_ref() {
                        crate::id::validate_file_part(db, "database name")
                            .map_err(|e| at(databases.span(), format!("[services.{name}] {e}")))?;
                        for (taken, stem, key) in [
                            (globals, crate::source::postgres::GLOBALS, "globals"),
                            (base_backup, crate::source::postgres::BASE, "base_backup"),
                        ] {
                            if taken && db == stem {
                                return Err(at(
                                    databases.span(),
                                    format!(
                                        "[services.{name}] a database named {stem:?} would clash with the {stem} artifact; set {key} = false"
                                    ),
                                ));
                            }
                        }
                    }
                    Driver::Postgres {
                        host: s
                            .host
                            .map_or_else(|| "127.0.0.1".into(), Spanned::into_inner),
                        port: check_port(s.port, 5432, &name).map_err(|(sp, m)| at(sp, m))?,
                        user: s
                            .user
                            .map_or_else(|| "postgres".into(), Spanned::into_inner),
                        password: secret_opt(s.password).map_err(|(sp, m)| at(sp, m))?,
                        databases: databases.into_inner(),
                        globals,
                        base_backup,
                    }
                }
                "postgres_wal" => {
                    if let Some(sch) = &s.schedule
                        && sch.get_ref().is_empty()
                    {
                        return Err(at(
                            sch.span(),
                            format!(
                                "[services.{name}] schedule is empty: WAL left in the spool is not archived"
                            ),
                        ));
                    }
                    let spool = s.spool.ok_or_else(|| {
                        at(
                            span.clone(),
                            format!("[services.{name}] driver \"postgres_wal\" needs `spool`"),
                        )
                    })?;
                    if let Some(b) = &s.base {
                        wal_bases.push((name.clone(), b.get_ref().clone(), b.span()));
                    }
                    Driver::PostgresWal {
                        spool: resolve(spool.into_inner()),
                        base: s.base.map(Spanned::into_inner),
                    }
                }
                "redis" => Driver::Redis {
                    host: s
                        .host
                        .map_or_else(|| "127.0.0.1".into(), Spanned::into_inner),
                    port: check_port(s.port, 6379, &name).map_err(|(sp, m)| at(sp, m))?,
                    password: secret_opt(s.password).map_err(|(sp, m)| at(sp, m))?,
                    aof_dir: s.aof_dir.map(|d| resolve(d.into_inner())),
                },
                "qdrant" => {
                    let collections =
                        check_names(s.collections, "collections", "collection", &name)
                            .map_err(|(sp, m)| at(sp, m))?;
                    Driver::Qdrant {
                        url: check_url(s.url, "http://127.0.0.1:6333", &name, &transport)
                            .map_err(|(sp, m)| at(sp, m))?,
                        transport,
                        api_key: secret_opt(s.api_key).map_err(|(sp, m)| at(sp, m))?,
                        collections,
                        full: s.full.unwrap_or(true),
                    }
                }
                "vault" => Driver::Vault {
                    url: check_url(s.url, "http://127.0.0.1:8200", &name, &transport)
                        .map_err(|(sp, m)| at(sp, m))?,
                    transport,
                    token: secret_opt(s.token)
                        .map_err(|(sp, m)| at(sp, m))?
                        .ok_or_else(|| {
                            at(
                                span.clone(),
                                format!("[services.{name}] driver \"vault\" needs `token`"),
                            )
                        })?,
                },
                "n8n" => Driver::N8n {
                    url: check_url(s.url, "http://127.0.0.1:5678", &name, &transport)
                        .map_err(|(sp, m)| at(sp, m))?,
                    transport,
                    api_key: secret_opt(s.api_key)
                        .map_err(|(sp, m)| at(sp, m))?
                        .ok_or_else(|| {
                            at(
                                span.clone(),
                                format!("[services.{name}] driver \"n8n\" needs `api_key`"),
                            )
                        })?,
                },
                "minio" => {
                    let need = |v: Option<Spanned<String>>, key: &str| {
                        secret_opt(v).map_err(|(sp, m)| at(sp, m))?.ok_or_else(|| {
                            at(
                                span.clone(),
                                format!("[services.{name}] driver \"minio\" needs `{key}`"),
                            )
                        })
                    };
                    let buckets = check_names(s.buckets, "buckets", "bucket", &name)
                        .map_err(|(sp, m)| at(sp, m))?;
                    let endpoint =
                        check_url(s.endpoint, "http://127.0.0.1:9000", &name, &transport)
                            .map_err(|(sp, m)| at(sp, m))?;
                    let same = |e: &str| e.trim_end_matches('/') == endpoint.trim_end_matches('/');
                    Driver::Minio {
                        region: s.region.unwrap_or_else(|| "us-east-1".into()),
                        access_key: need(s.access_key, "access_key")?,
                        secret_key: need(s.secret_key, "secret_key")?,
                        buckets,
                        // The buckets this config's s3 tiers write to on the same server.
                        exclude: tiers
                            .iter()
                            .filter_map(|t| match &t.kind {
                                TierKind::S3 {
                                    bucket, endpoint, ..
                                } if same(endpoint) => Some(bucket.clone()),
                                _ => None,
                            })
                            .collect(),
                        endpoint,
                        transport,
                    }
                }
                other => {
                    return Err(at(
                        s.driver.span(),
                        format!(
                            "[services.{name}] driver {other:?} is not known (known: {})",
                            DRIVER_KEYS.map(|(d, _)| d).join(", ")
                        ),
                    ));
                }
            };
            services.insert(
                sname.clone(),
                ServiceConfig {
                    name: sname,
                    schedule: match s.schedule {
                        Some(sch) => {
                            for expr in sch.get_ref() {
                                crate::schedule::parse(expr).map_err(|m| {
                                    at(sch.span(), format!("[services.{name}] schedule: {m}"))
                                })?;
                            }
                            sch.into_inner()
                        }
                        None => Vec::new(),
                    },
                    compression_level,
                    block_size,
                    retention: match s.retention {
                        Some(r) => {
                            let sp = r.span();
                            Some(
                                retention(r.into_inner()).map_err(|m| {
                                    at(sp, format!("[services.{name}] retention: {m}"))
                                })?,
                            )
                        }
                        // The seed keeps WAL for 24 hours.
                        None if matches!(driver, Driver::PostgresWal { .. }) => Some(Retention {
                            keep_within: Some(24 * 3600),
                            ..Retention::default()
                        }),
                        None => None,
                    },
                    tier_retention,
                    copy: s
                        .copy
                        .map(|c| check_copy(c, &format!("[services.{name}]")))
                        .transpose()
                        .map_err(|(sp, m)| at(sp, m))?,
                    driver,
                },
            );
        }

        // A WAL service's `base` must name a service that takes base backups.
        for (name, base, span) in wal_bases {
            let takes_base = services
                .iter()
                .any(|(n, s): (&ServiceName, &ServiceConfig)| {
                    n.as_str() == base
                        && matches!(
                            s.driver,
                            Driver::Postgres {
                                base_backup: true,
                                ..
                            }
                        )
                });
            if !takes_base {
                return Err(at(
                    span,
                    format!(
                        "[services.{name}] base = {base:?} is not a postgres service with base_backup = true"
                    ),
                ));
            }
        }

        let mut jobs = Jobs::default();
        if let Some(j) = raw.jobs {
            for (field, value, name) in [
                (&mut jobs.sync, j.sync, "sync"),
                (&mut jobs.verify, j.verify, "verify"),
                (&mut jobs.prune, j.prune, "prune"),
                (&mut jobs.restore_test, j.restore_test, "restore_test"),
            ] {
                if let Some(v) = value {
                    for expr in v.get_ref() {
                        crate::schedule::parse(expr)
                            .map_err(|m| at(v.span(), format!("jobs.{name}: {m}")))?;
                    }
                    *field = v.into_inner();
                }
            }
        }
        if let Some(v) = raw.vault {
            let v = v.into_inner();
            crate::vault::set_transport(
                transport_of(&v.ca_file, v.allow_insecure_http, &resolve)
                    .map_err(|(sp, m)| at(sp, m))?,
            );
        }
        let metrics = raw
            .metrics
            .map(|m| MetricsConfig {
                textfile: m.textfile.map(&resolve),
                listen: m.listen,
            })
            .unwrap_or_default();

        Ok(Config {
            path: path.to_owned(),
            catalog_path,
            defaults,
            tiers,
            mount,
            services,
            jobs,
            metrics,
        })
    }

    /// The tier backups are written to.
    pub fn primary_tier(&self) -> Result<&TierConfig> {
        self.tiers.first().ok_or_else(|| Error::Config {
            path: self.path.clone(),
            message: "no [tiers.*] configured: add a local tier (see `tierback init`)".into(),
        })
    }

    pub fn tier(&self, name: &str) -> Result<&TierConfig> {
        self.tiers
            .iter()
            .find(|t| t.name.as_str() == name)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no tier named {name:?} in {} (tiers: {})",
                    self.path.display(),
                    self.tiers
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The retention for `service`'s backups on `tier`: the service's own for that tier, the
    /// service's own for every tier, or the tier's.
    pub fn retention_for<'a>(&'a self, service: &str, tier: &'a TierConfig) -> &'a Retention {
        let own = self.service(service).ok();
        own.and_then(|s| s.tier_retention.get(tier.name.as_str()))
            .or_else(|| own.and_then(|s| s.retention.as_ref()))
            .unwrap_or(&tier.retention)
    }

    /// Which of `service`'s backups `tier` receives: the service's own `copy` or the tier's.
    pub fn copy_for<'a>(&'a self, service: &str, tier: &'a TierConfig) -> &'a [String] {
        self.service(service)
            .ok()
            .and_then(|s| s.copy.as_deref())
            .unwrap_or(&tier.copy)
    }

    pub fn service(&self, name: &str) -> Result<&ServiceConfig> {
        self.services
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no service named {name:?} in {} (services: {})",
                    self.path.display(),
                    self.services
                        .keys()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

fn check_level(l: &Spanned<i64>) -> Result<i32, String> {
    match *l.get_ref() {
        v @ 1..=12 => Ok(v as i32),
        v => Err(format!(
            "compression_level {v} is out of range 1..=12 (gzip levels 1-9; 10-12 are slower, smaller)"
        )),
    }
}

fn check_block_size(b: &Spanned<String>) -> Result<usize, String> {
    let v = parse_size(b.get_ref()).map_err(|e| format!("block_size: {e}"))?;
    if !(MIN_BLOCK_SIZE as u64..=MAX_BLOCK_SIZE as u64).contains(&v) {
        return Err(format!(
            "block_size {} must be between 4KiB and 64MiB",
            b.get_ref()
        ));
    }
    Ok(v as usize)
}

fn mode(v: Option<Spanned<String>>, default: u32) -> Result<u32, (std::ops::Range<usize>, String)> {
    match v {
        None => Ok(default),
        Some(s) => match u32::from_str_radix(s.get_ref().trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 => Ok(m),
            _ => Err((
                s.span(),
                format!(
                    "mode {:?} is not an octal permission like \"0440\"",
                    s.get_ref()
                ),
            )),
        },
    }
}

fn retention(r: RawRetention) -> Result<Retention, String> {
    fn count(c: Option<Count>, key: &str) -> Result<Option<u32>, String> {
        match c {
            None => Ok(None),
            Some(Count::N(n)) => u32::try_from(n).map(Some).map_err(|_| {
                format!(
                    "{key} = {n}: use a number from 0 to {} or \"all\"",
                    u32::MAX - 1
                )
            }),
            Some(Count::Word(w)) if w == "all" => Ok(Some(u32::MAX)),
            Some(Count::Word(w)) => Err(format!("{key} = {w:?}: use a number or \"all\"")),
            Some(Count::Other(v)) => Err(format!(
                "{key} = {v}: use a number or \"all\", not a {}",
                v.type_str()
            )),
        }
    }
    Ok(Retention {
        keep_last: count(r.keep_last, "keep_last")?,
        keep_hourly: count(r.keep_hourly, "keep_hourly")?,
        keep_daily: count(r.keep_daily, "keep_daily")?,
        keep_weekly: count(r.keep_weekly, "keep_weekly")?,
        keep_monthly: count(r.keep_monthly, "keep_monthly")?,
        keep_yearly: count(r.keep_yearly, "keep_yearly")?,
        keep_within: r
            .keep_within
            .map(|w| parse_age(&w).map_err(|e| format!("keep_within: {e}")))
            .transpose()?,
        keep_pinned: r.keep_pinned.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/tierback/test.toml"))
    }

    const MINIMAL: &str = r#"
[catalog]
path = "/tmp/c.db"

[tiers.local]
type = "local"
path = "/tmp/local"
retention = { keep_hourly = 168, keep_daily = 30, keep_weekly = 12 }

[services.custom]
driver = "command"
command = ["sh", "-c", "echo hi"]
extension = "txt"
"#;

    #[test]
    fn minimal_config_loads() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.tiers[0].name.as_str(), "local");
        assert_eq!(c.tiers[0].retention.keep_hourly, Some(168));
        let s = c.service("custom").unwrap();
        assert_eq!(s.block_size, 1 << 20);
        assert_eq!(s.compression_level, 9);
        match &s.driver {
            Driver::Command {
                artifact,
                extension,
                ..
            } => {
                assert_eq!(artifact, "custom");
                assert_eq!(extension, "txt");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = MINIMAL.replace(
            "extension = \"txt\"",
            "extension = \"txt\"\ncolour = \"blue\"",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        assert!(e.contains("line 14"), "{e}");
        assert!(e.contains("/etc/tierback/test.toml"), "{e}");
    }

    #[test]
    fn bad_value_names_line() {
        let text = MINIMAL.replace("driver = \"command\"", "driver = \"comand\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("line 11") && e.contains("comand"), "{e}");
        let text = format!("[defaults]\nblock_size = \"1 parsec\"\n{MINIMAL}");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("block_size"), "{e}");
    }

    #[test]
    fn tier_order_is_kept_and_first_must_be_local() {
        let text = MINIMAL.replace(
            "[services.custom]",
            "[tiers.offsite]\ntype = \"rclone\"\nremote = \"x:y\"\ncopy = [\"daily\"]\n\n[services.custom]",
        );
        let c = parse(&text).unwrap();
        let names: Vec<_> = c.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["local", "offsite"]);
        let text = "[tiers.offsite]\ntype = \"rclone\"\nremote = \"x:y\"\n";
        assert!(
            parse(text)
                .unwrap_err()
                .to_string()
                .contains("must be type = \"local\"")
        );
    }

    #[test]
    fn keys_of_another_type_are_refused() {
        let text = MINIMAL.replace(
            "path = \"/tmp/local\"",
            "path = \"/tmp/local\"\nendpoint = \"http://x\"",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("`endpoint` does not apply to type \"local\"") && e.contains("line 5"),
            "{e}"
        );
        let text = MINIMAL.replace(
            "extension = \"txt\"",
            "extension = \"txt\"\npaths = [\"/etc\"]",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("`paths` does not apply to driver \"command\""),
            "{e}"
        );
    }

    #[test]
    fn point_in_time_recovery_services_and_a_service_retention() {
        let text = format!(
            "{MINIMAL}\n[services.pg-base]\ndriver = \"postgres\"\nbase_backup = true\n\
             schedule = [\"0 2 * * *\"]\n\n[services.pg-wal]\ndriver = \"postgres_wal\"\n\
             spool = \"wal-spool\"\nbase = \"pg-base\"\nschedule = [\"*/5 * * * *\"]\n"
        );
        let c = parse(&text).unwrap();
        match &c.service("pg-base").unwrap().driver {
            Driver::Postgres {
                databases,
                globals,
                base_backup,
                ..
            } => assert!(databases.is_empty() && !*globals && *base_backup),
            other => panic!("{other:?}"),
        }
        let wal = c.service("pg-wal").unwrap();
        match &wal.driver {
            Driver::PostgresWal { spool, base } => {
                assert_eq!(spool, Path::new("/etc/tierback/wal-spool"));
                assert_eq!(base.as_deref(), Some("pg-base"));
            }
            other => panic!("{other:?}"),
        }
        // The seed's "WAL: 24 hours" unless the service says otherwise.
        assert_eq!(wal.retention.as_ref().unwrap().keep_within, Some(86_400));
        assert!(c.service("pg-base").unwrap().retention.is_none());
        assert!(wal.copy.is_none());
        let own = parse(&text.replace(
            "spool = \"wal-spool\"",
            "spool = \"wal-spool\"\nretention = { keep_within = \"48h\" }\ncopy = [\"all\"]",
        ))
        .unwrap();
        assert_eq!(
            own.service("pg-wal").unwrap().copy.as_deref(),
            Some(&["all".to_owned()][..])
        );
        assert_eq!(
            own.service("pg-wal")
                .unwrap()
                .retention
                .as_ref()
                .unwrap()
                .keep_within,
            Some(2 * 86_400)
        );
        for (bad, expect, says) in [
            ("spool = \"wal-spool\"\n", "", "needs `spool`"),
            ("base_backup = true\n", "", "needs `databases`"),
            (
                "base_backup = true\n",
                "base_backup = true\ndatabases = [\"base\"]\n",
                "clash with the base artifact",
            ),
            (
                "spool = \"wal-spool\"\n",
                "spool = \"w\"\nbase_backup = true\n",
                "does not apply",
            ),
            (
                "spool = \"wal-spool\"\n",
                "spool = \"w\"\nretention = { keep_daily = \"some\" }\n",
                "retention",
            ),
            (
                "schedule = [\"*/5 * * * *\"]",
                "schedule = []",
                "schedule is empty",
            ),
            (
                "spool = \"wal-spool\"\n",
                "spool = \"w\"\ncopy = [\"sometimes\"]\n",
                "[services.pg-wal] copy: \"sometimes\"",
            ),
            (
                "base = \"pg-base\"",
                "base = \"pg-wal\"",
                "base = \"pg-wal\" is not a postgres service with base_backup = true",
            ),
            (
                "base_backup = true\n",
                "base_backup = false\ndatabases = [\"d\"]\n",
                "is not a postgres service with base_backup = true",
            ),
        ] {
            let e = parse(&text.replace(bad, expect)).unwrap_err().to_string();
            assert!(e.contains("line ") && e.contains(says), "{expect}: {e}");
        }
    }

    #[test]
    fn postgres_and_redis_services_as_the_design_writes_them() {
        let text = format!(
            "{MINIMAL}\n[services.postgresql]\ndriver = \"postgres\"\nschedule = [\"0 * * * *\"]\n\
             host = \"127.0.0.1\"\nport = 5432\nuser = \"backup\"\n\
             password = \"vault:secret/zentoria/backup/postgresql#password\"\n\
             databases = [\"zentoria_main\", \"n8n\"]\n\n[services.redis]\ndriver = \"redis\"\n\
             password = \"env:REDIS_PASSWORD\"\n"
        );
        let c = parse(&text).unwrap();
        match &c.service("postgresql").unwrap().driver {
            Driver::Postgres {
                port,
                user,
                databases,
                globals,
                password,
                ..
            } => {
                assert_eq!((*port, user.as_str(), *globals), (5432, "backup", true));
                assert_eq!(databases, &["zentoria_main", "n8n"]);
                assert!(password.is_some());
            }
            other => panic!("{other:?}"),
        }
        match &c.service("redis").unwrap().driver {
            Driver::Redis { host, port, .. } => {
                assert_eq!((host.as_str(), *port), ("127.0.0.1", 6379))
            }
            other => panic!("{other:?}"),
        }
        // Mistakes name the key and the line.
        for (bad, expect) in [
            ("port = 5432", "port = 70000"),
            ("databases = [\"zentoria_main\", \"n8n\"]", "databases = []"),
            (
                "databases = [\"zentoria_main\", \"n8n\"]",
                "databases = [\"../etc\"]",
            ),
            (
                "databases = [\"zentoria_main\", \"n8n\"]",
                "databases = [\"globals\"]",
            ),
            ("user = \"backup\"", "user = \"backup\"\ncommand = [\"x\"]"),
            ("password = \"env:REDIS_PASSWORD\"", "password = \"env:\""),
        ] {
            let e = parse(&text.replace(bad, expect)).unwrap_err().to_string();
            assert!(e.contains("line "), "{expect}: {e}");
        }
        let e = parse(&text.replace("databases = [\"zentoria_main\", \"n8n\"]\n", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs `databases`"), "{e}");
    }

    #[test]
    fn bad_schedule_names_line() {
        let text = MINIMAL.replace(
            "extension = \"txt\"",
            "extension = \"txt\"\nschedule = [\"0 25 * * *\"]",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("line 14") && e.contains("0 25 * * *"), "{e}");
    }

    #[test]
    fn tier_schedules_windows_budgets_pins_and_per_tier_service_retention() {
        let c = parse(EXAMPLE_CONFIG).unwrap();
        let (local, minio, offsite) = (&c.tiers[0], &c.tiers[1], &c.tiers[2]);
        assert_eq!(offsite.sync_schedule(&c.jobs), ["0 7 * * *", "30 4 * * 0"]);
        assert!(minio.sync_schedule(&c.jobs).is_empty(), "every run");
        assert_eq!(local.verify_schedule(&c.jobs), ["0 7 * * *"]);
        assert_eq!(local.verify_window, LOCAL_VERIFY_WINDOW);
        assert_eq!(offsite.verify_window, REMOTE_VERIFY_WINDOW);
        assert_eq!(minio.verify_budget, Some(20 << 30));
        assert_eq!(minio.noncurrent_expiry, 30 * 86_400);
        assert!(offsite.retention.keep_pinned && !local.retention.keep_pinned);
        // configs: kept for ever offsite, the tier's own retention elsewhere.
        assert_eq!(
            c.retention_for("configs", offsite).keep_last,
            Some(u32::MAX)
        );
        assert_eq!(c.retention_for("configs", local), &local.retention);
        assert_eq!(c.retention_for("postgresql", offsite), &offsite.retention);

        let tier = |extra: &str| {
            parse(&format!(
                "[catalog]\npath = \"/tmp/c.db\"\n[tiers.local]\ntype = \"local\"\npath = \"/tmp/l\"\n{extra}\n"
            ))
        };
        for (extra, words) in [
            ("sync = [\"0 7 * *\"]", "[tiers.local] sync"),
            ("verify_window = \"0d\"", "verify_window must not be 0"),
            ("verify_budget = \"lots\"", "verify_budget"),
            (
                "noncurrent_expiry = \"30d\"",
                "does not apply to type \"local\"",
            ),
            ("retention = { keep_pinned = \"yes\" }", "keep_pinned"),
            (
                "retention = { keep_last = -1 }",
                "keep_last = -1: use a number from 0",
            ),
            (
                "retention = { keep_daily = 1.5 }",
                "keep_daily = 1.5: use a number or \"all\", not a float",
            ),
            ("verify = [\"0 0 7 * * *\"]", "has 6 fields; use five"),
            ("mode = \"0644\"", "never readable by everyone"),
        ] {
            let e = tier(extra).unwrap_err().to_string();
            assert!(e.contains(words) && e.contains("line"), "{extra}: {e}");
        }
        let e = tier("[services.c]\ndriver = \"files\"\npaths = [\"/etc\"]\ntier_retention = { nowhere = { keep_last = 1 } }")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tier_retention: no tier named \"nowhere\"") && e.contains("line 9"),
            "{e}"
        );
    }

    #[test]
    fn example_config_parses() {
        let c = parse(EXAMPLE_CONFIG).unwrap();
        assert!(c.services.len() >= 2);
        assert_eq!(c.tiers.len(), 3);
        // The minio service never mirrors the bucket the minio tier writes backups to.
        let minio = c
            .services
            .values()
            .find(|s| s.driver.name() == "minio")
            .unwrap();
        let Driver::Minio { exclude, .. } = &minio.driver else {
            unreachable!()
        };
        assert_eq!(exclude, &["backups"]);
    }
}
