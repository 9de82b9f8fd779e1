//! The rclone tier against the real rclone binary: a `local` remote, a `crypt` remote over a
//! local directory, and remotes that fail. Remotes are defined by environment variables only
//! (`tierback_tests::rclone`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tierback_engine::Error;
use tierback_engine::config::{TierConfig, TierKind};
use tierback_engine::id::TierName;
use tierback_engine::store::Store;
use tierback_engine::store::rclone::{RcloneStore, Verify};
use tierback_tests::rclone::{self as helpers, CRYPT_PASSWORD, Remotes};

fn tier(remote: &str, binary: &Path, timeout_secs: u64) -> TierConfig {
    TierConfig {
        copy: vec!["daily".into()],
        ..TierConfig::new(
            TierName::new("offsite").unwrap(),
            TierKind::Rclone {
                remote: remote.to_owned(),
                binary: binary.to_owned(),
                timeout_secs,
                secrets: Default::default(),
            },
        )
    }
}

fn store(remote: &str, env: &[(String, String)]) -> RcloneStore {
    RcloneStore::open_with_env(&tier(remote, Path::new("rclone"), 30), env.to_vec()).unwrap()
}

/// Deterministic incompressible-looking bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn local_remote_passes_conformance() {
    let r = Remotes::new();
    let s = store(&r.local, &r.env);
    tierback_engine::store::conformance::run(&s);
    assert_eq!(s.verify_method().unwrap(), Verify::Sha256);
    // Objects are plain files under the remote's directory; no staging left behind.
    s.put_bytes("svc/2026-01-16/a_120000.sql.gz", b"hello")
        .unwrap();
    assert_eq!(
        std::fs::read(r.plain_dir().join("svc/2026-01-16/a_120000.sql.gz")).unwrap(),
        b"hello"
    );
    let staging = r.plain_dir().join(".tierback-partial");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "staging directory left non-empty"
    );
}

#[test]
fn crypt_remote_passes_conformance_and_stores_no_plaintext() {
    let r = Remotes::new();
    let s = store(&r.crypt, &r.env);
    tierback_engine::store::conformance::run(&s);
    assert_eq!(s.verify_method().unwrap(), Verify::CryptCheck);

    let marker = b"ZENTORIA-PLAINTEXT-MARKER-";
    let data: Vec<u8> = marker.iter().copied().cycle().take(200_000).collect();
    let key = "secretservice/2026-01-16/plainname_120000.sql.gz";
    s.put_bytes(key, &data).unwrap();
    assert_eq!(s.get(key).unwrap(), data, "read back through crypt");
    assert_eq!(s.list("secretservice/").unwrap().len(), 1);

    let files = files_under(&r.crypt_dir());
    assert!(!files.is_empty(), "crypt dir holds the ciphertext");
    for f in &files {
        let rel = f.strip_prefix(r.crypt_dir()).unwrap().to_string_lossy();
        for word in ["secretservice", "plainname", "2026-01-16", "conformance"] {
            assert!(!rel.contains(word), "plaintext name {word:?} in {rel}");
        }
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "plaintext bytes in {rel}"
        );
    }
    // Nothing was written beside the crypt dir in the clear either.
    assert!(files_under(&r.plain_dir()).is_empty());
}

#[test]
fn block_reads_go_through_one_server_process() {
    let r = Remotes::new();
    let s = store(&r.crypt, &r.env);
    let data = pattern(4 << 20, 7);
    // Nothing runs until the store is used; the first operation (here a write) starts the
    // one server that then does everything.
    assert_eq!(s.server_pid(), None);
    s.put_bytes("svc/2026-01-16/big_120000.sql.gz", &data)
        .unwrap();
    let pid = s.server_pid().expect("serve http is running");
    s.get_range("svc/2026-01-16/big_120000.sql.gz", 0, 1)
        .unwrap();
    assert_eq!(s.server_pid(), Some(pid));
    let before = s.processes_started();

    // 100 block reads from 4 threads at once, every one checked.
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (s, data) = (&s, &data);
            scope.spawn(move || {
                for i in 0..25u64 {
                    let off = (t * 7_919 + i * 104_729) * 37 % (data.len() as u64 - 65_536);
                    let got = s
                        .get_range("svc/2026-01-16/big_120000.sql.gz", off, 65_536)
                        .unwrap();
                    assert_eq!(got, &data[off as usize..off as usize + 65_536], "at {off}");
                }
            });
        }
    });

    assert_eq!(
        s.processes_started(),
        before,
        "block reads started rclone processes"
    );
    assert_eq!(s.server_pid(), Some(pid), "the server was replaced");
    let name = r.crypt.trim_end_matches(':');
    assert_eq!(
        helpers::processes_matching(&format!("{name}:")),
        vec![pid],
        "exactly one rclone process serves this remote"
    );
}

