//! Ordered parallel map: the one pipeline shape the engine needs, for compressing a dump and for
//! decompressing blocks ahead of a reader. Inputs are pulled on the calling thread (a source
//! stream need not be `Send`), `threads` workers transform them, and a sink thread receives the
//! results in input order. At most `depth` items are in flight, so memory stays bounded — a few
//! blocks per core — whatever the stream's length.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

pub fn ordered_map<I, O, S, E>(
    inputs: impl Iterator<Item = Result<I, E>>,
    threads: usize,
    depth: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, I) -> O + Sync,
    mut sink: impl FnMut(O) -> Result<(), E> + Send,
) -> Result<(), E>
where
    I: Send,
    O: Send,
    E: Send,
{
    // A single item (a small file's one block) is not worth starting threads for: verify
    // checks thousands of such copies in a pass.
    if inputs.size_hint().1.is_some_and(|n| n <= 1) {
        let mut state = init();
        for item in inputs {
            sink(work(&mut state, item?))?;
        }
        return Ok(());
    }
    let threads = threads.max(1);
    let depth = depth.max(threads);
    let (job_tx, job_rx) = sync_channel::<(I, SyncSender<O>)>(threads);
    let job_rx = Mutex::new(job_rx);
    let (order_tx, order_rx) = sync_channel::<Receiver<O>>(depth);
    let (init, work) = (&init, &work);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let job_rx = &job_rx;
            scope.spawn(move || {
                let mut state = init();
                loop {
                    let job = job_rx.lock().expect("job queue poisoned").recv();
                    let Ok((item, reply)) = job else { break };
                    // The sink may have stopped early; then nobody wants the result.
                    let _ = reply.send(work(&mut state, item));
                }
            });
        }
        let sink_thread = scope.spawn(move || {
            for pending in order_rx {
                let out = pending.recv().expect("a worker thread panicked");
                sink(out)?;
            }
            Ok(())
        });
        let mut input_error = None;
        for item in inputs {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    input_error = Some(e);
                    break;
                }
            };
            let (reply_tx, reply_rx) = sync_channel(1);
            // A closed channel means the sink failed; its error is returned below.
            if order_tx.send(reply_rx).is_err() || job_tx.send((item, reply_tx)).is_err() {
                break;
            }
        }
        drop(order_tx);
        drop(job_tx);
        let sunk = sink_thread.join().expect("the sink thread panicked");
        match input_error {
            Some(e) => Err(e),
            None => sunk,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_under_uneven_work() {
        let mut seen = Vec::new();
        ordered_map(
            (0..200u64).map(Ok::<_, ()>),
            4,
            8,
            || (),
            |_, i| {
                std::thread::sleep(std::time::Duration::from_micros((i * 7919) % 300));
                i * 2
            },
            |o| {
                seen.push(o);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..200).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn sink_error_stops_input() {
        let mut pulled = 0;
        let inputs = std::iter::from_fn(|| {
            pulled += 1;
            Some(Ok::<_, String>(pulled))
        })
        .take(1_000_000);
        let r = ordered_map(
            inputs,
            2,
            4,
            || (),
            |_, i| i,
            |o| {
                if o == 10 {
                    Err(format!("stop at {o}"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r.unwrap_err(), "stop at 10");
        assert!(
            pulled < 100,
            "kept reading input after the sink failed: {pulled}"
        );
    }

    #[test]
    fn one_item_runs_on_the_calling_thread() {
        let caller = std::thread::current().id();
        let mut seen = Vec::new();
        ordered_map(
            std::iter::once(Ok::<_, ()>(3)),
            4,
            8,
            || (),
            |_, i| (i * 2, std::thread::current().id()),
            |o| {
                seen.push(o);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, vec![(6, caller)]);
    }

    #[test]
    fn input_error_is_returned() {
        let inputs = vec![Ok(1), Err("bad read".to_string()), Ok(3)].into_iter();
        let r = ordered_map(inputs, 2, 2, || (), |_, i| i, |_| Ok(()));
        assert_eq!(r.unwrap_err(), "bad read");
    }
}
