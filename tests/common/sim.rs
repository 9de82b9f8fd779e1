//! A simulated deployment over time: `tierback run` started once per simulated hour through
//! `TIERBACK_NOW`, as cron would, and after each run every tier looked at from the outside (its
//! directory, or its store) by code that shares nothing with tierback's planning:
//!
//! - an independent model of copy policies and restic-style retention says what each tier
//!   should hold; the tier must hold exactly that;
//! - no key is written to a tier twice, and no key a tier lost ever comes back;
//! - uploads per day and bytes read by verification stay bounded.
//!
//! Used by `tests/year.rs` (a year and a month on directories and an rclone remote, and a month
//! on Garage and a crypt remote).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tierback_bin;

pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

/// Which backups a tier receives and keeps, as the model sees it.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// `all`, or the first backup of each `daily` / `weekly` period.
    pub copy: Vec<&'static str>,
    pub rules: Rules,
    /// Per-service rules replacing `rules`.
    pub service_rules: Vec<(&'static str, Rules)>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Rules {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub within: Option<i64>,
}

/// Seconds of clock skew between a run's `TIERBACK_NOW` and the instants tierback records
/// (a run takes under a second): a backup this close to a `within` boundary may go either way.
const SLACK: i64 = 5;

/// One backup the simulation saw being taken.
#[derive(Clone, Debug)]
pub struct Backup {
    pub service: String,
    pub taken_at: i64,
    pub key: String,
}

/// What the model expects on a tier: what it must hold, and what it may hold.
pub struct Expected {
    pub must: BTreeSet<String>,
    pub may: BTreeSet<String>,
}

impl Model {
    fn rules_for(&self, service: &str) -> Rules {
        self.service_rules
            .iter()
            .find(|(s, _)| *s == service)
            .map_or(self.rules, |(_, r)| *r)
    }

    /// The keys this tier should hold at `now`, given every backup taken so far.
    pub fn expected(&self, backups: &[Backup], now: i64) -> Expected {
        let mut by_service: BTreeMap<&str, Vec<&Backup>> = BTreeMap::new();
        for b in backups {
            by_service.entry(&b.service).or_default().push(b);
        }
        let mut out = Expected {
            must: BTreeSet::new(),
            may: BTreeSet::new(),
        };
        for (service, mut list) in by_service {
            list.sort_by_key(|b| b.taken_at);
            // Selection: oldest first, the first of each period (the list is in time order,
            // so a backup is the first of its period when the one before it is not in it).
            let mut selected: Vec<&Backup> = Vec::new();
            for (i, b) in list.iter().enumerate() {
                let first_of = |f: Period| i == 0 || f(list[i - 1].taken_at) != f(b.taken_at);
                let pick = self.copy.iter().any(|c| match *c {
                    "all" => true,
                    "daily" => first_of(day_of),
                    "weekly" => first_of(week_of),
                    other => panic!("model has no copy policy {other}"),
                });
                if pick {
                    selected.push(b);
                }
            }
            selected.reverse(); // newest first
            let rules = self.rules_for(service);
            let mut keep: HashSet<&str> = HashSet::new();
            let counted: [(Option<u32>, Period); 5] = [
                (rules.last, |t| t),
                (rules.hourly, |t| t.div_euclid(HOUR)),
                (rules.daily, day_of),
                (rules.weekly, week_of),
                (rules.monthly, month_of),
            ];
            for (count, period) in counted {
                let Some(mut left) = count else { continue };
                let mut previous = None;
                for b in &selected {
                    if left == 0 {
                        break;
                    }
                    if previous != Some(period(b.taken_at)) {
                        previous = Some(period(b.taken_at));
                        keep.insert(&b.key);
                        left -= 1;
                    }
                }
            }
            for b in &selected {
                if let Some(within) = rules.within {
                    let age = now - b.taken_at;
                    if (age - within).abs() <= SLACK {
                        out.may.insert(b.key.clone());
                    } else if age <= within {
                        keep.insert(&b.key);
                    }
                }
            }
            out.must.extend(keep.into_iter().map(str::to_owned));
        }
        out
    }
}

/// Maps a time to the number of its hour, day, week or month.
type Period = fn(i64) -> i64;

fn day_of(t: i64) -> i64 {
    t.div_euclid(DAY)
}

/// Weeks start on Monday (1970-01-01 was a Thursday).
fn week_of(t: i64) -> i64 {
    (day_of(t) + 3).div_euclid(7)
}

/// Year × 12 + month, from days since the epoch (H. Hinnant's civil_from_days).
fn month_of(t: i64) -> i64 {
    let z = day_of(t) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    year * 12 + month
}

