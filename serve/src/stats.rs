//! Per-model inference statistics in the shape of Triton's statistics extension
//! (`GET /v2/models[/NAME[/versions/1]]/stats`, read by `tritonclient`'s
//! `get_inference_statistics`): cumulative counts and nanoseconds since the server started.
//!
//! The batcher records them. A request is counted once per batch job (a request larger than
//! `--max-batch` is several jobs): `success`/`fail` from its arrival at the queue to its answer,
//! `queue` its wait, and `compute_*` the time of the batch it ran in (each job in a batch is
//! charged the whole batch, as Triton does). Requests refused at the queue (429, 413, shutdown)
//! count as failures of zero duration.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count and the total nanoseconds of what was counted.
#[derive(Default)]
struct Tally {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Tally {
    fn add(&self, n: u64, d: Duration) {
        self.count.fetch_add(n, Ordering::Relaxed);
        self.ns.fetch_add(n.saturating_mul(d.as_nanos() as u64), Ordering::Relaxed);
    }

    fn read(&self) -> DurationStat {
        DurationStat { count: self.count.load(Ordering::Relaxed), ns: self.ns.load(Ordering::Relaxed) }
    }
}

/// Where one batch's time went.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchTimes {
    /// Gathering the jobs' images into one input.
    pub input: Duration,
    /// The ONNX Runtime call.
    pub infer: Duration,
    /// Cutting the logits into the jobs' answers.
    pub output: Duration,
}

#[derive(Default)]
pub struct ModelStats {
    success: Tally,
    fail: Tally,
    queue: Tally,
    compute_input: Tally,
    compute_infer: Tally,
    compute_output: Tally,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    /// Per batch size: executions and their times.
    batches: Mutex<BTreeMap<usize, BatchTimesTally>>,
}

#[derive(Default)]
struct BatchTimesTally {
    count: u64,
    input: u128,
    infer: u128,
    output: u128,
}

impl ModelStats {
    pub fn queued(&self, wait: Duration) {
        self.queue.add(1, wait);
    }

    /// One batch of `images` images run for `jobs` jobs.
    pub fn executed(&self, images: usize, jobs: usize, times: BatchTimes) {
        let jobs = jobs as u64;
        self.compute_input.add(jobs, times.input);
        self.compute_infer.add(jobs, times.infer);
        self.compute_output.add(jobs, times.output);
        self.inference_count.fetch_add(images as u64, Ordering::Relaxed);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.last_inference_ms.store(now_ms, Ordering::Relaxed);
        let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        let b = batches.entry(images).or_default();
        b.count += 1;
        b.input += times.input.as_nanos();
        b.infer += times.infer.as_nanos();
        b.output += times.output.as_nanos();
    }

    /// A job answered, `took` after it arrived.
    pub fn answered(&self, ok: bool, took: Duration) {
        let tally = if ok { &self.success } else { &self.fail };
        tally.add(1, took);
    }

    /// A request refused before it was queued.
    pub fn refused(&self) {
        self.fail.add(1, Duration::ZERO);
    }

    pub fn snapshot(&self, name: &str, version: &str) -> ModelStat {
        let batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        let stat = |count: u64, ns: u128| DurationStat { count, ns: ns as u64 };
        ModelStat {
            name: name.to_string(),
            version: version.to_string(),
            last_inference: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            inference_stats: InferenceStats {
                success: self.success.read(),
                fail: self.fail.read(),
                queue: self.queue.read(),
                compute_input: self.compute_input.read(),
                compute_infer: self.compute_infer.read(),
                compute_output: self.compute_output.read(),
                cache_hit: DurationStat::default(),
                cache_miss: DurationStat::default(),
            },
            batch_stats: batches
                .iter()
                .map(|(&batch_size, b)| BatchStat {
                    batch_size,
                    compute_input: stat(b.count, b.input),
                    compute_infer: stat(b.count, b.infer),
                    compute_output: stat(b.count, b.output),
                })
                .collect(),
        }
    }
}

/// Triton's `$duration_stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DurationStat {
    pub count: u64,
    pub ns: u64,
}

/// Triton's `$model_stat`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelStat {
    pub name: String,
    pub version: String,
    /// Milliseconds since the Unix epoch of the last batch (0: none yet).
    pub last_inference: u64,
    /// Images run.
    pub inference_count: u64,
    /// ONNX Runtime calls.
    pub execution_count: u64,
    pub inference_stats: InferenceStats,
    pub batch_stats: Vec<BatchStat>,
}

/// Triton's `$inference_stats` (no response cache here: its two entries stay zero).
#[derive(Clone, Debug, Serialize)]
pub struct InferenceStats {
    pub success: DurationStat,
    pub fail: DurationStat,
    pub queue: DurationStat,
    pub compute_input: DurationStat,
    pub compute_infer: DurationStat,
    pub compute_output: DurationStat,
    pub cache_hit: DurationStat,
    pub cache_miss: DurationStat,
}

/// Triton's `$batch_stats`.
#[derive(Clone, Debug, Serialize)]
pub struct BatchStat {
    pub batch_size: usize,
    pub compute_input: DurationStat,
    pub compute_infer: DurationStat,
    pub compute_output: DurationStat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_durations_add_up() {
        let s = ModelStats::default();
        let ms = Duration::from_millis;
        s.queued(ms(1));
        s.queued(ms(3));
        s.executed(5, 2, BatchTimes { input: ms(1), infer: ms(10), output: ms(2) });
        s.answered(true, ms(14));
        s.answered(false, ms(16));
        s.refused();
        let snap = s.snapshot("m", "1");
        assert_eq!((snap.inference_count, snap.execution_count), (5, 1));
        assert!(snap.last_inference > 0);
        let st = &snap.inference_stats;
        assert_eq!(st.success, DurationStat { count: 1, ns: 14_000_000 });
        assert_eq!(st.fail, DurationStat { count: 2, ns: 16_000_000 });
        assert_eq!(st.queue, DurationStat { count: 2, ns: 4_000_000 });
        assert_eq!(st.compute_infer, DurationStat { count: 2, ns: 20_000_000 });
        assert_eq!(snap.batch_stats.len(), 1);
        assert_eq!(snap.batch_stats[0].batch_size, 5);
        assert_eq!(snap.batch_stats[0].compute_infer, DurationStat { count: 1, ns: 10_000_000 });
    }
}
