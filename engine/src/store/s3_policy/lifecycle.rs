//! The bucket's lifecycle rules: written together where the server accepts them together, else
//! one by one to learn which it accepts, then read back to confirm (see [`super`]).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_bucket_lifecycle_configuration::GetBucketLifecycleConfigurationError;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
};

use super::{
    ABORT_MULTIPART_DAYS, BucketPolicy, LifecycleRuleInfo, Outcome, PartOutcome, PolicyPart,
    classify,
};
use crate::store::s3::{S3Store, http_status, sdk_io_error};

/// The lifecycle rule for one part, restricted to the tier's prefix.
fn rule(store: &S3Store, policy: BucketPolicy, part: PolicyPart) -> LifecycleRule {
    let builder = LifecycleRule::builder()
        .id(part.rule_id().expect("lifecycle parts have rule ids"))
        .status(ExpirationStatus::Enabled)
        .filter(
            LifecycleRuleFilter::builder()
                .prefix(store.prefix())
                .build(),
        );
    let builder = match part {
        PolicyPart::NoncurrentExpiration => builder.noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(policy.noncurrent_days)
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
        PolicyPart::Bucket
        | PolicyPart::Versioning
        | PolicyPart::NoCurrentExpiry
        | PolicyPart::DefaultEncryption => unreachable!("{part:?} is not a lifecycle rule"),
    };
    builder.build().expect("status is set")
}

/// Whether a rule read back does what `part`'s rule asks (the server kept it as written).
fn does(policy: BucketPolicy, part: PolicyPart, r: &LifecycleRuleInfo) -> bool {
    r.enabled
        && r.current_expiry.is_none()
        && match part {
            PolicyPart::NoncurrentExpiration => r.noncurrent_days == Some(policy.noncurrent_days),
            PolicyPart::ExpiredDeleteMarkers => r.expired_delete_markers,
            PolicyPart::AbortIncompleteMultipart => {
                r.abort_multipart_days == Some(ABORT_MULTIPART_DAYS)
            }
            PolicyPart::Bucket
            | PolicyPart::Versioning
            | PolicyPart::NoCurrentExpiry
            | PolicyPart::DefaultEncryption => false,
        }
}

