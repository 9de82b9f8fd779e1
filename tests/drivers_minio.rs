//! The `minio` driver (the seed's daily MinIO bucket sync) against a real S3-compatible server,
//! Garage, which the test starts: objects put with `s3cmd` come back byte for byte out of the
//! stored tar, the bucket the backups themselves go to is never taken, and a bad key stores
//! nothing.

use std::path::Path;
use std::process::Command;

use tierback_tests::Env;
use tierback_tests::garage::Garage;

fn s3cmd(garage: &Garage, args: &[&str]) {
    let a = &garage.access;
    let host = a.endpoint.trim_start_matches("http://");
    let out = Command::new("s3cmd")
        .args([
            &format!("--access_key={}", a.access_key),
            &format!("--secret_key={}", a.secret_key),
            &format!("--host={host}"),
            &format!("--host-bucket={host}"),
            &format!("--region={}", a.region),
            "--no-ssl",
            "--config=/dev/null",
        ])
        .args(args)
        .output()
        .expect("s3cmd runs");
    assert!(
        out.status.success(),
        "s3cmd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn put(garage: &Garage, dir: &Path, key: &str, bytes: &[u8]) {
    let file = dir.join("upload");
    std::fs::write(&file, bytes).unwrap();
    s3cmd(
        garage,
        &[
            "put",
            file.to_str().unwrap(),
            &format!("s3://app-data/{key}"),
        ],
    );
}

#[test]
fn buckets_are_mirrored_into_tars_that_restore_every_object() {
    let garage = Garage::single_node();
    garage.cli(&["bucket", "create", "app-data"]);
    garage.cli(&[
        "bucket",
        "allow",
        "--read",
        "--write",
        "--owner",
        "app-data",
        "--key",
        &garage.access.access_key,
    ]);
    let work = tempfile::tempdir().unwrap();
    let long_key = format!("reports/{}/q4.csv", "quarterly-".repeat(12));
    let big: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let objects: Vec<(String, Vec<u8>)> = vec![
        ("docs/readme.txt".into(), b"hello from MinIO\n".to_vec()),
        ("images/big.bin".into(), big),
        (long_key, b"q,4\n1,2\n".to_vec()),
        ("empty.txt".into(), Vec::new()),
    ];
    for (key, bytes) in &objects {
        put(&garage, work.path(), key, bytes);
    }

    // The tier writes to Garage's default bucket; the service lists every bucket and must leave
    // that one out.
    let env = Env::new(&format!(
        "{}\n[services.minio]\ndriver = \"minio\"\nendpoint = \"{}\"\nregion = \"{}\"\n\
         access_key = \"env:SRC_AK\"\nsecret_key = \"env:SRC_SK\"\n",
        garage.access.tier_toml("objects", ""),
        garage.access.endpoint,
        garage.access.region
    ));
    let creds = [
        ("SRC_AK", garage.access.access_key.as_str()),
        ("SRC_SK", garage.access.secret_key.as_str()),
    ];
    env.ok_with(&["backup", "minio"], &creds);
    let list = env.list_json();
    let stored: Vec<_> = list.iter().filter(|a| a["service"] == "minio").collect();
    assert_eq!(
        stored.len(),
        1,
        "only app-data, not the tier's bucket: {stored:?}"
    );
    let file = stored[0]["file"].as_str().unwrap();
    assert!(
        file.starts_with("app-data_") && file.ends_with(".tar"),
        "{file}"
    );
    assert_eq!(stored[0]["facts"]["entries"], 4);

    let tar = env.ok(&["cat", &env.newest_path("minio", "local")]).stdout;
    let out = work.path().join("restored");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(work.path().join("bucket.tar"), &tar).unwrap();
    let x = Command::new("tar")
        .args([
            "-xf",
            work.path().join("bucket.tar").to_str().unwrap(),
            "-C",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(x.success());
    for (key, bytes) in &objects {
        assert_eq!(&std::fs::read(out.join(key)).unwrap(), bytes, "{key}");
    }
    // Entries carry the objects' modification times (from S3), not the epoch.
    let mtime = std::fs::metadata(out.join("docs/readme.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(mtime)
        .unwrap_or_default();
    assert!(
        age < std::time::Duration::from_secs(3600),
        "mtime {mtime:?}"
    );

    let test = env.ok(&["restore-test", "minio"]);
    assert!(String::from_utf8_lossy(&test.stdout).contains("tar lists 4 entries, as recorded"));

    // A wrong secret key: the service and the server's refusal are named, the key is not, and
    // nothing new is stored.
    let before = env.tier_files();
    let out = env.run_with(
        &["backup", "minio"],
        &[
            ("SRC_AK", creds[0].1),
            ("SRC_SK", "0000wrong-secret-key0000"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("service minio")
            && err.contains("403")
            && !err.contains("0000wrong-secret-key0000"),
        "{err}"
    );
    assert_eq!(env.tier_files(), before);
}
