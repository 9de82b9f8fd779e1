//! Any text as a config: a config or an error, never a panic; what is accepted names its
//! services and tiers as the name rules allow and keeps block sizes within the format's limits.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tierback_engine::config::Config;
use tierback_engine::id::{ServiceName, TierName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::parse(text, Path::new("/nonexistent/fuzz.toml")) {
        for name in c.services.keys() {
            assert!(ServiceName::new(name.as_str()).is_ok());
        }
        for t in &c.tiers {
            assert!(TierName::new(t.name.as_str()).is_ok());
        }
        assert!((4096..=64 << 20).contains(&c.defaults.block_size));
        for s in c.services.values() {
            assert!((4096..=64 << 20).contains(&s.block_size));
        }
    }
});
