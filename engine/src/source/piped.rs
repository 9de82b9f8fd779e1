//! A dump produced on its own thread into a pipe (a tar being written, say): the reader reads the
//! pipe; `finish` joins the producer for its facts or its error. Dropped early, the pipe closes
//! and the producer's next write fails (SIGPIPE is ignored), so it ends.

use std::io::{PipeReader, PipeWriter, Read};
use std::thread::JoinHandle;

use super::{Dump, Facts};
use crate::{Error, Result};

pub struct Piped {
    reader: PipeReader,
    producer: Option<JoinHandle<Result<Facts>>>,
}

impl Piped {
    /// Runs `produce` on a new thread, writing into the pipe this dump reads.
    pub fn spawn(
        produce: impl FnOnce(PipeWriter) -> Result<Facts> + Send + 'static,
    ) -> Result<Piped> {
        let (reader, writer) = std::io::pipe().map_err(|e| Error::io("creating a pipe", e))?;
        let producer = std::thread::spawn(move || produce(writer));
        Ok(Piped {
            reader,
            producer: Some(producer),
        })
    }
}

impl Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Dump for Piped {
    fn finish(mut self: Box<Self>) -> Result<Facts> {
        let producer = self.producer.take().expect("finish is called once");
        producer
            .join()
            .map_err(|_| Error::Invalid("the producer thread panicked".into()))?
    }
}
