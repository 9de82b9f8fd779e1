//! Retention through `tierback prune`: restic-style rules per tier, a dry run that changes nothing,
//! and the two things prune never does (drop a service's newest verified backup on a tier, or the
//! primary's copy of a backup another tier still waits for).

use tierback_tests::Env;

const SERVICE: &str = "[services.shop]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"date +%s%N; seq 1 10000\"]\nextension = \"sql\"\n";

fn env_with_local_retention(retention: &str, extra: &str) -> Env {
    let env = Env::new("");
    let text = format!(
        "[catalog]\npath = \"{0}/catalog.db\"\n\n[tiers.local]\ntype = \"local\"\npath = \"{0}/tiers/local\"\nretention = {retention}\n\n{extra}\n{SERVICE}",
        env.path().display()
    );
    std::fs::write(env.config(), text).unwrap();
    env
}

fn gz_count(env: &Env) -> usize {
    env.tier_files()
        .iter()
        .filter(|f| f.ends_with(".sql.gz"))
        .count()
}

#[test]
fn keep_last_removes_older_copies_after_a_dry_run_that_changes_nothing() {
    let env = env_with_local_retention("{ keep_last = 2 }", "");
    for _ in 0..4 {
        env.ok(&["backup", "shop"]);
    }
    let out = env.ok(&["prune", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 backup copies would be removed, 2 kept"),
        "{text}"
    );
    assert_eq!(gz_count(&env), 4, "a dry run deletes nothing");
    assert_eq!(env.list_json().len(), 4);

    let newest: Vec<String> = env.list_json()[..2]
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect();
    env.ok(&["prune"]);
    assert_eq!(gz_count(&env), 2);
    let left: Vec<String> = env
        .list_json()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, newest, "the two newest stay");
    // No sidecar of a pruned backup is left behind.
    assert_eq!(
        env.tier_files()
            .iter()
            .filter(|f| !f.starts_with(".partial"))
            .count(),
        2 * 4
    );
    env.ok(&["verify"]);
    // Idempotent.
    let out = env.ok(&["prune", "--dry-run"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 backup copies would be removed"));
}

#[test]
fn the_newest_verified_backup_always_stays() {
    let env = env_with_local_retention("{ keep_last = 0 }", "");
    env.ok(&["backup", "shop"]);
    env.ok(&["backup", "shop"]);
    let out = env.ok(&["prune"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("newest verified"));
    assert_eq!(gz_count(&env), 1);
    assert_eq!(env.list_json().len(), 1);
}

#[test]
fn the_primary_keeps_what_another_tier_still_needs() {
    let env = Env::new("");
    let broken = env.path().join("offsite-is-down");
    std::fs::write(&broken, b"a file where a directory should be").unwrap();
    let extra = format!(
        "[tiers.offsite]\ntype = \"local\"\npath = \"{}\"\n",
        broken.display()
    );
    let env2 = env_with_local_retention("{ keep_last = 1 }", &extra);
    for _ in 0..3 {
        env2.ok(&["backup", "shop"]);
    }
    assert!(
        !env2.run(&["sync"]).status.success(),
        "the offsite tier is down"
    );
    let out = env2.ok(&["prune"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not yet on offsite"));
    assert_eq!(
        gz_count(&env2),
        3,
        "nothing the offsite tier waits for is removed"
    );
    drop(env);
}

#[test]
fn a_pinned_backup_stays_and_goes_to_the_keep_pinned_tier_until_unpinned() {
    let env = Env::new("");
    let text = format!(
        "[catalog]\npath = \"{0}/catalog.db\"\n\n\
         [tiers.local]\ntype = \"local\"\npath = \"{0}/tiers/local\"\nretention = {{ keep_last = 1 }}\n\n\
         [tiers.archive]\ntype = \"local\"\npath = \"{0}/tiers/archive\"\ncopy = [\"monthly\"]\n\
         retention = {{ keep_last = 1, keep_pinned = true }}\n\n{SERVICE}",
        env.path().display()
    );
    std::fs::write(env.config(), text).unwrap();
    // Three backups an hour apart, on the 4th of a month.
    let at = |hour: i64| (1_799_020_800 + hour * 3600).to_string();
    for hour in 1..=3 {
        env.ok_with(&["backup", "shop"], &[("TIERBACK_NOW", &at(hour))]);
    }
    let now = at(4);
    let when = [("TIERBACK_NOW", now.as_str())];
    let second = "shop/local/2027-01-04/shop_020000.sql";
    let out = env.ok_with(&["pin", second], &when);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("pinned the shop backup of 2027-01-04T02:00:00Z (1 files): kept on local"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pinned: Vec<bool> = env
        .list_json()
        .iter()
        .map(|a| a["pinned"].as_bool().unwrap())
        .collect();
    assert_eq!(pinned, [false, true, false], "newest first");

    // The archive gets the month's first backup by its copy policy, and the pinned one; local
    // keeps its newest and the pinned one.
    let plan =
        String::from_utf8_lossy(&env.ok_with(&["sync", "--dry-run"], &when).stdout).into_owned();
    assert!(
        plan.contains("upload  archive    shop           2027-01-04T02:00:00Z  pinned"),
        "{plan}"
    );
    assert!(
        plan.contains("upload  archive    shop           2027-01-04T01:00:00Z  last"),
        "{plan}"
    );
    env.ok_with(&["sync"], &when);
    env.ok_with(&["prune"], &when);
    let files = |tier: &str| -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(env.path().join("tiers").join(tier).join("shop/2027-01-04"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql.gz"))
                .collect();
        v.sort();
        v
    };
    assert_eq!(files("local"), ["shop_020000.sql.gz", "shop_030000.sql.gz"]);
    assert_eq!(
        files("archive"),
        ["shop_010000.sql.gz", "shop_020000.sql.gz"]
    );

    // Unpinned, retention decides again: local drops it; on the archive it is now the newest
    // verified backup, which stays whatever retention says.
    env.ok_with(&["unpin", "shop/2027-01-04T02:00:00Z"], &when);
    let plan = String::from_utf8_lossy(&env.ok_with(&["prune"], &when).stdout).into_owned();
    assert!(
        plan.contains("keep    archive    shop           2027-01-04T02:00:00Z  newest verified"),
        "{plan}"
    );
    assert_eq!(files("local"), ["shop_030000.sql.gz"]);
    assert_eq!(
        files("archive"),
        ["shop_010000.sql.gz", "shop_020000.sql.gz"]
    );
    // A backup that does not exist is named.
    let out = env.run_with(&["pin", "shop/2027-01-04T05:00:00Z"], &when);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no backup of shop taken at 2027-01-04T05:00:00Z")
    );
}
