use super::*;
use crate::audit::Caller;
use crate::inode::ROOT;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering;
use tierback_engine::artifact::writer::{WriteOptions, write_artifact};
use tierback_engine::catalog::ArtifactRecord;
use tierback_engine::id::{ArtifactId, TierName};
use tierback_engine::store::memory::MemoryStore;

/// An in-memory catalog double.
#[derive(Default)]
struct FakeCatalog {
    artifacts: Mutex<Vec<ArtifactRecord>>,
    indexes: Mutex<HashMap<i64, BlockIndex>>,
    version: AtomicI64,
    marks: Mutex<Vec<(i64, String)>>,
}

impl CatalogSource for FakeCatalog {
    fn artifacts(&self) -> tierback_engine::Result<Vec<ArtifactRecord>> {
        Ok(self.artifacts.lock().unwrap().clone())
    }
    fn version(&self) -> tierback_engine::Result<i64> {
        Ok(self.version.load(Ordering::SeqCst))
    }
    fn block_index(&self, id: ArtifactId) -> tierback_engine::Result<BlockIndex> {
        Ok(self.indexes.lock().unwrap()[&id.get()].clone())
    }
    fn mark_corrupt(
        &self,
        id: ArtifactId,
        tier: &TierName,
        _: &str,
    ) -> tierback_engine::Result<()> {
        self.marks
            .lock()
            .unwrap()
            .push((id.get(), tier.to_string()));
        Ok(())
    }
}

const T: i64 = 1_768_564_800;
const BS: usize = 4096;

struct Fixture {
    fs: Filesystem,
    catalog: Arc<FakeCatalog>,
    store: Arc<MemoryStore>,
    data: Vec<u8>,
}

impl FakeCatalog {
    fn add(&self, store: &MemoryStore, id: i64, taken_at: i64, data: &[u8]) {
        let mut out = Vec::new();
        let w = write_artifact(
            &mut &data[..],
            &mut out,
            WriteOptions {
                block_size: BS,
                level: 1,
                threads: 1,
            },
            &|_| {},
        )
        .unwrap();
        let mut rec = crate::tree::tests::record(
            id,
            "pg",
            taken_at,
            &format!("db{id}_120000.sql"),
            &["local"],
        );
        rec.raw_size = data.len() as u64;
        store.put_bytes(&rec.key, &out).unwrap();
        self.indexes.lock().unwrap().insert(id, w.index);
        self.artifacts.lock().unwrap().push(rec);
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

fn fixture(cache_bytes: usize) -> Fixture {
    fixture_modes(cache_bytes, 0o444, 0o555)
}

fn fixture_modes(cache_bytes: usize, file_mode: u16, dir_mode: u16) -> Fixture {
    let data: Vec<u8> = (0..50_000u32)
        .flat_map(|i| format!("{i},").into_bytes())
        .collect();
    let catalog = Arc::new(FakeCatalog::default());
    let store = Arc::new(MemoryStore::new("local"));
    catalog.add(&store, 1, T, &data);
    let local = TierName::new("local").unwrap();
    let mut stores: HashMap<TierName, Arc<dyn Store>> = HashMap::new();
    stores.insert(local.clone(), store.clone());
    let fs = Filesystem::new(
        catalog.clone(),
        vec![local],
        stores,
        Settings {
            uid: 10,
            gid: 20,
            file_mode,
            dir_mode,
            cache_bytes,
            readahead_threads: 2,
        },
    )
    .unwrap();
    Fixture {
        fs,
        catalog,
        store,
        data,
    }
}

/// The mounting user (root), whom every mode lets in.
const ME: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 0,
};

fn resolve_as(fs: &Filesystem, caller: Caller, path: &str) -> FsResult<Attr> {
    let mut attr = fs.getattr(ROOT)?;
    for part in path.split('/') {
        attr = fs.lookup(caller, attr.ino, part)?;
    }
    Ok(attr)
}

fn resolve(fs: &Filesystem, path: &str) -> FsResult<Attr> {
    resolve_as(fs, ME, path)
}

fn read_all(fs: &Filesystem, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
    fs.read(fh, offset, size).map(|d| d.as_slice().to_vec())
}

#[test]
fn attributes_and_listing() {
    let f = fixture(1 << 20);
    let a = resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
    assert_eq!(a.size, f.data.len() as u64);
    assert_eq!((a.perm, a.uid, a.gid, a.mtime), (0o444, 10, 20, T));
    let dir = resolve(&f.fs, "pg/local/2026-01-16").unwrap();
    assert_eq!((dir.kind, dir.perm), (Kind::Dir, 0o555));
    let names: Vec<_> =
        f.fs.readdir(dir.ino)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
    assert_eq!(
        names,
        [
            ".",
            "..",
            "db1_120000.sql",
            "db1_120000.sql.sha256",
            "metadata.json"
        ]
    );
    assert_eq!(f.fs.lookup(ME, dir.ino, "nope"), Err(FsError::NotFound));
    assert_eq!(f.fs.lookup(ME, a.ino, "x"), Err(FsError::NotDir));
    assert_eq!(f.fs.open(ME, a.ino, true), Err(FsError::ReadOnly));
    assert_eq!(f.fs.open(ME, dir.ino, false), Err(FsError::IsDir));
    assert_eq!(
        f.fs.getxattr(ME, a.ino, "user.tierback.tier").unwrap(),
        b"local"
    );
    assert_eq!(
        f.fs.getxattr(ME, a.ino, "user.other"),
        Err(FsError::NoXattr)
    );
    assert_eq!(
        f.fs.getxattr(ME, a.ino, "user.tierback.pinned").unwrap(),
        b"no"
    );
    let list = f.fs.listxattr(a.ino).unwrap();
    assert_eq!(list.iter().filter(|&&b| b == 0).count(), 6);
    assert!(f.fs.statfs().blocks >= f.data.len() as u64 / 4096);
}

#[test]
fn reads_at_any_offset_equal_the_source() {
    let f = fixture(64 << 10);
    let a = resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
    let fh = f.fs.open(ME, a.ino, false).unwrap();
    let n = f.data.len() as u64;
    let mut x = 12345u64;
    let mut offsets = vec![
        0,
        BS as u64 - 1,
        BS as u64,
        3 * BS as u64 - 7,
        n - 1,
        n - 10,
        n,
        n + 5,
    ];
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        offsets.push(x % n);
    }
    for (i, &off) in offsets.iter().enumerate() {
        let size = [1u32, 100, 4096, 10_000, 70_000][i % 5];
        let got = read_all(&f.fs, fh, off, size).unwrap();
        let s = (off.min(n)) as usize;
        let e = ((off + size as u64).min(n)) as usize;
        assert_eq!(got, &f.data[s..e], "read of {size} at {off}");
    }
    // Sequential whole-file read in kernel-sized chunks.
    let mut all = Vec::new();
    while (all.len() as u64) < n {
        all.extend(read_all(&f.fs, fh, all.len() as u64, 128 << 10).unwrap());
    }
    assert_eq!(all, f.data);
    assert!(f.fs.shared.cache.bytes() <= 64 << 10);
    f.fs.release(fh);
    assert_eq!(f.fs.read(fh, 0, 1).err(), Some(FsError::BadHandle(fh)));
}

