use super::*;
use crate::catalog::CopyRecord;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// 2026-01-19 00:00 UTC, a Monday.
const MONDAY: i64 = 1_768_780_800;

fn config(extra: &str) -> Config {
    Config::parse(
        &format!(
            "[catalog]\npath = \"/tmp/x.db\"\n\
             [tiers.local]\ntype = \"local\"\npath = \"/tmp/l\"\nretention = {{ keep_last = 2 }}\n\
             [tiers.offsite]\ntype = \"local\"\npath = \"/tmp/o\"\ncopy = [\"daily\"]\n\
             retention = {{ keep_daily = 2 }}\n{extra}"
        ),
        std::path::Path::new("/tmp/t.toml"),
    )
    .unwrap()
}

fn copy(tier: &str, state: CopyState) -> CopyRecord {
    CopyRecord {
        tier: TierName::new(tier).unwrap(),
        state,
        stored_at: 0,
        verified_at: Some(0),
        error: None,
    }
}

struct World {
    history: Vec<BackupEntry>,
    artifacts: Vec<ArtifactRecord>,
    retired: HashMap<TierName, HashSet<BackupId>>,
}

impl World {
    /// Backups of `pg` at these times, each held on `tiers`.
    fn new(times: &[(i64, &[&str])]) -> World {
        let mut w = World {
            history: vec![],
            artifacts: vec![],
            retired: HashMap::new(),
        };
        for (i, (t, tiers)) in times.iter().enumerate() {
            let id = i as i64 + 1;
            w.history.push(BackupEntry {
                id: BackupId::new(id),
                service: "pg".into(),
                taken_at: *t,
                pinned: false,
            });
            if !tiers.is_empty() {
                w.artifacts.push(ArtifactRecord {
                    copies: tiers.iter().map(|t| copy(t, CopyState::Present)).collect(),
                    ..ArtifactRecord::for_test(id, "pg", *t)
                });
            }
        }
        w
    }

    fn plan(&self, config: &Config, now: i64) -> Vec<Entry> {
        plan(
            config,
            &Snapshot {
                artifacts: &self.artifacts,
                history: &self.history,
                retired: &self.retired,
            },
            now,
        )
    }
}

fn actions(plan: &[Entry], tier: &str) -> Vec<(i64, Action)> {
    let mut v: Vec<(i64, Action)> = plan
        .iter()
        .filter(|e| e.tier == tier)
        .map(|e| (e.backup_id.get(), e.action))
        .collect();
    v.sort_by_key(|x| x.0);
    v
}

#[test]
fn offsite_gets_the_first_backup_of_each_day_within_its_retention() {
    let c = config("");
    // Two backups a day for three days, all on local only.
    let local: &[&str] = &["local"];
    let w = World::new(&[
        (MONDAY + HOUR, local),
        (MONDAY + 2 * HOUR, local),
        (MONDAY + DAY + HOUR, local),
        (MONDAY + DAY + 2 * HOUR, local),
        (MONDAY + 2 * DAY + HOUR, local),
        (MONDAY + 2 * DAY + 2 * HOUR, local),
    ]);
    let p = w.plan(&c, MONDAY + 2 * DAY + 3 * HOUR);
    // Offsite: the first of each of the two newest days.
    assert_eq!(
        actions(&p, "offsite"),
        [(3, Action::Upload), (5, Action::Upload)]
    );
    // Local keeps its last two, and the ones offsite waits for.
    let local = actions(&p, "local");
    assert_eq!(
        local,
        [
            (1, Action::Remove),
            (2, Action::Remove),
            (3, Action::Keep),
            (4, Action::Remove),
            (5, Action::Keep),
            (6, Action::Keep)
        ]
    );
    let held3 = p
        .iter()
        .find(|e| e.tier == "local" && e.backup_id == BackupId::new(3))
        .unwrap();
    assert_eq!(held3.reasons, ["not yet on offsite"]);
}

