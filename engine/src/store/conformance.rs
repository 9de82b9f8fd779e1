//! One behaviour suite that every [`Store`] implementation must pass: unit tests run it on the
//! in-memory and local stores and on every wrapper over them; integration tests run it on S3 and
//! rclone tiers. [`forwards_every_method`] checks that a wrapper loses no call on the way in.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{ObjectMeta, Store};
use crate::{Error, Result};

/// Panics with a description of the first broken promise. Uses keys under `conformance/`.
pub fn run(store: &dyn Store) {
    let p = "conformance";
    for m in store.list(p).expect("list") {
        store.delete(&m.key).expect("clean up an earlier run");
    }

    // Absent objects.
    assert_eq!(
        store.head(&format!("{p}/absent")).unwrap(),
        None,
        "head of an absent key"
    );
    assert!(
        matches!(
            store.get_range(&format!("{p}/absent"), 0, 1),
            Err(Error::NotFound { .. })
        ),
        "get_range of an absent key must be NotFound"
    );
    store
        .delete(&format!("{p}/absent"))
        .expect("deleting an absent key succeeds");

    // put_bytes / get_range / head.
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let key = format!("{p}/svc/2026-01-16/a_120000.sql.gz");
    store.put_bytes(&key, &data).expect("put_bytes");
    assert_eq!(
        store.head(&key).unwrap().map(|m| m.size),
        Some(data.len() as u64)
    );
    assert_eq!(
        store.get_range(&key, 0, data.len() as u64).unwrap(),
        data,
        "full read"
    );
    assert_eq!(
        store.get_range(&key, 1000, 5000).unwrap(),
        &data[1000..6000],
        "ranged read"
    );
    assert_eq!(
        store.get_range(&key, data.len() as u64 - 7, 7).unwrap(),
        &data[data.len() - 7..],
        "read at the end"
    );
    assert!(
        store.get_range(&key, data.len() as u64 - 3, 10).is_err(),
        "range past the end must fail"
    );
    assert_eq!(store.get(&key).unwrap(), data, "get");
    store.forget(&key);
    store.will_read(&key, 0, data.len() as u64);
    assert_eq!(store.get(&key).unwrap(), data, "get after forget");

    // put_file replaces atomically.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, b"replacement").unwrap();
    store.put_file(&key, &src).expect("put_file");
    assert_eq!(store.get(&key).unwrap(), b"replacement");

    // Empty objects exist.
    let empty = format!("{p}/svc/empty");
    store.put_bytes(&empty, b"").unwrap();
    assert_eq!(store.head(&empty).unwrap().map(|m| m.size), Some(0));

    // list is sorted, prefix-filtered and complete.
    let other = format!("{p}/svc/2026-01-17/b_000000.sql.gz");
    store.put_bytes(&other, b"b").unwrap();
    let keys: Vec<String> = store
        .list(&format!("{p}/svc/"))
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(
        keys,
        vec![key.clone(), other.clone(), empty.clone()],
        "list"
    );
    let keys: Vec<String> = store
        .list(&format!("{p}/svc/2026-01-17"))
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, vec![other.clone()], "list with a narrower prefix");

    // Bad keys are refused.
    for bad in ["../escape", "/abs", "a//b", "a/./b"] {
        assert!(store.put_bytes(bad, b"x").is_err(), "key {bad:?} accepted");
    }

    for k in [&key, &other, &empty] {
        store.delete(k).unwrap();
        assert_eq!(store.head(k).unwrap(), None, "deleted {k}");
    }
    assert!(store.list(p).unwrap().is_empty(), "everything deleted");
    assert_eq!(
        store.clean_staging().expect("clean_staging"),
        0,
        "finished uploads leave nothing to clean"
    );
}

