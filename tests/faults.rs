//! Issue 4 faults, end to end through the `tierback` binary: a real Garage cluster (the object
//! tier) and real rclone with a crypt remote (the offsite tier). Each ends with every backup
//! present and verified on every tier that should hold it.

use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Output, Stdio};
use std::time::Duration;

use tierback_engine::config::Config;
use tierback_engine::store::Store;
use tierback_engine::store::s3::S3Store;
use tierback_tests::fuse::Mount;
use tierback_tests::garage::{Garage, GarageCluster, S3Access};
use tierback_tests::rclone::{Remotes, refused_remote};
use tierback_tests::{Env, sql_dump, walk_members};

const MIB: usize = 1 << 20;

struct Setup {
    env: Env,
    rclone_env: Vec<(String, String)>,
}

impl Setup {
    fn new(
        minio: &S3Access,
        offsite_remote: &str,
        rclone_env: Vec<(String, String)>,
        dump_mib: usize,
    ) -> Setup {
        let env = Env::new("");
        let dump = env.path().join("dump.sql");
        std::fs::write(&dump, sql_dump(dump_mib * MIB, 5)).unwrap();
        let tiers = format!(
            "{}\n[tiers.offsite]\ntype = \"rclone\"\nremote = \"{offsite_remote}\"\ncopy = [\"daily\", \"weekly\"]\ntimeout = \"20s\"\n",
            minio.tier_toml(
                "minio",
                "multipart_threshold = \"5MiB\"\npart_size = \"5MiB\"\ntimeout = \"5s\""
            )
        );
        env.write_config(&format!(
            "{tiers}\n[services.shop]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"date +%s%N; cat {}\"]\nextension = \"sql\"\n",
            dump.display()
        ));
        Setup { env, rclone_env }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.env
            .cmd(args)
            .envs(self.rclone_env.clone())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tierback {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Every backup on every tier that should hold it, verified.
    fn assert_complete(&self, backups: usize) {
        let list = self.env.list_json();
        assert_eq!(list.len(), backups);
        for a in &list {
            let tiers: Vec<&str> = a["copies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["state"] == "present")
                .map(|c| c["tier"].as_str().unwrap())
                .collect();
            assert!(tiers.contains(&"local") && tiers.contains(&"minio"), "{a}");
        }
        // The oldest backup of the day is the offsite one.
        assert!(
            list.last().unwrap()["copies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["tier"] == "offsite" && c["state"] == "present")
        );
        let out = self.ok(&["verify"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains(" 0 with problems"));
    }
}

#[test]
fn garage_node_loss_keeps_quorum_and_quorum_loss_only_delays() {
    let mut cluster = GarageCluster::start(3);
    let remotes = Remotes::new();
    let s = Setup::new(
        &cluster.access_via(0),
        &remotes.crypt,
        remotes.env.clone(),
        24,
    );
    s.ok(&["backup", "shop"]);

    // A node dies while the multipart upload runs: quorum (2 of 3) is kept, sync succeeds.
    let sync = s
        .env
        .cmd(&["sync"])
        .envs(s.rclone_env.clone())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill(2);
    let out = sync.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sync with one node down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.assert_complete(1);

    // Two nodes down: no quorum. Sync fails cleanly, the backup stays local and readable.
    cluster.kill(1);
    s.ok(&["backup", "shop"]);
    let out = s.run(&["sync", "--tier", "minio"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status: serde_json::Value =
        serde_json::from_slice(&s.run(&["status", "--json"]).stdout).unwrap();
    let minio = status["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "minio")
        .unwrap()
        .clone();
    assert_eq!(minio["pending_copies"], 1, "{status}");
    let newest = s.env.newest_path("shop", "local");
    assert!(s.ok(&["cat", &newest]).stdout.len() > 24 * MIB);

    // The nodes come back: the next sync completes.
    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_healthy(0);
    s.ok(&["sync"]);
    s.assert_complete(2);
}

#[test]
fn kill_9_of_sync_mid_multipart_then_sync_completes() {
    let garage = Garage::single_node();
    let remotes = Remotes::new();
    let s = Setup::new(&garage.access, &remotes.crypt, remotes.env.clone(), 64);
    s.ok(&["backup", "shop"]);
    // The test's own view of the bucket, to see the upload the sync has under way.
    let config = Config::load(&s.env.config()).unwrap();
    let bucket = S3Store::open(config.tier("minio").unwrap()).unwrap();
    let uploads = || bucket.incomplete_uploads().unwrap();
    let mut sync = s
        .env
        .cmd(&["sync", "--tier", "minio"])
        .envs(s.rclone_env.clone())
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as a multipart upload is under way (a fixed sleep may land before or after).
    while uploads().is_empty() {
        assert!(
            sync.try_wait().unwrap().is_none(),
            "sync ended before a multipart upload was seen"
        );
    }
    let pid = sync.id() as i32;
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    sync.wait().unwrap();
    // The kill landed mid-upload: the upload is left unfinished, not completed…
    let interrupted = uploads();
    assert_eq!(
        interrupted.len(),
        1,
        "one interrupted upload: {interrupted:?}"
    );
    assert!(interrupted[0].0.ends_with(".sql.gz"), "{interrupted:?}");
    // …so no object appeared and nothing was recorded on the tier.
    assert_eq!(bucket.head(&interrupted[0].0).unwrap(), None);
    let list = s.env.list_json();
    let minio: Vec<_> = list[0]["copies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tier"] == "minio" && c["state"] == "present")
        .collect();
    assert!(
        minio.is_empty(),
        "an unverified copy was recorded: {minio:?}"
    );
    // The next sync finishes the job with an upload of its own, and no parts are left: the
    // interrupted upload is too young for clean_staging (an hour), but Garage drops an unfinished
    // upload of a key once a newer version of that key completes (seen: still listed before the
    // sync, gone after).
    s.ok(&["sync"]);
    s.assert_complete(1);
    assert_eq!(uploads(), [], "unfinished uploads left after the sync");
}

#[test]
fn corrupt_object_in_the_bucket_is_flagged_never_served_and_repaired() {
    let garage = Garage::single_node();
    let remotes = Remotes::new();
    let s = Setup::new(&garage.access, &remotes.crypt, remotes.env.clone(), 6);
    s.ok(&["backup", "shop"]);
    s.ok(&["sync"]);
    let key = s.env.list_json()[0]["key"].as_str().unwrap().to_owned();

    // Corrupt the stored object behind tierback's back: same size, one byte flipped.
    let config = tierback_engine::config::Config::load(&s.env.config()).unwrap();
    let store = tierback_engine::store::open_tier(config.tier("minio").unwrap()).unwrap();
    let mut bytes = store.get(&key).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    store.put_bytes(&key, &bytes).unwrap();
    // Which block that is, and where its bytes are in the decompressed file.
    let members = walk_members(&bytes);
    let bad = members
        .iter()
        .position(|&(off, len, _)| (off..off + len).contains(&mid))
        .unwrap();
    let raw_start: usize = members[..bad].iter().map(|m| m.2).sum();

    let out = s.run(&["verify", "--tier", "minio"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("FAILED") && report.contains("block"),
        "{report}"
    );
    let minio_path = s.env.newest_path("shop", "minio");
    let out = s.run(&["cat", &minio_path]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("block"));
    let local = s.ok(&["cat", &s.env.newest_path("shop", "local")]).stdout;

    // Through the mount: EIO for that block only.
    let mount = Mount::start(&s.env, &[]);
    let file = std::fs::File::open(mount.path(&minio_path)).unwrap();
    let mut buf = vec![0u8; 4096];
    let err = file
        .read_exact_at(&mut buf, raw_start as u64 + 100)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let other = if bad == 0 { members[0].2 } else { 0 };
    file.read_exact_at(&mut buf, other as u64).unwrap();
    assert_eq!(buf, local[other..other + 4096]);

    let out = s.ok(&["sync"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("minio      1 uploaded"));
    s.assert_complete(1);
    assert_eq!(s.ok(&["cat", &minio_path]).stdout, local);
    // The same mount, not remounted, now reads the repaired object: nothing stale was kept.
    file.read_exact_at(&mut buf, raw_start as u64 + 100)
        .unwrap();
    assert_eq!(buf, local[raw_start + 100..raw_start + 4196]);
    drop(file);
    assert_eq!(std::fs::read(mount.path(&minio_path)).unwrap(), local);
}

#[test]
fn a_failing_rclone_remote_delays_offsite_and_spares_the_object_tier() {
    let garage = Garage::single_node();
    let (remote, env) = refused_remote();
    let s = Setup::new(&garage.access, &remote, env, 2);
    s.ok(&["backup", "shop"]);
    let out = s.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("minio      1 uploaded"), "{text}");
    assert!(
        text.contains("offsite") && (text.contains("FAILED") || text.contains("ERROR")),
        "{text}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&s.run(&["status", "--json"]).stdout).unwrap();
    let offsite = status["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "offsite")
        .unwrap()
        .clone();
    assert_eq!(offsite["pending_copies"], 1, "{status}");
}
