//! The cache of decompressed, verified blocks: an LRU bounded in bytes, with single-flight
//! loading. Only bytes that passed the engine's check ([`VerifiedBlock`]) can enter, so a cache
//! hit is as trustworthy as a fresh read.
//!
//! Single flight: the first reader to miss a block loads it; readers that miss the same block
//! meanwhile wait for that result instead of fetching and inflating it again. The claim is made
//! when the work starts, not when read-ahead queues it, so a reader never waits on a block that
//! nobody is working on yet — it decodes it itself.
//!
//! Delivered blocks leave early: once every byte of a block has been handed to the kernel, the
//! kernel's page cache holds it (files are opened with `FOPEN_KEEP_CACHE`), so keeping a second
//! copy here only costs memory — and fresh memory for the next block, whose page faults were
//! 6 % of the mount's CPU on a cold sequential read. The block is dropped and its buffer reused.
//! A block read again later (the kernel dropped its pages) is simply loaded again.
//!
//! Blocks read once are on probation: a loaded block enters a small segment of its own and moves
//! to the main LRU only when it is asked for again (a sequential reader's read-ahead block is
//! asked for by the reader; a random reader's block usually never is). Probation is bounded well
//! below the budget, so a random reader recycles the memory of the blocks it read once instead
//! of growing the cache with fresh pages (whose faults and zeroing were a quarter of a cold
//! random 4 KiB read), and a scan cannot push out the blocks that are read again.
//!
//! [`VerifiedBlock`]: tierback_engine::artifact::reader::VerifiedBlock

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use lru::LruCache;
use tierback_engine::artifact::reader::VerifiedBlock;

use crate::error::{FsError, FsResult};

/// A block of one copy: the copy's inode (unique per artifact and tier) and the block number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub copy: u64,
    pub block: usize,
}

pub type Block = Arc<VerifiedBlock>;

type Outcome = Option<FsResult<Block>>;

#[derive(Default)]
struct Flight {
    outcome: Mutex<Outcome>,
    done: Condvar,
}

struct Entry {
    block: Block,
    /// Bytes of this block handed to the kernel so far.
    delivered: usize,
}

struct Inner {
    /// Blocks asked for at least twice.
    main: LruCache<BlockKey, Entry>,
    /// Blocks loaded and not asked for since.
    probation: LruCache<BlockKey, Entry>,
    /// Bytes in both segments.
    bytes: usize,
    probation_bytes: usize,
    inflight: HashMap<BlockKey, Arc<Flight>>,
}

impl Inner {
    fn evict_lru(&mut self, probation: bool) -> bool {
        let segment = if probation {
            &mut self.probation
        } else {
            &mut self.main
        };
        let Some((_, evicted)) = segment.pop_lru() else {
            return false;
        };
        self.bytes -= evicted.block.len();
        if probation {
            self.probation_bytes -= evicted.block.len();
        }
        true
    }
}

/// Probation holds at most this much (or half the budget, if less): two sequential readers'
/// whole read-ahead windows of 1 MiB blocks, which wait there until their reader asks.
const PROBATION_MAX: usize = 32 << 20;

