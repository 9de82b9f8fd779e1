//! Test helpers for garage (filled in by the work that needs them).
