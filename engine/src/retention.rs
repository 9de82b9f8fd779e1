//! Retention rules, restic-style: which backups of a series `keep_last`, `keep_hourly`, …,
//! `keep_within` keep. Pure functions; [`crate::plan`] applies them per tier and service.

use std::collections::HashMap;

use crate::config::Retention;
use crate::id::BackupId;

/// A period of time that retention rules and copy policies count in. Weeks start on Monday;
/// for [`Period::Last`] every backup is its own period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    /// The name the config uses (`keep_daily`, `copy = ["daily"]`), which is also the reason
    /// the plan gives for what a rule keeps.
    pub fn name(self) -> &'static str {
        match self {
            Period::Last => "last",
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period named `name`, if any.
    pub fn parse(name: &str) -> Option<Period> {
        Some(match name {
            "last" => Period::Last,
            "hourly" => Period::Hourly,
            "daily" => Period::Daily,
            "weekly" => Period::Weekly,
            "monthly" => Period::Monthly,
            "yearly" => Period::Yearly,
            _ => return None,
        })
    }

    /// The number of the period a time (Unix seconds, UTC) falls in.
    pub fn of(self, t: i64) -> i64 {
        let date = || {
            time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        };
        match self {
            Period::Last => t,
            Period::Hourly => t.div_euclid(3600),
            Period::Daily => t.div_euclid(86_400),
            // 1970-01-01 was a Thursday: +3 days makes weeks start on Monday.
            Period::Weekly => (t.div_euclid(86_400) + 3).div_euclid(7),
            Period::Monthly => date().year() as i64 * 12 + date().month() as i64,
            Period::Yearly => date().year() as i64,
        }
    }
}

/// What `policy` keeps of one series (`(backup id, taken at)`, newest first), restic's way: for
/// each rule, walk from the newest and keep the newest backup of each new period until the
/// rule's count is used up. Returns the kept ids with the rules that keep them.
pub fn kept_by(
    policy: &Retention,
    list: &[(BackupId, i64)],
    now: i64,
) -> HashMap<BackupId, Vec<&'static str>> {
    let mut kept: HashMap<BackupId, Vec<&'static str>> = HashMap::new();
    if policy.is_unset() {
        for &(id, _) in list {
            kept.entry(id).or_default().push("no retention policy");
        }
        return kept;
    }
    let rules: [(Period, Option<u32>); 6] = [
        (Period::Last, policy.keep_last),
        (Period::Hourly, policy.keep_hourly),
        (Period::Daily, policy.keep_daily),
        (Period::Weekly, policy.keep_weekly),
        (Period::Monthly, policy.keep_monthly),
        (Period::Yearly, policy.keep_yearly),
    ];
    for (period, count) in rules {
        let Some(mut left) = count else { continue };
        let mut previous = None;
        for &(id, taken_at) in list {
            if left == 0 {
                break;
            }
            let b = period.of(taken_at);
            if previous != Some(b) {
                previous = Some(b);
                kept.entry(id).or_default().push(period.name());
                left -= 1;
            }
        }
    }
    if let Some(within) = policy.keep_within {
        for &(id, _) in list.iter().filter(|b| now - b.1 <= within as i64) {
            kept.entry(id).or_default().push("within");
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The times kept of a series of backups at `times` (ids are the times).
    fn kept(policy: &Retention, times: &[i64], now: i64) -> Vec<i64> {
        let mut list: Vec<(BackupId, i64)> = times.iter().map(|&t| (BackupId::new(t), t)).collect();
        list.sort_by_key(|b| std::cmp::Reverse(b.1));
        let mut k: Vec<i64> = kept_by(policy, &list, now)
            .into_keys()
            .map(BackupId::get)
            .collect();
        k.sort();
        k
    }

    #[test]
    fn hourly_backups_kept_like_the_seed() {
        // Hourly backups for 40 days; the seed's local tier: 168 hourly, 30 daily, 12 weekly.
        let end = 1_770_000_000 - 1_770_000_000 % 3600;
        let times: Vec<i64> = (0..40 * 24).map(|h| end - h * 3600).collect();
        let policy = Retention {
            keep_hourly: Some(168),
            keep_daily: Some(30),
            keep_weekly: Some(12),
            ..Default::default()
        };
        let k = kept(&policy, &times, end);
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
        let within = Retention {
            keep_within: Some(90 * 86_400),
            ..Default::default()
        };
        assert_eq!(kept(&within, &times, now).len(), 91);
        let monthly = Retention {
            keep_monthly: Some(u32::MAX),
            ..Default::default()
        };
        let months: HashSet<i64> = times.iter().map(|t| t / (30 * 86_400)).collect();
        let k = kept(&monthly, &times, now);
        assert!(k.len() >= months.len() - 1 && k.len() <= 5);
    }

    #[test]
    fn periods_are_named_as_the_config_names_them() {
        for p in [
            Period::Last,
            Period::Hourly,
            Period::Daily,
            Period::Weekly,
            Period::Monthly,
            Period::Yearly,
        ] {
            assert_eq!(Period::parse(p.name()), Some(p));
        }
        assert_eq!(Period::parse("all"), None);
        // 2026-01-19 was a Monday: its week starts then, not on the Sunday before.
        let monday = 1_768_780_800;
        assert_eq!(
            Period::Weekly.of(monday),
            Period::Weekly.of(monday + 6 * 86_400)
        );
        assert_ne!(Period::Weekly.of(monday), Period::Weekly.of(monday - 1));
    }

    #[test]
    fn no_policy_keeps_everything() {
        assert_eq!(kept(&Retention::default(), &[1, 2, 3], 10).len(), 3);
        let only_pins = Retention {
            keep_pinned: true,
            ..Default::default()
        };
        assert_eq!(kept(&only_pins, &[1, 2, 3], 10).len(), 3);
    }
}
