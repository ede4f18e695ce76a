//! `metrics.jsonl` (one JSON object per optimizer update, and one per evaluation) and the PNG
//! plots of a run (`loss.png`, `lr.png`, `accuracy.png`), redrawn at every checkpoint.

use std::io::Write;
use std::path::Path;

use crate::error::TrainError;
use crate::plot::{write_png, Chart, Series};
use crate::trainer::{EvalMetrics, StepMetrics};

/// The metrics of a run so far.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub steps: Vec<StepMetrics>,
    pub evals: Vec<EvalMetrics>,
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
        let mut h = History::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Ok(e) = serde_json::from_str::<EvalMetrics>(line) {
                if e.step <= upto {
                    h.evals.push(e);
                }
            } else if let Ok(s) = serde_json::from_str::<StepMetrics>(line) {
                if s.step < upto {
                    h.steps.push(s);
                }
            }
            // A torn last line (killed mid-write) is dropped: the update it describes is
            // after the checkpoint and will be redone.
        }
        Ok(h)
    }

    /// Writes the history as the whole file, atomically.
    pub fn rewrite(&self, path: &Path) -> Result<(), TrainError> {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        // Interleave as they were written: an eval after the update that reached its step.
        while i < self.steps.len() || j < self.evals.len() {
            let take_eval = j < self.evals.len() && (i >= self.steps.len() || self.evals[j].step <= self.steps[i].step);
            let line = if take_eval {
                j += 1;
                serde_json::to_string(&self.evals[j - 1])
            } else {
                i += 1;
                serde_json::to_string(&self.steps[i - 1])
            };
            out.extend_from_slice(line.map_err(|e| TrainError::Config(e.to_string()))?.as_bytes());
            out.push(b'\n');
        }
        write_atomic(path, &out)
    }
}

/// Appends one line and flushes it.
pub fn append(file: &mut std::fs::File, path: &Path, value: &serde_json::Value) -> Result<(), TrainError> {
    let mut line = serde_json::to_vec(value).map_err(|e| TrainError::Config(e.to_string()))?;
    line.push(b'\n');
    file.write_all(&line).map_err(|e| TrainError::io(path, e))?;
    file.flush().map_err(|e| TrainError::io(path, e))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
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
    let mut loss = vec![series("train", h.steps.iter().map(|s| (s.step as f64, s.loss)).collect())];
    if !h.evals.is_empty() {
        loss.push(series("eval", h.evals.iter().map(|e| (e.step as f64, e.eval_loss)).collect()));
    }
    let chart = |title: &str, y: &str, log_y: bool, series: Vec<Series>| Chart {
        title: title.to_owned(),
        x_label: "step".to_owned(),
        y_label: y.to_owned(),
        log_y,
        series,
    };
    write_png(&chart("loss", "loss", false, loss), w, ht, &run.join("loss.png")).map_err(plot_err)?;
    let lr = vec![series("lr", h.steps.iter().map(|s| (s.step as f64, s.lr)).collect())];
    write_png(&chart("learning rate", "lr", true, lr), w, ht, &run.join("lr.png")).map_err(plot_err)?;
    if !h.evals.is_empty() {
        let acc = vec![
            series("top-1", h.evals.iter().map(|e| (e.step as f64, 100.0 * e.eval_top1)).collect()),
            series("top-5", h.evals.iter().map(|e| (e.step as f64, 100.0 * e.eval_top5)).collect()),
        ];
        write_png(&chart("eval accuracy", "percent", false, acc), w, ht, &run.join("accuracy.png"))
            .map_err(plot_err)?;
    }
    Ok(())
}
