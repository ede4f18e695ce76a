//! The ingest driver: shards in, a dataset directory out — streaming, parallel, ordered,
//! resumable, deterministic.
//!
//! ```text
//!  reader threads (R)                                    writer (caller's thread)
//!  shard k: frame; decode_raw (CRC, Example, labels);  ──▶  rows in input order → part files
//!  probe; blake3 — bounded channel per shard               rejects → rejects.jsonl
//!  (taken in shard order, at most R shards ahead)          state committed per part
//!      └ --max-side: framed records are processed on a rayon pool instead (order kept)
//! ```
//! - Order: readers take shards in order; the processor drains shard k's channel completely
//!   before shard k+1's (with `--max-side`, mapping each chunk in parallel, order-preserving).
//!   Output does not depend on thread count or timing.
//! - Memory: every channel is bounded and readers stay within 2R shards of the one being
//!   drained ([`ShardWindow`]); a chunk holds at most [`CHUNK_RECORDS`] records or
//!   [`CHUNK_BYTES`] of payload (or one record of up to `max_record_bytes`). Records in flight
//!   ≈ (6R + 3) × CHUNK_BYTES + two row groups (one being written, one filling:
//!   2 × `row_group_bytes`) + one `max_record_bytes` record, with R = min(workers, 16, shards)
//!   readers: about 160 MiB with the defaults on 2 cores, whatever the size of a shard or inner
//!   tar. Read from a mapped shard ([`crate::source`]) they are views of page-cache pages (plus
//!   at most one [`crate::source::WINDOW_BYTES`] window per reader), not copies.
//! - Durability: parts are written under temporary names and renamed when whole
//!   ([`crate::dataset::writer`]). After each part, `.ingest-state.json` records the parts,
//!   rejects, per-shard counts and the position (shard, records consumed). A re-run of the same
//!   command resumes there: finished shards are skipped, the shard in progress is re-read and
//!   its already-written records skipped, so the final dataset is byte-identical to an
//!   uninterrupted run. `dataset.json` is written last: a dataset is complete iff it exists.

use crate::classes::ClassList;
use crate::dataset::manifest::write_atomic;
use crate::dataset::{
    part_file_name, Manifest, PartInfo, PartWriter, RejectEntry, Row, SourceStats, WriterSettings, MANIFEST_FILE,
};
use crate::formats::{decode_raw, DecodeContext, Format, TfRecordKeys};
use crate::image::{probe_image, reencode_max_side, ProbeError, ReencodeConfig};
use crate::plan::{derive_classes, open_shard, plan_shards, ShardSpec, WorkerSplit};
use crate::{Error, RawRecord, ReaderConfig, RecordError, RejectKind, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Records per chunk passed between stages.
pub const CHUNK_RECORDS: usize = 256;
/// Payload bytes per chunk passed between stages.
pub const CHUNK_BYTES: u64 = 2 << 20;
/// Chunks buffered per channel.
const CHANNEL_CHUNKS: usize = 2;
/// Reader threads at most: framing is cheap; more readers only help on slow storage.
const MAX_READERS: usize = 16;
/// Pillow refuses images above 2 × 89,478,485 pixels as decompression bombs; so do we.
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;
/// Where the resume state lives inside the output directory.
pub const STATE_FILE: &str = ".ingest-state.json";

/// Everything `bitkit ingest` needs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub format: Format,
    pub inputs: Vec<String>,
    pub out: PathBuf,
    pub classes_file: Option<PathBuf>,
    pub reader: ReaderConfig,
    pub tfrecord: TfRecordKeys,
    pub max_pixels: u64,
    pub reencode: Option<ReencodeConfig>,
    /// Threads for the parallel stage (does not change the output).
    pub workers: usize,
    pub split: Option<WorkerSplit>,
    pub strict: bool,
    pub writer: WriterSettings,
    /// Fault injection for the crash tests: abort the process right after this many parts
    /// have been committed in this run (the CLI reads `BITKIT_FAULT_ABORT_AFTER_PARTS`).
    pub abort_after_parts: Option<usize>,
}

