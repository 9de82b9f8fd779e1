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
            // Selection: oldest first, the first of each period.
            let mut selected: Vec<&Backup> = Vec::new();
            for b in &list {
                let first_of = |f: Period| {
                    !list
                        .iter()
                        .any(|o| o.taken_at < b.taken_at && f(o.taken_at) == f(b.taken_at))
                };
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
    fn objects(&mut self) -> BTreeMap<String, u64>;
}

/// A tier that is a directory (local tiers, an rclone `local` remote): readdir, re-reading
/// only the date directories whose mtime changed; the identity is the inode (every write is a
/// new file renamed into place).
pub struct DirView {
    root: PathBuf,
    dirs: HashMap<PathBuf, (std::time::SystemTime, Vec<(String, u64)>)>,
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
    fn objects(&mut self) -> BTreeMap<String, u64> {
        use std::os::unix::fs::DirEntryExt;
        let mut out = BTreeMap::new();
        let mut seen = HashSet::new();
        let Ok(services) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for service in services.flatten() {
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
                let fresh = self.dirs.get(&path).is_some_and(|(t, _)| *t == mtime);
                if !fresh {
                    let files: Vec<(String, u64)> = std::fs::read_dir(&path)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter_map(|f| {
                            let name = f.file_name().to_string_lossy().into_owned();
                            name.ends_with(".gz").then(|| (name, f.ino()))
                        })
                        .collect();
                    self.dirs.insert(path.clone(), (mtime, files));
                }
                let date_name = date.file_name().to_string_lossy().into_owned();
                for (name, ino) in &self.dirs[&path].1 {
                    out.insert(format!("{sname}/{date_name}/{name}"), *ino);
                }
            }
        }
        self.dirs.retain(|p, _| seen.contains(p));
        out
    }
}

/// A tier seen through tierback's own store (an S3 bucket, a crypt remote): its listing, the
/// identity being the object's size (uploads cannot be told apart otherwise; the catalog's
/// upload count is checked too).
pub struct StoreView(pub Box<dyn tierback_engine::store::Store>);

impl TierView for StoreView {
    fn objects(&mut self) -> BTreeMap<String, u64> {
        self.0
            .list("")
            .expect("list the tier")
            .into_iter()
            .filter(|m| m.key.ends_with(".gz"))
            .map(|m| (m.key, m.size))
            .collect()
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
    /// Takes in a new listing; panics if a key was written twice or came back after it went.
    pub fn observe(&mut self, tier: &str, now: i64, objects: BTreeMap<String, u64>) {
        for (key, id) in &objects {
            match self.present.get(key) {
                None => {
                    assert!(
                        !self.gone.contains(key),
                        "{}: {key} came back to tier {tier} after it was removed",
                        rfc3339(now)
                    );
                    self.uploaded += 1;
                    self.uploaded_today += 1;
                }
                Some(old) => assert_eq!(
                    old,
                    id,
                    "{}: {key} was written to tier {tier} a second time",
                    rfc3339(now)
                ),
            }
        }
        for key in self.present.keys() {
            if !objects.contains_key(key) {
                self.gone.insert(key.clone());
                self.deleted += 1;
            }
        }
        self.present = objects;
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
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `make deps` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("backup_age_hours ") && !l.starts_with("backup_files_count "))
        .collect();
    assert!(
        problems.is_empty(),
        "promtool check metrics: {problems:?}\n{text}"
    );
}

pub fn rfc3339(t: i64) -> String {
    tierback_engine::layout::rfc3339(t)
}
