//! Verification of stored copies against the catalog (the root of trust): the stored file's size
//! and SHA-256, every member's header, CRC32, length and SHA-256, and the sidecars (`.sha256`,
//! `.idx`, `.meta.json`). Problems name the file and the block; results go to the catalog.
//!
//! What a scheduled verification reads fits the tier. Each tier has a window within which every
//! copy it holds is read in full (local: a day, so all of it every day; remote: 30 days) and
//! an optional byte budget per pass. A pass reads copies oldest-checked first: at least the
//! tier's share for the time since its last pass (total ÷ window × elapsed, restic's
//! `check --read-data-subset` spread over time), and every copy whose last check would be
//! older than the window before the next pass, never more than the budget. `verify --all` and
//! `verify --tier T` read everything.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::artifact::BlockIndex;
use crate::artifact::metadata::ArtifactMetadata;
use crate::artifact::reader::{Depth, verify_member};
use crate::catalog::{ArtifactRecord, Catalog, CopyState, RunKind, RunStatus};
use crate::config::{Config, TierConfig};
use crate::id::{ArtifactId, RunId, ServiceName, TierName};
use crate::layout::{INDEX_SUFFIX, META_SUFFIX, SHA256_SUFFIX, date_of};
use crate::parallel::ordered_map;
use crate::store::{Store, open_tier};
use crate::{Error, Result};

/// How much of a tier a verification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The scheduled pass: the tier's share, oldest-checked first, within its budget.
    Due,
    /// Every copy.
    All,
}

/// One copy checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    pub tier: String,
    /// As the mount shows it: `service/tier/date/file`.
    pub path: String,
    pub problems: Vec<String>,
}

/// What a verification did on one tier.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TierSummary {
    pub tier: String,
    /// Copies the tier holds (of the service asked about).
    pub copies: usize,
    pub checked: usize,
    pub failed: usize,
    /// Stored bytes read.
    pub bytes: u64,
    /// The tier could not be opened: a failed check, not a skipped one.
    pub error: Option<String>,
}

