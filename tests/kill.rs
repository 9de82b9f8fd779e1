//! `kill -9` of `backup`, `sync` and `prune` at random points, ten times each: no process they
//! started outlives them, the next run leaves no staging file on any tier, and everything
//! verifies. (Seeded delays: a failure names its seed and replays.)

use std::path::Path;
use std::time::{Duration, Instant};

use tierback_tests::rclone::Remotes;
use tierback_tests::{Env, files_under};

const ROUNDS: u64 = 10;

/// A small deterministic generator for the kill delays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Pids of processes whose environment holds `marker` (tierback's children inherit it).
fn marked(marker: &str) -> Vec<u32> {
    let needle = format!("TIERBACK_KILL_TEST={marker}");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie && environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Runs `tierback ARGS` and kills it with SIGKILL after `delay`; then waits until nothing it
/// started is left (or fails naming what is).
fn kill_during(env: &Env, args: &[&str], vars: &[(String, String)], delay: Duration, marker: &str) {
    let mut child = env
        .cmd(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("TIERBACK_KILL_TEST", marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = marked(marker);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let names: Vec<String> = left
                .iter()
                .map(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                        .unwrap_or_default()
                        .replace('\0', " ")
                })
                .collect();
            panic!("tierback {args:?} killed after {delay:?}: still running: {names:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files under `dir` in staging places (`.partial`, `.tierback-partial`).
fn staging(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for name in [".partial", ".tierback-partial"] {
        out.extend(files_under(&dir.join(name)));
    }
    out
}

fn ok(env: &Env, args: &[&str], vars: &[(String, String)]) -> String {
    let out = env
        .cmd(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tierback {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `slow` writes part of its dump, then hangs the way a dump tool waiting on a lock does (it
/// writes nothing more, so no SIGPIPE would ever end it): only dying with tierback ends it.
/// `shop` is quick.
const SERVICES: &str = "[services.slow]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"seq 1 300000; exec sleep 60\"]\nextension = \"sql\"\n\n\
     [services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"300000\"]\nextension = \"sql\"\n";

#[test]
fn kill_9_of_backup_leaves_no_process_and_no_partial_file() {
    let env = Env::new(SERVICES);
    let mut rng = Rng(0x5eed_0001);
    for round in 0..ROUNDS {
        let (service, delay) = if round % 2 == 0 {
            ("slow", rng.below(600))
        } else {
            ("shop", rng.below(150))
        };
        kill_during(
            &env,
            &["backup", service],
            &[],
            Duration::from_millis(delay),
            &format!("backup-{round}-{}", std::process::id()),
        );
    }
    ok(&env, &["backup", "shop"], &[]);
    assert!(
        staging(&env.local_tier()).is_empty(),
        "{:?}",
        staging(&env.local_tier())
    );
    // Every backup that was recorded is whole; nothing half-published is on the tier.
    ok(&env, &["verify", "--all"], &[]);
    let listed = env.list_json().len();
    let on_tier = env
        .tier_files()
        .iter()
        .filter(|f| f.ends_with(".gz"))
        .count();
    assert_eq!(listed, on_tier, "every .gz on the tier is in the catalog");
}

#[test]
fn kill_9_of_sync_and_prune_leaves_no_process_no_staging_and_everything_verifies() {
    let remotes = Remotes::new();
    let env = Env::new("");
    let minio = env.path().join("tiers/minio");
    env.write_config(&format!(
        "[tiers.minio]\ntype = \"local\"\npath = \"{}\"\nretention = {{ keep_last = 2 }}\n\n\
         [tiers.offsite]\ntype = \"rclone\"\nremote = \"{}\"\nretention = {{ keep_last = 2 }}\n\n\
         [services.shop]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"date +%s%N; seq 1 400000\"]\nextension = \"sql\"\n",
        minio.display(),
        remotes.local
    ));
    let vars = &remotes.env;
    let mut rng = Rng(0x5eed_0002);
    for round in 0..ROUNDS {
        // A new backup each round, so there is always something to send and something to prune.
        ok(&env, &["backup", "shop"], vars);
        let delay = Duration::from_millis(rng.below(700));
        kill_during(
            &env,
            &["sync"],
            vars,
            delay,
            &format!("sync-{round}-{}", std::process::id()),
        );
        let delay = Duration::from_millis(rng.below(300));
        kill_during(
            &env,
            &["prune"],
            vars,
            delay,
            &format!("prune-{round}-{}", std::process::id()),
        );
    }
    ok(&env, &["sync"], vars);
    ok(&env, &["prune"], vars);
    for dir in [env.local_tier(), minio.clone(), remotes.plain_dir()] {
        assert!(
            staging(&dir).is_empty(),
            "{}: {:?}",
            dir.display(),
            staging(&dir)
        );
    }
    ok(&env, &["verify", "--all"], vars);
    // No copy is left half-pruned: every copy is present.
    for a in env.list_json() {
        for c in a["copies"].as_array().unwrap() {
            assert_eq!(c["state"], "present", "{a}");
        }
    }
    // And every file on the remote tiers belongs to a recorded copy.
    let recorded: usize = env
        .list_json()
        .iter()
        .map(|a| {
            a["copies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["tier"] != "local")
                .count()
        })
        .sum();
    let on_tiers = files_under(&minio)
        .into_iter()
        .chain(files_under(&remotes.plain_dir()))
        .filter(|f| f.ends_with(".gz"))
        .count();
    assert_eq!(recorded, on_tiers);
}
