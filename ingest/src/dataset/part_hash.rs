//! The blake3 of a part, computed on several threads as the part is written.
//!
//! BLAKE3 is a tree: a file's hash is a merge of the chaining values of aligned subtrees, each
//! of which can be hashed on its own (`blake3::hazmat`). The part's bytes are cut into leaves of
//! [`LEAF_BYTES`] (a power of two of 1 KiB chunks, so every leaf is a subtree of the file's
//! tree) and the leaves are hashed on worker threads while the writer goes on; the root is
//! merged when the part is closed. The result is `blake3::hash` of the file, byte for byte (the
//! tests check it against `blake3::hash` at every leaf boundary). One thread hashed ~70 ms of
//! the 4,000-image benchmark's ingest and was its longest thread.

use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};
use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::io;
use std::thread::JoinHandle;

/// Bytes per leaf: 4 MiB = 4096 chunks, enough for blake3's SIMD to run at full width.
pub const LEAF_BYTES: u64 = 4 << 20;
/// Leaves queued for the workers (they hold views, not copies).
const QUEUED_LEAVES: usize = 8;

type Job = (u64, Vec<Bytes>);

/// Hashes a byte stream given as segments in order.
pub(crate) struct TreeHasher {
    leaf_bytes: u64,
    /// Index and segments of the leaf being filled, and its length so far.
    leaf_index: u64,
    leaf: Vec<Bytes>,
    leaf_len: u64,
    /// A full leaf is sent only once a byte past it arrives: if none does, it is the whole
    /// input and must be hashed as the root.
    full: Option<Vec<Bytes>>,
    jobs: Option<Sender<Job>>,
    results: Receiver<(u64, ChainingValue)>,
    workers: Vec<JoinHandle<()>>,
}

impl TreeHasher {
    pub fn new(threads: usize) -> io::Result<Self> {
        Self::with_leaf_bytes(threads, LEAF_BYTES)
    }

