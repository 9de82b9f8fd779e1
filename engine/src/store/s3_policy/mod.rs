//! The bucket policy for an s3 tier, applied by `tierback tiers setup`: versioning on,
//! noncurrent versions expire after the tier's `noncurrent_expiry` (in whole days, rounded up),
//! expired delete markers removed, incomplete multipart uploads aborted after 7 days.
//!
//! Current objects get **no** expiry rule. Prune decides what a tier keeps, and it keeps some
//! objects past the tier's retention on purpose (a service's newest verified backup, pinned
//! backups, WAL a base backup needs, a copy another tier still waits for); a bucket rule that
//! expires current objects would delete those behind its back, possibly the last good copy. A
//! rule that does (an Expiration by days or by date, such as the `tierback-expire` rule older
//! versions wrote) is removed: setup writes the whole lifecycle configuration anew, and reports
//! each rule the bucket had that the new configuration drops ([`PolicyReport::removed`]).
//!
//! Servers support different subsets (Garage has no versioning and only part of lifecycle;
//! moto and AWS have everything), and S3 stores a bucket's lifecycle as one document that a PUT
//! replaces whole: one unsupported rule makes the server refuse them all. So the rules are first
//! tried together; if the server refuses, each is tried alone to learn which ones it accepts,
//! and the accepted ones are then written together (when it accepts none, the configuration is
//! deleted, so no old rule survives). Each part is finally confirmed by reading the
//! configuration back, so "applied" means the server kept it, not just that it said 200; that
//! includes [`PolicyPart::NoCurrentExpiry`]: no rule read back expires current objects.
//!
//! `lifecycle` writes the lifecycle rules and confirms them; this module holds the policy, its
//! report and the bucket-level parts (the bucket, versioning, default encryption).

mod lifecycle;
#[cfg(test)]
mod tests;

use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, VersioningConfiguration,
};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use super::s3::{S3Store, http_status, sdk_io_error};
use crate::config::{ServerSideEncryption, TierConfig, TierKind};
use crate::{Error, Result};
use lifecycle::{apply_lifecycle, get_rules};

/// Days after which an unfinished multipart upload (a crashed sync) is aborted: long enough
/// for any real upload to finish, short enough that orphaned parts do not pile up.
pub const ABORT_MULTIPART_DAYS: i32 = 7;

const DAY_SECS: u64 = 86_400;

/// A duration in seconds as the whole days a lifecycle rule takes: rounded up, at least 1.
pub fn whole_days(secs: u64) -> i32 {
    i32::try_from(secs.div_ceil(DAY_SECS).max(1)).unwrap_or(i32::MAX)
}

/// The settings of one tier's bucket policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketPolicy {
    /// Days after which a replaced or deleted (noncurrent) version is removed.
    pub noncurrent_days: i32,
    /// The bucket's default encryption, when the tier asks for server-side encryption.
    pub default_encryption: Option<DefaultEncryption>,
}

/// The algorithm of a bucket's default encryption (the KMS key id comes from the tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultEncryption {
    Aes256,
    Kms,
}

impl BucketPolicy {
    /// The policy for an s3 tier, from its `noncurrent_expiry`.
    pub fn for_tier(tier: &TierConfig) -> BucketPolicy {
        let default_encryption = match &tier.kind {
            TierKind::S3 {
                server_side_encryption: Some(ServerSideEncryption::Aes256),
                ..
            } => Some(DefaultEncryption::Aes256),
            TierKind::S3 {
                server_side_encryption: Some(ServerSideEncryption::Kms(_)),
                ..
            } => Some(DefaultEncryption::Kms),
            _ => None,
        };
        BucketPolicy {
            noncurrent_days: whole_days(tier.noncurrent_expiry),
            default_encryption,
        }
    }

    /// What `part` does under this policy, for humans.
    pub fn describe(&self, part: PolicyPart) -> String {
        match part {
            PolicyPart::Bucket => "bucket exists".into(),
            PolicyPart::Versioning => "versioning enabled".into(),
            PolicyPart::NoCurrentExpiry => {
                "current objects: no expiry rule (tierback prune manages them)".into()
            }
            PolicyPart::NoncurrentExpiration => format!(
                "noncurrent versions expire after {} days",
                self.noncurrent_days
            ),
            PolicyPart::ExpiredDeleteMarkers => "expired delete markers removed".into(),
            PolicyPart::AbortIncompleteMultipart => {
                format!("incomplete multipart uploads aborted after {ABORT_MULTIPART_DAYS} days")
            }
            PolicyPart::DefaultEncryption => match self.default_encryption {
                Some(DefaultEncryption::Kms) => "default encryption aws:kms".into(),
                _ => "default encryption AES256".into(),
            },
        }
    }
}

