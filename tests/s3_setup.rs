//! `tierback tiers setup` against moto (versioning and lifecycle supported) and Garage (no
//! versioning, partial lifecycle): every part is reported, refusals with the server's message,
//! and the exit code tells all-applied (0) from partial (3). The bucket's lifecycle is read back
//! afterwards: no rule expires current objects (prune manages them; a rule that did, left by an
//! older tierback, is removed and reported), noncurrent versions expire after the tier's
//! `noncurrent_expiry`.

use tierback_engine::config::Config;
use tierback_engine::store::s3::S3Store;
use tierback_engine::store::s3_policy::{
    CurrentExpiry, LifecycleRuleInfo, add_current_expiry_rule, lifecycle_rules,
};
use tierback_tests::Env;
use tierback_tests::garage::{Garage, Moto};

/// The s3 tier "minio" of `env`'s config, to read the bucket's lifecycle back.
fn store(env: &Env) -> S3Store {
    let config = Config::load(&env.config()).expect("config with an s3 tier");
    S3Store::open(config.tier("minio").unwrap()).expect("open the s3 tier")
}

/// The bucket's lifecycle rules, read back through the S3 API.
fn rules(env: &Env) -> Vec<LifecycleRuleInfo> {
    lifecycle_rules(&store(env)).expect("read the lifecycle configuration")
}

fn rule<'a>(rules: &'a [LifecycleRuleInfo], id: &str) -> &'a LifecycleRuleInfo {
    rules
        .iter()
        .find(|r| r.id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no rule {id} in {rules:#?}"))
}

/// No rule in the bucket deletes current objects (by days or by date, enabled or not).
fn assert_no_current_expiry(rules: &[LifecycleRuleInfo]) {
    assert!(
        rules.iter().all(|r| r.current_expiry.is_none()),
        "a rule expires current objects: {rules:#?}"
    );
}

/// The report line for a policy part, e.g. "versioning enabled".
fn line<'a>(stdout: &'a str, part: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(part))
        .unwrap_or_else(|| panic!("no line for {part:?} in:\n{stdout}"))
}

const NO_CURRENT_EXPIRY: &str = "current objects: no expiry rule (tierback prune manages them)";

const PARTS: [&str; 6] = [
    "bucket exists",
    "versioning enabled",
    NO_CURRENT_EXPIRY,
    "noncurrent versions expire after 45 days",
    "expired delete markers removed",
    "incomplete multipart uploads aborted after 7 days",
];

