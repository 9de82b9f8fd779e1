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

/// An `rclone` wrapper script that logs every argv to a file, then runs the real rclone.
/// Returns (wrapper path, log path).
pub fn logging_rclone(dir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("rclone-argv.log");
    let script = dir.join("rclone-wrapper.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\nexec rclone \"$@\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    make_executable(&script);
    (script, log)
}

/// An `rclone` whose `serve http` remote-control API corrupts every upload: a proxy in front of
/// the real API rewrites each `operations/copyfile` to copy other bytes than asked, as a bad
/// transfer would. Everything else is passed through (and `core/pid` answers with the proxy's
/// pid, the process tierback started).
pub fn corrupting_rclone(dir: &Path) -> PathBuf {
    let script = dir.join("rclone-corrupting.py");
    std::fs::write(
        &script,
        CORRUPTING_RCLONE.replace("@DIR@", &dir.display().to_string()),
    )
    .unwrap();
    make_executable(&script);
    script
}

const CORRUPTING_RCLONE: &str = r#"#!/usr/bin/env python3
import ctypes, json, os, signal, socket, subprocess, sys, threading, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = "@DIR@"
args = sys.argv[1:]
if args[:2] != ["serve", "http"]:
    os.execvp("rclone", ["rclone"] + args)
i = args.index("--rc-addr")
port = int(args[i + 1].rsplit(":", 1)[1])
s = socket.socket(); s.bind(("127.0.0.1", 0)); real = s.getsockname()[1]; s.close()
args[i + 1] = "127.0.0.1:%d" % real
with open(os.path.join(DIR, "bogus"), "w") as f:
    f.write("not the source")
die_with_parent = lambda: ctypes.CDLL(None).prctl(1, signal.SIGKILL)
child = subprocess.Popen(["rclone"] + args, preexec_fn=die_with_parent)
signal.signal(signal.SIGTERM, lambda *_: (child.kill(), os._exit(0)))

class Proxy(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/core/pid":
            return self.answer(200, json.dumps({"pid": os.getpid()}).encode())
        if self.path == "/operations/copyfile":
            j = json.loads(body)
            j["srcFs"], j["srcRemote"] = ":local:" + DIR, "bogus"
            body = json.dumps(j).encode()
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (real, self.path), data=body, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                self.answer(r.status, r.read())
        except urllib.error.HTTPError as e:
            self.answer(e.code, e.read())
        except OSError as e:
            self.answer(503, json.dumps({"error": str(e)}).encode())

    def answer(self, code, data):
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass

server = ThreadingHTTPServer(("127.0.0.1", port), Proxy)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.exit(child.wait())
"#;

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
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