/// One part of the bucket policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyPart {
    /// Not a policy rule but its precondition: the bucket exists (created if missing).
    Bucket,
    Versioning,
    /// Not a rule either: that no lifecycle rule expires current objects (see the module doc).
    NoCurrentExpiry,
    NoncurrentExpiration,
    ExpiredDeleteMarkers,
    AbortIncompleteMultipart,
    /// Only for a tier with `server_side_encryption` (so not in [`PolicyPart::ALL`]): the
    /// bucket encrypts what is written without the header too.
    DefaultEncryption,
}

impl PolicyPart {
    pub const ALL: [PolicyPart; 6] = [
        PolicyPart::Bucket,
        PolicyPart::Versioning,
        PolicyPart::NoCurrentExpiry,
        PolicyPart::NoncurrentExpiration,
        PolicyPart::ExpiredDeleteMarkers,
        PolicyPart::AbortIncompleteMultipart,
    ];

    /// The lifecycle rule id used for this part (None for the parts that are not a rule).
    pub fn rule_id(self) -> Option<&'static str> {
        match self {
            PolicyPart::Bucket
            | PolicyPart::Versioning
            | PolicyPart::NoCurrentExpiry
            | PolicyPart::DefaultEncryption => None,
            PolicyPart::NoncurrentExpiration => Some("tierback-noncurrent-expire"),
            PolicyPart::ExpiredDeleteMarkers => Some("tierback-expired-delete-markers"),
            PolicyPart::AbortIncompleteMultipart => Some("tierback-abort-multipart"),
        }
    }
}

/// What happened to one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server accepted it and reading the configuration back shows it.
    Applied,
    /// The server accepted it (200) but its read-back answer could not be understood (moto
    /// answers GetBucketVersioning with a non-standard XML root), so it is not confirmed.
    Unconfirmed(String),
    /// The server answered and said no (its message), or accepted it but did not keep it.
    Refused(String),
    /// The server could not be asked (unreachable, timeout, 5xx).
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct PartOutcome {
    pub part: PolicyPart,
    pub outcome: Outcome,
}

/// What `tiers setup` did to one bucket.
#[derive(Debug, Clone)]
pub struct PolicyReport {
    /// Every part of [`PolicyPart::ALL`], in that order.
    pub parts: Vec<PartOutcome>,
    /// Rules the bucket had before that are gone now (rewriting the lifecycle configuration
    /// dropped them); those expiring current objects are why setup drops them.
    pub removed: Vec<LifecycleRuleInfo>,
}

/// When a lifecycle rule expires current objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentExpiry {
    /// This many days after an object's creation.
    AfterDays(i32),
    /// On this date (Unix seconds).
    OnDate(i64),
}

impl std::fmt::Display for CurrentExpiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            CurrentExpiry::AfterDays(d) => write!(f, "after {d} days"),
            CurrentExpiry::OnDate(secs) => match DateTime::from_secs(secs).fmt(Format::DateTime) {
                Ok(date) => write!(f, "on {date}"),
                Err(_) => write!(f, "on the date {secs} (Unix seconds)"),
            },
        }
    }
}

/// One lifecycle rule as a bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRuleInfo {
    pub id: Option<String>,
    pub enabled: bool,
    /// The key prefix the rule applies to (None: the rule's filter has no prefix).
    pub prefix: Option<String>,
    /// The rule's Expiration by days or date: it deletes current objects.
    pub current_expiry: Option<CurrentExpiry>,
    pub expired_delete_markers: bool,
    pub noncurrent_days: Option<i32>,
    pub abort_multipart_days: Option<i32>,
}

impl LifecycleRuleInfo {
    fn from_rule(r: &LifecycleRule) -> LifecycleRuleInfo {
        #[allow(deprecated)] // the rule-level Prefix of the old schema, still sent by servers
        let legacy_prefix = r.prefix();
        let expiration = r.expiration();
        LifecycleRuleInfo {
            id: r.id().map(str::to_owned),
            enabled: r.status() == &ExpirationStatus::Enabled,
            prefix: r
                .filter()
                .and_then(|f| f.prefix().or_else(|| f.and().and_then(|a| a.prefix())))
                .or(legacy_prefix)
                .map(str::to_owned),
            current_expiry: expiration.and_then(|e| {
                e.days()
                    .map(CurrentExpiry::AfterDays)
                    .or_else(|| e.date().map(|d| CurrentExpiry::OnDate(d.secs())))
            }),
            expired_delete_markers: expiration
                .and_then(|e| e.expired_object_delete_marker())
                .unwrap_or(false),
            noncurrent_days: r
                .noncurrent_version_expiration()
                .and_then(|n| n.noncurrent_days()),
            abort_multipart_days: r
                .abort_incomplete_multipart_upload()
                .and_then(|a| a.days_after_initiation()),
        }
    }