/// Writes a lifecycle configuration made of `parts`' rules; the error says why not.
async fn put_rules(
    store: &S3Store,
    policy: BucketPolicy,
    parts: &[PolicyPart],
) -> Result<(), Outcome> {
    let (client, _) = store.client();
    let mut config = BucketLifecycleConfiguration::builder();
    for &p in parts {
        config = config.rules(rule(store, policy, p));
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

/// Deletes the bucket's lifecycle configuration (when the server accepted none of the rules, so
/// that no older rule, one expiring current objects above all, survives).
async fn delete_rules(store: &S3Store) -> Result<(), Outcome> {
    let (client, _) = store.client();
    match client
        .delete_bucket_lifecycle()
        .bucket(store.bucket())
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if http_status(&e) == Some(404) => Ok(()),
        Err(e) => Err(classify(http_status(&e), sdk_io_error(e))),
    }
}

/// Writes the lifecycle rules and confirms them; returns the outcomes of
/// [`PolicyPart::NoCurrentExpiry`] and of the rules, and the rules that the rewrite removed.
pub(super) async fn apply_lifecycle(
    store: &S3Store,
    policy: BucketPolicy,
    versioned: bool,
) -> (Vec<PartOutcome>, Vec<LifecycleRuleInfo>) {
    let parts: Vec<PolicyPart> = PolicyPart::ALL
        .into_iter()
        .filter(|p| p.rule_id().is_some())
        .collect();
    // What the bucket had before, to tell which rules the rewrite drops. Not knowing it only
    // costs that report: the rewrite and the check of what is left do not depend on it.
    let before = read_back(store).await.ok();
    let mut outcomes: Vec<(PolicyPart, Option<Outcome>)> =
        parts.iter().map(|&p| (p, None)).collect();
    let accepted: Vec<PolicyPart> = match put_rules(store, policy, &parts).await {
        Ok(()) => parts.clone(),
        Err(Outcome::Failed(msg)) => {
            let failed = std::iter::once(PolicyPart::NoCurrentExpiry)
                .chain(parts)
                .map(|part| PartOutcome {
                    part,
                    outcome: Outcome::Failed(msg.clone()),
                })
                .collect();
            return (failed, Vec::new());
        }
        Err(_) => {
            // Learn which rules this server accepts, one at a time.
            let mut accepted = Vec::new();
            for (part, outcome) in &mut outcomes {
                match put_rules(store, policy, &[*part]).await {
                    Ok(()) => accepted.push(*part),
                    Err(refusal) => *outcome = Some(refusal),
                }
            }
            if !accepted.is_empty()
                && let Err(refusal) = put_rules(store, policy, &accepted).await
            {
                for (part, outcome) in &mut outcomes {
                    if accepted.contains(part) {
                        *outcome = Some(refusal.clone());
                    }
                }
                accepted.clear();
            }
            if accepted.is_empty() && before.as_ref().is_none_or(|b| !b.is_empty()) {
                // Whether this works shows in the read-back below.
                let _ = delete_rules(store).await;
            }
            accepted
        }
    };
    let kept = read_back(store).await;
    let no_current_expiry = match &kept {
        Ok(rules) => {
            let expiring: Vec<String> = rules
                .iter()
                .filter(|r| r.expires_current_objects())
                .map(|r| format!("{} ({})", r.name(), r.describe_expiry()))
                .collect();
            if expiring.is_empty() {
                Outcome::Applied
            } else {
                Outcome::Refused(format!(
                    "the bucket still has a rule expiring current objects: {}",
                    expiring.join(", ")
                ))
            }
        }
        Err(Outcome::Refused(m)) => {
            Outcome::Unconfirmed(format!("the lifecycle configuration cannot be read: {m}"))
        }
        Err(o) => o.clone(),
    };
    let mut out = vec![PartOutcome {
        part: PolicyPart::NoCurrentExpiry,
        outcome: no_current_expiry,
    }];
    out.extend(outcomes.into_iter().map(|(part, outcome)| {
        let outcome = outcome.unwrap_or_else(|| {
            let id = part.rule_id();
            match &kept {
                _ if !accepted.contains(&part) => Outcome::Refused("not accepted".into()),
                Ok(rules) => match rules.iter().find(|r| r.id.as_deref() == id) {
                    // Garage has no versioning; it keeps the noncurrent rule, but without its
                    // NoncurrentVersionExpiration.
                    Some(_) if part == PolicyPart::NoncurrentExpiration && !versioned => {
                        Outcome::Unconfirmed(
                            "stored, but without versioning there are no noncurrent versions"
                                .into(),
                        )
                    }
                    Some(r) if does(policy, part, r) => Outcome::Applied,
                    Some(r) => Outcome::Refused(format!(
                        "accepted, but the rule reads back as: {}",
                        r.describe()
                    )),
                    None => Outcome::Refused(
                        "accepted, but the rule is missing when the configuration is read back"
                            .into(),
                    ),
                },
                Err(o) => o.clone(),
            }
        });
        PartOutcome { part, outcome }
    }));
    // A rule counts as removed when none with its id is left, or, for one that expired current
    // objects, when none with its id still does (a rule id of ours rewritten without it).
    let removed = match (before, &kept) {
        (Some(before), Ok(after)) => before
            .into_iter()
            .filter(|b| {
                !after.iter().any(|a| {
                    a.id == b.id && (b.current_expiry.is_none() || a.current_expiry.is_some())
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    (out, removed)
}

/// The bucket's lifecycle rules, or why they cannot be read.
async fn read_back(store: &S3Store) -> Result<Vec<LifecycleRuleInfo>, Outcome> {
    get_rules(store)
        .await
        .map(|rules| rules.iter().map(LifecycleRuleInfo::from_rule).collect())
        .map_err(|e| classify(http_status(&e), sdk_io_error(e)))
}

/// The bucket's lifecycle rules as the SDK has them; none when it has no configuration.
pub(super) async fn get_rules(
    store: &S3Store,
) -> Result<Vec<LifecycleRule>, SdkError<GetBucketLifecycleConfigurationError, HttpResponse>> {
    let (client, _) = store.client();
    match client
        .get_bucket_lifecycle_configuration()
        .bucket(store.bucket())
        .send()
        .await
    {
        Ok(c) => Ok(c.rules().to_vec()),
        // NoSuchLifecycleConfiguration: there are no rules.
        Err(e) if http_status(&e) == Some(404) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
