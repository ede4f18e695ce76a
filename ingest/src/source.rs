//! Shards read through memory maps: record bytes are views of the page cache, not copies.
//!
//! Reading a shard with `read` copies every image out of the page cache into a fresh buffer,
//! and the buffers live until the writer has written their row group (up to two row groups,
//! ~128 MiB). On the 2-core VMs we measure on, first-touching fresh memory costs 0.1-2 ms per
//! MiB (the kernel zeroes every new page, and the hypervisor backs it); it was most of the
//! readers' time. A mapped shard hands out [`Bytes`] views of pages that are already in the
//! page cache: no copy and no new memory.
//!
//! [`MappedRegion`] maps a window of [`WINDOW_BYTES`] at a time, so a 5 GB inner tar is never
//! mapped whole: a window is unmapped when the reader has moved past it and the last view into
//! it (a row not yet written) is dropped. Memory stays bounded as with streamed reading.
//!
//! The one hazard of mapping: if another process truncates a shard while it is mapped, touching
//! the missing pages raises SIGBUS and the process dies (as with ripgrep's `--mmap`). Nothing
//! is lost (parts are committed atomically and a re-run resumes), but `--no-mmap` reads with
//! `read` instead for shards that may change under the ingest. Compressed shards are always
//! streamed.

use bytes::Bytes;
use std::fs::File;
use std::io::{self, Read};

/// Bytes of a shard mapped at a time (a record larger than this gets a window of its own).
pub const WINDOW_BYTES: u64 = 16 << 20;

/// A byte range of a file (a whole shard, or one member of an outer tar), read sequentially
/// through windows of memory maps.
pub struct MappedRegion {
    file: File,
    /// Where the region starts in the file, and its length (clamped to the file's length when
    /// opened: a cut outer tar ends the region early, and the readers report the truncation).
    start: u64,
    len: u64,
    /// Read position, relative to `start`.
    position: u64,
    /// The mapped window and where it starts, relative to `start`.
    window: Bytes,
    window_start: u64,
    /// Bytes mapped at a time ([`WINDOW_BYTES`]; smaller in tests).
    window_bytes: u64,
}

impl MappedRegion {
    /// Maps `len` bytes of `file` from `start` (as many as the file has).
    pub fn new(file: File, start: u64, len: u64) -> io::Result<Self> {
        let file_len = file.metadata()?.len();
        let len = len.min(file_len.saturating_sub(start));
        Ok(MappedRegion {
            file,
            start,
            len,
            position: 0,
            window: Bytes::new(),
            window_start: 0,
            window_bytes: WINDOW_BYTES,
        })
    }

    /// The first bytes of the region (for sniffing compression), without moving the position.
    pub fn peek(&mut self, n: usize) -> io::Result<Bytes> {
        let position = self.position;
        let head = self.view(n)?;
        self.position = position;
        Ok(head)
    }

    /// Bytes left from the position to the end of the region.
    fn remaining(&self) -> u64 {
        self.len - self.position
    }

    /// The next `n` bytes as a view of the map (fewer only at the end of the region); the
    /// position moves past them.
    pub fn view(&mut self, n: usize) -> io::Result<Bytes> {
        let n = (n as u64).min(self.remaining());
        if n == 0 {
            return Ok(Bytes::new());
        }
        let window_end = self.window_start + self.window.len() as u64;
        if self.position < self.window_start || self.position + n > window_end {
            self.map_window(n)?;
        }
        // Both bounds lie inside the window: `map_window` covered [position, position + n).
        let from = usize::try_from(self.position - self.window_start).map_err(io::Error::other)?;
        let to = from + usize::try_from(n).map_err(io::Error::other)?;
        self.position += n;
        Ok(self.window.slice(from..to))
    }