#[test]
fn random_reads_of_part_of_a_block_keep_nothing_and_sequential_reads_cache() {
    let f = fixture(1 << 20);
    let a = resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
    let fh = f.fs.open(ME, a.ino, false).unwrap();
    // Seeks to the middle of blocks: only the bytes asked for come back, inflated no further
    // than needed, and the cache stays empty.
    for block in [7u64, 2, 11, 5] {
        let off = block * BS as u64 + 1000;
        let got = read_all(&f.fs, fh, off, 500).unwrap();
        assert_eq!(got, &f.data[off as usize..off as usize + 500]);
    }
    assert_eq!(f.fs.shared.cache.bytes(), 0, "part reads are not cached");
    // Reading on from there is sequential: whole blocks, through the cache.
    let off = 5 * BS as u64 + 1500;
    assert_eq!(
        read_all(&f.fs, fh, off, 100).unwrap(),
        &f.data[off as usize..off as usize + 100]
    );
    assert!(
        f.fs.shared.cache.bytes() > 0,
        "a sequential reader's block is cached"
    );
}

#[test]
fn corrupt_block_fails_only_reads_touching_it() {
    let f = fixture(1 << 20);
    let key = f.catalog.artifacts.lock().unwrap()[0].key.clone();
    let entry = f.catalog.indexes.lock().unwrap()[&1].entries[5];
    f.store
        .corrupt(&key, (entry.offset + entry.stored_len as u64 / 2) as usize);
    let a = resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
    let fh = f.fs.open(ME, a.ino, false).unwrap();
    let b5 = 5 * BS as u64;
    assert!(matches!(
        f.fs.read(fh, b5 + 10, 10),
        Err(FsError::Integrity(_))
    ));
    assert!(matches!(
        f.fs.read(fh, b5 - 10, 20),
        Err(FsError::Integrity(_))
    ));
    assert_eq!(
        read_all(&f.fs, fh, b5 - 10, 10).unwrap(),
        &f.data[b5 as usize - 10..b5 as usize]
    );
    let b6 = 6 * BS;
    assert_eq!(
        read_all(&f.fs, fh, b6 as u64, 10).unwrap(),
        &f.data[b6..b6 + 10]
    );
    assert!(f.fs.stats().integrity_failures.load(Ordering::Relaxed) >= 2);
    assert_eq!(
        *f.catalog.marks.lock().unwrap(),
        vec![(1, "local".to_string())],
        "marked once"
    );
}

