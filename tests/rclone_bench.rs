//! Benchmark behind `bench/rclone.sh` (ignored in normal runs): 1 MiB ranged reads from a
//! crypt-over-local remote through `RcloneStore` (one `rclone serve http`) against one
//! `rclone cat --offset --count` process per block, the approach it replaces.
//! Sizes: `TIERBACK_BENCH_MIB` (object size, default 256), `TIERBACK_BENCH_READS` (default 200).

use std::time::{Duration, Instant};

use tierback_engine::config::{TierConfig, TierKind};
use tierback_engine::id::TierName;
use tierback_engine::store::Store;
use tierback_engine::store::rclone::RcloneStore;
use tierback_tests::rclone::Remotes;

const BLOCK: u64 = 1 << 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "benchmark: run bench/rclone.sh"]
fn ranged_reads_serve_http_vs_process_per_block() {
    let mib = env_u64("TIERBACK_BENCH_MIB", 256);
    let reads = env_u64("TIERBACK_BENCH_READS", 200);
    let r = Remotes::new();
    let tier = TierConfig::new(
        TierName::new("offsite").unwrap(),
        TierKind::Rclone {
            remote: r.crypt.clone(),
            binary: "rclone".into(),
            timeout_secs: 60,
            secrets: Default::default(),
        },
    );
    let store = RcloneStore::open_with_env(&tier, r.env.clone()).unwrap();
    let src = r.dir.path().join("object");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..mib * BLOCK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&src, &data).unwrap();
    let key = "svc/2026-01-16/big_120000.sql.gz";
    let t = Instant::now();
    store.put_file(key, &src).unwrap();
    let upload = t.elapsed();

    let mut seed = 42u64;
    let mut offset = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % (mib * BLOCK - BLOCK)
    };
    store.get_range(key, 0, BLOCK).unwrap(); // starts the server
    let started = store.processes_started();
    let mut serve: Vec<Duration> = (0..reads)
        .map(|_| {
            let off = offset();
            let t = Instant::now();
            let got = store.get_range(key, off, BLOCK).unwrap();
            let d = t.elapsed();
            assert_eq!(&got[..], &data[off as usize..(off + BLOCK) as usize]);
            d
        })
        .collect();
    assert_eq!(store.processes_started(), started);

    let per_process = reads.min(40);
    let mut cat: Vec<Duration> = (0..per_process)
        .map(|_| {
            let off = offset();
            let t = Instant::now();
            let out = std::process::Command::new("rclone")
                .args([
                    "cat",
                    "--offset",
                    &off.to_string(),
                    "--count",
                    &BLOCK.to_string(),
                ])
                .arg(format!("{}{key}", r.crypt))
                .envs(r.env.iter().map(|(k, v)| (k, v)))
                .output()
                .unwrap();
            let d = t.elapsed();
            assert!(out.status.success());
            assert_eq!(&out.stdout[..], &data[off as usize..(off + BLOCK) as usize]);
            d
        })
        .collect();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (s50, s90) = (percentile(&mut serve, 0.5), percentile(&mut serve, 0.9));
    let (c50, c90) = (percentile(&mut cat, 0.5), percentile(&mut cat, 0.9));
    println!(
        "object: {mib} MiB on a crypt-over-local remote, uploaded+verified in {:.2} s",
        upload.as_secs_f64()
    );
    println!(
        "1 MiB ranged read, RcloneStore (serve http): p50 {:.2} ms  p90 {:.2} ms  ({reads} reads)",
        ms(s50),
        ms(s90)
    );
    println!(
        "1 MiB ranged read, rclone cat per block:     p50 {:.2} ms  p90 {:.2} ms  ({per_process} reads)",
        ms(c50),
        ms(c90)
    );
    println!(
        "p50 ratio (rclone cat / RcloneStore): {:.1}x",
        ms(c50) / ms(s50)
    );
}
