//! `train export`: a model (fresh or from a checkpoint) to ONNX, checked against ONNX Runtime.

use crate::cli::ExportArgs;
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use cifar_onnxrt::Flavor;
use cifar_train::export::{check_parity, to_onnx_bytes, write_atomically, PARITY_TOLERANCE};
use std::collections::HashMap;

/// Images in the parity batch.
const PARITY_BATCH: usize = 8;

pub fn run(args: &ExportArgs) -> Result<()> {
    let graph = cifar_models::build(&args.model)?;
    let net = Network::new(graph, args.seed, DType::F32, &Device::Cpu)?;
    let mut meta = ModelMetadata::for_model(&args.model)?;
    meta.source_commit = Some(env!("CIFAR_GIT_COMMIT").to_string());
    if let Some(path) = &args.checkpoint {
        let tensors: HashMap<_, _> = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("reading checkpoint {}", path.display()))?;
        net.load(&tensors).with_context(|| format!("loading {}", path.display()))?;
        cifar_train::run_info::fill_metadata(path, &mut meta);
    }
    let bytes = to_onnx_bytes(&net, &meta)?;
    if !args.skip_parity {
        let (_, env) = cifar_onnxrt::init(args.ort_lib.as_deref(), Flavor::Cpu)?;
        let parity = check_parity(&env, &net, &bytes, PARITY_BATCH)?;
        if !parity.ok() {
            anyhow::bail!(
                "parity check failed: max |logit difference| between candle and ONNX Runtime is {:.3e} \
                 (> {PARITY_TOLERANCE:e}) on a batch of {PARITY_BATCH}; {} not written",
                parity.max_abs_diff,
                args.out.display()
            );
        }
        eprintln!("parity: max |logit difference| {:.2e} on a batch of {PARITY_BATCH} (limit {PARITY_TOLERANCE:e})", parity.max_abs_diff);
    }
    write_atomically(&args.out, &bytes)?;
    println!(
        "wrote {} ({}, {:.1} MB, {} params, {:.2} MMACs/image)",
        args.out.display(),
        args.model,
        bytes.len() as f64 / 1e6,
        meta.params,
        meta.macs_per_image as f64 / 1e6
    );
    Ok(())
}
