//! A restic repository on one of tierback's own stores: rustic_core's backend traits over
//! [`Store`], in restic's layout (`config`, `keys/ID`, `snapshots/ID`, `index/ID`,
//! `data/ID[..2]/ID`). The repository therefore gets what every tier already has: atomic
//! fsynced writes and the tier's owner-only modes on a local path; TLS, server-side encryption,
//! multipart uploads and retries on the object store.

use std::sync::Arc;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use crate::store::Store;

#[derive(Clone)]
pub struct StoreBackend {
    store: Arc<dyn Store>,
    /// Key prefix of the repository on the store (`""` or `"restic/"`).
    prefix: String,
}

impl std::fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreBackend({}:{})", self.store.name(), self.prefix)
    }
}

impl StoreBackend {
    pub fn new(store: Arc<dyn Store>, prefix: &str) -> StoreBackend {
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        StoreBackend { store, prefix }
    }

    fn key(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => format!("{}config", self.prefix),
            FileType::Pack => format!("{}data/{}/{}", self.prefix, &hex[..2], &*hex),
            _ => format!("{}{}/{}", self.prefix, tpe.dirname(), &*hex),
        }
    }

    fn fail(&self, what: &str, key: &str, e: crate::Error) -> Box<RusticError> {
        RusticError::with_source(
            ErrorKind::Backend,
            "tier `{tier}`: {what} `{key}` failed",
            e,
        )
        .attach_context("tier", self.store.name().to_owned())
        .attach_context("what", what.to_owned())
        .attach_context("key", key.to_owned())
    }
}

impl ReadBackend for StoreBackend {
    fn location(&self) -> String {
        format!("tierback:{}:{}", self.store.name(), self.prefix)
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let key = self.key(tpe, &Id::default());
            return match self.store.head(&key) {
                Ok(Some(m)) => Ok(vec![(Id::default(), size32(m.size))]),
                Ok(None) => Ok(Vec::new()),
                Err(e) => Err(self.fail("stat", &key, e)),
            };
        }
        let dir = format!("{}{}/", self.prefix, tpe.dirname());
        let objects = self
            .store
            .list(&dir)
            .map_err(|e| self.fail("listing", &dir, e))?;
        // Anything that is not a file named by its id (a stray file, a staging name) is not
        // part of the repository.
        Ok(objects
            .into_iter()
            .filter_map(|m| {
                let name = m.key.rsplit('/').next()?;
                let id = name.parse::<Id>().ok()?;
                Some((id, size32(m.size)))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let key = self.key(tpe, id);
        self.store
            .get(&key)
            .map(Bytes::from)
            .map_err(|e| self.fail("reading", &key, e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let key = self.key(tpe, id);
        self.store
            .get_range(&key, offset.into(), length.into())
            .map(Bytes::from)
            .map_err(|e| self.fail("reading", &key, e))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for StoreBackend {
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let key = self.key(tpe, id);
        let parts = content.into_vec();
        let result = match parts.as_slice() {
            [one] => self.store.put_bytes(&key, one),
            _ => self.store.put_bytes(&key, &parts.concat()),
        };
        result.map_err(|e| self.fail("writing", &key, e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = self.key(tpe, id);
        self.store
            .delete(&key)
            .map_err(|e| self.fail("deleting", &key, e))
    }
}

/// restic's pack files stay far below 4 GiB; a larger object cannot be one.
fn size32(size: u64) -> u32 {
    u32::try_from(size).unwrap_or(u32::MAX)
}
