//! `metrics.jsonl` (one JSON object per optimizer update, and one per evaluation) and the PNG
//! plots of a run (`loss.png`, `lr.png`, `accuracy.png`), redrawn at every checkpoint.

use std::io::Write;
use std::path::Path;

use crate::error::TrainError;
use crate::plot::{write_png, Chart, Series};
use crate::trainer::{EvalMetrics, StepMetrics};

/// A checkpoint in `metrics.jsonl`: the weight hash at that step (kept after the checkpoint
/// itself is pruned, for `bitkit audit diff`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CheckpointRecord {
    pub step: u64,
    pub weights: String,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Step(StepMetrics),
    Eval(EvalMetrics),
    Checkpoint(CheckpointRecord),
}

impl Record {
    /// Parses a line; `None` for a torn or foreign line.
    pub fn parse(line: &str) -> Option<Record> {
        if let Ok(e) = serde_json::from_str::<EvalMetrics>(line) {
            Some(Record::Eval(e))
        } else if let Ok(s) = serde_json::from_str::<StepMetrics>(line) {
            Some(Record::Step(s))
        } else {
            serde_json::from_str::<CheckpointRecord>(line).ok().map(Record::Checkpoint)
        }
    }

    fn to_json(&self) -> serde_json::Result<String> {
        match self {
            Record::Step(s) => serde_json::to_string(s),
            Record::Eval(e) => serde_json::to_string(e),
            Record::Checkpoint(c) => serde_json::to_string(c),
        }
    }
}

/// The metrics of a run so far, in the order they were written.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub records: Vec<Record>,
}

impl History {
    /// Reads `metrics.jsonl`, keeping what happened before update `upto` (a resumed run
    /// rewrites the rest). A missing file is an empty history.
    pub fn read(path: &Path, upto: u64) -> Result<History, TrainError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::default()),
            Err(e) => return Err(TrainError::io(path, e)),
        };
        // A torn last line (killed mid-write) is dropped: the update it describes is after the
        // checkpoint and will be redone.
        let records = text
            .lines()
            .filter_map(Record::parse)
            .filter(|r| match r {
                Record::Step(s) => s.step < upto,
                Record::Eval(e) => e.step <= upto,
                Record::Checkpoint(c) => c.step <= upto,
            })
            .collect();
        Ok(History { records })
    }

    pub fn steps(&self) -> impl Iterator<Item = &StepMetrics> {
        self.records.iter().filter_map(|r| match r {
            Record::Step(s) => Some(s),
            _ => None,
        })
    }

    pub fn evals(&self) -> impl Iterator<Item = &EvalMetrics> {
        self.records.iter().filter_map(|r| match r {
            Record::Eval(e) => Some(e),
            _ => None,
        })
    }

    pub fn checkpoints(&self) -> impl Iterator<Item = &CheckpointRecord> {
        self.records.iter().filter_map(|r| match r {
            Record::Checkpoint(c) => Some(c),
            _ => None,
        })
    }

    /// Writes the history as the whole file, atomically.
    pub fn rewrite(&self, path: &Path) -> Result<(), TrainError> {
        let mut out = Vec::new();
        for r in &self.records {
            out.extend_from_slice(r.to_json().map_err(|e| TrainError::Config(e.to_string()))?.as_bytes());
            out.push(b'\n');
        }
        write_atomic(path, &out)
    }

    /// Appends a record to the file and to the history.
    pub fn push(&mut self, file: &mut std::fs::File, path: &Path, record: Record) -> Result<(), TrainError> {
        let line = record.to_json().map_err(|e| TrainError::Config(e.to_string()))?;
        append(file, path, &line)?;
        self.records.push(record);
        Ok(())
    }
}

/// Appends one line and flushes it.
fn append(file: &mut std::fs::File, path: &Path, line: &str) -> Result<(), TrainError> {
    let mut line = line.as_bytes().to_vec();
    line.push(b'\n');
    file.write_all(&line).map_err(|e| TrainError::io(path, e))?;
    file.flush().map_err(|e| TrainError::io(path, e))
}

/// Temporary name, fsync, rename: ingest's writer, shared by every file a run writes.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    Ok(bitkit_ingest::dataset::manifest::write_atomic(path, bytes)?)
}

pub fn write_json_atomic(path: &Path, value: &serde_json::Value) -> Result<(), TrainError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| TrainError::Config(e.to_string()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// `loss.png` (training loss per update, eval loss), `lr.png` (log scale) and, when the run
/// evaluates, `accuracy.png` (top-1 / top-5 in %).
pub fn write_plots(run: &Path, h: &History) -> Result<(), TrainError> {
    let (w, ht) = (800, 500);
    let plot_err = |e: crate::plot::PlotError| TrainError::Config(format!("plot: {e}"));
    let series = |name: &str, pts: Vec<(f64, f64)>| Series { name: name.to_owned(), points: pts };
    let mut loss = vec![series("train", h.steps().map(|s| (s.step as f64, s.loss)).collect())];
    if h.evals().next().is_some() {
        loss.push(series("eval", h.evals().map(|e| (e.step as f64, e.eval_loss)).collect()));
    }
    let chart = |title: &str, y: &str, log_y: bool, series: Vec<Series>| Chart {
        title: title.to_owned(),
        x_label: "step".to_owned(),
        y_label: y.to_owned(),
        log_y,
        series,
    };
    write_png(&chart("loss", "loss", false, loss), w, ht, &run.join("loss.png")).map_err(plot_err)?;
    let lr = vec![series("lr", h.steps().map(|s| (s.step as f64, s.lr)).collect())];
    write_png(&chart("learning rate", "lr", true, lr), w, ht, &run.join("lr.png")).map_err(plot_err)?;
    if h.evals().next().is_some() {
        let acc = vec![
            series("top-1", h.evals().map(|e| (e.step as f64, 100.0 * e.eval_top1)).collect()),
            series("top-5", h.evals().map(|e| (e.step as f64, 100.0 * e.eval_top5)).collect()),
        ];
        write_png(&chart("eval accuracy", "percent", false, acc), w, ht, &run.join("accuracy.png"))
            .map_err(plot_err)?;
    }
    Ok(())
}
