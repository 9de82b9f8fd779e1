//! rclone remotes for tests, defined purely through `RCLONE_CONFIG_<NAME>_*` environment
//! variables (no config file): a `local` remote over a temp directory, a `crypt` remote over
//! another one with a password obscured by `rclone obscure` (fed on stdin, never argv), and
//! remotes that fail (refused connection, a server that never answers, an unknown name).
//!
//! The variables are returned, not set in the test process: pass them to
//! `RcloneStore::open_with_env` or to a `tierback` command's environment.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The crypt remote's password in clear, so tests can look for it where it must not be.
pub const CRYPT_PASSWORD: &str = "correct-horse-battery-staple-7731";

/// A pair of private remotes: `local` over `plain_dir()`, `crypt` over `crypt_dir()`.
pub struct Remotes {
    pub dir: tempfile::TempDir,
    /// Environment defining both remotes.
    pub env: Vec<(String, String)>,
    /// `NAME:/path` of the local remote's directory.
    pub local: String,
    /// `NAME:` of the crypt remote.
    pub crypt: String,
    /// The obscured crypt password, as it appears in the environment.
    pub obscured: String,
}

impl Remotes {
    pub fn new() -> Remotes {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::Builder::new()
            .prefix("tierback-rclone-")
            .tempdir_in("/tmp")
            .unwrap();
        let plain = dir.path().join("plain");
        let backing = dir.path().join("crypt");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::create_dir_all(&backing).unwrap();
        let l = format!("tblocal{n}");
        let c = format!("tbcrypt{n}");
        let obscured = obscure(CRYPT_PASSWORD);
        let up = |name: &str, key: &str| format!("RCLONE_CONFIG_{}_{key}", name.to_uppercase());
        let env = vec![
            (up(&l, "TYPE"), "local".to_owned()),
            (up(&c, "TYPE"), "crypt".to_owned()),
            (up(&c, "REMOTE"), format!("{l}:{}", backing.display())),
            (up(&c, "PASSWORD"), obscured.clone()),
        ];
        Remotes {
            local: format!("{l}:{}", plain.display()),
            crypt: format!("{c}:"),
            dir,
            env,
            obscured,
        }
    }

    pub fn plain_dir(&self) -> PathBuf {
        self.dir.path().join("plain")
    }

    /// Where the crypt remote's ciphertext lives.
    pub fn crypt_dir(&self) -> PathBuf {
        self.dir.path().join("crypt")
    }
}

impl Default for Remotes {
    fn default() -> Self {
        Remotes::new()
    }
}

/// `rclone obscure -`, with the password on stdin.
pub fn obscure(password: &str) -> String {
    let mut child = Command::new("rclone")
        .args(["obscure", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rclone is installed (apt-get install rclone)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "rclone obscure failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A WebDAV remote on a loopback port nobody listens on: every operation is refused.
pub fn refused_remote() -> (String, Vec<(String, String)>) {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    webdav_remote("tbrefused", port)
}

/// A WebDAV remote on a server that accepts connections and never answers: only a timeout
/// ends an operation. The server lives as long as the returned listener guard.
pub fn silent_remote() -> (String, Vec<(String, String)>, SilentServer) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(c) => held.push(c), // keep it open, say nothing
                Err(_) => break,
            }
        }
    });
    let (remote, env) = webdav_remote("tbsilent", port);
    (remote, env, SilentServer)
}

/// Keeps the silent server's thread meaningful to the test (it ends with the test process).
pub struct SilentServer;

fn webdav_remote(prefix: &str, port: u16) -> (String, Vec<(String, String)>) {
    let name = format!("{prefix}{}", COUNTER.fetch_add(1, Ordering::Relaxed));
    let up = |key: &str| format!("RCLONE_CONFIG_{}_{key}", name.to_uppercase());
    (
        format!("{name}:backups"),
        vec![
            (up("TYPE"), "webdav".to_owned()),
            (up("URL"), format!("http://127.0.0.1:{port}/dav")),
        ],
    )
}

/// A wrapper around the real rclone that appends every argv (one line each) to `log`, so tests
/// can inspect every invocation. With `corrupt_uploads`, `copyto` uploads a different file
/// instead of the source, to prove that verification catches a bad upload.
pub fn logging_rclone(dir: &Path, corrupt_uploads: bool) -> (PathBuf, PathBuf) {
    let log = dir.join("rclone-argv.log");
    let script = dir.join("rclone-wrapper.sh");
    let corrupt = if corrupt_uploads {
        format!(
            "if [ \"$1\" = copyto ]; then printf 'not the source' > {dir}/bogus; shift 2; exec rclone copyto {dir}/bogus \"$@\"; fi\n",
            dir = dir.display()
        )
    } else {
        String::new()
    };
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\n{corrupt}exec rclone \"$@\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

/// Pids of running processes whose command line contains `needle` (e.g. a test's private
/// remote name), excluding zombies.
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}
