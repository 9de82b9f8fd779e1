//! The system over time: `tierback run` every simulated hour through `TIERBACK_NOW`, with the
//! example config's shape (hourly PostgreSQL, Redis every 6 hours, configs daily; the seed's
//! retention per tier; offsite `copy = ["daily", "weekly"]` synced at 07:00 and Sunday 04:30;
//! configs kept forever offsite), checked after every run and every simulated day against a
//! model that shares no code with tierback's planning (`tests/common/sim.rs`).
//!
//! The sources are `command` and `files` stand-ins a few KiB large: what is under test is the
//! schedule, the desired state, sync, prune and verification, not the dump tools.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tierback_tests::files_under;
use tierback_tests::garage::Garage;
use tierback_tests::rclone::Remotes;
use tierback_tests::sim::{
    Backup, DAY, DirView, HOUR, Ledger, Model, PromtoolCheck, Rules, StoreView, TierView, metric,
    parse_key, promtool_start, rfc3339, tierback,
};

/// Monday 2027-01-04 00:00:00 UTC.
const START: i64 = 1_799_020_800;
/// Budgets of the remote tiers' daily verification (bytes of stored files).
const MINIO_BUDGET: u64 = 1 << 20;
const OFFSITE_BUDGET: u64 = 256 << 10;
const WINDOW: i64 = 30 * DAY;

/// The services and jobs of the example config, with stand-in sources.
fn services(dir: &Path) -> String {
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("nginx.conf"), "server { listen 80; }\n").unwrap();
    std::fs::write(etc.join("docker-compose.yaml"), "services: {}\n").unwrap();
    format!(
        r#"
[services.postgresql]
driver = "command"
schedule = ["0 * * * *"]
command = ["sh", "-c", "echo \"-- dump at $TIERBACK_NOW\"; seq 1 1500"]
extension = "sql"

[services.redis]
driver = "command"
schedule = ["0 */6 * * *"]
command = ["sh", "-c", "echo \"REDIS $TIERBACK_NOW\"; seq 1 400"]
extension = "rdb"

[services.configs]
driver = "files"
schedule = ["0 6 * * *"]
paths = ["{etc}"]
tier_retention = {{ offsite = {{ keep_last = "all" }} }}

[jobs]
verify = ["0 7 * * *"]
prune = ["0 23 * * *"]
restore_test = ["0 14 * * 0"]
"#,
        etc = etc.display()
    )
}

/// The seed's retention per tier, as the model sees it.
fn models() -> Vec<(&'static str, Model)> {
    vec![
        (
            "local",
            Model {
                copy: vec!["all"],
                rules: Rules {
                    hourly: Some(168),
                    daily: Some(30),
                    weekly: Some(12),
                    ..Rules::default()
                },
                ..Model::default()
            },
        ),
        (
            "minio",
            Model {
                copy: vec!["all"],
                rules: Rules {
                    within: Some(90 * DAY),
                    ..Rules::default()
                },
                ..Model::default()
            },
        ),
        (
            "offsite",
            Model {
                copy: vec!["daily", "weekly"],
                rules: Rules {
                    daily: Some(30),
                    weekly: Some(52),
                    monthly: Some(u32::MAX),
                    ..Rules::default()
                },
                service_rules: vec![(
                    "configs",
                    Rules {
                        last: Some(u32::MAX),
                        ..Rules::default()
                    },
                )],
            },
        ),
    ]
}

