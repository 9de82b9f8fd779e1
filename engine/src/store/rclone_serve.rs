//! The rclone tier's long-lived helper: ONE `rclone serve http REMOTE --read-only --rc` on
//! loopback per store. Block reads are HTTP `Range` requests to it, and writes, listings, stats
//! and deletes go to its remote-control API (`operations/copyfile`, `operations/stat`, …), so
//! each costs one local HTTP request (milliseconds, pooled connections, many in flight)
//! instead of one rclone process (~140 ms each, mostly startup, plus a fresh login to the
//! remote).
//!
//! Lifecycle: started on the first read; restarted when it has died; killed and reaped when
//! the store is dropped, and SIGTERMed by the kernel if tierback itself dies (it is started
//! through a [`Spawner`] whose thread lives as long as the store). Like every child it runs
//! under [`crate::process`]'s contract: its stderr drained into a bounded tail, which errors
//! quote.
//!
//! Ports: two free loopback ports are picked by binding port 0 and releasing them; if another
//! program takes one in between, rclone exits with "address already in use" and we retry with
//! fresh ports. Readiness is proven by the remote-control API answering `core/pid` with the pid
//! of *our* child, then the HTTP listener answering with our credentials.
//!
//! Access: both listeners require a random user and password generated per process and given
//! to rclone through `RCLONE_USER`/`RCLONE_PASS`/`RCLONE_RC_USER`/`RCLONE_RC_PASS` (its
//! environment, never argv), so other local users cannot read the (decrypted) backups through
//! the port.
//!
//! Caching: the VFS behind `serve http` caches directory listings (`--dir-cache-time`, 5 min),
//! so it would not see an object uploaded after it listed the directory. The store calls
//! [`ServeHttp::invalidate`] after each of its own writes, and a read that finds nothing (404)
//! or a shorter object than expected (a replaced object) first flushes the cache through
//! `vfs/forget` and asks once more, which covers uploads by other tierback processes.

use std::io::Read;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_types::base64;

use super::rclone_cmd::{Rclone, classify_text};
use crate::process::{Running, Spawner, Tail};
use crate::{Error, Result};

/// Attempts at starting the server when a picked port was taken in the meantime.
const START_ATTEMPTS: usize = 3;
/// Pause between readiness probes: rclone is usually up within ~100 ms.
const PROBE_PAUSE: Duration = Duration::from_millis(20);
/// User name for the loopback listeners (the password is what protects them).
const USER: &str = "tierback";
/// The largest remote-control answer read: a recursive listing of a year of backups is a few
/// MiB; anything far beyond is not rclone.
const RC_ANSWER_LIMIT: u64 = 256 << 20;

pub struct ServeHttp {
    rclone: Rclone,
    remote: String,
    agent: ureq::Agent,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    server: Option<Server>,
    spawner: Option<Spawner>,
}

/// A running `rclone serve http`.
struct Server {
    child: Running,
    endpoint: Arc<Endpoint>,
}

/// Where and how to reach a running server (cloned out of the lock for each request).
struct Endpoint {
    pid: u32,
    base: String,
    rc: String,
    auth: String,
    rc_auth: String,
    tail: Tail,
}

/// What one ranged GET found.
enum Fetch {
    Bytes(Vec<u8>),
    Missing,
    /// The object is shorter than `offset + len` (total size if the server said).
    Short(Option<u64>),
}

