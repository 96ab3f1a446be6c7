//! `train speed`: training steps per second of each model on this device (see
//! [`cifar_train::speed`]).

use crate::cli::{Precision, SpeedArgs};
use anyhow::{bail, Context, Result};
use cifar_train::speed::{measure, SpeedOptions};

pub fn run(args: &SpeedArgs) -> Result<()> {
    if args.batch_size < 2 || args.steps == 0 {
        bail!("--batch-size must be at least 2 (batch norms need two images) and --steps at least 1");
    }
    let models: Vec<&str> = match args.models.as_str() {
        "all" => cifar_models::MODEL_NAMES.to_vec(),
        list => list.split(',').map(str::trim).collect(),
    };
    for model in &models {
        cifar_models::info(model)?;
    }
    super::set_threads(args.threads)?;
    let (device, device_name) = super::select_device(&args.device, args.precision)?;
    let opts = SpeedOptions {
        batch_size: args.batch_size,
        steps: args.steps,
        warmup: args.warmup,
        bf16: args.precision == Precision::Bf16,
        kernels: args.kernels.into(),
    };
    for model in models {
        let s = measure(model, &device, &device_name, &opts).with_context(|| format!("timing {model}"))?;
        eprintln!(
            "{model:>15} {device_name} {}: {:>8.1} img/s ({:.2} ms/step median), loss {:.3} -> {:.3}",
            s.precision,
            s.img_s,
            s.step_ms_median,
            s.losses.first().copied().unwrap_or(f32::NAN),
            s.losses.last().copied().unwrap_or(f32::NAN)
        );
        println!("{}", serde_json::to_string(&s)?);
    }
    Ok(())
}
