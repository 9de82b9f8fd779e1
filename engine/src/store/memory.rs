//! An in-memory tier for unit tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use super::{ObjectMeta, Store, check_key};
use crate::error::IoContext;
use crate::{Error, Result};

#[derive(Default)]
pub struct MemoryStore {
    name: String,
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new(name: &str) -> MemoryStore {
        MemoryStore {
            name: name.to_owned(),
            objects: Mutex::default(),
        }
    }

    /// Changes stored bytes behind the catalog's back (for corruption tests).
    pub fn corrupt(&self, key: &str, offset: usize) {
        let mut objects = self.objects.lock().unwrap();
        let data = objects.get_mut(key).expect("object to corrupt exists");
        data[offset] ^= 0xff;
    }
}

impl Store for MemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<()> {
        let bytes = std::fs::read(src).ctx(|| format!("reading {}", src.display()))?;
        self.put_bytes(key, &bytes)
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        check_key(key)?;
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_key(key)?;
        let objects = self.objects.lock().unwrap();
        let data = objects.get(key).ok_or_else(|| Error::NotFound {
            tier: self.name.clone(),
            key: key.to_owned(),
        })?;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= data.len() as u64)
            .ok_or_else(|| {
                Error::io(
                    format!(
                        "tier {}: {key}: range {offset}+{len} past the end ({})",
                        self.name,
                        data.len()
                    ),
                    std::io::ErrorKind::UnexpectedEof.into(),
                )
            })?;
        Ok(data[offset as usize..end as usize].to_vec())
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        check_key(key)?;
        Ok(self.objects.lock().unwrap().get(key).map(|d| ObjectMeta {
            key: key.to_owned(),
            size: d.len() as u64,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, d)| ObjectMeta {
                key: k.clone(),
                size: d.len() as u64,
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::run(&super::MemoryStore::new("mem"));
    }
}