impl IngestConfig {
    pub fn new(format: Format, inputs: Vec<String>, out: PathBuf) -> Self {
        IngestConfig {
            format,
            inputs,
            out,
            classes_file: None,
            reader: ReaderConfig::default(),
            tfrecord: TfRecordKeys::default(),
            max_pixels: DEFAULT_MAX_PIXELS,
            reencode: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            split: None,
            strict: false,
            writer: WriterSettings::default(),
            abort_after_parts: None,
        }
    }
}

/// Live counters for a progress bar (read from another thread).
#[derive(Debug, Default)]
pub struct Progress {
    pub records: AtomicU64,
    pub rejected: AtomicU64,
    /// Image bytes read so far.
    pub bytes: AtomicU64,
    /// Bytes of all shards of this run (0 when unknown, e.g. folders).
    pub total_bytes: AtomicU64,
    /// Bytes of the shards finished so far.
    pub shard_bytes_done: AtomicU64,
}

/// What `--json` prints.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IngestSummary {
    pub out: String,
    pub format: String,
    pub shards: u64,
    /// Shards finished by an earlier, interrupted run and skipped now.
    pub shards_skipped: u64,
    pub records_read: u64,
    pub records_written: u64,
    pub records_rejected: u64,
    pub rejects_by_kind: BTreeMap<String, u64>,
    /// Bytes of the input shards processed in this run (0 for folders).
    pub input_bytes: u64,
    /// Image bytes read in this run.
    pub image_bytes: u64,
    /// Bytes of the Parquet parts of the dataset.
    pub bytes_written: u64,
    pub parts: u64,
    pub seconds: f64,
    pub images_per_s: f64,
    pub mb_per_s: f64,
    pub resumed: bool,
    /// The output was already a complete dataset of the same inputs and options.
    pub already_complete: bool,
    /// Peak resident memory of the process (Linux `VmHWM`), when known.
    pub peak_rss_bytes: Option<u64>,
    /// Resident memory when the ingest started (Linux `VmRSS`): the binary and its shared
    /// libraries (libtorch, when built with the trainer, maps ~140 MiB). The pipeline's own
    /// memory is `peak_rss_bytes - baseline_rss_bytes`.
    pub baseline_rss_bytes: Option<u64>,
}

/// Position in the local shard list: shard index and records consumed in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Position {
    shard: usize,
    items: u64,
}

/// `.ingest-state.json`: what has been committed.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct IngestState {
    fingerprint: String,
    parts: Vec<PartInfo>,
    rejects: Vec<RejectEntry>,
    sources: Vec<SourceStats>,
    position: Position,
}

/// The part of the configuration that changes output bytes (threads do not); recorded in
/// `dataset.json` and compared on resume and merge.
fn output_config(config: &IngestConfig, shards_total: usize, classes_origin: &str) -> serde_json::Value {
    let mut value = serde_json::json!({
        "format": config.format.as_str(),
        "classes": classes_origin,
        "max_pixels": config.max_pixels,
        "max_record_bytes": config.reader.max_record_bytes,
        "reencode": config.reencode,
        "row_group_bytes": config.writer.row_group_bytes,
        "part_bytes": config.writer.part_bytes,
        "shards_total": shards_total,
        "worker": config.split,
    });
    if config.format == Format::Tfrecord {
        value["tfrecord"] = serde_json::to_value(&config.tfrecord).expect("plain data serializes");
    }
    value
}

fn fingerprint(config: &serde_json::Value, shards: &[ShardSpec], classes: Option<&ClassList>) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(config.to_string().as_bytes());
    for shard in shards {
        hasher.update(shard.source.as_bytes());
        hasher.update(&[0]);
        hasher.update(&shard.bytes.to_le_bytes());
    }
    if let Some(classes) = classes {
        for name in classes.names() {
            hasher.update(name.as_bytes());
            hasher.update(&[0]);
        }
    }
    hasher.finalize().to_hex().to_string()
}

/// Peak resident set of this process, from `/proc/self/status` (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// Current resident set of this process, from `/proc/self/status` (Linux).
pub fn current_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A batch of records of one shard: processed by the reader itself when processing is cheap
/// (probe + hash run at GB/s; a hand-off per record would cost more than the work), framed
/// only when `--max-side` makes it expensive (then the rayon pool processes it).
struct Chunk {
    items: Vec<Item>,
    end: bool,
}