/// Verifies `tiers` (copies of `service`, or all), calling `each` after every copy checked.
pub fn verify(
    config: &Config,
    catalog: &Catalog,
    tiers: &[&TierConfig],
    service: Option<&ServiceName>,
    scope: Scope,
    now: i64,
    mut each: impl FnMut(&Checked),
) -> Result<Vec<TierSummary>> {
    let mut artifacts = catalog.artifacts_without_facts(service)?;
    // Newest first, as `list` shows them: the order `verify --all` reports in.
    artifacts
        .sort_by(|a, b| (b.taken_at, &a.service, &a.file).cmp(&(a.taken_at, &b.service, &b.file)));
    // One run per service, so metrics can report each service's verification time.
    let mut service_runs: BTreeMap<ServiceName, (RunId, bool)> = BTreeMap::new();
    let mut summaries = Vec::new();
    for tier in tiers {
        let name = tier.name.as_str();
        let _span = tracing::info_span!("verify", tier = name).entered();
        let held: Vec<&ArtifactRecord> = artifacts
            .iter()
            .filter(|a| {
                a.copy_on(&tier.name)
                    .is_some_and(|c| c.state != CopyState::Missing)
            })
            .collect();
        let mut summary = TierSummary {
            tier: name.to_owned(),
            copies: held.len(),
            ..TierSummary::default()
        };
        let store = match open_tier(tier) {
            Ok(s) => s,
            Err(e) => {
                summary.error = Some(e.to_string());
                summaries.push(summary);
                continue;
            }
        };
        let order = match scope {
            Scope::All => (0..held.len()).collect(),
            Scope::Due => {
                let last_pass = catalog
                    .last_finished_run(name, RunKind::VerifyTier)?
                    .map(|(r, _)| r.started_at);
                // The next pass is as late after its slot as this one (cron every few minutes).
                let schedule = tier.verify_schedule(&config.jobs);
                let late = crate::schedule::last_slot(schedule, now)
                    .map_or(0, |slot| (now - slot).clamp(0, 86_400));
                let next_pass = crate::schedule::next_slot(schedule, now).map(|t| t + late);
                let candidates: Vec<Candidate> = held
                    .iter()
                    .map(|a| {
                        let c = a.copy_on(&tier.name).expect("held");
                        Candidate {
                            size: a.stored_size,
                            last_checked: c.verified_at,
                            // A copy known bad waits for sync's repair; reading it again
                            // tells nothing new.
                            skip: c.state == CopyState::Corrupt,
                        }
                    })
                    .collect();
                let pass = Pass {
                    now,
                    window: tier.verify_window as i64,
                    budget: tier.verify_budget,
                    last_pass,
                    next_pass,
                };
                pass.choose(&candidates)
            }
        };
        let run = catalog.begin_run(name, RunKind::VerifyTier)?;
        if matches!(tier.kind, crate::config::TierKind::Restic { .. }) {
            let problems = check_restic_structure(tier);
            if !problems.is_empty() {
                summary.failed += 1;
                each(&Checked {
                    tier: name.to_owned(),
                    path: format!("{name} (restic repository)"),
                    problems,
                });
            }
        }
        let mut results = Results::new(catalog, &tier.name);
        for i in order {
            let a = held[i];
            if !service_runs.contains_key(&a.service) {
                let run = catalog.begin_run(a.service.as_str(), RunKind::Verify)?;
                service_runs.insert(a.service.clone(), (run, true));
            }
            let index = catalog.block_index(a.id)?;
            let problems = verify_copy(store.as_ref(), a, &index, config.defaults.threads)?;
            results.push(a.id, problems.clone())?;
            summary.checked += 1;
            summary.bytes += a.stored_size;
            if !problems.is_empty() {
                summary.failed += 1;
                if let Some(r) = service_runs.get_mut(&a.service) {
                    r.1 = false;
                }
            }
            each(&Checked {
                tier: name.to_owned(),
                path: format!("{}/{name}/{}/{}", a.service, date_of(a.taken_at), a.file),
                problems,
            });
        }
        results.flush()?;
        catalog.finish_run(run, RunStatus::ended(summary.failed == 0), None, None)?;
        catalog.set_run_bytes(run, summary.bytes)?;
        tracing::debug!(
            checked = summary.checked,
            failed = summary.failed,
            bytes = summary.bytes,
            "verification pass recorded"
        );
        summaries.push(summary);
    }
    for (run, ok) in service_runs.values() {
        catalog.finish_run(
            *run,
            RunStatus::ended(*ok),
            (!ok).then_some("verification found problems"),
            None,
        )?;
    }
    Ok(summaries)
}

/// Verification results on their way to the catalog, a batch per transaction: a pass over a
/// tier of thousands of small copies is a few commits (fsyncs), not two per copy. A batch is
/// written after [`Results::BATCH`] copies or [`Results::WAIT`], so a crash forgets at most a
/// second's checks (they are redone), and when the pass ends or stops on an error.
struct Results<'a> {
    catalog: &'a Catalog,
    tier: &'a TierName,
    pending: Vec<(ArtifactId, Vec<String>)>,
    since: Instant,
}

impl<'a> Results<'a> {
    const BATCH: usize = 256;
    const WAIT: Duration = Duration::from_secs(1);

    fn new(catalog: &'a Catalog, tier: &'a TierName) -> Self {
        Results {
            catalog,
            tier,
            pending: Vec::new(),
            since: Instant::now(),
        }
    }

    fn push(&mut self, artifact_id: ArtifactId, problems: Vec<String>) -> Result<()> {
        if self.pending.is_empty() {
            self.since = Instant::now();
        }
        self.pending.push((artifact_id, problems));
        if self.pending.len() >= Self::BATCH || self.since.elapsed() >= Self::WAIT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.catalog
                .record_verifications(self.tier, &self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

impl Drop for Results<'_> {
    /// A pass stopped by an error still records what it checked before it.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(tier = %self.tier, "cannot record verifications: {e}");
        }
    }
}

/// A copy a scheduled pass may read.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub size: u64,
    /// When its last successful check was (an upload's own check counts).
    pub last_checked: Option<i64>,
    pub skip: bool,
}