#[test]
fn server_is_gone_after_drop_and_restarts_after_a_crash() {
    let r = Remotes::new();
    let s = store(&r.local, &r.env);
    s.put_bytes("svc/d/x", b"0123456789").unwrap();
    assert_eq!(s.get_range("svc/d/x", 2, 3).unwrap(), b"234");
    let pid = s.server_pid().unwrap();

    // kill -9 the server: the next read starts another one.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.get_range("svc/d/x", 5, 5).unwrap(), b"56789");
    let pid2 = s.server_pid().unwrap();
    assert_ne!(pid, pid2);

    drop(s);
    assert!(
        !Path::new(&format!("/proc/{pid2}")).exists(),
        "serve process {pid2} still exists after the store was dropped"
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "not reaped");
}

#[test]
fn no_secret_on_any_rclone_argv() {
    let r = Remotes::new();
    let (wrapper, log) = helpers::logging_rclone(r.dir.path());
    let s = RcloneStore::open_with_env(&tier(&r.crypt, &wrapper, 30), r.env.clone()).unwrap();
    s.put_bytes("svc/d/a", b"abc").unwrap();
    assert_eq!(s.get_range("svc/d/a", 1, 2).unwrap(), b"bc");
    s.head("svc/d/a").unwrap();
    s.list("svc/").unwrap();
    s.delete("svc/d/a").unwrap();

    // The serve process: its environment holds the listeners' passwords and the crypt
    // password; its command line holds none of them.
    let pid = s.server_pid().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("serve http"), "{cmdline}");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ).into_owned();
    let mut secrets = vec![CRYPT_PASSWORD.to_owned(), r.obscured.clone()];
    for var in environ.split('\0') {
        if let Some((k, v)) = var.split_once('=')
            && (k == "RCLONE_PASS" || k == "RCLONE_RC_PASS")
        {
            assert!(v.len() >= 32, "{k} is a real random password");
            secrets.push(v.to_owned());
        }
    }
    assert_eq!(
        secrets.len(),
        4,
        "both listener passwords are in the environment"
    );

    // Every invocation the store made, as the wrapper logged them: the server, which did the
    // writes, listing and delete through its API, and the crypt check, which has no API call.
    let argvs = std::fs::read_to_string(&log).unwrap();
    let verbs: Vec<&str> = argvs
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(verbs, ["serve", "cryptcheck"], "{argvs}");
    for secret in &secrets {
        assert!(
            !cmdline.contains(secret.as_str()),
            "secret on the serve argv"
        );
        assert!(!argvs.contains(secret.as_str()), "secret on an rclone argv");
    }
}

#[test]
fn a_bad_upload_is_an_error_and_never_becomes_the_object() {
    for crypt in [false, true] {
        let r = Remotes::new();
        let wrapper = helpers::corrupting_rclone(r.dir.path());
        let remote = if crypt { &r.crypt } else { &r.local };
        let s = RcloneStore::open_with_env(&tier(remote, &wrapper, 30), r.env.clone()).unwrap();
        let e = s
            .put_bytes("svc/2026-01-16/a_120000.sql.gz", b"the real backup bytes")
            .unwrap_err();
        assert!(
            matches!(e, Error::Integrity { .. }),
            "crypt={crypt}: expected an integrity error, got {e}"
        );
        assert_eq!(
            s.head("svc/2026-01-16/a_120000.sql.gz").unwrap(),
            None,
            "crypt={crypt}: the unverified upload was published"
        );
        assert!(
            s.list("").unwrap().is_empty(),
            "crypt={crypt}: staging visible"
        );
    }
}

#[test]
fn writes_by_another_process_are_seen_by_a_running_server() {
    let r = Remotes::new();
    let reader = store(&r.local, &r.env);
    let writer = store(&r.local, &r.env); // stands for another tierback process
    writer.put_bytes("svc/2026-01-16/a", b"first").unwrap();
    assert_eq!(
        reader.get_range("svc/2026-01-16/a", 0, 5).unwrap(),
        b"first"
    );
    // New object in a directory the server has listed, and a replaced, longer object.
    writer.put_bytes("svc/2026-01-16/b", b"second").unwrap();
    writer
        .put_bytes("svc/2026-01-16/a", b"first, longer")
        .unwrap();
    assert_eq!(
        reader.get_range("svc/2026-01-16/b", 0, 6).unwrap(),
        b"second"
    );
    assert_eq!(
        reader.get_range("svc/2026-01-16/a", 7, 6).unwrap(),
        b"longer"
    );
    writer.delete("svc/2026-01-16/b").unwrap();
    let gone = reader.get_range("svc/2026-01-16/b", 0, 1);
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
}

/// Asserts that `e` is a prompt, transient error quoting rclone's own words.
fn assert_clear(e: &Error, words: &str, started: Instant, bound: Duration) {
    let text = e.to_string();
    assert!(text.contains("tier offsite"), "{text}");
    assert!(text.contains(words), "expected {words:?} in: {text}");
    assert!(e.is_transient(), "not transient: {text}");
    assert!(
        started.elapsed() < bound,
        "took {:?}: {text}",
        started.elapsed()
    );
}