enum Item {
    Framed(Result<RawRecord, RecordError>),
    Processed(Outcome),
}

/// A processed item, in input order.
enum Outcome {
    Row(Row),
    Reject(RecordError),
}

struct ProcessedChunk {
    shard: usize,
    outcomes: Vec<Outcome>,
    end: bool,
}

/// Runs an ingest (or resumes one). See the module docs.
pub fn ingest(config: &IngestConfig, progress: &Progress) -> Result<IngestSummary> {
    let started = std::time::Instant::now();
    let baseline_rss = current_rss_bytes();
    if let Some(split) = config.split {
        if split.count == 0 || split.index >= split.count {
            return Err(Error::Config(format!(
                "--worker-index {} must be below --num-workers {}",
                split.index, split.count
            )));
        }
    }
    if let Some(reencode) = config.reencode {
        reencode.validate().map_err(|e| {
            Error::Config(format!("--max-side {} --quality {}: {e}", reencode.max_side, reencode.quality))
        })?;
    }
    let plan = plan_shards(config.format, &config.inputs)?;
    let classes =
        derive_classes(config.format, &plan, config.classes_file.as_deref(), &config.tfrecord.label_key)?.map(Arc::new);
    let shards_total = plan.shards.len();
    let local: Vec<ShardSpec> = match config.split {
        Some(split) => plan.shards[split.range(shards_total)].to_vec(),
        None => plan.shards.clone(),
    };
    let classes_origin = match (&config.classes_file, &classes) {
        (Some(_), _) => "file",
        (None, Some(_)) => "derived",
        (None, None) => "none",
    };
    let out_config = output_config(config, shards_total, classes_origin);
    let fingerprint = fingerprint(&out_config, &local, classes.as_deref());
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(|source| Error::Write { path: out.clone(), source })?;

    let mut summary = IngestSummary {
        out: out.display().to_string(),
        format: config.format.as_str().into(),
        shards: local.len() as u64,
        ..Default::default()
    };

    // A complete dataset of the same run: nothing to do.
    if out.join(MANIFEST_FILE).exists() {
        let manifest = Manifest::read(out)?;
        let same_sources = manifest.sources.iter().map(|s| s.path.as_str()).eq(local.iter().map(|s| s.source.as_str()));
        if manifest.config == out_config
            && same_sources
            && manifest.classes.as_deref() == classes.as_ref().map(|c| c.names())
        {
            // A run killed after writing the manifest may have left its state and temporaries.
            let _ = std::fs::remove_file(out.join(STATE_FILE));
            remove_stale_parts(out, manifest.parts.len())?;
            summary.already_complete = true;
            summary.shards_skipped = local.len() as u64;
            summary.records_written = manifest.rows;
            summary.records_rejected = manifest.rejected;
            summary.records_read = manifest.sources.iter().map(|s| s.records_read).sum();
            summary.rejects_by_kind = manifest.rejects_by_kind.clone();
            summary.parts = manifest.parts.len() as u64;
            summary.bytes_written = manifest.parts.iter().map(|p| p.bytes).sum();
            return Ok(summary);
        }
        return Err(Error::Resume {
            path: out.join(MANIFEST_FILE),
            reason: "the output directory already holds a dataset of other inputs or options; choose another --out"
                .into(),
        });
    }

    let state_path = out.join(STATE_FILE);
    let mut state = match std::fs::read_to_string(&state_path) {
        Ok(text) => {
            let state: IngestState = serde_json::from_str(&text).map_err(|e| Error::Resume {
                path: state_path.clone(),
                reason: format!("unreadable resume state ({e}); delete the output directory to start over"),
            })?;
            if state.fingerprint != fingerprint {
                return Err(Error::Resume {
                    path: state_path.clone(),
                    reason: "an interrupted ingest of other inputs or options is in this directory; re-run that command, or choose another --out".into(),
                });
            }
            summary.resumed = true;
            state
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let unexpected = std::fs::read_dir(out)
                .map_err(|source| Error::Read { path: out.clone(), source })?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|name| {
                    // `run.json` is the CLI's run record, written before the ingest starts.
                    !(name.starts_with(".part-")
                        || name.starts_with("part-")
                        || name.starts_with('.')
                        || name.starts_with("run.json"))
                });
            if let Some(name) = unexpected {
                return Err(Error::Resume {
                    path: out.join(name),
                    reason: "the output directory is not empty and holds no bitkit ingest; choose another --out".into(),
                });
            }
            IngestState {
                fingerprint: fingerprint.clone(),
                sources: local
                    .iter()
                    .map(|s| SourceStats { path: s.source.clone(), bytes: s.bytes, ..Default::default() })
                    .collect(),
                ..Default::default()
            }
        }
        Err(source) => return Err(Error::Read { path: state_path, source }),
    };
    remove_stale_parts(out, state.parts.len())?;
    summary.shards_skipped = state.position.shard as u64;

    let start = state.position;
    let todo: Vec<ShardSpec> = local[start.shard.min(local.len())..].to_vec();
    progress.total_bytes.store(todo.iter().map(|s| s.bytes).sum(), Ordering::Relaxed);

    let class_names = classes.as_ref().map(|c| c.names().to_vec());
    let with_original_hash = config.reencode.is_some();
    let abort = Arc::new(AtomicBool::new(false));

    let result = std::thread::scope(|scope| -> Result<()> {
        // Stage 1: readers.
        let mut senders = Vec::with_capacity(todo.len());
        let mut receivers = Vec::with_capacity(todo.len());
        for _ in 0..todo.len() {
            let (tx, rx) = bounded::<Chunk>(CHANNEL_CHUNKS);
            senders.push(Mutex::new(Some(tx)));
            receivers.push(rx);
        }
        let senders = Arc::new(senders);
        let next_shard = Arc::new(AtomicUsize::new(0));
        let window = Arc::new(ShardWindow::new(2 * readers_for(config, todo.len())));
        let readers = readers_for(config, todo.len());
        for _ in 0..readers {
            let (senders, next_shard, abort, todo, window) =
                (senders.clone(), next_shard.clone(), abort.clone(), &todo, window.clone());
            let root = plan.root.as_path();
            let classes = classes.clone();
            scope.spawn(move || {
                read_shards(config, root, todo, start.items, classes, &senders, &next_shard, &window, &abort, progress)
            });
        }

        // Stage 2: in order; records framed but not processed by the readers (`--max-side`)
        // are processed here on a pool, order-preserving.
        let (processed_tx, processed_rx) = bounded::<ProcessedChunk>(CHANNEL_CHUNKS);
        let pool = match config.reencode {
            Some(_) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(config.workers.max(1))
                    .thread_name(|i| format!("bitkit-ingest-{i}"))
                    .build()
                    .map_err(|e| Error::Config(format!("cannot start {} worker threads: {e}", config.workers)))?,
            ),
            None => None,
        };
        {
            let (abort, todo, classes, window) = (abort.clone(), &todo, classes.clone(), window.clone());
            scope.spawn(move || {
                process_shards(config, todo, receivers, classes, pool.as_ref(), processed_tx, &window, &abort, progress)
            });
        }

        // Stage 3: the writer, here.
        let written = write_outcomes(
            config,
            out,
            &state_path,
            &mut state,
            processed_rx,
            class_names.as_deref(),
            with_original_hash,
            start.shard,
        );
        if written.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        written
    });
    result?;

    // Complete: rejects, then the manifest (its presence marks completion), then drop the state.
    let manifest = Manifest::write_complete(
        out,
        class_names,
        state.parts.clone(),
        state.sources.clone(),
        &state.rejects,
        out_config,
    )?;
    let _ = std::fs::remove_file(&state_path);

    let seconds = started.elapsed().as_secs_f64();
    summary.records_read = state.sources.iter().map(|s| s.records_read).sum();
    summary.records_written = manifest.rows;
    summary.records_rejected = manifest.rejected;
    summary.rejects_by_kind = manifest.rejects_by_kind.clone();
    summary.image_bytes = progress.bytes.load(Ordering::Relaxed);
    summary.input_bytes = progress.total_bytes.load(Ordering::Relaxed);
    summary.bytes_written = manifest.parts.iter().map(|p| p.bytes).sum();
    summary.parts = manifest.parts.len() as u64;
    summary.seconds = seconds;
    let this_run_records = progress.records.load(Ordering::Relaxed) as f64;
    summary.images_per_s = if seconds > 0.0 { this_run_records / seconds } else { 0.0 };
    summary.mb_per_s = if seconds > 0.0 { summary.image_bytes as f64 / seconds / 1e6 } else { 0.0 };
    summary.peak_rss_bytes = peak_rss_bytes();
    summary.baseline_rss_bytes = baseline_rss;
    Ok(summary)
}

