//! Uploads one file through the s3 tier's `S3Store::put_file_sha256` (verified) and prints the
//! elapsed seconds; used by `bench/s3.sh`.
//!
//! `s3_put ENDPOINT BUCKET REGION FILE KEY`, credentials in `S3_ACCESS_KEY` / `S3_SECRET_KEY`
//! (referenced as `env:`, never on argv).

use std::path::Path;
use std::time::Instant;

use tierback_engine::config::Config;
use tierback_engine::store::s3::S3Store;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, bucket, region, file, key] = args.as_slice() else {
        eprintln!("usage: s3_put ENDPOINT BUCKET REGION FILE KEY");
        std::process::exit(2);
    };
    let toml = format!(
        "[catalog]\npath = \"/tmp/s3_put-unused.db\"\n[tiers.local]\ntype = \"local\"\npath = \"/tmp/s3_put-unused\"\n\
         [tiers.s3]\ntype = \"s3\"\nendpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\nregion = \"{region}\"\n\
         access_key = \"env:S3_ACCESS_KEY\"\nsecret_key = \"env:S3_SECRET_KEY\"\n"
    );
    let config = Config::parse(&toml, Path::new("s3_put.toml")).expect("config");
    let store = S3Store::open(config.tier("s3").unwrap()).expect("open s3 tier");
    let start = Instant::now();
    let digest = store.put_file_sha256(key, Path::new(file)).expect("upload");
    println!(
        "{:.3} {}",
        start.elapsed().as_secs_f64(),
        hex::encode(digest)
    );
}