    /// Whether the rule is in force and deletes current objects.
    pub fn expires_current_objects(&self) -> bool {
        self.enabled && self.current_expiry.is_some()
    }

    /// The rule's id for messages.
    pub fn name(&self) -> &str {
        self.id.as_deref().unwrap_or("(without id)")
    }

    /// Everything the rule does, for messages, e.g. `noncurrent versions expire after 30
    /// days, prefix "tierback/"`.
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if let Some(e) = self.current_expiry {
            what.push(format!("current objects expire {e}"));
        }
        if let Some(d) = self.noncurrent_days {
            what.push(format!("noncurrent versions expire after {d} days"));
        }
        if self.expired_delete_markers {
            what.push("expired delete markers removed".into());
        }
        if let Some(d) = self.abort_multipart_days {
            what.push(format!(
                "incomplete multipart uploads aborted after {d} days"
            ));
        }
        if what.is_empty() {
            what.push("no action".into());
        }
        what.push(self.scope());
        what.join(", ")
    }

    /// The rule's prefix and status, e.g. `prefix "tierback/"` or `whole bucket, disabled`.
    fn scope(&self) -> String {
        let mut s = match self.prefix.as_deref() {
            Some(p) if !p.is_empty() => format!("prefix {p:?}"),
            _ => "whole bucket".into(),
        };
        if !self.enabled {
            s += ", disabled";
        }
        s
    }

    /// Its current-object expiry, prefix and status for messages, e.g.
    /// `after 90 days, prefix "tierback/"`.
    pub fn describe_expiry(&self) -> String {
        match self.current_expiry {
            Some(e) => format!("{e}, {}", self.scope()),
            None => format!("no expiry of current objects, {}", self.scope()),
        }
    }
}

/// Applies every part of the policy to the tier's bucket; never stops at the first refusal.
pub fn apply_bucket_policy(store: &S3Store, policy: BucketPolicy) -> PolicyReport {
    let (_, runtime) = store.client();
    runtime.block_on(async {
        let bucket = ensure_bucket(store).await;
        if bucket != Outcome::Applied {
            // Without a bucket every other part fails the same way: say it once per part.
            let why = match &bucket {
                Outcome::Refused(m) | Outcome::Failed(m) => format!("no bucket: {m}"),
                Outcome::Applied | Outcome::Unconfirmed(_) => unreachable!(),
            };
            let parts = PolicyPart::ALL
                .into_iter()
                .map(|part| PartOutcome {
                    part,
                    outcome: match (&bucket, part) {
                        (_, PolicyPart::Bucket) => bucket.clone(),
                        (Outcome::Refused(_), _) => Outcome::Refused(why.clone()),
                        _ => Outcome::Failed(why.clone()),
                    },
                })
                .collect();
            return PolicyReport {
                parts,
                removed: Vec::new(),
            };
        }
        let mut parts = vec![
            PartOutcome {
                part: PolicyPart::Bucket,
                outcome: bucket,
            },
            PartOutcome {
                part: PolicyPart::Versioning,
                outcome: apply_versioning(store).await,
            },
        ];
        let versioned = parts[1].outcome == Outcome::Applied
            || matches!(parts[1].outcome, Outcome::Unconfirmed(_));
        let (lifecycle, removed) = apply_lifecycle(store, policy, versioned).await;
        parts.extend(lifecycle);
        if policy.default_encryption.is_some() {
            parts.push(PartOutcome {
                part: PolicyPart::DefaultEncryption,
                outcome: apply_default_encryption(store).await,
            });
        }
        PolicyReport { parts, removed }
    })
}

/// The lifecycle rules the tier's bucket holds now (none when it has no configuration).
pub fn lifecycle_rules(store: &S3Store) -> Result<Vec<LifecycleRuleInfo>> {
    let (_, runtime) = store.client();
    runtime.block_on(async {
        get_rules(store)
            .await
            .map(|rules| rules.iter().map(LifecycleRuleInfo::from_rule).collect())
            .map_err(|e| store.sdk_error("GetBucketLifecycleConfiguration", "", e))
    })
}

