//! Coalesced reads of a remote tier. Sequential read-ahead asks for consecutive members of a few
//! hundred KiB each; one ranged GET per member costs a request's overhead every time, and an
//! object store such as Garage reads and hashes a whole data block (1 MiB) to serve each small
//! range. This wrapper fetches aligned windows of `WINDOW` bytes instead, once (concurrent
//! readers of a window wait for the one fetch), and keeps the last few in memory, so a
//! sequential reader costs one GET per window. A read far from where the object was last read
//! (a seek: a random reader) is fetched as asked, with nothing kept or fetched ahead: a window
//! and two ahead would be 12 MiB for a random 4 KiB read. Bytes are still verified per block by
//! the block reader above; a failed fetch is not remembered, so the next read tries again.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tierback_engine::store::{ObjectMeta, Store};
use tierback_engine::{Error, Result};

/// 4 MiB: about a dozen compressed 1 MiB blocks per request.
const WINDOW: u64 = 4 << 20;
/// Windows kept: 32 MiB, on top of the decompressed-block cache.
const KEPT: usize = 8;
/// Windows fetched ahead of a sequential reader: two GETs in flight hide the latency tail.
const AHEAD: u64 = 2;
/// A read this far from the end of the object's previous read is a seek. Generous: the mount's
/// read-ahead runs up to 16 blocks (16 MiB of incompressible data) ahead of its reader, and both
/// read through here.
const SEEK_DISTANCE: u64 = 8 * WINDOW;

type Slot = Arc<Mutex<Option<Arc<Vec<u8>>>>>;
/// A window of an object: (key, window number).
type WindowId = (String, u64);
/// The windows kept, and their order of arrival for eviction.
type Windows = (HashMap<WindowId, Slot>, VecDeque<WindowId>);

pub struct CoalescingStore {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<dyn Store>,
    sizes: Mutex<HashMap<String, u64>>,
    slots: Mutex<Windows>,
    /// Where the previous read of each object ended.
    read_upto: Mutex<HashMap<String, u64>>,
}

impl CoalescingStore {
    pub fn new(inner: Arc<dyn Store>) -> CoalescingStore {
        CoalescingStore {
            shared: Arc::new(Shared {
                inner,
                sizes: Mutex::default(),
                slots: Mutex::default(),
                read_upto: Mutex::default(),
            }),
        }
    }
}

impl Shared {
    fn size(&self, key: &str) -> Result<u64> {
        if let Some(s) = self.sizes.lock().expect("sizes poisoned").get(key) {
            return Ok(*s);
        }
        let size = self
            .inner
            .head(key)?
            .ok_or_else(|| Error::NotFound {
                tier: self.inner.name().to_owned(),
                key: key.to_owned(),
            })?
            .size;
        self.sizes
            .lock()
            .expect("sizes poisoned")
            .insert(key.to_owned(), size);
        Ok(size)
    }

    /// Records a read of `offset..end` and says whether it continues the previous read of the
    /// object (or starts at its beginning) rather than seeking.
    fn sequential(&self, key: &str, offset: u64, end: u64) -> bool {
        let previous = self
            .read_upto
            .lock()
            .expect("read positions poisoned")
            .insert(key.to_owned(), end);
        offset.abs_diff(previous.unwrap_or(0)) <= SEEK_DISTANCE
    }

    /// Window `idx` of `key`, fetched once however many readers want it.
    fn window(&self, key: &str, idx: u64, size: u64) -> Result<Arc<Vec<u8>>> {
        let slot: Slot = {
            let mut guard = self.slots.lock().expect("slots poisoned");
            let (map, order) = &mut *guard;
            let id = (key.to_owned(), idx);
            if let Some(s) = map.get(&id) {
                s.clone()
            } else {
                let s = Slot::default();
                map.insert(id.clone(), s.clone());
                order.push_back(id);
                while order.len() > KEPT {
                    if let Some(old) = order.pop_front() {
                        map.remove(&old);
                    }
                }
                s
            }
        };
        // Holding the slot's lock while fetching makes other readers of this window wait for
        // this fetch instead of starting their own.
        let mut data = slot.lock().expect("window poisoned");
        if let Some(d) = &*data {
            return Ok(d.clone());
        }
        let start = idx * WINDOW;
        let len = WINDOW.min(size - start);
        let fetched = Arc::new(self.inner.get_range(key, start, len)?);
        *data = Some(fetched.clone());
        Ok(fetched)
    }