fn readers_for(config: &IngestConfig, shards: usize) -> usize {
    config.workers.clamp(1, MAX_READERS).min(shards.max(1))
}

/// Readers may work at most `width` shards ahead of the shard being drained: with many small
/// shards (a 21k-synset tar directory) every shard fits its channel, and without this bound the
/// readers would buffer the whole input.
struct ShardWindow {
    drained: Mutex<usize>,
    moved: Condvar,
    width: usize,
}

impl ShardWindow {
    fn new(width: usize) -> Self {
        ShardWindow { drained: Mutex::new(0), moved: Condvar::new(), width: width.max(1) }
    }

    /// Blocks until shard `k` is inside the window; false when the run is aborted.
    fn wait_for(&self, k: usize, abort: &AtomicBool) -> bool {
        let Ok(mut drained) = self.drained.lock() else { return false };
        while k >= *drained + self.width {
            if abort.load(Ordering::Relaxed) {
                return false;
            }
            drained = match self.moved.wait_timeout(drained, std::time::Duration::from_millis(50)) {
                Ok((guard, _)) => guard,
                Err(_) => return false,
            };
        }
        !abort.load(Ordering::Relaxed)
    }

    /// The processor now drains shard `k`.
    fn advance(&self, k: usize) {
        if let Ok(mut drained) = self.drained.lock() {
            *drained = k;
            self.moved.notify_all();
        }
    }
}

