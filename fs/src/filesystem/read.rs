//! Opening a file and reading it: each read is served from verified blocks of the block cache
//! (fetched, inflated and checked once), and a sequential reader gets the next blocks decoded
//! ahead on the read-ahead threads.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tierback_engine::artifact::BlockIndex;
use tierback_engine::artifact::reader::ArtifactReader;
use tierback_engine::store::Store;
use tracing::{debug, error, warn};

use super::{Filesystem, MAY_READ, ReadData, Stats};
use crate::audit::{Caller, Event};
use crate::cache::{Block, BlockCache, BlockKey};
use crate::catalog::CatalogSource;
use crate::error::{FsError, FsResult};
use crate::readahead::Sequence;
use crate::tree::{Content, CopyFile, Node};

/// An open backup copy.
pub(super) struct OpenCopy {
    ino: u64,
    file: Arc<CopyFile>,
    index: Arc<BlockIndex>,
    store: Arc<dyn Store>,
    seq: Mutex<Sequence>,
    /// The furthest byte handed out through this handle: read-ahead skips blocks wholly before
    /// it (a reader that overtook read-ahead decoded them itself, and the cache let them go).
    read_upto: AtomicU64,
}

impl OpenCopy {
    /// Moves `read_upto` on; a jump back (a seek, beyond the slack of requests the kernel sends
    /// out of order) starts it again from there.
    fn note_read(&self, offset: u64, end: u64) {
        let slack = 2 * self.index.block_size as u64;
        let upto = self.read_upto.load(Ordering::Relaxed);
        if offset + slack < upto {
            self.read_upto.store(end, Ordering::Relaxed);
        } else {
            self.read_upto.fetch_max(end, Ordering::Relaxed);
        }
    }
}

pub(super) enum Handle {
    Copy(Arc<OpenCopy>),
    Bytes(Arc<[u8]>),
}

/// What read-ahead jobs share with the reading threads.
pub(super) struct Shared {
    pub(super) cache: BlockCache,
    pub(super) catalog: Arc<dyn CatalogSource>,
    pub(super) stats: Stats,
    /// Blocks already reported corrupt (log and catalog mark once, not on every retry).
    pub(super) reported: Mutex<HashSet<BlockKey>>,
}

thread_local! {
    // One decompressor per thread: libdeflate's is cheap to reuse, not to share.
    static DECOMPRESSOR: RefCell<libdeflater::Decompressor> = RefCell::new(libdeflater::Decompressor::new());
}

impl Shared {
    /// Block `i` of an open copy: cached, or fetched, inflated and verified once.
    fn block(&self, copy: &OpenCopy, i: usize) -> FsResult<Block> {
        let key = BlockKey {
            copy: copy.ino,
            block: i,
        };
        self.cache.get_or_load(key, || {
            self.read(copy, i, |reader| {
                DECOMPRESSOR.with(|d| reader.read_block(i, &mut d.borrow_mut()))
            })
        })
    }

    /// Bytes `range` of block `i` of an open copy, inflated no further than needed and not
    /// cached; `None` if the copy can only be checked block by block (see
    /// [`ArtifactReader::read_range`]).
    fn range(
        &self,
        copy: &OpenCopy,
        i: usize,
        range: std::ops::Range<usize>,
    ) -> FsResult<Option<Vec<u8>>> {
        self.cache.misses.fetch_add(1, Ordering::Relaxed);
        self.read(copy, i, |reader| reader.read_range(i, range.clone()))
    }

    /// Runs `read` of block `i` on the copy's reader; a failure is reported once ([`failed`]).
    ///
    /// [`failed`]: Self::failed
    fn read<T>(
        &self,
        copy: &OpenCopy,
        i: usize,
        read: impl Fn(&ArtifactReader) -> tierback_engine::Result<T>,
    ) -> FsResult<T> {
        let reader = ArtifactReader {
            store: copy.store.as_ref(),
            key: &copy.file.key,
            index: &copy.index,
        };
        match read(&reader) {
            // Bytes a wrapper kept (a coalesced window) may predate a repair of this copy:
            // fetch them once more before calling the block corrupt.
            Err(tierback_engine::Error::Integrity { .. }) => {
                copy.store.forget(&copy.file.key);
                read(&reader)
            }
            other => other,
        }
        .map_err(|e| {
            let key = BlockKey {
                copy: copy.ino,
                block: i,
            };
            self.failed(copy, key, e)
        })
    }

