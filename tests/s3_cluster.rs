//! The s3 tier against a 3-node Garage cluster (replication factor 3, quorum 2): one node down
//! changes nothing for clients, two nodes down make every operation fail cleanly with a
//! transient error, and a restarted node brings the cluster back.

use std::time::{Duration, Instant};

use tierback_engine::config::Config;
use tierback_engine::store::Store;
use tierback_engine::store::s3::S3Store;
use tierback_tests::Env;
use tierback_tests::garage::{GarageCluster, S3Access};

fn store(access: &S3Access) -> S3Store {
    let env = Env::new(&access.tier_toml(
        "minio",
        "timeout = \"3s\"\nmultipart_threshold = \"5MiB\"\npart_size = \"5MiB\"",
    ));
    let config = Config::load(&env.config()).unwrap();
    S3Store::open(config.tier("minio").unwrap()).unwrap()
}

#[test]
fn cluster_survives_one_node_and_fails_cleanly_without_quorum() {
    let mut cluster = GarageCluster::start(3);
    let s = store(&cluster.access_via(0));
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    let data: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&big, &data).unwrap();
    s.put_file("c/before", &big).unwrap();

    // One node down: quorum (2 of 3) kept, writes and reads work.
    cluster.kill(2);
    s.put_file("c/one-down", &big)
        .expect("put with one node down");
    s.put_bytes("c/one-down.sha256", b"x  big\n").unwrap();
    assert_eq!(s.get("c/before").unwrap(), data);
    assert_eq!(s.get("c/one-down").unwrap(), data);
    assert_eq!(s.list("c/").unwrap().len(), 3);

    // Two nodes down: no quorum. Garage answers 503 (or times out); either way an error within
    // bounded time that callers may retry later, never a hang or a false success.
    cluster.kill(1);
    let start = Instant::now();
    let err = s
        .put_bytes("c/two-down", b"y")
        .expect_err("no quorum, no write");
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "{:?}",
        start.elapsed()
    );
    assert!(err.is_transient(), "no quorum is transient: {err}");
    eprintln!("two nodes down, put_bytes: {err}");
    let err = s
        .get_range("c/before", 0, 10)
        .expect_err("no quorum, no read");
    assert!(err.is_transient(), "{err}");
    eprintln!("two nodes down, get_range: {err}");
    assert!(s.put_file("c/two-down-big", &big).is_err());

    // Restart both: everything is back, and what was written is intact.
    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_healthy(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match s.put_bytes("c/after", b"z") {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the cluster: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("cluster did not recover: {e}"),
        }
    }
    assert_eq!(s.get("c/one-down").unwrap(), data);
    assert_eq!(
        s.head("c/two-down-big").unwrap(),
        None,
        "failed upload left nothing visible"
    );
}
