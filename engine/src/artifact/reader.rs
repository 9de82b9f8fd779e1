//! The block reader every read path shares (`cat`, `verify`, the mount, restore tests): fetch a
//! member's bytes from a tier, check them against the catalog's index, inflate. Bytes become a
//! [`VerifiedBlock`] only through that check, so corrupt data is never handed out.
//!
//! A read of a format version 2 artifact checks the SHA-256 of the member as stored (about a
//! quarter of the bytes of the block it holds) before inflating, then the gzip CRC32: the
//! backup inflated every member once and compared it with its block, and inflating is
//! deterministic, so intact stored bytes are the right block. A version 1 artifact has no
//! stored hashes; its reads check the block's raw SHA-256 as they always did.

use std::io::Write;
use std::ops::Deref;

use sha2::{Digest, Sha256};

use super::format::{self, Checks, decode_member};
use super::{BlockEntry, BlockIndex};
use crate::parallel::ordered_map;
use crate::store::Store;
use crate::{Error, Result};

/// Decompressed bytes of one block that matched the catalog's index.
#[derive(Debug, Clone)]
pub struct VerifiedBlock {
    block: usize,
    data: Vec<u8>,
}

impl VerifiedBlock {
    pub fn block(&self) -> usize {
        self.block
    }
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }
}

impl Drop for VerifiedBlock {
    /// The buffer goes back for the next block (see [`super::buffers`]).
    fn drop(&mut self) {
        super::buffers::give(std::mem::take(&mut self.data));
    }
}

impl Deref for VerifiedBlock {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

/// How much of a member [`verify_member`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// What a read needs to hand out only right bytes (see the module's comment).
    Read,
    /// Everything the format records: stored SHA-256, CRC32 and raw SHA-256 (`verify`).
    Full,
}

/// Checks a fetched member against the index entry the catalog holds for it: length, the stored
/// SHA-256 (format version 2), ISIZE, and CRC32 and the raw SHA-256 as `depth` asks. `file`
/// names the object in error messages.
pub fn verify_member(
    file: &str,
    block: usize,
    expected: &BlockEntry,
    member: &[u8],
    decompressor: &mut libdeflater::Decompressor,
    depth: Depth,
) -> Result<VerifiedBlock> {
    let fail = |reason: String| Error::integrity(file, Some(block as u64), reason);
    check_stored(expected, member).map_err(fail)?;
    let checks = match depth {
        Depth::Full => Checks::ALL,
        Depth::Read => Checks {
            crc32: expected.stored_sha256.is_some(),
            raw_sha256: expected.stored_sha256.is_none(),
        },
    };
    let (header, data) = decode_member(member, decompressor, checks).map_err(fail)?;
    if header.raw_len != expected.raw_len || header.sha256 != expected.sha256 {
        return Err(fail(
            "member header differs from the catalog's index".into(),
        ));
    }
    Ok(VerifiedBlock { block, data })
}

/// The checks of a member as stored: its length, and its SHA-256 where the index has one
/// (format version 2).
fn check_stored(expected: &BlockEntry, member: &[u8]) -> std::result::Result<(), String> {
    if member.len() != expected.stored_len as usize {
        return Err(format!(
            "member is {} bytes, the index says {}",
            member.len(),
            expected.stored_len
        ));
    }
    if let Some(stored) = &expected.stored_sha256
        && <[u8; 32]>::from(Sha256::digest(member)) != *stored
    {
        return Err("SHA-256 of the stored member differs from the catalog's index".into());
    }
    Ok(())
}

/// Checks a block read decompressed (from a restic tier) against the index: its length and
/// its raw SHA-256, the block's identity on every tier.
pub fn verify_raw(
    file: &str,
    block: usize,
    expected: &BlockEntry,
    data: Vec<u8>,
) -> Result<VerifiedBlock> {
    let fail = |reason: String| Error::integrity(file, Some(block as u64), reason);
    if data.len() != expected.raw_len as usize {
        return Err(fail(format!(
            "block is {} bytes, the index says {}",
            data.len(),
            expected.raw_len
        )));
    }
    if <[u8; 32]>::from(Sha256::digest(&data)) != expected.sha256 {
        return Err(fail(
            "SHA-256 of the block differs from the catalog's index".into(),
        ));
    }
    Ok(VerifiedBlock { block, data })
}

/// Reads one artifact copy on one tier, block by block.
pub struct ArtifactReader<'a> {
    pub store: &'a dyn Store,
    /// Object key on the tier (`svc/2026-01-16/name_120000.sql.gz`).
    pub key: &'a str,
    pub index: &'a BlockIndex,
}

