//! `train --model NAME`: a training run with the `--recipe` preset (seed by default),
//! overridden by the flags given.

use crate::cli::{DataPlacement, KernelChoice, Precision, TrainArgs};
use cifar_models::nn::Kernels;
use anyhow::{bail, Result};
use cifar_train::fit::{self, TrainOptions};
use cifar_train::run_folder::run_dir;

pub fn run(args: &TrainArgs, model: &str) -> Result<()> {
    cifar_models::info(model)?;
    let recipe = args.recipe.recipe_for(model);
    recipe.check()?;
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        // candle's CPU kernels size their work from RAYON_NUM_THREADS; set it before any pool exists.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().ok();
    }
    let (device, device_name) = cifar_train::device::select(&args.device)?;
    if !args.quiet {
        eprintln!("device: {device_name} (--device {})", args.device);
    }
    if args.precision == Precision::Bf16 && device.is_cpu() {
        bail!("--precision bf16 needs --device cuda: candle's CPU backend has no bf16 matrix multiply (use f32 on CPU)");
    }
    let summary = fit::train(TrainOptions {
        recipe,
        data_dir: args.data_dir.clone(),
        download: args.download,
        device: device.clone(),
        device_name,
        out: args.out.clone(),
        resume: args.resume,
        ort_lib: args.ort_lib.clone(),
        quiet: args.quiet,
        bf16: args.precision == Precision::Bf16,
        kernels: match args.kernels {
            KernelChoice::Fast => Kernels::Fast,
            KernelChoice::Portable => Kernels::Portable,
        },
        data_on_device: match args.data_placement {
            DataPlacement::Auto => !device.is_cpu(),
            DataPlacement::Host => false,
            DataPlacement::Device => true,
        },
    })?;
    println!(
        "{model}: best val acc {:.4} (epoch {}), test acc {:.4} on {} images; {:.0} img/s; run folder {}",
        summary.best_val_acc_frac.unwrap_or(f64::NAN),
        summary.best_epoch.map_or("-".into(), |e| e.to_string()),
        summary.test_acc_frac,
        summary.test_images,
        summary.mean_train_img_s,
        run_dir(&args.out, model).display()
    );
    Ok(())
}
