//! Test helpers for pg (filled in by the work that needs them).
