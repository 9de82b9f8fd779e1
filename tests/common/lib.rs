//! Helpers shared by the integration tests: find the real `tierback` binary, give each test its
//! own directory, config and catalog, run commands and check their outcome.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `tierback` binary cargo built beside the test executable (or `TIERBACK_BIN`, to keep a
/// long test on one binary while the workspace is rebuilt).
pub fn tierback_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TIERBACK_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/tierback
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("tierback");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --workspace` first (make test does)",
        bin.display()
    );
    bin
}

/// A scratch installation: a temp directory with a config, a catalog and a local tier.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// `services` is TOML appended after the catalog and local tier sections.
    pub fn new(services: &str) -> Env {
        // Under /tmp so that unprivileged helpers (the postgres user) can traverse it.
        let dir = tempfile::Builder::new()
            .prefix("tierback-test-")
            .tempdir_in("/tmp")
            .unwrap();
        let env = Env { dir };
        env.write_config(services);
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("tierback.toml")
    }

    pub fn local_tier(&self) -> PathBuf {
        self.path().join("tiers/local")
    }

    pub fn write_config(&self, services: &str) {
        let text = format!(
            "[catalog]\npath = \"{}/catalog.db\"\n\n[tiers.local]\ntype = \"local\"\npath = \"{}\"\n\n{services}\n",
            self.path().display(),
            self.local_tier().display()
        );
        std::fs::write(self.config(), text).unwrap();
    }

    /// A `tierback` command with this config.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tierback_bin());
        c.arg("--config").arg(self.config()).args(args);
        c
    }

    /// Runs `tierback ARGS`; returns the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// Runs `tierback ARGS` with `vars` added to its environment (secrets given by reference).
    pub fn run_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        self.cmd(args)
            .envs(vars.iter().copied())
            .output()
            .expect("run tierback")
    }

    /// Runs `tierback ARGS` and panics with its stderr unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        self.ok_with(args, &[])
    }

    /// [`Env::ok`] with `vars` added to the environment.
    pub fn ok_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let out = self.run_with(args, vars);
        assert!(
            out.status.success(),
            "tierback {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn list_json(&self) -> Vec<serde_json::Value> {
        serde_json::from_slice(&self.ok(&["list", "--json"]).stdout).expect("list --json is JSON")
    }

    /// (file stem, view path on the local tier, facts) of every stored artifact of `service`.
    pub fn artifacts(&self, service: &str) -> Vec<(String, String, serde_json::Value)> {
        self.list_json()
            .into_iter()
            .filter(|a| a["service"] == service)
            .map(|a| {
                let key = a["key"].as_str().unwrap();
                let date = key.split('/').nth(1).unwrap();
                let file = a["file"].as_str().unwrap().to_owned();
                let stem = file.rsplit_once('_').unwrap().0.to_owned();
                let path = format!("{service}/local/{date}/{file}");
                (stem, path, a["facts"].clone())
            })
            .collect()
    }

    /// The view path (`service/tier/date/file`) of the newest artifact of `service`.
    pub fn newest_path(&self, service: &str, tier: &str) -> String {
        let list = self.list_json();
        let a = list
            .iter()
            .find(|a| a["service"] == service)
            .unwrap_or_else(|| panic!("no backup of {service}"));
        let key = a["key"].as_str().unwrap();
        let date = key.split('/').nth(1).unwrap();
        format!("{service}/{tier}/{date}/{}", a["file"].as_str().unwrap())
    }

    /// Every regular file under the local tier, relative to it, hidden staging excluded.
    pub fn tier_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.local_tier(), &self.local_tier(), &mut out);
        out.sort();
        out
    }
}

/// Every file under `dir` (recursively), as full paths; none if `dir` is missing.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(Path::new(""), dir, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// Deterministic pg_dump-like text (the same generator as `cli/examples/gen_sql.rs`, simplified).
pub fn sql_dump(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    let mut out = Vec::with_capacity(size + 256);
    out.extend_from_slice(b"COPY public.orders (id, customer, amount, note) FROM stdin;\n");
    let words = [
        "alpha", "zentoria", "order", "paid", "refund", "shipped", "queue", "vector", "main",
    ];
    let mut id = 0u64;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        id += 1;
        let line = format!(
            "{id}\t{} {}\t{}.{:02}\t{}\n",
            words[(x % 9) as usize],
            words[((x >> 8) % 9) as usize],
            (x >> 16) % 100_000,
            (x >> 40) % 100,
            words[((x >> 24) % 9) as usize]
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(size);
    out
}

/// Runs a shell command line, returning its output.
pub fn sh(script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh")
}

/// Walks the gzip members of a tierback artifact by their headers alone (independently of the
/// engine's parser) and returns (member offset, member length, raw length) for each.
pub fn walk_members(gz: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut members = Vec::new();
    let mut off = 0;
    while off < gz.len() {
        let h = &gz[off..];
        assert_eq!(&h[..3], &[0x1f, 0x8b, 8], "gzip magic at {off}");
        assert_eq!(h[3] & 0x04, 0x04, "FEXTRA flag at {off}");
        let xlen = u16::from_le_bytes([h[10], h[11]]) as usize;
        assert_eq!(&h[12..14], b"TB", "tierback subfield id at {off}");
        assert_eq!(
            u16::from_le_bytes([h[14], h[15]]) as usize + 4,
            xlen,
            "subfield length at {off}"
        );
        let member_len = u32::from_le_bytes(h[16..20].try_into().unwrap()) as usize;
        let raw_len = u32::from_le_bytes(h[20..24].try_into().unwrap()) as usize;
        members.push((off, member_len, raw_len));
        off += member_len;
    }
    assert_eq!(off, gz.len(), "members end exactly at the end of the file");
    members
}

pub mod fuse;
pub mod garage;
pub mod pg;
pub mod rclone;
pub mod sim;
pub mod tls;
