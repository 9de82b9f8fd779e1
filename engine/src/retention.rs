//! Retention, restic-style: per tier, over each service's series of backups. Planned first as a
//! pure function of the catalog, the policy and the time (printed by `prune --dry-run`), then
//! applied idempotently, so a crash halfway is finished by the next prune.
//!
//! Whatever the policy says, prune never removes a service's newest verified backup on a tier,
//! and never removes the primary tier's copy of a backup that another tier wants but does not
//! hold yet (sync needs it as its source).

use std::collections::{BTreeMap, HashSet};

use crate::artifact::metadata::ArtifactMetadata;
use crate::catalog::{ArtifactRecord, Catalog, MISSING, PRESENT};
use crate::config::{Config, Driver, Retention};
use crate::source::postgres::BASE;
use crate::store::open_tier;
use crate::sync::wanted_by;
use crate::{Error, Result};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub tier: String,
    pub service: String,
    pub backup_id: i64,
    pub taken_at: i64,
    pub keep: bool,
    /// Why it is kept (`daily`, `newest verified`, …) or why it goes.
    pub reasons: Vec<String>,
    /// Object keys of this backup's artifacts.
    pub keys: Vec<String>,
}

/// Decides, for every backup copy on every tier, whether it stays.
pub fn plan(config: &Config, artifacts: &[ArtifactRecord], now: i64) -> Vec<Decision> {
    let primary = config.tiers.first().map(|t| t.name.as_str());
    // Backups some other tier wants and lacks: the primary keeps them for sync.
    let mut awaited: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for tier in config.tiers.iter().skip(1) {
        let wanted = wanted_by(config, tier, artifacts);
        for a in artifacts.iter().filter(|a| wanted.contains(&a.backup_id)) {
            if a.copy_on(tier.name.as_str())
                .is_none_or(|c| c.state != PRESENT)
            {
                let list = awaited.entry(a.backup_id).or_default();
                if !list.contains(&tier.name.to_string()) {
                    list.push(tier.name.to_string());
                }
            }
        }
    }

    let mut decisions = Vec::new();
    for tier in &config.tiers {
        // (service) → backups on this tier, newest first.
        let mut series: BTreeMap<&str, Vec<Decision>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for a in artifacts {
            if a.copy_on(tier.name.as_str()).is_none() {
                continue;
            }
            if seen.insert(a.backup_id) {
                series
                    .entry(a.service.as_str())
                    .or_default()
                    .push(Decision {
                        tier: tier.name.to_string(),
                        service: a.service.clone(),
                        backup_id: a.backup_id,
                        taken_at: a.taken_at,
                        keep: false,
                        reasons: Vec::new(),
                        keys: Vec::new(),
                    });
            }
        }
        for (service, list) in series.iter_mut() {
            // A service's own retention (WAL: 24 hours) replaces the tier's.
            let policy = config
                .service(service)
                .ok()
                .and_then(|s| s.retention.as_ref())
                .unwrap_or(&tier.retention);
            list.sort_by_key(|d| std::cmp::Reverse(d.taken_at));
            for d in list.iter_mut() {
                d.keys = artifacts
                    .iter()
                    .filter(|a| a.backup_id == d.backup_id)
                    .map(|a| a.key.clone())
                    .collect();
            }
            // Copies an interrupted prune left as tombstones are finished first and count for
            // nothing else.
            let (tombstones, live): (Vec<Decision>, Vec<Decision>) =
                std::mem::take(list).into_iter().partition(|d| {
                    artifacts
                        .iter()
                        .filter(|a| a.backup_id == d.backup_id)
                        .any(|a| a.copy_on(&d.tier).is_some_and(|c| c.state == MISSING))
                });
            *list = live;
            apply_policy(policy, list, now);
            // The newest backup whose every copy on this tier is verified stays, always.
            if let Some(d) = list.iter_mut().find(|d| {
                artifacts
                    .iter()
                    .filter(|a| a.backup_id == d.backup_id)
                    .all(|a| {
                        a.copy_on(&d.tier)
                            .is_some_and(|c| c.state == PRESENT && c.verified_at.is_some())
                    })
            }) {
                d.keep = true;
                d.reasons.push("newest verified".into());
            }
            if let Some(since) = wal_needed_since(config, service, tier.name.as_str(), artifacts) {
                for d in list.iter_mut().filter(|d| d.taken_at >= since) {
                    d.keep = true;
                    d.reasons.push("WAL after the newest base backup".into());
                }
            }
            if Some(tier.name.as_str()) == primary {
                for d in list.iter_mut() {
                    if let Some(tiers) = awaited.get(&d.backup_id) {
                        d.keep = true;
                        d.reasons.push(format!("not yet on {}", tiers.join(", ")));
                    }
                }
            }
            list.extend(tombstones.into_iter().map(|mut d| {
                d.reasons.push("finishing an interrupted prune".into());
                d
            }));
        }
        decisions.extend(series.into_values().flatten());
    }
    decisions
}