impl ServeHttp {
    pub fn new(rclone: Rclone, remote: String) -> ServeHttp {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(rclone.timeout))
            .http_status_as_error(false)
            // Loopback only: an HTTP(S)_PROXY in the environment must not capture it.
            .proxy(None)
            // Parallel block readers and read-ahead keep several requests in flight.
            .max_idle_connections_per_host(32)
            .build()
            .new_agent();
        ServeHttp {
            rclone,
            remote,
            agent,
            state: Mutex::new(State::default()),
        }
    }

    /// Reads `len` bytes at `offset` of `key`; see [`crate::store::Store::get_range`].
    pub fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut retried = false;
        loop {
            let ep = self.endpoint()?;
            let outcome = self.fetch(&ep, key, offset, len);
            // One more try after anything but success or a timeout (a dead remote must cost
            // one timeout, not two): either the server died (start another), or its cached
            // listing is stale because another process wrote or deleted (flush it). A stale
            // entry for a deleted file shows as a dropped connection, not a 404.
            let retry = !retried
                && match &outcome {
                    Ok(Fetch::Bytes(_)) => false,
                    Ok(_) => true,
                    Err(e) => !is_timeout(e),
                };
            if retry {
                retried = true;
                if self.reap_if_dead() {
                    tracing::warn!(tier = %self.rclone.tier, "rclone serve http died; restarting it");
                } else {
                    self.forget(&ep)?;
                }
                continue;
            }
            return match outcome? {
                Fetch::Bytes(b) => Ok(b),
                Fetch::Missing => Err(Error::NotFound {
                    tier: self.rclone.tier.clone(),
                    key: key.to_owned(),
                }),
                Fetch::Short(total) => Err(Error::Invalid(format!(
                    "tier {}: {key}: range {offset}+{len} is past the end of the object{}",
                    self.rclone.tier,
                    total.map(|t| format!(" ({t} bytes)")).unwrap_or_default()
                ))),
            };
        }
    }

    /// Calls `command` of the remote-control API with a JSON `input`, within `timeout`. Its
    /// answer, or `None` when rclone says the object or directory is not there (HTTP 404).
    /// A server that died is restarted and asked once more.
    pub fn rc(
        &self,
        command: &str,
        input: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Option<serde_json::Value>> {
        let mut retried = false;
        loop {
            let ep = self.endpoint()?;
            let what = format!("rc {command}");
            let sent = self
                .agent
                .post(format!("{}/{command}", ep.rc))
                .config()
                .timeout_global(Some(timeout))
                .build()
                .header("Authorization", &ep.rc_auth)
                .header("Content-Type", "application/json")
                .send(input.to_string());
            let mut resp = match sent {
                Ok(r) => r,
                Err(e)
                    if !retried && !matches!(e, ureq::Error::Timeout(_)) && self.reap_if_dead() =>
                {
                    tracing::warn!(tier = %self.rclone.tier, "rclone serve http died; restarting it");
                    retried = true;
                    continue;
                }
                Err(e) => return Err(self.http_error(&what, &ep, e)),
            };
            let status = resp.status().as_u16();
            let body = resp
                .body_mut()
                .with_config()
                .limit(RC_ANSWER_LIMIT)
                .read_to_vec()
                .map_err(|e| self.http_error(&what, &ep, e))?;
            if status == 404 {
                return Ok(None);
            }
            let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                self.rclone.failed(
                    &what,
                    std::io::ErrorKind::InvalidData,
                    format!("HTTP {status}, not JSON: {e}"),
                    &ep.tail.text(),
                )
            })?;
            if status != 200 {
                // rclone's own words, e.g. "couldn't connect: … connection refused".
                let message = answer["error"]
                    .as_str()
                    .map_or_else(|| format!("HTTP {status}"), str::to_owned);
                let kind = classify_text(&message).unwrap_or(std::io::ErrorKind::Other);
                return Err(self.rclone.failed(&what, kind, message, &ep.tail.text()));
            }
            return Ok(Some(answer));
        }
    }

    /// Flushes the server's cached listings after a write through this store (no-op when no
    /// server runs). If that fails the server is stopped, so the next read starts a fresh one.
    pub fn invalidate(&self) {
        let ep = {
            let state = self.lock();
            match &state.server {
                Some(s) => Arc::clone(&s.endpoint),
                None => return,
            }
        };
        if let Err(e) = self.forget(&ep) {
            tracing::warn!(tier = %self.rclone.tier, error = %e, "cannot flush rclone's cache; restarting it on the next read");
            self.lock().server = None;
        }
    }

    /// The pid of the running server, if any (for tests and `status`).
    pub fn pid(&self) -> Option<u32> {
        self.lock().server.as_ref().map(|s| s.endpoint.pid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running server's endpoint, starting the server if none runs or it has exited.
    /// Starting happens under the lock, so concurrent first readers wait for one server.
    fn endpoint(&self) -> Result<Arc<Endpoint>> {
        let mut state = self.lock();
        if let Some(s) = &mut state.server {
            if s.child.is_running() {
                return Ok(Arc::clone(&s.endpoint));
            }
            tracing::warn!(tier = %self.rclone.tier, stderr = %s.child.tail().text(), "rclone serve http exited; restarting it");
            state.server = None;
        }
        let server = self.start(&mut state)?;
        let ep = Arc::clone(&server.endpoint);
        state.server = Some(server);
        Ok(ep)
    }

    /// True (and forgets the server) if it is no longer running.
    fn reap_if_dead(&self) -> bool {
        let mut state = self.lock();
        let dead = match &mut state.server {
            Some(s) => !s.child.is_running(),
            None => true,
        };
        if dead {
            state.server = None;
        }
        dead
    }

    fn start(&self, state: &mut State) -> Result<Server> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match self.start_once(state)? {
                Ok(server) => return Ok(server),
                Err((tail, error)) if tail.contains("address already in use") => last = Some(error),
                Err((_, error)) => return Err(error),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// One attempt; the inner error carries the stderr tail so the caller can retry port
    /// collisions.
    #[allow(clippy::type_complexity)]
    fn start_once(
        &self,
        state: &mut State,
    ) -> Result<std::result::Result<Server, (String, Error)>> {
        let (port, rc_port) = free_ports().map_err(|e| {
            Error::io(
                format!("tier {}: picking loopback ports", self.rclone.tier),
                e,
            )
        })?;
        let pass = random_token()?;
        let rc_pass = random_token()?;
        let args: Vec<std::ffi::OsString> = [
            "serve".to_owned(),
            "http".to_owned(),
            self.remote.clone(),
            "--addr".to_owned(),
            format!("127.0.0.1:{port}"),
            "--read-only".to_owned(),
            // The remote-control API: operations (writes, listings, deletes), `vfs/forget`
            // and the readiness probe.
            "--rc".to_owned(),
            "--rc-addr".to_owned(),
            format!("127.0.0.1:{rc_port}"),
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        let mut cmd = self.rclone.command(&args);
        cmd.env("RCLONE_USER", USER)
            .env("RCLONE_PASS", &pass)
            .env("RCLONE_RC_USER", USER)
            .env("RCLONE_RC_PASS", &rc_pass)
            .stdout(Stdio::null());
        let spawner = state
            .spawner
            .get_or_insert_with(|| Spawner::new("rclone-spawner"));
        let child = spawner.spawn(cmd).map_err(|e| {
            Error::io(
                format!(
                    "tier {}: cannot start rclone ({})",
                    self.rclone.tier,
                    self.rclone.binary.display()
                ),
                e,
            )
        })?;
        self.rclone.spawned.fetch_add(1, Ordering::Relaxed);
        let endpoint = Arc::new(Endpoint {
            pid: child.pid(),
            base: format!("http://127.0.0.1:{port}"),
            rc: format!("http://127.0.0.1:{rc_port}"),
            auth: basic_auth(USER, &pass),
            rc_auth: basic_auth(USER, &rc_pass),
            tail: child.tail().clone(),
        });
        let mut server = Server { child, endpoint };
        match self.wait_ready(&mut server) {
            Ok(()) => Ok(Ok(server)),
            Err(kind) => {
                let tail = server.child.stop();
                let message = match kind {
                    std::io::ErrorKind::TimedOut => format!(
                        "serve http did not become ready within {} s",
                        self.rclone.timeout.as_secs()
                    ),
                    _ => "serve http exited at startup".to_owned(),
                };
                // Its own words say best why it stopped (e.g. "connection refused").
                let kind = classify_text(&tail).unwrap_or(kind);
                let error = self.rclone.failed("serve http", kind, message, &tail);
                Ok(Err((tail, error)))
            }
        }
    }

    /// Waits until the server answers as ours, or it exits (`Other`), or the timeout passes.
    fn wait_ready(&self, server: &mut Server) -> std::result::Result<(), std::io::ErrorKind> {
        let start = Instant::now();
        let ep = Arc::clone(&server.endpoint);
        while start.elapsed() < self.rclone.timeout {
            if !server.child.is_running() {
                return Err(std::io::ErrorKind::Other);
            }
            if self.rc_pid(&ep) == Some(ep.pid) && self.http_answers(&ep) {
                return Ok(());
            }
            std::thread::sleep(PROBE_PAUSE);
        }
        Err(std::io::ErrorKind::TimedOut)
    }

    /// The pid the remote-control API reports (proves the port is held by our child).
    fn rc_pid(&self, ep: &Endpoint) -> Option<u32> {
        let mut resp = self
            .agent
            .post(format!("{}/core/pid", ep.rc))
            .header("Authorization", &ep.rc_auth)
            .send_empty()
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        let body = resp.body_mut().read_to_vec().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
    }

    fn http_answers(&self, ep: &Endpoint) -> bool {
        self.agent
            .head(format!("{}/", ep.base))
            .header("Authorization", &ep.auth)
            .call()
            .is_ok_and(|r| r.status() != 401)
    }

    /// Drops every cached listing of the server.
    fn forget(&self, ep: &Endpoint) -> Result<()> {
        let resp = self
            .agent
            .post(format!("{}/vfs/forget", ep.rc))
            .header("Authorization", &ep.rc_auth)
            .send_empty()
            .map_err(|e| self.http_error("vfs/forget", ep, e))?;
        if resp.status() != 200 {
            return Err(self.rclone.failed(
                "rc vfs/forget",
                std::io::ErrorKind::Other,
                format!("HTTP {}", resp.status()),
                &ep.tail.text(),
            ));
        }
        Ok(())
    }

    fn fetch(&self, ep: &Endpoint, key: &str, offset: u64, len: u64) -> Result<Fetch> {
        let url = format!("{}/{}", ep.base, encode_path(key));
        let what = || format!("GET {key} [{offset}+{len}]");
        if len == 0 {
            return self.probe_size(ep, &url, key, offset);
        }
        let end = offset
            .checked_add(len - 1)
            .ok_or_else(|| Error::Invalid(format!("range {offset}+{len} overflows")))?;
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &ep.auth)
            .header("Range", format!("bytes={offset}-{end}"))
            .call()
            .map_err(|e| self.http_error(&what(), ep, e))?;
        match resp.status().as_u16() {
            206 => {}
            404 => return Ok(Fetch::Missing),
            416 => return Ok(Fetch::Short(total_from_content_range(&resp))),
            status => {
                return Err(self.rclone.failed(
                    &what(),
                    std::io::ErrorKind::Other,
                    format!("serve http answered HTTP {status} (expected 206)"),
                    &ep.tail.text(),
                ));
            }
        }
        let total = total_from_content_range(&resp);
        let body = resp
            .body_mut()
            .with_config()
            .limit(len + 1)
            .read_to_vec()
            .map_err(|e| self.http_error(&what(), ep, e))?;
        if body.len() as u64 != len {
            // Go's file server clips a range that runs past the end.
            return Ok(Fetch::Short(total));
        }
        Ok(Fetch::Bytes(body))
    }

    /// A zero-length read: only whether the object exists and `offset` is within it.
    fn probe_size(&self, ep: &Endpoint, url: &str, key: &str, offset: u64) -> Result<Fetch> {
        let resp = self
            .agent
            .head(url)
            .header("Authorization", &ep.auth)
            .call()
            .map_err(|e| self.http_error(&format!("HEAD {key}"), ep, e))?;
        match resp.status().as_u16() {
            404 => Ok(Fetch::Missing),
            200 => {
                let size = resp
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                match size {
                    Some(s) if offset <= s => Ok(Fetch::Bytes(Vec::new())),
                    _ => Ok(Fetch::Short(size)),
                }
            }
            status => Err(self.rclone.failed(
                &format!("HEAD {key}"),
                std::io::ErrorKind::Other,
                format!("serve http answered HTTP {status}"),
                &ep.tail.text(),
            )),
        }
    }

    /// A transport error as an `Error::Io` whose kind keeps timeouts and refused/reset
    /// connections transient, with the server's stderr tail for the cause.
    fn http_error(&self, what: &str, ep: &Endpoint, e: ureq::Error) -> Error {
        use std::io::ErrorKind;
        let kind = match &e {
            ureq::Error::Timeout(_) => ErrorKind::TimedOut,
            ureq::Error::Io(io) => io.kind(),
            ureq::Error::ConnectionFailed => ErrorKind::ConnectionRefused,
            _ => ErrorKind::Other,
        };
        self.rclone
            .failed(what, kind, e.to_string(), &ep.tail.text())
    }
}

impl Drop for ServeHttp {
    fn drop(&mut self) {
        let mut state = self.lock();
        // Kill and reap the server before its spawner thread goes (the thread's end would
        // SIGTERM it anyway); the reap makes "gone after drop" hold when drop returns.
        state.server = None;
        state.spawner = None;
    }
}

fn is_timeout(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut)
}

/// Two distinct free loopback ports.
fn free_ports() -> std::io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// 128 random bits as hex, from the kernel.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("reading /dev/urandom", e))?;
    Ok(hex::encode(bytes))
}

fn basic_auth(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::encode(format!("{user}:{pass}").as_bytes())
    )
}

/// Percent-encodes each byte of a key outside RFC 3986's unreserved set, keeping `/`.
fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The total size from a `Content-Range: bytes a-b/total` (or `bytes */total`) header.
fn total_from_content_range(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    resp.headers()
        .get("content-range")?
        .to_str()
        .ok()?
        .rsplit('/')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_encoded_per_byte() {
        assert_eq!(
            encode_path("svc/2026-01-16/a b%#?ü.gz"),
            "svc/2026-01-16/a%20b%25%23%3F%C3%BC.gz"
        );
    }
}
