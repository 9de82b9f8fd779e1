//! The block index: per block its stored offset and length, raw length and SHA-256, and (format
//! version 2) the SHA-256 of the stored member, which is what reads check. Kept in the catalog
//! (the root of trust) and as the `NAME.gz.idx` sidecar on every tier.
//!
//! Sidecar encoding: a magic (`TBIDX1\n` or `TBIDX2\n`), block_size u32, count u32, then per
//! block offset u64, stored length u32, raw length u32, raw sha256 [32], and in version 2 the
//! stored member's sha256 [32]; then the SHA-256 of everything before it, so a damaged sidecar is
//! detected rather than trusted. Little-endian. Version 1 indexes (artifacts written before
//! version 2) are read as they are and never rewritten.
//!
//! A sidecar's length is a function of its version and block count ([`encoded_len`]), so a
//! reader that knows the count (from the metadata) knows exactly how many bytes to expect before
//! reading any. The [`IndexDecoder`] reads a sidecar in pieces, checking each entry as it
//! arrives, and holds only entries it has checked: its memory follows the bytes it was given,
//! never a count it was told.

use sha2::{Digest, Sha256};

use super::format::{self, MIN_MEMBER_LEN, describe_len, max_member_len};

const HEAD_LEN: usize = 7 + 8;
const DIGEST_LEN: usize = 32;

/// The index encodings. Version 2 adds each stored member's SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    fn magic(self) -> &'static [u8; 7] {
        match self {
            Version::V1 => b"TBIDX1\n",
            Version::V2 => b"TBIDX2\n",
        }
    }

    fn from_magic(magic: &[u8]) -> Option<Version> {
        [Version::V1, Version::V2]
            .into_iter()
            .find(|v| v.magic() == magic)
    }

    fn entry_len(self) -> usize {
        match self {
            Version::V1 => 8 + 4 + 4 + 32,
            Version::V2 => 8 + 4 + 4 + 32 + 32,
        }
    }

    /// The version whose sidecar for `count` blocks is `total` bytes, if any.
    pub fn of_len(total: u64, count: u64) -> Option<Version> {
        [Version::V1, Version::V2]
            .into_iter()
            .find(|&v| encoded_len(v, count) == total)
    }
}

