//! A deadline on every read of a remote tier: a network store that stops answering must turn
//! into EIO for the reader, not a process stuck in `D` state under the kernel's FUSE request.
//! Wraps any [`Store`]; the read runs on its own thread and is abandoned (not killed: a Rust
//! thread cannot be) when the deadline passes — it finishes or fails on its own later.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tierback_engine::store::{ObjectMeta, Store};
use tierback_engine::{Error, Result};

pub struct TimeoutStore {
    inner: Arc<dyn Store>,
    timeout: Duration,
}

impl TimeoutStore {
    pub fn new(inner: Arc<dyn Store>, timeout: Duration) -> TimeoutStore {
        TimeoutStore { inner, timeout }
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
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let inner = self.inner.clone();
        let k = key.to_owned();
        std::thread::Builder::new()
            .name("tier-read".into())
            .spawn(move || {
                let _ = tx.send(inner.get_range(&k, offset, len));
            })
            .map_err(|e| Error::io("spawning a tier read", e))?;
        rx.recv_timeout(self.timeout).unwrap_or_else(|_| {
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
    fn a_healthy_tier_answers() {
        let m = MemoryStore::new("m");
        m.put_bytes("a/b", b"hello").unwrap();
        let s = TimeoutStore::new(Arc::new(m), Duration::from_secs(5));
        assert_eq!(s.get_range("a/b", 1, 3).unwrap(), b"ell");
    }
}
