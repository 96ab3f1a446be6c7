//! Per-channel mean of the seed's 45k training split, on the [0, 1] scale: a check that the
//! reader, the split and the real data agree with the published normalisation constants.
//!
//! `cargo run --release -p cifar-train --example channel_mean -- [--data-dir] DIR`

use anyhow::{bail, Context};
use cifar_train::data::{channel_mean, split_train_val, Cifar10, DEFAULT_SPLIT_SEED, VAL_SIZE};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--data-dir").collect();
    let [dir] = args.as_slice() else {
        bail!("usage: channel_mean [--data-dir] DIR (a folder with the CIFAR-10 binary batches)");
    };
    let dir = PathBuf::from(dir);
    let data = Cifar10::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let split = split_train_val(data.train.len(), VAL_SIZE, DEFAULT_SPLIT_SEED)?;
    let mean = channel_mean(&data.train, &split.train);
    let val = channel_mean(&data.train, &split.val);
    let all: Vec<u32> = (0..data.train.len() as u32).collect();
    let full = channel_mean(&data.train, &all);
    println!(
        "train split ({} images): mean R {:.4} G {:.4} B {:.4}",
        split.train.len(),
        mean[0],
        mean[1],
        mean[2]
    );
    println!(
        "val split   ({} images): mean R {:.4} G {:.4} B {:.4}",
        split.val.len(),
        val[0],
        val[1],
        val[2]
    );
    println!(
        "all train   ({} images): mean R {:.4} G {:.4} B {:.4}",
        all.len(),
        full[0],
        full[1],
        full[2]
    );
    Ok(())
}
