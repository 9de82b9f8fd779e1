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
    let (h, crc) = check_framing(member)?;
    // A reused buffer: the length check below guarantees the inflater overwrote all of it.
    let mut raw = super::buffers::take(h.raw_len as usize);
    let checked = (|| {
        let n = decompressor
            .deflate_decompress(deflate_data(member), &mut raw)
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

/// Checks a whole member's framing (its length against its header, ISIZE against the header,
/// the header's length against what the deflate data can hold) and returns the header and the
/// trailer's CRC32.
fn check_framing(member: &[u8]) -> Result<(MemberHeader, u32), String> {
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
    Ok((h, crc))
}

/// The deflate data of a member whose framing was checked.
fn deflate_data(member: &[u8]) -> &[u8] {
    &member[HEADER_LEN..member.len() - TRAILER_LEN]
}

/// Bytes `range` of the block a member holds, inflating only as far as `range.end` (a random
/// read of a few KiB needs on average half the block: half the inflating). A prefix has no
/// checksum of its own: the caller checks the stored member's SHA-256 first; the CRC32 and the
/// raw SHA-256 cover the whole block and are left to whole-block reads. zlib-rs rather than
/// libdeflate, which only ever inflates a whole member.
pub fn inflate_range(member: &[u8], range: std::ops::Range<usize>) -> Result<Vec<u8>, String> {
    let (h, _) = check_framing(member)?;
    if range.start > range.end || range.end > h.raw_len as usize {
        return Err(format!(
            "bytes {range:?} are not within the block's {} bytes",
            h.raw_len
        ));
    }
    // A reused buffer: the length check below guarantees the inflater overwrote all of it.
    let mut prefix = super::buffers::take(range.end);
    let (got, code) = zlib_rs::inflate::uncompress_slice(
        &mut prefix,
        deflate_data(member),
        zlib_rs::inflate::InflateConfig { window_bits: -15 },
    );
    let n = got.len();
    // Output full stops the inflater (`BufError`), or the block ends right there.
    use zlib_rs::ReturnCode::{BufError, Ok as Filled, StreamEnd};
    let result = if n == range.end && matches!(code, BufError | Filled | StreamEnd) {
        Ok(prefix[range].to_vec())
    } else {
        Err(format!(
            "inflate failed: {code:?} after {n} of the first {} bytes",
            range.end
        ))
    };
    super::buffers::give(prefix);
    result
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
mod tests;
