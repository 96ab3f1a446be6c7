//! Shared helpers for the benchmarks in `benches/`: one training step of a model, as the
//! trainer runs it (train-mode forward, cross-entropy, backward, the trainer's own AdamW).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{loss::cross_entropy, ModuleT};
use cifar_models::metadata::IMAGE_SHAPE;
use cifar_models::nn::Network;
use cifar_train::optim::AdamW;
use cifar_train::recipe::Recipe;

/// A model with its optimiser and one fixed batch.
pub struct TrainStep {
    pub net: Network,
    opt: AdamW,
    x: Tensor,
    labels: Tensor,
    lr: f64,
    /// Seconds spent in forward (with the loss), backward and optimiser update.
    pub phases: [f64; 3],
}

impl TrainStep {
    pub fn new(model: &str, batch: usize, seed: u64) -> anyhow::Result<Self> {
        let dev = Device::Cpu;
        let net = Network::new(cifar_models::build(model)?, seed, DType::F32, &dev)?;
        let recipe = Recipe::seed(model);
        let opt = AdamW::new(net.named_trainable(), recipe.beta1, recipe.beta2, recipe.eps, recipe.weight_decay)?;
        // A deterministic batch: the step's cost does not depend on the values.
        let [c, h, w] = IMAGE_SHAPE;
        let x = Tensor::from_vec(cifar_models::testdata::images(batch, seed), (batch, c, h, w), &dev)?;
        let labels = Tensor::from_vec(cifar_models::testdata::labels(batch, 10, seed), batch, &dev)?;
        Ok(Self { net, opt, x, labels, lr: recipe.lr, phases: [0.0; 3] })
    }

    /// AdamW's fused CPU passes (default) or its tensor expression, to compare the two.
    pub fn set_fused_adamw(&mut self, on: bool) {
        self.opt.set_fused(on);
    }

    pub fn batch(&self) -> usize {
        self.labels.dim(0).unwrap_or(0)
    }

    /// One optimisation step; returns the loss before it.
    pub fn step(&mut self) -> Result<f32> {
        let t = std::time::Instant::now();
        let logits = self.net.forward_t(&self.x, true)?;
        let loss = cross_entropy(&logits, &self.labels)?;
        let value = loss.to_scalar::<f32>()?;
        let t1 = std::time::Instant::now();
        let grads = loss.backward()?;
        let t2 = std::time::Instant::now();
        self.opt.step(&grads, self.lr)?;
        let t3 = std::time::Instant::now();
        self.phases[0] += (t1 - t).as_secs_f64();
        self.phases[1] += (t2 - t1).as_secs_f64();
        self.phases[2] += (t3 - t2).as_secs_f64();
        Ok(value)
    }
}

/// mimalloc as the global allocator of the binaries that link this crate: a training step
/// frees and reallocates hundreds of MB of activations, which glibc returns to the kernel and
/// faults back in page by page (700k page faults per resnet-light step batch of 5).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Process settings the step is fastest with; call first thing in `main` (see
/// [`cifar_train::runtime::tune`]).
pub fn tune_runtime() {
    cifar_train::runtime::tune();
}

/// Sizes rayon's global pool (the kernels' threads); later calls keep the first size.
pub fn set_threads(threads: usize) {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
}

/// This CPU in words for a benchmark table: `model name` of /proc/cpuinfo with its family and
/// model numbers (some clouds name it only `AMD EPYC`), and the vector extensions that decide
/// kernel speed.
pub fn this_cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| info.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string()));
    let mut s = field("model name").unwrap_or_else(|| "unknown CPU".into());
    if let (Some(f), Some(m)) = (field("cpu family"), field("model")) {
        s += &format!(" (family {f} model {m})");
    }
    let flags = field("flags").unwrap_or_default();
    let has: Vec<&str> = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"].into_iter().filter(|f| flags.split(' ').any(|x| x == *f)).collect();
    if !has.is_empty() {
        s += &format!(", {}", has.join(" "));
    }
    if let Ok(cap) = std::env::var("CIFAR_SIMD") {
        s += &format!("; our kernels capped at CIFAR_SIMD={cap}");
    }
    s
}
