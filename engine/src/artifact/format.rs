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
    if (h.member_len as usize) < HEADER_LEN + TRAILER_LEN {
        return Err(format!(
            "member length {} is impossibly small",
            h.member_len
        ));
    }
    Ok(h)
}

/// Inflates a complete member and checks ISIZE, SHA-256 and (if `check_crc`) CRC32 against its
/// own header. The caller separately checks that header against the catalog's index. Readers
/// skip the CRC: the SHA-256 already decides whether the bytes are right; `verify` checks both.
pub fn decode_member(
    member: &[u8],
    decompressor: &mut libdeflater::Decompressor,
    check_crc: bool,
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
    // A reused buffer: the length check below guarantees the inflater overwrote all of it.
    let mut raw = super::buffers::take(h.raw_len as usize);
    let checked = (|| {
        let n = decompressor
            .deflate_decompress(&member[HEADER_LEN..member.len() - TRAILER_LEN], &mut raw)
            .map_err(|e| format!("inflate failed: {e:?}"))?;
        if n != raw.len() {
            return Err(format!("inflated to {n} bytes, expected {}", raw.len()));
        }
        if check_crc && libdeflater::crc32(&raw) != crc {
            return Err("CRC32 mismatch".into());
        }
        if <[u8; 32]>::from(Sha256::digest(&raw)) != h.sha256 {
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
        let (h2, back) = decode_member(&member, &mut d, true).unwrap();
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
            match decode_member(&bad, &mut d, true) {
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
            if let Ok((_, back)) = decode_member(&bad, &mut d, false) {
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
            let (_, a) = decode_member(&m_long, &mut d, true).unwrap();
            assert_eq!(a, long);
            super::super::buffers::give(a);
            let (_, b) = decode_member(&m_short, &mut d, true).unwrap();
            assert_eq!(b, short);
            super::super::buffers::give(b);
        }
    }

    #[test]
    fn empty_block_is_a_valid_member() {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(9).unwrap());
        let (member, h) = encode_member(b"", &mut c);
        assert_eq!(h.raw_len, 0);
        let (_, back) =
            decode_member(&member, &mut libdeflater::Decompressor::new(), true).unwrap();
        assert!(back.is_empty());
    }
}
