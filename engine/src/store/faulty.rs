//! A wrapper that injects failures into any store, for testing what callers do when a tier
//! misbehaves: fail the next N operations, or corrupt bytes on their way out.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{ObjectMeta, Store};
use crate::{Error, Result};

pub struct FaultyStore<S> {
    inner: S,
    fail_next: AtomicUsize,
    /// Flip a bit in every `get_range` result when set (u64::MAX = off).
    flip_at: AtomicU64,
}

impl<S: Store> FaultyStore<S> {
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            fail_next: AtomicUsize::new(0),
            flip_at: AtomicU64::new(u64::MAX),
        }
    }

    /// The next `n` operations fail with a transient I/O error.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Reads return data with the byte at this offset *of the returned range* flipped.
    pub fn flip_reads_at(&self, offset: Option<u64>) {
        self.flip_at
            .store(offset.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn maybe_flip(&self, mut data: Vec<u8>) -> Vec<u8> {
        let flip = self.flip_at.load(Ordering::SeqCst);
        if let Some(b) = data.get_mut(flip as usize) {
            *b ^= 0x01;
        }
        data
    }

    fn maybe_fail(&self, op: &str) -> Result<()> {
        let took = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if took {
            Err(Error::io(
                format!("tier {}: injected fault in {op}", self.inner.name()),
                std::io::ErrorKind::ConnectionReset.into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn put_file(&self, key: &str, src: &Path) -> Result<()> {
        self.maybe_fail("put")?;
        self.inner.put_file(key, src)
    }
    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.maybe_fail("put")?;
        self.inner.put_bytes(key, bytes)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.maybe_fail("get")?;
        Ok(self.maybe_flip(self.inner.get_range(key, offset, len)?))
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.maybe_fail("get")?;
        Ok(self.maybe_flip(self.inner.get(key)?))
    }
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.maybe_fail("head")?;
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.maybe_fail("list")?;
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.maybe_fail("delete")?;
        self.inner.delete(key)
    }
    fn forget(&self, key: &str) {
        self.inner.forget(key)
    }

    fn will_read(&self, key: &str, offset: u64, len: u64) {
        self.inner.will_read(key, offset, len)
    }

    fn holds_decompressed(&self) -> bool {
        self.inner.holds_decompressed()
    }
    fn clean_staging(&self) -> Result<usize> {
        self.inner.clean_staging()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn injected_faults_are_transient_then_clear() {
        let s = FaultyStore::new(MemoryStore::new("m"));
        s.put_bytes("a/b", b"hello").unwrap();
        s.fail_next(2);
        assert!(s.get_range("a/b", 0, 5).unwrap_err().is_transient());
        assert!(s.head("a/b").is_err());
        assert_eq!(s.get_range("a/b", 0, 5).unwrap(), b"hello");
        s.flip_reads_at(Some(1));
        assert_eq!(s.get_range("a/b", 0, 5).unwrap(), b"hdllo");
    }

    #[test]
    fn conformance_when_healthy() {
        super::super::conformance::run(&FaultyStore::new(MemoryStore::new("m")));
    }
}