#[test]
fn refresh_shows_new_backups_and_keeps_inodes() {
    let f = fixture(1 << 20);
    let before = resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
    assert!(!f.fs.refresh_if_changed().unwrap(), "nothing changed");
    assert!(resolve(&f.fs, "pg/local/2026-01-17/db2_120000.sql").is_err());
    f.catalog.add(&f.store, 2, T + 86_400, b"new backup\n");
    assert!(f.fs.refresh_if_changed().unwrap());
    let new = resolve(&f.fs, "pg/local/2026-01-17/db2_120000.sql").unwrap();
    let fh = f.fs.open(ME, new.ino, false).unwrap();
    assert_eq!(read_all(&f.fs, fh, 0, 100).unwrap(), b"new backup\n");
    assert_eq!(
        resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql").unwrap(),
        before
    );
    // A pruned backup disappears.
    f.catalog
        .artifacts
        .lock()
        .unwrap()
        .retain(|a| a.id != ArtifactId::new(1));
    f.catalog.version.fetch_add(1, Ordering::SeqCst);
    f.fs.refresh_if_changed().unwrap();
    assert_eq!(
        resolve(&f.fs, "pg/local/2026-01-16/db1_120000.sql"),
        Err(FsError::NotFound)
    );
    // The sidecar checks out against the data.
    let sha = resolve(&f.fs, "pg/local/2026-01-17/db2_120000.sql.sha256").unwrap();
    let fh = f.fs.open(ME, sha.ino, false).unwrap();
    let line = read_all(&f.fs, fh, 0, 4096).unwrap();
    assert!(line.ends_with(b"  db2_120000.sql\n"));
}

#[test]
fn permits_is_the_kernels_generic_check() {
    let file = |perm| Attr {
        ino: 5,
        kind: Kind::File,
        size: 1,
        mtime: 0,
        perm,
        nlink: 1,
        uid: 10,
        gid: 20,
    };
    let dir = |perm| Attr {
        kind: Kind::Dir,
        ..file(perm)
    };
    let no = |_| false;
    let yes = |_| true;
    let unasked = |_: u32| -> bool { panic!("groups read although they cannot matter") };
    let f = file(0o440);
    // Owner, primary group, supplementary group, others.
    assert!(permits(&f, 10, 99, no, MAY_READ));
    assert!(!permits(&f, 10, 99, no, MAY_EXEC));
    assert!(!permits(&f, 10, 99, no, MAY_WRITE));
    assert!(permits(&f, 11, 20, no, MAY_READ));
    assert!(permits(&f, 12, 12, yes, MAY_READ));
    assert!(!permits(&f, 12, 12, yes, MAY_READ | MAY_WRITE));
    assert!(!permits(&f, 13, 13, no, MAY_READ));
    // Root reads anything, searches any directory, executes only what someone may.
    assert!(permits(&f, 0, 0, unasked, MAY_READ));
    assert!(!permits(&f, 0, 0, no, MAY_EXEC));
    assert!(permits(&file(0o550), 0, 0, unasked, MAY_EXEC));
    assert!(permits(&dir(0o000), 0, 0, unasked, MAY_READ | MAY_EXEC));
    assert!(!permits(&dir(0o000), 0, 0, no, MAY_WRITE));
    // Only the caller's own class counts, even when another class would allow more.
    assert!(!permits(&file(0o070), 10, 20, yes, MAY_READ), "owner");
    assert!(permits(&file(0o070), 11, 20, no, MAY_READ));
    assert!(!permits(&file(0o407), 12, 12, yes, MAY_READ), "group");
    assert!(permits(&file(0o407), 13, 13, no, MAY_READ), "others");
    // Group bits equal to the others' bits: membership cannot matter, so it is not read.
    assert!(permits(&file(0o444), 13, 13, unasked, MAY_READ));
    assert!(!permits(&dir(0o500), 13, 13, unasked, MAY_EXEC));
    assert!(!permits(&dir(0o550), 13, 13, no, MAY_EXEC));
    assert!(permits(&dir(0o550), 13, 13, yes, MAY_EXEC));
}

