use super::*;

fn sample() -> BlockIndex {
    BlockIndex {
        block_size: 4096,
        entries: vec![
            BlockEntry {
                offset: 0,
                stored_len: 700,
                raw_len: 4096,
                sha256: [1; 32],
                stored_sha256: Some([3; 32]),
            },
            BlockEntry {
                offset: 700,
                stored_len: 80,
                raw_len: 5,
                sha256: [2; 32],
                stored_sha256: Some([4; 32]),
            },
        ],
    }
}

/// The same index as written before format version 2: no stored hashes.
fn sample_v1() -> BlockIndex {
    let mut i = sample();
    for e in &mut i.entries {
        e.stored_sha256 = None;
    }
    i
}

#[test]
fn encode_decode() {
    let i = sample();
    assert_eq!(i.version(), Version::V2);
    assert_eq!(BlockIndex::decode(&i.encode()).unwrap(), i);
    assert_eq!(i.encode().len() as u64, encoded_len(Version::V2, 2));
    assert_eq!(i.raw_size(), 4101);
    assert_eq!(i.stored_size(), 780);
    assert_eq!(i.block_of(4095), 0);
    assert_eq!(i.block_of(4096), 1);
}

#[test]
fn version_1_sidecars_read_as_they_are() {
    let v1 = sample_v1();
    let enc = v1.encode();
    assert_eq!(&enc[..7], b"TBIDX1\n");
    assert_eq!(enc.len() as u64, encoded_len(Version::V1, 2));
    assert_eq!(Version::of_len(enc.len() as u64, 2), Some(Version::V1));
    assert_eq!(BlockIndex::decode(&enc).unwrap(), v1);
    for piece in [1, 7, 48, 4096] {
        assert_eq!(stream(&enc, piece, Some(2)).unwrap(), v1);
    }
    // A v1 magic on a v2-length sidecar (or the reverse) is refused, not misparsed.
    let mut forged = sample().encode();
    forged[..7].copy_from_slice(b"TBIDX1\n");
    let body = forged.len() - DIGEST_LEN;
    let digest = Sha256::digest(&forged[..body]);
    forged[body..].copy_from_slice(&digest);
    assert!(BlockIndex::decode(&forged).is_err());
    assert!(stream(&forged, 4096, Some(2)).is_err());
}

#[test]
fn stored_hashes_are_on_every_entry_or_none() {
    let mut mixed = sample();
    mixed.entries[1].stored_sha256 = None;
    let e = mixed.check().unwrap_err();
    assert!(e.contains("block 1"), "{e}");
}

#[test]
fn damage_is_detected() {
    let enc = sample().encode();
    for pos in [0, 10, 20, enc.len() - 1] {
        let mut bad = enc.clone();
        bad[pos] ^= 1;
        assert!(BlockIndex::decode(&bad).is_err(), "flip at {pos} accepted");
        let mut d = IndexDecoder::new(bad.len() as u64, Some(2)).unwrap();
        assert!(d.feed(&bad).and_then(|()| d.finish()).is_err());
    }
    assert!(BlockIndex::decode(&enc[..enc.len() - 3]).is_err());
}

fn stream(bytes: &[u8], piece: usize, blocks: Option<u64>) -> Result<BlockIndex, String> {
    let mut d = IndexDecoder::new(bytes.len() as u64, blocks)?;
    for p in bytes.chunks(piece.max(1)) {
        d.feed(p)?;
    }
    d.finish()
}

#[test]
fn the_streaming_decoder_reads_any_split() {
    let enc = sample().encode();
    for piece in 1..enc.len() + 2 {
        assert_eq!(stream(&enc, piece, Some(2)).unwrap(), sample());
    }
}

#[test]
fn a_sidecar_of_the_wrong_length_is_refused_before_any_byte() {
    let e = IndexDecoder::new(64 << 30, Some(3)).err().unwrap();
    assert_eq!(
        e,
        "it is 68719476736 bytes (64.0 GiB), an index of 3 blocks is 287 bytes \
         (191 in format version 1)"
    );
    assert!(IndexDecoder::new(100, None).is_err());
    assert!(IndexDecoder::new(0, None).is_err());
}

