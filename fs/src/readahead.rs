//! Read-ahead for sequential readers.
//!
//! Policy (per open file handle, [`Sequence::on_read`]): a read that starts near where the
//! previous one ended is sequential. "Near" rather than "exactly at" because the kernel sends
//! its own read-ahead on several FUSE threads at once, so consecutive requests can arrive
//! slightly out of order. While sequential, the window of blocks decoded ahead doubles from 1 up
//! to a maximum (bounded so that the window fits well inside the cache); any other read is a
//! seek, which resets the window and cancels queued work for that handle (a random reader should
//! not pay for decoding blocks it will never read).
//!
//! Work ([`Prefetcher`]) runs on a fixed pool of worker threads; each job first checks that its
//! handle has not seeked since it was queued and that the block is not already cached or being
//! decoded. The FUSE thread that needs a queued-but-unstarted block decodes it itself (the cache
//! claims a block when work starts), so both cores decode instead of one waiting.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

/// Sequential-read state of one open file handle.
#[derive(Debug, Default)]
pub struct Sequence {
    /// End of the previous read.
    next_offset: u64,
    /// Blocks decoded ahead on the next sequential read.
    window: usize,
    /// First block not yet queued for read-ahead.
    queued_upto: usize,
    /// Bumped on every seek; jobs queued under an older value are dropped.
    pub generation: Arc<AtomicU64>,
    started: bool,
}

impl Sequence {
    /// Records a read of `len` bytes at `offset` in a file of `blocks` blocks of `block_size`,
    /// and returns the blocks to decode ahead (possibly none).
    pub fn on_read(
        &mut self,
        offset: u64,
        len: u64,
        block_size: u64,
        blocks: usize,
        max_window: usize,
    ) -> Range<usize> {
        let slack = 2 * block_size;
        let sequential = if self.started {
            offset + slack >= self.next_offset && offset <= self.next_offset + slack
        } else {
            offset == 0
        };
        self.started = true;
        let end = offset + len;
        let last_block = (end.saturating_sub(1) / block_size) as usize;
        if !sequential {
            self.generation.fetch_add(1, Ordering::Relaxed);
            self.window = 0;
            self.queued_upto = 0;
            self.next_offset = end;
            return 0..0;
        }
        self.next_offset = self.next_offset.max(end);
        self.window = (self.window * 2).clamp(1, max_window.max(1));
        let start = self.queued_upto.max(last_block + 1);
        let stop = (last_block + 1 + self.window).min(blocks);
        if start >= stop {
            return 0..0;
        }
        self.queued_upto = stop;
        start..stop
    }
}

impl Sequence {
    /// True when the last read was not sequential (a seek, or a first read past the start).
    pub fn seeking(&self) -> bool {
        self.window == 0
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of threads running read-ahead jobs in the order queued.
pub struct Prefetcher {
    tx: Mutex<Option<Sender<Job>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Prefetcher {
    pub fn new(threads: usize) -> Prefetcher {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("readahead-{i}"))
                    .spawn(move || {
                        loop {
                            let job = rx.lock().expect("read-ahead queue poisoned").recv();
                            match job {
                                Ok(job) => job(),
                                Err(_) => break,
                            }
                        }
                    })
                    .expect("spawning a read-ahead thread")
            })
            .collect();
        Prefetcher {
            tx: Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
        }
    }

    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(tx) = self.tx.lock().expect("read-ahead sender poisoned").as_ref() {
            // A closed queue means we are shutting down: the work is not needed.
            let _ = tx.send(Box::new(job));
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.tx.lock().map(|mut t| t.take()).ok();
        for w in self
            .workers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
        {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = 1 << 20;

    #[test]
    fn window_grows_while_sequential() {
        let mut s = Sequence::default();
        // 128 KiB reads, as the kernel sends them.
        let r = s.on_read(0, 128 << 10, B, 100, 8);
        assert_eq!(r, 1..2);
        let r = s.on_read(128 << 10, 128 << 10, B, 100, 8);
        assert_eq!(r, 2..3, "window 2: blocks 1..3, 1 already queued");
        let r = s.on_read(256 << 10, 128 << 10, B, 100, 8);
        assert_eq!(r, 3..5);
        // Window is capped.
        for i in 3..40u64 {
            s.on_read(i * (128 << 10), 128 << 10, B, 100, 8);
        }
        let r = s.on_read(40 * (128 << 10), 128 << 10, B, 100, 8);
        assert!(r.end <= 5 + 1 + 8, "{r:?}");
    }

    #[test]
    fn slightly_out_of_order_is_still_sequential() {
        let mut s = Sequence::default();
        s.on_read(0, B, B, 100, 8);
        s.on_read(2 * B, B, B, 100, 8);
        let g = s.generation.load(Ordering::Relaxed);
        s.on_read(B, B, B, 100, 8);
        assert_eq!(s.generation.load(Ordering::Relaxed), g, "no seek");
    }

    #[test]
    fn seek_resets_and_cancels() {
        let mut s = Sequence::default();
        s.on_read(0, B, B, 100, 8);
        s.on_read(B, B, B, 100, 8);
        let g = s.generation.load(Ordering::Relaxed);
        assert_eq!(s.on_read(50 * B, 4096, B, 100, 8), 0..0);
        assert_eq!(s.generation.load(Ordering::Relaxed), g + 1);
        // Random 4 KiB reads never trigger read-ahead.
        assert_eq!(s.on_read(10 * B, 4096, B, 100, 8), 0..0);
        assert_eq!(s.on_read(70 * B, 4096, B, 100, 8), 0..0);
        // A sequential run from there starts again at window 1.
        assert_eq!(s.on_read(70 * B + 4096, 4096, B, 100, 8), 71..72);
    }

    #[test]
    fn stops_at_the_last_block() {
        let mut s = Sequence::default();
        assert_eq!(s.on_read(0, B, B, 2, 8), 1..2);
        assert_eq!(s.on_read(B, B, B, 2, 8), 0..0);
    }

    #[test]
    fn pool_runs_jobs() {
        let p = Prefetcher::new(2);
        let (tx, rx) = channel();
        for i in 0..10 {
            let tx = tx.clone();
            p.submit(move || tx.send(i).unwrap());
        }
        let mut got: Vec<i32> = (0..10).map(|_| rx.recv().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }
}
