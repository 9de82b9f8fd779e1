//! Test helpers for fuse (filled in by the work that needs them).
