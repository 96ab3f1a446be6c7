//! The in-process latency benchmark: timed ONNX Runtime calls on a model's own session, batch
//! size by batch size, without HTTP, decoding or batching in the way.
//!
//! The session is the one the batcher uses ([`SharedBackend`]): ONNX Runtime needs `&mut` to
//! run, so each call takes the mutex for exactly one run, like the batcher does, and the two
//! never overlap. On a live server a pause between calls hands the lock to a waiting batcher
//! (std's mutex is not fair: a thread that unlocks and relocks at once would usually win), so
//! live batches interleave with benchmark calls instead of queueing behind all of them.

use super::stats::Percentiles;
use crate::backend::BackendError;
use crate::batcher::SharedBackend;
use serde::{Deserialize, Serialize};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Clone, Debug)]
pub struct LatencyPlan {
    pub batch_sizes: Vec<usize>,
    /// Timed calls per batch size.
    pub iters: usize,
    /// Untimed calls per batch size first (arena growth, kernel selection, caches).
    pub warmup_iters: usize,
    /// Stop timing a batch size once this much wall time went into it (at least one call
    /// counts); `None`: always `iters` calls.
    pub budget_per_size: Option<Duration>,
    /// Sleep between calls so that a batcher waiting for the session gets it.
    pub pause: Option<Duration>,
}

/// One batch size's figures. `images_per_s` is `batch_size · iters / Σ call time` (pauses
/// excluded): the session's own throughput at that batch size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchLatency {
    pub batch_size: usize,
    /// Timed calls (fewer than asked when the time budget ran out).
    pub iters: usize,
    #[serde(flatten)]
    pub latency: Percentiles,
    pub images_per_s: f64,
}

/// Runs the plan on `backend`.
pub fn measure(backend: &SharedBackend, plan: &LatencyPlan) -> Result<Vec<BatchLatency>, BackendError> {
    plan.batch_sizes.iter().map(|&n| measure_one(backend, plan, n)).collect()
}

fn measure_one(backend: &SharedBackend, plan: &LatencyPlan, n: usize) -> Result<BatchLatency, BackendError> {
    let input = inputs(n);
    for _ in 0..plan.warmup_iters {
        timed_run(backend, &input, n)?;
        pause(plan);
    }
    let started = Instant::now();
    let mut samples = Vec::with_capacity(plan.iters);
    while samples.len() < plan.iters.max(1) {
        samples.push(timed_run(backend, &input, n)?);
        if plan.budget_per_size.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        pause(plan);
    }
    let total: f64 = samples.iter().sum();
    let latency = Percentiles::of_seconds(&samples).ok_or_else(|| BackendError::Runtime("no call was timed".into()))?;
    Ok(BatchLatency { batch_size: n, iters: samples.len(), latency, images_per_s: (n * samples.len()) as f64 / total.max(1e-12) })
}

/// Seconds of one call, lock wait excluded.
fn timed_run(backend: &SharedBackend, input: &[f32], n: usize) -> Result<f64, BackendError> {
    let mut session = backend.lock().unwrap_or_else(PoisonError::into_inner);
    let t = Instant::now();
    session.run(input, n)?;
    Ok(t.elapsed().as_secs_f64())
}

fn pause(plan: &LatencyPlan) {
    if let Some(p) = plan.pause {
        std::thread::sleep(p);
    }
}

/// `n` images of normalised-looking values (about ±2.5), deterministic: constant inputs could
/// take shortcuts (denormals, zero skipping) that real images do not.
pub fn inputs(n: usize) -> Vec<f32> {
    cifar_models::testdata::images(n, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::device::Device;
    use std::sync::{Arc, Mutex};

    struct Sleepy(Duration);

    impl Backend for Sleepy {
        fn run(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>, BackendError> {
            assert_eq!(input.len(), n * crate::IMAGE_LEN);
            std::thread::sleep(self.0 * n as u32);
            Ok(vec![0.0; n * 10])
        }
        fn classes(&self) -> usize {
            10
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn threads(&self) -> usize {
            1
        }
    }

    fn backend(per_image: Duration) -> SharedBackend {
        Arc::new(Mutex::new(Box::new(Sleepy(per_image))))
    }

    #[test]
    fn every_batch_size_is_timed() {
        let plan = LatencyPlan { batch_sizes: vec![1, 4], iters: 3, warmup_iters: 1, budget_per_size: None, pause: None };
        let r = measure(&backend(Duration::from_millis(1)), &plan).unwrap();
        assert_eq!(r.iter().map(|b| (b.batch_size, b.iters)).collect::<Vec<_>>(), [(1, 3), (4, 3)]);
        assert!(r[1].latency.p50_ms >= 4.0, "{:?}", r[1]);
        assert!(r[0].latency.p50_ms <= r[0].latency.p95_ms && r[0].latency.p95_ms <= r[0].latency.p99_ms);
        // A sleep lasts at least as long as asked: never more than 1000 images/s.
        assert!(r.iter().all(|b| b.images_per_s > 0.0 && b.images_per_s <= 1000.0), "{r:?}");
    }

    #[test]
    fn the_budget_stops_a_batch_size_early() {
        let plan = LatencyPlan {
            batch_sizes: vec![2],
            iters: 1000,
            warmup_iters: 0,
            budget_per_size: Some(Duration::from_millis(30)),
            pause: Some(Duration::from_micros(100)),
        };
        let r = measure(&backend(Duration::from_millis(5)), &plan).unwrap();
        assert!((1..10).contains(&r[0].iters), "{:?}", r[0]);
    }
}
