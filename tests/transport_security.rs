//! Transport security: TLS with a private CA in front of a real Garage and of the HTTP
//! stand-ins (a TLS-terminating proxy, `tests/standins/tls_proxy.py`, with a CA the real
//! `openssl` made), plain `http://` refused off this machine, server-side encryption on moto,
//! and rclone remote secrets given by reference and handed to rclone in its environment only.

use std::path::Path;

use tierback_tests::Env;
use tierback_tests::garage::{Garage, Moto, moto_bin};
use tierback_tests::rclone::{CRYPT_PASSWORD, Remotes, logging_rclone};
use tierback_tests::tls::{TestCa, TlsProxy};

const SERVICE: &str = "[services.shop]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"seq 1 200000\"]\nextension = \"sql\"\n";

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn upstream(endpoint: &str) -> String {
    endpoint.trim_start_matches("http://").to_owned()
}

#[test]
fn garage_behind_tls_with_a_private_ca_syncs_reads_and_rebuilds() {
    let garage = Garage::single_node();
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    let proxy = TlsProxy::start(&ca, &upstream(&garage.access.endpoint));
    let mut access = garage.access.clone();
    access.endpoint = proxy.url();

    // Without the CA, the public roots do not know the certificate: the error says so.
    let env = Env::new(&format!("{}\n{SERVICE}", access.tier_toml("minio", "")));
    env.ok(&["backup", "shop"]);
    let out = env.run(&["sync"]);
    assert!(!out.status.success(), "sync trusted an unknown CA");
    let said = text(&out);
    assert!(
        said.to_lowercase().contains("certificate") && said.contains("minio"),
        "the error names the certificate problem and the tier:\n{said}"
    );

    // With `ca_file`, sync, reads from the tier and a rebuild from it all go through TLS.
    let ca_line = format!("ca_file = \"{}\"", ca.ca.display());
    env.write_config(&format!(
        "{}\n{SERVICE}",
        access.tier_toml("minio", &ca_line)
    ));
    env.ok(&["sync"]);
    let path = env.newest_path("shop", "minio");
    let expected: Vec<u8> = std::process::Command::new("seq")
        .args(["1", "200000"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(env.ok(&["cat", &path]).stdout, expected);
    env.ok(&["verify", "--tier", "minio"]);
    {
        let mount = tierback_tests::fuse::Mount::start(&env, &[]);
        assert_eq!(std::fs::read(mount.path(&path)).unwrap(), expected);
    }
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(env.path().join(f));
    }
    let out = env.ok(&["catalog", "rebuild", "--from", "minio"]);
    assert!(text(&out).contains("0 skipped"), "{}", text(&out));
    assert_eq!(env.ok(&["cat", &path]).stdout, expected);

    // A ca_file that holds no certificate is a config error naming the key's line.
    std::fs::write(work.path().join("not-a-ca.pem"), "hello\n").unwrap();
    let bad = format!(
        "ca_file = \"{}\"",
        work.path().join("not-a-ca.pem").display()
    );
    env.write_config(&format!("{}\n{SERVICE}", access.tier_toml("minio", &bad)));
    let out = env.run(&["list"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no PEM certificate") && text(&out).contains("line"),
        "{}",
        text(&out)
    );
}

#[test]
fn plain_http_off_this_machine_is_refused_unless_allowed() {
    let cases = [
        "[tiers.minio]\ntype = \"s3\"\nendpoint = \"http://minio.internal:9000\"\nbucket = \"b\"\naccess_key = \"env:K\"\nsecret_key = \"env:S\"\n",
        "[services.q]\ndriver = \"qdrant\"\nurl = \"http://qdrant.internal:6333\"\n",
        "[services.v]\ndriver = \"vault\"\nurl = \"http://10.0.0.7:8200\"\ntoken = \"env:T\"\n",
        "[services.n]\ndriver = \"n8n\"\nurl = \"http://n8n:5678\"\napi_key = \"env:N\"\n",
        "[services.m]\ndriver = \"minio\"\nendpoint = \"http://minio:9000\"\naccess_key = \"env:K\"\nsecret_key = \"env:S\"\n",
    ];
    for case in cases {
        let env = Env::new(case);
        let out = env.run(&["init"]);
        assert!(!out.status.success(), "accepted plain http:\n{case}");
        let said = text(&out);
        assert!(
            said.contains("allow_insecure_http = true") && said.contains("line"),
            "the error names the key to set and where:\n{said}"
        );
        // The operator's explicit choice is honoured.
        let allowed = case.replacen('\n', "\nallow_insecure_http = true\n", 1);
        let env = Env::new(&allowed);
        let out = env.run(&["init"]);
        assert!(out.status.success(), "{allowed}\n{}", text(&out));
    }
    // This machine needs no TLS.
    let env = Env::new("[services.q]\ndriver = \"qdrant\"\nurl = \"http://127.0.0.1:6333\"\n");
    assert!(env.run(&["init"]).status.success());
}

/// Starts an HTTP stand-in (`tests/standins/http_apis.py`), which serves the published API of
/// a server that cannot be installed here. Returns it and its port.
fn standin(kind: &str, dir: &Path, key: &str) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins/http_apis.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args([kind, "--dir"])
        .arg(dir)
        .args(["--key", key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().parse().unwrap())
}

#[test]
fn http_stand_ins_and_vault_secrets_over_tls_with_a_private_ca() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(work.path());
    // The Vault stand-in (STAND-IN, not a real Vault) serves the n8n key from its KV store;
    // the n8n stand-in (STAND-IN, not a real n8n) serves workflows. Both behind TLS.
    let vdir = work.path().join("vault");
    let ndir = work.path().join("n8n");
    std::fs::create_dir_all(&vdir).unwrap();
    std::fs::create_dir_all(&ndir).unwrap();
    std::fs::write(
        vdir.join("kv.json"),
        "{\"zentoria/backup/n8n\": {\"api_key\": \"n8n-key-5521\"}}",
    )
    .unwrap();
    let (mut vault, vport) = standin("vault", &vdir, "vault-token-1");
    let (mut n8n, nport) = standin("n8n", &ndir, "n8n-key-5521");
    let vproxy = TlsProxy::start(&ca, &format!("127.0.0.1:{vport}"));
    let nproxy = TlsProxy::start(&ca, &format!("127.0.0.1:{nport}"));
    let vars = [
        ("VAULT_ADDR", vproxy.url()),
        ("VAULT_TOKEN", "vault-token-1".to_owned()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = |ca_lines: &str, vault: &str| {
        format!(
            "{vault}\n[services.n8n]\ndriver = \"n8n\"\nurl = \"{}\"\napi_key = \"vault:secret/zentoria/backup/n8n#api_key\"\n{ca_lines}\n",
            nproxy.url()
        )
    };
    let ca_line = format!("ca_file = \"{}\"", ca.ca.display());

    // Without the CA for Vault, the secret cannot be read and the error says why.
    let env = Env::new(&config(&ca_line, ""));
    let out = env.run_with(&["backup", "n8n"], &vars);
    assert!(!out.status.success());
    assert!(
        text(&out).to_lowercase().contains("certificate"),
        "{}",
        text(&out)
    );

    // With `[vault] ca_file` and the service's `ca_file`, the backup goes through.
    env.write_config(&config(&ca_line, &format!("[vault]\n{ca_line}\n")));
    env.ok_with(&["backup", "n8n"], &vars);
    assert_eq!(env.list_json().len(), 1);
    let _ = vault.kill();
    let _ = n8n.kill();
    let _ = vault.wait();
    let _ = n8n.wait();
}

/// Runs `script` with boto3 from moto's venv against `moto`; returns its stdout.
fn boto3(moto: &Moto, script: &str) -> String {
    let python = moto_bin().parent().unwrap().join("python");
    let prelude = format!(
        "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', \
         aws_secret_access_key='testing', region_name='us-east-1')\nbucket = '{}'\n",
        moto.access.endpoint, moto.access.bucket
    );
    let out = std::process::Command::new(python)
        .args(["-c", &format!("{prelude}{script}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn server_side_encryption_on_every_put_and_as_the_bucket_default_on_moto() {
    let moto = Moto::start();
    // A bucket without default encryption: what the objects say comes from tierback's PUTs.
    boto3(&moto, "s3.create_bucket(Bucket=bucket)\n");
    let env = Env::new(&format!(
        "{}\n{SERVICE}",
        moto.access
            .tier_toml("minio", "server_side_encryption = \"AES256\"")
    ));
    env.ok(&["backup", "shop"]);
    env.ok(&["sync"]);
    let objects = boto3(
        &moto,
        "for o in s3.list_objects_v2(Bucket=bucket).get('Contents', []):\n\
         \x20   print(o['Key'], s3.head_object(Bucket=bucket, Key=o['Key']).get('ServerSideEncryption'))\n",
    );
    let lines: Vec<&str> = objects.lines().collect();
    assert!(lines.len() >= 4, "the artifact and its sidecars: {objects}");
    assert!(
        lines.iter().all(|l| l.ends_with(" AES256")),
        "every object tierback wrote asked for AES256:\n{objects}"
    );

    // `tiers setup` makes it the bucket's default, confirmed by reading it back.
    let out = env.ok(&["tiers", "setup"]);
    let said = text(&out);
    assert!(
        said.lines()
            .any(|l| l.contains("default encryption AES256") && l.contains("applied")),
        "{said}"
    );
    let default = boto3(
        &moto,
        "r = s3.get_bucket_encryption(Bucket=bucket)['ServerSideEncryptionConfiguration']['Rules'][0]\n\
         print(r['ApplyServerSideEncryptionByDefault']['SSEAlgorithm'])\n",
    );
    assert_eq!(default.trim(), "AES256");

    // An unknown algorithm is a config error that says what is allowed.
    env.write_config(&format!(
        "{}\n{SERVICE}",
        moto.access
            .tier_toml("minio", "server_side_encryption = \"rot13\"")
    ));
    let out = env.run(&["list"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("\"AES256\" or \"aws:kms\""),
        "{}",
        text(&out)
    );
}

#[test]
fn rclone_secrets_by_reference_reach_rclone_only_through_its_environment() {
    let remotes = Remotes::new();
    let (wrapper, argv_log) = logging_rclone(remotes.dir.path());
    // The crypt remote's password is not in the environment tierback gets: the config names a
    // file that holds it (obscured, as rclone's config file would).
    let secret_file = remotes.dir.path().join("crypt-password");
    std::fs::write(&secret_file, &remotes.obscured).unwrap();
    let section = remotes.crypt.trim_end_matches(':');
    let env_without_password: Vec<(String, String)> = remotes
        .env
        .iter()
        .filter(|(k, _)| !k.ends_with("_PASSWORD"))
        .cloned()
        .collect();
    let vars: Vec<(&str, &str)> = env_without_password
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let tier = |secrets: &str| {
        format!(
            "[tiers.offsite]\ntype = \"rclone\"\nremote = \"{}\"\nrclone = \"{}\"\n{secrets}\n\n{SERVICE}",
            remotes.crypt,
            wrapper.display()
        )
    };
    let env = Env::new(&tier(""));
    env.ok_with(&["backup", "shop"], &vars);
    let out = env.run_with(&["sync"], &vars);
    assert!(
        !out.status.success(),
        "a crypt remote without its password cannot work"
    );

    env.write_config(&tier(&format!(
        "secrets = {{ password = \"file:{}\" }}",
        secret_file.display()
    )));
    env.ok_with(&["sync"], &vars);
    env.ok_with(&["verify", "--tier", "offsite"], &vars);
    let path = env.newest_path("shop", "offsite");
    assert!(!env.ok_with(&["cat", &path], &vars).stdout.is_empty());
    // The ciphertext is there, and nothing tierback wrote or passed in argv holds the password.
    assert!(std::fs::read_dir(remotes.crypt_dir()).unwrap().count() > 0);
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(!argv.is_empty(), "the wrapper saw rclone's commands");
    for needle in [remotes.obscured.as_str(), CRYPT_PASSWORD] {
        assert!(!argv.contains(needle), "password in rclone's argv");
        let status = std::process::Command::new("grep")
            .args(["-rqF", needle])
            .arg(env.path())
            .status()
            .unwrap();
        assert!(!status.success(), "password in a file tierback wrote");
    }
    assert!(
        !section.is_empty() && !argv.contains(&format!("RCLONE_CONFIG_{}", section.to_uppercase()))
    );
}
