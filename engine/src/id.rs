//! Identifiers validated once, so that a name can be used in a path without escaping tricks:
//! no `/`, no `..`, no control characters, nothing empty. The same rules hold for names read
//! back from a tier's sidecars ([`check_artifact_file`]), and [`escape_control`] makes any text
//! from the catalog safe to print on a terminal. Catalog rows are named by their id types
//! ([`BackupId`], [`ArtifactId`], [`RunId`]), so that one kind of id cannot be passed for another.

use std::borrow::{Borrow, Cow};
use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate(&value, $what)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// As its text, padded like a string (`{:<10}` lines up columns of names).
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Hashes and orders as its text, so a map keyed by the name can be looked up by `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        /// Serialized as the plain string, so JSON output holds what it held before.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        /// Read back through [`$name::new`]: a name that is not one is an error.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }

        /// Stored as the plain text it is, as the catalog held it before there was a type.
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        /// Read back through [`$name::new`]: a catalog row whose name is not one is an error,
        /// not a path component waiting to happen.
        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                Self::new(String::column_result(value)?).map_err(FromSqlError::other)
            }
        }
    };
}

name_type!(
    /// A configured service (`postgresql`, `redis`, …): the first level of every layout.
    ServiceName,
    "service name"
);
name_type!(
    /// A configured tier (`local`, `minio`, `offsite`, …).
    TierName,
    "tier name"
);

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Stored as the table's integer primary key and serialized as that number, so the
        /// catalog and the JSON output hold exactly what they held before there was a type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id of the row numbered `raw`.
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }
            /// The row number.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(value).map(Self)
            }
        }
    };
}

row_id!(
    /// A backup: one service's dump at one time (a row of `backups`), outliving its files as
    /// history.
    BackupId
);
row_id!(
    /// One file of a backup (a row of `artifacts`).
    ArtifactId
);
row_id!(
    /// One run of a command or job (a row of `runs`).
    RunId
);

fn validate(value: &str, what: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value != "."
        && value != ".."
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid {what} {}: use letters, digits, '_', '-' and '.' (not leading)",
            quoted(value)
        )))
    }
}

/// Checks a file-name stem or extension used in an artifact name.
pub fn validate_file_part(value: &str, what: &str) -> Result<()> {
    validate(value, what)
}

/// Checks a driver name (`postgres`, `command`, …) read from a tier: a name, like a service's.
pub fn check_name(value: &str, what: &str) -> std::result::Result<(), String> {
    validate(value, what).map_err(|e| e.to_string())
}

/// Checks an artifact's decompressed file name as read from a tier: the layout's
/// `<name>_<HHMMSS>.<ext>` for the time it was `taken_at`, a single path component whose name and
/// extension are names like a service's (no `/`, no control characters, not hidden).
pub fn check_artifact_file(file: &str, taken_at: i64) -> std::result::Result<(), String> {
    // `_HHMMSS.`, the separator between the name and the extension.
    let sep = crate::layout::artifact_file("", "", taken_at);
    let shape = || {
        format!(
            "file name {} is not the layout's <name>{sep}<extension> (a single name of \
             letters, digits, '_', '-' and '.')",
            quoted(file)
        )
    };
    let Some(at) = file.rfind(&sep) else {
        return Err(shape());
    };
    let (stem, ext) = (&file[..at], &file[at + sep.len()..]);
    if validate(stem, "name").is_err() || validate(ext, "extension").is_err() {
        return Err(shape());
    }
    Ok(())
}

/// `text` quoted for a message, its control characters escaped (`"a\u{1b}b"`), cut to its first
/// 100 characters when longer: a name from a hostile tier may be a megabyte long.
pub fn quoted(text: &str) -> String {
    match text.char_indices().nth(100) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// `text` with every control character (C0, DEL, C1) and every bidirectional-override
/// character escaped visibly (`\x1b`, `\n`, `\u{202e}`), so text that came from a tier can
/// neither move the cursor, ring the bell, forge a line nor reorder what a terminal shows.
/// Escaping is idempotent: escaped text has nothing left to escape.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    fn hostile(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hostile(c) && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if hostile(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_path_tricks() {
        for bad in ["", ".", "..", "a/b", "../x", ".hidden", "a b", "é"] {
            assert!(ServiceName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            ServiceName::new("postgresql").unwrap().as_str(),
            "postgresql"
        );
        assert!(TierName::new("minio-2").is_ok());
    }

    #[test]
    fn names_are_stored_and_serialized_as_their_text() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let name = TierName::new("minio-2").unwrap();
        let (text, kind): (String, String) = conn
            .query_row("SELECT ?1, typeof(?1)", [&name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((text.as_str(), kind.as_str()), ("minio-2", "text"));
        let back: TierName = conn
            .query_row("SELECT 'minio-2'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(back, name);
        let bad = conn
            .query_row("SELECT '../x'", [], |r| r.get::<_, ServiceName>(0))
            .unwrap_err();
        assert!(
            bad.to_string().contains("invalid service name \"../x\""),
            "{bad}"
        );

        assert_eq!(serde_json::to_string(&name).unwrap(), "\"minio-2\"");
        assert_eq!(
            serde_json::from_str::<TierName>("\"minio-2\"").unwrap(),
            name
        );
        assert!(serde_json::from_str::<ServiceName>("\"a/b\"").is_err());

        assert!(name == "minio-2" && name == *"minio-2");
        assert_eq!(
            format!("{name:<9}|{name:>8}|{name:.5}"),
            "minio-2  | minio-2|minio"
        );
        let services = std::collections::BTreeMap::from([(ServiceName::new("pg").unwrap(), 1)]);
        assert_eq!(services.get("pg"), Some(&1));
    }

    #[test]
    fn artifact_files_follow_the_layout() {
        let ts = 1_768_564_800; // 2026-01-16 12:00:00 UTC
        for good in [
            "zentoria_main_120000.sql",
            "dump_120000.rdb",
            "a_120000.b_120000.tar",
            "000000010000000000000001-00000028_120000.backup",
        ] {
            assert_eq!(check_artifact_file(good, ts), Ok(()), "{good}");
        }
        for bad in [
            "sub/name_120000.sql",
            "../name_120000.sql",
            "name_120000.sql/x",
            "name_130000.sql",
            "name.sql",
            "_120000.sql",
            "name_120000.",
            ".name_120000.sql",
            "evil\u{1b}[2J_120000.sql",
            "bell\u{7}_120000.sql",
            "forged\nSKIPPED x_120000.sql",
            "name_120000.sq\u{202e}l",
            "",
        ] {
            let e = check_artifact_file(bad, ts).unwrap_err();
            assert!(
                !e.contains('\u{1b}') && !e.contains('\n') && !e.contains('\u{7}'),
                "{e}"
            );
        }
    }

    #[test]
    fn control_characters_are_escaped_visibly() {
        assert_eq!(escape_control("plain_120000.sql"), "plain_120000.sql");
        assert!(matches!(escape_control("plain"), Cow::Borrowed(_)));
        let e = escape_control("a\u{1b}[31mb\u{7}\nc\r\t\u{7f}\u{85}\u{202e}");
        assert_eq!(e, "a\\x1b[31mb\\x07\\nc\\r\\t\\x7f\\u{85}\\u{202e}");
        assert_eq!(escape_control(&e), e, "idempotent");
        assert_eq!(escape_control("café ✓"), "café ✓");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::artifact::format::testing::config;

        fn hostile_name() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z_.-]{0,12}",
                "[a-z]{1,5}[/\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202e} .][a-z]{0,5}",
                any::<String>(),
                Just("..".to_string()),
            ]
        }

        proptest! {
            #![proptest_config(config())]

            /// Whatever a name is, an accepted one is safe in a path and on a terminal.
            #[test]
            fn accepted_names_are_single_printable_components(name in hostile_name()) {
                if ServiceName::new(name.clone()).is_ok() {
                    prop_assert!(!name.contains('/') && !name.starts_with('.'));
                    prop_assert!(!name.chars().any(char::is_control));
                    prop_assert!(!name.is_empty() && name != "..");
                }
            }

            #[test]
            fn accepted_files_are_single_printable_components(
                stem in hostile_name(),
                ext in hostile_name(),
                ts in 0i64..4_102_444_800,
            ) {
                let file = crate::layout::artifact_file(&stem, &ext, ts);
                let ok = check_artifact_file(&file, ts).is_ok();
                if ok {
                    prop_assert!(!file.contains('/') && !file.starts_with('.'));
                    prop_assert!(!file.chars().any(char::is_control));
                    prop_assert!(crate::store::check_key(&crate::layout::object_key("s", ts, &file)).is_ok());
                }
                if validate(&stem, "s").is_ok() && validate(&ext, "e").is_ok() {
                    prop_assert!(ok, "{file:?} refused");
                }
            }

            #[test]
            fn escaped_text_has_no_control_characters(text in any::<String>()) {
                let e = escape_control(&text);
                prop_assert!(!e.chars().any(|c| c.is_control()));
                prop_assert_eq!(escape_control(&e), e.clone());
            }

            /// Config text, from fragments of a real config with hostile names and values:
            /// parsing returns a config or an error, never panics, and a config it accepts
            /// names its services and tiers as `ServiceName`/`TierName` allow.
            #[test]
            fn any_config_text_parses_or_fails(
                tier in hostile_name(),
                service in hostile_name(),
                block in prop_oneof!["[0-9]{1,12}(KiB|MiB|GiB|B|)", any::<String>()],
                level in any::<i64>(),
                noise in any::<String>(),
                cut in any::<prop::sample::Index>(),
            ) {
                let text = format!(
                    "[catalog]\npath = \"/tmp/c.db\"\n\n[defaults]\nblock_size = {block:?}\ncompression_level = {level}\n\n\
                     [tiers.{tier:?}]\ntype = \"local\"\npath = \"/tmp/t\"\n\n\
                     [services.{service:?}]\ndriver = \"command\"\nschedule = [\"0 * * * *\"]\ncommand = [\"true\"]\n"
                );
                for t in [text.clone(), format!("{text}{noise}"), {
                    let mut i = cut.index(text.len() + 1);
                    while !text.is_char_boundary(i) { i -= 1; }
                    text[..i].to_owned()
                }] {
                    if let Ok(c) = crate::config::Config::parse(&t, std::path::Path::new("/tmp/x.toml")) {
                        for (name, s) in &c.services {
                            prop_assert!(ServiceName::new(name.as_str()).is_ok());
                            prop_assert_eq!(name, &s.name);
                        }
                        for t in &c.tiers {
                            prop_assert!(TierName::new(t.name.as_str()).is_ok());
                        }
                        prop_assert!((4096..=64 << 20).contains(&c.defaults.block_size));
                    }
                }
            }
        }
    }
}