/// One scheduled verification of a tier: when, and what it may read.
#[derive(Debug, Clone)]
pub struct Pass {
    pub now: i64,
    /// Every copy is read within this many seconds.
    pub window: i64,
    pub budget: Option<u64>,
    /// When the tier's previous pass started.
    pub last_pass: Option<i64>,
    /// When its next one is due by its schedule.
    pub next_pass: Option<i64>,
}

impl Pass {
    /// The indexes of the candidates this pass reads, in reading order (oldest-checked first).
    pub fn choose(&self, candidates: &[Candidate]) -> Vec<usize> {
        let window = self.window.max(1);
        let mut order: Vec<usize> = (0..candidates.len())
            .filter(|&i| !candidates[i].skip)
            .collect();
        order.sort_by_key(|&i| (candidates[i].last_checked.unwrap_or(i64::MIN), i));
        let total: u64 = order.iter().map(|&i| candidates[i].size).sum();
        // Until the next pass, or a day when the schedule has none.
        let horizon = self.next_pass.unwrap_or(self.now + 86_400);
        let elapsed = self
            .last_pass
            .map_or(horizon - self.now, |last| self.now - last)
            .clamp(1, window);
        let share = (total as u128 * elapsed as u128).div_ceil(window as u128) as u64;
        let mut chosen = Vec::new();
        let mut bytes = 0u64;
        for i in order {
            let c = &candidates[i];
            let due = c
                .last_checked
                .is_none_or(|t| t.saturating_add(window) <= horizon);
            if bytes >= share && !due {
                break;
            }
            if self
                .budget
                .is_some_and(|b| bytes + c.size > b && !chosen.is_empty())
            {
                break;
            }
            bytes += c.size;
            chosen.push(i);
        }
        chosen
    }
}

/// Checks one copy; returns the problems found (empty: the copy is good). An `Err` is returned
/// only when the check itself could not run (the tier is unreachable).
pub fn verify_copy(
    store: &dyn Store,
    artifact: &ArtifactRecord,
    index: &BlockIndex,
    threads: usize,
) -> Result<Vec<String>> {
    if store.holds_decompressed() {
        return verify_decompressed(store, artifact, index, threads);
    }
    let key = artifact.key.as_str();
    let label = format!("{}:{key}", store.name());
    let mut problems = Vec::new();

    match store.head(key)? {
        None => {
            problems.push(format!("{label}: missing"));
            return Ok(problems);
        }
        Some(m) if m.size != artifact.stored_size => problems.push(format!(
            "{label}: size {} differs from the catalog's {}",
            m.size, artifact.stored_size
        )),
        Some(_) => {}
    }

    // Every block, fetched once: its bytes feed the per-block checks and both whole-file hashes
    // (stored, and raw from the inflated blocks).
    let mut hasher = Sha256::new();
    let mut raw_hasher = Sha256::new();
    let mut blocks_ok = true;
    let mut fetch_failed = None;
    ordered_map(
        (0..index.entries.len()).map(Ok::<usize, Error>),
        threads,
        threads * 2,
        libdeflater::Decompressor::new,
        |d, i| {
            let e = &index.entries[i];
            store
                .get_range(key, e.offset, e.stored_len as u64)
                .map(|member| {
                    let check = verify_member(&label, i, e, &member, d, Depth::Full);
                    (member, check)
                })
        },
        |fetched| {
            match fetched {
                Ok((member, check)) => {
                    hasher.update(&member);
                    match check {
                        Ok(block) => raw_hasher.update(&*block),
                        Err(e) => {
                            blocks_ok = false;
                            problems.push(e.to_string());
                        }
                    }
                }
                Err(e) => {
                    if fetch_failed.is_none() {
                        fetch_failed = Some(e);
                    }
                }
            }
            Ok(())
        },
    )?;
    if let Some(e) = fetch_failed {
        problems.push(format!("{label}: cannot read all blocks: {e}"));
    } else {
        if hex::encode(hasher.finalize()) != artifact.stored_sha256 {
            problems.push(format!(
                "{label}: SHA-256 of the stored file differs from the catalog"
            ));
        }
        // Meaningful only over intact blocks: a bad one is already reported by itself.
        if blocks_ok && hex::encode(raw_hasher.finalize()) != artifact.raw_sha256 {
            problems.push(format!(
                "{label}: SHA-256 of the uncompressed stream differs from the catalog"
            ));
        }
    }

    check_sidecars(store, artifact, index, &label, &mut problems);
    Ok(problems)
}