#[test]
fn format_limits_are_checked_entry_by_entry() {
    let mut big = sample();
    big.entries[0].stored_len = 2 << 30;
    big.entries[1].offset = 2 << 30;
    let e = stream(&big.encode(), 4096, Some(2)).unwrap_err();
    assert!(e.contains("block 0 is a member of 2147483648 bytes"), "{e}");
    assert!(big.check().is_ok() && big.check_format().is_err());
    let mut huge_block = sample();
    huge_block.block_size = 1280 << 20;
    huge_block.entries[0].raw_len = 1280 << 20;
    let e = stream(&huge_block.encode(), 4096, None).unwrap_err();
    assert!(e.contains("outside the 4 KiB–64 MiB"), "{e}");
    // A sparse sidecar (zeros) fails at its header, after the first piece.
    let zeros = vec![0u8; encoded_len(Version::V2, 1000) as usize];
    let mut d = IndexDecoder::new(zeros.len() as u64, Some(1000)).unwrap();
    assert!(d.feed(&zeros[..4096]).is_err());
}

mod properties {
    use proptest::prelude::*;

    use super::super::super::format::testing::{config, peak_alloc};
    use super::*;

    /// Valid indexes within the format's limits.
    fn index() -> impl Strategy<Value = BlockIndex> {
        (
            format::MIN_BLOCK_SIZE..=format::MAX_BLOCK_SIZE,
            proptest::collection::vec((any::<u32>(), any::<[u8; 32]>()), 1..60),
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(|(block_size, blocks, last_raw, v2)| {
                let n = blocks.len();
                let mut offset = 0u64;
                let entries = blocks
                    .into_iter()
                    .enumerate()
                    .map(|(i, (len, sha256))| {
                        let raw_len = if i + 1 == n {
                            last_raw % (block_size + 1)
                        } else {
                            block_size
                        };
                        let span = max_member_len(raw_len) - MIN_MEMBER_LEN as u64 + 1;
                        let stored_len = MIN_MEMBER_LEN + (len as u64 % span) as u32;
                        let e = BlockEntry {
                            offset,
                            stored_len,
                            raw_len,
                            sha256,
                            stored_sha256: v2.then(|| {
                                let mut s = sha256;
                                s.reverse();
                                s
                            }),
                        };
                        offset += stored_len as u64;
                        e
                    })
                    .collect();
                BlockIndex {
                    block_size,
                    entries,
                }
            })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn encode_decode_round_trips(i in index(), piece in 1usize..5000) {
            prop_assert!(i.check_format().is_ok());
            let enc = i.encode();
            prop_assert_eq!(enc.len() as u64, encoded_len(i.version(), i.entries.len() as u64));
            prop_assert_eq!(BlockIndex::decode(&enc), Ok(i.clone()));
            prop_assert_eq!(stream(&enc, piece, Some(i.entries.len() as u64)), Ok(i));
        }

        #[test]
        fn any_bytes_decode_or_fail_within_their_length(
            bytes in proptest::collection::vec(any::<u8>(), 0..3000),
            piece in 1usize..5000,
        ) {
            let n = bytes.len();
            let (_, peak) = peak_alloc(|| BlockIndex::decode(&bytes));
            prop_assert!(peak <= 2 * n + 1024, "{n} bytes allocated {peak}");
            let (_, peak) = peak_alloc(|| stream(&bytes, piece, None));
            prop_assert!(peak <= 6 * n + 1024, "{n} bytes allocated {peak}");
        }

        /// Valid sidecars with a header or entries changed (the checksum recomputed, as a
        /// forger would): never a panic, never more memory than the bytes justify, and
        /// whatever decodes holds the invariants.
        #[test]
        fn forged_sidecars_decode_or_fail_within_their_length(
            i in index(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            piece in 1usize..5000,
        ) {
            let mut enc = i.encode();
            let body = enc.len() - DIGEST_LEN;
            for (at, b) in &edits {
                enc[at.index(body)] = *b;
            }
            let digest = Sha256::digest(&enc[..body]);
            enc[body..].copy_from_slice(&digest);
            let n = enc.len();
            let (decoded, peak) = peak_alloc(|| BlockIndex::decode(&enc));
            prop_assert!(peak <= 2 * n + 1024, "{n} bytes allocated {peak}");
            if let Ok(d) = decoded {
                prop_assert!(d.check().is_ok());
            }
            let (streamed, peak) = peak_alloc(|| stream(&enc, piece, None));
            prop_assert!(peak <= 6 * n + 1024, "{n} bytes allocated {peak}");
            if let Ok(d) = streamed {
                prop_assert!(d.check_format().is_ok());
                prop_assert_eq!(d.encode(), enc);
            }
        }
    }
}