#[test]
fn a_refused_remote_fails_clearly_and_promptly() {
    let (remote, env) = helpers::refused_remote();
    let s = RcloneStore::open_with_env(&tier(&remote, Path::new("rclone"), 20), env).unwrap();
    let bound = Duration::from_secs(20);
    let t = Instant::now();
    let e = s.put_bytes("svc/d/a", b"x").unwrap_err();
    assert_clear(&e, "connection refused", t, bound);
    let t = Instant::now();
    let e = s.list("svc/").unwrap_err();
    assert_clear(&e, "connection refused", t, bound);
    let t = Instant::now();
    let e = s.get_range("svc/d/a", 0, 1).unwrap_err();
    assert_clear(&e, "connection refused", t, bound);
    assert!(e.to_string().contains("rclone stderr"), "{e}");
}

#[test]
fn a_silent_remote_times_out_instead_of_hanging() {
    let (remote, env, _server) = helpers::silent_remote();
    let s = RcloneStore::open_with_env(&tier(&remote, Path::new("rclone"), 3), env).unwrap();
    // rclone's own idle timeout or our deadline, whichever first; never a hang.
    let bound = Duration::from_secs(15);
    let t = Instant::now();
    let e = s.head("svc/d/a").unwrap_err();
    assert_clear(&e, "rclone", t, bound);
    let t = Instant::now();
    let e = s.get_range("svc/d/a", 0, 1).unwrap_err();
    assert_clear(&e, "rclone", t, bound);
}

#[test]
fn an_unknown_remote_or_binary_is_a_clear_error() {
    let s = store("nosuchremote:backups", &[]);
    let e = s.list("").unwrap_err().to_string();
    assert!(e.contains("didn't find section in config file"), "{e}");
    let e = s.get_range("a/b", 0, 1).unwrap_err().to_string();
    assert!(e.contains("didn't find section in config file"), "{e}");

    let s = RcloneStore::open_with_env(
        &tier("x:y", Path::new("/nonexistent/rclone"), 5),
        Vec::new(),
    )
    .unwrap();
    let e = s.head("a/b").unwrap_err().to_string();
    assert!(e.contains("/nonexistent/rclone"), "{e}");
}

#[test]
fn open_tier_builds_an_rclone_store_and_refuses_inline_credentials() {
    let r = Remotes::new();
    let t = tier(&r.local, Path::new("rclone"), 30);
    let s = tierback_engine::store::open_tier(&t).unwrap();
    assert_eq!(s.name(), "offsite");
    let t = tier(
        ":s3,secret_access_key=SEKRIT:bucket",
        Path::new("rclone"),
        30,
    );
    let e = tierback_engine::store::open_tier(&t)
        .err()
        .unwrap()
        .to_string();
    assert!(!e.contains("SEKRIT") && e.contains("RCLONE_CONFIG_"), "{e}");
}

/// Not a test on its own: the child half of `server_dies_with_a_killed_tierback`, run in a
/// separate process (the test binary re-executed) that holds a store until it is killed.
#[test]
#[ignore = "helper process for server_dies_with_a_killed_tierback"]
fn helper_hold_store_until_killed() {
    let Ok(dir) = std::env::var("TIERBACK_TEST_HOLD_DIR") else {
        return;
    };
    let env: Vec<(String, String)> =
        serde_json::from_str(&std::env::var("TIERBACK_TEST_HOLD_ENV").unwrap()).unwrap();
    let remote = std::env::var("TIERBACK_TEST_HOLD_REMOTE").unwrap();
    let s = store(&remote, &env);
    s.put_bytes("svc/d/x", b"held").unwrap();
    // Read from a short-lived thread: the server must not die when that thread ends.
    std::thread::scope(|sc| {
        sc.spawn(|| assert_eq!(s.get_range("svc/d/x", 0, 4).unwrap(), b"held"));
    });
    assert_eq!(s.get_range("svc/d/x", 1, 2).unwrap(), b"el");
    let pid = s.server_pid().unwrap();
    std::fs::write(Path::new(&dir).join("pid"), pid.to_string()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn server_dies_with_a_killed_tierback() {
    let r = Remotes::new();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_hold_store_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("TIERBACK_TEST_HOLD_DIR", r.dir.path())
        .env(
            "TIERBACK_TEST_HOLD_ENV",
            serde_json::to_string(&r.env).unwrap(),
        )
        .env("TIERBACK_TEST_HOLD_REMOTE", &r.local)
        .spawn()
        .unwrap();
    let pid_file = r.dir.path().join("pid");
    let start = Instant::now();
    while !pid_file.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "helper never read"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(50)); // the write is not atomic
    let server: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(
        helpers::processes_matching(r.local.split(':').next().unwrap()),
        vec![server],
        "the server outlived the thread that first read"
    );
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let start = Instant::now();
    while !helpers::processes_matching(r.local.split(':').next().unwrap()).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rclone serve {server} outlived the killed process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