    /// Starts fetching the windows after `idx` in the background, so a sequential reader finds
    /// them ready instead of waiting a round trip at every window boundary.
    fn fetch_next(self: &Arc<Self>, key: &str, idx: u64, size: u64) {
        for next in idx + 1..=idx + AHEAD {
            if next * WINDOW >= size {
                return;
            }
            let present = {
                let guard = self.slots.lock().expect("slots poisoned");
                guard.0.contains_key(&(key.to_owned(), next))
            };
            if !present {
                let (shared, key) = (self.clone(), key.to_owned());
                std::thread::spawn(move || {
                    let _ = shared.window(&key, next, size);
                });
            }
        }
    }
}

impl Store for CoalescingStore {
    fn name(&self) -> &str {
        self.shared.inner.name()
    }

    fn put_file(&self, _key: &str, _src: &Path) -> Result<()> {
        Err(Error::Invalid("the mount never writes to a tier".into()))
    }

    fn put_bytes(&self, _key: &str, _bytes: &[u8]) -> Result<()> {
        Err(Error::Invalid("the mount never writes to a tier".into()))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let shared = &self.shared;
        if len == 0 || len > WINDOW {
            return shared.inner.get_range(key, offset, len);
        }
        let size = shared.size(key)?;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                Error::io(
                    format!(
                        "tier {}: {key}: range {offset}+{len} past the end ({size})",
                        shared.inner.name()
                    ),
                    std::io::ErrorKind::UnexpectedEof.into(),
                )
            })?;
        if !shared.sequential(key, offset, end) {
            return shared.inner.get_range(key, offset, len);
        }
        let mut out = Vec::with_capacity(len as usize);
        let last = (end - 1) / WINDOW;
        for idx in offset / WINDOW..=last {
            let w = shared.window(key, idx, size)?;
            let base = idx * WINDOW;
            let from = offset.max(base) - base;
            let to = end.min(base + w.len() as u64) - base;
            out.extend_from_slice(&w[from as usize..to as usize]);
        }
        shared.fetch_next(key, last, size);
        Ok(out)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.shared.inner.head(key)
    }

    fn forget(&self, key: &str) {
        let shared = &self.shared;
        shared.sizes.lock().expect("sizes poisoned").remove(key);
        shared
            .read_upto
            .lock()
            .expect("read positions poisoned")
            .remove(key);
        let mut guard = shared.slots.lock().expect("slots poisoned");
        let (map, order) = &mut *guard;
        map.retain(|(k, _), _| k != key);
        order.retain(|(k, _)| k != key);
        shared.inner.forget(key);
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.shared.inner.list(prefix)
    }

    fn will_read(&self, key: &str, offset: u64, len: u64) {
        self.shared.inner.will_read(key, offset, len)
    }

    fn holds_decompressed(&self) -> bool {
        self.shared.inner.holds_decompressed()
    }

    fn delete(&self, _key: &str) -> Result<()> {
        Err(Error::Invalid("the mount never writes to a tier".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierback_engine::store::faulty::FaultyStore;
    use tierback_engine::store::memory::MemoryStore;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect()
    }

    #[test]
    fn ranges_anywhere_equal_the_object() {
        let mem = MemoryStore::new("m");
        let obj = data(3 * WINDOW as usize + 12_345);
        mem.put_bytes("a/b", &obj).unwrap();
        let s = CoalescingStore::new(Arc::new(mem));
        for (off, len) in [
            (0, 10),
            (WINDOW - 5, 10),
            (2 * WINDOW - 1, WINDOW),
            (obj.len() as u64 - 7, 7),
            (5, 3 * WINDOW),
        ] {
            assert_eq!(
                s.get_range("a/b", off, len).unwrap(),
                &obj[off as usize..(off + len) as usize],
                "{off}+{len}"
            );
        }
        assert!(s.get_range("a/b", obj.len() as u64 - 3, 10).is_err());
        assert!(matches!(
            s.get_range("no/such", 0, 1),
            Err(Error::NotFound { .. })
        ));
    }

    /// A store that records the ranges asked of it.
    struct Counting {
        inner: MemoryStore,
        gets: Mutex<Vec<(u64, u64)>>,
    }

    impl Store for Counting {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn put_file(&self, key: &str, src: &Path) -> Result<()> {
            self.inner.put_file(key, src)
        }
        fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
            self.inner.put_bytes(key, bytes)
        }
        fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.gets.lock().unwrap().push((offset, len));
            self.inner.get_range(key, offset, len)
        }
        fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
            self.inner.head(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<()> {
            self.inner.delete(key)
        }
    }

    #[test]
    fn a_seek_fetches_what_it_asks_and_nothing_ahead() {
        let counting = Arc::new(Counting {
            inner: MemoryStore::new("m"),
            gets: Mutex::default(),
        });
        let obj = data(20 * WINDOW as usize);
        counting.put_bytes("a/b", &obj).unwrap();
        let s = CoalescingStore::new(counting.clone());
        let fetched = || counting.gets.lock().unwrap().drain(..).collect::<Vec<_>>();
        // From the start: a whole window, and the two after it in the background.
        assert_eq!(s.get_range("a/b", 10, 100).unwrap(), &obj[10..110]);
        for _ in 0..500 {
            if counting.gets.lock().unwrap().len() > AHEAD as usize {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut first = fetched();
        first.sort();
        assert_eq!(first, [(0, WINDOW), (WINDOW, WINDOW), (2 * WINDOW, WINDOW)]);
        // Far away, twice: exactly the bytes asked, nothing ahead.
        for off in [18 * WINDOW + 7, 5 * WINDOW + 3] {
            let got = s.get_range("a/b", off, 4096).unwrap();
            assert_eq!(got, &obj[off as usize..off as usize + 4096]);
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert_eq!(fetched(), vec![(off, 4096)]);
        }
        // Reading on from there is sequential again: its window.
        let off = 5 * WINDOW + 5000;
        assert_eq!(
            s.get_range("a/b", off, 100).unwrap(),
            &obj[off as usize..off as usize + 100]
        );
        assert_eq!(fetched()[0], (5 * WINDOW, WINDOW));
    }

    #[test]
    fn forgotten_windows_are_fetched_again() {
        let mem = Arc::new(MemoryStore::new("m"));
        let obj = data(100_000);
        mem.put_bytes("a/b", &obj).unwrap();
        let s = CoalescingStore::new(mem.clone());
        assert_eq!(s.get_range("a/b", 10, 10).unwrap(), &obj[10..20]);
        // The object changes underneath (a repair): the kept window still has the old bytes...
        let repaired = data(100_000).iter().map(|b| b ^ 1).collect::<Vec<u8>>();
        mem.put_bytes("a/b", &repaired).unwrap();
        assert_eq!(s.get_range("a/b", 10, 10).unwrap(), &obj[10..20]);
        // ...until the reader that found them bad says so.
        s.forget("a/b");
        assert_eq!(s.get_range("a/b", 10, 10).unwrap(), &repaired[10..20]);
    }

    #[test]
    fn failed_fetches_are_retried_not_remembered() {
        let faulty = FaultyStore::new(MemoryStore::new("m"));
        let obj = data(100_000);
        faulty.put_bytes("a/b", &obj).unwrap();
        let faulty = Arc::new(faulty);
        let s = CoalescingStore::new(faulty.clone());
        s.shared.size("a/b").unwrap();
        faulty.fail_next(1);
        assert!(s.get_range("a/b", 10, 10).is_err());
        assert_eq!(s.get_range("a/b", 10, 10).unwrap(), &obj[10..20]);
    }
}
