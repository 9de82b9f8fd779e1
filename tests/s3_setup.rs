//! `tierback tiers setup` against moto (versioning and lifecycle supported) and Garage (no
//! versioning, partial lifecycle): every part is reported, refusals with the server's message,
//! and the exit code tells all-applied (0) from partial (3).

use tierback_tests::Env;
use tierback_tests::garage::{Garage, Moto};

/// The report line for a policy part, e.g. "versioning enabled".
fn line<'a>(stdout: &'a str, part: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(part))
        .unwrap_or_else(|| panic!("no line for {part:?} in:\n{stdout}"))
}

const PARTS: [&str; 6] = [
    "bucket exists",
    "versioning enabled",
    "objects expire after 90 days",
    "noncurrent versions expire after 30 days",
    "expired delete markers removed",
    "incomplete multipart uploads aborted after 7 days",
];

#[test]
fn tiers_setup_applies_everything_on_moto() {
    let moto = Moto::start();
    let env = Env::new(&moto.access.tier_toml("minio", "prefix = \"tierback\""));
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
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // Idempotent: a second run applies the same again.
    let again = env.run(&["tiers", "setup", "--tier", "minio"]);
    assert_eq!(again.status.code(), Some(0));
}

#[test]
fn tiers_setup_reports_what_garage_refuses() {
    let garage = Garage::single_node();
    let env = Env::new(&garage.access.tier_toml("minio", ""));
    let out = env.run(&["tiers", "setup"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // Garage has no versioning: refused, with the server's own words.
    let v = line(&stdout, "versioning enabled");
    assert!(v.contains("REFUSED by the server: HTTP"), "{v}");
    // Lifecycle: Garage implements expiration by days and aborting incomplete uploads.
    assert!(
        line(&stdout, "bucket exists").ends_with("applied"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "objects expire after 90 days").ends_with("applied"),
        "{stdout}"
    );
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("s3 tiers"));
}