/// Removes temporaries and parts beyond the committed ones (a crash between a part's rename
/// and the state update leaves such a part; it is rewritten identically).
fn remove_stale_parts(out: &Path, committed: usize) -> Result<()> {
    let entries = std::fs::read_dir(out).map_err(|source| Error::Read { path: out.to_path_buf(), source })?;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale_temp = name.starts_with('.') && name.ends_with(".tmp");
        let stale_part = name
            .strip_prefix("part-")
            .and_then(|rest| rest.strip_suffix(".parquet"))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= committed);
        if stale_temp || stale_part {
            std::fs::remove_file(entry.path()).map_err(|source| Error::Write { path: entry.path(), source })?;
        }
    }
    Ok(())
}

/// Reader thread: takes shards in order, frames records (and processes them unless
/// `--max-side` is on), sends chunks.
#[allow(clippy::too_many_arguments)]
fn read_shards(
    config: &IngestConfig,
    root: &Path,
    todo: &[ShardSpec],
    first_shard_skip: u64,
    classes: Option<Arc<ClassList>>,
    senders: &[Mutex<Option<Sender<Chunk>>>],
    next_shard: &AtomicUsize,
    window: &ShardWindow,
    abort: &AtomicBool,
    progress: &Progress,
) {
    let process_here = config.reencode.is_none();
    loop {
        let k = next_shard.fetch_add(1, Ordering::Relaxed);
        if k >= todo.len() || !window.wait_for(k, abort) {
            return;
        }
        let Some(tx) = senders[k].lock().ok().and_then(|mut s| s.take()) else { return };
        let skip = if k == 0 { first_shard_skip } else { 0 };
        let mut reader = match open_shard(config.format, &todo[k], root, &config.reader) {
            Ok(reader) => reader,
            Err(error) => {
                let _ = tx.send(Chunk { items: vec![Item::Framed(Err(error))], end: true });
                continue;
            }
        };
        let context = shard_context(config, &todo[k], classes.clone());
        let source: Arc<str> = Arc::from(todo[k].source.as_str());
        let mut items = Vec::with_capacity(CHUNK_RECORDS);
        let mut bytes = 0u64;
        let mut consumed = 0u64;
        while let Some(item) = reader.next_record() {
            consumed += 1;
            if consumed <= skip {
                continue;
            }
            if let Ok(raw) = &item {
                bytes += payload_len(raw);
            }
            items.push(if process_here {
                Item::Processed(process_item(item, config, &context, &source, progress))
            } else {
                Item::Framed(item)
            });
            if items.len() >= CHUNK_RECORDS || bytes >= CHUNK_BYTES {
                if abort.load(Ordering::Relaxed)
                    || tx.send(Chunk { items: std::mem::take(&mut items), end: false }).is_err()
                {
                    return;
                }
                bytes = 0;
            }
        }
        if tx.send(Chunk { items, end: true }).is_err() {
            return;
        }
    }
}

