//! The s3 tier (not implemented yet).

use std::path::Path;

use super::{ObjectMeta, Store};
use crate::config::TierConfig;
use crate::{Error, Result};

pub struct S3Store {
    name: String,
}

impl S3Store {
    pub fn open(tier: &TierConfig) -> Result<S3Store> {
        Err(Error::Invalid(format!(
            "tier {}: type s3 is not available in this build yet",
            tier.name
        )))
    }
}

impl Store for S3Store {
    fn name(&self) -> &str {
        &self.name
    }
    fn put_file(&self, _key: &str, _src: &Path) -> Result<()> {
        unimplemented!()
    }
    fn put_bytes(&self, _key: &str, _bytes: &[u8]) -> Result<()> {
        unimplemented!()
    }
    fn get_range(&self, _key: &str, _offset: u64, _len: u64) -> Result<Vec<u8>> {
        unimplemented!()
    }
    fn head(&self, _key: &str) -> Result<Option<ObjectMeta>> {
        unimplemented!()
    }
    fn list(&self, _prefix: &str) -> Result<Vec<ObjectMeta>> {
        unimplemented!()
    }
    fn delete(&self, _key: &str) -> Result<()> {
        unimplemented!()
    }
}
