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
