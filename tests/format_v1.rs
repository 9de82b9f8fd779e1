//! Artifacts written before format version 2 (no stored-member hashes in their index) keep
//! working for every command, without being rewritten. The fixture in `tests/fixtures/format-v1`
//! was made by tierback at the last version 1 commit (68b6f9b): `tierback backup legacy` of
//! `dump.sql` with 4 KiB blocks at 2026-06-01T02:00:00Z.

use std::path::{Path, PathBuf};

use tierback_tests::Env;
use tierback_tests::fuse::Mount;

const KEY: &str = "legacy/2026-06-01/legacy_020000.sql.gz";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn stdout(out: std::process::Output) -> Vec<u8> {
    out.stdout
}

#[test]
fn version_1_artifacts_read_sync_verify_rebuild_and_mount_like_version_2() {
    let dump = std::fs::read(fixture().join("dump.sql")).unwrap();
    let env = Env::new("");
    env.write_config(&format!(
        "[defaults]\nblock_size = \"4KiB\"\n\n\
         [tiers.second]\ntype = \"local\"\npath = \"{0}/tiers/second\"\n\n\
         [services.legacy]\ndriver = \"command\"\ncommand = [\"cat\", \"{1}\"]\n\
         artifact = \"legacy\"\nextension = \"sql\"\n",
        env.path().display(),
        fixture().join("dump.sql").display()
    ));
    copy_dir(&fixture().join("legacy"), &env.local_tier().join("legacy"));
    let v1_files: Vec<(String, Vec<u8>)> = ["", ".idx", ".sha256", ".meta.json"]
        .iter()
        .map(|s| {
            let name = format!("{KEY}{s}");
            let bytes = std::fs::read(env.local_tier().join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    assert!(
        v1_files[1].1.starts_with(b"TBIDX1\n"),
        "the fixture is version 1"
    );

    // The catalog, rebuilt from the tier, takes the version 1 artifact as it is.
    env.ok(&["catalog", "rebuild", "--from", "local"]);
    let listed: Vec<String> = env
        .list_json()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        [KEY],
        "the rebuilt catalog holds the version 1 artifact"
    );
    let v1_view = "legacy/local/2026-06-01/legacy_020000.sql";
    assert_eq!(stdout(env.ok(&["cat", v1_view])), dump);

    // A new backup of the same source is version 2 and reads the same bytes.
    env.ok_with(
        &["backup", "legacy"],
        &[("TIERBACK_NOW", "2026-06-02T02:00:00Z")],
    );
    let v2_key = "legacy/2026-06-02/legacy_020000.sql.gz";
    let v2_idx = std::fs::read(env.local_tier().join(format!("{v2_key}.idx"))).unwrap();
    assert!(v2_idx.starts_with(b"TBIDX2\n"));
    let v2_view = "legacy/local/2026-06-02/legacy_020000.sql";
    assert_eq!(stdout(env.ok(&["cat", v2_view])), dump);

    // Sync copies the version 1 artifact as it is; verify passes on both tiers.
    env.ok_with(&["sync"], &[("TIERBACK_NOW", "2026-06-02T03:00:00Z")]);
    let second = env.path().join("tiers/second");
    for (name, bytes) in &v1_files {
        assert_eq!(
            &std::fs::read(second.join(name)).unwrap(),
            bytes,
            "{name} on the second tier"
        );
        assert_eq!(
            &std::fs::read(env.local_tier().join(name)).unwrap(),
            bytes,
            "{name} rewritten on the local tier"
        );
    }
    env.ok_with(
        &["verify", "--all"],
        &[("TIERBACK_NOW", "2026-06-02T03:00:00Z")],
    );

    // The mount shows both, byte for byte.
    {
        let mount = Mount::start(&env, &[]);
        for view in [
            v1_view,
            v2_view,
            "legacy/second/2026-06-01/legacy_020000.sql",
        ] {
            assert_eq!(std::fs::read(mount.path(view)).unwrap(), dump, "{view}");
        }
    }

    // Damage to a version 1 copy is still caught (reads check its raw hashes) and named.
    let gz = env.local_tier().join(KEY);
    let mut bytes = std::fs::read(&gz).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(&gz, &bytes).unwrap();
    let out = env.run(&["cat", v1_view]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("legacy_020000.sql.gz") && err.contains("block"),
        "{err}"
    );
    let out = env.run_with(
        &["verify", "--all"],
        &[("TIERBACK_NOW", "2026-06-02T04:00:00Z")],
    );
    assert!(
        !out.status.success(),
        "verify passed a damaged version 1 copy"
    );
}
