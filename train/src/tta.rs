//! Test-time augmentation: the views whose logits are averaged. The ONNX export builds the
//! same views into its graph (`export::graph`), so served logits equal these.

use crate::recipe::Tta;
use candle_core::{Result, Tensor};
use candle_nn::ModuleT;
use cifar_models::nn::Network;

/// The mirror image of an NCHW batch (columns reversed).
pub fn flip(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.flip(&[3])
}

/// The batch moved one pixel down and right, the first row and column repeated.
pub fn translate(x: &Tensor) -> Result<Tensor> {
    let (h, w) = (x.dim(2)?, x.dim(3)?);
    x.pad_with_same(2, 1, 0)?.pad_with_same(3, 1, 0)?.narrow(2, 0, h)?.narrow(3, 0, w)?.contiguous()
}

/// The views of `x` that `tta` averages over, the image itself first.
pub fn views(x: &Tensor, tta: Tta) -> Result<Vec<Tensor>> {
    Ok(match tta {
        Tta::None => vec![x.clone()],
        Tta::Flip => vec![x.clone(), flip(x)?],
        Tta::FlipTranslate => {
            let shifted = translate(x)?;
            vec![x.clone(), flip(x)?, flip(&shifted)?, shifted]
        }
    })
}

/// Evaluation-mode logits of `x`, averaged over the views of `tta`.
pub fn logits(net: &Network, x: &Tensor, tta: Tta) -> Result<Tensor> {
    let views = views(x, tta)?;
    let n = views.len() as f64;
    let mut sum = net.forward_t(&views[0], false)?;
    for v in &views[1..] {
        sum = (sum + net.forward_t(v, false)?)?;
    }
    if n == 1.0 { Ok(sum) } else { sum / n }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn views_move_pixels_as_documented() -> Result<()> {
        // One 1-channel 2x3 image: [[0 1 2] [3 4 5]].
        let x = Tensor::arange(0f32, 6.0, &Device::Cpu)?.reshape((1, 1, 2, 3))?;
        assert_eq!(flip(&x)?.flatten_all()?.to_vec1::<f32>()?, [2., 1., 0., 5., 4., 3.]);
        assert_eq!(translate(&x)?.flatten_all()?.to_vec1::<f32>()?, [0., 0., 1., 0., 0., 1.]);
        assert_eq!(views(&x, Tta::FlipTranslate)?.len(), Tta::FlipTranslate.views());
        Ok(())
    }
}