/// For tests: creates the bucket if missing and adds to its lifecycle configuration a rule
/// `id` that expires current objects under the tier's prefix, as earlier versions of tierback
/// (their `tierback-expire` rule) or an administrator may have left one. Not for production use.
#[doc(hidden)]
pub fn add_current_expiry_rule(store: &S3Store, id: &str, expiry: CurrentExpiry) -> Result<()> {
    let (client, runtime) = store.client();
    runtime.block_on(async {
        if let Outcome::Refused(m) | Outcome::Failed(m) = ensure_bucket(store).await {
            return Err(Error::io(
                format!("bucket {}: CreateBucket", store.bucket()),
                std::io::Error::other(m),
            ));
        }
        let mut rules = get_rules(store)
            .await
            .map_err(|e| store.sdk_error("GetBucketLifecycleConfiguration", "", e))?;
        let expiration = match expiry {
            CurrentExpiry::AfterDays(d) => LifecycleExpiration::builder().days(d),
            CurrentExpiry::OnDate(s) => LifecycleExpiration::builder().date(DateTime::from_secs(s)),
        };
        rules.push(
            LifecycleRule::builder()
                .id(id)
                .status(ExpirationStatus::Enabled)
                .filter(
                    LifecycleRuleFilter::builder()
                        .prefix(store.prefix())
                        .build(),
                )
                .expiration(expiration.build())
                .build()
                .expect("status is set"),
        );
        client
            .put_bucket_lifecycle_configuration()
            .bucket(store.bucket())
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .expect("rules are set"),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| store.sdk_error("PutBucketLifecycleConfiguration", "", e))
    })
}

/// Creates the bucket unless it exists.
async fn ensure_bucket(store: &S3Store) -> Outcome {
    let (client, _) = store.client();
    match client.head_bucket().bucket(store.bucket()).send().await {
        Ok(_) => return Outcome::Applied,
        Err(e) if http_status(&e) == Some(404) => {}
        Err(e) => return classify(http_status(&e), sdk_io_error(e)),
    }
    match client.create_bucket().bucket(store.bucket()).send().await {
        Ok(_) => Outcome::Applied,
        Err(e) => classify(http_status(&e), sdk_io_error(e)),
    }
}

/// Sets the bucket's default encryption to the tier's `server_side_encryption` and reads it
/// back.
async fn apply_default_encryption(store: &S3Store) -> Outcome {
    use aws_sdk_s3::types::{
        ServerSideEncryption as Sse, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let (client, _) = store.client();
    let (algorithm, key_id) = match store.server_side_encryption() {
        Some(ServerSideEncryption::Aes256) => (Sse::Aes256, None),
        Some(ServerSideEncryption::Kms(id)) => (Sse::AwsKms, id.clone()),
        None => return Outcome::Applied,
    };
    let by_default = match ServerSideEncryptionByDefault::builder()
        .sse_algorithm(algorithm.clone())
        .set_kms_master_key_id(key_id)
        .build()
    {
        Ok(d) => d,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let config = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(by_default)
                .build(),
        )
        .build();
    let config = match config {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    if let Err(e) = client
        .put_bucket_encryption()
        .bucket(store.bucket())
        .server_side_encryption_configuration(config)
        .send()
        .await
    {
        return classify(http_status(&e), sdk_io_error(e));
    }
    match client
        .get_bucket_encryption()
        .bucket(store.bucket())
        .send()
        .await
    {
        Ok(out) => {
            let kept = out
                .server_side_encryption_configuration()
                .map(|c| c.rules())
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.apply_server_side_encryption_by_default())
                .any(|d| *d.sse_algorithm() == algorithm);
            if kept {
                Outcome::Applied
            } else {
                Outcome::Refused(
                    "accepted, but the bucket's encryption reads back without it".into(),
                )
            }
        }
        Err(e) => classify(http_status(&e), sdk_io_error(e)),
    }
}

async fn apply_versioning(store: &S3Store) -> Outcome {
    let (client, _) = store.client();
    let put = client
        .put_bucket_versioning()
        .bucket(store.bucket())
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await;
    if let Err(e) = put {
        return classify(http_status(&e), sdk_io_error(e));
    }
    match client
        .get_bucket_versioning()
        .bucket(store.bucket())
        .send()
        .await
    {
        Ok(v) if v.status() == Some(&BucketVersioningStatus::Enabled) => Outcome::Applied,
        Ok(v) => Outcome::Refused(format!(
            "accepted, but the bucket's versioning status reads back as {:?}",
            v.status().map(|s| s.as_str()).unwrap_or("unset")
        )),
        Err(e) if http_status(&e).is_some_and(|s| (200..300).contains(&s)) => {
            Outcome::Unconfirmed(format!(
                "the read-back answer was not understood: {}",
                sdk_io_error(e)
            ))
        }
        Err(e) => classify(http_status(&e), sdk_io_error(e)),
    }
}

/// A server that answered with a 4xx or 501 refused; no answer or another 5xx is a failure.
fn classify(status: Option<u16>, err: std::io::Error) -> Outcome {
    match status {
        Some(s) if (400..500).contains(&s) || s == 501 => Outcome::Refused(err.to_string()),
        _ => Outcome::Failed(err.to_string()),
    }
}
