//! The rclone tier (not implemented yet).

use std::path::Path;

use super::{ObjectMeta, Store};
use crate::config::TierConfig;
use crate::{Error, Result};

pub struct RcloneStore {
    name: String,
}

impl RcloneStore {
    pub fn open(tier: &TierConfig) -> Result<RcloneStore> {
        Err(Error::Invalid(format!(
            "tier {}: type rclone is not available in this build yet",
            tier.name
        )))
    }
}

impl Store for RcloneStore {
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
