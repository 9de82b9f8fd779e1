//! Writes a dump stream as a blocked-gzip artifact, compressing blocks in parallel on every core.
//! Memory is bounded by the pipeline depth (a few blocks per thread), not by the dump's size.
//!
//! Every member is inflated once as soon as it is made and compared with its block: reads later
//! trust intact stored bytes (format version 2), so a compressor fault or a bit flipped in
//! memory must be caught here, while the block still exists.

use std::io::{ErrorKind, Read, Write};

use sha2::{Digest, Sha256};

use super::format::{check_round_trip, encode_member};
use super::{BlockEntry, BlockIndex};
use crate::parallel::ordered_map;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub block_size: usize,
    /// 1–12; libdeflate's 9 matches `gzip -9` (and is slightly smaller).
    pub level: i32,
    pub threads: usize,
}

/// What was written: enough to verify the file and to serve reads from it.
#[derive(Debug, Clone)]
pub struct Written {
    pub index: BlockIndex,
    /// SHA-256 of the uncompressed stream.
    pub raw_sha256: [u8; 32],
    /// SHA-256 of the stored `.gz` file.
    pub stored_sha256: [u8; 32],
}

impl Written {
    pub fn raw_size(&self) -> u64 {
        self.index.raw_size()
    }
    pub fn stored_size(&self) -> u64 {
        self.index.stored_size()
    }
}

/// Reads `src` to its end and writes the artifact to `out`. `progress` gets the raw byte count
/// after each block is written. An error from `src` or `out` stops everything and is returned;
/// the caller owns removing the partial output.
pub fn write_artifact(
    src: &mut dyn Read,
    out: &mut (dyn Write + Send),
    opts: WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Written> {
    let level = libdeflater::CompressionLvl::new(opts.level).map_err(|_| {
        Error::Invalid(format!("compression level {} is not supported", opts.level))
    })?;
    let mut raw_hasher = Sha256::new();
    let mut stored_hasher = Sha256::new();
    let mut entries = Vec::new();
    let mut offset = 0u64;
    let mut raw_total = 0u64;

    let mut first = true;
    let mut done = false;
    let blocks = std::iter::from_fn(|| {
        if done {
            return None;
        }
        let block = match read_block(src, opts.block_size) {
            Ok(b) => b,
            Err(e) => {
                done = true;
                return Some(Err(Error::io("reading the dump stream", e)));
            }
        };
        if block.len() < opts.block_size {
            done = true;
        }
        // An empty stream still becomes one (empty) member: an empty file is not valid gzip.
        if block.is_empty() && !first {
            return None;
        }
        first = false;
        raw_hasher.update(&block);
        Some(Ok(block))
    });

    ordered_map(
        blocks
            .enumerate()
            .map(|(i, block)| block.map(|block| (i, block))),
        opts.threads,
        opts.threads * 2,
        || {
            (
                libdeflater::Compressor::new(level),
                libdeflater::Decompressor::new(),
            )
        },
        |(compressor, decompressor), (i, block): (usize, Vec<u8>)| {
            let (member, header) = encode_member(&block, compressor);
            check_round_trip(&member, &block, decompressor).map_err(|why| {
                Error::integrity("compressing the dump stream", Some(i as u64), why)
            })?;
            let stored_sha256: [u8; 32] = Sha256::digest(&member).into();
            Ok((member, header, stored_sha256))
        },
        |made: Result<_>| {
            let (member, header, stored_sha256) = made?;
            out.write_all(&member)
                .map_err(|e| Error::io("writing the artifact", e))?;
            stored_hasher.update(&member);
            entries.push(BlockEntry {
                offset,
                stored_len: header.member_len,
                raw_len: header.raw_len,
                sha256: header.sha256,
                stored_sha256: Some(stored_sha256),
            });
            offset += member.len() as u64;
            raw_total += header.raw_len as u64;
            progress(raw_total);
            Ok(())
        },
    )?;
    out.flush()
        .map_err(|e| Error::io("writing the artifact", e))?;

    Ok(Written {
        index: BlockIndex {
            block_size: opts.block_size as u32,
            entries,
        },
        raw_sha256: raw_hasher.finalize().into(),
        stored_sha256: stored_hasher.finalize().into(),
    })
}

/// Fills a block of up to `size` bytes; shorter only at the end of the stream.
fn read_block(src: &mut dyn Read, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::format::{HEADER_LEN, parse_header};

    fn write(data: &[u8], block_size: usize) -> (Vec<u8>, Written) {
        let mut out = Vec::new();
        let w = write_artifact(
            &mut &data[..],
            &mut out,
            WriteOptions {
                block_size,
                level: 6,
                threads: 3,
            },
            &|_| {},
        )
        .unwrap();
        (out, w)
    }

    #[test]
    fn members_match_index_and_hashes() {
        let data: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("row {i}\n").into_bytes())
            .collect();
        for bs in [4096, 10_000, data.len(), data.len() + 1] {
            let (out, w) = write(&data, bs);
            assert_eq!(w.index.entries.len(), data.len().div_ceil(bs));
            assert_eq!(w.raw_size(), data.len() as u64);
            assert_eq!(w.stored_size(), out.len() as u64);
            assert_eq!(w.raw_sha256, <[u8; 32]>::from(Sha256::digest(&data)));
            assert_eq!(w.stored_sha256, <[u8; 32]>::from(Sha256::digest(&out)));
            w.index.check().unwrap();
            for e in &w.index.entries {
                let h =
                    parse_header(&out[e.offset as usize..e.offset as usize + HEADER_LEN]).unwrap();
                assert_eq!(
                    (h.member_len, h.raw_len, h.sha256),
                    (e.stored_len, e.raw_len, e.sha256)
                );
                let member = &out[e.offset as usize..(e.offset + e.stored_len as u64) as usize];
                assert_eq!(e.stored_sha256, Some(Sha256::digest(member).into()));
            }
            // Concatenated members are one ordinary gzip stream.
            let mut d = libdeflater::Decompressor::new();
            let mut back = Vec::new();
            for e in &w.index.entries {
                let m = &out[e.offset as usize..(e.offset + e.stored_len as u64) as usize];
                let mut raw = vec![0; e.raw_len as usize];
                d.gzip_decompress(m, &mut raw).unwrap();
                back.extend(raw);
            }
            assert_eq!(back, data);
        }
    }

    #[test]
    fn empty_stream_is_one_empty_member() {
        let (out, w) = write(b"", 1024);
        assert_eq!(w.index.entries.len(), 1);
        assert_eq!(w.raw_size(), 0);
        assert!(out.len() > HEADER_LEN);
    }

    #[test]
    fn failing_source_is_an_error() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        let mut out = Vec::new();
        let e = write_artifact(
            &mut Broken(5000),
            &mut out,
            WriteOptions {
                block_size: 1024,
                level: 1,
                threads: 2,
            },
            &|_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
    }
}
