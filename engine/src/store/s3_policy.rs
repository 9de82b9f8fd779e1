//! The seed's bucket policy for an s3 tier, applied by `tierback tiers setup`: versioning on,
//! objects expire after 90 days, noncurrent versions after 30, expired delete markers removed,
//! incomplete multipart uploads aborted after 7 days.
//!
//! Servers support different subsets (Garage has no versioning and only part of lifecycle;
//! moto and AWS have everything), and S3 stores a bucket's lifecycle as one document that a PUT
//! replaces whole: one unsupported rule makes the server refuse them all. So the rules are first
//! tried together; if the server refuses, each is tried alone to learn which ones it accepts,
//! and the accepted ones are then written together. Each part is finally confirmed by reading
//! the configuration back, so "applied" means the server kept it, not just that it said 200.

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    NoncurrentVersionExpiration, VersioningConfiguration,
};

use super::s3::{S3Store, http_status, sdk_io_error};

/// Days after which a current object expires (the seed's object-tier retention).
pub const EXPIRE_DAYS: i32 = 90;
/// Days after which a replaced or deleted (noncurrent) version is removed.
pub const NONCURRENT_DAYS: i32 = 30;
/// Days after which an unfinished multipart upload (a crashed sync) is aborted: long enough
/// for any real upload to finish, short enough that orphaned parts do not pile up.
pub const ABORT_MULTIPART_DAYS: i32 = 7;

/// One part of the bucket policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyPart {
    /// Not a policy rule but its precondition: the bucket exists (created if missing).
    Bucket,
    Versioning,
    Expiration,
    NoncurrentExpiration,
    ExpiredDeleteMarkers,
    AbortIncompleteMultipart,
}

impl PolicyPart {
    pub const ALL: [PolicyPart; 6] = [
        PolicyPart::Bucket,
        PolicyPart::Versioning,
        PolicyPart::Expiration,
        PolicyPart::NoncurrentExpiration,
        PolicyPart::ExpiredDeleteMarkers,
        PolicyPart::AbortIncompleteMultipart,
    ];

    /// What the part does, for humans.
    pub fn describe(self) -> String {
        match self {
            PolicyPart::Bucket => "bucket exists".into(),
            PolicyPart::Versioning => "versioning enabled".into(),
            PolicyPart::Expiration => format!("objects expire after {EXPIRE_DAYS} days"),
            PolicyPart::NoncurrentExpiration => {
                format!("noncurrent versions expire after {NONCURRENT_DAYS} days")
            }
            PolicyPart::ExpiredDeleteMarkers => "expired delete markers removed".into(),
            PolicyPart::AbortIncompleteMultipart => {
                format!("incomplete multipart uploads aborted after {ABORT_MULTIPART_DAYS} days")
            }
        }
    }

