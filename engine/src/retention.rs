//! Retention rules, restic-style: which backups of a series `keep_last`, `keep_hourly`, …,
//! `keep_within` keep. Pure functions; [`crate::plan`] applies them per tier and service.

use std::collections::HashMap;

use crate::config::Retention;

/// What `policy` keeps of one series (`(backup id, taken at)`, newest first), restic's way: for
/// each rule, walk from the newest and keep the newest backup of each new period until the
/// rule's count is used up. Returns the kept ids with the rules that keep them.
pub fn kept_by(
    policy: &Retention,
    list: &[(i64, i64)],
    now: i64,
) -> HashMap<i64, Vec<&'static str>> {
    let mut kept: HashMap<i64, Vec<&'static str>> = HashMap::new();
    if policy.is_unset() {
        for &(id, _) in list {
            kept.entry(id).or_default().push("no retention policy");
        }
        return kept;
    }
    let rules: [(&'static str, Option<u32>); 6] = [
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
        for &(id, taken_at) in list {
            if left == 0 {
                break;
            }
            let b = period(name, taken_at).expect("every rule names a period");
            if previous != Some(b) {
                previous = Some(b);
                kept.entry(id).or_default().push(name);
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

/// The period a time (Unix seconds, UTC) falls in, shared by retention rules and copy policies:
/// `hourly`, `daily`, `weekly` (weeks start on Monday), `monthly`, `yearly`; for `last` every
/// backup is its own period. `None` for an unknown name.
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The times kept of a series of backups at `times` (ids are the times).
    fn kept(policy: &Retention, times: &[i64], now: i64) -> Vec<i64> {
        let mut list: Vec<(i64, i64)> = times.iter().map(|&t| (t, t)).collect();
        list.sort_by_key(|b| std::cmp::Reverse(b.1));
        let mut k: Vec<i64> = kept_by(policy, &list, now).into_keys().collect();
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
    fn no_policy_keeps_everything() {
        assert_eq!(kept(&Retention::default(), &[1, 2, 3], 10).len(), 3);
        let only_pins = Retention {
            keep_pinned: true,
            ..Default::default()
        };
        assert_eq!(kept(&only_pins, &[1, 2, 3], 10).len(), 3);
    }
}
