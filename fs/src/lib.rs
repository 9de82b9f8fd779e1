//! The read-only FUSE view of every backup on every tier (issue 3).
//!
//! Structure (after mountpoint-s3): a kernel-free core — [`tree`] (catalog → directory tree),
//! [`inode`] (stable numbers), [`filesystem`] (typed operations), [`cache`] (verified blocks,
//! single flight), [`readahead`] — and [`fuse`], the one adapter that names fuser. [`mount`]
//! owns the process lifecycle. Every error becomes an errno in [`error`], a refusal of the core's
//! own permission check included. [`audit`] names callers and keeps the
//! audit log of every attempt to read, allowed or refused.

pub mod audit;
pub mod cache;
pub mod catalog;
pub mod coalesce;
pub mod error;
pub mod filesystem;
pub mod fuse;
pub mod inode;
pub mod mount;
pub mod readahead;
pub mod tree;

pub use error::{FsError, FsResult};
pub use filesystem::{Filesystem, Settings};
