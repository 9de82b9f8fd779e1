//! Reused block buffers. A fresh 1 MiB `vec![0; n]` costs a memset (about 5 % of a cold read
//! through the mount) or page faults; a buffer that held an evicted block costs neither. Every
//! byte of a reused buffer is overwritten before use: the inflater must fill it exactly, or the
//! block is rejected.

use std::sync::Mutex;

/// Buffers kept for reuse: enough for the blocks in flight on a few cores, little memory.
const KEPT: usize = 16;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of exactly `len` bytes, with unspecified contents.
pub fn take(len: usize) -> Vec<u8> {
    let reused = FREE.lock().ok().and_then(|mut free| {
        let i = free.iter().position(|b| b.capacity() >= len)?;
        Some(free.swap_remove(i))
    });
    match reused {
        Some(mut buf) => {
            // Only grows (zero-filling the new tail) when the buffer was shorter than `len`.
            buf.resize(len, 0);
            buf
        }
        None => vec![0; len],
    }
}

/// Hands a buffer back for reuse (dropped if enough are kept already).
pub fn give(buf: Vec<u8>) {
    if buf.capacity() == 0 {
        return;
    }
    if let Ok(mut free) = FREE.lock()
        && free.len() < KEPT
    {
        free.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_buffer_has_the_asked_length() {
        give(vec![7; 1000]);
        // Tests run in parallel and share the pool: whichever buffer comes back, its length is
        // the one asked for.
        assert_eq!(take(600).len(), 600);
        assert_eq!(take(2000).len(), 2000);
    }
}
