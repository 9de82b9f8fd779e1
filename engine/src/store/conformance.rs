//! One behaviour suite that every [`Store`] implementation must pass: unit tests run it on the
//! in-memory, fault-injecting and local stores; integration tests run it on S3 and rclone tiers.

use super::Store;
use crate::Error;

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
}
