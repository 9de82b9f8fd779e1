//! The desired state: for every tier, the backups it should hold, as a pure function of the
//! catalog, the config and the time. Sync uploads what is desired and missing, prune removes
//! what is held and not desired, and `sync --dry-run` and `prune --dry-run` print this one plan,
//! so the two can never undo each other's work.
//!
//! Per tier and service, over the service's whole history (every backup ever recorded, those
//! that every tier has since dropped included, so that nothing shifts when old files go):
//! 1. the `copy` policy selects a series: every backup, or the first of each hour, day, week
//!    or month;
//! 2. retention keeps part of that series, restic-style, as if the tier held all of it;
//! 3. holds override retention for copies the tier holds: a pin, the service's newest verified
//!    backup on the tier, the WAL its newest base backup needs, and the last copy of a backup
//!    another tier still waits to receive;
//! 4. a tier whose retention says `keep_pinned` also wants every pinned backup.
//!
//! A backup prune once dropped from a tier (`retired`) is never sent there again. The first tier
//! holds what backups wrote to it: sync repairs its corrupt copies but never fills it.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::Result;
use crate::catalog::{ArtifactRecord, BackupEntry, Catalog, CopyState};
use crate::config::{Config, TierConfig};
use crate::id::{BackupId, ServiceName, TierName};
use crate::retention::{Period, kept_by};
use crate::source::postgres::BASE;
use crate::source::postgres_wal::WalSpool;

/// What the catalog says exists, as the plan reads it.
pub struct Snapshot<'a> {
    /// Every artifact whose files some tier holds, with its copies.
    pub artifacts: &'a [ArtifactRecord],
    /// Every backup ever recorded.
    pub history: &'a [BackupEntry],
    /// Per tier, the backups prune removed from it.
    pub retired: &'a HashMap<TierName, HashSet<BackupId>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Held and desired.
    Keep,
    /// Desired, not held: sync uploads it from a tier that holds a good copy.
    Upload,
    /// Desired and held, but a copy is corrupt or missing a file: sync uploads it again.
    Repair,
    /// Held and not desired: prune removes it.
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Upload => "upload",
            Action::Repair => "repair",
            Action::Remove => "remove",
        }
    }
}

/// One backup on one tier: what should happen to it, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub tier: TierName,
    pub service: String,
    pub backup_id: BackupId,
    pub taken_at: i64,
    pub action: Action,
    /// Why it is kept or sent (`daily`, `pinned`, `newest verified`, …) or why it goes.
    pub reasons: Vec<String>,
    /// Object keys of this backup's artifacts.
    pub keys: Vec<String>,
}

impl Entry {
    /// True when the tier should hold this backup after sync and prune.
    pub fn desired(&self) -> bool {
        self.action != Action::Remove
    }
}

/// The plan for what the catalog holds now.
pub fn from_catalog(config: &Config, catalog: &Catalog, now: i64) -> Result<Vec<Entry>> {
    let artifacts = catalog.artifacts_without_facts(None)?;
    let history = catalog.history()?;
    let retired = catalog.retired(None)?;
    let snap = Snapshot {
        artifacts: &artifacts,
        history: &history,
        retired: &retired,
    };
    Ok(plan(config, &snap, now))
}

/// [`uploads`] for what the catalog holds now, given its artifacts (already read by the caller:
/// all of them, or only those [`upload_inputs`] names).
pub fn uploads_from_catalog(
    config: &Config,
    catalog: &Catalog,
    artifacts: &[ArtifactRecord],
    now: i64,
    tiers: &[&TierConfig],
) -> Result<Vec<Entry>> {
    let history = catalog.history()?;
    let names: Vec<&TierName> = tiers.iter().map(|t| &t.name).collect();
    let retired = catalog.retired(Some(&names))?;
    let snap = Snapshot {
        artifacts,
        history: &history,
        retired: &retired,
    };
    Ok(uploads(config, &snap, now, tiers))
}

/// The plan for every tier, in config order, each service's backups newest first.
pub fn plan(config: &Config, snap: &Snapshot, now: i64) -> Vec<Entry> {
    let all: Vec<&TierConfig> = config.tiers.iter().collect();
    plan_tiers(config, snap, now, &all)
}

/// What `tiers` lack: their uploads and repairs, as [`plan`] has them. The holds that keep a
/// copy for another tier need every tier's plan, so only [`plan`] has them; sync, which only
/// sends, asks for the tiers it syncs.
///
/// The snapshot's artifacts may be limited to what [`upload_inputs`] names: a backup one of
/// the tiers holds whole is never sent or repaired there, and only counts for the holds that
/// keep a copy (`newest verified`) and for the base backups a WAL archive follows.
pub fn uploads(config: &Config, snap: &Snapshot, now: i64, tiers: &[&TierConfig]) -> Vec<Entry> {
    plan_tiers(config, snap, now, tiers)
        .into_iter()
        .filter(|e| matches!(e.action, Action::Upload | Action::Repair))
        .collect()
}

