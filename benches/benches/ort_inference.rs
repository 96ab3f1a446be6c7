//! ONNX Runtime inference of a seeded fresh resnet-light at batch 1 and 128, through the
//! server's backend (its session options: graph optimisation level 3, no spinning), on as
//! many threads as `serve` uses by default (all cores). The model is exported in process, so
//! the bench needs no files; the ONNX Runtime library must be there (`scripts/setup.sh`), and
//! without it the bench says so and measures nothing.

use candle_core::{DType, Device as CandleDevice};
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use cifar_onnxrt::Flavor;
use cifar_serve::backend::Backend;
use cifar_serve::ort::{OrtBackend, OrtOptions};
use cifar_serve::Device;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const MODEL: &str = "resnet-light";

fn export(model: &str) -> anyhow::Result<Vec<u8>> {
    let net = Network::new(cifar_models::build(model)?, 7, DType::F32, &CandleDevice::Cpu)?;
    Ok(cifar_train::export::to_onnx_bytes(&net, &ModelMetadata::for_model(model)?, cifar_train::recipe::Tta::None)?)
}

fn ort_inference(c: &mut Criterion) {
    let env = match cifar_onnxrt::init(None, Flavor::Cpu) {
        Ok((_, env)) => env,
        Err(err) => {
            eprintln!("ort_inference: skipped, ONNX Runtime is not available: {err}");
            return;
        }
    };
    let onnx = export(MODEL).expect("exporting resnet-light");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = OrtOptions { device: Device::Cpu, allow_cpu_fallback: false, threads, spin: Default::default() };
    let (mut backend, _) = OrtBackend::load(&env, &onnx, &opts).expect("loading the exported model");
    let mut group = c.benchmark_group(format!("ort_inference/{MODEL}"));
    group.sample_size(20);
    for n in [1, 128] {
        let input = cifar_serve::bench::latency::inputs(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("batch_{n}"), |b| b.iter(|| backend.run(black_box(&input), n).expect("ORT run")));
    }
    group.finish();
}

criterion_group!(benches, ort_inference);
criterion_main!(benches);