    /// Logs a failed block once per block, counts it, and marks a corrupt copy in the catalog.
    fn failed(&self, copy: &OpenCopy, key: BlockKey, e: tierback_engine::Error) -> FsError {
        let integrity = matches!(e, tierback_engine::Error::Integrity { .. });
        let first = self
            .reported
            .lock()
            .expect("report set poisoned")
            .insert(key);
        if integrity {
            self.stats
                .integrity_failures
                .fetch_add(1, Ordering::Relaxed);
            if first {
                error!(file = %copy.file.view_path, block = key.block, "read returns EIO: {e}");
                if let Err(mark) = self.catalog.mark_corrupt(
                    copy.file.artifact_id,
                    &copy.file.tier,
                    &e.to_string(),
                ) {
                    error!(file = %copy.file.view_path, "could not mark the copy corrupt in the catalog: {mark}");
                }
            }
        } else {
            self.stats.tier_errors.fetch_add(1, Ordering::Relaxed);
            // Transient errors are logged every time: each is a new attempt.
            self.reported
                .lock()
                .expect("report set poisoned")
                .remove(&key);
            warn!(file = %copy.file.view_path, block = key.block, "tier read failed, read returns EIO: {e}");
        }
        e.into()
    }
}

/// Decoding ahead further than this (1 MiB blocks) gains nothing on two cores and costs memory.
pub(super) const MAX_READAHEAD_BLOCKS: usize = 16;

impl Filesystem {
    /// Opens a file for `caller`: any write access is refused (EROFS), reading needs read
    /// permission on the file and search permission on every directory above it. Returns the
    /// file handle. Audited, allowed or not.
    pub fn open(&self, caller: Caller, ino: u64, write: bool) -> FsResult<u64> {
        let tree = self.tree();
        let Some(node) = tree.get(ino) else {
            let r = Err(FsError::NotFound);
            self.audit(Event::Open, None, caller, &r);
            return r;
        };
        let result = if write {
            Err(FsError::ReadOnly)
        } else if !self.allowed(&tree, node, &self.who(caller), MAY_READ) {
            Err(FsError::PermissionDenied)
        } else {
            self.open_node(node)
        };
        if self.audit.is_some() {
            self.audit(
                Event::Open,
                Some(&Self::path_of(&tree, node)),
                caller,
                &result,
            );
        }
        result
    }