    /// The lifecycle rule id used for this part (None for versioning).
    pub fn rule_id(self) -> Option<&'static str> {
        match self {
            PolicyPart::Bucket | PolicyPart::Versioning => None,
            PolicyPart::Expiration => Some("tierback-expire"),
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

/// Applies every part of the policy to the tier's bucket; never stops at the first refusal.
pub fn apply_bucket_policy(store: &S3Store) -> Vec<PartOutcome> {
    let (_, runtime) = store.client();
    runtime.block_on(async {
        let bucket = ensure_bucket(store).await;
        if bucket != Outcome::Applied {
            // Without a bucket every other part fails the same way: say it once per part.
            let why = match &bucket {
                Outcome::Refused(m) | Outcome::Failed(m) => format!("no bucket: {m}"),
                Outcome::Applied | Outcome::Unconfirmed(_) => unreachable!(),
            };
            return PolicyPart::ALL
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
        }
        let mut out = vec![
            PartOutcome {
                part: PolicyPart::Bucket,
                outcome: bucket,
            },
            PartOutcome {
                part: PolicyPart::Versioning,
                outcome: apply_versioning(store).await,
            },
        ];
        let versioned =
            out[1].outcome == Outcome::Applied || matches!(out[1].outcome, Outcome::Unconfirmed(_));
        for mut p in apply_lifecycle(store).await {
            // Garage stores a noncurrent-version rule although it has no versioning.
            if !versioned
                && p.part == PolicyPart::NoncurrentExpiration
                && p.outcome == Outcome::Applied
            {
                p.outcome = Outcome::Unconfirmed(
                    "stored, but without versioning there are no noncurrent versions".into(),
                );
            }
            out.push(p);
        }
        out
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

/// The lifecycle rule for one part, restricted to the tier's prefix.
fn rule(store: &S3Store, part: PolicyPart) -> LifecycleRule {
    let builder = LifecycleRule::builder()
        .id(part.rule_id().expect("lifecycle parts have rule ids"))
        .status(ExpirationStatus::Enabled)
        .filter(
            LifecycleRuleFilter::builder()
                .prefix(store.prefix())
                .build(),
        );
    let builder = match part {
        PolicyPart::Expiration => {
            builder.expiration(LifecycleExpiration::builder().days(EXPIRE_DAYS).build())
        }
        PolicyPart::NoncurrentExpiration => builder.noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(NONCURRENT_DAYS)
                .build(),
        ),
        // AWS does not allow ExpiredObjectDeleteMarker beside Days in one Expiration element,
        // hence a rule of its own.
        PolicyPart::ExpiredDeleteMarkers => builder.expiration(
            LifecycleExpiration::builder()
                .expired_object_delete_marker(true)
                .build(),
        ),
        PolicyPart::AbortIncompleteMultipart => builder.abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(ABORT_MULTIPART_DAYS)
                .build(),
        ),
        PolicyPart::Bucket | PolicyPart::Versioning => {
            unreachable!("{part:?} is not a lifecycle rule")
        }
    };
    builder.build().expect("status is set")
}

/// Writes a lifecycle configuration made of `parts`' rules; the error says why not.
async fn put_rules(store: &S3Store, parts: &[PolicyPart]) -> Result<(), Outcome> {
    let (client, _) = store.client();
    let mut config = BucketLifecycleConfiguration::builder();
    for &p in parts {
        config = config.rules(rule(store, p));
    }
    client
        .put_bucket_lifecycle_configuration()
        .bucket(store.bucket())
        .lifecycle_configuration(config.build().expect("rules are set"))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify(http_status(&e), sdk_io_error(e)))
}

async fn apply_lifecycle(store: &S3Store) -> Vec<PartOutcome> {
    let parts: Vec<PolicyPart> = PolicyPart::ALL
        .into_iter()
        .filter(|p| p.rule_id().is_some())
        .collect();
    let mut outcomes: Vec<(PolicyPart, Option<Outcome>)> =
        parts.iter().map(|&p| (p, None)).collect();
    let accepted: Vec<PolicyPart> = match put_rules(store, &parts).await {
        Ok(()) => parts.clone(),
        Err(Outcome::Failed(msg)) => {
            return parts
                .into_iter()
                .map(|part| PartOutcome {
                    part,
                    outcome: Outcome::Failed(msg.clone()),
                })
                .collect();
        }
        Err(_) => {
            // Learn which rules this server accepts, one at a time.
            let mut accepted = Vec::new();
            for (part, outcome) in &mut outcomes {
                match put_rules(store, &[*part]).await {
                    Ok(()) => accepted.push(*part),
                    Err(refusal) => *outcome = Some(refusal),
                }
            }
            if !accepted.is_empty()
                && let Err(refusal) = put_rules(store, &accepted).await
            {
                for (part, outcome) in &mut outcomes {
                    if accepted.contains(part) {
                        *outcome = Some(refusal.clone());
                    }
                }
                accepted.clear();
            }
            accepted
        }
    };
    let kept = read_back_rule_ids(store).await;
    outcomes
        .into_iter()
        .map(|(part, outcome)| {
            let outcome = outcome.unwrap_or_else(|| match &kept {
                _ if !accepted.contains(&part) => Outcome::Refused("not accepted".into()),
                Ok(ids) if ids.iter().any(|id| Some(id.as_str()) == part.rule_id()) => {
                    Outcome::Applied
                }
                Ok(_) => Outcome::Refused(
                    "accepted, but the rule is missing when the configuration is read back".into(),
                ),
                Err(o) => o.clone(),
            });
            PartOutcome { part, outcome }
        })
        .collect()
}

async fn read_back_rule_ids(store: &S3Store) -> Result<Vec<String>, Outcome> {
    let (client, _) = store.client();
    match client
        .get_bucket_lifecycle_configuration()
        .bucket(store.bucket())
        .send()
        .await
    {
        Ok(c) => Ok(c
            .rules()
            .iter()
            .filter_map(|r| r.id().map(str::to_owned))
            .collect()),
        // NoSuchLifecycleConfiguration: nothing was kept.
        Err(e) if http_status(&e) == Some(404) => Ok(Vec::new()),
        Err(e) => Err(classify(http_status(&e), sdk_io_error(e))),
    }
}

/// A server that answered with a 4xx or 501 refused; no answer or another 5xx is a failure.
fn classify(status: Option<u16>, err: std::io::Error) -> Outcome {
    match status {
        Some(s) if (400..500).contains(&s) || s == 501 => Outcome::Refused(err.to_string()),
        _ => Outcome::Failed(err.to_string()),
    }
}