#[test]
fn a_backup_offsite_dropped_is_never_sent_again_and_selection_does_not_shift() {
    let c = config("[tiers.minio]\ntype = \"local\"\npath = \"/tmp/m\"\n");
    let both: &[&str] = &["local", "minio"];
    let minio: &[&str] = &["minio"];
    let none: &[&str] = &[];
    // Day 1's first backup is gone from every tier; day 1's second is on minio. Day 2's
    // first was on offsite and retired from it.
    let mut w = World::new(&[
        (MONDAY + HOUR, none),
        (MONDAY + 2 * HOUR, minio),
        (MONDAY + DAY + HOUR, minio),
        (MONDAY + 5 * DAY, both),
    ]);
    w.retired
        .entry(TierName::new("offsite").unwrap())
        .or_default()
        .insert(BackupId::new(3));
    let p = w.plan(&c, MONDAY + 5 * DAY + HOUR);
    // keep_daily = 2 would want days 2 and 6: day 2 was retired, so only day 6 is sent.
    assert_eq!(actions(&p, "offsite"), [(4, Action::Upload)]);
    // Backup 2 is not the first of its day, even though backup 1 has no files left.
    let p = w.plan(&c, MONDAY + DAY + 2 * HOUR);
    assert!(!actions(&p, "offsite").iter().any(|(id, _)| *id == 2));
}

#[test]
fn pins_hold_where_held_and_keep_pinned_tiers_receive_them() {
    let c = Config::parse(
        "[catalog]\npath = \"/tmp/x.db\"\n\
         [tiers.local]\ntype = \"local\"\npath = \"/tmp/l\"\nretention = { keep_last = 1 }\n\
         [tiers.archive]\ntype = \"local\"\npath = \"/tmp/a\"\ncopy = [\"monthly\"]\n\
         retention = { keep_last = 1, keep_pinned = true }\n",
        std::path::Path::new("/tmp/t.toml"),
    )
    .unwrap();
    let local: &[&str] = &["local"];
    let mut w = World::new(&[
        (MONDAY + HOUR, local),
        (MONDAY + 2 * HOUR, local),
        (MONDAY + 3 * HOUR, local),
    ]);
    w.history[1].pinned = true;
    w.artifacts[1].pinned = true;
    let p = w.plan(&c, MONDAY + 4 * HOUR);
    assert_eq!(
        actions(&p, "local"),
        [(1, Action::Keep), (2, Action::Keep), (3, Action::Keep)],
        "1: archive waits for it; 2: pinned; 3: newest"
    );
    assert_eq!(
        actions(&p, "archive"),
        [(1, Action::Upload), (2, Action::Upload)]
    );
    let pinned = p
        .iter()
        .find(|e| e.tier == "local" && e.backup_id == BackupId::new(2))
        .unwrap();
    assert_eq!(pinned.reasons, ["pinned"]);
}

#[test]
fn corrupt_copies_are_repaired_from_another_tier_and_tombstones_finished() {
    let c = config("");
    let both: &[&str] = &["local", "offsite"];
    let mut w = World::new(&[(MONDAY + HOUR, both), (MONDAY + DAY + HOUR, both)]);
    w.artifacts[1].copies[1].state = CopyState::Corrupt;
    w.artifacts[0].copies[0].state = CopyState::Missing;
    let p = w.plan(&c, MONDAY + DAY + 2 * HOUR);
    assert_eq!(
        actions(&p, "offsite"),
        [(1, Action::Keep), (2, Action::Repair)]
    );
    assert_eq!(
        actions(&p, "local"),
        [(1, Action::Remove), (2, Action::Keep)]
    );
}