/// Panics unless `wrap` hands every [`Store`] method, default ones included, to the store it
/// wraps as that same method, once, and returns what that store answered. A wrapper that leaves
/// out a default method (say `forget`) would silently run the trait's default instead.
/// Recorder below must list every method of the trait: keep the two in step.
pub fn forwards_every_method(wrapper: &str, wrap: impl FnOnce(Arc<Recorder>) -> Box<dyn Store>) {
    let inner = Arc::new(Recorder::default());
    let store = wrap(Arc::clone(&inner));
    // Each call, and the inner store's answer it must hand back.
    type Call = fn(&dyn Store) -> String;
    let calls: [(&str, Call, &str); 11] = [
        (
            "put_file",
            |s| format!("{:?}", s.put_file("k/x", Path::new("/absent"))),
            "Ok(())",
        ),
        (
            "put_bytes",
            |s| format!("{:?}", s.put_bytes("k/x", b"x")),
            "Ok(())",
        ),
        (
            "get_range",
            |s| format!("{:?}", s.get_range("k/x", 1, 5)),
            "Ok([114, 97, 110, 103, 101])",
        ), // "range"
        (
            "head",
            |s| format!("{:?}", s.head("k/x").unwrap().map(|m| m.size)),
            "Some(42)",
        ),
        ("list", |s| s.list("k/").unwrap().len().to_string(), "1"),
        ("delete", |s| format!("{:?}", s.delete("k/x")), "Ok(())"),
        (
            "clean_staging",
            |s| format!("{:?}", s.clean_staging()),
            "Ok(7)",
        ),
        ("forget", |s| format!("{:?}", s.forget("k/x")), "()"),
        (
            "will_read",
            |s| format!("{:?}", s.will_read("k/x", 0, 9)),
            "()",
        ),
        (
            "holds_decompressed",
            |s| s.holds_decompressed().to_string(),
            "true",
        ),
        (
            "get",
            |s| format!("{:?}", s.get("k/x")),
            "Ok([119, 104, 111, 108, 101])",
        ), // "whole"
    ];
    assert_eq!(store.name(), "recorder", "{wrapper}: name");
    for (method, call, answer) in calls {
        let got = call(&*store);
        let seen = std::mem::take(&mut *inner.calls.lock().unwrap());
        assert_eq!(
            seen,
            [method],
            "{wrapper}: {method} reached the inner store as"
        );
        assert_eq!(got, answer, "{wrapper}: {method} answered");
    }
}

/// A store that records which of its methods were called and answers each with a fixed value.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<&'static str>>,
}

impl Recorder {
    fn saw(&self, method: &'static str) {
        self.calls.lock().unwrap().push(method);
    }
}

impl Store for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn put_file(&self, _: &str, _: &Path) -> Result<()> {
        self.saw("put_file");
        Ok(())
    }
    fn put_bytes(&self, _: &str, _: &[u8]) -> Result<()> {
        self.saw("put_bytes");
        Ok(())
    }
    fn get_range(&self, _: &str, _: u64, _: u64) -> Result<Vec<u8>> {
        self.saw("get_range");
        Ok(b"range".to_vec())
    }
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.saw("head");
        Ok(Some(ObjectMeta {
            key: key.to_owned(),
            size: 42,
        }))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.saw("list");
        Ok(vec![ObjectMeta {
            key: format!("{prefix}x"),
            size: 1,
        }])
    }
    fn delete(&self, _: &str) -> Result<()> {
        self.saw("delete");
        Ok(())
    }
    fn clean_staging(&self) -> Result<usize> {
        self.saw("clean_staging");
        Ok(7)
    }
    fn forget(&self, _: &str) {
        self.saw("forget");
    }
    fn will_read(&self, _: &str, _: u64, _: u64) {
        self.saw("will_read");
    }
    fn holds_decompressed(&self) -> bool {
        self.saw("holds_decompressed");
        true
    }
    fn get(&self, _: &str) -> Result<Vec<u8>> {
        self.saw("get");
        Ok(b"whole".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::faulty::FaultyStore;
    use crate::store::local::LocalStore;
    use crate::store::memory::MemoryStore;
    use crate::store::retry::RetryStore;

    fn retry<S: Store>(s: S) -> RetryStore<S> {
        RetryStore::new(s, 3, Duration::from_millis(1))
    }

    #[test]
    fn every_wrapper_forwards_every_method() {
        forwards_every_method("Arc", |r| Box::new(r));
        forwards_every_method(
            "Box<dyn Store>",
            |r| Box::new(Box::new(r) as Box<dyn Store>),
        );
        forwards_every_method("Arc<dyn Store>", |r| Box::new(r as Arc<dyn Store>));
        forwards_every_method("RetryStore", |r| Box::new(retry(r)));
        forwards_every_method("FaultyStore", |r| Box::new(FaultyStore::new(r)));
        forwards_every_method("RetryStore<Box<dyn Store>>", |r| {
            Box::new(retry(Box::new(r) as Box<dyn Store>))
        });
    }

    #[test]
    fn every_wrapper_passes_the_suite() {
        run(&retry(MemoryStore::new("m")));
        run(&(Box::new(MemoryStore::new("m")) as Box<dyn Store>));
        run(&retry(FaultyStore::new(MemoryStore::new("m"))));
        let dir = tempfile::tempdir().unwrap();
        let local = || LocalStore::open("local", dir.path()).unwrap();
        run(&Arc::new(local()));
        run(&(Box::new(local()) as Box<dyn Store>));
        run(&retry(Arc::new(local()) as Arc<dyn Store>));
    }
}
