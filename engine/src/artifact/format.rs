//! One gzip member (RFC 1952) per block, with tierback's FEXTRA subfield.
//!
//! ```text
//! 1f 8b 08 04 | mtime 0 (4) | xfl | os=3 | xlen=44 (2)          10 + 2 bytes
//! 'T' 'B' | len=40 (2) | member_len u32 | raw_len u32 | sha256   44 bytes
//! raw deflate data
//! crc32 u32 | isize u32                                            8 bytes
//! ```
//! All integers little-endian, as gzip has them. `member_len` is the whole member, header to
//! trailer, so the next member's offset follows from the header alone (like BGZF's BSIZE): the
//! index can be rebuilt by walking headers.
//!
//! Everything here may come from a hostile tier: a header is checked against the format's limits
//! (a block is 4 KiB–64 MiB, a member at most what deflate can make of its block) before any
//! length in it is used, so a parser given N bytes never allocates more than N justifies.

use sha2::{Digest, Sha256};

pub const SUBFIELD_ID: [u8; 2] = *b"TB";
const SUBFIELD_LEN: u16 = 40;
const XLEN: u16 = 4 + SUBFIELD_LEN;
/// Bytes before the deflate data.
pub const HEADER_LEN: usize = 12 + XLEN as usize;
/// CRC32 and ISIZE.
pub const TRAILER_LEN: usize = 8;
const FLG_FEXTRA: u8 = 0x04;
const OS_UNIX: u8 = 3;

/// The smallest block size the format allows (and the config accepts).
pub const MIN_BLOCK_SIZE: u32 = 4 << 10;
/// The largest block size the format allows (and the config accepts).
pub const MAX_BLOCK_SIZE: u32 = 64 << 20;
/// The shortest possible member: header, at least one byte of deflate data, trailer.
pub const MIN_MEMBER_LEN: u32 = (HEADER_LEN + 1 + TRAILER_LEN) as u32;
/// Deflate expands at most 1032:1 (a 258-byte match in two bits), so N bytes of deflate data
/// can only ever stand for this many bytes per byte.
pub const MAX_INFLATE_RATIO: u64 = 1032;

/// An upper bound on the deflate data for `raw_len` bytes: every compressor's output fits in it
/// (libdeflate's `deflate_compress_bound` is `raw + 5 * ceil(raw / 5000) + 9`, zlib's is
/// smaller). Stored blocks cost 5 bytes each per at most 64 KiB, which this covers too.
pub fn max_deflate_len(raw_len: u32) -> u64 {
    let raw = raw_len as u64;
    raw + 5 * (raw / 4096 + 1) + 16
}

/// The longest a member holding `raw_len` bytes can be: header, deflate bound, trailer.
pub fn max_member_len(raw_len: u32) -> u64 {
    HEADER_LEN as u64 + max_deflate_len(raw_len) + TRAILER_LEN as u64
}

/// Checks a block size against the format's limits; `Err` says why in words.
pub fn check_block_size(block_size: u64) -> Result<(), String> {
    if (MIN_BLOCK_SIZE as u64..=MAX_BLOCK_SIZE as u64).contains(&block_size) {
        Ok(())
    } else {
        Err(format!(
            "block size {} is outside the 4 KiB–64 MiB the format allows",
            describe_len(block_size)
        ))
    }
}

/// A length for a message: `68719476736 bytes (64.0 GiB)`, or just `191 bytes`.
pub fn describe_len(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else {
        format!("{n} bytes ({})", crate::units::human_bytes(n))
    }
}

/// What a member's header says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberHeader {
    pub member_len: u32,
    pub raw_len: u32,
    pub sha256: [u8; 32],
}

/// Compresses one block into a complete gzip member.
pub fn encode_member(
    raw: &[u8],
    compressor: &mut libdeflater::Compressor,
) -> (Vec<u8>, MemberHeader) {
    let bound = compressor.deflate_compress_bound(raw.len());
    let mut out = vec![0u8; HEADER_LEN + bound + TRAILER_LEN];
    let n = compressor
        .deflate_compress(raw, &mut out[HEADER_LEN..HEADER_LEN + bound])
        .expect("deflate_compress_bound is an upper bound");
    out.truncate(HEADER_LEN + n + TRAILER_LEN);
    let header = MemberHeader {
        member_len: u32::try_from(out.len()).expect("blocks are at most 64 MiB"),
        raw_len: u32::try_from(raw.len()).expect("blocks are at most 64 MiB"),
        sha256: Sha256::digest(raw).into(),
    };
    write_header(&mut out[..HEADER_LEN], &header, compressor_xfl());
    let trailer = HEADER_LEN + n;
    out[trailer..trailer + 4].copy_from_slice(&libdeflater::crc32(raw).to_le_bytes());
    out[trailer + 4..].copy_from_slice(&header.raw_len.to_le_bytes());
    (out, header)
}

