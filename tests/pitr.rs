//! Point-in-time recovery against a real PostgreSQL 15: `pg_receivewal` streams WAL into a spool,
//! a `postgres_wal` service archives it, a `base_backup` of the cluster is unpacked from the
//! archive into a new data directory, and a real recovery replays the archived WAL through
//! `tierback wal-fetch` (its restore_command) to a moment between two commits.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tierback_tests::Env;
use tierback_tests::pg::{BIN, PgServer, as_postgres, check};

/// pg_receivewal, stopped when the test ends.
struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A recovered server in its own directory, stopped when the test ends.
struct Recovered {
    data: std::path::PathBuf,
}

impl Drop for Recovered {
    fn drop(&mut self) {
        let _ = as_postgres(&[
            &format!("{BIN}/pg_ctl"),
            "-D",
            self.data.to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ]);
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn chmod_tree(path: &Path, dir_mode: u32, file_mode: u32) {
    let meta = std::fs::metadata(path).unwrap();
    let mode = if meta.is_dir() { dir_mode } else { file_mode };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chmod_tree(&e.unwrap().path(), dir_mode, file_mode);
        }
    }
}

#[test]
fn base_backup_plus_archived_wal_recovers_to_a_point_in_time() {
    let pg = PgServer::start();
    let socket = pg.socket_dir().display().to_string();
    let env = Env::new("");
    let spool = env.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    env.write_config(&format!(
        "[services.pg-base]\ndriver = \"postgres\"\nbase_backup = true\nhost = \"{socket}\"\n\
         port = {port}\nuser = \"postgres\"\n\n\
         [services.pg-wal]\ndriver = \"postgres_wal\"\nspool = \"{spool}\"\nbase = \"pg-base\"\n",
        port = pg.port,
        spool = spool.display()
    ));

    // Streaming starts at the current segment: the base backup taken after it is covered. The
    // replication slot keeps the server from recycling WAL the receiver has not got yet (without
    // one, the base backup's checkpoint can remove the segment being streamed).
    let receivewal = |extra: &[&str]| {
        let mut c = Command::new(format!("{BIN}/pg_receivewal"));
        c.args(["-D", spool.to_str().unwrap(), "-h", &socket])
            .args(["-p", &pg.port.to_string(), "-U", "postgres", "-w"])
            .args(["--slot", "tierback"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.path().join("pg_receivewal.log")).unwrap());
        c
    };
    assert!(receivewal(&["--create-slot"]).status().unwrap().success());
    let receiver = Receiver(receivewal(&["--no-loop"]).spawn().expect("pg_receivewal"));
    wait_until("pg_receivewal to start", Duration::from_secs(30), || {
        std::fs::read_dir(&spool).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        })
    });

    pg.query(
        "postgres",
        "CREATE TABLE pitr (id int); INSERT INTO pitr SELECT generate_series(1, 100)",
    );
    env.ok(&["backup", "pg-base"]);
    let base = env.artifacts("pg-base");
    assert_eq!(base.len(), 1, "{base:?}");
    assert_eq!(base[0].0, "base");

    // 100 more rows, then the target moment, then 100 rows that must not come back.
    pg.query(
        "postgres",
        "INSERT INTO pitr SELECT generate_series(101, 200)",
    );
    std::thread::sleep(Duration::from_millis(1100));
    let target = pg.query("postgres", "SELECT clock_timestamp()");
    std::thread::sleep(Duration::from_millis(1100));
    pg.query(
        "postgres",
        "INSERT INTO pitr SELECT generate_series(201, 300)",
    );
    let last_segment = pg.query("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    wait_until(
        &format!("{last_segment} in the spool {spool:?}"),
        Duration::from_secs(30),
        || spool.join(&last_segment).exists(),
    );
    drop(receiver);

    let out = env.ok(&["backup", "pg-wal"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&last_segment),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let wal = env.artifacts("pg-wal");
    assert!(
        wal.iter()
            .any(|(_, _, facts)| facts["wal_file"] == last_segment.as_str()),
        "{wal:?}"
    );
    // Archived files leave the spool; only the unfinished segment stays.
    let left: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().all(|f| f.ends_with(".partial")), "{left:?}");
    // A run with nothing new stores nothing.
    let again = env.ok(&["backup", "pg-wal"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing new"));
    assert_eq!(env.artifacts("pg-wal").len(), wal.len());

    // Prune keeps what the base backup needs to roll forward, and says so.
    let plan = env.ok(&["prune", "--dry-run"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("WAL after the newest base backup"), "{text}");

    // The archive has no gap between its oldest and newest segment.
    let rt = env.ok(&["restore-test", "pg-wal"]);
    let text = String::from_utf8_lossy(&rt.stdout);
    assert!(
        text.contains("pg-wal/local (archive)") && text.contains("no gap"),
        "{text}"
    );

    // The base backup passes PostgreSQL's own check of its manifest and WAL.
    let rt = env.ok(&["restore-test", "pg-base"]);
    assert!(
        String::from_utf8_lossy(&rt.stdout).contains("pg_verifybackup"),
        "{}",
        String::from_utf8_lossy(&rt.stdout)
    );

    // Recovery: the base backup unpacked from the archive, WAL fetched by tierback as the
    // postgres user (restore_command runs as the server's user), which is given read access.
    let bin = env.path().join("tierback");
    std::fs::copy(tierback_tests::tierback_bin(), &bin).unwrap();
    let restore = env.path().join("restore");
    let data = restore.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let tar = env.ok(&["cat", &base[0].1]).stdout;
    let mut untar = Command::new("tar")
        .args(["-x", "-C", data.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(untar.stdin.as_mut().unwrap(), &tar).unwrap();
    drop(untar.stdin.take());
    assert!(untar.wait().unwrap().success());
    std::fs::write(data.join("recovery.signal"), "").unwrap();
    let mut auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap_or_default();
    auto.push_str(&format!(
        "restore_command = '{} --config {} wal-fetch pg-wal %f %p'\n\
         recovery_target_time = '{target}'\nrecovery_target_action = 'promote'\n",
        bin.display(),
        env.config().display()
    ));
    std::fs::write(data.join("postgresql.auto.conf"), auto).unwrap();
    chmod_tree(env.path(), 0o777, 0o666);
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    check(
        "chown",
        Command::new("chown")
            .args(["-R", "postgres:postgres", restore.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();

    let port = pg.port + 1;
    let recovered = Recovered { data: data.clone() };
    check(
        "pg_ctl start (recovery)",
        as_postgres(&[
            &format!("{BIN}/pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &format!(
                "-c listen_addresses='' -k {} -p {port} -c archive_mode=off",
                restore.display()
            ),
            "-l",
            restore.join("log").to_str().unwrap(),
            "-w",
            "-t",
            "120",
            "start",
        ]),
    );
    let log = || std::fs::read_to_string(restore.join("log")).unwrap_or_default();
    let sql = |q: &str| {
        let out = Command::new("psql")
            .args(["-X", "-At", "-h", restore.to_str().unwrap()])
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                q,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    wait_until(
        "recovery to reach its target and promote",
        Duration::from_secs(120),
        || sql("SELECT pg_is_in_recovery()") == "f",
    );
    assert!(
        log().contains("restored log file"),
        "WAL came from the archive:\n{}",
        log()
    );
    // 100 rows are in the base backup; the next 100 only in archived WAL; the last 100 were
    // committed after the target.
    assert_eq!(sql("SELECT count(*) FROM pitr"), "200", "{}", log());
    drop(recovered);

    // A WAL file that was never archived is exit 1 (PostgreSQL's "not available"); one whose
    // every copy is damaged is 126, which stops a recovery instead of ending it early.
    let dest = env.path().join("fetched");
    let missing = env.run(&[
        "wal-fetch",
        "pg-wal",
        "0000000100000000000000FF",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(!dest.exists());
    let (_, path, _) = wal
        .iter()
        .find(|(_, _, f)| f["wal_file"] == last_segment.as_str())
        .unwrap();
    let stored = env
        .local_tier()
        .join(path.replacen("pg-wal/local/", "pg-wal/", 1) + ".gz");
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let damaged = env.run(&["wal-fetch", "pg-wal", &last_segment, dest.to_str().unwrap()]);
    assert_eq!(
        damaged.status.code(),
        Some(126),
        "{}",
        String::from_utf8_lossy(&damaged.stderr)
    );
    assert!(!dest.exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tierback-wal-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// The archive_command that docs/operations.md gives, run by a real server: a segment reaches
/// the spool whole (temporary name, sync, rename), is archived, and comes back byte for byte.
#[test]
fn the_documented_archive_command_feeds_the_spool() {
    let env = Env::new("");
    let spool = env.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    chmod_tree(env.path(), 0o755, 0o644);
    check(
        "chown",
        Command::new("chown")
            .args(["postgres:postgres", spool.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let line = docs
        .lines()
        .find(|l| l.starts_with("archive_command = "))
        .expect("operations.md gives an archive_command");
    let pg = PgServer::start_with(&format!(
        "archive_mode = on\n{}\n",
        line.replace("/var/lib/tierback/wal-spool", spool.to_str().unwrap())
    ));
    env.write_config(&format!(
        "[services.pg-wal]\ndriver = \"postgres_wal\"\nspool = \"{}\"\n",
        spool.display()
    ));
    pg.query(
        "postgres",
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)",
    );
    let segment = pg.query("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    wait_until(
        &format!("{segment} archived into the spool"),
        Duration::from_secs(30),
        || spool.join(&segment).exists(),
    );
    // Archiving the same file again (PostgreSQL retries after a crash) succeeds; a different
    // file under the same name fails and leaves the archived one alone.
    let original = std::fs::read(spool.join(&segment)).unwrap();
    let archive = |content: &[u8]| {
        let source = env.path().join("retry");
        std::fs::write(&source, content).unwrap();
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o644)).unwrap();
        let command = line
            .trim_start_matches("archive_command = '")
            .trim_end_matches('\'')
            .replace("/var/lib/tierback/wal-spool", spool.to_str().unwrap())
            .replace("%p", source.to_str().unwrap())
            .replace("%f", &segment);
        as_postgres(&["sh", "-c", &command]).status.success()
    };
    assert!(archive(&original));
    let mut other = original.clone();
    other[100] ^= 1;
    assert!(!archive(&other));
    assert!(std::fs::read(spool.join(&segment)).unwrap() == original);
    env.ok(&["backup", "pg-wal"]);
    assert!(!spool.join(&segment).exists());
    let fetched = env.path().join("fetched");
    env.ok(&["wal-fetch", "pg-wal", &segment, fetched.to_str().unwrap()]);
    assert!(std::fs::read(&fetched).unwrap() == original);
}