#[test]
fn selection_picks_the_first_of_each_period() {
    let entry = |id: i64, t: i64| BackupEntry {
        id: BackupId::new(id),
        service: "pg".into(),
        taken_at: t,
        pinned: false,
    };
    let list = [
        entry(5, MONDAY + 7 * DAY + 5),
        entry(3, MONDAY + DAY + 60),
        entry(2, MONDAY + 2 * HOUR),
        entry(1, MONDAY + HOUR),
        entry(6, MONDAY - 60), // Sunday: the previous week
    ];
    let refs: Vec<&BackupEntry> = list.iter().collect();
    let ids = |policy: &[&str]| -> HashSet<i64> {
        let policy: Vec<String> = policy.iter().map(|p| p.to_string()).collect();
        select(&policy, &refs)
            .iter()
            .zip(&refs)
            .filter(|(s, _)| **s)
            .map(|(_, b)| b.id.get())
            .collect()
    };
    assert_eq!(ids(&["daily"]), HashSet::from([1, 3, 5, 6]));
    assert_eq!(ids(&["weekly"]), HashSet::from([1, 5, 6]));
    assert_eq!(ids(&["all"]).len(), 5);
    assert!(ids(&[]).is_empty());
}
/// A plan over artifacts alone (one per backup, history = what they name).
fn plan_of(config: &Config, artifacts: &[ArtifactRecord], now: i64) -> Vec<Entry> {
    let history: Vec<BackupEntry> = artifacts
        .iter()
        .map(|a| BackupEntry {
            id: a.backup_id,
            service: a.service.as_str().into(),
            taken_at: a.taken_at,
            pinned: a.pinned,
        })
        .collect();
    plan(
        config,
        &Snapshot {
            artifacts,
            history: &history,
            retired: &HashMap::new(),
        },
        now,
    )
}

fn kept_ids(plan: &[Entry], service: &str) -> Vec<i64> {
    let mut k: Vec<i64> = plan
        .iter()
        .filter(|e| e.desired() && e.service == service)
        .map(|e| e.backup_id.get())
        .collect();
    k.sort();
    k
}

fn local_only() -> Config {
    Config::parse(
        "[catalog]\npath = \"/tmp/x.db\"\n[tiers.local]\ntype = \"local\"\npath = \"/tmp/x\"\nretention = { keep_last = 5 }\n\
         [services.wal]\ndriver = \"postgres_wal\"\nspool = \"/tmp/s\"\nschedule = [\"*/5 * * * *\"]\n\
         [services.configs]\ndriver = \"files\"\npaths = [\"/etc\"]\ntier_retention = { local = { keep_last = 1 } }\n",
        std::path::Path::new("/tmp/t.toml"),
    )
    .unwrap()
}

fn on_local(id: i64, service: &str, t: i64, state: CopyState) -> ArtifactRecord {
    ArtifactRecord {
        copies: vec![copy("local", state)],
        ..ArtifactRecord::for_test(id, service, t)
    }
}

#[test]
fn tombstones_of_an_interrupted_prune_are_finished_and_never_protect() {
    let config = local_only();
    // The newest backup is a tombstone: it goes, and the next one is the newest verified.
    let p = plan_of(
        &config,
        &[
            on_local(2, "pg", 200, CopyState::Missing),
            on_local(1, "pg", 100, CopyState::Present),
        ],
        300,
    );
    let d2 = p.iter().find(|d| d.backup_id == BackupId::new(2)).unwrap();
    assert!(
        d2.action == Action::Remove && d2.reasons[0].contains("interrupted prune"),
        "{d2:?}"
    );
    let d1 = p.iter().find(|d| d.backup_id == BackupId::new(1)).unwrap();
    assert!(
        d1.action == Action::Keep && d1.reasons.iter().any(|r| r == "newest verified"),
        "{d1:?}"
    );
}

#[test]
fn service_retention_replaces_the_tiers_and_tier_retention_the_services() {
    let config = local_only();
    let now = 100 * HOUR;
    // Three backups 1, 30 and 50 hours old of a WAL service, of pg and of configs.
    let mut list = vec![];
    for (i, service) in ["wal", "pg", "configs"].iter().enumerate() {
        for (j, age) in [1, 30, 50].iter().enumerate() {
            let id = (i * 3 + j + 1) as i64;
            list.push(on_local(id, service, now - age * HOUR, CopyState::Present));
        }
    }
    let p = plan_of(&config, &list, now);
    // WAL: 24 hours (the driver's default); pg: the tier's keep_last = 5; configs: its own
    // retention on this tier, keep_last = 1.
    assert_eq!(kept_ids(&p, "wal"), [1]);
    assert_eq!(kept_ids(&p, "pg"), [4, 5, 6]);
    assert_eq!(kept_ids(&p, "configs"), [7]);
}

