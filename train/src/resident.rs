//! The training set kept on the accelerator, augmented there.
//!
//! On a GPU the host loader (bytes → floats on two CPU threads, then a 1.5 MiB copy per batch)
//! would be the bottleneck. Instead the records go up once as bytes, zero-padded to 40×40, and
//! each batch is a handful of device ops driven by the host loader's own [`BatchPlan`]: pick the
//! records, gather the crop rows, gather the (possibly mirrored) crop columns, then map bytes to
//! floats through the normaliser's lookup table. Only ~33 KB of indices cross the bus per batch,
//! and because the floats come from the same table the host loader uses, the batches are equal
//! bit for bit — a run on device-resident data is the run the host loader would have given.

use crate::data::{BatchPlan, Normalizer, Records, PAD, SIDE};
use candle_core::{DType, Device, Result, Tensor};

const PADDED: usize = SIDE + 2 * PAD;

pub struct ResidentData {
    /// `[records, 3, 40, 40]` bytes, the image in the middle, zeros around it.
    padded: Tensor,
    /// `[records]` class ids.
    labels: Tensor,
    /// `[3 × 256]` floats: the normaliser's table.
    table: Tensor,
    /// `[1, 3, 1, 1]`: where each channel's table starts.
    channel_base: Tensor,
}

impl ResidentData {
    /// Uploads every record of `records` (the validation ones too: 240 MB for all of CIFAR-10's
    /// training file, less than splitting them out would cost in code).
    pub fn upload(records: &Records, norm: &Normalizer, device: &Device) -> Result<Self> {
        let n = records.len();
        let mut padded = vec![0u8; n * 3 * PADDED * PADDED];
        for (i, dst) in padded.chunks_exact_mut(3 * PADDED * PADDED).enumerate() {
            for (src, plane) in records.image(i).chunks_exact(SIDE * SIDE).zip(dst.chunks_exact_mut(PADDED * PADDED)) {
                for (row, out) in src.chunks_exact(SIDE).zip(plane.chunks_exact_mut(PADDED).skip(PAD)) {
                    out[PAD..PAD + SIDE].copy_from_slice(row);
                }
            }
        }
        let labels: Vec<u32> = records.labels().iter().map(|&l| l as u32).collect();
        Ok(ResidentData {
            padded: Tensor::from_vec(padded, (n, 3, PADDED, PADDED), device)?,
            labels: Tensor::from_vec(labels, n, device)?,
            table: Tensor::from_vec(norm.table(), 3 * 256, device)?,
            channel_base: Tensor::from_vec(vec![0u32, 256, 512], (1, 3, 1, 1), device)?,
        })
    }

    /// The plan's images `[B, 3, 32, 32]` f32 and labels `[B]` u32, on the device.
    pub fn batch(&self, plan: &BatchPlan) -> Result<(Tensor, Tensor)> {
        let b = plan.ids.len();
        let device = self.padded.device();
        // Output (y, x) reads the flipped image at (y + dy, x + dx): padded row y + dy + PAD,
        // padded column x + dx + PAD, or 31 − (x + dx) + PAD when mirrored.
        let mut rows = Vec::with_capacity(b * SIDE);
        let mut cols = Vec::with_capacity(b * SIDE);
        for a in &plan.augments {
            let (dx, dy) = (a.dx as i64, a.dy as i64);
            for i in 0..SIDE as i64 {
                rows.push((i + dy + PAD as i64) as u32);
                let x = i + dx;
                cols.push((if a.flip { SIDE as i64 - 1 - x } else { x } + PAD as i64) as u32);
            }
        }
        let ids = Tensor::from_slice(&plan.ids, b, device)?;
        let rows = Tensor::from_vec(rows, (b, 1, SIDE, 1), device)?.broadcast_as((b, 3, SIDE, PADDED))?.contiguous()?;
        let cols = Tensor::from_vec(cols, (b, 1, 1, SIDE), device)?.broadcast_as((b, 3, SIDE, SIDE))?.contiguous()?;
        let bytes = self.padded.index_select(&ids, 0)?.gather(&rows, 2)?.gather(&cols, 3)?;
        let entries = bytes.to_dtype(DType::U32)?.broadcast_add(&self.channel_base)?.flatten_all()?;
        let images = self.table.index_select(&entries, 0)?.reshape((b, 3, SIDE, SIDE))?;
        Ok((images, self.labels.index_select(&ids, 0)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{synthetic_records, Loader, LoaderConfig};
    use std::sync::Arc;

    /// The device path on the CPU must give exactly the host loader's batches.
    #[test]
    fn resident_batches_equal_the_host_loader_bit_for_bit() {
        let records = Arc::new(synthetic_records(70, 3, 40));
        for augment in [true, false] {
            let cfg = LoaderConfig { batch_size: 16, augment, shuffle: augment, seed: 9, workers: 0, prefetch: 1, ..LoaderConfig::train(9) };
            let loader = Loader::new(records.clone(), (0..records.len() as u32).rev().collect(), cfg).unwrap();
            let resident = ResidentData::upload(&records, loader.normalizer(), &Device::Cpu).unwrap();
            for epoch in [0, 3] {
                let plans: Vec<BatchPlan> = loader.plans_from(epoch, 0).collect();
                assert_eq!(plans.len(), loader.batches());
                for (plan, host) in plans.iter().zip(loader.epoch(epoch)) {
                    let (x, y) = resident.batch(plan).unwrap();
                    assert_eq!(x.dims(), &host.shape()[..]);
                    let x = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    assert!(x.iter().zip(&host.images).all(|(a, b)| a.to_bits() == b.to_bits()), "batch {} differs", plan.index);
                    let y = y.to_vec1::<u32>().unwrap();
                    assert_eq!(y, host.labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
                }
            }
        }
    }
}
