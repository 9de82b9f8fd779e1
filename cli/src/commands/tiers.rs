//! `tierback tiers setup [--tier T]`: applies the bucket policy to each s3 tier and says, part
//! by part, what the server accepted and what it refused (with the server's message): versioning,
//! noncurrent versions expired after the tier's `noncurrent_expiry`, expired delete markers and
//! incomplete uploads cleaned up, and no expiry of current objects (prune manages them; a rule
//! that expired them is removed, and named in the output). A restic tier's repository is
//! initialised if there is none, or opened with the tier's password if there is.
//!
//! Exit code: 0 when every part is applied everywhere, 3 (partial) when some parts were refused
//! or failed but others applied, 1 when nothing could be applied.

use anyhow::{Result, bail};
use tierback_engine::config::{Config, TierConfig, TierKind};
use tierback_engine::restic::ResticTier;
use tierback_engine::store::s3::S3Store;
use tierback_engine::store::s3_policy::{BucketPolicy, Outcome, PolicyPart, apply_bucket_policy};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL};

pub fn setup(config: &Config, tier: Option<&str>) -> Result<i32> {
    let tiers: Vec<&TierConfig> = match tier {
        Some(name) => {
            let t = config.tier(name)?;
            if !matches!(t.kind, TierKind::S3 { .. } | TierKind::Restic { .. }) {
                bail!(
                    "tier {name} is a {} tier: `tiers setup` applies to s3 and restic tiers",
                    t.kind.type_name()
                );
            }
            vec![t]
        }
        None => config
            .tiers
            .iter()
            .filter(|t| matches!(t.kind, TierKind::S3 { .. } | TierKind::Restic { .. }))
            .collect(),
    };
    if tiers.is_empty() {
        println!("no s3 or restic tiers in the config: nothing to set up");
        return Ok(EXIT_OK);
    }
    let (mut applied, mut not_applied) = (0usize, 0usize);
    for tier in tiers {
        if let TierKind::Restic { path, .. } = &tier.kind {
            print!(
                "tier {} (restic repository at {}): ",
                tier.name,
                path.display()
            );
            match ResticTier::open(tier).and_then(|r| r.setup()) {
                Ok(true) => println!("initialised"),
                Ok(false) => println!("exists, and the password opens it"),
                Err(e) => {
                    println!("{e}");
                    not_applied += 1;
                    continue;
                }
            }
            applied += 1;
            continue;
        }
        let TierKind::S3 {
            endpoint, bucket, ..
        } = &tier.kind
        else {
            unreachable!("filtered above")
        };
        println!("tier {} (bucket {bucket} at {endpoint}):", tier.name);
        let store = match S3Store::open(tier) {
            Ok(s) => s,
            Err(e) => {
                println!("  cannot open the tier: {e}");
                not_applied += 1;
                continue;
            }
        };
        let policy = BucketPolicy::for_tier(tier);
        let report = apply_bucket_policy(&store, policy);
        for part in report.parts {
            let what = policy.describe(part.part);
            match part.outcome {
                Outcome::Applied => {
                    applied += 1;
                    println!("  {what:<62} applied");
                }
                Outcome::Unconfirmed(msg) => {
                    applied += 1;
                    println!("  {what:<62} applied (accepted, not confirmed: {msg})");
                }
                Outcome::Refused(msg) => {
                    not_applied += 1;
                    println!("  {what:<62} REFUSED by the server: {msg}");
                }
                Outcome::Failed(msg) => {
                    not_applied += 1;
                    println!("  {what:<62} FAILED (server not reachable?): {msg}");
                }
            }
            if part.part == PolicyPart::NoCurrentExpiry {
                // setup writes the whole lifecycle configuration: say what it dropped.
                for rule in &report.removed {
                    if rule.current_expiry.is_some() {
                        println!(
                            "    removed rule {} that expired current objects ({})",
                            rule.name(),
                            rule.describe_expiry()
                        );
                    } else {
                        println!(
                            "    removed rule {} (setup writes the whole lifecycle configuration)",
                            rule.name()
                        );
                    }
                }
            }
        }
    }
    Ok(match (applied, not_applied) {
        (_, 0) => EXIT_OK,
        (0, _) => EXIT_FAILURE,
        _ => EXIT_PARTIAL,
    })
}
