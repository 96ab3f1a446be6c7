//! `train --model NAME`: a training run with the `--recipe` preset (seed by default),
//! overridden by the flags given.

use crate::cli::{DataPlacement, Precision, TrainArgs};
use anyhow::Result;
use cifar_train::fit::{self, TrainOptions};
use cifar_train::run_folder::run_dir;

pub fn run(args: &TrainArgs, model: &str) -> Result<()> {
    cifar_models::info(model)?;
    let recipe = args.recipe.recipe_for(model);
    recipe.check()?;
    super::set_threads(args.threads)?;
    let (device, device_name) = super::select_device(&args.device, args.precision)?;
    if !args.quiet {
        eprintln!("device: {device_name} (--device {})", args.device);
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
        kernels: args.kernels.into(),
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