/// The three tiers' TOML: `minio` and `offsite` sections are given (what differs per run).
fn config(dir: &Path, minio: &str, offsite: &str) -> PathBuf {
    let text = format!(
        r#"[catalog]
path = "{dir}/catalog.db"

[defaults]
compression_level = 6
block_size = "64KiB"
threads = 1

[tiers.local]
type = "local"
path = "{dir}/local"
retention = {{ keep_hourly = 168, keep_daily = 30, keep_weekly = 12 }}

{minio}
retention = {{ keep_within = "90d" }}
verify_window = "30d"
verify_budget = "{MINIO_BUDGET}"

{offsite}
copy = ["daily", "weekly"]
sync = ["0 7 * * *", "30 4 * * 0"]
retention = {{ keep_daily = 30, keep_weekly = 52, keep_monthly = "all" }}
verify_budget = "{OFFSITE_BUDGET}"

[metrics]
textfile = "{dir}/tierback.prom"
{services}"#,
        dir = dir.display(),
        services = services(dir),
    );
    let path = dir.join("tierback.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Sim {
    dir: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    tiers: Vec<(&'static str, Model, Box<dyn TierView>, Ledger)>,
    backups: Vec<Backup>,
    /// The last day's `promtool check metrics`, still running.
    promtool: Option<PromtoolCheck>,
}

/// Per-day figures of one tier, for the table printed at the end.
#[derive(Default, Clone, Copy)]
struct Totals {
    held: usize,
    expected: usize,
}

impl Sim {
    /// Runs `days` simulated days; `steady_after` is the day from which each tier must receive
    /// exactly one day's worth of new copies a day.
    fn run(&mut self, days: i64) -> BTreeMap<&'static str, Totals> {
        let mut totals = BTreeMap::new();
        let started = std::time::Instant::now();
        // Where the time goes: tierback itself, the test's view of the tiers, the daily checks.
        let mut spent = [std::time::Duration::ZERO; 3];
        for day in 0..days {
            if day % 50 == 0 {
                eprintln!(
                    "day {day}: {:.0} s (tierback {:.0} s, observing {:.0} s, checks {:.0} s)",
                    started.elapsed().as_secs_f64(),
                    spent[0].as_secs_f64(),
                    spent[1].as_secs_f64(),
                    spent[2].as_secs_f64()
                );
            }
            for hour in 0..24 {
                // Cron starts `run` a few minutes past the hour.
                let now = START + day * DAY + hour * HOUR + 300;
                let t = std::time::Instant::now();
                tierback(&self.config, &self.env, now, &["run", "--quiet"]);
                spent[0] += t.elapsed();
                let t = std::time::Instant::now();
                self.observe(now);
                spent[1] += t.elapsed();
            }
            let now = START + day * DAY + 23 * HOUR + 300;
            let t = std::time::Instant::now();
            totals = self.check_day(day, now);
            spent[2] += t.elapsed();
        }
        if let Some(last) = self.promtool.take() {
            last.finish();
        }
        totals
    }

    /// After each run: what every tier holds now. New keys on the first tier are new backups.
    fn observe(&mut self, now: i64) {
        for (i, (name, _, view, ledger)) in self.tiers.iter_mut().enumerate() {
            let new = ledger.observe(name, now, view.changes());
            if i == 0 {
                for key in new {
                    let (service, taken_at) =
                        parse_key(&key).unwrap_or_else(|| panic!("unexpected key {key}"));
                    self.backups.push(Backup {
                        service,
                        taken_at,
                        key,
                    });
                }
            }
        }
    }

    /// After the day's last run (prune has run at 23:05): every check of the day.
    fn check_day(&mut self, day: i64, now: i64) -> BTreeMap<&'static str, Totals> {
        let when = rfc3339(now);
        let text = std::fs::read_to_string(self.dir.join("tierback.prom")).unwrap();
        // promtool takes longer than a simulated hour: it checks today's text beside
        // tomorrow's runs, and its verdict is in before the next day's checks.
        if let Some(previous) = self
            .promtool
            .replace(promtool_start(&format!("{when}: "), &text))
        {
            previous.finish();
        }
        let mut totals = BTreeMap::new();
        let backups_today = self
            .backups
            .iter()
            .filter(|b| b.taken_at.div_euclid(DAY) == now.div_euclid(DAY))
            .count() as u64;
        for (name, model, _, ledger) in &mut self.tiers {
            // 1. Exactly the desired state.
            let expected = model.expected(&self.backups, now);
            let held: Vec<&String> = ledger.present.keys().collect();
            let missing: Vec<&String> = expected
                .must
                .iter()
                .filter(|k| !ledger.present.contains_key(*k))
                .collect();
            let extra: Vec<&&String> = held
                .iter()
                .filter(|k| !expected.must.contains(**k) && !expected.may.contains(**k))
                .collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{when}: tier {name} holds {} copies, the model wants {}\n  missing: {:?}\n  extra: {:?}",
                held.len(),
                expected.must.len(),
                &missing[..missing.len().min(10)],
                &extra[..extra.len().min(10)],
            );
            // 3. At most one day's worth of new copies a day; every copy checked within the
            // tier's window, and verification within its budget.
            let limit = match *name {
                // The first day also takes each service's first backup at 00:05.
                "offsite" => 3 + u64::from(day == 0) * 2,
                _ => backups_today,
            };
            assert!(
                ledger.uploaded_today <= limit,
                "{when}: tier {name} received {} copies in a day (at most {limit})",
                ledger.uploaded_today
            );
            ledger.uploaded_today = 0;
            let oldest = metric(
                &text,
                &format!("backup_verify_oldest_age_seconds{{tier=\"{name}\"}}"),
            )
            .unwrap_or_else(|| panic!("{when}: no verification age for {name}\n{text}"));
            let window = if *name == "local" { DAY } else { WINDOW };
            assert!(
                oldest <= window as f64,
                "{when}: a copy on {name} was last verified {oldest} s ago (window {window} s)"
            );
            let read = metric(
                &text,
                &format!("backup_verify_read_bytes{{tier=\"{name}\"}}"),
            );
            let budget = match *name {
                "minio" => MINIO_BUDGET,
                "offsite" => OFFSITE_BUDGET,
                _ => u64::MAX,
            };
            if let Some(read) = read {
                assert!(
                    read <= budget as f64,
                    "{when}: verification read {read} bytes on {name} (budget {budget})"
                );
                ledger.verify_bytes += read as u64;
            }
            totals.insert(
                *name,
                Totals {
                    held: held.len(),
                    expected: expected.must.len(),
                },
            );
        }
        // The seed's counts, per hourly service, once a tier's retention has filled: local 168
        // hourly + 30 daily + 12 weekly (less the days and weeks the hourly ones cover), MinIO
        // 90 days, offsite 30 daily + 52 weekly (+ a monthly for every month past the year).
        if day >= 90 {
            let local = self.count("local", "postgresql");
            assert!(
                (190..=168 + 30 + 12).contains(&local),
                "{when}: local {local}"
            );
            let minio = self.count("minio", "postgresql");
            assert!(
                (90 * 24 - 1..=90 * 24 + 1).contains(&minio),
                "{when}: minio {minio}"
            );
        }
        if day >= 7 * 52 {
            let offsite = self.count("offsite", "postgresql");
            assert!(
                (30 + 52 - 5..=30 + 52 + 14).contains(&offsite),
                "{when}: offsite {offsite}"
            );
        }
        // 4. Each service's newest backup exists, verified, on the first tier.
        let list: Vec<serde_json::Value> = serde_json::from_slice(&tierback(
            &self.config,
            &self.env,
            now + 60,
            &["list", "--json"],
        ))
        .unwrap();
        for service in ["postgresql", "redis", "configs"] {
            let newest = list
                .iter()
                .find(|a| a["service"] == service)
                .unwrap_or_else(|| panic!("{when}: no backup of {service}"));
            let local = newest["copies"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["tier"] == "local")
                .unwrap_or_else(|| panic!("{when}: newest {service} backup not on local"));
            assert!(
                local["state"] == "present" && local["verified_at"].is_i64(),
                "{when}: newest {service} backup on local: {local}"
            );
        }
        totals
    }

    fn print_table(&self, totals: &BTreeMap<&'static str, Totals>, title: &str) {
        println!("{title}");
        println!(
            "{:<8} {:>6} {:>9} {:>9} {:>8} {:>12}",
            "tier", "held", "expected", "uploaded", "deleted", "verify read"
        );
        for (name, _, _, ledger) in &self.tiers {
            let t = totals.get(name).copied().unwrap_or_default();
            println!(
                "{:<8} {:>6} {:>9} {:>9} {:>8} {:>12}",
                name, t.held, t.expected, ledger.uploaded, ledger.deleted, ledger.verify_bytes
            );
        }
    }

    fn count(&self, tier: &str, service: &str) -> usize {
        let (_, _, _, ledger) = self.tiers.iter().find(|t| t.0 == tier).unwrap();
        ledger
            .present
            .keys()
            .filter(|k| k.starts_with(&format!("{service}/")))
            .count()
    }
}

