use super::*;
use crate::artifact::BlockEntry;
use crate::id::{ArtifactId, BackupId, ServiceName, TierName};

/// A service name in a test.
pub(super) fn service(name: &str) -> ServiceName {
    ServiceName::new(name).unwrap()
}

/// A tier name in a test.
pub(super) fn tier(name: &str) -> TierName {
    TierName::new(name).unwrap()
}

pub(super) fn artifact(file: &str) -> NewArtifact {
    NewArtifact {
        file: file.into(),
        key: format!("svc/2026-01-16/{file}.gz"),
        raw_size: 10,
        raw_sha256: "aa".into(),
        stored_size: 7,
        stored_sha256: "bb".into(),
        compression_level: 9,
        index: BlockIndex {
            block_size: 16,
            entries: vec![BlockEntry {
                offset: 0,
                stored_len: 7,
                raw_len: 10,
                sha256: [3; 32],
                stored_sha256: Some([4; 32]),
            }],
        },
        facts: serde_json::json!({"rows": 3}),
    }
}

#[test]
fn records_and_finds_backups() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("sub/catalog.db")).unwrap();
    let run = c.begin_run("svc", RunKind::Backup).unwrap();
    c.record_backup(
        &service("svc"),
        1_768_564_800,
        "command",
        Some(run),
        &tier("local"),
        &[artifact("a_120000.sql")],
    )
    .unwrap();
    c.finish_run(run, RunStatus::Ok, None, None).unwrap();
    assert!(c.backup_exists(&service("svc"), 1_768_564_800).unwrap());
    let found = c
        .find_artifact(&service("svc"), "2026-01-16", "a_120000.sql")
        .unwrap()
        .unwrap();
    assert_eq!(found.copies[0].state, CopyState::Present);
    assert_eq!(found.facts["rows"], 3);
    assert_eq!(c.block_index(found.id).unwrap().entries.len(), 1);
    c.record_verification(found.id, &tier("local"), &["block 0: bad".into()])
        .unwrap();
    let again = c
        .find_artifact(&service("svc"), "2026-01-16", "a_120000.sql")
        .unwrap()
        .unwrap();
    assert_eq!(again.copies[0].state, CopyState::Corrupt);
    // Reopening applies no migration twice.
    drop(c);
    let ro = Catalog::open_read_only(&dir.path().join("sub/catalog.db")).unwrap();
    assert_eq!(ro.artifacts(None).unwrap().len(), 1);
    assert_eq!(ro.runs(10).unwrap()[0].status, RunStatus::Ok);
}

#[test]
fn artifacts_lacking_are_the_backups_a_tier_lacks_something_of() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
    for (name, t, files) in [
        ("a", 1, &["a1", "a2"][..]),
        ("a", 2, &["b1"]),
        ("a", 3, &["c1"]),
        ("base", 4, &["d1"]),
    ] {
        let new: Vec<NewArtifact> = files.iter().map(|f| artifact(f)).collect();
        c.record_backup(&service(name), t, "command", None, &tier("local"), &new)
            .unwrap();
    }
    let id_of = |c: &Catalog, file: &str| {
        let all = c.artifacts(None).unwrap();
        let a = all.iter().find(|a| a.file == file).unwrap();
        (a.id, a.backup_id)
    };
    let [a1, a2, b1, c1, d1] = ["a1", "a2", "b1", "c1", "d1"].map(|f| id_of(&c, f));
    // s3 holds a1 (not a2), b1, a corrupt c1, and d1.
    let (s3, local, base) = (tier("s3"), tier("local"), service("base"));
    for (id, _) in [a1, b1, c1, d1] {
        c.set_copy_present(id, &s3).unwrap();
    }
    c.record_verification(c1.0, &s3, &["bad".into()]).unwrap();

    let mut got: Vec<(ArtifactId, usize)> = c
        .artifacts_lacking(&[&s3], &[&base])
        .unwrap()
        .iter()
        .map(|a| (a.id, a.copies.len()))
        .collect();
    got.sort();
    // Both files of the half-sent backup, with their copies; the corrupt one; every base.
    assert_eq!(got, [(a1.0, 2), (a2.0, 1), (c1.0, 2), (d1.0, 2)]);
    // Nothing lacks anything on local; only the base service is asked for whole.
    let on_local: Vec<BackupId> = c
        .artifacts_lacking(&[&local], &[&base])
        .unwrap()
        .iter()
        .map(|a| a.backup_id)
        .collect();
    assert_eq!(on_local, [d1.1]);
    assert!(c.has_corrupt_copy(&s3).unwrap());
    assert!(!c.has_corrupt_copy(&local).unwrap());
}

