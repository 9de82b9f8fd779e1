//! The one clock every command reads: catalog timestamps, schedules, retention, verification
//! rotation, ages in metrics and status, the mount's audit log.
//!
//! `TIERBACK_NOW` (RFC 3339, `2027-01-16T12:00:00Z`, or Unix seconds) says what time it is when
//! the process starts; the clock then advances with real time, so durations stay real. It exists
//! to simulate months of cron in minutes and to test schedules; production leaves it unset.
//! Times compared with a server's own clock (S3 upload dates) use the system clock instead.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The environment variable that sets the clock.
pub const NOW_VAR: &str = "TIERBACK_NOW";

struct Clock {
    /// Unix seconds at `started`.
    base: i64,
    started: Instant,
}

static CLOCK: OnceLock<Clock> = OnceLock::new();

fn clock() -> &'static Clock {
    CLOCK.get_or_init(|| Clock {
        // An unparsable value was refused by `check_env` at start-up; library users that skip
        // it get the system clock.
        base: from_env().ok().flatten().unwrap_or_else(system_now),
        started: Instant::now(),
    })
}

/// Unix seconds, UTC, on the tierback clock.
pub fn now() -> i64 {
    let c = clock();
    c.base + c.started.elapsed().as_secs() as i64
}

/// The system's own clock, for comparisons with other machines' timestamps.
pub fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks `TIERBACK_NOW` once at start-up so a typo is an error, not a silently real clock.
pub fn check_env() -> Result<(), String> {
    from_env().map(drop)
}

fn from_env() -> Result<Option<i64>, String> {
    match std::env::var(NOW_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{NOW_VAR} is not UTF-8")),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => parse(&v).map(Some),
    }
}

/// Parses RFC 3339 (`2027-01-16T12:00:00Z`) or Unix seconds.
pub fn parse(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|d| d.unix_timestamp())
        .map_err(|_| {
            format!("{NOW_VAR}={t:?} is neither RFC 3339 (2027-01-16T12:00:00Z) nor Unix seconds")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_unix_seconds() {
        assert_eq!(parse("1768564800"), Ok(1_768_564_800));
        assert_eq!(parse("2026-01-16T12:00:00Z"), Ok(1_768_564_800));
        assert_eq!(parse("2026-01-16T13:00:00+01:00"), Ok(1_768_564_800));
        let e = parse("yesterday").unwrap_err();
        assert!(e.contains("TIERBACK_NOW") && e.contains("yesterday"), "{e}");
    }
}
