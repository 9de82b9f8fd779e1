//! A deadline on every read of a remote tier: a network store that stops answering must turn
//! into EIO for the reader, not a process stuck in `D` state under the kernel's FUSE request.
//! Wraps any [`Store`]; the read runs on its own thread and is abandoned (not killed: a Rust
//! thread cannot be) when the deadline passes — it finishes or fails on its own later. At most
//! [`MAX_STUCK_READS`] abandoned reads may still hang: past that, reads fail at once, so a tier
//! that never answers costs a bounded number of threads, not one per request.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tierback_engine::store::{ObjectMeta, Store};
use tierback_engine::{Error, Result};

/// Reads past their deadline that have not returned yet, per tier, before new reads are refused.
pub const MAX_STUCK_READS: usize = 8;

/// States of one read's thread, shared with the caller that waits for it.
const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

pub struct TimeoutStore {
    inner: Arc<dyn Store>,
    timeout: Duration,
    /// Reads abandoned at their deadline whose thread has not finished yet.
    stuck: Arc<AtomicUsize>,
}

impl TimeoutStore {
    pub fn new(inner: Arc<dyn Store>, timeout: Duration) -> TimeoutStore {
        TimeoutStore {
            inner,
            timeout,
            stuck: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Abandoned reads whose thread still runs.
    pub fn stuck_reads(&self) -> usize {
        self.stuck.load(Ordering::SeqCst)
    }
}

impl Store for TimeoutStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn put_file(&self, _key: &str, _src: &Path) -> Result<()> {
        Err(Error::Invalid("the mount never writes to a tier".into()))
    }

    fn put_bytes(&self, _key: &str, _bytes: &[u8]) -> Result<()> {
        Err(Error::Invalid("the mount never writes to a tier".into()))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        // The tier hangs: another thread would only join the stuck ones.
        if self.stuck.load(Ordering::SeqCst) >= MAX_STUCK_READS {
            return Err(Error::io(
                format!(
                    "tier {}: reading {key}: earlier reads still hang, not starting another",
                    self.inner.name()
                ),
                std::io::ErrorKind::TimedOut.into(),
            ));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let inner = self.inner.clone();
        let stuck = self.stuck.clone();
        let state = Arc::new(AtomicU8::new(RUNNING));
        let thread_state = state.clone();
        let k = key.to_owned();
        std::thread::Builder::new()
            .name("tier-read".into())
            .spawn(move || {
                let _ = tx.send(inner.get_range(&k, offset, len));
                if thread_state.swap(DONE, Ordering::SeqCst) == ABANDONED {
                    stuck.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .map_err(|e| Error::io("spawning a tier read", e))?;
        rx.recv_timeout(self.timeout).unwrap_or_else(|_| {
            // Counted before it is marked, so the thread's decrement never comes first.
            self.stuck.fetch_add(1, Ordering::SeqCst);
            if state
                .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // It finished just now after all.
                self.stuck.fetch_sub(1, Ordering::SeqCst);
            }
            Err(Error::io(
                format!(
                    "tier {}: reading {len} bytes at {offset} of {key}: no answer within {:?}",
                    self.inner.name(),
                    self.timeout
                ),
                std::io::ErrorKind::TimedOut.into(),
            ))
        })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(key)
    }

    fn forget(&self, key: &str) {
        self.inner.forget(key)
    }

    fn clean_staging(&self) -> Result<usize> {
        Err(Error::Invalid("the mount never cleans a tier".into()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn delete(&self, _key: &str) -> Result<()> {
        Err(Error::Invalid("the mount never deletes from a tier".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierback_engine::store::memory::MemoryStore;

    /// A tier that hangs on every read.
    struct Hanging(MemoryStore);
    impl Store for Hanging {
        fn name(&self) -> &str {
            "hanging"
        }
        fn put_file(&self, k: &str, s: &Path) -> Result<()> {
            self.0.put_file(k, s)
        }
        fn put_bytes(&self, k: &str, b: &[u8]) -> Result<()> {
            self.0.put_bytes(k, b)
        }
        fn get_range(&self, _: &str, _: u64, _: u64) -> Result<Vec<u8>> {
            std::thread::sleep(Duration::from_secs(5));
            Ok(vec![])
        }
        fn head(&self, k: &str) -> Result<Option<ObjectMeta>> {
            self.0.head(k)
        }
        fn list(&self, p: &str) -> Result<Vec<ObjectMeta>> {
            self.0.list(p)
        }
        fn delete(&self, k: &str) -> Result<()> {
            self.0.delete(k)
        }
    }

    #[test]
    fn a_hanging_tier_times_out() {
        let s = TimeoutStore::new(
            Arc::new(Hanging(MemoryStore::new("m"))),
            Duration::from_millis(100),
        );
        let t = std::time::Instant::now();
        let e = s.get_range("a/b", 0, 10).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(e.to_string().contains("no answer"), "{e}");
        assert!(e.is_transient());
    }

    #[test]
    fn a_tier_that_never_answers_costs_a_bounded_number_of_threads() {
        let s = TimeoutStore::new(
            Arc::new(Hanging(MemoryStore::new("m"))),
            Duration::from_millis(20),
        );
        for _ in 0..3 * MAX_STUCK_READS {
            assert!(s.get_range("a/b", 0, 10).is_err());
        }
        assert_eq!(s.stuck_reads(), MAX_STUCK_READS);
        let t = std::time::Instant::now();
        let e = s.get_range("a/b", 0, 10).unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(20), "refused at once");
        assert!(e.to_string().contains("still hang"), "{e}");
        assert!(e.is_transient());
    }

    #[test]
    fn a_healthy_tier_answers() {
        let m = MemoryStore::new("m");
        m.put_bytes("a/b", b"hello").unwrap();
        let s = TimeoutStore::new(Arc::new(m), Duration::from_secs(5));
        assert_eq!(s.get_range("a/b", 1, 3).unwrap(), b"ell");
    }
}
