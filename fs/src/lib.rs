//! The read-only FUSE view (issue 3).
