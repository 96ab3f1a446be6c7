//! Loader throughput in images/s: the training loader (shuffle + flip + crop + normalise, NCHW
//! f32 batches of 128) over an in-memory synthetic set, so disk speed does not enter.
//! Target on the 2-core machine: ≥ 20,000 images/s with 2 workers.

use cifar_train::data::{synthetic_records, Loader, LoaderConfig};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;

const IMAGES: usize = 12_800;

fn loader(c: &mut Criterion) {
    let records = Arc::new(synthetic_records(IMAGES, 1, 40));
    let indices: Vec<u32> = (0..IMAGES as u32).collect();
    let mut group = c.benchmark_group("loader");
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.sample_size(10);
    let configs = [
        ("train_augment_2_workers", LoaderConfig { workers: 2, ..LoaderConfig::train(42) }),
        ("train_augment_1_worker", LoaderConfig { workers: 1, ..LoaderConfig::train(42) }),
        ("eval_normalise_2_workers", LoaderConfig { workers: 2, ..LoaderConfig::eval() }),
    ];
    for (name, config) in configs {
        let loader = Loader::new(Arc::clone(&records), indices.clone(), config).unwrap();
        let mut epoch = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                epoch += 1;
                loader.epoch(epoch).map(|batch| black_box(batch.images).len()).sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, loader);
criterion_main!(benches);
