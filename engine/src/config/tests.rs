use std::path::Path;

use super::*;
use crate::source::command::CommandSource;
use crate::source::minio::MinioSource;
use crate::source::postgres::PostgresSource;
use crate::source::postgres_wal::WalSpool;
use crate::source::redis::RedisSource;

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("/etc/tierback/test.toml"))
}

const MINIMAL: &str = r#"
[catalog]
path = "/tmp/c.db"

[tiers.local]
type = "local"
path = "/tmp/local"
retention = { keep_hourly = 168, keep_daily = 30, keep_weekly = 12 }

[services.custom]
driver = "command"
command = ["sh", "-c", "echo hi"]
extension = "txt"
"#;

#[test]
fn minimal_config_loads() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.tiers[0].name.as_str(), "local");
    assert_eq!(c.tiers[0].retention.keep_hourly, Some(168));
    let s = c.service("custom").unwrap();
    assert_eq!(s.block_size, 1 << 20);
    assert_eq!(s.compression_level, 9);
    let command = s.driver_as::<CommandSource>().unwrap();
    assert_eq!(command.plan.stem, "custom");
    assert_eq!(command.plan.extension, "txt");
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = MINIMAL.replace(
        "extension = \"txt\"",
        "extension = \"txt\"\ncolour = \"blue\"",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("colour"), "{e}");
    assert!(e.contains("line 14"), "{e}");
    assert!(e.contains("/etc/tierback/test.toml"), "{e}");
}

#[test]
fn bad_value_names_line() {
    let text = MINIMAL.replace("driver = \"command\"", "driver = \"comand\"");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("line 11") && e.contains("comand"), "{e}");
    let text = format!("[defaults]\nblock_size = \"1 parsec\"\n{MINIMAL}");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("block_size"), "{e}");
}

#[test]
fn tier_order_is_kept_and_first_must_be_local() {
    let text = MINIMAL.replace(
        "[services.custom]",
        "[tiers.offsite]\ntype = \"rclone\"\nremote = \"x:y\"\ncopy = [\"daily\"]\n\n[services.custom]",
    );
    let c = parse(&text).unwrap();
    let names: Vec<_> = c.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["local", "offsite"]);
    let text = "[tiers.offsite]\ntype = \"rclone\"\nremote = \"x:y\"\n";
    assert!(
        parse(text)
            .unwrap_err()
            .to_string()
            .contains("must be type = \"local\"")
    );
}

