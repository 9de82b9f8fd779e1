//! A hostile offsite tier: an attacker who controls it plants oversized sparse sidecars, forged
//! indexes and metadata, names that escape the layout or drive the terminal, symlinks out of the
//! tier and broken JSON beside two good backups, then the catalog is rebuilt from it alone.
//! `catalog rebuild`, `verify`, `list` and `cat` must each stay within 256 MiB, never die of a
//! signal, name every bad item, open nothing outside the tier (the symlinks point at FIFOs: an
//! open would block for ever), and the good backups come back byte for byte.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tierback_engine::artifact::BlockIndex;
use tierback_engine::artifact::index::{Version, encoded_len};
use tierback_engine::artifact::metadata::ArtifactMetadata;
use tierback_engine::catalog::{Catalog, NewArtifact};
use tierback_engine::id::{ServiceName, TierName};
use tierback_engine::layout::{artifact_file, object_key};
use tierback_tests::Env;

/// Every command's memory ceiling.
const MAX_RSS_KIB: u64 = 256 << 10;
/// A command still running after this long is taken to be blocked (on a FIFO) and killed.
const DEADLINE: Duration = Duration::from_secs(60);

/// What a command did: its exit code (None: killed by a signal), output and peak RSS.
struct Ran {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    peak_kib: u64,
    seconds: f64,
}

impl Ran {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Exited 0 or 1 by itself, within the memory ceiling.
    fn assert_sane(&self, what: &str) {
        assert!(
            self.signal.is_none() && matches!(self.code, Some(0 | 1)),
            "{what}: exit code {:?}, signal {:?}\n{}\n{}",
            self.code,
            self.signal,
            self.text(),
            self.stderr
        );
        assert!(
            self.peak_kib < MAX_RSS_KIB,
            "{what}: peak RSS {} KiB (limit {MAX_RSS_KIB} KiB)",
            self.peak_kib
        );
        eprintln!(
            "{what}: exit {:?}, peak RSS {} KiB ({:.1} MiB), {:.2} s",
            self.code,
            self.peak_kib,
            self.peak_kib as f64 / 1024.0,
            self.seconds
        );
    }
}