/// `service/YYYY-MM-DD/name_HHMMSS.ext.gz` → (service, taken at).
pub fn parse_key(key: &str) -> Option<(String, i64)> {
    let mut parts = key.split('/');
    let (service, date, name) = (parts.next()?, parts.next()?, parts.next()?);
    let stem = name.split('.').next()?;
    let hms = stem.rsplit('_').next()?;
    let (y, m, d): (i64, i64, i64) = (
        date.get(0..4)?.parse().ok()?,
        date.get(5..7)?.parse().ok()?,
        date.get(8..10)?.parse().ok()?,
    );
    let (h, mi, s): (i64, i64, i64) = (
        hms.get(0..2)?.parse().ok()?,
        hms.get(2..4)?.parse().ok()?,
        hms.get(4..6)?.parse().ok()?,
    );
    // days_from_civil
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((service.to_owned(), days * DAY + h * HOUR + mi * 60 + s))
}

/// How the simulation looks at a tier: the `.gz` keys it holds, each with an identity that
/// changes when the object is written again.
pub trait TierView {
    /// What changed since the previous look (the first look: everything there).
    fn changes(&mut self) -> Changes;
}

/// Keys that appeared on a tier, or were written again (their identity changed), and keys
/// that went.
#[derive(Default, Debug)]
pub struct Changes {
    pub appeared: Vec<(String, u64)>,
    pub vanished: Vec<String>,
}

impl Changes {
    /// The difference from `old` to `new` (each key's identity), keys prefixed by `prefix`.
    fn between<'a>(
        &mut self,
        prefix: &str,
        old: impl IntoIterator<Item = (&'a String, u64)>,
        new: impl IntoIterator<Item = (&'a String, u64)>,
    ) {
        let old: HashMap<&String, u64> = old.into_iter().collect();
        let new: HashMap<&String, u64> = new.into_iter().collect();
        for (key, id) in &new {
            if old.get(key) != Some(id) {
                self.appeared.push((format!("{prefix}{key}"), *id));
            }
        }
        for key in old.keys().filter(|k| !new.contains_key(*k)) {
            self.vanished.push(format!("{prefix}{key}"));
        }
    }
}

/// A tier that is a directory (local tiers, an rclone `local` remote): readdir, re-reading
/// only the date directories whose mtime changed; the identity is the inode (every write is a
/// new file renamed into place, so a key written again between two looks is seen too).
pub struct DirView {
    root: PathBuf,
    dirs: HashMap<PathBuf, DateDir>,
}

/// A date directory as last read: its mtime then, its key prefix, its `.gz` files.
struct DateDir {
    mtime: std::time::SystemTime,
    prefix: String,
    files: Vec<(String, u64)>,
}

impl DirView {
    pub fn new(root: &Path) -> DirView {
        DirView {
            root: root.to_owned(),
            dirs: HashMap::new(),
        }
    }
}

impl TierView for DirView {
    fn changes(&mut self) -> Changes {
        use std::os::unix::fs::DirEntryExt;
        let mut changes = Changes::default();
        let mut seen = HashSet::new();
        let services = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten();
        for service in services {
            let sname = service.file_name().to_string_lossy().into_owned();
            if sname.starts_with('.') || !service.path().is_dir() {
                continue;
            }
            for date in std::fs::read_dir(service.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = date.path();
                let Ok(mtime) = date.metadata().and_then(|m| m.modified()) else {
                    continue;
                };
                seen.insert(path.clone());
                if self.dirs.get(&path).is_some_and(|d| d.mtime == mtime) {
                    continue;
                }
                let files: Vec<(String, u64)> = std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|f| {
                        let name = f.file_name().to_string_lossy().into_owned();
                        name.ends_with(".gz").then(|| (name, f.ino()))
                    })
                    .collect();
                // A directory changed within the filesystem's timestamp granularity (coarse
                // clock ticks) could change again with the same mtime: read it again next time.
                let racy = std::time::SystemTime::now()
                    .duration_since(mtime)
                    .map_or(true, |age| age < std::time::Duration::from_millis(100));
                let mtime = if racy { std::time::UNIX_EPOCH } else { mtime };
                let prefix = format!("{sname}/{}/", date.file_name().to_string_lossy());
                let old = self.dirs.get(&path).map_or(&[][..], |d| d.files.as_slice());
                changes.between(
                    &prefix,
                    old.iter().map(|(n, i)| (n, *i)),
                    files.iter().map(|(n, i)| (n, *i)),
                );
                let dir = DateDir {
                    mtime,
                    prefix,
                    files,
                };
                self.dirs.insert(path, dir);
            }
        }
        self.dirs.retain(|path, dir| {
            let here = seen.contains(path);
            if !here {
                let gone = dir.files.iter().map(|(n, _)| format!("{}{n}", dir.prefix));
                changes.vanished.extend(gone);
            }
            here
        });
        changes
    }
}