#[test]
fn wal_after_the_newest_base_backup_stays_past_its_retention() {
    let config = Config::parse(
        "[catalog]\npath = \"/tmp/x.db\"\n[tiers.local]\ntype = \"local\"\npath = \"/tmp/x\"\n\
         [services.base]\ndriver = \"postgres\"\nbase_backup = true\n\
         [services.wal]\ndriver = \"postgres_wal\"\nspool = \"/tmp/s\"\nbase = \"base\"\n",
        std::path::Path::new("/tmp/t.toml"),
    )
    .unwrap();
    let rec = |id: i64, service: &str, file: &str, t: i64, verified: bool| ArtifactRecord {
        file: file.into(),
        copies: vec![CopyRecord {
            verified_at: verified.then_some(0),
            ..copy("local", CopyState::Present)
        }],
        ..ArtifactRecord::for_test(id, service, t)
    };
    let now = 200 * HOUR;
    let wal = |id: i64, age: i64| {
        rec(
            id,
            "wal",
            "000000010000000000000003_000000.wal",
            now - age * HOUR,
            true,
        )
    };
    // Base backups failed for two days: the newest good one is 60 hours old.
    let mut list = vec![
        rec(1, "base", "base_000000.tar", now - 60 * HOUR, true),
        rec(2, "base", "base_000000.tar", now - 90 * HOUR, true),
        wal(10, 1),
        wal(11, 30),
        wal(12, 59),
        wal(13, 61),
    ];
    assert_eq!(kept_ids(&plan_of(&config, &list, now), "wal"), [10, 11, 12]);
    // The newest base backup not verified yet: WAL since the newest verified one stays too.
    list.push(rec(3, "base", "base_000000.tar", now - 2 * HOUR, false));
    assert_eq!(kept_ids(&plan_of(&config, &list, now), "wal"), [10, 11, 12]);
    list[6].copies[0].verified_at = Some(0);
    assert_eq!(kept_ids(&plan_of(&config, &list, now), "wal"), [10]);
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::artifact::format::testing::config as cases;

    const TIERS: [&str; 3] = ["local", "s3", "offsite"];

    fn three_tiers() -> Config {
        Config::parse(
            "[catalog]\npath = \"/tmp/x.db\"\n\
             [tiers.local]\ntype = \"local\"\npath = \"/tmp/l\"\nretention = { keep_last = 3 }\n\
             [tiers.s3]\ntype = \"local\"\npath = \"/tmp/s\"\nretention = { keep_within = \"2d\" }\n\
             [tiers.offsite]\ntype = \"local\"\npath = \"/tmp/o\"\ncopy = [\"daily\"]\n\
             retention = { keep_daily = 2, keep_pinned = true }\n\
             [services.base]\ndriver = \"postgres\"\nbase_backup = true\n\
             [services.wal]\ndriver = \"postgres_wal\"\nspool = \"/tmp/w\"\nbase = \"base\"\n\
             [services.pg]\ndriver = \"command\"\ncommand = [\"true\"]\n",
            std::path::Path::new("/tmp/t.toml"),
        )
        .unwrap()
    }

    /// A copy's state on one tier: none, present (verified or not), corrupt, or a tombstone.
    fn copy_state() -> impl Strategy<Value = Option<(CopyState, bool)>> {
        prop_oneof![
            Just(None),
            Just(Some((CopyState::Present, true))),
            Just(Some((CopyState::Present, false))),
            Just(Some((CopyState::Corrupt, true))),
            Just(Some((CopyState::Missing, true))),
        ]
    }

    /// Backups of three services (base backups, the WAL that follows them, plain dumps)
    /// over four days, one or two files each, in any state on any tier, some pinned, some
    /// retired from some tier.
    fn world() -> impl Strategy<
        Value = (
            Vec<BackupEntry>,
            Vec<ArtifactRecord>,
            HashMap<TierName, HashSet<BackupId>>,
        ),
    > {
        let backup = (
            0..3usize,
            0..96i64,
            any::<bool>(),
            prop::collection::vec(prop::collection::vec(copy_state(), 3), 0..3),
            prop::collection::vec(any::<bool>(), 3),
        );
        prop::collection::vec(backup, 1..24).prop_map(|backups| {
            let (mut history, mut artifacts, mut retired) = (vec![], vec![], HashMap::new());
            for (i, (service, hour, pinned, files, gone)) in backups.into_iter().enumerate() {
                let id = i as i64 + 1;
                let service = ["base", "wal", "pg"][service];
                let taken_at = MONDAY + hour * HOUR + i as i64;
                history.push(BackupEntry {
                    id: BackupId::new(id),
                    service: service.into(),
                    taken_at,
                    pinned,
                });
                for (j, states) in files.iter().enumerate() {
                    let file = if service == "base" {
                        format!("base_{j}.tar")
                    } else {
                        format!("f{j}")
                    };
                    artifacts.push(ArtifactRecord {
                        id: crate::id::ArtifactId::new(id * 10 + j as i64),
                        file: file.clone(),
                        key: format!("{service}/d/{id}/{file}.gz"),
                        pinned,
                        copies: TIERS
                            .iter()
                            .zip(states)
                            .filter_map(|(tier, s)| {
                                s.map(|(state, verified)| CopyRecord {
                                    verified_at: verified.then_some(0),
                                    ..copy(tier, state)
                                })
                            })
                            .collect(),
                        ..ArtifactRecord::for_test(id, service, taken_at)
                    });
                }
                for (tier, gone) in TIERS.iter().zip(gone) {
                    if gone {
                        retired
                            .entry(TierName::new(*tier).unwrap())
                            .or_insert_with(HashSet::new)
                            .insert(BackupId::new(id));
                    }
                }
            }
            (history, artifacts, retired)
        })
    }

    fn summary(entries: &[Entry]) -> Vec<String> {
        let mut v: Vec<String> = entries
            .iter()
            .map(|e| {
                let (tier, id, action) = (&e.tier, e.backup_id, e.action);
                format!("{tier} {id} {action:?} {:?} {:?}", e.reasons, e.keys)
            })
            .collect();
        v.sort();
        v
    }

    proptest! {
        #![proptest_config(cases())]

        /// Sync plans from the artifacts `upload_inputs` names (what the catalog reads on
        /// every run), and sends exactly what the plan over every artifact sends.
        #[test]
        fn uploads_from_what_the_tiers_lack_are_the_uploads_from_everything(
            (history, artifacts, retired) in world(),
            subset in 1..8usize,
            hours_later in 0..72i64,
        ) {
            let config = three_tiers();
            let now = MONDAY + 96 * HOUR + hours_later * HOUR;
            let tiers: Vec<&TierConfig> = config
                .tiers
                .iter()
                .enumerate()
                .filter(|(i, _)| subset & (1 << i) != 0)
                .map(|(_, t)| t)
                .collect();
            let (names, bases) = upload_inputs(&config, &tiers);
            // The catalog's selection (Catalog::artifacts_lacking), over records.
            let lacking: HashSet<BackupId> = artifacts
                .iter()
                .filter(|a| {
                    names.iter().any(|t| a.copy_on(t).is_none_or(|c| c.state != CopyState::Present))
                        || bases.contains(&&a.service)
                })
                .map(|a| a.backup_id)
                .collect();
            let read: Vec<ArtifactRecord> = artifacts
                .iter()
                .filter(|a| lacking.contains(&a.backup_id))
                .cloned()
                .collect();
            let snap = |artifacts| Snapshot { artifacts, history: &history, retired: &retired };
            let everything = uploads(&config, &snap(&artifacts), now, &tiers);
            let read_only = uploads(&config, &snap(&read), now, &tiers);
            prop_assert_eq!(summary(&read_only), summary(&everything));
        }
    }
}
