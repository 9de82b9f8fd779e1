//! Retries transient failures (timeouts, refused or reset connections) with exponential backoff.
//! Wraps any store, so backends stay simple and every caller gets the same policy.

use std::path::Path;
use std::time::Duration;

use super::{ObjectMeta, Store};
use crate::Result;

pub struct RetryStore<S> {
    inner: S,
    attempts: u32,
    first_delay: Duration,
}

impl<S: Store> RetryStore<S> {
    /// `attempts` tries in all, waiting `first_delay`, then twice as long each time.
    pub fn new(inner: S, attempts: u32, first_delay: Duration) -> Self {
        RetryStore {
            inner,
            attempts: attempts.max(1),
            first_delay,
        }
    }

    fn retry<T>(&self, op: &str, key: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            match f() {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tracing::warn!(
                        tier = self.inner.name(),
                        op,
                        key,
                        attempt,
                        "transient error, retrying in {delay:?}: {e}"
                    );
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

impl<S: Store> Store for RetryStore<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn put_file(&self, key: &str, src: &Path) -> Result<()> {
        self.retry("put", key, || self.inner.put_file(key, src))
    }
    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.retry("put", key, || self.inner.put_bytes(key, bytes))
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.retry("get", key, || self.inner.get_range(key, offset, len))
    }
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.retry("head", key, || self.inner.head(key))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.retry("list", prefix, || self.inner.list(prefix))
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.retry("delete", key, || self.inner.delete(key))
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
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.retry("get", key, || self.inner.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::faulty::FaultyStore;
    use crate::store::memory::MemoryStore;

    #[test]
    fn transient_faults_are_retried_then_given_up() {
        let s = RetryStore::new(
            FaultyStore::new(MemoryStore::new("m")),
            3,
            Duration::from_millis(1),
        );
        s.inner.fail_next(2);
        s.put_bytes("a/b", b"x").unwrap();
        s.inner.fail_next(3);
        assert!(s.get_range("a/b", 0, 1).unwrap_err().is_transient());
        assert_eq!(s.get_range("a/b", 0, 1).unwrap(), b"x");
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let s = RetryStore::new(
            FaultyStore::new(MemoryStore::new("m")),
            5,
            Duration::from_secs(60),
        );
        // NotFound is not transient: this returns at once instead of sleeping a minute.
        assert!(s.get_range("no/such", 0, 1).is_err());
    }
}
