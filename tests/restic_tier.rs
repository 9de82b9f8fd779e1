//! Issue 13: a `restic` tier, checked against the real `restic` binary (Debian's package) both
//! ways, with a real PostgreSQL server as the source and a real FUSE mount as the reader.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tierback_tests::fuse::Mount;
use tierback_tests::pg::PgServer;
use tierback_tests::{Env, sh, sql_dump};

const PASSWORD: &str = "correct horse battery staple";

/// The real `restic` CLI on the tier's repository, unlocked by the password in its environment.
fn restic(repo: &Path, args: &[&str]) -> Output {
    Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .output()
        .expect("restic is installed (apt-get install restic)")
}

fn ok(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An installation with a local tier and a restic tier whose password is in a file.
struct Setup {
    env: Env,
    repo: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let env = Env::new("");
        let repo = env.path().join("tiers/restic");
        std::fs::write(env.path().join("restic.password"), PASSWORD).unwrap();
        Setup { env, repo }
    }

    /// Writes the config: the local tier, the restic tier (with `restic_extra`), `services`.
    fn configure(&self, services: &str, restic_extra: &str) {
        self.env.write_config(&format!(
            "[tiers.restic]\ntype = \"restic\"\npath = \"{}\"\npassword = \"file:{}\"\n{restic_extra}\n\n{services}",
            self.repo.display(),
            self.env.path().join("restic.password").display()
        ));
    }

    fn at(&self, now: &str, args: &[&str]) -> Output {
        self.env.ok_with(args, &[("TIERBACK_NOW", now)])
    }

    fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = ok(
            "restic snapshots",
            restic(&self.repo, &["snapshots", "--json"]),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `(view path on the local tier, the same on the restic tier)` of every artifact.
    fn paths(&self) -> Vec<(String, String)> {
        self.env
            .list_json()
            .iter()
            .map(|a| {
                let key = a["key"].as_str().unwrap();
                let date = key.split('/').nth(1).unwrap();
                let (svc, file) = (a["service"].as_str().unwrap(), a["file"].as_str().unwrap());
                (
                    format!("{svc}/local/{date}/{file}"),
                    format!("{svc}/restic/{date}/{file}"),
                )
            })
            .collect()
    }
}

fn cat(env: &Env, path: &str) -> Vec<u8> {
    env.ok(&["cat", path]).stdout
}

#[test]
fn restic_reads_what_tierback_wrote_and_a_database_comes_back_from_the_restic_tier_alone() {
    let pg = PgServer::start();
    pg.query("postgres", "CREATE DATABASE shop");
    pg.query(
        "shop",
        "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note, g % 97 AS qty \
         FROM generate_series(1, 300000) g",
    );
    let argv: Vec<String> = pg
        .pg_dump_argv("shop")
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    let s = Setup::new();
    s.configure(
        &format!(
            "[services.pg]\ndriver = \"command\"\ncommand = [{}]\nartifact = \"shop\"\nextension = \"sql\"\n",
            argv.join(", ")
        ),
        "",
    );
    s.at("2026-01-16T12:00:00Z", &["backup", "pg"]);
    s.at("2026-01-16T12:05:00Z", &["sync", "--tier", "restic"]);
    let first = dir_size(&s.repo.join("data"));
    // About 1 % of the rows change between the two dumps, as between two hourly backups.
    pg.query(
        "shop",
        "UPDATE orders SET qty = qty + 1 WHERE id BETWEEN 100000 AND 103000",
    );
    s.at("2026-01-16T13:00:00Z", &["backup", "pg"]);
    let out = s.at("2026-01-16T13:05:00Z", &["sync", "--tier", "restic"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restic"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Deduplication: the second dump shares chunks with the first (stored whole, it would add
    // as much again; `make bench` measures the ratio over 48 dumps).
    let both = dir_size(&s.repo.join("data"));
    assert!(
        (both - first) * 5 < first * 3,
        "the second backup added {} bytes to the first's {first}",
        both - first
    );

    // restic itself: the repository is sound, data included, and holds one snapshot per
    // backup, tagged and laid out as the mount shows it.
    ok(
        "restic check --read-data",
        restic(&s.repo, &["check", "--read-data"]),
    );
    let snaps = s.snapshots();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    for snap in &snaps {
        let tags: Vec<&str> = snap["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(
            tags.contains(&"tierback") && tags.contains(&"service=pg"),
            "{tags:?}"
        );
        assert_eq!(snap["paths"][0], "/pg/2026-01-16");
    }
    let paths = s.paths();
    assert_eq!(paths.len(), 2);
    for (local, on_restic) in &paths {
        let original = cat(&s.env, local);
        let restic_path = format!("/pg/2026-01-16/{}", local.rsplit('/').next().unwrap());
        // `shop_130000.sql` is the backup of 13:00:00, tagged `backup=pg-20260116T130000Z`.
        let hhmmss = &local.rsplit('_').next().unwrap()[..6];
        let tag = format!("backup=pg-20260116T{hhmmss}Z");
        let snap = snaps
            .iter()
            .find(|sn| sn["tags"].to_string().contains(&tag))
            .expect("a snapshot holds the file");
        let dumped = ok(
            "restic dump",
            restic(
                &s.repo,
                &["dump", snap["id"].as_str().unwrap(), &restic_path],
            ),
        )
        .stdout;
        assert!(
            dumped == original,
            "restic dump of {restic_path} differs from the backup"
        );
        assert!(
            cat(&s.env, on_restic) == original,
            "tierback cat from the restic tier differs"
        );
    }
    // The mount shows the restic tier like any other, and every checksum holds through it.
    {
        let mount = Mount::start(&s.env, &[]);
        let day = mount.path("pg/restic/2026-01-16");
        let out = sh(&format!("cd '{}' && sha256sum -c *.sha256", day.display()));
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let file = mount.path(&paths[0].1);
        assert!(std::fs::read(&file).unwrap() == cat(&s.env, &paths[0].0));
    }
    let out = s.env.ok(&["verify", "--tier", "restic", "--all"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("FAIL"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Disaster: the catalog and the local tier are gone. The restic tier alone rebuilds the
    // catalog, and the database restored from it has every row.
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(s.env.path().join(f));
    }
    std::fs::remove_dir_all(s.env.local_tier()).unwrap();
    let out = s.env.ok(&["catalog", "rebuild", "--from", "restic"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 backups, 2 artifacts, 0 skipped"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let newest = s.env.newest_path("pg", "restic");
    let dump = s.env.path().join("restored.sql");
    std::fs::write(&dump, cat(&s.env, &newest)).unwrap();
    sh(&format!("chmod 644 '{}'", dump.display()));
    pg.query("postgres", "CREATE DATABASE restored");
    let out = pg.psql("restored", &["-f", dump.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for q in ["SELECT count(*) FROM orders", "SELECT sum(qty) FROM orders"] {
        assert_eq!(pg.query("restored", q), pg.query("shop", q), "{q}");
    }
}

#[test]
fn a_repository_made_by_restic_init_is_a_tier_and_retention_forgets_only_tierback_snapshots() {
    let s = Setup::new();
    let data = s.env.path().join("data.sql");
    std::fs::write(&data, sql_dump(3 << 20, 5)).unwrap();
    s.configure(
        &format!(
            "[services.app]\ndriver = \"command\"\ncommand = [\"cat\", \"{}\"]\nextension = \"sql\"\n",
            data.display()
        ),
        "retention = { keep_last = 1 }",
    );
    ok("restic init", restic(&s.repo, &["init"]));
    // Someone else's snapshot in the same repository: tierback must leave it alone.
    ok(
        "restic backup",
        restic(
            &s.repo,
            &["backup", data.to_str().unwrap(), "--tag", "manual"],
        ),
    );
    let out = s.env.ok(&["tiers", "setup"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exists, and the password opens it"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    s.at("2026-01-16T12:00:00Z", &["backup", "app"]);
    s.at("2026-01-16T12:01:00Z", &["sync"]);
    s.at("2026-01-16T13:00:00Z", &["backup", "app"]);
    s.at("2026-01-16T13:01:00Z", &["sync"]);
    assert_eq!(s.snapshots().len(), 3);
    s.at("2026-01-16T13:02:00Z", &["prune"]);
    let snaps = s.snapshots();
    let tags: Vec<String> = snaps.iter().map(|s| s["tags"].to_string()).collect();
    assert_eq!(snaps.len(), 2, "{tags:?}");
    assert!(tags.iter().any(|t| t.contains("manual")), "{tags:?}");
    assert!(
        tags.iter()
            .any(|t| t.contains("backup=app-20260116T130000Z")),
        "the newest backup stays: {tags:?}"
    );
    ok("restic check", restic(&s.repo, &["check", "--read-data"]));
    let restic_copies = s
        .env
        .list_json()
        .iter()
        .filter(|a| a["copies"].to_string().contains("\"restic\""))
        .count();
    assert_eq!(restic_copies, 1);
}

#[test]
fn a_wrong_password_a_missing_repository_and_a_damaged_pack_are_named() {
    let s = Setup::new();
    let first = s.env.path().join("first.sql");
    let second = s.env.path().join("second.sql");
    std::fs::write(&first, sql_dump(2 << 20, 1)).unwrap();
    std::fs::write(&second, sql_dump(2 << 20, 2)).unwrap();
    s.configure(
        &format!(
            "[services.one]\ndriver = \"command\"\ncommand = [\"cat\", \"{}\"]\nextension = \"sql\"\n\n\
             [services.two]\ndriver = \"command\"\ncommand = [\"cat\", \"{}\"]\nextension = \"sql\"\n",
            first.display(),
            second.display()
        ),
        "",
    );

    s.at("2026-01-16T12:00:00Z", &["backup", "--all"]);
    s.at("2026-01-16T12:01:00Z", &["sync"]);
    let paths = s.paths();
    let path_of = |svc: &str| {
        paths
            .iter()
            .find(|(l, _)| l.starts_with(&format!("{svc}/")))
            .unwrap()
            .clone()
    };
    let (one_local, one_restic) = path_of("one");
    let (two_local, two_restic) = path_of("two");
    let pack_files_before: Vec<PathBuf> = files(&s.repo.join("data"));

    // A wrong password: the error names the tier and the password reference's problem, never
    // the password.
    let good = std::fs::read_to_string(s.env.path().join("restic.password")).unwrap();
    std::fs::write(s.env.path().join("restic.password"), "not it").unwrap();
    let out = s.env.run(&["cat", &one_restic]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("restic tier restic") && err.contains("password does not open"),
        "{err}"
    );
    assert!(!err.contains("not it"), "{err}");
    std::fs::write(s.env.path().join("restic.password"), good).unwrap();

    // A missing repository: named, and the local tier reads on.
    let moved = s.repo.with_extension("away");
    std::fs::rename(&s.repo, &moved).unwrap();
    let out = s.env.run(&["cat", &one_restic]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no restic repository at"), "{err}");
    cat(&s.env, &one_local);
    std::fs::rename(&moved, &s.repo).unwrap();

    // A damaged pack: the largest pack holds one service's data. Exactly that file's reads
    // fail, naming it; the other service and the local tier read on.
    let pack = pack_files_before
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(pack, bytes).unwrap();
    let results: Vec<(String, bool)> = [&one_restic, &two_restic]
        .iter()
        .map(|p| {
            let out = s.env.run(&["cat", p]);
            (
                String::from_utf8_lossy(&out.stderr).to_string(),
                out.status.success(),
            )
        })
        .collect();
    let failed: Vec<&(String, bool)> = results.iter().filter(|r| !r.1).collect();
    assert_eq!(
        failed.len(),
        1,
        "exactly one file needs the damaged pack: {results:?}"
    );
    assert!(failed[0].0.contains("restic"), "{}", failed[0].0);
    assert!(cat(&s.env, &one_local) == std::fs::read(&first).unwrap());
    assert!(cat(&s.env, &two_local) == std::fs::read(&second).unwrap());
    let out = s.env.run(&["verify", "--tier", "restic", "--all"]);
    assert!(!out.status.success(), "verify finds the damaged pack");
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn dir_size(dir: &Path) -> u64 {
    files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}
