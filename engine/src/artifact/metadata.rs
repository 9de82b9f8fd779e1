//! The per-artifact metadata sidecar (`NAME.gz.meta.json`): what the seed's metadata files hold,
//! plus enough to rebuild the catalog from a tier alone.
//!
//! Read back from a tier, the sidecar is untrusted: [`ArtifactMetadata::parse`] takes at most
//! [`MAX_LEN`] bytes and says in words which field is wrong (never a Rust type name), and
//! [`ArtifactMetadata::check`] holds the values to the layout's names and the format's limits.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::format::{self, MIN_MEMBER_LEN, max_member_len};
use crate::id::quoted;
use crate::source::Facts;

/// The largest metadata sidecar read from a tier. A real one is a few KiB; per-table row counts
/// of a database with ten thousand tables make a few hundred.
pub const MAX_LEN: u64 = 1 << 20;

/// Times within which a backup can have been taken (1970 to the end of 9999).
const LATEST: i64 = 253_402_300_799;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArtifactMetadata {
    pub service: String,
    /// `<service>-<YYYYMMDDTHHMMSSZ>`: the backup this artifact belongs to.
    pub backup_id: String,
    pub file: String,
    pub taken_at: String,
    pub taken_at_unix: i64,
    pub driver: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
    pub block_size: u32,
    pub block_count: u64,
    pub compression_level: i32,
    pub tool: String,
    pub facts: Facts,
}

/// Read through [`ArtifactMetadata::from_value`], so a wrong field is described in words
/// (`field "raw_size" should be a whole number from 0 up, not a string`).
impl<'de> Deserialize<'de> for ArtifactMetadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ArtifactMetadata::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A stable, readable backup id.
pub fn backup_id(service: &str, taken_at: i64) -> String {
    let date = crate::layout::rfc3339(taken_at).replace(['-', ':'], "");
    format!("{service}-{date}")
}

/// What a JSON value is, in words: `a string`, `the number -1`.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The fields of a metadata object, taken one by one with a readable complaint.
struct Fields(serde_json::Map<String, Value>);

impl Fields {
    fn take(&mut self, key: &str) -> Result<Value, String> {
        self.0
            .remove(key)
            .ok_or_else(|| format!("field \"{key}\" is missing"))
    }

    fn string(&mut self, key: &str) -> Result<String, String> {
        match self.take(key)? {
            Value::String(s) => Ok(s),
            v => Err(format!(
                "field \"{key}\" should be a string, not {}",
                describe(&v)
            )),
        }
    }

    /// A whole number within `min..=max`.
    fn integer(&mut self, key: &str, min: i128, max: i128) -> Result<i128, String> {
        let v = self.take(key)?;
        let n = match &v {
            Value::Number(n) => n
                .as_u64()
                .map(i128::from)
                .or_else(|| n.as_i64().map(i128::from)),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ if max == u64::MAX as i128 && min == 0 => Err(format!(
                "field \"{key}\" should be a whole number from 0 up, not {}",
                describe(&v)
            )),
            _ => Err(format!(
                "field \"{key}\" should be a whole number from {min} to {max}, not {}",
                describe(&v)
            )),
        }
    }

    fn u64(&mut self, key: &str) -> Result<u64, String> {
        Ok(self.integer(key, 0, u64::MAX as i128)? as u64)
    }
}