/// [`verify_copy`] of a copy held decompressed (a restic tier): its size, every block's length
/// and raw SHA-256, and the whole stream's SHA-256. Reading it makes rustic decrypt and
/// authenticate every blob the file uses; the repository's structure is checked once per pass
/// (see [`check_restic_structure`]).
fn verify_decompressed(
    store: &dyn Store,
    artifact: &ArtifactRecord,
    index: &BlockIndex,
    threads: usize,
) -> Result<Vec<String>> {
    let key = artifact.key.as_str();
    let label = format!("{}:{}", store.name(), crate::restic::raw_path(key));
    let mut problems = Vec::new();
    match store.head(key)? {
        None => {
            problems.push(format!("{label}: in no snapshot"));
            return Ok(problems);
        }
        Some(m) if m.size != artifact.raw_size => problems.push(format!(
            "{label}: size {} differs from the catalog's {}",
            m.size, artifact.raw_size
        )),
        Some(_) => {}
    }
    let reader = crate::artifact::reader::ArtifactReader { store, key, index };
    let mut raw_hasher = Sha256::new();
    let mut blocks_ok = true;
    ordered_map(
        (0..index.entries.len()).map(Ok::<usize, Error>),
        threads,
        threads * 2,
        libdeflater::Decompressor::new,
        |d, i| reader.read_block(i, d),
        |block| {
            match block {
                Ok(block) if blocks_ok => raw_hasher.update(&*block),
                Ok(_) => {}
                Err(e) => {
                    blocks_ok = false;
                    problems.push(e.to_string());
                }
            }
            Ok(())
        },
    )?;
    if blocks_ok && hex::encode(raw_hasher.finalize()) != artifact.raw_sha256 {
        problems.push(format!(
            "{label}: SHA-256 of the stream differs from the catalog"
        ));
    }
    Ok(problems)
}

/// rustic's structural check of a restic tier's repository (index, packs listed, trees,
/// snapshots); the data itself is read copy by copy within the tier's window.
fn check_restic_structure(tier: &TierConfig) -> Vec<String> {
    let checked = crate::restic::ResticTier::open(tier).and_then(|r| r.check(false));
    match checked {
        Ok(problems) => problems,
        Err(e) => vec![e.to_string()],
    }
}

fn check_sidecars(
    store: &dyn Store,
    a: &ArtifactRecord,
    index: &BlockIndex,
    label: &str,
    problems: &mut Vec<String>,
) {
    let gz_name = a.key.rsplit('/').next().unwrap_or(&a.key);
    let sha_line = format!("{}  {gz_name}\n", a.stored_sha256);
    let mut read = |suffix: &str, max: u64, exact: bool| {
        read_sidecar(store, &format!("{}{suffix}", a.key), max, exact)
            .map_err(|why| problems.push(format!("{label}{suffix}: {why}")))
            .ok()
    };
    let sha = read(SHA256_SUFFIX, sha_line.len() as u64, true);
    let idx = read(
        INDEX_SUFFIX,
        crate::artifact::index::encoded_len(index.version(), a.block_count),
        true,
    );
    let meta = read(META_SUFFIX, crate::artifact::metadata::MAX_LEN, false);
    if sha.is_some_and(|bytes| bytes != sha_line.as_bytes()) {
        problems.push(format!(
            "{label}{SHA256_SUFFIX}: does not match the catalog"
        ));
    }
    if let Some(bytes) = idx {
        match BlockIndex::decode(&bytes) {
            Ok(i) if &i == index => {}
            Ok(_) => problems.push(format!(
                "{label}{INDEX_SUFFIX}: differs from the catalog's index"
            )),
            Err(e) => problems.push(format!("{label}{INDEX_SUFFIX}: {e}")),
        }
    }
    if let Some(bytes) = meta {
        match ArtifactMetadata::parse(&bytes) {
            Ok(m)
                if m.service == a.service.as_str()
                    && m.file == a.file
                    && m.taken_at_unix == a.taken_at
                    && m.raw_size == a.raw_size
                    && m.raw_sha256 == a.raw_sha256
                    && m.stored_size == a.stored_size
                    && m.stored_sha256 == a.stored_sha256
                    && m.block_count == a.block_count => {}
            Ok(_) => problems.push(format!("{label}{META_SUFFIX}: differs from the catalog")),
            Err(e) => problems.push(format!("{label}{META_SUFFIX}: not valid metadata: {e}")),
        }
    }
}

