use std::path::Path;

use super::*;
use crate::artifact::reader::ArtifactReader;
use crate::artifact::writer::{WriteOptions, write_artifact};
use crate::catalog::ArtifactRecord;
use crate::id::TierName;

fn tier(dir: &Path, password: &str) -> TierConfig {
    let secret = dir.join(format!("password-{password}"));
    std::fs::write(&secret, password).unwrap();
    TierConfig::new(
        TierName::new("vault").unwrap(),
        TierKind::Restic {
            path: dir.join("repo"),
            password: SecretRef::parse(&format!("file:{}", secret.display())).unwrap(),
        },
    )
}

/// A `.gz` of `data` in `dir` and its record, as sync hands it over.
fn artifact(dir: &Path, data: &[u8], taken_at: i64) -> SnapshotArtifact {
    let source = dir.join(format!("a{taken_at}.gz"));
    let mut out = std::fs::File::create(&source).unwrap();
    let opts = WriteOptions {
        block_size: 4096,
        level: 6,
        threads: 2,
    };
    let w = write_artifact(&mut &data[..], &mut out, opts, &|_| {}).unwrap();
    let mut record = ArtifactRecord::for_test(taken_at, "postgresql", taken_at);
    record.file = format!("main_{taken_at}.sql");
    record.key = format!("postgresql/2026-01-16/main_{taken_at}.sql.gz");
    record.raw_size = data.len() as u64;
    record.raw_sha256 = hex::encode(w.raw_sha256);
    record.stored_sha256 = hex::encode(w.stored_sha256);
    record.block_size = 4096;
    SnapshotArtifact {
        record,
        index: w.index,
        source,
    }
}

fn data(seed: u32) -> Vec<u8> {
    (0..40_000u32)
        .flat_map(|i| format!("{i},{},row\n", i.wrapping_mul(seed)).into_bytes())
        .collect()
}

#[test]
fn a_backup_round_trips_through_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let config = tier(dir.path(), "right");
    let restic = ResticTier::open(&config).unwrap();
    assert!(restic.setup().unwrap(), "first setup initialises");
    assert!(!restic.setup().unwrap(), "second setup finds it");
    let chunker = restic.open_repo().unwrap().config().clone();
    assert_eq!(
        (
            chunker.chunk_size(),
            chunker.chunk_min_size(),
            chunker.chunk_max_size()
        ),
        (256 << 10, 128 << 10, 2 << 20),
        "a repository tierback makes chunks at dump-sized grain"
    );

    let bytes = data(7);
    let a = artifact(dir.path(), &bytes, 1_768_564_800);
    let id = restic.store_backup(std::slice::from_ref(&a)).unwrap();
    let snaps = restic.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].id, id);
    assert_eq!(snaps[0].service, "postgresql");
    assert_eq!(snaps[0].dir, "postgresql/2026-01-16");

    let store = ResticStore::new(ResticTier::open(&config).unwrap());
    let reader = ArtifactReader {
        store: &store,
        key: &a.record.key,
        index: &a.index,
    };
    let mut out = Vec::new();
    reader.copy_to(&mut out, 2).unwrap();
    assert!(out == bytes, "the snapshot's file reads back byte for byte");

    let repo = restic.open_for_reads().unwrap();
    let sidecars = restic.sidecars(&repo, &snaps[0], 1 << 20).unwrap();
    let names: Vec<&str> = sidecars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "main_1768564800.sql.gz.idx",
            "main_1768564800.sql.gz.meta.json"
        ]
    );
    assert_eq!(sidecars[0].1, a.index.encode());

    assert!(restic.check(true).unwrap().is_empty());
    restic.forget(&[id]).unwrap();
    assert!(restic.snapshots().unwrap().is_empty());
    restic.prune().unwrap();
}

#[test]
fn a_stream_that_does_not_match_its_record_leaves_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let restic = ResticTier::open(&tier(dir.path(), "pw")).unwrap();
    restic.setup().unwrap();
    let mut a = artifact(dir.path(), &data(3), 1_768_564_800);
    a.record.raw_sha256 = "00".repeat(32);
    let err = restic.store_backup(&[a]).unwrap_err().to_string();
    assert!(
        err.contains("integrity") && err.contains("SHA-256"),
        "{err}"
    );
    assert!(restic.snapshots().unwrap().is_empty());
}

#[test]
fn a_wrong_password_and_a_missing_repository_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ResticTier::open(&tier(dir.path(), "pw"))
        .unwrap()
        .open_repo()
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("no restic repository at"), "{missing}");
    assert!(missing.contains("vault"), "names the tier: {missing}");

    ResticTier::open(&tier(dir.path(), "pw"))
        .unwrap()
        .setup()
        .unwrap();
    let wrong = ResticTier::open(&tier(dir.path(), "other"))
        .unwrap()
        .open_repo()
        .err()
        .unwrap()
        .to_string();
    assert!(wrong.contains("password does not open"), "{wrong}");
    assert!(!wrong.contains("other"), "never the password: {wrong}");
}