/// Marks what `policy` keeps in one series (newest first), restic's way: for each rule, walk from
/// the newest and keep the newest backup of each new period until the rule's count is used up.
fn apply_policy(policy: &Retention, list: &mut [Decision], now: i64) {
    if *policy == Retention::default() {
        for d in list.iter_mut() {
            d.keep = true;
            d.reasons.push("no retention policy".into());
        }
        return;
    }
    let rules: [(&str, Option<u32>); 6] = [
        ("last", policy.keep_last),
        ("hourly", policy.keep_hourly),
        ("daily", policy.keep_daily),
        ("weekly", policy.keep_weekly),
        ("monthly", policy.keep_monthly),
        ("yearly", policy.keep_yearly),
    ];
    for (name, count) in rules {
        let Some(mut left) = count else { continue };
        let mut previous = None;
        for d in list.iter_mut() {
            if left == 0 {
                break;
            }
            let b = period(name, d.taken_at).expect("every rule names a period");
            if previous != Some(b) {
                previous = Some(b);
                d.keep = true;
                d.reasons.push(name.into());
                left -= 1;
            }
        }
    }
    if let Some(within) = policy.keep_within {
        for d in list
            .iter_mut()
            .filter(|d| now - d.taken_at <= within as i64)
        {
            d.keep = true;
            d.reasons.push("within".into());
        }
    }
    for d in list.iter_mut().filter(|d| !d.keep) {
        d.reasons.push("outside the retention policy".into());
    }
}

/// The period a time (Unix seconds, UTC) falls in, shared by retention rules and copy policies:
/// `hourly`, `daily`, `weekly` (weeks start on Monday), `monthly`, `yearly`; for `last` every
/// backup is its own period. `None` for an unknown name.
/// For a WAL service with a `base`: when the newest base backup on `tier` (and the newest
/// verified one, if older) was taken. The WAL archived since is what rolls it forward, so it
/// stays even when base backups have failed for longer than the WAL retention.
fn wal_needed_since(
    config: &Config,
    service: &str,
    tier: &str,
    artifacts: &[ArtifactRecord],
) -> Option<i64> {
    let Driver::PostgresWal {
        base: Some(base), ..
    } = &config.service(service).ok()?.driver
    else {
        return None;
    };
    let prefix = format!("{BASE}_");
    let bases: Vec<(i64, bool)> = artifacts
        .iter()
        .filter(|a| &a.service == base && a.file.starts_with(&prefix))
        .filter_map(|a| {
            let copy = a.copy_on(tier).filter(|c| c.state == PRESENT)?;
            Some((a.taken_at, copy.verified_at.is_some()))
        })
        .collect();
    let newest = bases.iter().map(|b| b.0).max()?;
    let newest_verified = bases.iter().filter(|b| b.1).map(|b| b.0).max();
    Some(newest_verified.map_or(newest, |v| v.min(newest)))
}

pub fn period(kind: &str, t: i64) -> Option<i64> {
    let date =
        || time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Some(match kind {
        "last" => t,
        "hourly" => t.div_euclid(3600),
        "daily" => t.div_euclid(86_400),
        // 1970-01-01 was a Thursday: +3 days makes weeks start on Monday.
        "weekly" => (t.div_euclid(86_400) + 3).div_euclid(7),
        "monthly" => date().year() as i64 * 12 + date().month() as i64,
        "yearly" => date().year() as i64,
        _ => return None,
    })
}

#[derive(Debug, Default, serde::Serialize)]
pub struct PruneReport {
    pub removed: Vec<String>,
    pub failed: Vec<String>,
}