fn payload_len(raw: &RawRecord) -> u64 {
    match &raw.payload {
        crate::RawPayload::Image { bytes, .. } => bytes.len() as u64,
        crate::RawPayload::TfRecord { data, .. } => data.len() as u64,
    }
}

/// Processor thread: drains shards in order; with `--max-side`, maps each chunk on the pool
/// (order-preserving), otherwise passes the readers' outcomes on.
#[allow(clippy::too_many_arguments)]
fn process_shards(
    config: &IngestConfig,
    todo: &[ShardSpec],
    receivers: Vec<Receiver<Chunk>>,
    classes: Option<Arc<ClassList>>,
    pool: Option<&rayon::ThreadPool>,
    out: Sender<ProcessedChunk>,
    window: &ShardWindow,
    abort: &AtomicBool,
    progress: &Progress,
) {
    for (k, (rx, shard)) in receivers.into_iter().zip(todo).enumerate() {
        window.advance(k);
        let context = shard_context(config, shard, classes.clone());
        let source: Arc<str> = Arc::from(shard.source.as_str());
        loop {
            if abort.load(Ordering::Relaxed) {
                return;
            }
            // A reader that died without sending `end` leaves a closed channel: treat as end.
            let chunk = rx.recv().unwrap_or(Chunk { items: Vec::new(), end: true });
            let end = chunk.end;
            let process = |item: Item| match item {
                Item::Processed(outcome) => outcome,
                Item::Framed(item) => process_item(item, config, &context, &source, progress),
            };
            let outcomes: Vec<Outcome> = match pool {
                Some(pool) => pool.install(|| chunk.items.into_par_iter().map(process).collect()),
                None => chunk.items.into_iter().map(process).collect(),
            };
            if out.send(ProcessedChunk { shard: k, outcomes, end }).is_err() {
                return;
            }
            if end {
                progress.shard_bytes_done.fetch_add(shard.bytes, Ordering::Relaxed);
                break;
            }
        }
    }
}

fn shard_context(config: &IngestConfig, shard: &ShardSpec, classes: Option<Arc<ClassList>>) -> DecodeContext {
    DecodeContext { classes, tfrecord: config.tfrecord.clone(), shard_name: shard.file_name().to_string() }
}

fn process_item(
    item: Result<RawRecord, RecordError>,
    config: &IngestConfig,
    context: &DecodeContext,
    source: &Arc<str>,
    progress: &Progress,
) -> Outcome {
    let outcome = match item {
        Err(error) => Outcome::Reject(error),
        Ok(raw) => match make_row(raw, config, context, source, progress) {
            Ok(row) => Outcome::Row(row),
            Err(error) => Outcome::Reject(error),
        },
    };
    progress.records.fetch_add(1, Ordering::Relaxed);
    if matches!(outcome, Outcome::Reject(_)) {
        progress.rejected.fetch_add(1, Ordering::Relaxed);
    }
    outcome
}

