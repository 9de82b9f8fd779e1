//! The native `postgres` and `redis` drivers against real servers the test starts itself
//! (PostgreSQL 15 from Debian, `redis-server`): backups restore into fresh servers, facts come
//! from the dump stream, secrets stay out of argv and the catalog, and failures store nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tierback_tests::pg::PgServer;
use tierback_tests::{Env, sh};

fn catalog_bytes(env: &Env) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(env.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("catalog.db")
        {
            all.extend(std::fs::read(p).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn postgres_databases_and_globals_restore_and_row_counts_come_from_the_dump() {
    let pg = PgServer::start();
    pg.query("postgres", "CREATE DATABASE shop");
    pg.query("postgres", "CREATE ROLE auditor LOGIN");
    pg.query(
        "shop",
        "CREATE TABLE accounts (id int PRIMARY KEY, name text, balance numeric); \
         INSERT INTO accounts SELECT g, 'name ' || g, g * 1.5 FROM generate_series(1, 2500) g; \
         CREATE TABLE \"Empty\" (id int)",
    );
    let env = Env::new(&format!(
        "[services.postgresql]\ndriver = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"postgres\"\n\
         password = \"env:TB_TEST_PG_PASSWORD\"\ndatabases = [\"shop\"]\n",
        pg.socket_dir().display(),
        pg.port
    ));
    let secret = "pg-secret-4b1d9e";
    let pg_password = [("TB_TEST_PG_PASSWORD", secret)];
    env.ok_with(&["backup", "postgresql"], &pg_password);

    let arts = env.artifacts("postgresql");
    let mut stems: Vec<&str> = arts.iter().map(|a| a.0.as_str()).collect();
    stems.sort();
    assert_eq!(stems, ["globals", "shop"]);
    let (_, shop, facts) = arts.iter().find(|a| a.0 == "shop").unwrap();
    assert_eq!(facts["row_counts"]["public.accounts"], 2500, "{facts}");
    assert_eq!(facts["row_counts"]["public.\"Empty\""], 0, "{facts}");
    assert!(
        facts["server_version"].as_str().unwrap().starts_with("15."),
        "{facts}"
    );
    assert!(!contains(&catalog_bytes(&env), secret.as_bytes()));

    // `tierback cat … | psql` restores into a fresh database.
    pg.query("postgres", "CREATE DATABASE fresh");
    let restore = sh(&format!(
        "TIERBACK_CONFIG='{}' '{}' cat '{shop}' | psql -X -q -v ON_ERROR_STOP=1 -h '{}' -p {} -U postgres -d fresh",
        env.config().display(),
        tierback_tests::tierback_bin().display(),
        pg.socket_dir().display(),
        pg.port
    ));
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    assert_eq!(
        pg.query("fresh", "SELECT count(*), sum(balance) FROM accounts"),
        pg.query("shop", "SELECT count(*), sum(balance) FROM accounts")
    );
    let (_, globals, _) = arts.iter().find(|a| a.0 == "globals").unwrap();
    let roles = String::from_utf8(env.ok(&["cat", globals]).stdout).unwrap();
    assert!(roles.contains("CREATE ROLE auditor"), "{roles}");

    // restore-test replays the dump into a scratch database, counts every table, drops it.
    let rt = |env: &Env| env.run_with(&["restore-test", "postgresql"], &pg_password);
    let out = rt(&env);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("PASSED") && text.contains("2500 rows") && text.contains("SKIPPED"),
        "{text}"
    );
    assert_eq!(
        pg.query(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'tierback_restore_test%'"
        ),
        "0"
    );
    let metrics = String::from_utf8(env.ok(&["metrics"]).stdout).unwrap();
    assert!(
        metrics.contains("backup_restore_test_success{service=\"postgresql\"} 1"),
        "{metrics}"
    );
    // A damaged block: the test fails naming it, and the metric says so.
    let gz = env.local_tier().join(
        env.tier_files()
            .into_iter()
            .find(|f| f.contains("/shop_") && f.ends_with(".sql.gz"))
            .unwrap(),
    );
    let original = std::fs::read(&gz).unwrap();
    let mut damaged = original.clone();
    damaged[original.len() / 2] ^= 0x20;
    std::fs::write(&gz, &damaged).unwrap();
    let out = rt(&env);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED") && text.contains("block"), "{text}");
    let metrics = String::from_utf8(env.ok(&["metrics"]).stdout).unwrap();
    assert!(
        metrics.contains("backup_restore_test_success{service=\"postgresql\"} 0"),
        "{metrics}"
    );
    std::fs::write(&gz, &original).unwrap();

    // A database that does not exist: the error says so, and nothing more is stored.
    let before = env.tier_files();
    std::fs::write(
        env.config(),
        std::fs::read_to_string(env.config())
            .unwrap()
            .replace("[\"shop\"]", "[\"shop\", \"nosuchdb\"]"),
    )
    .unwrap();
    let out = env.run_with(&["backup", "postgresql"], &pg_password);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("postgresql") && err.contains("nosuchdb"),
        "{err}"
    );
    let after = env.tier_files();
    assert!(
        after
            .iter()
            .all(|f| before.contains(f) || f.contains("/shop_") || f.contains("/globals_")),
        "a failed database left files: {after:?}"
    );
    assert!(!after.iter().any(|f| f.contains("nosuchdb")));
}

/// A real redis-server on a free port, without persistence, answering a replica sync at once.
struct Redis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start(password: &str, dbfile: Option<&Path>) -> Redis {
        Redis::start_with(password, dbfile, &["--appendonly", "no"])
    }

    /// `extra` replaces the default `--appendonly no` (e.g. to run with an AOF).
    fn start_with(password: &str, dbfile: Option<&Path>, extra: &[&str]) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(extra)
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--requirepass", password])
            .args(["--dir", dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(f) = dbfile {
            std::fs::copy(f, dir.path().join("dump.rdb")).unwrap();
            cmd.args(["--dbfilename", "dump.rdb"]);
        }
        let child = cmd.spawn().expect("redis-server (make test installs it)");
        let r = Redis { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.cli(password, &["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn cli(&self, password: &str, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .env("REDISCLI_AUTH", password)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn redis_rdb_restores_into_a_fresh_server_and_a_wrong_password_stores_nothing() {
    let password = "redis-secret-77c2";
    let redis = Redis::start(password, None);
    for i in 0..500 {
        redis.cli(
            password,
            &["SET", &format!("key:{i}"), &format!("value {i}")],
        );
    }
    redis.cli(password, &["RPUSH", "queue", "a", "b", "c"]);
    let env = Env::new(&format!(
        "[services.redis]\ndriver = \"redis\"\nport = {}\npassword = \"env:TB_TEST_REDIS_PASSWORD\"\n",
        redis.port
    ));
    env.ok_with(
        &["backup", "redis"],
        &[("TB_TEST_REDIS_PASSWORD", password)],
    );
    let arts = env.artifacts("redis");
    assert_eq!(arts.len(), 1);
    let (stem, path, facts) = &arts[0];
    assert_eq!(stem, "dump");
    assert!(path.ends_with(".rdb"), "{path}");
    assert!(facts["rdb_version"].as_str().is_some(), "{facts}");
    assert!(!contains(&catalog_bytes(&env), password.as_bytes()));

    // The stored RDB is valid (redis-check-rdb) and a new server loads every key from it.
    let rdb = env.path().join("restored.rdb");
    std::fs::write(&rdb, env.ok(&["cat", path]).stdout).unwrap();
    let check = Command::new("redis-check-rdb").arg(&rdb).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let fresh = Redis::start("other", Some(&rdb));
    assert_eq!(fresh.cli("other", &["DBSIZE"]).trim(), "501");
    assert_eq!(fresh.cli("other", &["GET", "key:123"]).trim(), "value 123");
    assert_eq!(
        fresh.cli("other", &["LRANGE", "queue", "0", "-1"]),
        "a\nb\nc\n"
    );
    drop(fresh);
    let out = env.run(&["restore-test", "redis"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("PASSED") && text.contains("redis-check-rdb"),
        "{text}"
    );

    // A wrong password: a clear error from redis-cli, and nothing new stored.
    let before = env.tier_files();
    let out = env.run_with(&["backup", "redis"], &[("TB_TEST_REDIS_PASSWORD", "wrong")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("redis"), "{err}");
    assert_eq!(env.tier_files(), before);
    let _ = &redis.dir;
}

#[test]
fn redis_aof_archive_pauses_rewrites_and_loads_into_a_fresh_server() {
    let password = "redis-secret-aof1";
    // A non-default appendfilename: the restore test must find it from the manifest's name.
    let redis = Redis::start_with(
        password,
        None,
        &[
            "--appendonly",
            "yes",
            "--appendfilename",
            "zentoria.aof",
            "--auto-aof-rewrite-percentage",
            "77",
        ],
    );
    for i in 0..300 {
        redis.cli(password, &["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    // A rewrite just before the backup: the copy must wait for it, not catch files mid-swap.
    redis.cli(password, &["BGREWRITEAOF"]);
    redis.cli(password, &["SET", "after-rewrite", "yes"]);
    let aof_dir = redis.dir.path().join("appendonlydir");
    let env = Env::new(&format!(
        "[services.redis]\ndriver = \"redis\"\nport = {}\npassword = \"env:PW\"\naof_dir = \"{}\"\n",
        redis.port,
        aof_dir.display()
    ));
    env.ok_with(&["backup", "redis"], &[("PW", password)]);
    let mut arts = env.artifacts("redis");
    arts.sort_by(|a, b| a.0.cmp(&b.0));
    let stems: Vec<_> = arts.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(stems, ["aof_archive", "dump"]);
    let (_, aof_path, facts) = &arts[0];
    assert!(aof_path.ends_with(".tar"), "{aof_path}");
    assert!(facts["entries"].as_u64().unwrap() >= 4, "{facts}");
    // The rewrite setting is back to what it was.
    assert_eq!(
        redis.cli(password, &["CONFIG", "GET", "auto-aof-rewrite-percentage"]),
        "auto-aof-rewrite-percentage\n77\n"
    );

    // The archive, unpacked, is an AOF a fresh server loads with every key.
    let out = env.path().join("restored");
    std::fs::create_dir(&out).unwrap();
    let tar = env.path().join("aof.tar");
    std::fs::write(&tar, env.ok(&["cat", aof_path]).stdout).unwrap();
    assert!(
        sh(&format!("tar -xf {} -C {}", tar.display(), out.display()))
            .status
            .success()
    );
    let restored_dir = out.join(aof_dir.strip_prefix("/").unwrap());
    let fresh_dir = tempfile::tempdir().unwrap();
    std::fs::rename(&restored_dir, fresh_dir.path().join("appendonlydir")).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut fresh = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfilename", "zentoria.aof"])
        .args(["--dir", fresh_dir.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let cli = |args: &[&str]| {
        let o = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while cli(&["PING"]) != "PONG" {
        assert!(Instant::now() < deadline, "the restored AOF did not load");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cli(&["DBSIZE"]), "301");
    assert_eq!(cli(&["GET", "k123"]), "v123");
    assert_eq!(cli(&["GET", "after-rewrite"]), "yes");
    let _ = fresh.kill();
    let _ = fresh.wait();

    let out = env.ok(&["restore-test", "redis"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("scratch redis-server: 301 keys (301 when copied)")
            && text.contains("redis-check-rdb"),
        "{text}"
    );

    // A backup that died with rewrites paused left the server at 0 and the original value in
    // the lock directory: the next backup puts 77 back (not the 0 it finds).
    std::fs::write(env.path().join("locks/redis.aof-rewrite-percentage"), "77").unwrap();
    redis.cli(
        password,
        &["CONFIG", "SET", "auto-aof-rewrite-percentage", "0"],
    );
    std::thread::sleep(Duration::from_millis(1100)); // a new HHMMSS name
    env.ok_with(&["backup", "redis"], &[("PW", password)]);
    assert_eq!(
        redis.cli(password, &["CONFIG", "GET", "auto-aof-rewrite-percentage"]),
        "auto-aof-rewrite-percentage\n77\n"
    );
    assert!(
        !env.path()
            .join("locks/redis.aof-rewrite-percentage")
            .exists()
    );

    // aof_dir against a server without an AOF: named, nothing stored.
    let plain = Redis::start(password, None);
    let env2 = Env::new(&format!(
        "[services.redis]\ndriver = \"redis\"\nport = {}\npassword = \"env:PW\"\naof_dir = \"{}\"\n",
        plain.port,
        aof_dir.display()
    ));
    let out = env2.run_with(&["backup", "redis"], &[("PW", password)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("appendonly no"), "{err}");
    assert!(env2.tier_files().is_empty(), "{:?}", env2.tier_files());
}