fn compressor_xfl() -> u8 {
    2 // "maximum compression" hint; informational only
}

fn write_header(buf: &mut [u8], h: &MemberHeader, xfl: u8) {
    buf[0] = 0x1f;
    buf[1] = 0x8b;
    buf[2] = 8; // deflate
    buf[3] = FLG_FEXTRA;
    buf[4..8].copy_from_slice(&[0; 4]); // mtime: none, so identical input gives identical bytes
    buf[8] = xfl;
    buf[9] = OS_UNIX;
    buf[10..12].copy_from_slice(&XLEN.to_le_bytes());
    buf[12..14].copy_from_slice(&SUBFIELD_ID);
    buf[14..16].copy_from_slice(&SUBFIELD_LEN.to_le_bytes());
    buf[16..20].copy_from_slice(&h.member_len.to_le_bytes());
    buf[20..24].copy_from_slice(&h.raw_len.to_le_bytes());
    buf[24..56].copy_from_slice(&h.sha256);
}

/// Parses a tierback member header; `Err` says what is wrong with it.
pub fn parse_header(buf: &[u8]) -> Result<MemberHeader, String> {
    if buf.len() < HEADER_LEN {
        return Err(format!("member shorter than its {HEADER_LEN}-byte header"));
    }
    if buf[0] != 0x1f || buf[1] != 0x8b || buf[2] != 8 {
        return Err("not a gzip member (bad magic)".into());
    }
    if buf[3] & FLG_FEXTRA == 0 || buf[3] & !FLG_FEXTRA != 0 {
        return Err(format!("unexpected gzip flags {:#04x}", buf[3]));
    }
    if u16::from_le_bytes([buf[10], buf[11]]) != XLEN
        || buf[12..14] != SUBFIELD_ID
        || u16::from_le_bytes([buf[14], buf[15]]) != SUBFIELD_LEN
    {
        return Err("gzip member lacks the tierback FEXTRA subfield".into());
    }
    let u32_at = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().unwrap());
    let h = MemberHeader {
        member_len: u32_at(16),
        raw_len: u32_at(20),
        sha256: buf[24..56].try_into().unwrap(),
    };
    if h.member_len < MIN_MEMBER_LEN {
        return Err(format!(
            "member length {} is impossibly small",
            h.member_len
        ));
    }
    if h.raw_len > MAX_BLOCK_SIZE {
        return Err(format!(
            "member holds {} uncompressed, more than the largest block ({})",
            crate::units::human_bytes(h.raw_len as u64),
            crate::units::human_bytes(MAX_BLOCK_SIZE as u64)
        ));
    }
    if h.member_len as u64 > max_member_len(h.raw_len) {
        return Err(format!(
            "member length {} is more than deflate makes of {} bytes (at most {})",
            h.member_len,
            h.raw_len,
            max_member_len(h.raw_len)
        ));
    }
    Ok(h)
}

/// Which of a member's own checks [`decode_member`] runs besides ISIZE. Reads of a version 2
/// artifact have already matched the stored bytes' SHA-256, so they need only the CRC32 (the
/// decompressor is deterministic; the CRC catches it misbehaving); reads of a version 1
/// artifact check the raw SHA-256; `verify` and the backup's round trip check both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub crc32: bool,
    pub raw_sha256: bool,
}

impl Checks {
    pub const ALL: Checks = Checks {
        crc32: true,
        raw_sha256: true,
    };
}