fn make_row(
    raw: RawRecord,
    config: &IngestConfig,
    context: &DecodeContext,
    source: &Arc<str>,
    progress: &Progress,
) -> Result<Row, RecordError> {
    let record = decode_raw(raw, context)?;
    progress.bytes.fetch_add(record.bytes.len() as u64, Ordering::Relaxed);
    let located = |e: RecordError| e.at(record.index, record.offset).named(record.key.clone());
    let info = probe_image(&record.bytes, config.max_pixels).map_err(|e| located(probe_reject(e)))?;
    let content_hash = *blake3::hash(&record.bytes).as_bytes();
    let source_index = i64::try_from(record.index)
        .map_err(|_| located(RecordError::new(RejectKind::BadLength, "record index exceeds i64")))?;
    let mut row = Row {
        key: record.key.clone(),
        image_bytes: bytes::Bytes::new(),
        image_path: record.path.clone(),
        labels: record.labels.clone(),
        width: i32::try_from(info.width)
            .map_err(|_| located(RecordError::new(RejectKind::BadImageHeader, "width exceeds i32")))?,
        height: i32::try_from(info.height)
            .map_err(|_| located(RecordError::new(RejectKind::BadImageHeader, "height exceeds i32")))?,
        format: info.format.as_str(),
        content_hash,
        source: source.clone(),
        source_index,
        original_hash: None,
    };
    let mut bytes = record.bytes;
    if let Some(reencode) = &config.reencode {
        row.original_hash = Some(content_hash);
        let resized = reencode_max_side(&bytes, reencode, config.max_pixels)
            .map_err(|e| located(RecordError::new(RejectKind::ReencodeFailed, e.to_string())))?;
        if let Some(resized) = resized {
            let info = probe_image(&resized, config.max_pixels).map_err(|e| {
                located(RecordError::new(RejectKind::ReencodeFailed, format!("re-encoded image does not probe: {e}")))
            })?;
            row.width = i32::try_from(info.width).unwrap_or(i32::MAX);
            row.height = i32::try_from(info.height).unwrap_or(i32::MAX);
            row.format = info.format.as_str();
            row.content_hash = *blake3::hash(&resized).as_bytes();
            bytes = resized.into();
        }
    }
    row.image_bytes = bytes;
    Ok(row)
}

fn probe_reject(error: ProbeError) -> RecordError {
    RecordError::new(error.reject_kind(), error.to_string())
}

/// Writer: rows into parts in order, rejects into the state, a state commit per part.
#[allow(clippy::too_many_arguments)]
fn write_outcomes(
    config: &IngestConfig,
    out: &Path,
    state_path: &Path,
    state: &mut IngestState,
    processed: Receiver<ProcessedChunk>,
    class_names: Option<&[String]>,
    with_original_hash: bool,
    first_shard: usize,
) -> Result<()> {
    let mut committed_this_run = 0usize;
    let mut part: Option<PartWriter> = None;
    // Committed state + what the open part adds; committed into `state` when the part closes.
    let mut pending = state.clone();
    for chunk in processed.iter() {
        let shard = first_shard + chunk.shard;
        let source_name = pending.sources[shard].path.clone();
        if pending.position.shard != shard {
            pending.position = Position { shard, items: 0 };
        }
        for outcome in chunk.outcomes {
            pending.position.items += 1;
            let stats = &mut pending.sources[shard];
            match outcome {
                Outcome::Row(row) => {
                    stats.records_read += 1;
                    stats.written += 1;
                    let writer = match part.as_mut() {
                        Some(writer) => writer,
                        None => part.insert(PartWriter::create(
                            out,
                            &part_file_name(pending.parts.len()),
                            class_names,
                            with_original_hash,
                            config.writer,
                        )?),
                    };
                    writer.write_row(row)?;
                    if writer.is_full() {
                        let finished = part.take().expect("the part was just written to").finish()?;
                        pending.parts.push(finished);
                        commit(state_path, state, &pending)?;
                        committed_this_run += 1;
                        if config.abort_after_parts == Some(committed_this_run) {
                            std::process::abort();
                        }
                    }
                }
                Outcome::Reject(error) => {
                    if error.index.is_some() {
                        stats.records_read += 1;
                    }
                    stats.rejected += 1;
                    if config.strict {
                        if let Some(writer) = part.take() {
                            writer.abandon();
                        }
                        return Err(Error::StrictReject { source_name, error });
                    }
                    pending.rejects.push(RejectEntry::from_error(&source_name, &error));
                }
            }
        }
        if chunk.end {
            pending.position = Position { shard: shard + 1, items: 0 };
        }
    }
    if let Some(writer) = part.take() {
        let finished = writer.finish()?;
        pending.parts.push(finished);
    }
    *state = pending;
    Ok(())
}

fn commit(state_path: &Path, state: &mut IngestState, pending: &IngestState) -> Result<()> {
    *state = pending.clone();
    let text = serde_json::to_vec(state).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(state_path, &text)
}