pub struct BlockCache {
    inner: Mutex<Inner>,
    budget: usize,
    probation_budget: usize,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl BlockCache {
    /// A cache holding at most `budget` bytes of decompressed blocks.
    pub fn new(budget: usize) -> BlockCache {
        BlockCache {
            inner: Mutex::new(Inner {
                main: LruCache::unbounded(),
                probation: LruCache::unbounded(),
                bytes: 0,
                probation_bytes: 0,
                inflight: HashMap::new(),
            }),
            budget,
            probation_budget: (budget / 2).min(PROBATION_MAX),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("block cache poisoned")
    }

    /// True if the block is cached or being loaded (read-ahead then has nothing to do).
    pub fn is_present_or_loading(&self, key: BlockKey) -> bool {
        let inner = self.lock();
        inner.main.contains(&key)
            || inner.probation.contains(&key)
            || inner.inflight.contains_key(&key)
    }

    /// The block, from the cache or loaded by `load` (once, however many threads ask at once).
    /// A failed load is not cached: the next reader tries again (a tier may come back).
    pub fn get_or_load(
        &self,
        key: BlockKey,
        load: impl FnOnce() -> FsResult<VerifiedBlock>,
    ) -> FsResult<Block> {
        let flight = {
            let mut inner = self.lock();
            if let Some(entry) = inner.main.get(&key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(entry.block.clone());
            }
            if let Some(entry) = inner.probation.pop(&key) {
                // Asked for again: off probation.
                self.hits.fetch_add(1, Ordering::Relaxed);
                inner.probation_bytes -= entry.block.len();
                let block = entry.block.clone();
                inner.main.put(key, entry);
                return Ok(block);
            }
            if let Some(flight) = inner.inflight.get(&key) {
                let flight = flight.clone();
                drop(inner);
                return Self::wait(&flight);
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            let flight = Arc::new(Flight::default());
            inner.inflight.insert(key, flight.clone());
            flight
        };
        // If `load` panics, waiters must not hang: the guard publishes a failure.
        let mut guard = FlightGuard {
            cache: self,
            key,
            flight: &flight,
            outcome: None,
        };
        let outcome = load().map(Arc::new);
        guard.outcome = Some(outcome.clone());
        drop(guard);
        outcome
    }

    /// Records that `bytes` of the block were handed to the kernel; once all of it has been,
    /// the block leaves the cache (see the module comment).
    pub fn delivered(&self, key: BlockKey, bytes: usize) {
        let mut inner = self.lock();
        let on_probation = inner.probation.contains(&key);
        let segment = if on_probation {
            &mut inner.probation
        } else {
            &mut inner.main
        };
        let Some(entry) = segment.peek_mut(&key) else {
            return;
        };
        entry.delivered += bytes;
        if entry.delivered >= entry.block.len()
            && let Some(entry) = segment.pop(&key)
        {
            inner.bytes -= entry.block.len();
            if on_probation {
                inner.probation_bytes -= entry.block.len();
            }
        }
    }

    fn wait(flight: &Flight) -> FsResult<Block> {
        let mut outcome = flight.outcome.lock().expect("flight poisoned");
        loop {
            if let Some(result) = outcome.as_ref() {
                return result.clone();
            }
            outcome = flight.done.wait(outcome).expect("flight poisoned");
        }
    }

    fn finish(&self, key: BlockKey, flight: &Flight, outcome: FsResult<Block>) {
        {
            let mut inner = self.lock();
            inner.inflight.remove(&key);
            if let Ok(block) = &outcome {
                inner.bytes += block.len();
                inner.probation_bytes += block.len();
                let entry = Entry {
                    block: block.clone(),
                    delivered: 0,
                };
                if let Some(old) = inner.probation.put(key, entry) {
                    inner.bytes -= old.block.len();
                    inner.probation_bytes -= old.block.len();
                }
                // The block just loaded always stays, even when it alone is larger than the
                // budget (a 64 MiB block in a 32 MiB cache): evicting it as it is inserted would
                // inflate it again for every read of it.
                while inner.probation_bytes > self.probation_budget
                    && inner.probation.len() > 1
                    && inner.evict_lru(true)
                {}
                while inner.bytes > self.budget
                    && ((inner.probation.len() > 1 && inner.evict_lru(true))
                        || inner.evict_lru(false))
                {}
            }
        }
        *flight.outcome.lock().expect("flight poisoned") = Some(outcome);
        flight.done.notify_all();
    }
}

struct FlightGuard<'a> {
    cache: &'a BlockCache,
    key: BlockKey,
    flight: &'a Flight,
    outcome: Outcome,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| Err(FsError::Unavailable("block load panicked".into())));
        self.cache.finish(self.key, self.flight, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tierback_engine::artifact::reader::{Depth, verify_member};
    use tierback_engine::artifact::writer::{WriteOptions, write_artifact};

    /// Real verified blocks of `n` bytes each (the only way to make a VerifiedBlock).
    fn blocks(n: usize, count: usize) -> Vec<VerifiedBlock> {
        let data: Vec<u8> = (0..n * count).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let w = write_artifact(
            &mut &data[..],
            &mut out,
            WriteOptions {
                block_size: n,
                level: 1,
                threads: 1,
            },
            &|_| {},
        )
        .unwrap();
        let mut d = libdeflater::Decompressor::new();
        w.index
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let m = &out[e.offset as usize..(e.offset + e.stored_len as u64) as usize];
                verify_member("t", i, e, m, &mut d, Depth::Full).unwrap()
            })
            .collect()
    }

    fn key(block: usize) -> BlockKey {
        BlockKey { copy: 7, block }
    }