/// A tier seen through tierback's own store (an S3 bucket, a crypt remote): its listing, the
/// identity being the object's size (uploads cannot be told apart otherwise; the catalog's
/// upload count is checked too).
pub struct StoreView {
    store: Box<dyn tierback_engine::store::Store>,
    last: BTreeMap<String, u64>,
}

impl StoreView {
    pub fn new(store: Box<dyn tierback_engine::store::Store>) -> StoreView {
        StoreView {
            store,
            last: BTreeMap::new(),
        }
    }
}

impl TierView for StoreView {
    fn changes(&mut self) -> Changes {
        let now: BTreeMap<String, u64> = self
            .store
            .list("")
            .expect("list the tier")
            .into_iter()
            .filter(|m| m.key.ends_with(".gz"))
            .map(|m| (m.key, m.size))
            .collect();
        let mut changes = Changes::default();
        changes.between(
            "",
            self.last.iter().map(|(k, v)| (k, *v)),
            now.iter().map(|(k, v)| (k, *v)),
        );
        self.last = now;
        changes
    }
}

/// Per tier, what the simulation saw happen.
#[derive(Default)]
pub struct Ledger {
    pub present: BTreeMap<String, u64>,
    pub gone: HashSet<String>,
    pub uploaded: u64,
    pub deleted: u64,
    pub uploaded_today: u64,
    pub verify_bytes: u64,
}

impl Ledger {
    /// Takes in what changed; panics if a key was written twice or came back after it went.
    /// Returns the keys new on the tier.
    pub fn observe(&mut self, tier: &str, now: i64, changes: Changes) -> Vec<String> {
        let mut new = Vec::new();
        for key in changes.vanished {
            assert!(self.present.remove(&key).is_some(), "{key} vanished twice");
            self.gone.insert(key);
            self.deleted += 1;
        }
        for (key, id) in changes.appeared {
            if let Some(old) = self.present.get(&key) {
                panic!(
                    "{}: {key} was written to tier {tier} a second time ({old} → {id})",
                    rfc3339(now)
                );
            }
            assert!(
                !self.gone.contains(&key),
                "{}: {key} came back to tier {tier} after it was removed",
                rfc3339(now)
            );
            self.uploaded += 1;
            self.uploaded_today += 1;
            self.present.insert(key.clone(), id);
            new.push(key);
        }
        new
    }
}

/// Runs `tierback ARGS` for the simulation at `now`; panics with its stderr unless it exits 0.
pub fn tierback(config: &Path, env: &[(String, String)], now: i64, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tierback_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TIERBACK_NOW", now.to_string())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run tierback");
    assert!(
        out.status.success(),
        "{}: tierback {args:?} exited {}:\n{}{}",
        rfc3339(now),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A metric's value for exact labels in Prometheus text.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `promtool check metrics` on the text; panics on any problem except the lints the seed's
/// own metric names trip (`backup_age_hours`: not a base unit; `backup_files_count`: `_count`
/// is for histograms).
pub fn promtool_check(text: &str) {
    promtool_start("", text).finish();
}

/// [`promtool_check`] started: it runs beside whatever comes next (the simulation's next
/// day) until [`PromtoolCheck::finish`] asks for its verdict; `when` heads its complaint.
pub fn promtool_start(when: &str, text: &str) -> PromtoolCheck {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `make deps` installs it)");
    // A metrics text is a few KiB: it fits in the pipe, so this never waits for promtool.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    PromtoolCheck {
        child,
        when: when.to_owned(),
        text: text.to_owned(),
    }
}

pub struct PromtoolCheck {
    child: std::process::Child,
    when: String,
    text: String,
}

impl PromtoolCheck {
    pub fn finish(self) {
        let out = self.child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let problems: Vec<&str> = report
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                !l.starts_with("backup_age_hours ") && !l.starts_with("backup_files_count ")
            })
            .collect();
        assert!(
            problems.is_empty(),
            "{}promtool check metrics: {problems:?}\n{}",
            self.when,
            self.text
        );
    }
}

pub fn rfc3339(t: i64) -> String {
    tierback_engine::layout::rfc3339(t)
}
