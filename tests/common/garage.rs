//! Real S3 servers for tests, started on loopback at free ports and stopped on drop:
//! - [`Garage::single_node`]: `garage server --single-node --default-bucket`, one process;
//! - [`GarageCluster::start`]: three Garage nodes, replication factor 3, layout set up with the
//!   `garage` CLI, for fault tests (kill one node: quorum kept; kill two: 503);
//! - [`Moto::start`]: moto server, which has versioning and lifecycle (Garage has neither
//!   versioning nor full lifecycle) but checks no signatures and keeps state in memory.
//!
//! A missing binary is a test failure that says how to install it, never a silent skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Region Garage is configured with (S3 clients must sign for it).
pub const GARAGE_REGION: &str = "garage";

/// How long a server gets to come up before the test fails.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// The `garage` binary: `$GARAGE_BIN`, then `PATH`, then `~/.cargo/bin`.
pub fn garage_bin() -> PathBuf {
    find_bin("GARAGE_BIN", "garage", &[]).unwrap_or_else(|| {
        panic!(
            "the `garage` binary is missing: run scripts/install-deps.sh (it runs \
             `cargo install garage --locked`, ~11 min once) or set GARAGE_BIN"
        )
    })
}

/// The `moto_server` binary: `$MOTO_SERVER`, the venv install-deps.sh creates, then `PATH`.
pub fn moto_bin() -> PathBuf {
    find_bin(
        "MOTO_SERVER",
        "moto_server",
        &[PathBuf::from("/opt/tierback-venv/bin/moto_server")],
    )
    .unwrap_or_else(|| {
        panic!(
            "`moto_server` is missing: run scripts/install-deps.sh (it installs moto[server] \
             into /opt/tierback-venv) or set MOTO_SERVER"
        )
    })
}

fn find_bin(env: &str, name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    candidates.extend(extra.iter().cloned());
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin").join(name));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// `n` hex digits that differ between runs and processes (no rand crate needed).
fn random_hex(n: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(n);
    out
}

/// The status code of `GET path` on 127.0.0.1:port, or None if nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn wait_for(what: &str, child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) during startup:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < STARTUP_LIMIT,
            "{what} not ready after {STARTUP_LIMIT:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill_and_reap(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Sends a signal with kill(1) (the helper library has no libc dependency).
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {}", child.id());
}

/// Credentials and bucket of a test server.
#[derive(Clone, Debug)]
pub struct S3Access {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Access {
    /// A `[tiers.NAME]` TOML section for this server, with literal credentials (fine for a
    /// throw-away test server) and `extra` lines appended.
    pub fn tier_toml(&self, name: &str, extra: &str) -> String {
        format!(
            "[tiers.{name}]\ntype = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\nregion = \"{}\"\n\
             access_key = \"{}\"\nsecret_key = \"{}\"\n{extra}\n",
            self.endpoint, self.bucket, self.region, self.access_key, self.secret_key
        )
    }
}

/// One Garage process and its directory.
struct Node {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    s3_port: u16,
    rpc_port: u16,
    admin_port: u16,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Node {
    fn new(dir: &Path, index: usize, rpc_secret: &str, replication: usize) -> Node {
        let root = dir.join(format!("node{index}"));
        std::fs::create_dir_all(&root).unwrap();
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let config = root.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = {replication}
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{GARAGE_REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
                root = root.display()
            ),
        )
        .unwrap();
        Node {
            child: None,
            log: root.join("garage.log"),
            config,
            s3_port,
            rpc_port,
            admin_port,
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "node already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage");
        self.child = Some(child);
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Runs the `garage` CLI against this node; panics with its output on failure.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run garage CLI");
        assert!(
            out.status.success(),
            "garage {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn try_cli(&self, args: &[&str]) -> bool {
        Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn wait_healthy(&mut self, what: &str) {
        let port = self.admin_port;
        let log = self.log.clone();
        wait_for(what, self.child.as_mut().unwrap(), &log, || {
            http_status(port, "/health") == Some(200)
        });
    }
}

/// `garage server --single-node --default-bucket`: one node, one key, one bucket.
pub struct Garage {
    node: Node,
    pub access: S3Access,
    _dir: tempfile::TempDir,
}

impl Garage {
    pub fn single_node() -> Garage {
        let dir = tempfile::Builder::new()
            .prefix("tierback-garage-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut node = Node::new(dir.path(), 0, &random_hex(64), 1);
        let access = S3Access {
            endpoint: node.endpoint(),
            region: GARAGE_REGION.into(),
            bucket: "tierback-test".into(),
            access_key: format!("GK{}", random_hex(24)),
            secret_key: random_hex(64),
        };
        node.args = vec!["--single-node".into(), "--default-bucket".into()];
        node.env = vec![
            (
                "GARAGE_DEFAULT_ACCESS_KEY".into(),
                access.access_key.clone(),
            ),
            (
                "GARAGE_DEFAULT_SECRET_KEY".into(),
                access.secret_key.clone(),
            ),
            ("GARAGE_DEFAULT_BUCKET".into(), access.bucket.clone()),
        ];
        node.spawn();
        node.wait_healthy("garage (single node)");
        // The default bucket and key are created right after startup: wait until they exist.
        let log = node.log.clone();
        let bucket = access.bucket.clone();
        let probe = Node {
            child: None,
            config: node.config.clone(),
            log: log.clone(),
            s3_port: 0,
            rpc_port: 0,
            admin_port: 0,
            env: vec![],
            args: vec![],
        };
        wait_for(
            "garage default bucket",
            node.child.as_mut().unwrap(),
            &log,
            || probe.try_cli(&["bucket", "info", &bucket]),
        );
        // And until the S3 API itself answers HTTP (an unsigned request gets an error status):
        // requests sent earlier were seen reset on a loaded machine.
        let s3_port = node.s3_port;
        wait_for("garage S3 API", node.child.as_mut().unwrap(), &log, || {
            http_status(s3_port, "/").is_some()
        });
        Garage {
            node,
            access,
            _dir: dir,
        }
    }

    /// Kills the server (SIGKILL): requests then get "connection refused".
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.node.child);
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never answered,
    /// the nastiest kind of dead server.
    pub fn freeze(&self) {
        let child = self.node.child.as_ref().expect("running");
        signal(child, "-STOP");
        // `kill` returns once the signal is sent; a thread of the server can still finish what
        // it was doing. Wait until every thread is stopped, so the test's next request truly
        // meets a frozen server.
        let tasks = format!("/proc/{}/task", child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let all_stopped = std::fs::read_dir(&tasks).unwrap().flatten().all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // The state follows the parenthesised command name.
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().next())
                    == Some("T")
            });
            if all_stopped {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "garage did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn thaw(&self) {
        signal(self.node.child.as_ref().expect("running"), "-CONT");
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.node.log).unwrap_or_default()
    }

