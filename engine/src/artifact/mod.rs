//! The blocked-gzip artifact format (DESIGN.md): a stream cut into blocks of B bytes, each an
//! independent gzip member whose FEXTRA subfield records the member's length, the block's length
//! and its SHA-256. Any gzip tool reads the file; tierback seeks in O(1) and verifies per block.

pub mod buffers;
pub mod format;
pub mod index;
pub mod metadata;
pub mod reader;
pub mod writer;

pub use index::{BlockEntry, BlockIndex};
