//! The block reader every read path shares (`cat`, `verify`, the mount): fetch a member's bytes
//! from a tier, inflate, check length, CRC32 and SHA-256 against the catalog's index. Bytes
//! become a [`VerifiedBlock`] only through that check, so corrupt data is never handed out.

use std::io::Write;
use std::ops::Deref;

use super::format::decode_member;
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

/// Checks a fetched member against the index entry the catalog holds for it: length, ISIZE and
/// SHA-256 always, the gzip CRC32 too when `check_crc` (for `verify`; redundant for reads).
/// `file` names the object in error messages.
pub fn verify_member(
    file: &str,
    block: usize,
    expected: &BlockEntry,
    member: &[u8],
    decompressor: &mut libdeflater::Decompressor,
    check_crc: bool,
) -> Result<VerifiedBlock> {
    let fail = |reason: String| Error::integrity(file, Some(block as u64), reason);
    if member.len() != expected.stored_len as usize {
        return Err(fail(format!(
            "member is {} bytes, the index says {}",
            member.len(),
            expected.stored_len
        )));
    }
    let (header, data) = decode_member(member, decompressor, check_crc).map_err(fail)?;
    if header.raw_len != expected.raw_len || header.sha256 != expected.sha256 {
        return Err(fail(
            "member header differs from the catalog's index".into(),
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

    /// Fetches, inflates and verifies block `i`.
    pub fn read_block(
        &self,
        i: usize,
        decompressor: &mut libdeflater::Decompressor,
    ) -> Result<VerifiedBlock> {
        let entry = self.index.entries.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no block {i} (it has {})",
                self.label(),
                self.index.entries.len()
            ))
        })?;
        let member = self
            .store
            .get_range(self.key, entry.offset, entry.stored_len as u64)?;
        verify_member(&self.label(), i, entry, &member, decompressor, false)
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
}
