//! Where a part's bytes go: the file, and a blake3 hasher on a thread of its own.
//!
//! The Parquet writer writes through a [`PartSink`] (small columns, page indexes, footer), and
//! the part writer writes the `image.bytes` pages through the same sink as lists of [`Bytes`]
//! segments: frame bytes and the images themselves, which are views of the readers' (mapped)
//! buffers. Those go to the file with `writev` and to the hasher ([`super::part_hash`]) as they are: no image is
//! copied in user space. (Through parquet's column writer every image was copied into a page
//! buffer, and the part was hashed on the writer thread: together 46% of the writer thread,
//! which was the ingest's serial stage.)
//!
//! The image pages are written beside the Parquet writer, so its byte count would fall behind
//! the file; the part writer then splices a placeholder of the same length through it, which
//! the sink swallows ([`PartSink::swallow`]). Offsets in the footer stay exact: the round-trip
//! tests read every row back through parquet's reader and the page index.

use super::part_hash::TreeHasher;
use bytes::Bytes;
use crossbeam_channel::Sender;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Small writes are gathered up to this size before they go to the file.
const PENDING_BYTES: usize = 256 << 10;
/// Threads hashing the part at most.
const MAX_HASH_THREADS: usize = 4;
/// `writev` takes at most this many buffers (Linux's `IOV_MAX`).
const MAX_IO_SLICES: usize = 1024;

/// A shared handle on the part's sink: one is the Parquet writer's `Write`, the other writes
/// image pages.
#[derive(Clone)]
pub(crate) struct PartSink(Arc<Mutex<SinkState>>);

struct SinkState {
    file: Option<File>,
    /// Bytes written or queued for the file so far.
    position: u64,
    /// Small writes not yet written.
    pending: Vec<u8>,
    /// Bytes still to swallow (the placeholder of image pages written beside the writer).
    swallow: u64,
    hasher: Option<TreeHasher>,
    /// The writeback thread and its queue of "written up to" positions.
    writeback: Option<(Sender<u64>, JoinHandle<()>)>,
}

/// What a closed sink leaves: the file (to fsync), its length and blake3.
pub(crate) struct ClosedSink {
    pub file: File,
    pub bytes: u64,
    pub blake3: blake3::Hash,
}

impl PartSink {
    pub fn new(file: File) -> io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_HASH_THREADS);
        let hasher = TreeHasher::new(threads)?;
        let writeback = start_writeback_thread(file.try_clone()?)?;
        Ok(PartSink(Arc::new(Mutex::new(SinkState {
            file: Some(file),
            position: 0,
            pending: Vec::with_capacity(PENDING_BYTES),
            swallow: 0,
            hasher: Some(hasher),
            writeback: Some(writeback),
        }))))
    }

    fn state(&self) -> io::Result<MutexGuard<'_, SinkState>> {
        self.0.lock().map_err(|_| io::Error::other("a part writer thread panicked"))
    }

    /// Bytes written (or queued) so far: where the next write lands in the file.
    #[cfg(test)]
    pub fn position(&self) -> io::Result<u64> {
        Ok(self.state()?.position)
    }

    /// Writes `segments` in order, after everything written before, and hashes them.
    pub fn write_segments(&self, segments: Vec<Bytes>) -> io::Result<()> {
        let mut state = self.state()?;
        state.flush_pending()?;
        let file = state.file.as_mut().ok_or_else(closed)?;
        let total = write_all_vectored(file, &segments)?;
        state.position += total;
        state.hash(segments)
    }

    /// The next `n` bytes written through `Write` are dropped: they stand for `n` bytes
    /// already written with [`PartSink::write_segments`].
    pub fn swallow(&self, n: u64) -> io::Result<()> {
        let mut state = self.state()?;
        state.swallow += n;
        state.position -= n;
        Ok(())
    }

    /// Asks the kernel to start writing back what has been written so far, without waiting:
    /// the final fsync then waits for little. The request is made on a thread of its own: the
    /// call builds the block I/O for every dirty page before it returns (a third of the
    /// writer thread's time when the writer made it).
    pub fn start_writeback(&self) -> io::Result<()> {
        let mut state = self.state()?;
        state.flush_pending()?;
        let position = state.position;
        if let Some(writeback) = &state.writeback {
            // A stopped writeback thread only loses the head start; the fsync still writes all.
            let _ = writeback.0.send(position);
        }
        Ok(())
    }

    /// Flushes, stops the hasher; the file is left open for the caller to fsync.
    pub fn close(&self) -> io::Result<ClosedSink> {
        let mut state = self.state()?;
        state.flush_pending()?;
        if state.swallow != 0 {
            return Err(io::Error::other(format!("{} placeholder bytes were never written", state.swallow)));
        }
        let file = state.file.take().ok_or_else(closed)?;
        if let Some((positions, thread)) = state.writeback.take() {
            drop(positions);
            thread.join().map_err(|_| io::Error::other("the part's writeback thread panicked"))?;
        }
        let blake3 = state.hasher.take().ok_or_else(closed)?.finalize()?;
        Ok(ClosedSink { file, bytes: state.position, blake3 })
    }
}