/// A fake system: supplementary groups by pid, user names by uid, command `cmd<pid>`.
#[derive(Default)]
struct FakeIds {
    groups: HashMap<u32, Vec<u32>>,
    names: HashMap<u32, &'static str>,
    group_reads: AtomicU64,
}

impl Identities for FakeIds {
    fn groups(&self, pid: u32) -> Option<Vec<u32>> {
        self.group_reads.fetch_add(1, Ordering::SeqCst);
        self.groups.get(&pid).cloned()
    }
    fn command(&self, pid: u32) -> Option<String> {
        Some(format!("cmd{pid}"))
    }
    fn user_name(&self, uid: u32) -> Option<String> {
        self.names.get(&uid).map(|n| n.to_string())
    }
}

const OWNER: Caller = Caller {
    uid: 10,
    gid: 99,
    pid: 100,
};
/// The mount's group (20) is this caller's primary group.
const PRIMARY: Caller = Caller {
    uid: 11,
    gid: 20,
    pid: 101,
};
/// The mount's group is one of this caller's supplementary groups.
const MEMBER: Caller = Caller {
    uid: 12,
    gid: 12,
    pid: 102,
};
const OUTSIDER: Caller = Caller {
    uid: 13,
    gid: 13,
    pid: 103,
};
const ROOT_CALLER: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 104,
};

