//! The `qdrant`, `vault` and `n8n` drivers. Their servers cannot be installed on the test
//! machines, so these tests run against STAND-INS (`tests/standins/http_apis.py`) that follow the
//! published HTTP APIs for the calls tierback makes: the same paths, auth headers, status codes
//! and JSON shapes, not the real servers. What is checked: the stored bytes are exactly what the
//! API served, announced checksums are enforced, server-side snapshots are cleaned up, secrets
//! stay out of output and catalog, bad credentials store nothing, and `restore-test` checks
//! what it can without touching the live server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tierback_tests::Env;

/// A running stand-in; killed on drop.
struct StandIn {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl StandIn {
    fn start(kind: &str, dir: &Path, key: &str, fault: Option<&str>) -> StandIn {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins/http_apis.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(kind)
            .arg("--dir")
            .arg(dir)
            .args(["--key", key])
            .stdout(Stdio::piped());
        if let Some(f) = fault {
            cmd.args(["--fault", f]);
        }
        let mut child = cmd.spawn().expect("python3 runs the stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the stand-in prints its port");
        StandIn {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn served(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("served").join(name)).expect("the stand-in served it")
    }

    fn served_names(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("served"))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn get(&self, path: &str, header: &str) -> String {
        let out = Command::new("curl")
            .args(["-s", "-H", header])
            .arg(format!("{}{path}", self.url()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file the test's tierback wrote (catalog, logs, tier files and sidecars), concatenated.
fn everything_written(env: &Env) -> Vec<u8> {
    fn walk(dir: &Path, all: &mut Vec<u8>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, all);
            } else {
                all.extend(std::fs::read(p).unwrap());
            }
        }
    }
    let mut all = Vec::new();
    walk(env.path(), &mut all);
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

const QDRANT_KEY: &str = "qdrant-key-7f3a9";

fn qdrant_env(standin: &StandIn, extra: &str) -> Env {
    Env::new(&format!(
        "[services.qdrant]\ndriver = \"qdrant\"\nurl = \"{}\"\napi_key = \"env:QDRANT_KEY\"\n{extra}",
        standin.url()
    ))
}

#[test]
fn qdrant_collection_and_full_snapshots_are_stored_verified_and_cleaned_up() {
    let work = tempfile::tempdir().unwrap();
    let q = StandIn::start("qdrant", work.path(), QDRANT_KEY, None);
    let env = qdrant_env(&q, "");
    let out = env.ok_with(&["backup", "qdrant"], &[("QDRANT_KEY", QDRANT_KEY)]);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains(QDRANT_KEY), "the API key leaked: {said}");

    let stored = env.artifacts("qdrant");
    let mut stems: Vec<_> = stored.iter().map(|(s, _, _)| s.as_str()).collect();
    stems.sort();
    assert_eq!(stems, ["documents", "embeddings", "full_cluster"]);
    let served = q.served_names();
    assert_eq!(served.len(), 3, "{served:?}");
    for (stem, path, facts) in &stored {
        let name = served
            .iter()
            .find(|n| {
                n.starts_with(if stem == "full_cluster" {
                    "full-snapshot"
                } else {
                    stem
                })
            })
            .unwrap();
        let bytes = env.ok(&["cat", path]).stdout;
        assert_eq!(
            bytes,
            q.served(name),
            "{path} differs from what Qdrant served"
        );
        assert_eq!(facts["snapshot"], name.as_str());
        assert_eq!(facts["qdrant_version"], "1.12.4");
        if stem == "documents" {
            assert_eq!(facts["points_count"], 1200);
        }
        assert!(path.ends_with(".snapshot"));
    }
    // Every snapshot was deleted on the server after its download.
    let h = format!("api-key: {QDRANT_KEY}");
    for list in [
        "/collections/documents/snapshots",
        "/collections/embeddings/snapshots",
        "/snapshots",
    ] {
        assert!(
            q.get(list, &h).contains("\"result\": []"),
            "{list} still lists a snapshot"
        );
    }
    assert!(
        !contains(&everything_written(&env), QDRANT_KEY),
        "the API key is in the catalog"
    );

    let out = env.ok(&["restore-test", "qdrant"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("readable tar of 2 entries"), "{text}");
    assert!(text.contains("readable tar of 4 entries"), "{text}");
}

#[test]
fn qdrant_named_collections_only_and_a_bad_download_stores_nothing() {
    let work = tempfile::tempdir().unwrap();
    let q = StandIn::start("qdrant", work.path(), QDRANT_KEY, None);
    let env = qdrant_env(&q, "collections = [\"embeddings\"]\nfull = false\n");
    env.ok_with(&["backup", "qdrant"], &[("QDRANT_KEY", QDRANT_KEY)]);
    let stems: Vec<_> = env.artifacts("qdrant").into_iter().map(|a| a.0).collect();
    assert_eq!(stems, ["embeddings"]);

    // A collection the server does not have: the error names it, nothing is stored.
    let env = qdrant_env(&q, "collections = [\"missing\"]\n");
    let out = env.run_with(&["backup", "qdrant"], &[("QDRANT_KEY", QDRANT_KEY)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("qdrant") && err.contains("Collection `missing` doesn't exist"),
        "{err}"
    );
    assert!(env.tier_files().is_empty(), "{:?}", env.tier_files());

    // A wrong key: HTTP 401 named, the key not echoed, nothing stored.
    let env = qdrant_env(&q, "");
    let out = env.run_with(&["backup", "qdrant"], &[("QDRANT_KEY", "wrong-key-123")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") && !err.contains("wrong-key-123"),
        "{err}"
    );
    assert!(env.tier_files().is_empty());

    // A byte changed on the way: the announced SHA-256 catches it; nothing is stored and the
    // snapshot is still deleted on the server.
    let work2 = tempfile::tempdir().unwrap();
    let bad = StandIn::start("qdrant", work2.path(), QDRANT_KEY, Some("corrupt"));
    let env = qdrant_env(&bad, "collections = [\"documents\"]\nfull = false\n");
    let out = env.run_with(&["backup", "qdrant"], &[("QDRANT_KEY", QDRANT_KEY)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("differs from the announced"), "{err}");
    assert!(env.tier_files().is_empty(), "{:?}", env.tier_files());
    let h = format!("api-key: {QDRANT_KEY}");
    assert!(
        bad.get("/collections/documents/snapshots", &h)
            .contains("\"result\": []")
    );

    // The connection drops halfway through the download: the backup fails, nothing is stored,
    // and the abandoned snapshot is still deleted on the server.
    let work3 = tempfile::tempdir().unwrap();
    let cut = StandIn::start("qdrant", work3.path(), QDRANT_KEY, Some("cut"));
    let env = qdrant_env(&cut, "collections = [\"documents\"]\nfull = false\n");
    let out = env.run_with(&["backup", "qdrant"], &[("QDRANT_KEY", QDRANT_KEY)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("service qdrant: GET /collections/documents/snapshots/"),
        "{err}"
    );
    assert!(env.tier_files().is_empty(), "{:?}", env.tier_files());
    assert!(
        cut.get("/collections/documents/snapshots", &h)
            .contains("\"result\": []")
    );
}

const VAULT_TOKEN: &str = "hvs.standin-token-51c2";

#[test]
fn vault_raft_snapshot_is_stored_and_its_sums_checked_by_restore_test() {
    let work = tempfile::tempdir().unwrap();
    let v = StandIn::start("vault", work.path(), VAULT_TOKEN, None);
    let token_file = work.path().join("token");
    std::fs::write(&token_file, format!("{VAULT_TOKEN}\n")).unwrap();
    let env = Env::new(&format!(
        "[services.vault]\ndriver = \"vault\"\nurl = \"{}\"\ntoken = \"file:{}\"\n",
        v.url(),
        token_file.display()
    ));
    let out = env.ok(&["backup", "vault"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(VAULT_TOKEN));
    let stored = env.artifacts("vault");
    assert_eq!(stored.len(), 1);
    let (stem, path, _) = &stored[0];
    assert_eq!(stem, "snapshot");
    assert!(path.ends_with(".raft"), "{path}");
    assert_eq!(env.ok(&["cat", path]).stdout, v.served("snapshot.raft"));
    assert!(!contains(&everything_written(&env), VAULT_TOKEN));

    let out = env.ok(&["restore-test", "vault"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SHA256SUMS match") && text.contains("state.bin: OK"),
        "{text}"
    );

    // A snapshot whose SHA256SUMS do not match its state: stored (it is what Vault sent), but
    // the restore test fails and says which file.
    let work2 = tempfile::tempdir().unwrap();
    let bad = StandIn::start("vault", work2.path(), VAULT_TOKEN, Some("bad-sums"));
    env.write_config(&format!(
        "[services.vault]\ndriver = \"vault\"\nurl = \"{}\"\ntoken = \"file:{}\"\n",
        bad.url(),
        token_file.display()
    ));
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a new HHMMSS name
    env.ok(&["backup", "vault"]);
    let out = env.run(&["restore-test", "vault"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("state.bin: FAILED"), "{text}");

    // A snapshot Vault failed midway through (HTTP 200, no sealed sums): refused, not stored.
    let work3 = tempfile::tempdir().unwrap();
    let midstream = StandIn::start("vault", work3.path(), VAULT_TOKEN, Some("midstream"));
    env.write_config(&format!(
        "[services.vault]\ndriver = \"vault\"\nurl = \"{}\"\ntoken = \"file:{}\"\n",
        midstream.url(),
        token_file.display()
    ));
    let before = env.tier_files();
    let out = env.run(&["backup", "vault"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("incomplete (no SHA256SUMS.sealed)"), "{err}");
    assert_eq!(env.tier_files(), before);

    // A wrong token: Vault's 403 is named; the token never appears.
    std::fs::write(&token_file, "hvs.wrong\n").unwrap();
    let out = env.run(&["backup", "vault"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403") && err.contains("permission denied") && !err.contains("hvs.wrong"),
        "{err}"
    );
}

#[test]
fn n8n_workflows_are_exported_across_pages_with_a_key_from_vault() {
    let work = tempfile::tempdir().unwrap();
    let n8n_key = "n8n-api-key-0c9d";
    let n = StandIn::start("n8n", work.path(), n8n_key, None);
    // The API key itself comes from Vault's KV store (the stand-in's KV v2 API).
    let vdir = work.path().join("vault");
    std::fs::create_dir(&vdir).unwrap();
    std::fs::write(
        vdir.join("kv.json"),
        format!("{{\"zentoria/backup/n8n\": {{\"api_key\": \"{n8n_key}\"}}}}"),
    )
    .unwrap();
    let v = StandIn::start("vault", &vdir, VAULT_TOKEN, None);
    let env = Env::new(&format!(
        "[services.n8n]\ndriver = \"n8n\"\nurl = \"{}\"\napi_key = \"vault:secret/zentoria/backup/n8n#api_key\"\n",
        n.url()
    ));
    let vars = [
        ("VAULT_ADDR", v.url()),
        ("VAULT_TOKEN", VAULT_TOKEN.to_owned()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = env.ok_with(&["backup", "n8n"], &vars);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(n8n_key));

    let stored = env.artifacts("n8n");
    let (stem, path, facts) = &stored[0];
    assert_eq!(stem, "workflows");
    assert_eq!(facts["workflow_count"], 7);
    assert_eq!(facts["active_workflows"], 4);
    let export: serde_json::Value = serde_json::from_slice(&env.ok(&["cat", path]).stdout).unwrap();
    let served: serde_json::Value = serde_json::from_slice(&n.served("workflows.json")).unwrap();
    assert_eq!(
        export, served,
        "the export is every workflow of every page, in order"
    );
    let log = std::fs::read_to_string(work.path().join("requests.log")).unwrap();
    assert_eq!(
        log.matches("/api/v1/workflows").count(),
        3,
        "three pages: {log}"
    );
    assert!(!contains(&everything_written(&env), n8n_key));

    let out = env.ok(&["restore-test", "n8n"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("7 workflows, as recorded"));

    // A key Vault does not hold: the reference is named, not a value.
    env.write_config(&format!(
        "[services.n8n]\ndriver = \"n8n\"\nurl = \"{}\"\napi_key = \"vault:secret/zentoria/backup/none#api_key\"\n",
        n.url()
    ));
    let out = env.run_with(&["backup", "n8n"], &vars);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vault:secret/zentoria/backup/none#api_key") && err.contains("no such secret"),
        "{err}"
    );
}

#[test]
fn http_driver_config_errors_name_the_key_and_line() {
    let env = Env::new("[services.v]\ndriver = \"vault\"\nurl = \"http://127.0.0.1:1\"\n");
    let err = String::from_utf8_lossy(&env.run(&["list"]).stderr).into_owned();
    assert!(err.contains("driver \"vault\" needs `token`"), "{err}");
    let env = Env::new("[services.q]\ndriver = \"qdrant\"\nurl = \"127.0.0.1:6333\"\n");
    let err = String::from_utf8_lossy(&env.run(&["list"]).stderr).into_owned();
    assert!(
        err.contains("is not an http:// or https:// URL") && err.contains("line"),
        "{err}"
    );
    let env = Env::new(
        "[services.q]\ndriver = \"qdrant\"\nurl = \"http://admin:hunter2@127.0.0.1:6333\"\n",
    );
    let err = String::from_utf8_lossy(&env.run(&["list"]).stderr).into_owned();
    assert!(
        err.contains("without user") && !err.contains("hunter2"),
        "{err}"
    );
    let env = Env::new("[services.n]\ndriver = \"n8n\"\napi_key = \"x\"\ncollections = [\"a\"]\n");
    let err = String::from_utf8_lossy(&env.run(&["list"]).stderr).into_owned();
    assert!(
        err.contains("`collections` does not apply to driver \"n8n\""),
        "{err}"
    );
}
