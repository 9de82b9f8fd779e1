//! `[mount] audit_log` and who may read: the mount checks access itself (no kernel
//! `default_permissions`), so that every attempt reaches the audit log — every open of a file,
//! every directory read and every refused path walk, allowed or refused, with time, uid, user
//! name, pid, command, path and outcome. Real mounts, real users (`useradd`, `runuser`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;
use tierback_tests::fuse::{Mount, TestUsers};
use tierback_tests::{Env, sh, sql_dump};

fn audit_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .expect("audit log written")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

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
    // Sidecars are files like any other, and every directory read is recorded too.
    sh(&format!(
        "cat '{}.sha256' >/dev/null; ls -R '{}' >/dev/null",
        m.path(&rel).display(),
        m.dir.display()
    ));
    drop(m);

    let lines = audit_lines(&log);
    let got: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["event"].as_str().unwrap(),
                l["path"].as_str().unwrap(),
                l["command"].as_str().unwrap(),
            )
        })
        .collect();
    let day = rel.rsplit_once('/').unwrap().0;
    let sidecar = format!("{rel}.sha256");
    assert_eq!(
        got,
        [
            ("open", rel.as_str(), "cat"),
            ("open", sidecar.as_str(), "cat"),
            ("opendir", ".", "ls"),
            ("opendir", "shop", "ls"),
            ("opendir", "shop/local", "ls"),
            ("opendir", day, "ls"),
        ],
        "{lines:#?}"
    );
    for l in &lines {
        assert_eq!(l["uid"], 0);
        assert_eq!(l["user"], "root");
        assert_eq!(l["outcome"], "allowed");
        assert!(l.get("reason").is_none());
        assert!(l["pid"].as_u64().unwrap() > 0);
        assert!(l["unix"].as_i64().unwrap() > 1_700_000_000);
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
    }
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the audit log is owner-only");
}