    fn open_node(&self, node: &Node) -> FsResult<u64> {
        let ino = node.ino;
        let handle = match &node.content {
            Content::Dir(_) => return Err(FsError::IsDir),
            Content::Bytes(b) => Handle::Bytes(b.clone()),
            Content::Copy(file) => {
                let store = self.stores.get(&file.tier).cloned().ok_or_else(|| {
                    FsError::Unavailable(format!("tier {} is not configured", file.tier))
                })?;
                let index = self.index(file)?;
                Handle::Copy(Arc::new(OpenCopy {
                    ino,
                    file: file.clone(),
                    index,
                    store,
                    seq: Mutex::default(),
                    read_upto: AtomicU64::new(0),
                }))
            }
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .expect("handle table poisoned")
            .insert(fh, handle);
        Ok(fh)
    }

    fn index(&self, file: &CopyFile) -> FsResult<Arc<BlockIndex>> {
        if let Some(i) = self
            .indexes
            .lock()
            .expect("index cache poisoned")
            .get(&file.artifact_id)
        {
            return Ok(i.clone());
        }
        let index = self
            .shared
            .catalog
            .block_index(file.artifact_id)
            .map_err(|e| {
                error!(file = %file.view_path, "cannot load the block index: {e}");
                FsError::from(e)
            })?;
        if index.raw_size() != file.raw_size {
            let msg = format!(
                "{}: block index covers {} bytes, the catalog says {}",
                file.view_path,
                index.raw_size(),
                file.raw_size
            );
            error!("{msg}");
            return Err(FsError::Integrity(msg));
        }
        let index = Arc::new(index);
        self.indexes
            .lock()
            .expect("index cache poisoned")
            .insert(file.artifact_id, index.clone());
        Ok(index)
    }

    pub fn release(&self, fh: u64) {
        if let Some(Handle::Copy(c)) = self
            .handles
            .write()
            .expect("handle table poisoned")
            .remove(&fh)
        {
            // Queued read-ahead for this handle is no longer wanted.
            c.seq
                .lock()
                .expect("sequence poisoned")
                .generation
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads up to `size` bytes at `offset`: exactly `size` unless the file ends first. A block
    /// that cannot be delivered fails the whole read (never a short read: the kernel would fill
    /// the rest of the page with zeros).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<ReadData> {
        let copy = match self.handles.read().expect("handle table poisoned").get(&fh) {
            None => return Err(FsError::BadHandle(fh)),
            Some(Handle::Bytes(b)) => {
                let start = (offset as usize).min(b.len());
                let end = (start + size as usize).min(b.len());
                return Ok(ReadData::Shared(b.clone(), start..end));
            }
            Some(Handle::Copy(c)) => c.clone(),
        };
        let total = copy.file.raw_size;
        if offset >= total || size == 0 {
            return Ok(ReadData::Owned(Vec::new()));
        }
        let end = (offset + size as u64).min(total);
        let index = &copy.index;
        let block_size = index.block_size as u64;
        let (ahead, seeking) = {
            let mut seq = copy.seq.lock().expect("sequence poisoned");
            let ahead = seq.on_read(
                offset,
                end - offset,
                block_size,
                index.entries.len(),
                self.max_window,
            );
            (ahead, seq.seeking())
        };
        if !ahead.is_empty() {
            self.read_ahead(&copy, ahead);
        }
        let first = index.block_of(offset);
        let last = index.block_of(end - 1);
        let key = |block| BlockKey {
            copy: copy.ino,
            block,
        };
        if first == last {
            let base = index.raw_offset(first);
            // A random read of part of a block nobody has loaded: inflate only as far as it
            // needs (on average half the block), and keep nothing (the kernel's page cache
            // keeps what it got; a reader that goes on reading is sequential by then).
            let range = (offset - base) as usize..(end - base) as usize;
            if seeking
                && range.end < index.entries[first].raw_len as usize
                && !self.shared.cache.is_present_or_loading(key(first))
                && let Some(bytes) = self.shared.range(&copy, first, range.clone())?
            {
                copy.note_read(offset, end);
                return Ok(ReadData::Owned(bytes));
            }
            let block = self.shared.block(&copy, first)?;
            self.shared
                .cache
                .delivered(key(first), (end - offset) as usize);
            copy.note_read(offset, end);
            return Ok(ReadData::Slice(block, range));
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for b in first..=last {
            let block = self.shared.block(&copy, b)?;
            let base = index.raw_offset(b);
            let from = offset.max(base) - base;
            let to = end.min(base + block.len() as u64) - base;
            out.extend_from_slice(&block[from as usize..to as usize]);
        }
        debug_assert_eq!(out.len() as u64, end - offset);
        // Counted only once the whole read succeeded: a failed read delivered nothing.
        for b in first..=last {
            let base = index.raw_offset(b);
            let len = index.entries[b].raw_len as u64;
            self.shared
                .cache
                .delivered(key(b), (end.min(base + len) - offset.max(base)) as usize);
        }
        copy.note_read(offset, end);
        Ok(ReadData::Owned(out))
    }

    fn read_ahead(&self, copy: &Arc<OpenCopy>, blocks: std::ops::Range<usize>) {
        let generation = copy
            .seq
            .lock()
            .expect("sequence poisoned")
            .generation
            .clone();
        let queued_at = generation.load(Ordering::Relaxed);
        if let (Some(first), Some(last)) = (
            copy.index.entries.get(blocks.start),
            copy.index.entries.get(blocks.end.saturating_sub(1)),
        ) {
            let end = last.offset + last.stored_len as u64;
            copy.store.will_read(
                &copy.file.key,
                first.offset,
                end.saturating_sub(first.offset),
            );
        }
        // Read-ahead runs on its own threads, in the span of the read that asked for it.
        let span = tracing::Span::current();
        for b in blocks {
            let (shared, copy, generation, span) = (
                self.shared.clone(),
                copy.clone(),
                generation.clone(),
                span.clone(),
            );
            self.prefetcher.submit(move || {
                let _span = span.entered();
                let key = BlockKey {
                    copy: copy.ino,
                    block: b,
                };
                let block_end = copy.index.raw_offset(b) + copy.index.entries[b].raw_len as u64;
                if generation.load(Ordering::Relaxed) != queued_at
                    || block_end <= copy.read_upto.load(Ordering::Relaxed)
                    || shared.cache.is_present_or_loading(key)
                {
                    return;
                }
                if let Err(e) = shared.block(&copy, b) {
                    // Already logged; the reader gets the error when it reaches the block.
                    debug!(file = %copy.file.view_path, block = b, "read-ahead failed: {e}");
                }
            });
        }
    }
}
