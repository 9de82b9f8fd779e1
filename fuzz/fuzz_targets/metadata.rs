//! Any bytes as a `.meta.json` sidecar: a value or an error in words (no Rust type names), never
//! a panic, memory in proportion to the bytes; what parses round-trips, and what passes `check`
//! names an object key inside the layout.
#![no_main]

mod probe;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tierback_engine::artifact::metadata::ArtifactMetadata;

#[global_allocator]
static PROBE: probe::Probe = probe::Probe;

fuzz_target!(|data: &[u8]| {
    let n = data.len();
    let (parsed, peak) = probe::peak_alloc(|| ArtifactMetadata::parse(data));
    assert!(peak <= 64 * n + 4096, "{n} bytes allocated {peak}");
    match parsed {
        Err(e) => {
            for rust in [
                "struct",
                "ArtifactMetadata",
                "u64",
                "i64",
                "u32",
                "i32",
                "Map<",
            ] {
                assert!(!e.contains(rust), "{e}");
            }
        }
        Ok(m) => {
            let mut again = ArtifactMetadata::parse(&serde_json::to_vec(&m).unwrap()).unwrap();
            // serde_json (without its `float_roundtrip` feature) may read a float back one ULP
            // off: the facts are compared with that tolerance, everything else exactly.
            assert!(
                same_json(&again.facts, &m.facts),
                "{:?} != {:?}",
                again.facts,
                m.facts
            );
            again.facts = m.facts.clone();
            assert_eq!(again, m);
            if m.check().is_ok() {
                let key = tierback_engine::layout::object_key(&m.service, m.taken_at_unix, &m.file);
                assert!(tierback_engine::store::check_key(&key).is_ok(), "{key:?}");
                assert_eq!(key.split('/').count(), 3, "{key:?}");
                assert!(!key.chars().any(char::is_control), "{key:?}");
            }
        }
    }
});

fn same_json(a: &serde_json::Map<String, Value>, b: &serde_json::Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || ((x - y) / x.abs().max(y.abs())).abs() < 1e-15
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => same_json(x, y),
        _ => a == b,
    }
}
