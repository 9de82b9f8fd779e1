//! Test helpers for rclone (filled in by the work that needs them).
