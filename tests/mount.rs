//! Issue 3 acceptance with a real kernel mount (root, /dev/fuse): ordinary tools over the tree,
//! random reads equal to the source, a flipped stored byte → EIO for exactly that block, EROFS
//! for every write, refresh without remount, signals, stale mounts, daemon mode.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tierback_tests::fuse::{Mount, detach, is_mounted};
use tierback_tests::{Env, sh, sql_dump, walk_members};

/// 256 KiB blocks: many block boundaries in a few MiB.
const BLOCK: usize = 256 << 10;

fn env_with(data: &[u8]) -> Env {
    let env = Env::new("");
    let src = env.path().join("dump.sql");
    std::fs::write(&src, data).unwrap();
    std::fs::write(env.path().join("notes.txt"), b"small file\n").unwrap();
    env.write_config(&format!(
        "[defaults]\nblock_size = \"256KiB\"\n\n\
         [services.shop]\ndriver = \"command\"\ncommand = [\"cat\", \"{}\"]\nextension = \"sql\"\n\n\
         [services.notes]\ndriver = \"command\"\ncommand = [\"cat\", \"{}\"]\nextension = \"txt\"\n",
        src.display(),
        env.path().join("notes.txt").display()
    ));
    env.ok(&["backup", "shop"]);
    env.ok(&["backup", "notes"]);
    env
}