#[test]
fn keys_of_another_type_are_refused() {
    let text = MINIMAL.replace(
        "path = \"/tmp/local\"",
        "path = \"/tmp/local\"\nendpoint = \"http://x\"",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(
        e.contains("`endpoint` does not apply to type \"local\"") && e.contains("line 5"),
        "{e}"
    );
    let text = MINIMAL.replace(
        "extension = \"txt\"",
        "extension = \"txt\"\npaths = [\"/etc\"]",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(
        e.contains("`paths` does not apply to driver \"command\""),
        "{e}"
    );
}

#[test]
fn point_in_time_recovery_services_and_a_service_retention() {
    let text = format!(
        "{MINIMAL}\n[services.pg-base]\ndriver = \"postgres\"\nbase_backup = true\n\
         schedule = [\"0 2 * * *\"]\n\n[services.pg-wal]\ndriver = \"postgres_wal\"\n\
         spool = \"wal-spool\"\nbase = \"pg-base\"\nschedule = [\"*/5 * * * *\"]\n"
    );
    let c = parse(&text).unwrap();
    let base = c.service("pg-base").unwrap();
    let pg = base.driver_as::<PostgresSource>().unwrap();
    assert!(pg.databases.is_empty() && !pg.globals && pg.base_backup);
    let wal = c.service("pg-wal").unwrap();
    let spool = wal.driver_as::<WalSpool>().unwrap();
    assert_eq!(spool.spool, Path::new("/etc/tierback/wal-spool"));
    assert_eq!(spool.base(), Some("pg-base"));
    // The seed's "WAL: 24 hours" unless the service says otherwise.
    assert_eq!(wal.retention.as_ref().unwrap().keep_within, Some(86_400));
    assert!(c.service("pg-base").unwrap().retention.is_none());
    assert!(wal.copy.is_none());
    let own = parse(&text.replace(
        "spool = \"wal-spool\"",
        "spool = \"wal-spool\"\nretention = { keep_within = \"48h\" }\ncopy = [\"all\"]",
    ))
    .unwrap();
    assert_eq!(
        own.service("pg-wal").unwrap().copy.as_deref(),
        Some(&["all".to_owned()][..])
    );
    assert_eq!(
        own.service("pg-wal")
            .unwrap()
            .retention
            .as_ref()
            .unwrap()
            .keep_within,
        Some(2 * 86_400)
    );
    for (bad, expect, says) in [
        ("spool = \"wal-spool\"\n", "", "needs `spool`"),
        ("base_backup = true\n", "", "needs `databases`"),
        (
            "base_backup = true\n",
            "base_backup = true\ndatabases = [\"base\"]\n",
            "clash with the base artifact",
        ),
        (
            "spool = \"wal-spool\"\n",
            "spool = \"w\"\nbase_backup = true\n",
            "does not apply",
        ),
        (
            "spool = \"wal-spool\"\n",
            "spool = \"w\"\nretention = { keep_daily = \"some\" }\n",
            "retention",
        ),
        (
            "schedule = [\"*/5 * * * *\"]",
            "schedule = []",
            "schedule is empty",
        ),
        (
            "spool = \"wal-spool\"\n",
            "spool = \"w\"\ncopy = [\"sometimes\"]\n",
            "[services.pg-wal] copy: \"sometimes\"",
        ),
        (
            "base = \"pg-base\"",
            "base = \"pg-wal\"",
            "base = \"pg-wal\" is not a postgres service with base_backup = true",
        ),
        (
            "base_backup = true\n",
            "base_backup = false\ndatabases = [\"d\"]\n",
            "is not a postgres service with base_backup = true",
        ),
    ] {
        let e = parse(&text.replace(bad, expect)).unwrap_err().to_string();
        assert!(e.contains("line ") && e.contains(says), "{expect}: {e}");
    }
}

#[test]
fn postgres_and_redis_services_as_the_design_writes_them() {
    let text = format!(
        "{MINIMAL}\n[services.postgresql]\ndriver = \"postgres\"\nschedule = [\"0 * * * *\"]\n\
         host = \"127.0.0.1\"\nport = 5432\nuser = \"backup\"\n\
         password = \"vault:secret/zentoria/backup/postgresql#password\"\n\
         databases = [\"zentoria_main\", \"n8n\"]\n\n[services.redis]\ndriver = \"redis\"\n\
         password = \"env:REDIS_PASSWORD\"\n"
    );
    let c = parse(&text).unwrap();
    let pg = c.service("postgresql").unwrap();
    let pg = pg.driver_as::<PostgresSource>().unwrap();
    assert_eq!(
        (pg.port, pg.user.as_str(), pg.globals),
        (5432, "backup", true)
    );
    assert_eq!(pg.databases, ["zentoria_main", "n8n"]);
    assert!(pg.password.is_some());
    let redis = c.service("redis").unwrap();
    let redis = redis.driver_as::<RedisSource>().unwrap();
    assert_eq!((redis.host.as_str(), redis.port), ("127.0.0.1", 6379));
    // Mistakes name the key and the line.
    for (bad, expect) in [
        ("port = 5432", "port = 70000"),
        ("databases = [\"zentoria_main\", \"n8n\"]", "databases = []"),
        (
            "databases = [\"zentoria_main\", \"n8n\"]",
            "databases = [\"../etc\"]",
        ),
        (
            "databases = [\"zentoria_main\", \"n8n\"]",
            "databases = [\"globals\"]",
        ),
        ("user = \"backup\"", "user = \"backup\"\ncommand = [\"x\"]"),
        ("password = \"env:REDIS_PASSWORD\"", "password = \"env:\""),
    ] {
        let e = parse(&text.replace(bad, expect)).unwrap_err().to_string();
        assert!(e.contains("line "), "{expect}: {e}");
    }
    let e = parse(&text.replace("databases = [\"zentoria_main\", \"n8n\"]\n", ""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs `databases`"), "{e}");
}

#[test]
fn bad_schedule_names_line() {
    let text = MINIMAL.replace(
        "extension = \"txt\"",
        "extension = \"txt\"\nschedule = [\"0 25 * * *\"]",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("line 14") && e.contains("0 25 * * *"), "{e}");
}

#[test]
fn tier_schedules_windows_budgets_pins_and_per_tier_service_retention() {
    let c = parse(EXAMPLE_CONFIG).unwrap();
    let (local, minio, offsite) = (&c.tiers[0], &c.tiers[1], &c.tiers[2]);
    assert_eq!(offsite.sync_schedule(&c.jobs), ["0 7 * * *", "30 4 * * 0"]);
    assert!(minio.sync_schedule(&c.jobs).is_empty(), "every run");
    assert_eq!(local.verify_schedule(&c.jobs), ["0 7 * * *"]);
    assert_eq!(local.verify_window, LOCAL_VERIFY_WINDOW);
    assert_eq!(offsite.verify_window, REMOTE_VERIFY_WINDOW);
    assert_eq!(minio.verify_budget, Some(20 << 30));
    assert_eq!(minio.noncurrent_expiry, 30 * 86_400);
    assert!(offsite.retention.keep_pinned && !local.retention.keep_pinned);
    // configs: kept for ever offsite, the tier's own retention elsewhere.
    assert_eq!(
        c.retention_for("configs", offsite).keep_last,
        Some(u32::MAX)
    );
    assert_eq!(c.retention_for("configs", local), &local.retention);
    assert_eq!(c.retention_for("postgresql", offsite), &offsite.retention);

    let tier = |extra: &str| {
        parse(&format!(
            "[catalog]\npath = \"/tmp/c.db\"\n[tiers.local]\ntype = \"local\"\npath = \"/tmp/l\"\n{extra}\n"
        ))
    };
    for (extra, words) in [
        ("sync = [\"0 7 * *\"]", "[tiers.local] sync"),
        ("verify_window = \"0d\"", "verify_window must not be 0"),
        ("verify_budget = \"lots\"", "verify_budget"),
        (
            "noncurrent_expiry = \"30d\"",
            "does not apply to type \"local\"",
        ),
        ("retention = { keep_pinned = \"yes\" }", "keep_pinned"),
        (
            "retention = { keep_last = -1 }",
            "keep_last = -1: use a number from 0",
        ),
        (
            "retention = { keep_daily = 1.5 }",
            "keep_daily = 1.5: use a number or \"all\", not a float",
        ),
        ("verify = [\"0 0 7 * * *\"]", "has 6 fields; use five"),
        ("mode = \"0644\"", "never readable by everyone"),
    ] {
        let e = tier(extra).unwrap_err().to_string();
        assert!(e.contains(words) && e.contains("line"), "{extra}: {e}");
    }
    let e = tier("[services.c]\ndriver = \"files\"\npaths = [\"/etc\"]\ntier_retention = { nowhere = { keep_last = 1 } }")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tier_retention: no tier named \"nowhere\"") && e.contains("line 9"),
        "{e}"
    );
}

#[test]
fn example_config_parses() {
    let c = parse(EXAMPLE_CONFIG).unwrap();
    assert!(c.services.len() >= 2);
    assert_eq!(c.tiers.len(), 3);
    // The minio service never mirrors the bucket the minio tier writes backups to.
    let minio = c
        .services
        .values()
        .find_map(|s| s.driver_as::<MinioSource>())
        .unwrap();
    assert_eq!(minio.exclude, ["backups"]);
}

#[test]
fn every_driver_is_registered_once_with_the_keys_its_settings_take() {
    let names: Vec<&str> = crate::source::DRIVERS.iter().map(|d| d.name).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    let keys = |name: &str| {
        let driver = crate::source::DRIVERS.iter().find(|d| d.name == name);
        (driver.unwrap().keys)()
    };
    assert_eq!(keys("command"), ["command", "artifact", "extension", "env"]);
    assert_eq!(keys("files"), ["paths"]);
    // Every configured source answers to the name it was registered under.
    let c = parse(EXAMPLE_CONFIG).unwrap();
    for s in c.services.values() {
        assert!(names.contains(&s.driver.driver()), "{}", s.driver.driver());
    }
    // An unknown key lists what the driver and every service take.
    let e = parse(&MINIMAL.replace("extension = \"txt\"", "extension = \"txt\"\ncolour = 1"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown key `colour`: driver \"command\" takes `command`, `artifact`")
            && e.contains("every service `driver`, `schedule`"),
        "{e}"
    );
    // A value of the wrong type names its key.
    let e = parse(&MINIMAL.replace("extension = \"txt\"", "extension = 7"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 13") && e.contains("extension: invalid type"),
        "{e}"
    );
}