    /// Runs the `garage` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        self.node.cli(args)
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        // SIGKILL also ends a frozen (SIGSTOPped) process.
        kill_and_reap(&mut self.node.child);
    }
}

/// Three Garage nodes on loopback with replication factor 3 (writes and reads need 2 of 3).
pub struct GarageCluster {
    nodes: Vec<Node>,
    pub access: S3Access,
    _dir: tempfile::TempDir,
}

impl GarageCluster {
    pub fn start(n: usize) -> GarageCluster {
        let dir = tempfile::Builder::new()
            .prefix("tierback-garage-cluster-")
            .tempdir_in("/tmp")
            .unwrap();
        let secret = random_hex(64);
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| Node::new(dir.path(), i, &secret, n))
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            let log = node.log.clone();
            let rpc = node.rpc_port;
            wait_for(
                &format!("garage node {i}"),
                node.child.as_mut().unwrap(),
                &log,
                || TcpStream::connect(("127.0.0.1", rpc)).is_ok(),
            );
        }
        // Node ids ("<hex>@addr"), then connect node 0 to the others and lay out all three.
        let ids: Vec<String> = nodes
            .iter()
            .map(|n| n.cli(&["node", "id", "-q"]).trim().to_owned())
            .collect();
        // A node accepts TCP on its RPC port a moment before it completes handshakes (CI saw
        // "Handshake error: i/o: unexpected end of file"), so connecting is retried.
        for id in &ids[1..] {
            let start = Instant::now();
            while !nodes[0].try_cli(&["node", "connect", id]) && start.elapsed() < STARTUP_LIMIT {
                std::thread::sleep(Duration::from_millis(200));
            }
            nodes[0].cli(&["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap();
            nodes[0].cli(&[
                "layout",
                "assign",
                "-z",
                &format!("dc{}", i + 1),
                "-c",
                "1G",
                short,
            ]);
        }
        nodes[0].cli(&["layout", "apply", "--version", "1"]);
        for (i, node) in nodes.iter_mut().enumerate() {
            node.wait_healthy(&format!("garage node {i}"));
        }
        let access = S3Access {
            endpoint: nodes[0].endpoint(),
            region: GARAGE_REGION.into(),
            bucket: "tierback-test".into(),
            access_key: format!("GK{}", random_hex(24)),
            secret_key: random_hex(64),
        };
        nodes[0].cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "tierback-test",
            &access.access_key,
            &access.secret_key,
        ]);
        nodes[0].cli(&["bucket", "create", &access.bucket]);
        nodes[0].cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &access.bucket,
            "--key",
            "tierback-test",
        ]);
        GarageCluster {
            nodes,
            access,
            _dir: dir,
        }
    }

    /// The S3 endpoint of node `i` (every node serves the whole cluster).
    pub fn endpoint(&self, i: usize) -> String {
        self.nodes[i].endpoint()
    }

    /// Access through node `i`.
    pub fn access_via(&self, i: usize) -> S3Access {
        S3Access {
            endpoint: self.endpoint(i),
            ..self.access.clone()
        }
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        kill_and_reap(&mut self.nodes[i].child);
    }

    /// Restarts a killed node with its data and waits until its API answers again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].spawn();
        let log = self.nodes[i].log.clone();
        let port = self.nodes[i].s3_port;
        wait_for(
            &format!("garage node {i} (restart)"),
            self.nodes[i].child.as_mut().unwrap(),
            &log,
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
    }

    /// Waits until node `i` reports a healthy cluster (all partitions at quorum).
    pub fn wait_healthy(&mut self, i: usize) {
        self.nodes[i].wait_healthy(&format!("garage node {i}"));
    }

    /// Runs the `garage` CLI against node `i`.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        self.nodes[i].cli(args)
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            kill_and_reap(&mut node.child);
        }
    }
}

/// moto server (in-memory S3 with versioning and lifecycle).
pub struct Moto {
    child: Option<Child>,
    pub access: S3Access,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto; the bucket in `access` does not exist yet (create it through S3 or
    /// `tiers setup`).
    pub fn start() -> Moto {
        let dir = tempfile::Builder::new()
            .prefix("tierback-moto-")
            .tempdir_in("/tmp")
            .unwrap();
        let port = free_port();
        let log = dir.path().join("moto.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start moto_server");
        wait_for("moto_server", &mut child, &log, || {
            http_status(port, "/moto-api/").is_some()
        });
        Moto {
            child: Some(child),
            access: S3Access {
                endpoint: format!("http://127.0.0.1:{port}"),
                region: "us-east-1".into(),
                bucket: "tierback-test".into(),
                access_key: "testing".into(),
                secret_key: "testing".into(),
            },
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}