impl ArtifactMetadata {
    /// Parses a sidecar's bytes as read from a tier: at most [`MAX_LEN`] of them, JSON, the
    /// fields every sidecar has. Values are not checked here (see [`Self::check`]).
    pub fn parse(bytes: &[u8]) -> Result<ArtifactMetadata, String> {
        if bytes.len() as u64 > MAX_LEN {
            return Err(format!(
                "it is {} bytes, a metadata sidecar is at most {MAX_LEN}",
                bytes.len()
            ));
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        ArtifactMetadata::from_value(value)
    }

    /// The metadata a JSON value holds; extra fields are ignored (a newer tool may add some).
    pub fn from_value(value: Value) -> Result<ArtifactMetadata, String> {
        let Value::Object(map) = value else {
            return Err(format!(
                "the metadata should be a JSON object, not {}",
                describe(&value)
            ));
        };
        let mut f = Fields(map);
        Ok(ArtifactMetadata {
            service: f.string("service")?,
            backup_id: f.string("backup_id")?,
            file: f.string("file")?,
            taken_at: f.string("taken_at")?,
            taken_at_unix: f.integer("taken_at_unix", i64::MIN as i128, i64::MAX as i128)? as i64,
            driver: f.string("driver")?,
            raw_size: f.u64("raw_size")?,
            raw_sha256: f.string("raw_sha256")?,
            stored_size: f.u64("stored_size")?,
            stored_sha256: f.string("stored_sha256")?,
            block_size: f.integer("block_size", 0, u32::MAX as i128)? as u32,
            block_count: f.u64("block_count")?,
            compression_level: f.integer("compression_level", i32::MIN as i128, i32::MAX as i128)?
                as i32,
            tool: f.string("tool")?,
            facts: match f.take("facts")? {
                Value::Object(m) => m,
                v => {
                    return Err(format!(
                        "field \"facts\" should be an object, not {}",
                        describe(&v)
                    ));
                }
            },
        })
    }

    /// The service, held to the config's rules for a name (what [`ArtifactMetadata::check`]
    /// checks it against).
    pub fn service_name(&self) -> Result<crate::id::ServiceName, String> {
        crate::id::ServiceName::new(self.service.as_str()).map_err(|e| e.to_string())
    }

    /// Checks what a sidecar from a tier says against the layout and the format, before any of
    /// it is used: names as the config would accept them, the time within range, SHA-256s as
    /// hex, the block size within 4 KiB–64 MiB, a block count that fits the raw size, and a
    /// stored size that the members of those blocks can have.
    pub fn check(&self) -> Result<(), String> {
        self.service_name()?;
        crate::id::check_name(&self.driver, "driver name")?;
        if !(0..=LATEST).contains(&self.taken_at_unix) {
            return Err(format!(
                "taken_at_unix {} is not a time between 1970 and 9999",
                self.taken_at_unix
            ));
        }
        crate::id::check_artifact_file(&self.file, self.taken_at_unix)?;
        for (what, hash) in [
            ("raw_sha256", &self.raw_sha256),
            ("stored_sha256", &self.stored_sha256),
        ] {
            if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(format!(
                    "{what} {} is not a SHA-256 (64 lowercase hex digits)",
                    quoted(hash)
                ));
            }
        }
        if !(1..=12).contains(&self.compression_level) {
            return Err(format!(
                "compression level {} is outside 1 to 12",
                self.compression_level
            ));
        }
        format::check_block_size(self.block_size as u64)?;
        let bs = self.block_size as u64;
        let blocks = self.raw_size.div_ceil(bs).max(1);
        if self.block_count != blocks {
            return Err(format!(
                "{} blocks do not hold {} raw bytes with block size {bs} ({blocks} do)",
                self.block_count, self.raw_size
            ));
        }
        // Every block but the last is full; the last holds the rest.
        let last_raw = (self.raw_size - (blocks - 1) * bs) as u32;
        let least = blocks as u128 * MIN_MEMBER_LEN as u128;
        let most = (blocks - 1) as u128 * max_member_len(self.block_size) as u128
            + max_member_len(last_raw) as u128;
        let stored = self.stored_size as u128;
        let members = if blocks == 1 {
            "1 member".to_owned()
        } else {
            format!("{blocks} members")
        };
        if stored < least {
            return Err(format!(
                "stored size {stored} is less than {members} take ({least} bytes at least)"
            ));
        }
        if stored > most {
            return Err(format!(
                "stored size {stored} is more than {members} holding {} raw bytes can be \
                 ({most} bytes at most)",
                self.raw_size
            ));
        }
        Ok(())
    }

    /// The metadata of an artifact the catalog knows, as the sidecar holds it.
    pub fn from_record(a: &crate::catalog::ArtifactRecord) -> ArtifactMetadata {
        ArtifactMetadata {
            service: a.service.to_string(),
            backup_id: backup_id(a.service.as_str(), a.taken_at),
            file: a.file.clone(),
            taken_at: crate::layout::rfc3339(a.taken_at),
            taken_at_unix: a.taken_at,
            driver: a.driver.clone(),
            raw_size: a.raw_size,
            raw_sha256: a.raw_sha256.clone(),
            stored_size: a.stored_size,
            stored_sha256: a.stored_sha256.clone(),
            block_size: a.block_size,
            block_count: a.block_count,
            compression_level: a.compression_level,
            tool: crate::TOOL_VERSION.to_owned(),
            facts: match &a.facts {
                serde_json::Value::Object(m) => m.clone(),
                _ => Facts::new(),
            },
        }
    }