/// Runs `tierback ARGS` and measures the child's peak RSS from its rusage (`wait4`). A child
/// still running after [`DEADLINE`] is killed, which the caller sees as a signal.
fn measured(env: &Env, args: &[&str]) -> Ran {
    let start = Instant::now();
    let mut child = env
        .cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tierback");
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        out.read_to_end(&mut b).unwrap();
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        err.read_to_end(&mut b).unwrap();
        b
    });
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(DEADLINE).is_err() {
            // Still unreaped (the main thread waits with WNOWAIT first), so the pid is ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    // Wait for the exit without reaping, so the watchdog can never signal a recycled pid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(r, 0, "waitid");
    let _ = done.send(());
    watchdog.join().unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    std::mem::forget(child);
    Ran {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        stdout: out_reader.join().unwrap(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        peak_kib: usage.ru_maxrss as u64,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// The good services' output: deterministic, so `cat` can be checked byte for byte.
fn seq(n: u32) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect()
}

fn setup() -> Env {
    let env = Env::new("");
    env.write_config(&format!(
        "[tiers.offsite]\ntype = \"local\"\npath = \"{}/tiers/offsite\"\n\n\
         [services.good1]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"100000\"]\nextension = \"sql\"\nblock_size = \"64KiB\"\n\n\
         [services.good2]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"30000\"]\nextension = \"txt\"\n",
        env.path().display()
    ));
    env
}

/// A sparse file of `len` bytes: no disk space, but a listing and `stat` show its full size.
fn sparse(path: &Path, len: u64) {
    let _ = std::fs::remove_file(path);
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A real artifact on the tier, copied under other names with whatever an attacker changes.
struct Forger {
    root: PathBuf,
    gz: Vec<u8>,
    index: BlockIndex,
    meta: ArtifactMetadata,
}

/// 2026-01-16 12:00:00 UTC: the forged artifacts' day (the good ones are today's).
const T0: i64 = 1_768_564_800;

impl Forger {
    fn new(root: &Path, key: &str) -> Forger {
        let read = |suffix: &str| std::fs::read(root.join(format!("{key}{suffix}"))).unwrap();
        Forger {
            root: root.to_owned(),
            gz: read(""),
            index: BlockIndex::decode(&read(".idx")).unwrap(),
            meta: serde_json::from_slice(&read(".meta.json")).unwrap(),
        }
    }

    /// Writes a consistent copy (the four objects) as `service`'s `stem` taken at `T0 + k`,
    /// after `edit` changed what it wants; returns the key and the path of the stored file.
    fn forge(
        &self,
        service: &str,
        stem: &str,
        k: i64,
        edit: impl FnOnce(&mut ArtifactMetadata, &mut BlockIndex),
    ) -> (String, PathBuf) {
        let ts = T0 + k;
        let mut meta = self.meta.clone();
        let mut index = self.index.clone();
        meta.service = service.to_owned();
        meta.taken_at_unix = ts;
        meta.file = artifact_file(stem, "sql", ts);
        edit(&mut meta, &mut index);
        let key = object_key(&meta.service, ts, &meta.file);
        let gz = self.root.join(&key);
        std::fs::create_dir_all(gz.parent().unwrap()).unwrap();
        let name = key.rsplit('/').next().unwrap();
        for (suffix, bytes) in [
            ("", self.gz.clone()),
            (".idx", index.encode()),
            (
                ".sha256",
                format!("{}  {name}\n", meta.stored_sha256).into_bytes(),
            ),
            (".meta.json", serde_json::to_vec_pretty(&meta).unwrap()),
        ] {
            std::fs::write(self.root.join(format!("{key}{suffix}")), bytes).unwrap();
        }
        (key, gz)
    }
}

fn with(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

#[test]
fn a_hostile_tier_is_rebuilt_within_bounds_and_the_good_backups_survive() {
    let started = Instant::now();
    let env = setup();
    env.ok(&["backup", "good1"]);
    env.ok(&["backup", "good2"]);
    env.ok(&["sync"]);
    let tier = env.path().join("tiers/offsite");
    let good: Vec<(String, String)> = env
        .list_json()
        .iter()
        .map(|a| {
            (
                a["service"].as_str().unwrap().to_owned(),
                a["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(good.len(), 2);
    let good1_key = &good.iter().find(|(s, _)| s == "good1").unwrap().1;
    let forger = Forger::new(&tier, good1_key);
    let blocks = forger.meta.block_count;
    assert!(blocks > 1, "good1 has several blocks");

    // Outside the tier: FIFOs that any open() would block on, and a directory of them.
    let outside = env.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let fifo = outside.join("shadow");
    mkfifo(&fifo);
    for name in ["a_120000.sql.gz", "a_120000.sql.gz.meta.json"] {
        mkfifo(&outside.join(name));
    }

    // Each case: what the attacker did, and words the rebuild must say about it.
    let mut expect: Vec<(String, String)> = Vec::new();
    let gig64 = 64u64 << 30;

    let (_, gz) = forger.forge("hostile", "sparse_idx", 1, |_, _| {});
    sparse(&with(&gz, ".idx"), gig64);
    expect.push((
        "sparse .idx".into(),
        format!(
            "sidecar sparse_idx_120001.sql.gz.idx is 68719476736 bytes (64.0 GiB); an index of {blocks} blocks is {} bytes ({} in format version 1)",
            encoded_len(Version::V2, blocks),
            encoded_len(Version::V1, blocks)
        ),
    ));

    let (_, gz) = forger.forge("hostile", "sparse_sha", 2, |_, _| {});
    sparse(&with(&gz, ".sha256"), gig64);
    expect.push((
        "sparse .sha256".into(),
        "sidecar sparse_sha_120002.sql.gz.sha256 is 68719476736 bytes (64.0 GiB); the sha256sum line for sparse_sha_120002.sql.gz is".into(),
    ));

    let (_, gz) = forger.forge("hostile", "sparse_meta", 3, |_, _| {});
    sparse(&with(&gz, ".meta.json"), gig64);
    expect.push((
        "sparse .meta.json".into(),
        "sidecar sparse_meta_120003.sql.gz.meta.json is 68719476736 bytes (64.0 GiB); a metadata sidecar is at most 1.0 MiB".into(),
    ));

    let (_, gz) = forger.forge("hostile", "meta_3g", 4, |_, _| {});
    sparse(&with(&gz, ".meta.json"), 3 << 30);
    expect.push((
        "3 GiB .meta.json".into(),
        "sidecar meta_3g_120004.sql.gz.meta.json is 3221225472 bytes (3.0 GiB)".into(),
    ));

    let (_, gz) = forger.forge("hostile", "sparse_gz", 5, |_, _| {});
    sparse(&gz, gig64);
    expect.push((
        "sparse .gz".into(),
        "stored file sparse_gz_120005.sql.gz is 68719476736 bytes (64.0 GiB); its metadata says"
            .into(),
    ));

    // One 2 GiB member, metadata and a sparse stored file to match.
    let (_, gz) = forger.forge("hostile", "member_2g", 6, |m, i| {
        i.block_size = 1 << 20;
        i.entries.truncate(1);
        i.entries[0].stored_len = 2 << 30;
        i.entries[0].raw_len = 1 << 20;
        m.block_size = 1 << 20;
        m.raw_size = 1 << 20;
        m.block_count = 1;
        m.stored_size = 2 << 30;
    });
    sparse(&gz, 2 << 30);
    expect.push((
        "2 GiB member (metadata)".into(),
        "sidecar member_2g_120006.sql.gz.meta.json: stored size 2147483648 is more than 1 member holding 1048576 raw bytes can be"
            .into(),
    ));
    // The same member in the index only: the metadata tells the truth.
    forger.forge("hostile", "idx_2g", 7, |_, i| {
        let n = i.entries.len();
        i.entries[n - 1].stored_len = 2 << 30;
    });
    expect.push((
        "2 GiB member (index)".into(),
        format!(
            "sidecar idx_2g_120007.sql.gz.idx: block {} is a member of 2147483648 bytes",
            blocks - 1
        ),
    ));

    // One block of 1.25 GiB, consistent everywhere.
    let stored = forger.gz.len() as u32;
    forger.forge("hostile", "block_1g", 8, |m, i| {
        i.block_size = 1280 << 20;
        i.entries.truncate(1);
        i.entries[0].stored_len = stored;
        i.entries[0].raw_len = 1280 << 20;
        m.block_size = 1280 << 20;
        m.raw_size = 1280 << 20;
        m.block_count = 1;
    });
    expect.push((
        "1.25 GiB block".into(),
        "sidecar block_1g_120008.sql.gz.meta.json: block size 1342177280 bytes (1.2 GiB) is outside the 4 KiB–64 MiB the format allows".into(),
    ));

    // Names: a service that would sit beside (and shadow) good1, a file in a subdirectory,
    // terminal escapes, a bell and a forged line.
    forger.forge("x/good1", "good1", 9, |_, _| {});
    expect.push((
        "service x/good1".into(),
        "invalid service name \"x/good1\"".into(),
    ));
    forger.forge("hostile", "sub/name", 10, |_, _| {});
    expect.push((
        "file sub/name".into(),
        "file name \"sub/name_120010.sql\" is not the layout's <name>_120010.<extension>".into(),
    ));
    forger.forge("hostile", "evil\u{1b}[2J\u{1b}]0;pwned\u{7}", 11, |_, _| {});
    expect.push((
        "ESC and BEL in a name".into(),
        "hostile/2026-01-16/evil\\x1b[2J\\x1b]0;pwned\\x07_120011.sql.gz".into(),
    ));
    let forged_line = "rebuilt catalog from tier offsite: 99 backups, 99 artifacts, 0 skipped";
    forger.forge("hostile", &format!("x\n{forged_line}\ny"), 12, |_, _| {});
    expect.push((
        "newline in a name".into(),
        format!("hostile/2026-01-16/x\\n{forged_line}\\ny_120012.sql.gz"),
    ));

    // Symlinks out of the tier: the stored file, the index, the metadata, a directory.
    let (_, gz) = forger.forge("hostile", "link_gz", 13, |_, _| {});
    std::fs::remove_file(&gz).unwrap();
    std::os::unix::fs::symlink(&fifo, &gz).unwrap();
    expect.push((
        "symlinked .gz".into(),
        "stored file link_gz_120013.sql.gz is not on the tier as a regular file".into(),
    ));
    let (_, gz) = forger.forge("hostile", "link_idx", 14, |_, _| {});
    std::fs::remove_file(with(&gz, ".idx")).unwrap();
    std::os::unix::fs::symlink(&fifo, with(&gz, ".idx")).unwrap();
    expect.push((
        "symlinked .idx".into(),
        "sidecar link_idx_120014.sql.gz.idx is not on the tier as a regular file".into(),
    ));
    // A symlinked metadata sidecar is not an object of the tier at all: never opened.
    let (_, gz) = forger.forge("hostile", "link_meta", 15, |_, _| {});
    std::fs::remove_file(with(&gz, ".meta.json")).unwrap();
    std::os::unix::fs::symlink(&fifo, with(&gz, ".meta.json")).unwrap();
    std::os::unix::fs::symlink(&outside, tier.join("hostile/2026-01-16/linked_dir")).unwrap();
    std::os::unix::fs::symlink(&outside, tier.join("linked_service")).unwrap();

    // Broken JSON: a syntax error, a wrong type.
    let (_, gz) = forger.forge("hostile", "json_syntax", 16, |_, _| {});
    std::fs::write(with(&gz, ".meta.json"), "{\"service\": \"hostile\", ").unwrap();
    expect.push((
        "JSON syntax error".into(),
        "sidecar json_syntax_120016.sql.gz.meta.json: not valid JSON: EOF while parsing".into(),
    ));
    let (_, gz) = forger.forge("hostile", "json_type", 17, |_, _| {});
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(with(&gz, ".meta.json")).unwrap()).unwrap();
    v["raw_size"] = "big".into();
    std::fs::write(with(&gz, ".meta.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    expect.push((
        "JSON type error".into(),
        "sidecar json_type_120017.sql.gz.meta.json: field \"raw_size\" should be a whole number from 0 up, not a string".into(),
    ));

    // Lose the catalog and the local tier: the offsite tier is all there is.
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(env.path().join(f));
    }
    std::fs::remove_dir_all(env.local_tier()).unwrap();

    let rebuild = measured(&env, &["catalog", "rebuild", "--from", "offsite"]);
    rebuild.assert_sane("catalog rebuild");
    let text = rebuild.text();
    eprintln!("{text}");
    assert_eq!(rebuild.code, Some(1), "skips make the exit code 1:\n{text}");
    for b in [0x1b_u8, 0x07] {
        assert!(
            !rebuild.stdout.contains(&b),
            "raw control byte {b:#x}:\n{text}"
        );
    }
    assert!(
        !rebuild.stderr.contains('\u{1b}') && !rebuild.stderr.contains('\u{7}'),
        "raw control characters on stderr:\n{}",
        rebuild.stderr
    );
    assert!(
        text.lines().all(|l| !l.starts_with(forged_line)),
        "a name forged a line:\n{text}"
    );
    let skipped: Vec<&str> = text.lines().filter(|l| l.starts_with("SKIPPED")).collect();
    for (case, words) in &expect {
        assert!(
            skipped.iter().any(|l| l.contains(words.as_str())),
            "{case}: no SKIPPED line says {words:?}:\n{text}"
        );
    }
    for l in &skipped {
        for bad in [
            "integrity check failed",
            "struct ",
            "ArtifactMetadata",
            "u64",
        ] {
            assert!(!l.contains(bad), "{l}");
        }
    }
    assert_eq!(skipped.len(), expect.len(), "{text}");
    assert!(
        text.contains(&format!("2 backups, 2 artifacts, {} skipped", expect.len())),
        "{text}"
    );

    // The good backups are there, verify, and read back exactly.
    let list = measured(&env, &["list"]);
    list.assert_sane("list");
    assert_eq!(list.code, Some(0));
    let listed = list.text();
    assert!(
        listed.contains("good1") && listed.contains("good2") && !listed.contains("hostile"),
        "{listed}"
    );
    let json = env.list_json();
    let mut keys: Vec<String> = json
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    let mut want: Vec<String> = good.iter().map(|(_, k)| k.clone()).collect();
    want.sort();
    assert_eq!(keys, want);

    let verify = measured(&env, &["verify", "--tier", "offsite"]);
    verify.assert_sane("verify");
    assert_eq!(verify.code, Some(0), "{}", verify.text());
    assert!(
        verify.text().contains("2 copies checked, 0 with problems"),
        "{}",
        verify.text()
    );

    for (service, expected) in [("good1", seq(100_000)), ("good2", seq(30_000))] {
        let path = env.newest_path(service, "offsite");
        let cat = measured(&env, &["cat", &path]);
        cat.assert_sane(&format!("cat {service}"));
        assert_eq!(cat.code, Some(0), "{}", cat.stderr);
        assert!(cat.stdout == expected, "cat {path}: bytes differ");
    }
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn list_escapes_control_characters_from_the_catalog() {
    let env = setup();
    env.ok(&["backup", "good2"]);
    let index = BlockIndex {
        block_size: 4096,
        entries: vec![tierback_engine::artifact::BlockEntry {
            offset: 0,
            stored_len: 100,
            raw_len: 10,
            sha256: [0; 32],
            stored_sha256: Some([0; 32]),
        }],
    };
    let evil_file = "evil\u{1b}[2J\u{7}\nFORGED LINE\r_120000.sql";
    // Service and tier names are typed (`ServiceName`, `TierName`): one that could drive a
    // terminal never reaches the catalog, and one planted behind tierback's back is refused,
    // escaped, when read (the catalog's unit tests). File names are text.
    {
        let mut catalog = Catalog::open(&env.path().join("catalog.db")).unwrap();
        catalog
            .record_backup(
                &ServiceName::new("svc").unwrap(),
                T0,
                "command",
                None,
                &TierName::new("local").unwrap(),
                &[NewArtifact {
                    file: evil_file.into(),
                    key: format!("svc/2026-01-16/{evil_file}.gz"),
                    raw_size: 10,
                    raw_sha256: "0".repeat(64),
                    stored_size: 100,
                    stored_sha256: "0".repeat(64),
                    compression_level: 9,
                    index,
                    facts: serde_json::json!({}),
                }],
            )
            .unwrap();
    }
    let list = measured(&env, &["list"]);
    list.assert_sane("list");
    let text = list.text();
    eprintln!("{text}");
    for b in [0x1b_u8, 0x07, b'\r'] {
        assert!(
            !list.stdout.contains(&b),
            "raw control byte {b:#x}:\n{text}"
        );
    }
    assert!(
        text.lines().all(|l| !l.starts_with("FORGED LINE")),
        "a name forged a line:\n{text}"
    );
    assert!(
        text.contains("evil\\x1b[2J\\x07\\nFORGED LINE\\r_120000.sql"),
        "{text}"
    );
    assert!(text.contains("good2"), "{text}");
    // JSON keeps the exact name, escaped as JSON does.
    let json = env.list_json();
    assert!(json.iter().any(|a| a["file"] == evil_file));
}