impl ArtifactReader<'_> {
    fn label(&self) -> String {
        format!("{}:{}", self.store.name(), self.key)
    }

    fn entry(&self, i: usize) -> Result<&BlockEntry> {
        self.index.entries.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no block {i} (it has {})",
                self.label(),
                self.index.entries.len()
            ))
        })
    }

    /// Fetches, inflates and verifies block `i`.
    pub fn read_block(
        &self,
        i: usize,
        decompressor: &mut libdeflater::Decompressor,
    ) -> Result<VerifiedBlock> {
        let entry = self.entry(i)?;
        if self.store.holds_decompressed() {
            let raw =
                self.store
                    .get_range(self.key, self.index.raw_offset(i), entry.raw_len.into())?;
            return verify_raw(&self.label(), i, entry, raw);
        }
        let member = self
            .store
            .get_range(self.key, entry.offset, entry.stored_len as u64)?;
        verify_member(&self.label(), i, entry, &member, decompressor, Depth::Read)
    }

    /// Bytes `range` of block `i`, inflating no further than `range.end`: for a read that needs
    /// only part of a block and will not read the rest (a random read through the mount). The
    /// stored member's SHA-256 is checked before inflating, as for a whole block; the checks that
    /// cover the whole block (CRC32, raw SHA-256) are not made. `None` when the copy has no
    /// check for less than a whole block (format version 1, a tier holding the stream
    /// decompressed): read the block.
    pub fn read_range(&self, i: usize, range: std::ops::Range<usize>) -> Result<Option<Vec<u8>>> {
        let entry = self.entry(i)?;
        if entry.stored_sha256.is_none() || self.store.holds_decompressed() {
            return Ok(None);
        }
        let member = self
            .store
            .get_range(self.key, entry.offset, entry.stored_len as u64)?;
        let fail = |reason: String| Error::integrity(self.label(), Some(i as u64), reason);
        check_stored(entry, &member).map_err(fail)?;
        format::inflate_range(&member, range)
            .map(Some)
            .map_err(fail)
    }

    /// Streams every block, verified and in order, to `out`, decoding ahead on `threads`
    /// workers. Stops before writing the first block that fails its check. Returns bytes written.
    pub fn copy_to(&self, out: &mut (dyn Write + Send), threads: usize) -> Result<u64> {
        let mut written = 0u64;
        ordered_map(
            (0..self.index.entries.len()).map(Ok),
            threads,
            threads * 2,
            libdeflater::Decompressor::new,
            |d, i| self.read_block(i, d),
            |block: Result<VerifiedBlock>| {
                let block = block?;
                out.write_all(&block)
                    .map_err(|e| Error::io("writing output", e))?;
                written += block.len() as u64;
                Ok(())
            },
        )?;
        out.flush().map_err(|e| Error::io("writing output", e))?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::writer::{WriteOptions, write_artifact};
    use crate::store::memory::MemoryStore;

    fn stored(data: &[u8]) -> (MemoryStore, BlockIndex) {
        let mut out = Vec::new();
        let w = write_artifact(
            &mut &data[..],
            &mut out,
            WriteOptions {
                block_size: 4096,
                level: 6,
                threads: 2,
            },
            &|_| {},
        )
        .unwrap();
        let store = MemoryStore::new("mem");
        store.put_bytes("s/d/f.gz", &out).unwrap();
        (store, w.index)
    }

    #[test]
    fn copies_exact_bytes() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("{i},").into_bytes())
            .collect();
        let (store, index) = stored(&data);
        let r = ArtifactReader {
            store: &store,
            key: "s/d/f.gz",
            index: &index,
        };
        let mut out = Vec::new();
        assert_eq!(r.copy_to(&mut out, 3).unwrap(), data.len() as u64);
        assert_eq!(out, data);
    }

    #[test]
    fn corrupt_block_stops_before_it_is_written() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("{i},").into_bytes())
            .collect();
        let (store, index) = stored(&data);
        let bad_block = 5;
        let e = &index.entries[bad_block];
        store.corrupt("s/d/f.gz", (e.offset + e.stored_len as u64 / 2) as usize);
        let r = ArtifactReader {
            store: &store,
            key: "s/d/f.gz",
            index: &index,
        };
        let mut out = Vec::new();
        let err = r.copy_to(&mut out, 2).unwrap_err();
        assert!(
            matches!(err, Error::Integrity { block: Some(5), .. }),
            "{err}"
        );
        assert_eq!(
            out,
            &data[..bad_block * 4096],
            "only the good prefix is written"
        );
        // Other blocks stay readable.
        let mut d = libdeflater::Decompressor::new();
        assert_eq!(
            &*r.read_block(6, &mut d).unwrap(),
            &data[6 * 4096..7 * 4096]
        );
    }

    fn sample() -> Vec<u8> {
        (0..40_000u32)
            .flat_map(|i| format!("{i},").into_bytes())
            .collect()
    }

    #[test]
    fn a_flipped_stored_byte_fails_exactly_its_block() {
        let data = sample();
        let (_, index) = stored(&data);
        let good = stored_bytes(&data);
        let mut d = libdeflater::Decompressor::new();
        for (bad, e) in index.entries.iter().enumerate() {
            // Any byte of the member: header (even the mtime no reader uses), deflate data, CRC.
            for at in [0, 5, e.stored_len as u64 / 2, e.stored_len as u64 - 5] {
                let store = MemoryStore::new("mem");
                let mut bytes = good.clone();
                bytes[(e.offset + at) as usize] ^= 0x01;
                store.put_bytes("s/d/f.gz", &bytes).unwrap();
                let r = ArtifactReader {
                    store: &store,
                    key: "s/d/f.gz",
                    index: &index,
                };
                for i in 0..index.entries.len() {
                    let read = r.read_block(i, &mut d);
                    // A read of part of the block (inflating only that far) checks as much.
                    let part = r.read_range(i, 10..200);
                    if i == bad {
                        for err in [read.unwrap_err(), part.unwrap_err()] {
                            assert!(
                                matches!(err, Error::Integrity { block: Some(b), .. } if b == bad as u64),
                                "block {bad} at {at}: {err}"
                            );
                        }
                    } else {
                        let got = read.unwrap();
                        let start = index.raw_offset(i) as usize;
                        assert_eq!(&*got, &data[start..start + got.len()]);
                        assert_eq!(part.unwrap().unwrap(), &data[start + 10..start + 200]);
                    }
                }
            }
        }
    }

    #[test]
    fn a_range_is_read_only_where_the_stored_member_can_be_checked() {
        let data = sample();
        let (store, index) = stored(&data);
        let r = ArtifactReader {
            store: &store,
            key: "s/d/f.gz",
            index: &index,
        };
        let start = index.raw_offset(3) as usize;
        assert_eq!(
            r.read_range(3, 0..4096).unwrap().unwrap(),
            &data[start..start + 4096]
        );
        // Format version 1 has no stored SHA-256: the caller reads the whole block instead.
        let mut v1 = index.clone();
        for e in &mut v1.entries {
            e.stored_sha256 = None;
        }
        let r = ArtifactReader {
            store: &store,
            key: "s/d/f.gz",
            index: &v1,
        };
        assert!(r.read_range(3, 0..4096).unwrap().is_none());
    }

    fn stored_bytes(data: &[u8]) -> Vec<u8> {
        let (store, index) = stored(data);
        store.get_range("s/d/f.gz", 0, index.stored_size()).unwrap()
    }

    /// A member rewritten with a wrong raw SHA-256 in its header and in the index, its stored
    /// hash recomputed to match (what a faulty backup could have recorded): reads trust the
    /// stored hash and the CRC, a full check does not.
    #[test]
    fn a_wrong_raw_hash_behind_intact_stored_bytes_is_caught_by_the_full_check() {
        let data = sample();
        let (_, mut index) = stored(&data);
        let mut bytes = stored_bytes(&data);
        let e = &mut index.entries[2];
        let member = &mut bytes[e.offset as usize..(e.offset + e.stored_len as u64) as usize];
        member[24] ^= 0xff; // the header's raw SHA-256 (see format.rs)
        e.sha256[0] ^= 0xff;
        e.stored_sha256 = Some(Sha256::digest(&*member).into());
        let e = *e;
        let member = &bytes[e.offset as usize..(e.offset + e.stored_len as u64) as usize];
        let mut d = libdeflater::Decompressor::new();
        let read = verify_member("f", 2, &e, member, &mut d, Depth::Read).unwrap();
        assert_eq!(&*read, &data[2 * 4096..3 * 4096]);
        let err = verify_member("f", 2, &e, member, &mut d, Depth::Full).unwrap_err();
        assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
    }

    /// Format version 1 (no stored hashes): reads check the raw SHA-256 instead, so a flipped
    /// byte is still caught; the same bytes read the same under either index.
    #[test]
    fn a_version_1_index_reads_the_same_bytes_and_still_catches_damage() {
        let data = sample();
        let (store, index) = stored(&data);
        let mut v1 = index.clone();
        for e in &mut v1.entries {
            e.stored_sha256 = None;
        }
        let mut out = (Vec::new(), Vec::new());
        for (idx, out) in [(&index, &mut out.0), (&v1, &mut out.1)] {
            ArtifactReader {
                store: &store,
                key: "s/d/f.gz",
                index: idx,
            }
            .copy_to(out, 2)
            .unwrap();
        }
        assert_eq!(out.0, data);
        assert_eq!(out.1, data);
        let e = v1.entries[3];
        store.corrupt("s/d/f.gz", (e.offset + e.stored_len as u64 / 2) as usize);
        let r = ArtifactReader {
            store: &store,
            key: "s/d/f.gz",
            index: &v1,
        };
        let err = r
            .read_block(3, &mut libdeflater::Decompressor::new())
            .unwrap_err();
        assert!(
            matches!(err, Error::Integrity { block: Some(3), .. }),
            "{err}"
        );
    }
}