/// A scratch directory in memory where there is one: ten thousand runs fsync a lot.
fn scratch() -> tempfile::TempDir {
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    tempfile::Builder::new()
        .prefix("tierback-year-")
        .tempdir_in(base)
        .unwrap()
}

fn days(default: i64) -> i64 {
    std::env::var("TIERBACK_SIM_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(default)
}

#[test]
fn a_year_of_cron_on_three_tiers_converges_to_the_desired_state() {
    let scratch = scratch();
    let dir = scratch.path().to_owned();
    if std::env::var_os("TIERBACK_SIM_KEEP").is_some() {
        // Keep the final state for profiling a late `run` by hand.
        eprintln!("keeping {}", scratch.keep().display());
    }
    let offsite_dir = dir.join("offsite");
    std::fs::create_dir_all(&offsite_dir).unwrap();
    // The object tier is a directory standing in for MinIO (with an object tier's 30-day
    // verification window; its S3 behaviour is the Garage month below); the offsite tier is a
    // real rclone remote of type local.
    let config = config(
        &dir,
        &format!(
            "[tiers.minio]\ntype = \"local\"\npath = \"{}/minio\"",
            dir.display()
        ),
        &format!(
            "[tiers.offsite]\ntype = \"rclone\"\nremote = \"yearoff:{}\"",
            offsite_dir.display()
        ),
    );
    let env = vec![("RCLONE_CONFIG_YEAROFF_TYPE".to_owned(), "local".to_owned())];
    let mut views: Vec<Box<dyn TierView>> = vec![
        Box::new(DirView::new(&dir.join("local"))),
        Box::new(DirView::new(&dir.join("minio"))),
        Box::new(DirView::new(&offsite_dir)),
    ];
    let mut sim = Sim {
        dir: dir.clone(),
        config,
        env,
        tiers: models()
            .into_iter()
            .map(|(name, model)| (name, model, views.remove(0), Ledger::default()))
            .collect(),
        backups: Vec::new(),
        promtool: None,
    };
    let days = days(400);
    let totals = sim.run(days);
    sim.print_table(&totals, &format!("{days} simulated days:"));

    // Configs are kept forever offsite: the first of each day.
    assert_eq!(sim.count("offsite", "configs"), days as usize);
}

#[test]
fn a_month_on_garage_and_a_crypt_remote() {
    let garage = Garage::single_node();
    let remotes = Remotes::new();
    let scratch = scratch();
    let dir = scratch.path().to_owned();
    let config = config(
        &dir,
        garage.access.tier_toml("minio", "").trim_end(),
        &format!(
            "[tiers.offsite]\ntype = \"rclone\"\nremote = \"{}\"",
            remotes.crypt
        ),
    );
    let loaded = tierback_engine::config::Config::load(&config).unwrap();
    let minio_store = tierback_engine::store::open_tier(loaded.tier("minio").unwrap()).unwrap();
    let offsite_store = tierback_engine::store::rclone::RcloneStore::open_with_env(
        loaded.tier("offsite").unwrap(),
        remotes.env.clone(),
    )
    .unwrap();
    let mut sim = Sim {
        dir: dir.clone(),
        config,
        env: remotes.env.clone(),
        tiers: models()
            .into_iter()
            .zip([
                Box::new(DirView::new(&dir.join("local"))) as Box<dyn TierView>,
                Box::new(StoreView::new(minio_store)),
                Box::new(StoreView::new(Box::new(offsite_store))),
            ])
            .map(|((name, model), view)| (name, model, view, Ledger::default()))
            .collect(),
        backups: Vec::new(),
        promtool: None,
    };
    let days = days(30).min(30);
    let totals = sim.run(days);
    sim.print_table(
        &totals,
        &format!("{days} simulated days on Garage and crypt:"),
    );
    // Nothing offsite is readable without the crypt password.
    for f in files_under(&remotes.crypt_dir()) {
        assert!(!f.contains("postgresql"), "plaintext name {f}");
    }
}

/// The simulation's own eyes: a key written again, or back after it went, is caught even
/// when both happen between two looks.
#[test]
fn the_ledger_catches_a_key_written_twice_or_coming_back() {
    let scratch = scratch();
    let day = scratch.path().join("pg/2027-01-04");
    std::fs::create_dir_all(&day).unwrap();
    let write = |name: &str| {
        // A new file renamed into place, as tierback writes.
        let tmp = day.join(".tmp");
        std::fs::write(&tmp, name).unwrap();
        std::fs::rename(&tmp, day.join(name)).unwrap();
    };
    let look = |view: &mut DirView, ledger: &mut Ledger| {
        let changes = view.changes();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ledger.observe("t", START, changes)
        }))
    };
    let (mut view, mut ledger) = (DirView::new(scratch.path()), Ledger::default());
    write("a_000000.sql.gz");
    write("b_000000.sql.gz");
    assert_eq!(look(&mut view, &mut ledger).unwrap().len(), 2);
    assert!(look(&mut view, &mut ledger).unwrap().is_empty());
    // Removed, then (later) back: caught.
    std::fs::remove_file(day.join("a_000000.sql.gz")).unwrap();
    assert!(look(&mut view, &mut ledger).unwrap().is_empty());
    assert_eq!(ledger.gone.len(), 1);
    write("a_000000.sql.gz");
    assert!(look(&mut view, &mut ledger).is_err(), "came back unseen");
    // Written again between two looks: caught by its new identity.
    let (mut view, mut ledger) = (DirView::new(scratch.path()), Ledger::default());
    look(&mut view, &mut ledger).unwrap();
    write("b_000000.sql.gz");
    assert!(look(&mut view, &mut ledger).is_err(), "rewrite unseen");
}
