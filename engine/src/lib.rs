//! The tierback engine: everything except the command line and the FUSE adapter.
//!
//! Data flows one way: a [`source::Source`] yields dump streams → [`artifact::writer`] cuts them
//! into independently compressed, hashed gzip members → the first tier's [`store::Store`] →
//! the [`catalog::Catalog`] records what exists. Reading goes catalog → store → block reader
//! ([`artifact::reader`]), which hands out only [`artifact::reader::VerifiedBlock`]s.

pub mod artifact;
pub mod backup;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod id;
pub mod layout;
pub mod lock;
pub mod metrics;
pub mod parallel;
pub mod plan;
pub mod process;
pub mod prune;
pub mod rebuild;
pub mod restic;
pub mod restore_test;
pub mod retention;
pub mod schedule;
pub mod secret;
pub mod source;
pub mod store;
pub mod sync;
pub mod tls;
pub mod units;
pub mod vault;
pub mod verify;
pub mod wal_fetch;

pub use error::{Error, Result};

/// Version string written into every artifact's metadata.
pub const TOOL_VERSION: &str = concat!("tierback ", env!("CARGO_PKG_VERSION"));