#[test]
fn tiers_setup_applies_everything_on_moto() {
    let moto = Moto::start();
    let env = Env::new(&moto.access.tier_toml(
        "minio",
        "prefix = \"tierback\"\nnoncurrent_expiry = \"45d\"",
    ));
    let out = env.run(&["tiers", "setup"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for part in PARTS {
        assert!(
            line(&stdout, part).contains(" applied"),
            "{part} applied on moto:\n{stdout}\nmoto log:\n{}",
            moto.log()
        );
    }
    assert!(
        !stdout.contains("removed rule"),
        "a new bucket had no rules: {stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // What the bucket holds: the configured noncurrent window, no expiry of current objects.
    let rules = rules(&env);
    assert_no_current_expiry(&rules);
    let noncurrent = rule(&rules, "tierback-noncurrent-expire");
    assert_eq!(noncurrent.noncurrent_days, Some(45), "{rules:#?}");
    assert_eq!(
        noncurrent.prefix.as_deref(),
        Some("tierback/"),
        "{rules:#?}"
    );
    assert!(rule(&rules, "tierback-expired-delete-markers").expired_delete_markers);
    assert_eq!(
        rule(&rules, "tierback-abort-multipart").abort_multipart_days,
        Some(7)
    );
    assert_eq!(rules.len(), 3, "{rules:#?}");
    // Idempotent: a second run applies the same again, and removes nothing.
    let again = env.run(&["tiers", "setup", "--tier", "minio"]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("removed rule"), "{stdout}");
    assert_eq!(self::rules(&env), rules);
}

#[test]
fn tiers_setup_removes_rules_expiring_current_objects_on_moto() {
    let moto = Moto::start();
    let env = Env::new(&moto.access.tier_toml(
        "minio",
        "prefix = \"tierback\"\nnoncurrent_expiry = \"45d\"",
    ));
    // The bucket as an older tierback left it (its 90-day "tierback-expire" rule), plus an
    // administrator's rule expiring everything on a date.
    let s = store(&env);
    add_current_expiry_rule(&s, "tierback-expire", CurrentExpiry::AfterDays(90)).unwrap();
    // 2030-01-01T00:00:00Z (AWS wants midnight UTC).
    add_current_expiry_rule(
        &s,
        "admin-expire-2030",
        CurrentExpiry::OnDate(1_893_456_000),
    )
    .unwrap();
    let before = rules(&env);
    assert_eq!(
        rule(&before, "tierback-expire").current_expiry,
        Some(CurrentExpiry::AfterDays(90)),
        "{before:#?}"
    );
    assert!(
        rule(&before, "admin-expire-2030").expires_current_objects(),
        "{before:#?}"
    );

    let out = env.run(&["tiers", "setup"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        line(&stdout, NO_CURRENT_EXPIRY).ends_with(" applied"),
        "{stdout}"
    );
    let removed = line(&stdout, "removed rule tierback-expire ");
    assert!(
        removed.contains("that expired current objects (after 90 days"),
        "{stdout}"
    );
    let removed = line(&stdout, "removed rule admin-expire-2030 ");
    assert!(
        removed.contains("that expired current objects (on 2030-01-01"),
        "{stdout}"
    );
    // Gone from the bucket; tierback's own rules are there, with the configured window.
    let after = rules(&env);
    assert_no_current_expiry(&after);
    assert!(
        after.iter().all(|r| r
            .id
            .as_deref()
            .is_some_and(|id| id != "tierback-expire" && id != "admin-expire-2030")),
        "{after:#?}"
    );
    assert_eq!(
        rule(&after, "tierback-noncurrent-expire").noncurrent_days,
        Some(45)
    );
}

#[test]
fn tiers_setup_reports_what_garage_refuses() {
    let garage = Garage::single_node();
    // The default noncurrent window (30 days).
    let env = Env::new(&garage.access.tier_toml("minio", ""));
    // Garage implements expiration by days, so an older tierback left its 90-day rule here.
    add_current_expiry_rule(
        &store(&env),
        "tierback-expire",
        CurrentExpiry::AfterDays(90),
    )
    .unwrap();
    assert!(rule(&rules(&env), "tierback-expire").expires_current_objects());
    let out = env.run(&["tiers", "setup"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // Garage has no versioning: refused, with the server's own words.
    let v = line(&stdout, "versioning enabled");
    assert!(v.contains("REFUSED by the server: HTTP"), "{v}");
    assert!(
        line(&stdout, "bucket exists").ends_with("applied"),
        "{stdout}"
    );
    // The old rule is gone, and setup says so.
    assert!(
        line(&stdout, NO_CURRENT_EXPIRY).ends_with(" applied"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "removed rule tierback-expire ")
            .contains("that expired current objects (after 90 days"),
        "{stdout}"
    );
    // Lifecycle: Garage implements aborting incomplete uploads.
    assert!(
        line(&stdout, "incomplete multipart uploads aborted after 7 days").ends_with("applied"),
        "{stdout}"
    );
    // Garage stores the noncurrent rule but, without versioning, it can have no effect.
    let n = line(&stdout, "noncurrent versions expire after 30 days");
    assert!(
        n.contains("applied") && n.contains("without versioning"),
        "{n}"
    );
    // It refuses an Expiration holding only ExpiredObjectDeleteMarker, with its own words.
    let d = line(&stdout, "expired delete markers removed");
    assert!(d.contains("REFUSED by the server: HTTP 400"), "{d}");
    assert_eq!(out.status.code(), Some(3), "partial: {stdout}");
    assert!(!stdout.contains(&garage.access.secret_key));
    // Read back: the rules Garage accepted, none expiring current objects.
    let after = rules(&env);
    assert_no_current_expiry(&after);
    // Garage (v2) keeps the noncurrent rule but drops its NoncurrentVersionExpiration: without
    // versioning it has nothing to act on. Whatever it keeps must be the configured window.
    assert!(
        matches!(
            rule(&after, "tierback-noncurrent-expire").noncurrent_days,
            None | Some(30)
        ),
        "{after:#?}"
    );
    assert_eq!(
        rule(&after, "tierback-abort-multipart").abort_multipart_days,
        Some(7)
    );
    assert_eq!(after.len(), 2, "{after:#?}");
}

#[test]
fn tiers_setup_on_a_dead_server_fails_every_part() {
    let mut garage = Garage::single_node();
    let env = Env::new(&garage.access.tier_toml("minio", "timeout = \"2s\""));
    garage.kill();
    let out = env.run(&["tiers", "setup"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        line(&stdout, "bucket exists").contains("FAILED"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
}

#[test]
fn tiers_setup_rejects_a_non_s3_tier() {
    let env = Env::new("");
    let out = env.run(&["tiers", "setup", "--tier", "local"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("s3 and restic tiers"));
}
