//! Schedules: cron expressions (5 fields, UTC) per service and per job. `tierback run`, started
//! by cron every few minutes, does what is due: a service is due when one of its expressions
//! fired since its last attempt. A run missed while the machine was down is caught up once,
//! not once per missed slot; a failed attempt is not retried before the next slot, so a broken
//! source is reported (metrics, status) instead of hammered every few minutes.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;

/// Parses a cron expression: five fields (minute hour day-of-month month day-of-week) or a
/// nickname such as `@daily`; `Err` explains what is wrong with it. (The parser would take a
/// sixth field as seconds, which would make `0 0 * * * *` mean every hour, not every day.)
pub fn parse(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && fields != 5 {
        return Err(format!(
            "cron expression {expr:?} has {fields} fields; use five: minute hour day-of-month month day-of-week (e.g. \"0 2 * * *\")"
        ));
    }
    Cron::from_str(expr).map_err(|e| format!("cron expression {expr:?}: {e}"))
}

/// The latest time at or before `now` that any of `exprs` fired (Unix seconds).
pub fn last_slot(exprs: &[String], now: i64) -> Option<i64> {
    let now: DateTime<Utc> = DateTime::from_timestamp(now, 0)?;
    exprs
        .iter()
        .filter_map(|e| parse(e).ok())
        .filter_map(|c| c.find_previous_occurrence(&now, true).ok())
        .map(|t| t.timestamp())
        .max()
}

/// The first time after `now` that any of `exprs` fires (Unix seconds).
pub fn next_slot(exprs: &[String], now: i64) -> Option<i64> {
    let now: DateTime<Utc> = DateTime::from_timestamp(now, 0)?;
    exprs
        .iter()
        .filter_map(|e| parse(e).ok())
        .filter_map(|c| c.find_next_occurrence(&now, false).ok())
        .map(|t| t.timestamp())
        .min()
}

/// True when a slot fired after `last_attempt` (or there was no attempt yet and a slot fired).
pub fn is_due(exprs: &[String], last_attempt: Option<i64>, now: i64) -> bool {
    match (last_slot(exprs, now), last_attempt) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(slot), Some(last)) => last < slot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_768_564_800; // 2026-01-16 12:00:00 UTC (a Friday)

    #[test]
    fn hourly_is_due_once_per_hour() {
        let hourly = vec!["0 * * * *".to_string()];
        assert_eq!(last_slot(&hourly, T + 59), Some(T));
        assert!(is_due(&hourly, None, T + 1));
        assert!(is_due(&hourly, Some(T - 3600), T + 120));
        assert!(
            !is_due(&hourly, Some(T + 60), T + 600),
            "already attempted this hour"
        );
        assert!(is_due(&hourly, Some(T + 60), T + 3600 + 5));
    }

    #[test]
    fn a_missed_slot_is_caught_up_once() {
        let daily = vec!["0 2 * * *".to_string()];
        // Down from 01:00 to 09:00: at 09:05 the 02:00 run is due, then not again.
        let two = T - 10 * 3600; // 02:00
        assert!(is_due(&daily, Some(two - 86_400), T - 3 * 3600 + 300));
        assert!(!is_due(
            &daily,
            Some(T - 3 * 3600 + 300),
            T - 3 * 3600 + 600
        ));
    }

    #[test]
    fn the_latest_of_several_expressions_counts() {
        let pg = vec![
            "0 * * * *".to_string(),
            "0 2 * * *".to_string(),
            "0 3 * * 0".to_string(),
        ];
        assert_eq!(last_slot(&pg, T + 30 * 60), Some(T));
        assert_eq!(next_slot(&pg, T), Some(T + 3600));
        assert_eq!(
            next_slot(&["0 3 * * 0".to_string()], T),
            Some(T + 2 * 86_400 - 9 * 3600)
        );
        assert!(parse("61 * * * *").is_err());
        let e = parse("0 0 2 * * *").unwrap_err();
        assert!(e.contains("6 fields") && e.contains("five"), "{e}");
        assert!(parse("@daily").is_ok());
        assert!(parse("not cron").is_err());
        assert!(!is_due(&[], None, T));
    }
}