/// The length of the sidecar of an index of `count` blocks.
pub fn encoded_len(version: Version, count: u64) -> u64 {
    (HEAD_LEN + DIGEST_LEN) as u64 + count.saturating_mul(version.entry_len() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    /// Offset of the member in the stored file.
    pub offset: u64,
    /// Length of the whole member (header to trailer).
    pub stored_len: u32,
    /// Uncompressed length: `block_size` for every block but the last.
    pub raw_len: u32,
    /// SHA-256 of the uncompressed block (also in the member's header): the block's identity.
    pub sha256: [u8; 32],
    /// SHA-256 of the member as stored, header to trailer; `None` in a version 1 index.
    pub stored_sha256: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockIndex {
    pub block_size: u32,
    pub entries: Vec<BlockEntry>,
}

impl BlockIndex {
    pub fn raw_size(&self) -> u64 {
        self.entries.iter().map(|e| e.raw_len as u64).sum()
    }

    pub fn stored_size(&self) -> u64 {
        self.entries
            .last()
            .map_or(0, |e| e.offset + e.stored_len as u64)
    }

    /// The block holding uncompressed byte `offset` (blocks are fixed-size but the last).
    pub fn block_of(&self, offset: u64) -> usize {
        (offset / self.block_size as u64) as usize
    }

    /// Uncompressed offset where block `i` starts.
    pub fn raw_offset(&self, i: usize) -> u64 {
        i as u64 * self.block_size as u64
    }

    /// Version 2 when the entries carry stored hashes ([`Self::check`] holds them to all or none).
    pub fn version(&self) -> Version {
        match self.entries.first() {
            Some(e) if e.stored_sha256.is_none() => Version::V1,
            _ => Version::V2,
        }
    }

    /// Checks the invariants every index must hold: contiguous members, fixed-size blocks, and
    /// stored hashes on every entry or on none.
    pub fn check(&self) -> Result<(), String> {
        if self.block_size == 0 {
            return Err("block size 0".into());
        }
        let version = self.version();
        let mut next = 0u64;
        for (i, e) in self.entries.iter().enumerate() {
            check_entry(self.block_size, i, e, next, i + 1 == self.entries.len())?;
            if (version == Version::V2) != e.stored_sha256.is_some() {
                return Err(format!(
                    "block {i} differs from block 0 in having a stored SHA-256"
                ));
            }
            next += e.stored_len as u64;
        }
        Ok(())
    }

    /// Checks what an index read from a tier must also hold: the invariants of [`Self::check`],
    /// a block size within the format's limits, at least one block, and every member's length
    /// within what deflate can make of its block.
    pub fn check_format(&self) -> Result<(), String> {
        format::check_block_size(self.block_size as u64)?;
        if self.entries.is_empty() {
            return Err("the index has no blocks".into());
        }
        self.check()?;
        for (i, e) in self.entries.iter().enumerate() {
            check_member_len(i, e)?;
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let version = self.version();
        let mut out = Vec::with_capacity(encoded_len(version, self.entries.len() as u64) as usize);
        out.extend_from_slice(version.magic());
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.stored_len.to_le_bytes());
            out.extend_from_slice(&e.raw_len.to_le_bytes());
            out.extend_from_slice(&e.sha256);
            if let Some(stored) = &e.stored_sha256 {
                out.extend_from_slice(stored);
            }
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Decodes a whole sidecar (or the catalog's copy): checksum first, then the entries, whose
    /// number is the one the length allows. Checks [`Self::check`]'s invariants, not the format
    /// limits (see [`Self::check_format`] and [`IndexDecoder`] for what comes from a tier).
    pub fn decode(buf: &[u8]) -> Result<BlockIndex, String> {
        let version = (buf.len() >= HEAD_LEN + DIGEST_LEN)
            .then(|| Version::from_magic(&buf[..7]))
            .flatten()
            .ok_or("not a tierback block index")?;
        let (body, digest) = buf.split_at(buf.len() - DIGEST_LEN);
        if Sha256::digest(body).as_slice() != digest {
            return Err("block index checksum mismatch (damaged sidecar)".into());
        }
        let block_size = u32_at(body, 7);
        let count = u32_at(body, 7 + 4) as usize;
        let entry_len = version.entry_len();
        let room = (body.len() - HEAD_LEN) / entry_len;
        if count != room || !(body.len() - HEAD_LEN).is_multiple_of(entry_len) {
            return Err(format!(
                "block index length does not match its {count} entries"
            ));
        }
        // `count` is bounded by the bytes at hand: the capacity is what the input holds.
        let mut entries = Vec::with_capacity(count);
        entries.extend(
            body[HEAD_LEN..]
                .chunks_exact(entry_len)
                .map(|c| parse_entry(version, c)),
        );
        let index = BlockIndex {
            block_size,
            entries,
        };
        index.check()?;
        Ok(index)
    }
}

fn u32_at(buf: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(buf[i..i + 4].try_into().expect("4 bytes"))
}

fn parse_entry(version: Version, c: &[u8]) -> BlockEntry {
    BlockEntry {
        offset: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
        stored_len: u32_at(c, 8),
        raw_len: u32_at(c, 12),
        sha256: c[16..48].try_into().expect("32 bytes"),
        stored_sha256: (version == Version::V2).then(|| c[48..80].try_into().expect("32 bytes")),
    }
}

/// Entry `i` starts where the previous ended, and holds a full block unless it is the last.
fn check_entry(
    block_size: u32,
    i: usize,
    e: &BlockEntry,
    next: u64,
    last: bool,
) -> Result<(), String> {
    if e.offset != next {
        return Err(format!(
            "block {i} starts at {} instead of {next}",
            e.offset
        ));
    }
    if (!last && e.raw_len != block_size) || e.raw_len > block_size {
        return Err(format!(
            "block {i} has {} bytes with block size {block_size}",
            e.raw_len
        ));
    }
    Ok(())
}

fn check_member_len(i: usize, e: &BlockEntry) -> Result<(), String> {
    if e.stored_len < MIN_MEMBER_LEN || e.stored_len as u64 > max_member_len(e.raw_len) {
        return Err(format!(
            "block {i} is a member of {} bytes: one holding {} bytes is {MIN_MEMBER_LEN} to {} bytes",
            e.stored_len,
            e.raw_len,
            max_member_len(e.raw_len)
        ));
    }
    Ok(())
}

/// Decodes an index sidecar fed in pieces of any size, as read from a tier, checking the format
/// limits ([`BlockIndex::check_format`]) entry by entry: a forged or sparse sidecar fails at its
/// first bad entry, after one piece, and the entries held are only those checked.
pub struct IndexDecoder {
    /// The sidecar's whole length (from the tier's listing), fixing the entry count.
    total: u64,
    /// The block count the caller expects (from the metadata), if it knows one.
    expect_blocks: Option<u64>,
    /// Bytes consumed so far.
    seen: u64,
    hasher: Sha256,
    /// Bytes of an unfinished header, entry or digest.
    partial: Vec<u8>,
    /// Known once the header is read: the version its magic names, and the count.
    version: Option<Version>,
    count: u64,
    block_size: u32,
    entries: Vec<BlockEntry>,
    next_offset: u64,
    digest: Vec<u8>,
}

impl IndexDecoder {
    /// A decoder for a sidecar `total` bytes long, which must be the length of an index of
    /// `expect_blocks` blocks (in either version) if that is given.
    pub fn new(total: u64, expect_blocks: Option<u64>) -> Result<IndexDecoder, String> {
        if let Some(count) = expect_blocks
            && Version::of_len(total, count).is_none()
        {
            return Err(format!(
                "it is {}, an index of {count} blocks is {} bytes ({} in format version 1)",
                describe_len(total),
                encoded_len(Version::V2, count),
                encoded_len(Version::V1, count)
            ));
        }
        let fixed = (HEAD_LEN + DIGEST_LEN) as u64;
        let fits =
            |v: Version| total >= fixed && (total - fixed).is_multiple_of(v.entry_len() as u64);
        if !fits(Version::V1) && !fits(Version::V2) {
            return Err(format!(
                "it is {}: no block index has that length ({fixed} bytes and {} or {} per block)",
                describe_len(total),
                Version::V2.entry_len(),
                Version::V1.entry_len()
            ));
        }
        Ok(IndexDecoder {
            total,
            expect_blocks,
            seen: 0,
            hasher: Sha256::new(),
            partial: Vec::with_capacity(Version::V2.entry_len()),
            version: None,
            count: 0,
            block_size: 0,
            entries: Vec::new(),
            next_offset: 0,
            digest: Vec::with_capacity(DIGEST_LEN),
        })
    }

    /// How many bytes are still expected.
    pub fn remaining(&self) -> u64 {
        self.total - self.seen
    }

    /// Takes the next piece of the sidecar.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        if bytes.len() as u64 > self.remaining() {
            return Err(format!(
                "more bytes than the {} the sidecar has",
                self.total
            ));
        }
        let body_len = self.total - DIGEST_LEN as u64;
        while !bytes.is_empty() {
            if self.seen >= body_len {
                self.seen += bytes.len() as u64;
                self.digest.extend_from_slice(bytes);
                return Ok(());
            }
            let in_body = bytes.len().min((body_len - self.seen) as usize);
            let (body, rest) = bytes.split_at(in_body);
            self.hasher.update(body);
            self.seen += body.len() as u64;
            self.take_body(body)?;
            bytes = rest;
        }
        Ok(())
    }

    /// Parses body bytes: the header, then whole entries, keeping an unfinished one aside.
    fn take_body(&mut self, mut body: &[u8]) -> Result<(), String> {
        while !body.is_empty() {
            let want = self.version.map_or(HEAD_LEN, Version::entry_len);
            if self.partial.is_empty() && body.len() >= want {
                // The common case: whole entries straight from the piece, capacity for them
                // reserved as they arrive (bounded by the bytes given, not the count claimed).
                if let Some(version) = self.version {
                    let n = body.len() / want;
                    self.entries.reserve(n);
                    for c in body[..n * want].chunks_exact(want) {
                        self.take_entry(parse_entry(version, c))?;
                    }
                    body = &body[n * want..];
                } else {
                    self.take_head(&body[..HEAD_LEN])?;
                    body = &body[HEAD_LEN..];
                }
                continue;
            }
            let n = (want - self.partial.len()).min(body.len());
            self.partial.extend_from_slice(&body[..n]);
            body = &body[n..];
            if self.partial.len() == want {
                let whole = std::mem::take(&mut self.partial);
                match self.version {
                    Some(version) => self.take_entry(parse_entry(version, &whole))?,
                    None => self.take_head(&whole)?,
                }
                self.partial = whole;
                self.partial.clear();
            }
        }
        Ok(())
    }

    fn take_head(&mut self, head: &[u8]) -> Result<(), String> {
        let version =
            Version::from_magic(&head[..7]).ok_or("not a tierback block index (bad magic)")?;
        let fixed = (HEAD_LEN + DIGEST_LEN) as u64;
        let entry_len = version.entry_len() as u64;
        if !(self.total - fixed).is_multiple_of(entry_len)
            || self
                .expect_blocks
                .is_some_and(|n| encoded_len(version, n) != self.total)
        {
            return Err(format!(
                "it is {}, which is no index in format version {}",
                describe_len(self.total),
                if version == Version::V1 { 1 } else { 2 }
            ));
        }
        let block_size = u32_at(head, 7);
        format::check_block_size(block_size as u64)?;
        let count = u32_at(head, 7 + 4) as u64;
        let room = (self.total - fixed) / entry_len;
        if count != room {
            return Err(format!(
                "its header says {count} blocks, its length holds {room}"
            ));
        }
        if count == 0 {
            return Err("the index has no blocks".into());
        }
        self.version = Some(version);
        self.count = count;
        self.block_size = block_size;
        Ok(())
    }

    fn take_entry(&mut self, e: BlockEntry) -> Result<(), String> {
        let i = self.entries.len();
        let last = i as u64 + 1 == self.count;
        check_entry(self.block_size, i, &e, self.next_offset, last)?;
        check_member_len(i, &e)?;
        self.next_offset += e.stored_len as u64;
        self.entries.push(e);
        Ok(())
    }

    /// The index, once every byte was fed and its checksum matches.
    pub fn finish(self) -> Result<BlockIndex, String> {
        if self.remaining() != 0 {
            return Err(format!(
                "the sidecar ended {} bytes early",
                self.remaining()
            ));
        }
        if self.hasher.finalize().as_slice() != self.digest.as_slice() {
            return Err("block index checksum mismatch (damaged sidecar)".into());
        }
        Ok(BlockIndex {
            block_size: self.block_size,
            entries: self.entries,
        })
    }
}

#[cfg(test)]
mod tests;
