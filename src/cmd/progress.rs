//! A progress bar on stderr driven by the library's atomic counters (hidden when stderr is not
//! a terminal or with `--quiet`).

use bitkit_ingest::pipeline::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub struct IngestProgressBar {
    bar: ProgressBar,
    stop: Arc<std::sync::atomic::AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl IngestProgressBar {
    pub fn start(progress: Arc<Progress>, quiet: bool) -> Self {
        let visible = !quiet && std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = visible.then(|| {
            let (bar, stop) = (bar.clone(), stop.clone());
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let total = progress.total_bytes.load(Ordering::Relaxed);
                    bar.set_length(total);
                    bar.set_position(
                        progress
                            .shard_bytes_done
                            .load(Ordering::Relaxed)
                            .max(progress.bytes.load(Ordering::Relaxed))
                            .min(total.max(1)),
                    );
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    let records = progress.records.load(Ordering::Relaxed);
                    bar.set_message(format!(
                        "{records} records ({} rejected), {:.0} img/s, {:.1} MB/s",
                        progress.rejected.load(Ordering::Relaxed),
                        records as f64 / secs,
                        progress.bytes.load(Ordering::Relaxed) as f64 / secs / 1e6
                    ));
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        });
        IngestProgressBar { bar, stop, ticker }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}