/// A sidecar's bytes, its size checked first: exactly `max` bytes, or at most `max`. A tier may
/// be hostile, and a 64 GiB sparse `.idx` is a problem to report, not an allocation.
fn read_sidecar(store: &dyn Store, key: &str, max: u64, exact: bool) -> Result<Vec<u8>, String> {
    let size = match store.head(key) {
        Ok(Some(m)) => m.size,
        Ok(None) => return Err("missing".into()),
        Err(e) => return Err(e.to_string()),
    };
    if size > max || (exact && size != max) {
        return Err(format!(
            "{size} bytes, where this artifact's is {}{max} bytes",
            if exact { "" } else { "at most " }
        ));
    }
    store.get_range(key, 0, size).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    /// A tier of `n` copies of `size` bytes, each last checked at the given time.
    fn tier(checked: &[Option<i64>], size: u64) -> Vec<Candidate> {
        checked
            .iter()
            .map(|&last_checked| Candidate {
                size,
                last_checked,
                skip: false,
            })
            .collect()
    }

    fn daily(now: i64, window: i64) -> Pass {
        Pass {
            now,
            window,
            budget: None,
            last_pass: Some(now - DAY),
            next_pass: Some(now + DAY),
        }
    }

    #[test]
    fn a_one_day_window_reads_everything_every_day() {
        let now = 100 * DAY;
        let copies = tier(&[Some(now - DAY), Some(now - 2 * DAY), None], 10);
        assert_eq!(daily(now, DAY).choose(&copies), [2, 1, 0]);
    }

    #[test]
    fn a_thirty_day_window_reads_a_thirtieth_a_day_and_every_copy_within_it() {
        // 300 copies, each checked on a different hour over the last 12 days and a half.
        let now = 1000 * DAY;
        let checked: Vec<Option<i64>> = (0..300).map(|i| Some(now - i * 3600)).collect();
        let copies = tier(&checked, 100);
        let chosen = daily(now, 30 * DAY).choose(&copies);
        assert_eq!(chosen.len(), 10, "a thirtieth of 300");
        assert_eq!(chosen[0], 299, "oldest first");

        // Simulated: 90 daily passes with a copy added each day. No copy's last check is ever
        // older than the window, and no pass reads much more than its share.
        let mut copies: Vec<Candidate> = tier(&vec![Some(0); 60], 100);
        let mut last = None;
        for day in 1..=90 {
            let now = day * DAY;
            copies.push(Candidate {
                size: 100,
                last_checked: Some(now - 3600),
                skip: false,
            });
            let pass = Pass {
                now,
                window: 30 * DAY,
                budget: None,
                last_pass: last,
                next_pass: Some(now + DAY),
            };
            let chosen = pass.choose(&copies);
            assert!(
                chosen.len() <= copies.len() / 30 + 3,
                "day {day}: {}",
                chosen.len()
            );
            for i in chosen {
                copies[i].last_checked = Some(now);
            }
            for c in &copies {
                assert!(now - c.last_checked.unwrap() < 30 * DAY, "day {day}");
            }
            last = Some(now);
        }
    }

    #[test]
    fn the_budget_caps_a_pass_but_one_copy_is_always_read() {
        let now = 100 * DAY;
        let copies = tier(&[None, None, None], 1000);
        let mut pass = daily(now, DAY);
        pass.budget = Some(2500);
        assert_eq!(pass.choose(&copies).len(), 2);
        pass.budget = Some(10);
        assert_eq!(
            pass.choose(&copies).len(),
            1,
            "a copy larger than the budget"
        );
        let mut bad = copies.clone();
        bad[0].skip = true;
        assert_eq!(
            daily(now, DAY).choose(&bad),
            [1, 2],
            "corrupt copies wait for sync"
        );
    }
}