/// The thread that asks the kernel to write back the part up to each position it is sent.
fn start_writeback_thread(file: File) -> io::Result<(Sender<u64>, JoinHandle<()>)> {
    let (positions, received) = crossbeam_channel::unbounded::<u64>();
    let thread = std::thread::Builder::new().name("bitkit-part-writeback".into()).spawn(move || {
        while let Ok(mut position) = received.recv() {
            // Requests that queued up while the last one ran: the latest covers them.
            while let Ok(later) = received.try_recv() {
                position = later;
            }
            start_writeback(&file, position);
        }
    })?;
    Ok((positions, thread))
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)` of the first `len` bytes: starts writeback of their
/// dirty pages and returns without waiting for the disk.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, len: u64) {
    use std::os::fd::AsRawFd;
    let len = i64::try_from(len).unwrap_or(0);
    // SAFETY: a valid open descriptor; the call only schedules I/O and has no memory-safety
    // preconditions. A failure only loses the head start.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _len: u64) {}

fn closed() -> io::Error {
    io::Error::other("the part file is already closed")
}

impl SinkState {
    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = Bytes::from(std::mem::replace(&mut self.pending, Vec::with_capacity(PENDING_BYTES)));
        self.file.as_mut().ok_or_else(closed)?.write_all(&pending)?;
        self.hash(vec![pending])
    }

    fn hash(&mut self, segments: Vec<Bytes>) -> io::Result<()> {
        self.hasher.as_mut().ok_or_else(closed)?.update(segments)
    }
}

impl Write for PartSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.state()?;
        if state.swallow > 0 {
            let n = buf.len().min(usize::try_from(state.swallow).unwrap_or(usize::MAX));
            state.swallow -= n as u64;
            state.position += n as u64;
            return Ok(n);
        }
        state.pending.extend_from_slice(buf);
        state.position += buf.len() as u64;
        if state.pending.len() >= PENDING_BYTES {
            state.flush_pending()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.state()?.flush_pending()
    }
}

/// `write_all` over many buffers with `writev`; returns the bytes written.
fn write_all_vectored(file: &mut File, segments: &[Bytes]) -> io::Result<u64> {
    let mut total = 0u64;
    for batch in segments.chunks(MAX_IO_SLICES) {
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|s| IoSlice::new(s)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match file.write_vectored(slices) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the file takes no more bytes")),
                Ok(n) => {
                    total += n as u64;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_segments_and_small_writes_in_order_and_hashes_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let sink = PartSink::new(File::create(&path).expect("create")).expect("sink");
        let mut writer = sink.clone();
        writer.write_all(b"PAR1").expect("write");
        let big = Bytes::from(vec![7u8; 3 << 20]);
        // Many segments (more than one writev) and a large one.
        let mut segments: Vec<Bytes> = (0..3000u32).map(|i| Bytes::from(i.to_le_bytes().to_vec())).collect();
        segments.push(big.clone());
        sink.write_segments(segments).expect("segments");
        // A placeholder for 5 bytes already written: swallowed, the position kept.
        sink.write_segments(vec![Bytes::from_static(b"abcde")]).expect("segments");
        let before = sink.position().expect("position");
        sink.swallow(5).expect("swallow");
        writer.write_all(&[0; 5]).expect("placeholder");
        assert_eq!(sink.position().expect("position"), before);
        writer.write_all(b"tail").expect("write");
        let closed = sink.close().expect("close");
        drop(closed.file);
        let mut expected = b"PAR1".to_vec();
        for i in 0..3000u32 {
            expected.extend_from_slice(&i.to_le_bytes());
        }
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"abcde");
        expected.extend_from_slice(b"tail");
        let written = std::fs::read(&path).expect("read");
        assert_eq!(written, expected);
        assert_eq!(closed.bytes, expected.len() as u64);
        assert_eq!(closed.blake3, blake3::hash(&expected));
    }

    #[test]
    fn an_unfilled_placeholder_fails_the_close() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sink = PartSink::new(File::create(dir.path().join("f")).expect("create")).expect("sink");
        sink.write_segments(vec![Bytes::from_static(b"abc")]).expect("segments");
        sink.swallow(3).expect("swallow");
        assert!(sink.close().is_err());
    }
}
