//! Sync, reads from other tiers, and catalog rebuild, with extra tiers of type `local` standing in
//! for the object and offsite tiers (the S3 and rclone tiers run the same code through the same
//! store trait; their own tests run it against Garage and real rclone).

use tierback_tests::{Env, sh};

fn setup(extra_tiers: &str) -> Env {
    let env = Env::new("");
    let cfg = format!(
        "{extra_tiers}\n[services.shop]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"date +%s%N; seq 1 200000\"]\nextension = \"sql\"\n"
    );
    env.write_config(&cfg);
    env
}

fn tiers(env: &Env) -> String {
    format!(
        "[tiers.minio]\ntype = \"local\"\npath = \"{0}/tiers/minio\"\n\n[tiers.offsite]\ntype = \"local\"\npath = \"{0}/tiers/offsite\"\ncopy = [\"daily\", \"weekly\"]\n",
        env.path().display()
    )
}

fn gz_files(dir: &std::path::Path) -> Vec<String> {
    let out = sh(&format!(
        "cd '{}' 2>/dev/null && find . -name '*.gz' | sort",
        dir.display()
    ));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn sync_follows_each_tier_policy_and_is_idempotent() {
    let env = setup("");
    env.write_config(&format!("{}\n[services.shop]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"date +%s%N; seq 1 200000\"]\nextension = \"sql\"\n", tiers(&env)));
    for _ in 0..3 {
        env.ok(&["backup", "shop"]);
    }
    let out = env.ok(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("minio      3 uploaded"), "{text}");
    // Same day, same week: the offsite tier receives only the first backup.
    assert!(text.contains("offsite    1 uploaded"), "{text}");
    assert_eq!(gz_files(&env.path().join("tiers/minio")).len(), 3);
    let offsite = gz_files(&env.path().join("tiers/offsite"));
    assert_eq!(offsite.len(), 1);
    // The offsite copy is the oldest backup, with every sidecar.
    let list = env.list_json();
    let oldest = list.iter().min_by_key(|a| a["taken_at"].as_i64()).unwrap();
    assert_eq!(offsite[0], format!("./{}", oldest["key"].as_str().unwrap()));
    let key = oldest["key"].as_str().unwrap();
    for suffix in ["", ".sha256", ".idx", ".meta.json"] {
        assert!(
            env.path()
                .join("tiers/offsite")
                .join(format!("{key}{suffix}"))
                .exists(),
            "offsite lacks {key}{suffix}"
        );
    }
    let copies: Vec<String> = oldest["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tier"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(copies, ["local", "minio", "offsite"]);

    let again = env.ok(&["sync"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("minio      0 uploaded") && text.contains("offsite    0 uploaded"),
        "{text}"
    );
    env.ok(&["verify"]);
}

#[test]
fn a_service_copy_policy_replaces_the_tiers_for_that_service() {
    let env = setup("");
    let service = |name: &str, extra: &str| {
        format!(
            "[services.{name}]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"date +%s%N\"]\n{extra}\n"
        )
    };
    env.write_config(&format!(
        "{}\n{}{}",
        tiers(&env),
        service("wal", "copy = [\"all\"]"),
        service("shop", "")
    ));
    for _ in 0..2 {
        env.ok(&["backup", "wal"]);
        env.ok(&["backup", "shop"]);
    }
    env.ok(&["sync"]);
    let offsite = gz_files(&env.path().join("tiers/offsite"));
    // The offsite tier copies daily: one shop backup, but every backup of the service that asks.
    assert_eq!(
        offsite.iter().filter(|f| f.starts_with("./wal/")).count(),
        2,
        "{offsite:?}"
    );
    assert_eq!(
        offsite.iter().filter(|f| f.starts_with("./shop/")).count(),
        1,
        "{offsite:?}"
    );
}

#[test]
fn reads_come_from_the_named_tier() {
    let env = setup("");
    env.write_config(&format!("{}\n[services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"300000\"]\nextension = \"sql\"\n", tiers(&env)));
    env.ok(&["backup", "shop"]);
    env.ok(&["sync"]);
    let local_path = env.newest_path("shop", "local");
    let minio_path = local_path.replacen("/local/", "/minio/", 1);
    let expected = sh("seq 1 300000").stdout;
    // Remove the local copy: the minio path still reads, from the minio tier.
    let key = env.list_json()[0]["key"].as_str().unwrap().to_owned();
    std::fs::remove_file(env.local_tier().join(&key)).unwrap();
    assert_eq!(env.ok(&["cat", &minio_path]).stdout, expected);
    let out = env.run(&["cat", &local_path]);
    assert!(
        !out.status.success(),
        "reading a deleted local copy must fail"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn corrupt_remote_copy_is_flagged_and_repaired_by_the_next_sync() {
    let env = setup("");
    env.write_config(&format!("{}\n[services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"300000\"]\nextension = \"sql\"\n", tiers(&env)));
    env.ok(&["backup", "shop"]);
    env.ok(&["sync"]);
    let key = env.list_json()[0]["key"].as_str().unwrap().to_owned();
    let remote = env.path().join("tiers/minio").join(&key);
    let mut bytes = std::fs::read(&remote).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&remote, &bytes).unwrap();

    let out = env.run(&["verify", "--tier", "minio"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED  shop/minio/"));
    let minio_path = env
        .newest_path("shop", "local")
        .replacen("/local/", "/minio/", 1);
    assert!(
        !env.run(&["cat", &minio_path]).status.success(),
        "a corrupt block is never served"
    );

    let out = env.ok(&["sync", "--tier", "minio"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 uploaded"));
    env.ok(&["verify", "--tier", "minio"]);
    assert_eq!(
        env.ok(&["cat", &minio_path]).stdout,
        sh("seq 1 300000").stdout
    );
}

#[test]
fn a_down_tier_delays_without_stopping_the_others() {
    let env = setup("");
    let broken = env.path().join("tiers/minio");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, b"not a directory").unwrap();
    env.write_config(&format!("{}\n[services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"1000\"]\nextension = \"sql\"\n", tiers(&env)));
    env.ok(&["backup", "shop"]);
    let out = env.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "a failed tier makes sync fail");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("offsite    1 uploaded"), "{text}");
    assert!(text.contains("minio") && text.contains("ERROR"), "{text}");
    // The tier comes back: the next sync completes it.
    std::fs::remove_file(&broken).unwrap();
    let out = env.ok(&["sync"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("minio      1 uploaded"));
}

#[test]
fn a_tier_another_process_is_syncing_is_left_to_it_and_the_others_go_on() {
    let env = setup("");
    env.write_config(&format!("{}\n[services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"1000\"]\nextension = \"sql\"\n", tiers(&env)));
    env.ok(&["backup", "shop"]);
    // A long offsite upload in another process holds the tier's lock.
    let locks = env.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let ready = env.path().join("holding");
    let mut holder = std::process::Command::new("flock")
        .arg("--close") // only flock holds the lock: killing it releases it
        .arg(locks.join("sync.offsite.lock"))
        .args(["-c", &format!("touch '{}'; sleep 60", ready.display())])
        // The orphaned sleep must not hold the test's output open.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !ready.exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = env.run(&["sync"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("offsite    busy"), "{text}");
    assert!(text.contains("minio      1 uploaded"), "{text}");
    assert!(gz_files(&env.path().join("tiers/offsite")).is_empty());
    // Once the other process is gone, the next sync does the offsite tier.
    let out = env.ok(&["sync"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("offsite    1 uploaded"));
}

#[test]
fn a_rebuild_from_several_tiers_records_every_copy_once() {
    let env = setup("");
    env.write_config(&format!("{}\n[services.shop]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"date +%s%N; seq 1 2000\"]\nextension = \"sql\"\n", tiers(&env)));
    for _ in 0..3 {
        env.ok(&["backup", "shop"]);
    }
    env.ok(&["sync"]);
    let copies = |env: &Env| -> Vec<Vec<String>> {
        let mut list = env.list_json();
        list.sort_by_key(|a| a["taken_at"].as_i64());
        list.iter()
            .map(|a| {
                let mut tiers: Vec<String> = a["copies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["tier"].as_str().unwrap().to_owned())
                    .collect();
                tiers.retain(|t| t != "local");
                tiers
            })
            .collect()
    };
    let synced = copies(&env);
    assert_eq!(
        synced,
        [vec!["minio", "offsite"], vec!["minio"], vec!["minio"]]
    );

    // Catalog and local disk lost: rebuilt from both remote tiers.
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(env.path().join(f));
    }
    std::fs::remove_dir_all(env.local_tier()).unwrap();
    let out = env.ok(&["catalog", "rebuild", "--from", "minio", "--from", "offsite"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 backups, 3 artifacts, 0 skipped"), "{text}");
    assert!(text.contains("copies: minio 3, offsite 1"), "{text}");
    assert_eq!(copies(&env), synced);
    // Nothing is uploaded again, and the offsite copy reads back.
    let out = env.ok(&["sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("minio      0 uploaded") && text.contains("offsite    0 uploaded"),
        "{text}"
    );
    env.ok(&["verify", "--tier", "offsite"]);
}

#[test]
fn catalog_rebuild_from_a_tier_restores_the_view_and_skips_damage() {
    let env = setup("");
    env.write_config(&format!("{}\n[services.shop]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"date +%s%N; seq 1 200000\"]\nextension = \"sql\"\n", tiers(&env)));
    env.ok(&["backup", "shop"]);
    env.ok(&["backup", "shop"]);
    env.ok(&["sync"]);
    let before: Vec<(String, u64)> = env
        .list_json()
        .iter()
        .map(|a| {
            (
                a["key"].as_str().unwrap().to_owned(),
                a["raw_size"].as_u64().unwrap(),
            )
        })
        .collect();
    let first_path = env.newest_path("shop", "minio");
    let expected = env.ok(&["cat", &first_path]).stdout;

    // Lose the catalog and the local tier.
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(env.path().join(f));
    }
    std::fs::remove_dir_all(env.local_tier()).unwrap();
    let out = env.ok(&["catalog", "rebuild", "--from", "minio"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 backups, 2 artifacts, 0 skipped"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut after: Vec<(String, u64)> = env
        .list_json()
        .iter()
        .map(|a| {
            (
                a["key"].as_str().unwrap().to_owned(),
                a["raw_size"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after);
    assert_eq!(env.ok(&["cat", &first_path]).stdout, expected);
    env.ok(&["verify", "--tier", "minio"]);

    // A damaged sidecar is reported and skipped, never trusted; the old catalog is kept.
    let key = &after[0].0;
    std::fs::write(
        env.path().join("tiers/minio").join(format!("{key}.sha256")),
        "0000  x\n",
    )
    .unwrap();
    let out = env.run(&["catalog", "rebuild", "--from", "minio"]);
    assert!(
        !out.status.success(),
        "rebuild over an existing catalog needs --force"
    );
    let out = env.run(&["catalog", "rebuild", "--from", "minio", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SKIPPED") && text.contains(key.as_str()) && text.contains("1 skipped"),
        "{text}"
    );
    assert!(env.path().join("catalog.db.bak").exists());
    assert_eq!(env.list_json().len(), 1);
}