fn plan_tiers(config: &Config, snap: &Snapshot, now: i64, tiers: &[&TierConfig]) -> Vec<Entry> {
    let mut live: HashMap<BackupId, Vec<&ArtifactRecord>> = HashMap::new();
    for a in snap.artifacts {
        live.entry(a.backup_id).or_default().push(a);
    }
    let mut series: BTreeMap<&str, Vec<&BackupEntry>> = BTreeMap::new();
    for b in snap.history {
        series.entry(&b.service).or_default().push(b);
    }
    for list in series.values_mut() {
        list.sort_by_key(|b| std::cmp::Reverse((b.taken_at, b.id)));
    }

    let mut entries = Vec::new();
    for tier in tiers {
        let primary = config.tiers.first().is_some_and(|p| p.name == tier.name);
        for (service, list) in &series {
            entries.extend(plan_series(
                config, tier, primary, service, list, &live, snap, now,
            ));
        }
    }
    if tiers.len() == config.tiers.len() {
        hold_sources(config, &mut entries, &live);
    }
    entries
}

/// What [`uploads`] for `tiers` needs of the catalog's artifacts: those of every backup that
/// lacks something on one of them (an artifact with no present copy there), and every backup
/// of the services a WAL archive follows (its base backups decide which WAL a tier keeps).
/// [`Catalog::artifacts_lacking`] reads just these.
pub fn upload_inputs<'a>(
    config: &'a Config,
    tiers: &[&'a TierConfig],
) -> (Vec<&'a TierName>, Vec<&'a ServiceName>) {
    let names = tiers.iter().map(|t| &t.name).collect();
    let bases = config
        .services
        .values()
        .filter_map(|s| s.driver_as::<WalSpool>()?.base())
        .filter_map(|base| Some(config.services.get_key_value(base)?.0))
        .collect();
    (names, bases)
}

/// One service's backups on one tier (`list` newest first).
#[allow(clippy::too_many_arguments)]
fn plan_series(
    config: &Config,
    tier: &TierConfig,
    primary: bool,
    service: &str,
    list: &[&BackupEntry],
    live: &HashMap<BackupId, Vec<&ArtifactRecord>>,
    snap: &Snapshot,
    now: i64,
) -> Vec<Entry> {
    let name = &tier.name;
    let copy = config.copy_for(service, tier);
    let selected = select(copy, list);
    let retention = config.retention_for(service, tier);
    let chosen: Vec<(BackupId, i64)> = list
        .iter()
        .zip(&selected)
        .filter(|(_, s)| **s)
        .map(|(b, _)| (b.id, b.taken_at))
        .collect();
    let kept = kept_by(retention, &chosen, now);
    let retired = snap.retired.get(name);
    let wal_since = wal_needed_since(config, service, name, snap.artifacts);

    // Only backups with files can be kept, sent or removed; the rest of the history only
    // shaped the selection and the retention above.
    let mut newest_verified_found = false;
    let mut out = Vec::new();
    for (b, &is_selected) in list.iter().zip(&selected) {
        let Some(arts) = live.get(&b.id) else {
            continue;
        };
        let here = Here::of(arts, name);
        let mut why: Vec<String> = kept
            .get(&b.id)
            .map(|r| r.iter().map(|s| (*s).to_owned()).collect())
            .unwrap_or_default();
        if here.held {
            if !newest_verified_found && !here.tombstone && here.whole_and_verified {
                newest_verified_found = true;
                why.push("newest verified".into());
            }
            if wal_since.is_some_and(|since| b.taken_at >= since) {
                why.push("WAL after the newest base backup".into());
            }
        }
        if b.pinned && (here.held || retention.keep_pinned) {
            why.push("pinned".into());
        }
        let entry = |action, reasons, keys: bool| Entry {
            tier: name.clone(),
            service: service.to_owned(),
            backup_id: b.id,
            taken_at: b.taken_at,
            action,
            reasons,
            // Keys are what prune deletes and sync sends; a kept copy needs none.
            keys: if keys {
                arts.iter().map(|a| a.key.clone()).collect()
            } else {
                Vec::new()
            },
        };
        if here.held {
            if here.tombstone {
                out.push(entry(
                    Action::Remove,
                    vec!["finishing an interrupted prune".into()],
                    true,
                ));
            } else if why.is_empty() {
                let reason = if is_selected {
                    "outside the retention policy".to_owned()
                } else {
                    format!("not picked by the copy policy ({})", copy.join(", "))
                };
                out.push(entry(Action::Remove, vec![reason], true));
            } else if needs_repair(arts, name, primary) && has_source(arts, name) {
                out.push(entry(Action::Repair, why, true));
            } else {
                out.push(entry(Action::Keep, why, false));
            }
        } else if !primary
            && !why.is_empty()
            && !retired.is_some_and(|r| r.contains(&b.id))
            && has_source(arts, name)
        {
            out.push(entry(Action::Upload, why, true));
        }
    }
    out
}

/// What one tier holds of one backup.
struct Here {
    /// Some copy of an artifact of it is on the tier (in any state).
    held: bool,
    /// Prune marked it and stopped halfway.
    tombstone: bool,
    /// Every artifact is there, present and verified.
    whole_and_verified: bool,
}