    fn with_leaf_bytes(threads: usize, leaf_bytes: u64) -> io::Result<Self> {
        let (jobs, queued) = bounded::<Job>(QUEUED_LEAVES);
        let (done, results) = crossbeam_channel::unbounded();
        let workers = (0..threads.max(1))
            .map(|i| {
                let (queued, done) = (queued.clone(), done.clone());
                std::thread::Builder::new().name(format!("bitkit-part-hash-{i}")).spawn(move || {
                    for (index, segments) in queued {
                        let mut hasher = blake3::Hasher::new();
                        hasher.set_input_offset(index * leaf_bytes);
                        for segment in &segments {
                            hasher.update(segment);
                        }
                        if done.send((index, hasher.finalize_non_root())).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(TreeHasher {
            leaf_bytes,
            leaf_index: 0,
            leaf: Vec::new(),
            leaf_len: 0,
            full: None,
            jobs: Some(jobs),
            results,
            workers,
        })
    }

    /// Adds the next segments of the stream.
    pub fn update(&mut self, segments: Vec<Bytes>) -> io::Result<()> {
        for mut segment in segments {
            while !segment.is_empty() {
                if let Some(full) = self.full.take() {
                    self.send(self.leaf_index - 1, full)?;
                }
                let room = usize::try_from(self.leaf_bytes - self.leaf_len).unwrap_or(usize::MAX);
                let part = if segment.len() <= room { std::mem::take(&mut segment) } else { segment.split_to(room) };
                self.leaf_len += part.len() as u64;
                self.leaf.push(part);
                if self.leaf_len == self.leaf_bytes {
                    self.full = Some(std::mem::take(&mut self.leaf));
                    self.leaf_len = 0;
                    self.leaf_index += 1;
                }
            }
        }
        Ok(())
    }

    fn send(&self, index: u64, segments: Vec<Bytes>) -> io::Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(|| io::Error::other("the part hasher is finished"))?;
        jobs.send((index, segments)).map_err(|_| io::Error::other("a part hash thread stopped"))
    }

    /// The blake3 of everything given to [`TreeHasher::update`].
    pub fn finalize(mut self) -> io::Result<blake3::Hash> {
        let total = self.leaf_index * self.leaf_bytes + self.leaf_len;
        let mut last = Some(std::mem::take(&mut self.leaf)).filter(|leaf| !leaf.is_empty());
        if let Some(full) = self.full.take() {
            // The input ends exactly at a leaf's end.
            last = Some(full);
        }
        let leaves = total.div_ceil(self.leaf_bytes);
        if leaves <= 1 {
            // One leaf (or none): it is the root.
            drop(self.jobs.take());
            let mut hasher = blake3::Hasher::new();
            for segment in last.iter().flatten() {
                hasher.update(segment);
            }
            self.join()?;
            return Ok(hasher.finalize());
        }
        if let Some(last) = last {
            self.send(leaves - 1, last)?;
        }
        drop(self.jobs.take());
        let mut cvs: Vec<Option<ChainingValue>> = vec![None; usize::try_from(leaves).map_err(io::Error::other)?];
        for _ in 0..leaves {
            let (index, cv) = self.results.recv().map_err(|_| io::Error::other("a part hash thread stopped"))?;
            if let Some(slot) = cvs.get_mut(index as usize) {
                *slot = Some(cv);
            }
        }
        self.join()?;
        let cvs: Vec<ChainingValue> =
            cvs.into_iter().collect::<Option<_>>().ok_or_else(|| io::Error::other("a part hash leaf is missing"))?;
        let left = left_subtree_len(total);
        let (left_cv, right_cv) = (
            subtree(&cvs, 0, left, self.leaf_bytes),
            subtree(&cvs, (left / self.leaf_bytes) as usize, total - left, self.leaf_bytes),
        );
        Ok(merge_subtrees_root(&left_cv, &right_cv, Mode::Hash))
    }

    fn join(&mut self) -> io::Result<()> {
        for worker in self.workers.drain(..) {
            worker.join().map_err(|_| io::Error::other("a part hash thread panicked"))?;
        }
        Ok(())
    }
}

/// The chaining value of the subtree of `len` bytes whose first leaf is `first`: BLAKE3's tree
/// is left-balanced, and a left subtree longer than a leaf is a whole number of leaves.
fn subtree(cvs: &[ChainingValue], first: usize, len: u64, leaf_bytes: u64) -> ChainingValue {
    if len <= leaf_bytes {
        return cvs[first];
    }
    let left = left_subtree_len(len);
    let left_cv = subtree(cvs, first, left, leaf_bytes);
    let right_cv = subtree(cvs, first + (left / leaf_bytes) as usize, len - left, leaf_bytes);
    merge_subtrees_non_root(&left_cv, &right_cv, Mode::Hash)
}

impl Drop for TreeHasher {
    fn drop(&mut self) {
        drop(self.jobs.take());
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_in_segments(data: &[u8], leaf_bytes: u64, cut: usize) -> blake3::Hash {
        let mut hasher = TreeHasher::with_leaf_bytes(2, leaf_bytes).expect("hasher");
        let bytes = Bytes::copy_from_slice(data);
        let mut at = 0;
        let mut step = 1;
        // Segments of growing, irregular sizes, sent a few at a time.
        while at < data.len() {
            let mut batch = Vec::new();
            for _ in 0..3 {
                let end = (at + step).min(data.len());
                batch.push(bytes.slice(at..end));
                at = end;
                step = (step * 7 + cut) % 5000 + 1;
            }
            hasher.update(batch).expect("update");
        }
        hasher.finalize().expect("finalize")
    }

    #[test]
    fn equals_blake3_at_and_around_every_leaf_boundary() {
        let leaf = 4 * 1024u64;
        let data: Vec<u8> = (0..40 * 1024 + 17).map(|i: usize| (i * 31 + i / 1024) as u8).collect();
        let mut lengths = vec![0, 1, 1023, 1024, 1025];
        for k in 1..=9u64 {
            let edge = (k * leaf) as usize;
            lengths.extend([edge - 1, edge, edge + 1, edge + 1024]);
        }
        lengths.push(data.len());
        for len in lengths {
            for cut in [0, 3] {
                assert_eq!(hash_in_segments(&data[..len], leaf, cut), blake3::hash(&data[..len]), "length {len}");
            }
        }
    }

    #[test]
    fn equals_blake3_with_the_real_leaf_size() {
        let data: Vec<u8> = (0..3 * LEAF_BYTES as usize + 12_345).map(|i| (i ^ (i >> 11)) as u8).collect();
        assert_eq!(hash_in_segments(&data, LEAF_BYTES, 1), blake3::hash(&data));
    }
}