/// Inflates a complete member and checks ISIZE, and CRC32 and SHA-256 as `checks` asks, against
/// its own header. The caller separately checks that header against the catalog's index.
pub fn decode_member(
    member: &[u8],
    decompressor: &mut libdeflater::Decompressor,
    checks: Checks,
) -> Result<(MemberHeader, Vec<u8>), String> {
    let h = parse_header(member)?;
    if member.len() != h.member_len as usize {
        return Err(format!(
            "member is {} bytes but its header says {}",
            member.len(),
            h.member_len
        ));
    }
    let trailer = &member[member.len() - TRAILER_LEN..];
    let crc = u32::from_le_bytes(trailer[..4].try_into().unwrap());
    let isize = u32::from_le_bytes(trailer[4..].try_into().unwrap());
    if isize != h.raw_len {
        return Err(format!(
            "trailer length {isize} differs from header length {}",
            h.raw_len
        ));
    }
    let deflate_len = (member.len() - HEADER_LEN - TRAILER_LEN) as u64;
    if h.raw_len as u64 > deflate_len * MAX_INFLATE_RATIO {
        return Err(format!(
            "header says {} bytes, more than {deflate_len} bytes of deflate data can hold",
            h.raw_len
        ));
    }
    // A reused buffer: the length check below guarantees the inflater overwrote all of it.
    let mut raw = super::buffers::take(h.raw_len as usize);
    let checked = (|| {
        let n = decompressor
            .deflate_decompress(&member[HEADER_LEN..member.len() - TRAILER_LEN], &mut raw)
            .map_err(|e| format!("inflate failed: {e:?}"))?;
        if n != raw.len() {
            return Err(format!("inflated to {n} bytes, expected {}", raw.len()));
        }
        if checks.crc32 && libdeflater::crc32(&raw) != crc {
            return Err("CRC32 mismatch".into());
        }
        if checks.raw_sha256 && <[u8; 32]>::from(Sha256::digest(&raw)) != h.sha256 {
            return Err("SHA-256 mismatch".into());
        }
        Ok(())
    })();
    match checked {
        Ok(()) => Ok((h, raw)),
        Err(e) => {
            super::buffers::give(raw);
            Err(e)
        }
    }
}

/// Inflates a member just made from `raw` and compares the result with `raw` itself, so a
/// compressor fault or a bit flipped in memory is caught while the data still exists, not at
/// restore time.
pub fn check_round_trip(
    member: &[u8],
    raw: &[u8],
    decompressor: &mut libdeflater::Decompressor,
) -> Result<(), String> {
    let (_, back) = decode_member(
        member,
        decompressor,
        Checks {
            crc32: true,
            raw_sha256: false,
        },
    )?;
    let same = back[..] == raw[..];
    super::buffers::give(back);
    if same {
        Ok(())
    } else {
        Err("the member inflates to different bytes than the block it was made from".into())
    }
}

/// What the parsers' property tests share: a case count that `PROPTEST_CASES` raises, and a
/// probe of how much a call allocates.
#[cfg(test)]
pub(crate) mod testing {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Cases per property: modest so `cargo test` stays quick; `PROPTEST_CASES=1000000` (as
    /// `make fuzz` sets) runs many more.
    pub fn config() -> proptest::test_runner::Config {
        let mut config = proptest::test_runner::Config::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = 64;
        }
        config.failure_persistence = None;
        config
    }

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    /// The system allocator, counting each thread's live bytes and their peak. Only in the
    /// engine's unit tests.
    struct Probe;

    fn note(delta: isize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    // SAFETY: every call is forwarded unchanged to the system allocator; the counting touches
    // only const-initialised thread-locals, which never allocate.
    unsafe impl GlobalAlloc for Probe {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            note(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // Old and new both exist while the bytes are copied.
            note(new_size as isize);
            note(-(layout.size() as isize));
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static PROBE: Probe = Probe;

    /// Runs `f`; returns its result and the most bytes it held allocated at once on this thread.
    pub fn peak_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let r = f();
        let peak = PEAK.with(Cell::get) - base;
        (r, peak.max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_plain_gzip_compatible() {
        let raw: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(9).unwrap());
        let (member, h) = encode_member(&raw, &mut c);
        assert_eq!(h.member_len as usize, member.len());
        let mut d = libdeflater::Decompressor::new();
        let (h2, back) = decode_member(&member, &mut d, Checks::ALL).unwrap();
        assert_eq!(h, h2);
        assert_eq!(back, raw);
        // A generic gzip decoder (which skips FEXTRA) reads it too.
        let mut plain = vec![0u8; raw.len()];
        let n = d.gzip_decompress(&member, &mut plain).unwrap();
        assert_eq!(&plain[..n], &raw[..]);
    }

    #[test]
    fn every_single_byte_flip_is_caught() {
        let raw = b"INSERT INTO t VALUES (1, 'a');\n".repeat(200);
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).unwrap());
        let (member, _) = encode_member(&raw, &mut c);
        let mut d = libdeflater::Decompressor::new();
        for i in 0..member.len() {
            let mut bad = member.clone();
            bad[i] ^= 0x40;
            match decode_member(&bad, &mut d, Checks::ALL) {
                Err(_) => {}
                // Flipping mtime/xfl/os bytes changes nothing that is read: still correct data.
                Ok((_, back)) => assert!(
                    (4..10).contains(&i) && back == raw,
                    "flip at {i} gave wrong data"
                ),
            }
        }
    }

    #[test]
    fn without_the_crc_no_flip_yields_wrong_data() {
        let raw = b"COPY public.t (id) FROM stdin;\n".repeat(300);
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(9).unwrap());
        let (member, _) = encode_member(&raw, &mut c);
        let mut d = libdeflater::Decompressor::new();
        let mut accepted = Vec::new();
        for i in 0..member.len() {
            let mut bad = member.clone();
            bad[i] ^= 0x08;
            if let Ok((_, back)) = decode_member(
                &bad,
                &mut d,
                Checks {
                    crc32: false,
                    raw_sha256: true,
                },
            ) {
                assert_eq!(back, raw, "flip at {i} gave wrong data");
                accepted.push(i);
            }
        }
        // Only bytes that carry no data may change unnoticed: mtime/xfl/os and the CRC itself.
        let crc = member.len() - TRAILER_LEN;
        assert!(
            accepted
                .iter()
                .all(|&i| (4..10).contains(&i) || (crc..crc + 4).contains(&i)),
            "{accepted:?}"
        );
    }