fn ok(script: &str) -> String {
    let out = sh(script);
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn getxattr(path: &Path, name: &str) -> String {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and buffer.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "getxattr {name}: {}",
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    String::from_utf8(buf).unwrap()
}

/// Flips one byte in the middle of block `block` of the stored dump on the local tier.
fn flip_a_byte_of_block(env: &Env, block: usize) {
    let gz = env
        .tier_files()
        .into_iter()
        .find(|f| f.ends_with(".sql.gz"))
        .unwrap();
    let gz = env.local_tier().join(gz);
    let mut bytes = std::fs::read(&gz).unwrap();
    let (off, len, _) = walk_members(&bytes)[block];
    bytes[off + len / 2] ^= 0x55;
    std::fs::write(&gz, &bytes).unwrap();
}

fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn tools_see_exact_files_and_random_reads_equal_the_source() {
    let data = sql_dump(5 * (1 << 20) + 12_345, 11);
    let env = env_with(&data);
    let m = Mount::start(&env, &[]);
    let rel = env.newest_path("shop", "local");
    let file = m.path(&rel);
    let day = file.parent().unwrap().to_owned();
    let mnt = m.dir.display().to_string();

    // find lists services, tiers, days, files, sidecars and metadata.json.
    let found = ok(&format!("cd {mnt} && find . | sort"));
    for want in [
        "./shop/local",
        &format!("./{rel}"),
        &format!("./{rel}.sha256"),
        "metadata.json",
        "./notes/local",
    ] {
        assert!(found.contains(want), "find lacks {want}:\n{found}");
    }
    ok(&format!("ls -lR {mnt} > /dev/null"));

    // Exact size, mode, mtime = backup time.
    let st = ok(&format!("stat -c '%s %a %F' '{}'", file.display()));
    assert_eq!(st.trim(), format!("{} 444 regular file", data.len()));
    let st = ok(&format!("stat -c '%a' '{}'", day.display()));
    assert_eq!(st.trim(), "555");
    let list = env.list_json();
    let taken = list.iter().find(|a| a["service"] == "shop").unwrap()["taken_at"]
        .as_i64()
        .unwrap();
    let mtime = ok(&format!("stat -c %Y '{}'", file.display()));
    assert_eq!(mtime.trim().parse::<i64>().unwrap(), taken);
    let du = ok(&format!("du -b --apparent-size '{}'", file.display()));
    assert!(du.starts_with(&format!("{}\t", data.len())), "{du}");

    // sha256sum -c inside the directory; tar and cp -r reproduce the bytes.
    ok(&format!(
        "cd '{}' && sha256sum -c ./*.sha256",
        day.display()
    ));
    let out = env.path().join("out");
    std::fs::create_dir(&out).unwrap();
    ok(&format!("cp -r {mnt}/shop '{}/'", out.display()));
    assert!(
        std::fs::read(out.join(&rel)).unwrap() == data,
        "cp -r differs"
    );
    ok(&format!(
        "cd {mnt} && tar -cf '{0}/t.tar' shop notes && mkdir '{0}/x' && tar -xf '{0}/t.tar' -C '{0}/x'",
        out.display()
    ));
    assert!(
        std::fs::read(out.join("x").join(&rel)).unwrap() == data,
        "tar differs"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(day.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta[0]["size"].as_u64(), Some(data.len() as u64));

    // xattrs.
    let a = list.iter().find(|a| a["service"] == "shop").unwrap();
    assert_eq!(
        getxattr(&file, "user.tierback.sha256"),
        a["raw_sha256"].as_str().unwrap()
    );
    assert_eq!(
        getxattr(&file, "user.tierback.stored_sha256"),
        a["stored_sha256"].as_str().unwrap()
    );
    assert_eq!(
        getxattr(&file, "user.tierback.backup_id"),
        a["backup_id"].to_string()
    );
    assert_eq!(getxattr(&file, "user.tierback.tier"), "local");
    assert!(getxattr(&file, "user.tierback.verified_at").starts_with("20"));
    // A pin shows without remounting.
    assert_eq!(getxattr(&file, "user.tierback.pinned"), "no");
    env.ok(&["pin", &rel]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while getxattr(&file, "user.tierback.pinned") != "yes" {
        assert!(std::time::Instant::now() < deadline, "the pin never showed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // statfs answers.
    let df = ok(&format!("stat -f -c '%b %S' {mnt}"));
    let blocks: u64 = df.split(' ').next().unwrap().parse().unwrap();
    assert!(blocks * 4096 >= data.len() as u64, "{df}");

    // Random reads at many offsets, across block boundaries and at EOF (fresh handle each time
    // and a shared one), equal the source.
    let f = File::open(&file).unwrap();
    let n = data.len();
    let mut offsets = vec![
        0,
        BLOCK - 1,
        BLOCK,
        2 * BLOCK - 3,
        n - 1,
        n - 4096,
        n,
        n + 10,
    ];
    let mut x = 99u64;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        offsets.push((x % n as u64) as usize);
    }
    for (i, &off) in offsets.iter().enumerate() {
        let len = [1, 4096, 10_000, BLOCK + 17, 3 * BLOCK][i % 5];
        let mut buf = vec![0u8; len];
        let got = f.read_at(&mut buf, off as u64).unwrap();
        let want = &data[off.min(n)..(off + len).min(n)];
        // read_at may return less than asked only at EOF.
        assert_eq!(&buf[..got], &want[..got], "read of {len} at {off}");
        if got < want.len() {
            let mut rest = vec![0u8; want.len() - got];
            f.read_exact_at(&mut rest, (off + got) as u64).unwrap();
            assert_eq!(rest, want[got..]);
        }
    }
    drop(f);

    // Read-only for everyone.
    let erofs = Some(libc::EROFS);
    assert_eq!(
        errno_of(std::fs::OpenOptions::new().write(true).open(&file)),
        erofs
    );
    assert_eq!(errno_of(File::create(day.join("new.sql"))), erofs);
    assert_eq!(errno_of(std::fs::remove_file(&file)), erofs);
    assert_eq!(errno_of(std::fs::create_dir(day.join("d"))), erofs);
    assert_eq!(errno_of(std::fs::rename(&file, day.join("moved"))), erofs);
    assert_eq!(errno_of(std::fs::remove_dir_all(m.path("notes"))), erofs);
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    assert_eq!(errno_of(std::fs::set_permissions(&file, perms)), erofs);
    let p = CString::new(file.to_str().unwrap()).unwrap();
    // SAFETY: valid C strings.
    let r = unsafe { libc::setxattr(p.as_ptr(), c"user.x".as_ptr(), b"1".as_ptr().cast(), 1, 0) };
    assert_eq!(r, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), erofs);
    let line = ok(&format!("grep ' {mnt} ' /proc/mounts"));
    assert!(line.contains(" ro,"), "mount carries ro: {line}");
}

#[test]
fn a_flipped_stored_byte_fails_exactly_the_reads_of_its_block() {
    let data = sql_dump(3 * (1 << 20), 5);
    let env = env_with(&data);
    let bad = 5;
    flip_a_byte_of_block(&env, bad);

    let m = Mount::start(&env, &[]);
    let file = m.path(&env.newest_path("shop", "local"));
    let f = File::open(&file).unwrap();
    // The kernel may widen a read into its read-ahead window; a failed read-ahead is retried
    // page by page, so what the application sees is still exact.
    let start = bad * BLOCK;
    let end = start + BLOCK;
    let probes = [
        (start - 4096, 4096, true),
        (start - 10, 10, true),
        (start - 10, 20, false),
        (start, 1, false),
        (start + 100_000, 4096, false),
        (end - 1, 1, false),
        (end - 1, 2, false),
        (end, 4096, true),
        (end + BLOCK, 4096, true),
        (0, 4096, true),
    ];
    for (off, len, good) in probes {
        let mut buf = vec![0u8; len];
        let r = f.read_exact_at(&mut buf, off as u64);
        if good {
            r.unwrap_or_else(|e| panic!("read of {len} at {off}: {e}"));
            assert_eq!(buf, data[off..off + len], "bytes at {off}");
        } else {
            assert_eq!(
                errno_of(r),
                Some(libc::EIO),
                "read of {len} at {off} must fail"
            );
        }
    }
    // A whole-file copy fails rather than producing wrong bytes.
    assert!(
        !sh(&format!("cat '{}' > /dev/null", file.display()))
            .status
            .success()
    );
    // The copy is marked corrupt in the catalog and the failure is counted.
    let list = env.list_json();
    let shop = list.iter().find(|a| a["service"] == "shop").unwrap();
    assert_eq!(shop["copies"][0]["state"], "corrupt", "{shop}");
    let failures: u64 = getxattr(&m.dir, "user.tierback.integrity_failures")
        .parse()
        .unwrap();
    assert!(failures >= 1);
}

#[test]
fn a_new_backup_appears_without_remounting() {
    let env = env_with(&sql_dump(100_000, 1));
    let m = Mount::start(&env, &[]);
    let before: Vec<_> = std::fs::read_dir(m.path("shop/local"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // Same second → same file name; the next backup must be a later second.
    std::thread::sleep(Duration::from_millis(1100));
    env.ok(&["backup", "shop"]);
    let t = Instant::now();
    let newest = env.newest_path("shop", "local");
    while !m.path(&newest).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "new backup not visible after 5 s ({before:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("new backup visible after {:?}", t.elapsed());
    let day = m.path(&newest).parent().unwrap().to_owned();
    ok(&format!(
        "cd '{}' && sha256sum -c ./*.sha256",
        day.display()
    ));
}

#[test]
fn a_mount_follows_a_catalog_replaced_by_rebuild() {
    let env = env_with(&sql_dump(100_000, 2));
    let m = Mount::start(&env, &[]);
    let first = env.newest_path("shop", "local");
    assert!(m.path(&first).exists());
    // The disaster-recovery path: a new catalog file from the tier's sidecars, the old one kept
    // as .bak; then new backups go to the new file only.
    env.ok(&["catalog", "rebuild", "--from", "local", "--force"]);
    std::thread::sleep(Duration::from_millis(1100));
    env.ok(&["backup", "shop"]);
    let newest = env.newest_path("shop", "local");
    assert_ne!(newest, first);
    let t = Instant::now();
    while !m.path(&newest).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a backup recorded in the rebuilt catalog is not visible after 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read(m.path(&newest)).unwrap(),
        env.ok(&["cat", &newest]).stdout
    );
}

#[test]
fn signals_unmount_cleanly_and_a_dead_mount_is_reported_as_stale() {
    let env = env_with(&sql_dump(10_000, 2));
    // SIGTERM: clean exit, nothing left mounted.
    let mut m = Mount::start(&env, &[]);
    let status = m.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert!(!is_mounted(&m.dir));
    drop(m);

    // SIGINT while a shell sits inside the mount: still exits, the mount is detached.
    let mut m = Mount::start(&env, &[]);
    let f = File::open(m.path("shop")).unwrap();
    let status = m.signal_and_wait(libc::SIGINT);
    assert!(status.success(), "{status}");
    drop(f);
    drop(m);

    // SIGKILL: the mount point stays dead (ENOTCONN), never an empty directory, and a new mount
    // says what happened and how to fix it.
    let mut m = Mount::start(&env, &[]);
    m.signal_and_wait(libc::SIGKILL);
    assert_eq!(errno_of(std::fs::read_dir(&m.dir)), Some(libc::ENOTCONN));
    let out = env.run(&["mount", m.dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stale mount point") && err.contains("umount -l"),
        "{err}"
    );
    detach(&m.dir);
    drop(m);

    // fusermount3 -u works on a daemonised mount, and the daemon then exits.
    let dir = env.path().join("mnt");
    let out = env.ok(&["mount", dir.to_str().unwrap(), "--daemon"]);
    assert!(out.status.success());
    assert!(is_mounted(&dir), "daemon returned before mounting");
    let guard = Mount {
        dir: dir.clone(),
        child: None,
    };
    assert!(dir.join("shop/local").is_dir());
    ok(&format!("fusermount3 -u '{}'", dir.display()));
    assert!(!is_mounted(&dir));
    drop(guard);
}

#[test]
fn a_mount_point_inside_the_local_tier_is_refused() {
    let env = env_with(b"x\n");
    let inside = env.local_tier().join("mnt");
    std::fs::create_dir_all(&inside).unwrap();
    let out = env.run(&["mount", inside.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(!is_mounted(&inside));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("inside the local tier"), "{err}");
}

#[test]
fn a_daemon_logs_to_a_file_and_a_bad_log_path_is_refused() {
    let data = sql_dump(2 << 20, 9);
    let env = env_with(&data);
    flip_a_byte_of_block(&env, 3);

    // Default: the log goes beside the catalog.
    let dir = env.path().join("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    env.ok(&["mount", dir.to_str().unwrap(), "--daemon"]);
    let guard = Mount {
        dir: dir.clone(),
        child: None,
    };
    let file = dir.join(env.newest_path("shop", "local"));
    assert!(
        !sh(&format!("cat '{}' > /dev/null", file.display()))
            .status
            .success()
    );
    let log_path = env.path().join("mount.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("integrity check failed") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        log.contains("integrity check failed") && log.contains("block 3"),
        "daemon log: {log}"
    );
    assert!(!log.contains('\x1b'), "colour codes in the log: {log:?}");
    ok(&format!("fusermount3 -u '{}'", dir.display()));
    drop(guard);

    // A log file that cannot be opened is the caller's error, and nothing is mounted.
    let mut config = std::fs::read_to_string(env.config()).unwrap();
    config.push_str("\n[mount]\nlog_file = \"/nonexistent/tierback/mount.log\"\n");
    std::fs::write(env.config(), config).unwrap();
    let out = env.run(&["mount", dir.to_str().unwrap(), "--daemon"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log file /nonexistent/tierback/mount.log"),
        "{err}"
    );
    assert!(!is_mounted(&dir));
}
