//! What a tier keeps (`retention`, restic's rules) of what its `copy` policy selects.

use serde::Deserialize;

use crate::units::parse_age;

/// restic-style retention; `None` means the rule is not used, `u32::MAX` means "all".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Keep everything younger than this many seconds.
    pub keep_within: Option<u64>,
    /// Pinned backups (`tierback pin`) belong on this tier even if its copy policy did not pick
    /// them: sync sends them and they stay (the seed's offsite Archive, kept forever). A pin
    /// keeps a backup on the tiers that hold it whatever this says.
    pub keep_pinned: bool,
}

impl Retention {
    /// No rule at all: everything stays.
    pub fn is_unset(&self) -> bool {
        Retention {
            keep_pinned: false,
            ..self.clone()
        } == Retention::default()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    keep_last: Option<Count>,
    keep_hourly: Option<Count>,
    keep_daily: Option<Count>,
    keep_weekly: Option<Count>,
    keep_monthly: Option<Count>,
    keep_yearly: Option<Count>,
    keep_within: Option<String>,
    keep_pinned: Option<bool>,
}

/// A retention count: a number or the string "all" (anything else is reported by `retention`
/// with the key's name, not serde's "did not match any variant").
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Count {
    N(i64),
    Word(String),
    Other(toml::Value),
}

pub(super) fn retention(r: RawRetention) -> Result<Retention, String> {
    fn count(c: Option<Count>, key: &str) -> Result<Option<u32>, String> {
        match c {
            None => Ok(None),
            Some(Count::N(n)) => u32::try_from(n).map(Some).map_err(|_| {
                format!(
                    "{key} = {n}: use a number from 0 to {} or \"all\"",
                    u32::MAX - 1
                )
            }),
            Some(Count::Word(w)) if w == "all" => Ok(Some(u32::MAX)),
            Some(Count::Word(w)) => Err(format!("{key} = {w:?}: use a number or \"all\"")),
            Some(Count::Other(v)) => Err(format!(
                "{key} = {v}: use a number or \"all\", not a {}",
                v.type_str()
            )),
        }
    }
    Ok(Retention {
        keep_last: count(r.keep_last, "keep_last")?,
        keep_hourly: count(r.keep_hourly, "keep_hourly")?,
        keep_daily: count(r.keep_daily, "keep_daily")?,
        keep_weekly: count(r.keep_weekly, "keep_weekly")?,
        keep_monthly: count(r.keep_monthly, "keep_monthly")?,
        keep_yearly: count(r.keep_yearly, "keep_yearly")?,
        keep_within: r
            .keep_within
            .map(|w| parse_age(&w).map_err(|e| format!("keep_within: {e}")))
            .transpose()?,
        keep_pinned: r.keep_pinned.unwrap_or(false),
    })
}