    fn load(cache: &BlockCache, i: usize, b: &[VerifiedBlock]) {
        cache.get_or_load(key(i), || Ok(b[i].clone())).unwrap();
    }

    #[test]
    fn bounded_in_bytes_lru_order() {
        let b = blocks(1000, 4);
        let cache = BlockCache::new(2500);
        for i in 0..b.len() {
            // Loaded, then asked for again: into the main LRU.
            load(&cache, i, &b);
            load(&cache, i, &b);
            assert!(cache.bytes() <= 2500);
        }
        // Blocks 2 and 3 remain; 0 was evicted.
        assert!(cache.is_present_or_loading(key(3)));
        assert!(cache.is_present_or_loading(key(2)));
        assert!(!cache.is_present_or_loading(key(0)));
        let loaded = AtomicUsize::new(0);
        cache
            .get_or_load(key(3), || {
                loaded.fetch_add(1, Ordering::SeqCst);
                Ok(b[3].clone())
            })
            .unwrap();
        assert_eq!(loaded.load(Ordering::SeqCst), 0, "a hit does not load");
    }

    #[test]
    fn blocks_read_once_do_not_push_out_blocks_read_again() {
        let b = blocks(1000, 21);
        // Probation: half the budget, 5 blocks.
        let cache = BlockCache::new(10_000);
        load(&cache, 0, &b);
        load(&cache, 0, &b);
        for i in 1..b.len() {
            load(&cache, i, &b);
            assert!(cache.bytes() <= 6000, "probation stays within its bound");
        }
        assert!(cache.is_present_or_loading(key(0)), "read twice: kept");
        assert!(!cache.is_present_or_loading(key(15)), "read once, long ago");
        assert!(cache.is_present_or_loading(key(20)), "read once, just now");
        let misses = cache.misses.load(Ordering::Relaxed);
        load(&cache, 0, &b);
        assert_eq!(cache.misses.load(Ordering::Relaxed), misses);
    }

    #[test]
    fn a_block_larger_than_the_cache_stays_until_the_next_one() {
        let b = blocks(1000, 2);
        let cache = BlockCache::new(600);
        cache.get_or_load(key(0), || Ok(b[0].clone())).unwrap();
        let loads = AtomicUsize::new(0);
        for _ in 0..3 {
            cache
                .get_or_load(key(0), || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok(b[0].clone())
                })
                .unwrap();
        }
        assert_eq!(loads.load(Ordering::SeqCst), 0, "re-reads of it are hits");
        cache.get_or_load(key(1), || Ok(b[1].clone())).unwrap();
        assert!(
            !cache.is_present_or_loading(key(0)),
            "the next block takes its place"
        );
        assert_eq!(cache.bytes(), 1000);
    }

    #[test]
    fn a_block_leaves_once_every_byte_was_delivered() {
        let b = blocks(1000, 2);
        let cache = BlockCache::new(1 << 20);
        for (i, blk) in b.iter().enumerate() {
            cache.get_or_load(key(i), || Ok(blk.clone())).unwrap();
        }
        cache.delivered(key(0), 600);
        assert!(cache.is_present_or_loading(key(0)), "part delivered: kept");
        cache.delivered(key(0), 400);
        assert!(
            !cache.is_present_or_loading(key(0)),
            "all delivered: dropped"
        );
        assert!(cache.is_present_or_loading(key(1)));
        assert_eq!(cache.bytes(), 1000);
        // Delivering a block that is not cached is harmless.
        cache.delivered(key(0), 1000);
        assert_eq!(cache.bytes(), 1000);
    }

    #[test]
    fn concurrent_misses_load_once() {
        let b = blocks(1000, 1);
        let cache = BlockCache::new(1 << 20);
        let loads = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let got = cache
                        .get_or_load(key(0), || {
                            loads.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(100));
                            Ok(b[0].clone())
                        })
                        .unwrap();
                    assert_eq!(got.len(), 1000);
                });
            }
        });
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failures_are_shared_but_not_cached() {
        let b = blocks(1000, 1);
        let cache = BlockCache::new(1 << 20);
        let err = cache
            .get_or_load(key(0), || Err(FsError::Integrity("bad".into())))
            .unwrap_err();
        assert_eq!(err, FsError::Integrity("bad".into()));
        assert!(!cache.is_present_or_loading(key(0)));
        assert!(cache.get_or_load(key(0), || Ok(b[0].clone())).is_ok());
    }
}