#[test]
fn modes_decide_who_reads_and_every_attempt_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.jsonl");
    let ids = Arc::new(FakeIds {
        groups: HashMap::from([(102, vec![7, 20]), (103, vec![7]), (1102, vec![7])]),
        names: HashMap::from([(10, "owner"), (12, "member"), (13, "outsider"), (0, "root")]),
        ..FakeIds::default()
    });
    let f = fixture_modes(1 << 20, 0o440, 0o550);
    let fs =
        f.fs.with_identities(ids.clone())
            .with_audit_log(AuditLog::open(&log_path).unwrap());
    let rel = "pg/local/2026-01-16/db1_120000.sql";
    let file = resolve(&fs, rel).unwrap();
    let day = resolve(&fs, "pg/local/2026-01-16").unwrap();
    let sha = resolve(&fs, &format!("{rel}.sha256")).unwrap();
    let denied = Some(FsError::PermissionDenied);

    // Outside the group: no search in the root, no listing, no open even of an inode the
    // kernel has cached for someone else, no access(2), no user. attributes; stat still works.
    assert_eq!(resolve_as(&fs, OUTSIDER, rel).err(), denied);
    assert_eq!(
        fs.lookup(OUTSIDER, ROOT, "pg").err(),
        denied,
        "echo of one attempt"
    );
    assert_eq!(
        fs.lookup(OUTSIDER, ROOT, "nope").err(),
        denied,
        "EACCES, not ENOENT"
    );
    assert_eq!(fs.opendir(OUTSIDER, ROOT).err(), denied);
    assert_eq!(fs.open(OUTSIDER, file.ino, false).err(), denied);
    assert_eq!(fs.open(OUTSIDER, file.ino, true), Err(FsError::ReadOnly));
    assert_eq!(fs.access(OUTSIDER, file.ino, MAY_READ).err(), denied);
    assert_eq!(fs.access(OUTSIDER, day.ino, MAY_EXEC).err(), denied);
    assert_eq!(fs.access(OUTSIDER, file.ino, 0), Ok(()));
    assert_eq!(
        fs.access(OUTSIDER, file.ino, MAY_WRITE),
        Err(FsError::ReadOnly)
    );
    assert_eq!(
        fs.getxattr(OUTSIDER, ROOT, "user.tierback.cache_hits")
            .err(),
        denied
    );
    assert_eq!(fs.getattr(file.ino).unwrap().perm, 0o440);
    assert_eq!(FsError::PermissionDenied.errno(), libc::EACCES);
    assert!(!fs.names_cacheable(), "0550: a walk may be refused");
    assert!(
        fixture(1 << 20).fs.names_cacheable(),
        "0555: no walk is refused"
    );

    // In the group as a supplementary group: walks, lists and reads the exact bytes.
    let a = resolve_as(&fs, MEMBER, rel).unwrap();
    let fh = fs.open(MEMBER, a.ino, false).unwrap();
    assert_eq!(read_all(&fs, fh, 0, 1 << 20).unwrap(), f.data);
    fs.release(fh);
    assert_eq!(fs.opendir(MEMBER, day.ino), Ok(()));
    assert_eq!(fs.access(MEMBER, day.ino, MAY_READ | MAY_EXEC), Ok(()));
    assert_eq!(fs.access(MEMBER, file.ino, MAY_EXEC).err(), denied, "0440");
    fs.open(MEMBER, sha.ino, false).unwrap();
    // Primary group, owner and root read; a caller whose groups cannot be read gets none.
    fs.open(PRIMARY, file.ino, false).unwrap();
    fs.open(OWNER, file.ino, false).unwrap();
    let reads = ids.group_reads.load(Ordering::SeqCst);
    fs.open(ROOT_CALLER, file.ino, false).unwrap();
    assert_eq!(
        ids.group_reads.load(Ordering::SeqCst),
        reads,
        "root needs no groups"
    );
    assert_eq!(fs.access(ROOT_CALLER, file.ino, MAY_EXEC).err(), denied);
    let gone = Caller { pid: 999, ..MEMBER };
    assert_eq!(fs.open(gone, file.ino, false).err(), denied);
    // Another process of the same user is another attempt.
    let other = Caller {
        pid: 1102,
        ..OUTSIDER
    };
    assert_eq!(fs.lookup(other, ROOT, "pg").err(), denied);

    let text = std::fs::read_to_string(&log_path).unwrap();
    let got: Vec<(String, String, u64, String, String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| match &v[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(v["command"], format!("cmd{}", v["pid"]), "{l}");
            assert!(v["time"].as_str().unwrap().ends_with('Z'));
            let outcome = match v.get("reason") {
                Some(r) => format!("{} ({})", s("outcome"), r.as_str().unwrap()),
                None => s("outcome"),
            };
            (
                s("event"),
                s("path"),
                v["uid"].as_u64().unwrap(),
                s("user"),
                outcome,
                s("pid"),
            )
        })
        .collect();
    let refused = "refused (permission denied)";
    let sha_rel = format!("{rel}.sha256");
    let want: Vec<(&str, &str, u64, &str, &str, &str)> = vec![
        ("lookup", "pg", 13, "outsider", refused, "103"),
        ("lookup", "nope", 13, "outsider", refused, "103"),
        ("opendir", ".", 13, "outsider", refused, "103"),
        ("open", rel, 13, "outsider", refused, "103"),
        (
            "open",
            rel,
            13,
            "outsider",
            "refused (read-only file system)",
            "103",
        ),
        ("open", rel, 12, "member", "allowed", "102"),
        (
            "opendir",
            "pg/local/2026-01-16",
            12,
            "member",
            "allowed",
            "102",
        ),
        ("open", &sha_rel, 12, "member", "allowed", "102"),
        ("open", rel, 11, "null", "allowed", "101"),
        ("open", rel, 10, "owner", "allowed", "100"),
        ("open", rel, 0, "root", "allowed", "104"),
        ("open", rel, 12, "member", refused, "999"),
        ("lookup", "pg", 13, "outsider", refused, "1102"),
    ];
    let want: Vec<_> = want
        .into_iter()
        .map(|(e, p, u, n, o, pid)| (e.into(), p.into(), u, n.into(), o.into(), pid.into()))
        .collect();
    assert_eq!(got, want, "{text}");
    assert_eq!(
        fs.getxattr(ME, ROOT, "user.tierback.audit_failures")
            .unwrap(),
        b"0"
    );
}

#[test]
fn a_failing_audit_log_never_fails_a_read_and_is_counted() {
    let f = fixture(1 << 20);
    let fs =
        f.fs.with_audit_log(AuditLog::open(std::path::Path::new("/dev/full")).unwrap());
    let a = resolve(&fs, "pg/local/2026-01-16/db1_120000.sql").unwrap();
    let fh = fs.open(ME, a.ino, false).unwrap();
    assert_eq!(read_all(&fs, fh, 0, 10).unwrap(), &f.data[..10]);
    fs.opendir(ME, ROOT).unwrap();
    assert_eq!(
        fs.getxattr(ME, ROOT, "user.tierback.audit_failures")
            .unwrap(),
        b"2"
    );
    let names = fs.listxattr(ROOT).unwrap();
    assert!(
        String::from_utf8(names)
            .unwrap()
            .contains("user.tierback.audit_failures\0")
    );
}
