//! A real PostgreSQL restore through the mount: pgbench data dumped by a `command` source
//! (`pg_dump`), restored with `psql -f /mnt/.../file.sql` into a fresh database.

use tierback_tests::Env;
use tierback_tests::fuse::Mount;
use tierback_tests::pg::PgServer;

#[test]
fn pg_dump_backup_restores_through_the_mount() {
    let pg = PgServer::start();
    pg.query("postgres", "CREATE DATABASE bench");
    let out = std::process::Command::new("pgbench")
        .args([
            "-i",
            "-s",
            "5",
            "-q",
            "-h",
            pg.socket_dir().to_str().unwrap(),
        ])
        .args(["-p", &pg.port.to_string(), "-U", "postgres", "bench"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Make abalance non-trivial so the sum means something.
    pg.query(
        "bench",
        "UPDATE pgbench_accounts SET abalance = (aid::bigint * 7919) % 10007 - 5000 WHERE aid % 3 = 0",
    );

    let env = Env::new("");
    let argv: Vec<String> = pg
        .pg_dump_argv("bench")
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    env.write_config(&format!(
        "[services.pg]\ndriver = \"command\"\ncommand = [{}]\nartifact = \"bench\"\nextension = \"sql\"\n",
        argv.join(", ")
    ));
    env.ok(&["backup", "pg"]);
    let m = Mount::start(&env, &[]);
    let file = m.path(&env.newest_path("pg", "local"));

    pg.query("postgres", "CREATE DATABASE fresh");
    let out = pg.psql("fresh", &["-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "psql -f: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    for q in [
        "SELECT count(*) FROM pgbench_accounts",
        "SELECT count(*) FROM pgbench_branches",
        "SELECT count(*) FROM pgbench_tellers",
        "SELECT sum(abalance) FROM pgbench_accounts",
    ] {
        assert_eq!(pg.query("fresh", q), pg.query("bench", q), "{q}");
    }
    assert_eq!(
        pg.query("fresh", "SELECT count(*) FROM pgbench_accounts"),
        "500000"
    );
}
