//! A tier that accepts connections and never answers costs each reader one client timeout and
//! no thread: the mount reads remote tiers through their clients' own timeouts, not a thread per
//! read abandoned at a deadline. Alone in its test binary so /proc/self/task counts only it.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use tierback_engine::config::Config;
use tierback_engine::store::Store;
use tierback_engine::store::s3::S3Store;
use tierback_tests::Env;

const READERS: usize = 4;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn reads_of_a_hung_tier_time_out_without_piling_up_threads() {
    // The kernel completes connections into the backlog; nothing ever reads or answers them.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let env = Env::new(&format!(
        "[tiers.minio]\ntype = \"s3\"\nendpoint = \"http://{}\"\nbucket = \"b\"\nregion = \"garage\"\n\
         access_key = \"GK000000000000000000000000\"\nsecret_key = \"{}\"\ntimeout = \"1s\"\n",
        hung.local_addr().unwrap(),
        "0".repeat(64)
    ));
    let config = Config::load(&env.config()).unwrap();
    let store = S3Store::open(config.tier("minio").unwrap()).unwrap();

    let mut peaks = Vec::new();
    for round in 0..4 {
        let start = Instant::now();
        let peak = std::thread::scope(|s| {
            let readers: Vec<_> = (0..READERS)
                .map(|i| {
                    let store = &store;
                    s.spawn(move || store.get_range("svc/a.gz", i as u64 * 4096, 4096))
                })
                .collect();
            let mut peak = threads();
            while !readers.iter().all(|r| r.is_finished()) {
                peak = peak.max(threads());
                std::thread::sleep(Duration::from_millis(20));
            }
            for r in readers {
                let err = r.join().unwrap().expect_err("a hung tier cannot answer");
                assert!(err.is_transient(), "round {round}: {err}");
            }
            peak
        });
        // Three attempts of 1 s each plus backoff: an error, not a hang.
        assert!(start.elapsed() < Duration::from_secs(15), "round {round}");
        peaks.push(peak);
    }
    // The readers and the client's fixed runtime, the same every round: a thread per read left
    // behind would add READERS each round.
    let first = peaks[0];
    assert!(
        peaks.iter().all(|&p| p <= first),
        "threads grew across rounds of hung reads: {peaks:?}"
    );
    drop(hung);
}