    #[test]
    fn a_reused_buffer_never_leaks_the_previous_block() {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).unwrap());
        let mut d = libdeflater::Decompressor::new();
        let long = b"x".repeat(50_000);
        let short = b"COPY t FROM stdin;\n".repeat(1000);
        let (m_long, _) = encode_member(&long, &mut c);
        let (m_short, _) = encode_member(&short, &mut c);
        for _ in 0..20 {
            let (_, a) = decode_member(&m_long, &mut d, Checks::ALL).unwrap();
            assert_eq!(a, long);
            super::super::buffers::give(a);
            let (_, b) = decode_member(&m_short, &mut d, Checks::ALL).unwrap();
            assert_eq!(b, short);
            super::super::buffers::give(b);
        }
    }

    #[test]
    fn the_round_trip_check_catches_a_member_that_is_not_its_block() {
        let raw = b"INSERT INTO t VALUES (42, 'answer');\n".repeat(500);
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(9).unwrap());
        let mut d = libdeflater::Decompressor::new();
        let (member, _) = encode_member(&raw, &mut c);
        assert_eq!(check_round_trip(&member, &raw, &mut d), Ok(()));
        // The block changed in memory after it was compressed.
        let mut changed = raw.clone();
        changed[1000] ^= 0x20;
        let e = check_round_trip(&member, &changed, &mut d).unwrap_err();
        assert!(e.contains("inflates to different bytes"), "{e}");
        // The member changed in memory after it was made.
        let mut bad = member.clone();
        bad[HEADER_LEN + (member.len() - HEADER_LEN) / 2] ^= 0x10;
        assert!(check_round_trip(&bad, &raw, &mut d).is_err());
    }

    #[test]
    fn empty_block_is_a_valid_member() {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(9).unwrap());
        let (member, h) = encode_member(b"", &mut c);
        assert_eq!(h.raw_len, 0);
        let (_, back) =
            decode_member(&member, &mut libdeflater::Decompressor::new(), Checks::ALL).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn the_deflate_bound_holds_for_incompressible_and_extreme_blocks() {
        // Incompressible data is where deflate is longest; zeros where it expands most.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..(1 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let zeros = vec![0u8; 16 << 20];
        let mut d = libdeflater::Decompressor::new();
        for level in [1, 6, 9, 12] {
            let mut c =
                libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).unwrap());
            for raw in [&noise[..], &noise[..4096], &noise[..1], &zeros[..]] {
                let (member, h) = encode_member(raw, &mut c);
                assert!(
                    member.len() as u64 <= max_member_len(h.raw_len),
                    "level {level}"
                );
                let deflate = (member.len() - HEADER_LEN - TRAILER_LEN) as u64;
                assert!(raw.len() as u64 <= deflate * MAX_INFLATE_RATIO);
                let (_, back) = decode_member(&member, &mut d, Checks::ALL).unwrap();
                assert_eq!(back, raw);
                super::super::buffers::give(back);
            }
        }
    }

    #[test]
    fn headers_outside_the_format_limits_are_refused() {
        let mut buf = [0u8; HEADER_LEN];
        let h = |member_len, raw_len| MemberHeader {
            member_len,
            raw_len,
            sha256: [7; 32],
        };
        for (bad, why) in [
            (h(70, MAX_BLOCK_SIZE + 1), "more than the largest block"),
            (h(u32::MAX, 1 << 20), "more than deflate makes"),
            (h(1 << 31, 1), "more than deflate makes"),
            (h(64, 0), "impossibly small"),
        ] {
            write_header(&mut buf, &bad, 2);
            let e = parse_header(&buf).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        write_header(&mut buf, &h(1 << 20, 1 << 20), 2);
        assert!(parse_header(&buf).is_ok());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::testing::{config, peak_alloc};
        use super::*;

        fn header() -> impl Strategy<Value = MemberHeader> {
            (0..=MAX_BLOCK_SIZE, any::<[u8; 32]>()).prop_flat_map(|(raw_len, sha256)| {
                (MIN_MEMBER_LEN as u64..=max_member_len(raw_len)).prop_map(move |len| {
                    MemberHeader {
                        member_len: len as u32,
                        raw_len,
                        sha256,
                    }
                })
            })
        }

        /// Bytes that look like blocks: noise, runs and repeated text.
        fn block() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..20_000),
                (any::<u8>(), 0usize..200_000).prop_map(|(b, n)| vec![b; n]),
                (proptest::collection::vec(any::<u8>(), 1..40), 1usize..2000)
                    .prop_map(|(s, n)| s.repeat(n)),
            ]
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn header_encode_decode_round_trips(h in header(), xfl in any::<u8>()) {
                let mut buf = [0u8; HEADER_LEN];
                write_header(&mut buf, &h, xfl);
                prop_assert_eq!(parse_header(&buf), Ok(h));
            }

            #[test]
            fn member_encode_decode_round_trips(raw in block(), level in 1i32..=12) {
                let mut c = libdeflater::Compressor::new(
                    libdeflater::CompressionLvl::new(level).unwrap(),
                );
                let (member, h) = encode_member(&raw, &mut c);
                prop_assert!(member.len() as u64 <= max_member_len(h.raw_len));
                prop_assert_eq!(parse_header(&member), Ok(h));
                let mut d = libdeflater::Decompressor::new();
                let (h2, back) = decode_member(&member, &mut d, Checks::ALL).unwrap();
                prop_assert_eq!(h2, h);
                prop_assert_eq!(&back, &raw);
            }

            #[test]
            fn any_bytes_parse_to_a_header_or_an_error(
                bytes in proptest::collection::vec(any::<u8>(), 0..200),
            ) {
                let (parsed, peak) = peak_alloc(|| parse_header(&bytes));
                if let Ok(h) = parsed {
                    prop_assert!(h.raw_len <= MAX_BLOCK_SIZE);
                    prop_assert!(h.member_len as u64 <= max_member_len(h.raw_len));
                    prop_assert_eq!(peak, 0);
                }
            }

            /// Members with a valid-looking header and anything after it (the shape a forger
            /// would send): decoding never allocates past what deflate could inflate.
            #[test]
            fn any_member_decodes_or_fails_within_what_its_bytes_justify(
                h in header(),
                body in proptest::collection::vec(any::<u8>(), 0..4096),
                crc32 in any::<bool>(),
                raw_sha256 in any::<bool>(),
            ) {
                let mut member = vec![0u8; HEADER_LEN];
                write_header(&mut member, &h, 2);
                member.extend_from_slice(&body);
                // Either the claimed length is the real one or not; both are tried.
                for m in [member.clone(), {
                    let mut m = member.clone();
                    let len = m.len() as u32;
                    m[16..20].copy_from_slice(&len.to_le_bytes());
                    m
                }] {
                    let mut d = libdeflater::Decompressor::new();
                    let (result, peak) = peak_alloc(|| {
                        decode_member(&m, &mut d, Checks { crc32, raw_sha256 }).map(|(_, raw)| raw.len())
                    });
                    prop_assert!(
                        peak as u64 <= m.len() as u64 * MAX_INFLATE_RATIO + 4096,
                        "{} bytes of member allocated {peak}", m.len()
                    );
                    if let Ok(n) = result {
                        prop_assert!(n as u64 <= m.len() as u64 * MAX_INFLATE_RATIO);
                    }
                }
            }

            #[test]
            fn flipped_members_never_yield_wrong_data(
                raw in block(),
                flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            ) {
                let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).unwrap());
                let (mut member, _) = encode_member(&raw, &mut c);
                for (at, x) in &flips {
                    let i = at.index(member.len());
                    member[i] ^= x;
                }
                let mut d = libdeflater::Decompressor::new();
                if let Ok((_, back)) = decode_member(&member, &mut d, Checks::ALL) {
                    prop_assert_eq!(back, raw);
                }
            }
        }
    }
}