/// The acceptance test of the issue "refused opens never reach the audit log": a user outside
/// the mount's group is refused by `cat`, `ls` and `cp` — and each attempt is in the log — while
/// a user who has the group as a supplementary group, and root, read the exact bytes.
#[test]
fn real_users_outside_the_group_are_refused_and_every_attempt_is_audited() {
    // Declared first so it is dropped last, after the mount is gone.
    let users = TestUsers::create(&[("in", true), ("out", false)]);
    let (member, outsider) = (users.users[0].as_str(), users.users[1].as_str());
    let group_gid = users.gid();
    let member_uid = TestUsers::id("-u", member)[0];
    let member_gid = TestUsers::id("-g", member)[0];
    let outsider_uid = TestUsers::id("-u", outsider)[0];
    assert_ne!(
        member_gid, group_gid,
        "the group is not the member's primary group"
    );
    assert!(TestUsers::id("-G", member).contains(&group_gid));
    assert!(!TestUsers::id("-G", outsider).contains(&group_gid));

    let env = Env::new("");
    // The test's directory is root-only: let the users reach the mount point inside it (what
    // they may see in the mount is the mount's business).
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let out_dir = env.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let data = sql_dump(700_000, 7);
    let src = env.path().join("dump.sql");
    std::fs::write(&src, &data).unwrap();
    let log = env.path().join("audit/audit.jsonl");
    env.write_config(&format!(
        "[mount]\naudit_log = \"{}\"\naudit_log_max_size = \"1MiB\"\ngroup = \"{}\"\n\
         file_mode = \"0440\"\ndir_mode = \"0550\"\nallow_other = true\n\n\
         [services.shop]\ndriver = \"command\"\ncommand = [\"cat\", \"{}\"]\nextension = \"sql\"\n",
        log.display(),
        users.group,
        src.display()
    ));
    env.ok(&["backup", "shop"]);
    let m = Mount::start(&env, &[]);
    let rel = env.newest_path("shop", "local");
    let day_rel = rel.rsplit_once('/').unwrap().0.to_owned();
    let file = m.path(&rel).display().to_string();
    let day = m.path(&day_rel).display().to_string();
    let root = m.dir.display().to_string();
    let name = rel.rsplit_once('/').unwrap().1;

    let refused = |args: &[&str]| {
        let out = TestUsers::run(outsider, args);
        assert!(!out.status.success(), "{args:?} as {outsider} succeeded");
        assert!(
            stderr(&out).contains("Permission denied"),
            "{args:?}: {}",
            stderr(&out)
        );
    };
    // The outsider first, while the kernel has cached no entry: refused at the first name.
    refused(&["cat", &file]);
    refused(&["ls", &day]);
    refused(&["ls", &root]);
    let stolen = out_dir.join("outsider.sql");
    refused(&["cp", &file, stolen.to_str().unwrap()]);
    assert!(!stolen.exists());

    // The member reads the exact bytes, lists the day, copies the file.
    let cat = TestUsers::run(member, &["cat", &file]);
    assert!(cat.status.success(), "{}", stderr(&cat));
    assert!(cat.stdout == data, "cat as the member differs");
    let ls = TestUsers::run(member, &["ls", &day]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    let listing = String::from_utf8(ls.stdout).unwrap();
    for want in [name, &format!("{name}.sha256"), "metadata.json"] {
        assert!(listing.lines().any(|l| l == want), "{want} in {listing}");
    }
    let copy = out_dir.join("member.sql");
    let cp = TestUsers::run(member, &["cp", &file, copy.to_str().unwrap()]);
    assert!(cp.status.success(), "{}", stderr(&cp));
    assert!(
        std::fs::read(&copy).unwrap() == data,
        "cp as the member differs"
    );

    // Root reads.
    let cat = std::process::Command::new("cat")
        .arg(&file)
        .output()
        .unwrap();
    assert!(cat.status.success() && cat.stdout == data, "cat as root");

    // The outsider again, right after the member walked the same path: with a directory mode
    // that refuses someone, the mount has the kernel cache no names, so this walk is checked
    // too (a cached name would let `stat` through and leave the refusal to the open).
    refused(&["stat", &file]);
    refused(&["cat", &file]);
    drop(m);

    let lines = audit_lines(&log);
    assert_eq!(lines.len(), 10, "one line per attempt: {lines:#?}");
    let check = |i: usize, event: &str, path: &str, uid: u32, user: &str, command: &str, ok| {
        let l = &lines[i];
        let what = format!("line {i}: {l}");
        assert_eq!(l["event"], event, "{what}");
        assert_eq!(l["path"], path, "{what}");
        assert_eq!(l["uid"], uid, "{what}");
        assert_eq!(l["user"], user, "{what}");
        assert_eq!(l["command"], command, "{what}");
        assert!(l["pid"].as_u64().unwrap() > 0, "{what}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{what}");
        if ok {
            assert_eq!(l["outcome"], "allowed", "{what}");
            assert!(l.get("reason").is_none(), "{what}");
        } else {
            assert_eq!(l["outcome"], "refused", "{what}");
            assert_eq!(l["reason"], "permission denied", "{what}");
        }
    };
    let (o, u) = (outsider_uid, outsider);
    // A path walk is resolved one name at a time: the outsider's ends at the first one.
    check(0, "lookup", "shop", o, u, "cat", false);
    check(1, "lookup", "shop", o, u, "ls", false);
    check(2, "opendir", ".", o, u, "ls", false);
    check(3, "lookup", "shop", o, u, "cp", false);
    check(4, "open", &rel, member_uid, member, "cat", true);
    check(5, "opendir", &day_rel, member_uid, member, "ls", true);
    check(6, "open", &rel, member_uid, member, "cp", true);
    check(7, "open", &rel, 0, "root", "cat", true);
    assert_eq!(lines[4]["gid"], member_gid);
    check(8, "lookup", "shop", o, u, "stat", false);
    check(9, "lookup", "shop", o, u, "cat", false);
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains(&String::from_utf8_lossy(&data[..64]).into_owned()),
        "never file contents"
    );
}

/// Rotation by size through the real binary (`[mount] audit_log_max_size`); the rotation itself
/// is unit-tested in fs/src/audit.rs.
#[test]
fn the_audit_log_rotates_by_size() {
    let env = Env::new("");
    let log = env.path().join("audit.jsonl");
    env.write_config(&format!(
        "[mount]\naudit_log = \"{}\"\naudit_log_max_size = \"2KiB\"\n\n\
         [services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"10\"]\nextension = \"sql\"\n",
        log.display()
    ));
    env.ok(&["backup", "shop"]);
    let m = Mount::start(&env, &[]);
    let file = m.path(&env.newest_path("shop", "local"));
    for _ in 0..60 {
        assert!(
            sh(&format!("cat '{}' >/dev/null", file.display()))
                .status
                .success()
        );
    }
    drop(m);
    let generation = |n: u32| env.path().join(format!("audit.jsonl.{n}"));
    let mut total = audit_lines(&log).len();
    for n in 1..=3 {
        let meta = std::fs::metadata(generation(n)).expect("rotated generation");
        assert!(meta.len() <= 2048);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        total += audit_lines(&generation(n)).len();
    }
    assert!(!generation(4).exists(), "three old generations are kept");
    assert!(total < 60, "the oldest lines were dropped");
}
