//! The block index: per block its stored offset and length, raw length and SHA-256. Kept in the
//! catalog (the root of trust) and as the `NAME.gz.idx` sidecar on every tier.
//!
//! Sidecar encoding: `TBIDX1\n`, block_size u32, count u32, then per block offset u64, stored
//! length u32, raw length u32, sha256 [32]; then the SHA-256 of everything before it, so a damaged
//! sidecar is detected rather than trusted. Little-endian.

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 7] = b"TBIDX1\n";
const ENTRY_LEN: usize = 8 + 4 + 4 + 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    /// Offset of the member in the stored file.
    pub offset: u64,
    /// Length of the whole member (header to trailer).
    pub stored_len: u32,
    /// Uncompressed length: `block_size` for every block but the last.
    pub raw_len: u32,
    pub sha256: [u8; 32],
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

    /// Checks the invariants every index must hold: contiguous members, fixed-size blocks.
    pub fn check(&self) -> Result<(), String> {
        if self.block_size == 0 {
            return Err("block size 0".into());
        }
        let mut next = 0u64;
        for (i, e) in self.entries.iter().enumerate() {
            if e.offset != next {
                return Err(format!(
                    "block {i} starts at {} instead of {next}",
                    e.offset
                ));
            }
            let last = i + 1 == self.entries.len();
            if (!last && e.raw_len != self.block_size) || e.raw_len > self.block_size {
                return Err(format!(
                    "block {i} has {} bytes with block size {}",
                    e.raw_len, self.block_size
                ));
            }
            next += e.stored_len as u64;
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 8 + self.entries.len() * ENTRY_LEN + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.stored_len.to_le_bytes());
            out.extend_from_slice(&e.raw_len.to_le_bytes());
            out.extend_from_slice(&e.sha256);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    pub fn decode(buf: &[u8]) -> Result<BlockIndex, String> {
        let head = MAGIC.len() + 8;
        if buf.len() < head + 32 || &buf[..MAGIC.len()] != MAGIC {
            return Err("not a tierback block index".into());
        }
        let (body, digest) = buf.split_at(buf.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err("block index checksum mismatch (damaged sidecar)".into());
        }
        let u32_at = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().unwrap());
        let block_size = u32_at(MAGIC.len());
        let count = u32_at(MAGIC.len() + 4) as usize;
        if body.len() != head + count * ENTRY_LEN {
            return Err(format!(
                "block index length does not match its {count} entries"
            ));
        }
        let entries = body[head..]
            .chunks_exact(ENTRY_LEN)
            .map(|c| BlockEntry {
                offset: u64::from_le_bytes(c[..8].try_into().unwrap()),
                stored_len: u32::from_le_bytes(c[8..12].try_into().unwrap()),
                raw_len: u32::from_le_bytes(c[12..16].try_into().unwrap()),
                sha256: c[16..48].try_into().unwrap(),
            })
            .collect();
        let index = BlockIndex {
            block_size,
            entries,
        };
        index.check()?;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BlockIndex {
        BlockIndex {
            block_size: 100,
            entries: vec![
                BlockEntry {
                    offset: 0,
                    stored_len: 70,
                    raw_len: 100,
                    sha256: [1; 32],
                },
                BlockEntry {
                    offset: 70,
                    stored_len: 30,
                    raw_len: 5,
                    sha256: [2; 32],
                },
            ],
        }
    }

    #[test]
    fn encode_decode() {
        let i = sample();
        assert_eq!(BlockIndex::decode(&i.encode()).unwrap(), i);
        assert_eq!(i.raw_size(), 105);
        assert_eq!(i.stored_size(), 100);
        assert_eq!(i.block_of(99), 0);
        assert_eq!(i.block_of(100), 1);
    }

    #[test]
    fn damage_is_detected() {
        let enc = sample().encode();
        for pos in [0, 10, 20, enc.len() - 1] {
            let mut bad = enc.clone();
            bad[pos] ^= 1;
            assert!(BlockIndex::decode(&bad).is_err(), "flip at {pos} accepted");
        }
        assert!(BlockIndex::decode(&enc[..enc.len() - 3]).is_err());
    }
}
