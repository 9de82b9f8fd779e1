//! `[mount] audit_log`: every open of a backup file through the mount leaves a JSON line saying
//! who (uid, gid, pid) opened which file and whether it was allowed.

use tierback_tests::fuse::Mount;
use tierback_tests::{Env, sh};

#[test]
fn opens_through_the_mount_are_audited() {
    let env = Env::new("");
    let log = env.path().join("audit/audit.jsonl");
    env.write_config(&format!(
        "[mount]\naudit_log = \"{}\"\n\n[services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"1000\"]\nextension = \"sql\"\n",
        log.display()
    ));
    env.ok(&["backup", "shop"]);
    let m = Mount::start(&env, &[]);
    let rel = env.newest_path("shop", "local");
    let out = sh(&format!("cat '{}' | wc -l", m.path(&rel).display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
    // Sidecars and listings are not audited, only backup contents.
    sh(&format!(
        "cat '{}.sha256' >/dev/null; ls -R '{}' >/dev/null",
        m.path(&rel).display(),
        m.dir.display()
    ));
    drop(m);

    let text = std::fs::read_to_string(&log).expect("audit log written");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["path"], rel.as_str());
    assert_eq!(lines[0]["uid"], 0);
    assert_eq!(lines[0]["outcome"], "ok");
    assert!(lines[0]["pid"].as_u64().unwrap() > 0);
}
