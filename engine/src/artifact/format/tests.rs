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
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).unwrap());
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
            (MIN_MEMBER_LEN as u64..=max_member_len(raw_len)).prop_map(move |len| MemberHeader {
                member_len: len as u32,
                raw_len,
                sha256,
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
        fn a_range_inflates_to_the_same_bytes_as_the_whole_member(
            raw in block(),
            level in 1i32..=12,
            ends in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
        ) {
            let mut c = libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(level).unwrap(),
            );
            let (member, _) = encode_member(&raw, &mut c);
            let (a, b) = (ends.0.index(raw.len() + 1), ends.1.index(raw.len() + 1));
            let range = a.min(b)..a.max(b);
            prop_assert_eq!(inflate_range(&member, range.clone()).unwrap(), &raw[range]);
            prop_assert!(inflate_range(&member, 0..raw.len() + 1).is_err());
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