    /// The keys of the sidecars beside `key`, in the order they are written (metadata last).
    pub fn sidecar_keys(key: &str) -> Vec<String> {
        use crate::layout::{INDEX_SUFFIX, META_SUFFIX, SHA256_SUFFIX};
        vec![
            format!("{key}{INDEX_SUFFIX}"),
            format!("{key}{SHA256_SUFFIX}"),
            format!("{key}{META_SUFFIX}"),
        ]
    }

    /// The `sha256sum` line of the stored file `gz_name`, as its `.sha256` sidecar holds it.
    pub fn sha256_line(&self, gz_name: &str) -> String {
        format!("{}  {gz_name}\n", self.stored_sha256)
    }

    /// The sidecars stored beside `key` on every tier, as (key, bytes): the block index, the
    /// `sha256sum` line of the stored file, and this metadata. The metadata comes last: its
    /// presence is what marks a complete copy on a tier.
    pub fn sidecars(
        &self,
        key: &str,
        index: &crate::artifact::BlockIndex,
    ) -> Vec<(String, Vec<u8>)> {
        use crate::layout::{INDEX_SUFFIX, META_SUFFIX, SHA256_SUFFIX};
        let gz_name = key.rsplit('/').next().unwrap_or(key);
        vec![
            (format!("{key}{INDEX_SUFFIX}"), index.encode()),
            (
                format!("{key}{SHA256_SUFFIX}"),
                self.sha256_line(gz_name).into_bytes(),
            ),
            (
                format!("{key}{META_SUFFIX}"),
                serde_json::to_vec_pretty(self).expect("metadata serializes"),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ArtifactMetadata {
        let ts = 1_768_564_800; // 2026-01-16 12:00:00 UTC
        ArtifactMetadata {
            service: "postgresql".into(),
            backup_id: backup_id("postgresql", ts),
            file: "zentoria_main_120000.sql".into(),
            taken_at: crate::layout::rfc3339(ts),
            taken_at_unix: ts,
            driver: "postgres".into(),
            raw_size: 3 << 20,
            raw_sha256: "ab".repeat(32),
            stored_size: 400_000,
            stored_sha256: "cd".repeat(32),
            block_size: 1 << 20,
            block_count: 3,
            compression_level: 9,
            tool: crate::TOOL_VERSION.into(),
            facts: serde_json::json!({"server_version": "16.2", "row_counts": {"t": 3}})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    #[test]
    fn sidecar_json_round_trips_and_checks() {
        let m = sample();
        m.check().unwrap();
        let json = serde_json::to_vec_pretty(&m).unwrap();
        assert_eq!(ArtifactMetadata::parse(&json).unwrap(), m);
        assert_eq!(
            serde_json::from_slice::<ArtifactMetadata>(&json).unwrap(),
            m
        );
    }

    #[test]
    fn json_errors_say_which_field_in_words() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["raw_size"] = "big".into();
        let text = serde_json::to_vec(&v).unwrap();
        let e = ArtifactMetadata::parse(&text).unwrap_err();
        assert_eq!(
            e,
            "field \"raw_size\" should be a whole number from 0 up, not a string"
        );
        // Through serde (as `verify` reads it) the words are the same.
        let e = serde_json::from_slice::<ArtifactMetadata>(&text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("field \"raw_size\" should be"), "{e}");
        v["raw_size"] = 5.into();
        v["block_size"] = (-1).into();
        let e = ArtifactMetadata::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(
            e,
            "field \"block_size\" should be a whole number from 0 to 4294967295, not the number -1"
        );
        v.as_object_mut().unwrap().remove("service");
        let e = ArtifactMetadata::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(e, "field \"service\" is missing");
        for (bad, words) in [
            (&b"[1, 2]"[..], "should be a JSON object, not a list"),
            (b"{\"service\": ", "not valid JSON: EOF while parsing"),
            (b"", "not valid JSON"),
            (b"7", "not the number 7"),
        ] {
            let e = ArtifactMetadata::parse(bad).unwrap_err();
            assert!(e.contains(words), "{e}");
            let e = serde_json::from_slice::<ArtifactMetadata>(bad)
                .unwrap_err()
                .to_string();
            for rust in ["struct", "ArtifactMetadata", "u64", "i64", "u32", "i32"] {
                assert!(!e.contains(rust), "{e}");
            }
        }
        let e = ArtifactMetadata::parse(&vec![b' '; MAX_LEN as usize + 1]).unwrap_err();
        assert!(e.contains("at most 1048576"), "{e}");
    }

    #[test]
    fn values_outside_the_layout_and_format_are_refused() {
        type Change = fn(&mut ArtifactMetadata);
        let cases: [(Change, &str); 11] = [
            (
                |m| m.service = "x/good1".into(),
                "invalid service name \"x/good1\"",
            ),
            (
                |m| m.file = "sub/zentoria_main_120000.sql".into(),
                "is not the layout's",
            ),
            (|m| m.file = "evil\u{1b}[2J_120000.sql".into(), "\\u{1b}"),
            (|m| m.file = "zentoria_main_130000.sql".into(), "_120000."),
            (|m| m.driver = "pg\ndump".into(), "invalid driver name"),
            (
                |m| m.block_size = 1280 << 20,
                "block size 1342177280 bytes (1.2 GiB) is outside",
            ),
            (|m| m.block_size = 1024, "outside the 4 KiB–64 MiB"),
            (|m| m.block_count = 1, "1 blocks do not hold"),
            (
                |m| m.stored_size = 2 << 30,
                "stored size 2147483648 is more than 3 members",
            ),
            (|m| m.raw_sha256 = "AB".repeat(32), "raw_sha256"),
            (|m| m.taken_at_unix = -5, "taken_at_unix -5"),
        ];
        for (change, words) in cases {
            let mut m = sample();
            change(&mut m);
            let e = m.check().unwrap_err();
            assert!(e.contains(words), "{words}: {e}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::artifact::format::testing::{config, peak_alloc};

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<String>().prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                    proptest::collection::btree_map(any::<String>(), inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn metadata() -> impl Strategy<Value = ArtifactMetadata> {
            (
                (
                    any::<String>(),
                    any::<String>(),
                    any::<String>(),
                    any::<String>(),
                ),
                (any::<i64>(), any::<String>(), any::<u64>(), any::<u64>()),
                (any::<u32>(), any::<u64>(), any::<i32>(), any::<String>()),
                proptest::collection::btree_map(any::<String>(), json_value(), 0..4),
            )
                .prop_map(|(a, b, c, facts)| ArtifactMetadata {
                    service: a.0,
                    backup_id: a.1,
                    file: a.2,
                    taken_at: a.3,
                    taken_at_unix: b.0,
                    driver: b.1,
                    raw_size: b.2,
                    raw_sha256: "0".repeat(64),
                    stored_size: b.3,
                    stored_sha256: "f".repeat(64),
                    block_size: c.0,
                    block_count: c.1,
                    compression_level: c.2,
                    tool: c.3,
                    facts: facts.into_iter().collect(),
                })
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn metadata_json_round_trips(m in metadata(), pretty in any::<bool>()) {
                let json = if pretty {
                    serde_json::to_vec_pretty(&m).unwrap()
                } else {
                    serde_json::to_vec(&m).unwrap()
                };
                prop_assert_eq!(ArtifactMetadata::parse(&json), Ok(m.clone()));
                prop_assert_eq!(serde_json::from_slice::<ArtifactMetadata>(&json).unwrap(), m);
            }

            /// Any bytes: a value or an error, never a panic, memory in proportion to the input
            /// (serde_json's values are at most a few dozen bytes per input byte), and errors
            /// that name no Rust type.
            #[test]
            fn any_bytes_parse_or_fail_within_their_length(
                bytes in prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..2000),
                    json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
                    (metadata(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(m, at, b)| {
                        let mut j = serde_json::to_vec(&m).unwrap();
                        let i = at.index(j.len());
                        j[i] = b;
                        j
                    }),
                ],
            ) {
                let n = bytes.len();
                let (parsed, peak) = peak_alloc(|| ArtifactMetadata::parse(&bytes));
                prop_assert!(peak <= 64 * n + 4096, "{n} bytes allocated {peak}");
                match parsed {
                    Ok(m) => { let _ = m.check(); }
                    Err(e) => {
                        for rust in ["struct", "ArtifactMetadata", "u64", "i64", "u32", "i32", "Map"] {
                            prop_assert!(!e.contains(rust), "{}", e);
                        }
                    }
                }
            }

            /// A metadata that passes `check` describes blocks the index and format can hold.
            #[test]
            fn checked_metadata_is_within_the_format(m in metadata()) {
                if m.check().is_ok() {
                    prop_assert!(format::check_block_size(m.block_size as u64).is_ok());
                    prop_assert!(m.block_count >= 1);
                    prop_assert!(m.stored_size >= m.block_count * MIN_MEMBER_LEN as u64);
                    prop_assert!(crate::store::check_key(
                        &crate::layout::object_key(&m.service, m.taken_at_unix, &m.file)
                    ).is_ok());
                }
            }
        }
    }
}