#[test]
fn dead_runs_are_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let c = Catalog::open(&dir.path().join("c.db")).unwrap();
    let live = c.begin_run("svc", RunKind::Backup).unwrap();
    let dead = c.begin_run("svc", RunKind::Backup).unwrap();
    c.conn
        .execute("UPDATE runs SET pid = 2147483632 WHERE id = ?1", [dead])
        .unwrap();
    assert_eq!(c.reap_interrupted().unwrap(), 1);
    let runs = c.runs(10).unwrap();
    assert_eq!(
        runs.iter().find(|r| r.id == dead).unwrap().status,
        RunStatus::Interrupted
    );
    assert_eq!(
        runs.iter().find(|r| r.id == live).unwrap().status,
        RunStatus::Running
    );
}

#[test]
fn duplicate_key_rolls_back_whole_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
    let (svc, local) = (service("svc"), tier("local"));
    c.record_backup(&svc, 1, "command", None, &local, &[artifact("a")])
        .unwrap();
    let r = c.record_backup(
        &svc,
        2,
        "command",
        None,
        &local,
        &[artifact("b"), artifact("a")],
    );
    assert!(r.is_err());
    assert!(
        !c.backup_exists(&svc, 2).unwrap(),
        "a failed record leaves nothing behind"
    );
}

#[test]
fn states_and_kinds_are_stored_as_the_text_catalogs_always_held() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
    let run = c.begin_run(ALL_SERVICES, RunKind::SyncJob).unwrap();
    c.finish_run(run, RunStatus::Failed, Some("x"), None)
        .unwrap();
    c.record_backup(
        &service("svc"),
        1,
        "command",
        Some(run),
        &tier("local"),
        &[artifact("a")],
    )
    .unwrap();
    let text = |sql: &str| -> String { c.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        text("SELECT service || ' ' || kind || ' ' || status FROM runs"),
        "* sync-job failed"
    );
    assert_eq!(text("SELECT state FROM copies"), "present");
    assert_eq!(text("SELECT service FROM backups"), "svc");
    assert_eq!(text("SELECT tier FROM copies"), "local");
    assert_eq!(text("SELECT typeof(service) FROM backups"), "text");
    assert_eq!(text("SELECT typeof(tier) FROM copies"), "text");
    // A row as an older tierback wrote it reads back typed.
    c.conn
        .execute(
            "INSERT INTO runs (service, kind, started_at, finished_at, status) \
             VALUES ('*', 'verify-job', 5, 6, 'ok')",
            [],
        )
        .unwrap();
    let old = &c.runs(1).unwrap()[0];
    assert_eq!((old.kind, old.status), (RunKind::VerifyJob, RunStatus::Ok));
    let (last, _) = c
        .last_finished_run(ALL_SERVICES, RunKind::SyncJob)
        .unwrap()
        .unwrap();
    assert_eq!(last.id, run);
}

#[test]
fn names_read_back_typed_and_a_row_that_names_no_service_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
    c.record_backup(
        &service("svc"),
        1,
        "command",
        None,
        &tier("local"),
        &[artifact("a")],
    )
    .unwrap();
    let all = c.artifacts(None).unwrap();
    assert_eq!(all[0].service, service("svc"));
    assert_eq!(all[0].copies[0].tier, tier("local"));
    assert_eq!(
        serde_json::to_value(&all[0]).unwrap()["copies"][0]["tier"],
        "local",
        "serialized as the plain name"
    );
    // Only a damaged or hand-edited catalog holds such a row: reading it fails, naming it
    // with its control characters escaped.
    c.conn
        .execute("UPDATE backups SET service = '../etc'", [])
        .unwrap();
    let e = c.artifacts(None).unwrap_err().to_string();
    assert!(e.contains("invalid service name \"../etc\""), "{e}");
    c.conn
        .execute("UPDATE copies SET tier = 'local' || char(27) || '[0m'", [])
        .unwrap();
    c.conn
        .execute("UPDATE backups SET service = 'svc'", [])
        .unwrap();
    let e = c.artifacts(None).unwrap_err().to_string();
    assert!(e.contains(r#"invalid tier name "local\u{1b}[0m""#), "{e}");
    assert!(!e.contains('\u{1b}'), "{e}");
}