/// Removes what `plan` decided to drop: the catalog marks the copy as being deleted (readers stop
/// using it), the files go (metadata first, so a half-deleted copy never looks complete to
/// `catalog rebuild`), then the catalog forgets the copy. A crash or a failed delete leaves the
/// mark, and the next prune finishes the job.
pub fn apply(
    config: &Config,
    catalog: &mut Catalog,
    decisions: &[Decision],
) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    let mut stores = BTreeMap::new();
    for d in decisions.iter().filter(|d| !d.keep) {
        let store = match stores.entry(d.tier.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(open_tier(config.tier(&d.tier)?))
            }
        };
        let store = match store {
            Ok(s) => s,
            Err(e) => {
                report.failed.push(format!("{}: {e}", d.tier));
                continue;
            }
        };
        catalog.mark_backup_copies_missing(d.backup_id, &d.tier)?;
        let failures_before = report.failed.len();
        for key in &d.keys {
            let mut keys: Vec<String> = ArtifactMetadata::sidecar_keys(key)
                .into_iter()
                .rev()
                .collect();
            keys.push(key.clone());
            // metadata, sha256, index, then the file
            for k in &keys {
                if let Err(e) = store.delete(k) {
                    report.failed.push(format!("{}:{k}: {e}", d.tier));
                }
            }
            report.removed.push(format!("{}:{key}", d.tier));
        }
        // Only a fully deleted copy is forgotten; otherwise the tombstone makes the next prune
        // try again.
        if report.failed.len() == failures_before {
            catalog.remove_backup_copies(d.backup_id, &d.tier)?;
        }
    }
    if report.failed.is_empty() {
        Ok(report)
    } else {
        Err(Error::Invalid(format!(
            "prune could not delete: {}",
            report.failed.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(times: &[i64]) -> Vec<Decision> {
        let mut v: Vec<Decision> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| Decision {
                tier: "local".into(),
                service: "pg".into(),
                backup_id: i as i64,
                taken_at: t,
                keep: false,
                reasons: vec![],
                keys: vec![],
            })
            .collect();
        v.sort_by_key(|d| std::cmp::Reverse(d.taken_at));
        v
    }

    fn kept(list: &[Decision]) -> Vec<i64> {
        let mut k: Vec<i64> = list.iter().filter(|d| d.keep).map(|d| d.taken_at).collect();
        k.sort();
        k
    }

    #[test]
    fn hourly_backups_kept_like_the_seed() {
        // Hourly backups for 40 days; the seed's local tier: 168 hourly, 30 daily, 12 weekly.
        let end = 1_770_000_000 - 1_770_000_000 % 3600;
        let times: Vec<i64> = (0..40 * 24).map(|h| end - h * 3600).collect();
        let mut list = series(&times);
        let policy = Retention {
            keep_hourly: Some(168),
            keep_daily: Some(30),
            keep_weekly: Some(12),
            ..Default::default()
        };
        apply_policy(&policy, &mut list, end);
        let k = kept(&list);
        let week = 7 * 86_400;
        // Every one of the last 168 hours.
        assert!(times[..168].iter().all(|t| k.contains(t)));
        // Beyond them, one per day for 30 days: the day's newest backup (23:00).
        let older: Vec<i64> = k.iter().copied().filter(|t| *t < times[167]).collect();
        let daily: Vec<i64> = older
            .iter()
            .copied()
            .filter(|t| *t >= end - 30 * 86_400)
            .collect();
        assert!(daily.iter().all(|t| t % 86_400 == 23 * 3600), "{daily:?}");
        let days: HashSet<i64> = daily.iter().map(|t| t / 86_400).collect();
        assert_eq!(days.len(), daily.len(), "one per day");
        // Beyond 30 days only weekly ones: at most one per week, and the oldest week is reached.
        let weekly: Vec<i64> = older
            .iter()
            .copied()
            .filter(|t| *t < end - 30 * 86_400)
            .collect();
        assert!(!weekly.is_empty() && weekly.len() <= 2, "{weekly:?}");
        assert!(weekly.windows(2).all(|w| w[1] - w[0] >= week - 86_400));
        assert!(k.len() < 168 + 30 + 12);
    }

    #[test]
    fn keep_within_and_all() {
        let now = 1_770_000_000;
        let times: Vec<i64> = (0..100).map(|d| now - d * 86_400).collect();
        let mut list = series(&times);
        apply_policy(
            &Retention {
                keep_within: Some(90 * 86_400),
                ..Default::default()
            },
            &mut list,
            now,
        );
        assert_eq!(kept(&list).len(), 91);
        let mut list = series(&times);
        apply_policy(
            &Retention {
                keep_monthly: Some(u32::MAX),
                ..Default::default()
            },
            &mut list,
            now,
        );
        let months: HashSet<i64> = times.iter().map(|t| t / (30 * 86_400)).collect();
        assert!(kept(&list).len() >= months.len() - 1 && kept(&list).len() <= 5);
    }

    #[test]
    fn no_policy_keeps_everything() {
        let mut list = series(&[1, 2, 3]);
        apply_policy(&Retention::default(), &mut list, 10);
        assert_eq!(kept(&list).len(), 3);
    }

    #[test]
    fn tombstones_of_an_interrupted_prune_are_finished_and_never_protect() {
        let config = Config::parse(
            "[catalog]\npath = \"/tmp/x.db\"\n[tiers.local]\ntype = \"local\"\npath = \"/tmp/x\"\nretention = { keep_last = 5 }\n",
            std::path::Path::new("/tmp/t.toml"),
        )
        .unwrap();
        let copy = |state: &str| crate::catalog::CopyRecord {
            tier: "local".into(),
            state: state.into(),
            stored_at: 0,
            verified_at: Some(0),
            error: None,
        };
        let rec = |id: i64, t: i64, state: &str| ArtifactRecord {
            copies: vec![copy(state)],
            ..ArtifactRecord::for_test(id, "pg", t)
        };
        // The newest backup is a tombstone: it goes, and the next one is the newest verified.
        let decisions = plan(&config, &[rec(2, 200, MISSING), rec(1, 100, PRESENT)], 300);
        let d2 = decisions.iter().find(|d| d.backup_id == 2).unwrap();
        assert!(
            !d2.keep && d2.reasons.iter().any(|r| r.contains("interrupted prune")),
            "{d2:?}"
        );
        let d1 = decisions.iter().find(|d| d.backup_id == 1).unwrap();
        assert!(
            d1.keep && d1.reasons.iter().any(|r| r == "newest verified"),
            "{d1:?}"
        );
    }

    #[test]
    fn a_service_retention_replaces_the_tiers_for_that_service_only() {
        let config = Config::parse(
            "[catalog]\npath = \"/tmp/x.db\"\n[tiers.local]\ntype = \"local\"\npath = \"/tmp/x\"\n\
             retention = { keep_last = 5 }\n[services.wal]\ndriver = \"postgres_wal\"\nspool = \"/tmp/s\"\n\
             schedule = [\"*/5 * * * *\"]\n",
            std::path::Path::new("/tmp/t.toml"),
        )
        .unwrap();
        let rec = |id: i64, service: &str, t: i64| ArtifactRecord {
            copies: vec![crate::catalog::CopyRecord {
                tier: "local".into(),
                state: PRESENT.into(),
                stored_at: 0,
                verified_at: Some(0),
                error: None,
            }],
            ..ArtifactRecord::for_test(id, service, t)
        };
        let hour = 3600;
        let now = 100 * hour;
        // Three WAL backups 1, 30 and 50 hours old; three of another service as old.
        let list = [
            rec(1, "wal", now - hour),
            rec(2, "wal", now - 30 * hour),
            rec(3, "wal", now - 50 * hour),
            rec(4, "pg", now - hour),
            rec(5, "pg", now - 30 * hour),
            rec(6, "pg", now - 50 * hour),
        ];
        let mut kept: Vec<i64> = plan(&config, &list, now)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.backup_id)
            .collect();
        kept.sort();
        // WAL: 24 hours (the driver's default); pg: the tier's keep_last = 5.
        assert_eq!(kept, [1, 4, 5, 6]);
    }

    #[test]
    fn wal_after_the_newest_base_backup_stays_past_its_retention() {
        let config = Config::parse(
            "[catalog]\npath = \"/tmp/x.db\"\n[tiers.local]\ntype = \"local\"\npath = \"/tmp/x\"\n\
             [services.base]\ndriver = \"postgres\"\nbase_backup = true\n\
             [services.wal]\ndriver = \"postgres_wal\"\nspool = \"/tmp/s\"\nbase = \"base\"\n",
            std::path::Path::new("/tmp/t.toml"),
        )
        .unwrap();
        let rec = |id: i64, service: &str, file: &str, t: i64, verified: bool| ArtifactRecord {
            file: file.into(),
            copies: vec![crate::catalog::CopyRecord {
                tier: "local".into(),
                state: PRESENT.into(),
                stored_at: 0,
                verified_at: verified.then_some(0),
                error: None,
            }],
            ..ArtifactRecord::for_test(id, service, t)
        };
        let hour = 3600;
        let now = 200 * hour;
        let wal = |id: i64, age: i64| {
            rec(
                id,
                "wal",
                "000000010000000000000003_000000.wal",
                now - age * hour,
                true,
            )
        };
        // Base backups failed for two days: the newest good one is 60 hours old.
        let mut list = vec![
            rec(1, "base", "base_000000.tar", now - 60 * hour, true),
            rec(2, "base", "base_000000.tar", now - 90 * hour, true),
            wal(10, 1),
            wal(11, 30),
            wal(12, 59),
            wal(13, 61),
        ];
        let kept = |list: &[ArtifactRecord]| -> Vec<i64> {
            let mut k: Vec<i64> = plan(&config, list, now)
                .into_iter()
                .filter(|d| d.keep && d.service == "wal")
                .map(|d| d.backup_id)
                .collect();
            k.sort();
            k
        };
        assert_eq!(kept(&list), [10, 11, 12]);
        // The newest base backup not verified yet: WAL since the newest verified one stays too.
        list.push(rec(3, "base", "base_000000.tar", now - 2 * hour, false));
        assert_eq!(kept(&list), [10, 11, 12]);
        list[6].copies[0].verified_at = Some(0);
        assert_eq!(kept(&list), [10]);
    }
}