    /// Maps a new window that starts at the position and holds at least `n` bytes.
    fn map_window(&mut self, n: u64) -> io::Result<()> {
        let absolute = self.start + self.position;
        // Maps start on a page boundary; the window's view starts at the position.
        let aligned = absolute - absolute % page_size();
        let end = self.start + self.len;
        let map_len = (absolute + n.max(self.window_bytes)).min(end) - aligned;
        let map_len = usize::try_from(map_len).map_err(io::Error::other)?;
        // SAFETY: the map is read-only and private; its bytes are only read. A file truncated by
        // another process while mapped raises SIGBUS on access (see the module docs and
        // `--no-mmap`), which is the documented hazard of this mode, not undefined behaviour of
        // this process's own making.
        let map = unsafe { memmap2::MmapOptions::new().offset(aligned).len(map_len).map(&self.file)? };
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        let skip = usize::try_from(absolute - aligned).map_err(io::Error::other)?;
        self.window = Bytes::from_owner(map).slice(skip..);
        self.window_start = self.position;
        Ok(())
    }

    /// Passes over up to `n` bytes without touching them; returns how many there were.
    pub fn skip(&mut self, n: u64) -> u64 {
        let n = n.min(self.remaining());
        self.position += n;
        n
    }
}

impl Read for MappedRegion {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Small reads (tar headers, TFRecord framing) are served from the window without
        // remapping it for each; a read never maps more than a window.
        let wanted = buf.len().min(usize::try_from(self.window_bytes).unwrap_or(usize::MAX));
        let bytes = self.view(wanted)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

fn page_size() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 {
            return size as u64;
        }
    }
    4096
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut temp = tempfile::NamedTempFile::new().expect("temp file");
        temp.write_all(bytes).expect("write");
        let file = temp.reopen().expect("reopen");
        (temp, file)
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn views_reads_and_skips_walk_the_region_in_order() {
        let data = pattern(100_000);
        let (_keep, file) = file_of(&data);
        let mut region = MappedRegion::new(file, 1_000, 50_000).expect("map");
        assert_eq!(&region.peek(4).expect("peek")[..], &data[1_000..1_004]);
        let mut header = [0u8; 512];
        assert_eq!(region.read(&mut header).expect("read"), 512);
        assert_eq!(&header[..], &data[1_000..1_512]);
        assert_eq!(&region.view(10_000).expect("view")[..], &data[1_512..11_512]);
        assert_eq!(region.skip(20_000), 20_000);
        // Past the region's end: the rest, then nothing.
        let rest = region.view(1 << 20).expect("view");
        assert_eq!(&rest[..], &data[31_512..51_000]);
        assert!(region.view(1).expect("view").is_empty());
        assert_eq!(region.read(&mut header).expect("read"), 0);
        assert_eq!(region.skip(5), 0);
    }

    #[test]
    fn a_region_past_the_end_of_the_file_is_cut_to_the_file() {
        let data = pattern(10_000);
        let (_keep, file) = file_of(&data);
        let mut region = MappedRegion::new(file, 9_000, 5_000).expect("map");
        assert_eq!(&region.view(5_000).expect("view")[..], &data[9_000..]);
        let (_keep, file) = file_of(&data);
        let mut beyond = MappedRegion::new(file, 20_000, 5).expect("map");
        assert!(beyond.view(5).expect("view").is_empty());
    }

    #[test]
    fn views_that_cross_windows_are_whole_and_outlive_their_window() {
        let window = 3 * page_size() as usize + 100;
        let data = pattern(window * 2 + 12_345);
        let (_keep, file) = file_of(&data);
        let mut region = MappedRegion::new(file, 3, data.len() as u64).expect("map");
        region.window_bytes = window as u64;
        let first = region.view(window - 100).expect("view");
        // Crosses the first window's end: a new window starts at the position.
        let crossing = region.view(1_000).expect("view");
        let big = region.view(window + 5_000).expect("view");
        let tail = region.view(usize::MAX).expect("view");
        assert_eq!(&first[..], &data[3..3 + window - 100]);
        assert_eq!(&crossing[..], &data[3 + window - 100..3 + window + 900]);
        assert_eq!(&big[..], &data[3 + window + 900..3 + 2 * window + 5_900]);
        assert_eq!(&tail[..], &data[3 + 2 * window + 5_900..]);
        drop(region);
        // Views keep their maps alive after the region is gone.
        assert_eq!(first[17], data[20]);
    }
}
