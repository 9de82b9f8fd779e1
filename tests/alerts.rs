//! The shipped alert rules (docs/prometheus/tierback-alerts.yml) against metrics tierback really
//! exported: each test brings a situation about (a hung backup, a corrupt offsite copy, a tier
//! whose verification falls behind), runs `tierback metrics` at a `TIERBACK_NOW`, and feeds
//! that exact text to `promtool test rules` as the input series.

use std::path::Path;
use std::process::{Command, Output};

use tierback_tests::rclone::Remotes;
use tierback_tests::sim::metric;
use tierback_tests::{Env, sh};

/// `tierback ARGS` at `now` with `vars` in its environment; its output, whatever the exit.
fn run_at(env: &Env, args: &[&str], now: i64, vars: &[(String, String)]) -> Output {
    env.cmd(args)
        .env("TIERBACK_NOW", now.to_string())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// [`run_at`] that panics with stderr unless it exits 0.
fn ok_at(env: &Env, args: &[&str], now: i64, vars: &[(String, String)]) -> Output {
    let out = run_at(env, args, now, vars);
    assert!(
        out.status.success(),
        "tierback {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `tierback metrics` at `now`.
fn metrics_at(env: &Env, now: i64, vars: &[(String, String)]) -> String {
    String::from_utf8(ok_at(env, &["metrics"], now, vars).stdout).unwrap()
}

/// Every sample of an exposition as a promtool input series, constant for two hours of 1m steps.
fn input_series(text: &str) -> String {
    let mut out = String::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(!series.contains('\''), "{series}");
        out.push_str(&format!(
            "      - series: '{series}'\n        values: '{value}+0x600'\n"
        ));
    }
    out
}

/// Runs `promtool test rules` on the shipped rules with `input` and the expectations `tests`
/// (YAML `alert_rule_test` entries); panics with promtool's report unless they hold.
fn promtool_test(dir: &Path, input: &str, tests: &str) {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus/tierback-alerts.yml");
    let file = dir.join("alerts.test.yml");
    std::fs::write(
        &file,
        format!(
            "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}    alert_rule_test:\n{tests}",
            rules.display()
        ),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian package prometheus; `make deps` installs it)");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}\n--- input ---\n{input}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills a process group on drop (a hung backup and its dump command).
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn a_backup_hung_for_seven_hours_fires_backup_stuck() {
    let env = Env::new(
        "[services.hung]\ndriver = \"command\"\ncommand = [\"sleep\", \"600\"]\nextension = \"sql\"\n\n\
         [services.fine]\ndriver = \"command\"\ncommand = [\"echo\", \"ok\"]\nextension = \"txt\"\n",
    );
    // Early Unix times, so promtool's clock (which starts at 0) lines up with tierback's.
    let start = 1_000;
    ok_at(&env, &["backup", "fine"], start, &[]);
    use std::os::unix::process::CommandExt;
    let _hung = Group(
        env.cmd(&["backup", "hung"])
            .env("TIERBACK_NOW", start.to_string())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let mut text = String::new();
    for _ in 0..100 {
        text = metrics_at(&env, start + 7 * 3600, &[]);
        if text.contains("backup_running_since_timestamp{service=\"hung\"}") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let since = metric(&text, "backup_running_since_timestamp{service=\"hung\"}")
        .unwrap_or_else(|| panic!("no start time of the hung backup: {text}"));
    assert!(
        (start as f64..start as f64 + 5.0).contains(&since),
        "{since}"
    );
    assert!(
        !text.contains("backup_running_since_timestamp{service=\"fine\"}"),
        "only a run in progress has a start time: {text}"
    );
    promtool_test(
        env.path(),
        &input_series(&text),
        "      - eval_time: 5h50m\n        alertname: BackupStuck\n        exp_alerts: []\n\
         \x20     - eval_time: 7h\n        alertname: BackupStuck\n        exp_alerts:\n\
         \x20         - exp_labels:\n              severity: warning\n              service: hung\n\
         \x20           exp_annotations:\n              summary: \"Backup of hung has been running for over 6 h\"\n",
    );
}

#[test]
fn a_corrupt_offsite_copy_is_repaired_by_sync_and_the_failure_clears_at_once() {
    let remotes = Remotes::new();
    let env = Env::new(&format!(
        "[tiers.offsite]\ntype = \"rclone\"\nremote = \"{}\"\n\n\
         [services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"100000\"]\nextension = \"sql\"\n",
        remotes.local
    ));
    let vars = &remotes.env;
    let now = 1_000;
    ok_at(&env, &["backup", "shop"], now, vars);
    ok_at(&env, &["sync"], now + 60, vars);
    let key = env.list_json()[0]["key"].as_str().unwrap().to_owned();
    let stored = remotes.plain_dir().join(&key);
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&stored, &bytes).unwrap();

    let out = run_at(&env, &["verify", "--tier", "offsite"], now + 120, vars);
    assert_eq!(out.status.code(), Some(1), "the flipped byte is found");
    let broken = metrics_at(&env, now + 180, vars);
    assert_eq!(
        metric(&broken, "backup_verify_success{service=\"shop\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&broken, "backup_checksum_failures{service=\"shop\"}"),
        Some(1.0)
    );

    let out = ok_at(&env, &["sync"], now + 240, vars);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("offsite    uploaded  shop/"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // No verify in between: the repair is itself the verification.
    let repaired = metrics_at(&env, now + 300, vars);
    assert_eq!(
        metric(&repaired, "backup_verify_success{service=\"shop\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&repaired, "backup_checksum_failures{service=\"shop\"}"),
        Some(0.0)
    );
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        sh(&format!("cat '{}'", env.local_tier().join(&key).display())).stdout,
        "the offsite copy is the local one again"
    );
    // What the alerts make of each text.
    promtool_test(
        env.path(),
        &input_series(&broken),
        "      - eval_time: 10m\n        alertname: VerifyFailed\n        exp_alerts:\n\
         \x20         - exp_labels:\n              severity: critical\n              service: shop\n\
         \x20           exp_annotations:\n              summary: \"A stored copy of shop failed verification\"\n\
         \x20             description: \"`tierback verify --service shop` names the copy, the file and the block.\"\n",
    );
    promtool_test(
        env.path(),
        &input_series(&repaired),
        "      - eval_time: 10m\n        alertname: VerifyFailed\n        exp_alerts: []\n\
         \x20     - eval_time: 10m\n        alertname: BackupChecksumFailure\n        exp_alerts: []\n",
    );
}

#[test]
fn a_tier_whose_verification_falls_behind_fires_verify_overdue() {
    let env = Env::new(
        "[services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"1000\"]\nextension = \"sql\"\n",
    );
    // The local tier reads everything within a day by default; nothing verifies it for three.
    let later = 1_000 + 3 * 86_400;
    ok_at(&env, &["backup", "shop"], 1_000, &[]);
    let text = metrics_at(&env, later, &[]);
    let age = metric(&text, "backup_verify_oldest_age_seconds{tier=\"local\"}").unwrap();
    assert!(
        (3.0 * 86_400.0 - 5.0..=3.0 * 86_400.0).contains(&age),
        "{text}"
    );
    promtool_test(
        env.path(),
        &input_series(&text),
        &format!(
            "      - eval_time: 30m\n        alertname: VerifyOverdue\n        exp_alerts: []\n\
         \x20     - eval_time: 1h5m\n        alertname: VerifyOverdue\n        exp_alerts:\n\
         \x20         - exp_labels:\n              severity: warning\n              tier: local\n\
         \x20           exp_annotations:\n              summary: \"Copies on local are not verified within the tier's window\"\n\
         \x20             description: \"A copy on local was last read in full {} ago. `tierback verify --tier local` reads them all; raise the tier's verify_budget.\"\n",
            humanize_duration(age as u64)
        ),
    );
    // A pass brings it back within the window.
    ok_at(&env, &["verify"], later, &[]);
    let text = metrics_at(&env, later + 60, &[]);
    let age = metric(&text, "backup_verify_oldest_age_seconds{tier=\"local\"}").unwrap();
    assert!(age <= 60.0, "{text}");
}

/// Prometheus's `humanizeDuration` for a day or more: `3d 0h 0m 5s`.
fn humanize_duration(secs: u64) -> String {
    format!(
        "{}d {}h {}m {}s",
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
