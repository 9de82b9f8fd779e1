//! Issue 2 acceptance: backups through real processes, real `gzip`, `zcat` and `sha256sum`.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tierback_tests::{Env, sh, sql_dump, walk_members};

const MIB: usize = 1 << 20;

fn command_service(name: &str, argv: &str, extension: &str) -> String {
    format!(
        "[services.{name}]\ndriver = \"command\"\ncommand = {argv}\nextension = \"{extension}\"\n"
    )
}

/// Backs up `data` through a `command` source (`cat FILE`) and returns the env and stored path.
fn backed_up(data: &[u8]) -> (Env, std::path::PathBuf) {
    let env = Env::new("");
    let src = env.path().join("dump.sql");
    std::fs::write(&src, data).unwrap();
    env.write_config(&command_service(
        "shop",
        &format!("[\"cat\", \"{}\"]", src.display()),
        "sql",
    ));
    env.ok(&["backup", "shop"]);
    let files = env.tier_files();
    let gz = files
        .iter()
        .find(|f| f.ends_with(".sql.gz"))
        .expect("stored .sql.gz");
    let gz = env.local_tier().join(gz);
    (env, gz)
}

#[test]
fn big_dump_round_trips_through_every_tool() {
    let data = sql_dump(200 * MIB, 7);
    let (env, gz) = backed_up(&data);
    let dir = gz.parent().unwrap();
    let name = gz.file_name().unwrap().to_str().unwrap();

    // An ordinary gzip file: gzip -t, sha256sum -c, zcat.
    let out = sh(&format!("gzip -t '{}'", gz.display()));
    assert!(
        out.status.success(),
        "gzip -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sh(&format!(
        "cd '{}' && sha256sum -c '{name}.sha256'",
        dir.display()
    ));
    assert!(
        out.status.success(),
        "sha256sum -c: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let src = env.path().join("dump.sql");
    let out = sh(&format!(
        "zcat '{}' | cmp - '{}'",
        gz.display(),
        src.display()
    ));
    assert!(
        out.status.success(),
        "zcat differs: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // tierback cat is byte-identical.
    let path = env.newest_path("shop", "local");
    let out = env.ok(&["cat", &path]);
    assert!(out.stdout == data, "tierback cat differs from the source");

    // One member per 1 MiB block, each carrying the FEXTRA subfield with correct lengths.
    let bytes = std::fs::read(&gz).unwrap();
    let members = walk_members(&bytes);
    assert_eq!(members.len(), 200);
    assert!(members.iter().all(|&(_, _, raw)| raw == MIB));

    // Sidecars are there.
    for suffix in [".sha256", ".idx", ".meta.json"] {
        assert!(
            dir.join(format!("{name}{suffix}")).exists(),
            "missing {suffix}"
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.meta.json"))).unwrap())
            .unwrap();
    assert_eq!(meta["raw_size"], 200 * MIB as u64);
    assert_eq!(meta["block_count"], 200);
    assert_eq!(meta["compression_level"], 9);

    let out = env.ok(&["verify"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 copies checked, 0 with problems"));
}

#[test]
fn flipped_byte_is_caught_by_verify_and_cat() {
    let data = sql_dump(8 * MIB, 11);
    let (env, gz) = backed_up(&data);
    let mut bytes = std::fs::read(&gz).unwrap();
    let members = walk_members(&bytes);
    let bad = 5;
    let (off, len, _) = members[bad];
    bytes[off + len / 2] ^= 0x20;
    std::fs::write(&gz, &bytes).unwrap();

    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "verify must fail");
    let report = String::from_utf8_lossy(&out.stdout);
    let file = gz.file_name().unwrap().to_str().unwrap();
    assert!(
        report.contains(file) && report.contains(&format!("block {bad}")),
        "{report}"
    );

    let path = env.newest_path("shop", "local");
    let out = env.run(&["cat", &path]);
    assert!(!out.status.success(), "cat of a corrupt file must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("block {bad}")), "{err}");
    assert!(
        out.stdout.len() <= bad * MIB,
        "cat wrote the bad block or beyond: {} bytes",
        out.stdout.len()
    );
    assert_eq!(
        &out.stdout[..],
        &data[..out.stdout.len()],
        "what cat wrote is a correct prefix"
    );

    // The catalog remembers the copy is corrupt.
    let list = env.list_json();
    assert_eq!(list[0]["copies"][0]["state"], "corrupt");
}

#[test]
fn kill_9_mid_stream_leaves_nothing_and_next_backup_works() {
    let env = Env::new("");
    let src = env.path().join("dump.sql");
    // Enough that compressed blocks overflow the writer's buffer before the stall.
    std::fs::write(&src, sql_dump(32 * MIB, 3)).unwrap();
    // Produces some data, then stalls, so the kill lands mid-stream.
    let script = format!("cat '{}'; sleep 60", src.display());
    env.write_config(&command_service(
        "shop",
        &format!("[\"sh\", \"-c\", \"{script}\"]"),
        "sql",
    ));
    let mut child = {
        use std::os::unix::process::CommandExt;
        env.cmd(&["backup", "shop"])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let partial_dir = env.local_tier().join(".partial");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let staged: u64 = std::fs::read_dir(&partial_dir)
            .map(|rd| rd.flatten().map(|e| e.metadata().unwrap().len()).sum())
            .unwrap_or(0);
        if staged > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "backup never started writing");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    child.wait().unwrap();
    unsafe { libc::kill(-pid, libc::SIGKILL) }; // the orphaned `sh`

    assert!(
        env.tier_files().iter().all(|f| f.starts_with(".partial/")),
        "visible files after kill: {:?}",
        env.tier_files()
    );
    assert!(
        env.list_json().is_empty(),
        "the catalog lists a killed backup"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&env.ok(&["status", "--json"]).stdout).unwrap();
    assert_eq!(
        status["services"][0]["last_run"]["status"], "interrupted",
        "{status}"
    );

    env.write_config(&command_service(
        "shop",
        &format!("[\"cat\", \"{}\"]", src.display()),
        "sql",
    ));
    env.ok(&["backup", "shop"]);
    let files = env.tier_files();
    assert!(
        !files.iter().any(|f| f.starts_with(".partial/")),
        "stale partial kept: {files:?}"
    );
    assert_eq!(files.iter().filter(|f| f.ends_with(".sql.gz")).count(), 1);
    env.ok(&["verify"]);
}

#[test]
fn failing_source_stores_nothing_and_shows_stderr() {
    let env = Env::new(&command_service(
        "pg",
        r#"["sh", "-c", "echo 'CREATE TABLE x;'; echo 'pg_dump: error: connection to server failed: FATAL: password authentication failed' >&2; exit 1"]"#,
        "sql",
    ));
    let out = env.run(&["backup", "pg"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(err.contains("pg"), "{err}");
    assert!(env.tier_files().is_empty(), "{:?}", env.tier_files());
    assert!(env.list_json().is_empty());
    let status: serde_json::Value =
        serde_json::from_slice(&env.ok(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["services"][0]["last_run"]["status"], "failed");
}

#[test]
fn all_continues_past_a_failure_and_exits_partial() {
    let env = Env::new(&format!(
        "{}\n{}",
        command_service("bad", r#"["false"]"#, "bin"),
        command_service("good", r#"["echo", "hello"]"#, "txt")
    ));
    let out = env.run(&["backup", "--all"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "partial failure has its own exit code"
    );
    assert_eq!(env.list_json().len(), 1);
    let path = env.newest_path("good", "local");
    assert_eq!(env.ok(&["cat", &path]).stdout, b"hello\n");
}

#[test]
fn files_source_keeps_symlinks_and_modes() {
    let env = Env::new("");
    let etc = env.path().join("etc/nginx");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("nginx.conf"), "events {}\n").unwrap();
    std::os::unix::fs::symlink("nginx.conf", etc.join("default.conf")).unwrap();
    sh(&format!("chmod 0600 '{}/nginx.conf'", etc.display()));
    env.write_config(&format!(
        "[services.configs]\ndriver = \"files\"\npaths = [\"{}\"]\n",
        etc.display()
    ));
    env.ok(&["backup", "configs"]);
    let path = env.newest_path("configs", "local");
    assert!(path.ends_with(".tar"), "{path}");
    let restore = env.path().join("restore");
    std::fs::create_dir(&restore).unwrap();
    let mut tar = std::process::Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&restore)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    tar.stdin
        .take()
        .unwrap()
        .write_all(&env.ok(&["cat", &path]).stdout)
        .unwrap();
    assert!(tar.wait().unwrap().success());
    let restored = restore.join(etc.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_link(restored.join("default.conf"))
            .unwrap()
            .to_str(),
        Some("nginx.conf")
    );
    let out = sh(&format!("stat -c %a '{}/nginx.conf'", restored.display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "600");

    // A missing path is named.
    env.write_config("[services.configs]\ndriver = \"files\"\npaths = [\"/nonexistent/nginx\"]\n");
    let out = env.run(&["backup", "configs"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/nginx"));
}

#[test]
fn list_without_a_catalog_or_a_backup_is_empty() {
    // A config just written: no catalog yet. An empty list is the answer, not an error.
    let env = Env::new(&command_service("shop", r#"["seq", "1", "3"]"#, "sql"));
    let catalog = env.path().join("catalog.db");
    for args in [&["list"][..], &["list", "--service", "shop"]] {
        let out = env.ok(args);
        assert!(
            out.stdout.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(env.ok(&["list", "--json"]).stdout, b"[]\n");
    assert!(
        !catalog.exists(),
        "list is read-only: it creates no catalog"
    );
    // An unknown service is still an error.
    assert!(!env.run(&["list", "--service", "nope"]).status.success());
    // An empty catalog (after init) is the same.
    env.ok(&["init"]);
    assert!(catalog.exists());
    assert!(env.ok(&["list"]).stdout.is_empty());
    assert_eq!(env.list_json(), Vec::<serde_json::Value>::new());
    // Other read commands keep failing without a catalog.
    std::fs::remove_file(&catalog).unwrap();
    let out = env.run(&["cat", "shop/local/2026-01-16/shop_120000.sql"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no catalog"),
        "{out:?}"
    );
}

#[test]
fn config_errors_name_file_key_and_line() {
    let env = Env::new(&format!(
        "{}colour = \"blue\"\n",
        command_service("x", r#"["true"]"#, "bin")
    ));
    let out = env.run(&["list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("colour") && err.contains("tierback.toml") && err.contains("line 12"),
        "{err}"
    );

    let out = std::process::Command::new(tierback_tests::tierback_bin())
        .args(["--config", "/nonexistent/tierback.toml", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tierback.toml"));

    let env = Env::new(&command_service("x", r#"["true"]"#, "bin").replace(
        "[\"true\"]",
        "[\"true\"]\nenv = { TOKEN = \"env:TIERBACK_SURELY_UNSET\" }",
    ));
    let out = env.run(&["backup", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("env:TIERBACK_SURELY_UNSET"));
}

#[test]
fn secrets_stay_out_of_catalog_logs_and_argv() {
    let secret = "pa55-w0rd-never-logged";
    let env = Env::new(&command_service(
        "db",
        // The child prints whether it got the secret, and an error line on stderr.
        r#"["sh", "-c", "test \"$DB_PASSWORD\" = \"$EXPECTED\" && echo got-it; echo warning >&2"]"#,
        "txt",
    ));
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    std::fs::write(
        env.config(),
        cfg.replace(
            "extension",
            "env = { DB_PASSWORD = \"env:TB_TEST_SECRET\" }\nextension",
        ),
    )
    .unwrap();
    let out = env.ok_with(
        &["-vv", "backup", "db"],
        &[("TB_TEST_SECRET", secret), ("EXPECTED", secret)],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
    let path = env.newest_path("db", "local");
    assert_eq!(env.ok(&["cat", &path]).stdout, b"got-it\n");
    for f in std::fs::read_dir(env.path()).unwrap().flatten() {
        if f.file_name().to_string_lossy().starts_with("catalog.db") {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "secret in {:?}",
                f.path()
            );
        }
    }
}

/// A tmpfs mounted over a directory for the life of the guard (tests run as root).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = sh(&format!(
            "mount -t tmpfs -o size={size} tmpfs {}",
            dir.display()
        ));
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = sh(&format!("umount -l {}", self.0.display()));
    }
}

#[test]
fn a_full_disk_fails_the_backup_promptly_and_leaves_nothing() {
    // Sources still producing when the disk fills up: a command and a tar of files. The backup
    // must stop them and fail with the disk's error, not wait for them forever.
    let env = Env::new("");
    let big = env.path().join("big");
    std::fs::create_dir(&big).unwrap();
    std::fs::write(
        big.join("random.bin"),
        sh("head -c 24000000 /dev/urandom").stdout,
    )
    .unwrap();
    env.write_config(&format!(
        "{}\n[services.files]\ndriver = \"files\"\npaths = [\"{}\"]\n",
        command_service(
            "stream",
            r#"["head", "-c", "200000000", "/dev/urandom"]"#,
            "bin"
        ),
        big.display()
    ));
    let _disk = SmallDisk::mount(&env.local_tier(), "4m");
    for service in ["stream", "files"] {
        let started = Instant::now();
        // Under `timeout`: a regression hangs here, and should fail rather than stall the suite.
        let out = std::process::Command::new("timeout")
            .arg("120")
            .arg(tierback_tests::tierback_bin())
            .arg("--config")
            .arg(env.config())
            .args(["backup", service])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{service}: {err}");
        assert!(err.contains("No space left on device"), "{service}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{service} took {:?}",
            started.elapsed()
        );
        assert!(env.tier_files().is_empty(), "{:?}", env.tier_files());
    }
}
