//! One training step (train-mode forward, cross-entropy, backward, AdamW) of each model at
//! batch 128 on 2 threads. `step_compare` prints the same against PyTorch.

use cifar_benches::{set_threads, tune_runtime, TrainStep};
use cifar_models::MODEL_NAMES;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn train_step(c: &mut Criterion) {
    tune_runtime();
    set_threads(2);
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    for name in MODEL_NAMES {
        let mut step = TrainStep::new(name, 128, 0).expect("model builds");
        group.throughput(Throughput::Elements(step.batch() as u64));
        group.bench_function(name, |b| b.iter(|| step.step().expect("step runs")));
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
