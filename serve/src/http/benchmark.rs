//! `GET /v1/models/{name}/benchmark?batch_sizes=1,8,32,128&iters=N`: the in-process latency
//! benchmark ([`crate::bench::latency`]) of a served model's own session.
//!
//! It shares the session with live traffic, so it is bounded: one benchmark at a time per
//! server (409 otherwise), at most [`MAX_ITERS`] timed calls of at most [`MAX_BATCH`] images
//! per batch size, at most [`MAX_SIZES`] batch sizes, [`BUDGET_PER_SIZE`] of wall time per
//! size, and a pause after every call that lets a waiting batch run first.

use super::errors::ApiError;
use super::{resource, AppState};
use crate::bench::latency::{self, BatchLatency, LatencyPlan};
use crate::bench::machine::execution_provider;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_BATCH_SIZES: [usize; 4] = [1, 8, 32, 128];
pub const DEFAULT_ITERS: usize = 20;
pub const MAX_ITERS: usize = 200;
pub const MAX_BATCH: usize = 256;
pub const MAX_SIZES: usize = 8;
pub const WARMUP_ITERS: usize = 2;
pub const BUDGET_PER_SIZE: Duration = Duration::from_secs(5);
/// Long enough for a batcher woken by the unlock to take the session (microseconds), short
/// enough to add little to the benchmark's wall time.
const PAUSE: Duration = Duration::from_micros(500);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/models/{name}/benchmark").route(web::get().to(benchmark)));
}

/// Admits one benchmark at a time.
#[derive(Clone, Default)]
pub struct BenchmarkGate(Arc<AtomicBool>);

/// Holds the gate until dropped: with the benchmark's thread, not the request, so a client
/// that hangs up does not let a second benchmark start beside the first.
pub struct GateGuard(Arc<AtomicBool>);

impl BenchmarkGate {
    pub fn try_enter(&self) -> Option<GateGuard> {
        self.0.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| GateGuard(self.0.clone()))
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkQuery {
    batch_sizes: Option<String>,
    iters: Option<usize>,
}

#[derive(Serialize, Deserialize)]
pub struct BenchmarkResponse {
    pub model: String,
    pub architecture: String,
    /// Where the session runs (`cpu`, `cuda:N`) and ONNX Runtime's name for it.
    pub device: String,
    pub execution_provider: String,
    /// ONNX Runtime intra-op threads of the session.
    pub threads: usize,
    pub onnxruntime_version: String,
    pub warmup_iters: usize,
    /// Timed calls asked per batch size (each result says how many ran).
    pub iters: usize,
    pub results: Vec<BatchLatency>,
}

/// The query as a plan, or what is wrong with it.
pub fn plan(query: &BenchmarkQuery) -> Result<LatencyPlan, ApiError> {
    let bad = |msg: String| ApiError::BadRequest(msg);
    let iters = query.iters.unwrap_or(DEFAULT_ITERS);
    if !(1..=MAX_ITERS).contains(&iters) {
        return Err(bad(format!("iters must be between 1 and {MAX_ITERS}, got {iters}")));
    }
    let batch_sizes = match query.batch_sizes.as_deref() {
        None => DEFAULT_BATCH_SIZES.to_vec(),
        Some(list) => list
            .split(',')
            .map(|s| match s.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_BATCH).contains(&n) => Ok(n),
                _ => Err(bad(format!("batch_sizes: `{s}` is not a batch size; expected comma-separated integers from 1 to {MAX_BATCH}, e.g. 1,8,32,128"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut unique = batch_sizes.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != batch_sizes.len() || unique.len() > MAX_SIZES {
        return Err(bad(format!("batch_sizes: at most {MAX_SIZES} different sizes, each once; got {}", batch_sizes.len())));
    }
    Ok(LatencyPlan { batch_sizes, iters, warmup_iters: WARMUP_ITERS, budget_per_size: Some(BUDGET_PER_SIZE), pause: Some(PAUSE) })
}

async fn benchmark(state: web::Data<AppState>, name: web::Path<String>, query: web::Query<BenchmarkQuery>) -> Result<HttpResponse, ApiError> {
    let model = state.model(&name)?;
    let plan = plan(&query)?;
    let guard = state.benchmark.try_enter().ok_or(ApiError::Busy)?;
    let backend = model.backend();
    // Minutes of blocking ONNX Runtime calls at worst: on a blocking thread, never a worker.
    let results = web::block(move || {
        let _guard = guard;
        latency::measure(&backend, &plan)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("benchmark worker: {e}")))?
    .map_err(|e| ApiError::Internal(format!("benchmark of `{}`: {e}", model.name)))?;
    Ok(HttpResponse::Ok().json(BenchmarkResponse {
        model: model.name.clone(),
        architecture: model.meta.model.clone(),
        device: model.device.to_string(),
        execution_provider: execution_provider(model.device).into(),
        threads: model.threads,
        onnxruntime_version: cifar_onnxrt::runtime_version(),
        warmup_iters: WARMUP_ITERS,
        iters: query.iters.unwrap_or(DEFAULT_ITERS),
        results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(batch_sizes: Option<&str>, iters: Option<usize>) -> BenchmarkQuery {
        BenchmarkQuery { batch_sizes: batch_sizes.map(str::to_string), iters }
    }

    #[test]
    fn plans_and_refusals() {
        let p = plan(&q(None, None)).unwrap();
        assert_eq!((p.batch_sizes, p.iters), (DEFAULT_BATCH_SIZES.to_vec(), DEFAULT_ITERS));
        let p = plan(&q(Some("128, 1"), Some(3))).unwrap();
        assert_eq!((p.batch_sizes, p.iters), (vec![128, 1], 3));
        for (sizes, iters) in [
            (Some("0"), None),
            (Some("1,x"), None),
            (Some("257"), None),
            (Some(""), None),
            (Some("1,1"), None),
            (Some("1,2,3,4,5,6,7,8,9"), None),
            (None, Some(0)),
            (None, Some(MAX_ITERS + 1)),
        ] {
            let err = plan(&q(sizes, iters)).err().unwrap_or_else(|| panic!("{sizes:?} {iters:?} accepted"));
            assert_eq!(err.status(), 400, "{err}");
        }
    }

    #[test]
    fn the_gate_admits_one_until_released() {
        let gate = BenchmarkGate::default();
        let first = gate.try_enter().unwrap();
        assert!(gate.try_enter().is_none());
        drop(first);
        assert!(gate.try_enter().is_some());
    }
}
