//! Fills a catalog with N synthetic backups (no files behind them) for benchmarks of the tree:
//! `fill_catalog CATALOG.db N` → N backups spread over 10 services, one per hour back from now,
//! each with one artifact and a copy on tier `local`.

use tierback_engine::artifact::{BlockEntry, BlockIndex};
use tierback_engine::catalog::{Catalog, NewArtifact};
use tierback_engine::clock::now;
use tierback_engine::id::{ServiceName, TierName};
use tierback_engine::layout::{artifact_file, object_key};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::PathBuf::from(args.get(1).expect("usage: fill_catalog CATALOG.db N"));
    let n: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let mut catalog = Catalog::open(&path).expect("open catalog");
    let start = now() - now() % 3600;
    let local = TierName::new("local").expect("a tier name");
    let index = BlockIndex {
        block_size: 1 << 20,
        entries: vec![BlockEntry {
            offset: 0,
            stored_len: 1000,
            raw_len: 4000,
            sha256: [7; 32],
            stored_sha256: Some([8; 32]),
        }],
    };
    for i in 0..n {
        let service = ServiceName::new(format!("svc{}", i % 10)).expect("a service name");
        let taken_at = start - (i / 10) * 3600;
        let file = artifact_file("db", "sql", taken_at);
        let artifact = NewArtifact {
            key: object_key(service.as_str(), taken_at, &file),
            file,
            raw_size: 4000,
            raw_sha256: "00".repeat(32),
            stored_size: 1000,
            stored_sha256: "11".repeat(32),
            compression_level: 9,
            index: index.clone(),
            facts: serde_json::json!({}),
        };
        catalog
            .record_backup(&service, taken_at, "command", None, &local, &[artifact])
            .expect("record");
    }
    println!("{n} backups recorded in {}", path.display());
}
