//! Names and paths: the same relative layout on every tier
//! (`<service>/<YYYY-MM-DD>/<name>_<HHMMSS>.<ext>.gz` plus sidecars) and the view path the mount
//! and `tierback cat` show (`<service>/<tier>/<YYYY-MM-DD>/<name>_<HHMMSS>.<ext>`).

use time::OffsetDateTime;
use time::macros::format_description;

use crate::{Error, Result};

/// Sidecar suffixes, appended to the stored object's key.
pub const SHA256_SUFFIX: &str = ".sha256";
pub const INDEX_SUFFIX: &str = ".idx";
pub const META_SUFFIX: &str = ".meta.json";

fn utc(ts: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(ts).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `2026-01-16` for a Unix time (UTC).
pub fn date_of(ts: i64) -> String {
    utc(ts)
        .format(format_description!("[year]-[month]-[day]"))
        .expect("formatting a date")
}

/// `2026-01-16T12:00:00Z`.
pub fn rfc3339(ts: i64) -> String {
    utc(ts)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatting a timestamp")
}

/// The decompressed file name: `zentoria_main_120000.sql`.
pub fn artifact_file(stem: &str, extension: &str, ts: i64) -> String {
    let t = utc(ts);
    format!(
        "{stem}_{:02}{:02}{:02}.{extension}",
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The object key on every tier: `postgresql/2026-01-16/zentoria_main_120000.sql.gz`.
pub fn object_key(service: &str, ts: i64, file: &str) -> String {
    format!("{service}/{}/{file}.gz", date_of(ts))
}

/// A path as the mount shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewPath {
    pub service: String,
    pub tier: String,
    pub date: String,
    pub file: String,
}

impl ViewPath {
    /// Parses `service/tier/date/file` (a leading mount point or `/` is not part of it).
    pub fn parse(path: &str) -> Result<ViewPath> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            [service, tier, date, file] if parts.iter().all(|p| !p.is_empty() && *p != "..") => {
                Ok(ViewPath {
                    service: service.to_string(),
                    tier: tier.to_string(),
                    date: date.to_string(),
                    file: file.to_string(),
                })
            }
            _ => Err(Error::Invalid(format!(
                "{path:?} is not a backup path: expected SERVICE/TIER/YYYY-MM-DD/FILE \
                 (for example postgresql/local/2026-01-16/zentoria_main_120000.sql; see `tierback list`)"
            ))),
        }
    }
}

impl std::fmt::Display for ViewPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.service, self.tier, self.date, self.file
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_seed() {
        let ts = 1_768_564_800; // 2026-01-16 12:00:00 UTC
        assert_eq!(date_of(ts), "2026-01-16");
        let f = artifact_file("custom", "bin", ts);
        assert_eq!(f, "custom_120000.bin");
        assert_eq!(
            object_key("custom", ts, &f),
            "custom/2026-01-16/custom_120000.bin.gz"
        );
        assert_eq!(rfc3339(ts), "2026-01-16T12:00:00Z");
    }

    #[test]
    fn view_paths() {
        let p = ViewPath::parse("/postgresql/local/2026-01-16/zentoria_main_120000.sql").unwrap();
        assert_eq!(p.tier, "local");
        assert_eq!(
            p.to_string(),
            "postgresql/local/2026-01-16/zentoria_main_120000.sql"
        );
        assert!(ViewPath::parse("postgresql/local").is_err());
        assert!(ViewPath::parse("a/../c/d").is_err());
    }
}
