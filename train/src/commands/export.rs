//! `train export`: a model (fresh or from a checkpoint) to ONNX, checked against ONNX Runtime.

use crate::cli::ExportArgs;
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use cifar_train::export::{export_checked, ParityCheck, PARITY_TOLERANCE};
use cifar_train::recipe::{Recipe, Tta};
use std::collections::HashMap;

pub fn run(args: &ExportArgs) -> Result<()> {
    let graph = cifar_models::build(&args.model)?;
    let seed = args.seed.unwrap_or(Recipe::seed(&args.model).seed);
    let net = Network::new(graph, seed, DType::F32, &Device::Cpu)?;
    let mut meta = ModelMetadata::for_model(&args.model)?;
    meta.source_commit = Some(cifar_train::GIT_COMMIT.to_string());
    let mut run_tta = None;
    if let Some(path) = &args.checkpoint {
        let tensors: HashMap<_, _> = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        net.load(&tensors).with_context(|| format!("cannot load {}", path.display()))?;
        run_tta = cifar_train::summary::fill_metadata(path, &mut meta).map(|s| s.recipe.tta);
    }
    let tta = args.tta.or(run_tta).unwrap_or(Tta::None);
    if let Some(run) = run_tta.filter(|&run| run != tta) {
        tracing::warn!("the metadata's accuracies were measured with test-time augmentation {run}; this export uses {tta}");
    }
    let check = match args.skip_parity {
        true => ParityCheck::Skip,
        false => ParityCheck::Required { ort_lib: args.ort_lib.as_deref() },
    };
    let exported = export_checked(&net, &meta, tta, check, &args.out)?;
    if let Some(p) = exported.parity {
        eprintln!("parity: max |logit difference| {:.2e} on a batch of {} (limit {PARITY_TOLERANCE:e})", p.max_abs_diff, p.batch);
    }
    let views = match tta {
        Tta::None => String::new(),
        t => format!(", test-time augmentation {t}: {} views", t.views()),
    };
    println!(
        "wrote {} ({}, {:.1} MB, {} params, {:.2} MMACs/image{views})",
        args.out.display(),
        args.model,
        exported.bytes.len() as f64 / 1e6,
        meta.facts.params,
        (meta.facts.macs_per_image * tta.views() as u64) as f64 / 1e6
    );
    Ok(())
}
