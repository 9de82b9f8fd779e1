//! Any bytes as a `.idx` sidecar, whole and streamed in pieces: a value or an error, never a
//! panic, memory within a few times the bytes given; what decodes re-encodes to the same bytes.
#![no_main]

mod probe;

use libfuzzer_sys::fuzz_target;
use tierback_engine::artifact::BlockIndex;
use tierback_engine::artifact::index::IndexDecoder;

#[global_allocator]
static PROBE: probe::Probe = probe::Probe;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size of the streamed read; the rest is the sidecar.
    let Some((&piece, data)) = data.split_first() else {
        return;
    };
    let piece = piece as usize + 1;
    let n = data.len();
    let (whole, peak) = probe::peak_alloc(|| BlockIndex::decode(data));
    assert!(peak <= 2 * n + 1024, "decode: {n} bytes allocated {peak}");
    if let Ok(i) = &whole {
        assert!(i.check().is_ok());
        assert_eq!(i.encode(), data, "decode/encode round trip");
    }
    let (streamed, peak) = probe::peak_alloc(|| {
        let mut d = IndexDecoder::new(n as u64, None)?;
        for p in data.chunks(piece) {
            d.feed(p)?;
        }
        d.finish()
    });
    assert!(peak <= 6 * n + 1024, "stream: {n} bytes allocated {peak}");
    if let Ok(i) = streamed {
        assert!(i.check_format().is_ok());
        assert_eq!(i.encode(), data, "stream/encode round trip");
        assert_eq!(whole.as_ref(), Ok(&i), "whole and streamed decodes differ");
    }
});
