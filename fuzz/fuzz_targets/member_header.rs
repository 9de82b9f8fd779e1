//! Any bytes as a gzip member: `parse_header` and `decode_member` return a value or an error,
//! never panic, and never allocate more than deflate could inflate from the bytes given.
#![no_main]

mod probe;

use libfuzzer_sys::fuzz_target;
use tierback_engine::artifact::format::{
    Checks, MAX_BLOCK_SIZE, MAX_INFLATE_RATIO, decode_member, max_member_len, parse_header,
};

#[global_allocator]
static PROBE: probe::Probe = probe::Probe;

fuzz_target!(|data: &[u8]| {
    let (header, peak) = probe::peak_alloc(|| parse_header(data));
    if let Ok(h) = header {
        assert!(h.raw_len <= MAX_BLOCK_SIZE);
        assert!(h.member_len as u64 <= max_member_len(h.raw_len));
        assert_eq!(peak, 0, "parse_header allocated");
    }
    let mut d = libdeflater::Decompressor::new();
    for (crc32, raw_sha256) in [(false, true), (true, false), (true, true)] {
        let checks = Checks { crc32, raw_sha256 };
        let (decoded, peak) =
            probe::peak_alloc(|| decode_member(data, &mut d, checks).map(|(_, raw)| raw.len()));
        assert!(
            peak as u64 <= data.len() as u64 * MAX_INFLATE_RATIO + 4096,
            "{} bytes of member allocated {peak}",
            data.len()
        );
        if let Ok(n) = decoded {
            assert!(n as u64 <= data.len() as u64 * MAX_INFLATE_RATIO);
        }
    }
});