impl Here {
    fn of(arts: &[&ArtifactRecord], tier: &TierName) -> Here {
        let mut here = Here {
            held: false,
            tombstone: false,
            whole_and_verified: !arts.is_empty(),
        };
        for a in arts {
            match a.copy_on(tier) {
                Some(c) => {
                    here.held = true;
                    here.tombstone |= c.state == CopyState::Missing;
                    here.whole_and_verified &=
                        c.state == CopyState::Present && c.verified_at.is_some();
                }
                None => here.whole_and_verified = false,
            }
        }
        here
    }
}

/// A held backup whose copy on the tier is corrupt, or lacks some artifact (an upload that
/// stopped halfway). The first tier is only repaired, never filled.
fn needs_repair(arts: &[&ArtifactRecord], tier: &TierName, primary: bool) -> bool {
    arts.iter().any(|a| match a.copy_on(tier) {
        Some(c) => c.state == CopyState::Corrupt,
        None => !primary,
    })
}

/// Some other tier holds a present copy of every artifact this tier lacks or holds corrupt.
fn has_source(arts: &[&ArtifactRecord], tier: &TierName) -> bool {
    !arts.is_empty()
        && arts
            .iter()
            .filter(|a| {
                a.copy_on(tier)
                    .is_none_or(|c| c.state != CopyState::Present)
            })
            .all(|a| {
                a.copies
                    .iter()
                    .any(|c| c.tier != *tier && c.state == CopyState::Present)
            })
}

/// A backup some tier waits to receive keeps its copy on one tier that holds it whole (the
/// first tier preferred), even if that tier's retention would drop it: a tier that is down
/// delays its copies, it never loses them.
fn hold_sources(
    config: &Config,
    entries: &mut [Entry],
    live: &HashMap<BackupId, Vec<&ArtifactRecord>>,
) {
    let mut by_backup: HashMap<BackupId, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        by_backup.entry(e.backup_id).or_default().push(i);
    }
    for (backup, list) in by_backup {
        let waiting: Vec<String> = list
            .iter()
            .map(|&i| &entries[i])
            .filter(|e| matches!(e.action, Action::Upload | Action::Repair))
            .map(|e| e.tier.to_string())
            .collect();
        if waiting.is_empty() {
            continue;
        }
        let whole_on = |tier: &TierName| {
            live.get(&backup).is_some_and(|arts| {
                arts.iter().all(|a| {
                    a.copy_on(tier)
                        .is_some_and(|c| c.state == CopyState::Present)
                })
            })
        };
        if list
            .iter()
            .any(|&i| entries[i].action == Action::Keep && whole_on(&entries[i].tier))
        {
            continue;
        }
        // Tiers in config order: the first tier is the preferred source.
        let holder = config.tiers.iter().find_map(|t| {
            list.iter().copied().find(|&i| {
                let e = &entries[i];
                e.tier == t.name
                    && e.action == Action::Remove
                    && !e.reasons.iter().any(|r| r.contains("interrupted prune"))
                    && whole_on(&e.tier)
            })
        });
        if let Some(i) = holder {
            entries[i].action = Action::Keep;
            entries[i].reasons = vec![format!("not yet on {}", waiting.join(", "))];
        }
    }
}

/// Which backups of a series (newest first) a copy policy selects, index by index: everything
/// for `all`; otherwise the first backup of each hour, day, ISO week (from Monday) or month the
/// policy names — the seed's "daily full, weekly" offsite sets. Over the whole history, so the
/// first backup of a day stays the first when older files go.
fn select(policy: &[String], list: &[&BackupEntry]) -> Vec<bool> {
    let mut selected = vec![false; list.len()];
    for p in policy {
        if p == "all" {
            selected.fill(true);
            continue;
        }
        let mut last = None;
        for (i, b) in list.iter().enumerate().rev() {
            // Config validation rejects other names; an unknown one selects nothing.
            let Some(period) = Period::parse(p) else {
                break;
            };
            let current = period.of(b.taken_at);
            if last != Some(current) {
                selected[i] = true;
                last = Some(current);
            }
        }
    }
    selected
}

/// For a WAL service with a `base`: when the newest base backup on `tier` (and the newest
/// verified one, if older) was taken. The WAL archived since is what rolls it forward, so it
/// stays even when base backups have failed for longer than the WAL retention.
fn wal_needed_since(
    config: &Config,
    service: &str,
    tier: &TierName,
    artifacts: &[ArtifactRecord],
) -> Option<i64> {
    let base = config
        .service(service)
        .ok()?
        .driver_as::<WalSpool>()?
        .base()?;
    let prefix = format!("{BASE}_");
    let bases: Vec<(i64, bool)> = artifacts
        .iter()
        .filter(|a| a.service == base && a.file.starts_with(&prefix))
        .filter_map(|a| {
            let copy = a.copy_on(tier).filter(|c| c.state == CopyState::Present)?;
            Some((a.taken_at, copy.verified_at.is_some()))
        })
        .collect();
    let newest = bases.iter().map(|b| b.0).max()?;
    let newest_verified = bases.iter().filter(|b| b.1).map(|b| b.0).max();
    Some(newest_verified.map_or(newest, |v| v.min(newest)))
}
