//! A throwaway PostgreSQL 15 server for tests: `initdb` and `pg_ctl` run as the `postgres` user
//! (they refuse root) in a directory under /tmp, listening on a Unix socket in that directory
//! only. Stopped (`-m immediate`) and removed on drop: no server outlives its test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian puts the server binaries and tools kept out of PATH (pg_receivewal, pg_ctl).
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
}

/// Runs a command as the `postgres` user (the server refuses root).
pub fn as_postgres(args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .expect("runuser")
}

/// Panics with the command's output unless it succeeded.
pub fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_with("")
    }

    /// A server whose postgresql.conf ends with `conf` (settings that need a restart, such as
    /// `archive_mode`).
    pub fn start_with(conf: &str) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("tierback-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        check(
            "chown",
            Command::new("chown")
                .args(["postgres:postgres", dir.path().to_str().unwrap()])
                .output()
                .unwrap(),
        );
        let data = dir.path().join("data");
        let data_s = data.to_str().unwrap();
        check(
            "initdb",
            as_postgres(&[
                &format!("{BIN}/initdb"),
                "-D",
                data_s,
                "--auth=trust",
                "-U",
                "postgres",
                "--no-sync",
            ]),
        );
        let settings = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&settings).unwrap();
        text.push_str(conf);
        std::fs::write(&settings, text).unwrap();
        // A port derived from the pid keeps parallel test binaries apart; the socket lives in
        // the temp dir so nothing else on the machine is touched.
        let port = 20000 + (std::process::id() % 20000) as u16;
        let opts = format!(
            "-c listen_addresses='' -k {} -p {port} -c fsync=off -c full_page_writes=off",
            dir.path().display()
        );
        check(
            "pg_ctl start",
            as_postgres(&[
                &format!("{BIN}/pg_ctl"),
                "-D",
                data_s,
                "-o",
                &opts,
                "-l",
                dir.path().join("log").to_str().unwrap(),
                "-w",
                "start",
            ]),
        );
        PgServer { dir, port }
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `psql` against `db` as the postgres superuser, stopping at the first error.
    pub fn psql(&self, db: &str, args: &[&str]) -> Output {
        Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"])
            .args(["-h", self.socket_dir().to_str().unwrap()])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(args)
            .output()
            .expect("psql")
    }

    /// One value from a query.
    pub fn query(&self, db: &str, sql: &str) -> String {
        let out = check("psql", self.psql(db, &["-c", sql]));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The `pg_dump` argv that dumps `db` (for a `command` source).
    pub fn pg_dump_argv(&self, db: &str) -> Vec<String> {
        vec![
            "pg_dump".into(),
            "-h".into(),
            self.socket_dir().display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
            db.into(),
        ]
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_postgres(&[
            &format!("{BIN}/pg_ctl"),
            "-D",
            self.data_dir().to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ]);
    }
}
