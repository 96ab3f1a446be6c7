//! The CPU custom ops against candle's own ops (f32 and f64, forward and every gradient) on
//! the shapes the models use and on odd ones, against finite differences (f64), and on bad
//! shapes (errors, not panics).

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use cifar_models::nn::batch_norm::{self, candle_normalize_train, normalize_train_act, BatchNorm};
use cifar_models::nn::conv::{candle_conv2d, conv2d};
use cifar_models::nn::ops::batch_norm::BatchNormTrain;
use cifar_models::nn::conv_bn::conv_batch_norm;
use cifar_models::nn::ops::conv2d::Conv2d;
use cifar_models::nn::ops::conv_bn::ConvBatchNorm;
use cifar_models::nn::{activation, pool, Kernels};
use cifar_models::spec::Conv;
use cifar_models::testdata::Lcg;

/// Test tensors from the workspace's one generator.
trait Tensors {
    fn tensor(&mut self, dims: &[usize], dtype: DType) -> Result<Tensor>;
}

impl Tensors for Lcg {
    fn tensor(&mut self, dims: &[usize], dtype: DType) -> Result<Tensor> {
        let v = self.uniforms(dims.iter().product());
        Ok(Tensor::from_vec(v, dims, &Device::Cpu)?.to_dtype(dtype)?)
    }
}

/// Largest difference relative to the largest reference magnitude.
fn rel_err(got: &Tensor, want: &Tensor) -> Result<f64> {
    rel_err_floor(got, want, 1e-30)
}

/// [`rel_err`] with the magnitude taken as at least `floor`, for quantities that are zero up
/// to rounding (a conv bias before a batch norm has a gradient of exactly zero in theory).
fn rel_err_floor(got: &Tensor, want: &Tensor, floor: f64) -> Result<f64> {
    assert_eq!(got.dims(), want.dims());
    let diff = (got.to_dtype(DType::F64)? - want.to_dtype(DType::F64)?)?.abs()?.max_all()?.to_scalar::<f64>()?;
    let scale = want.to_dtype(DType::F64)?.abs()?.max_all()?.to_scalar::<f64>()?.max(floor);
    Ok(diff / scale)
}

/// Runs `ours` and `reference` on the same inputs, weighting the output by a fixed random
/// tensor, and compares outputs and the gradients of every input.
fn compare(name: &str, inputs: &[Tensor], tol: f64, ours: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>, reference: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>) -> Result<()> {
    let run = |f: &dyn Fn(&[Tensor]) -> candle_core::Result<Tensor>| -> Result<(Tensor, Vec<Tensor>)> {
        let vars: Vec<Var> = inputs.iter().map(Var::from_tensor).collect::<candle_core::Result<_>>()?;
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&ts)?;
        let r = Lcg::new(17).tensor(y.dims(), y.dtype())?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let g = vars.iter().map(|v| grads.get(v).cloned().unwrap_or(v.zeros_like().unwrap())).collect();
        Ok((y, g))
    };
    let (y1, g1) = run(&ours)?;
    let (y2, g2) = run(&reference)?;
    let e = rel_err(&y1, &y2)?;
    assert!(e < tol, "{name}: output differs by {e:e}");
    for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
        let e = rel_err_floor(a, b, 1.0)?;
        assert!(e < tol, "{name}: gradient of input {i} differs by {e:e}");
    }
    Ok(())
}

fn conv_spec(cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Conv {
    Conv { in_channels: cin, out_channels: cout, kernel: k, stride, padding: k / 2, groups, bias: true }
}

fn conv_case(n: usize, c: Conv, h: usize, w: usize, dtype: DType) -> Result<()> {
    let mut r = Lcg::new((c.in_channels * 131 + c.kernel * 7 + h) as u64);
    let x = r.tensor(&[n, c.in_channels, h, w], dtype)?;
    let wt = r.tensor(&c.weight_dims(), dtype)?;
    let b = r.tensor(&[c.out_channels], dtype)?;
    let tol = if dtype == DType::F32 { 1e-4 } else { 1e-10 };
    let name = format!("{c:?} on {n}x{h}x{w} {dtype:?}");
    compare(&name, &[x, wt, b], tol, |t| conv2d(&t[0], &t[1], Some(&t[2]), &c, Kernels::Fast), |t| reference_conv(&t[0], &t[1], &t[2], &c))
}

/// candle's conv; strided ones as the stride-1 conv subsampled, because candle 0.11's own
/// strided backward returns an input gradient of the wrong size when the stride does not
/// divide `H + 2p - k`.
fn reference_conv(x: &Tensor, w: &Tensor, b: &Tensor, c: &Conv) -> candle_core::Result<Tensor> {
    if c.stride == 1 {
        return candle_conv2d(x, w, Some(b), c);
    }
    let full = candle_conv2d(x, w, Some(b), &Conv { stride: 1, ..*c })?;
    let pick = |len: usize| Tensor::from_vec((0..len).step_by(c.stride).map(|i| i as u32).collect::<Vec<_>>(), len.div_ceil(c.stride), x.device());
    let (_, _, h, w) = full.dims4()?;
    full.index_select(&pick(h)?, 2)?.index_select(&pick(w)?, 3)
}

#[test]
fn dense_conv_matches_candle_on_model_shapes() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        conv_case(8, conv_spec(3, 32, 5, 1, 1), 32, 32, dtype)?; // stem, one image per chunk
        conv_case(16, conv_spec(16, 24, 3, 1, 1), 16, 16, dtype)?; // two images per chunk
        conv_case(16, conv_spec(16, 32, 3, 2, 1), 16, 16, dtype)?; // strided
        conv_case(8, conv_spec(24, 40, 1, 1, 1), 32, 32, dtype)?; // pointwise, no im2col
        conv_case(16, conv_spec(24, 40, 1, 1, 1), 8, 8, dtype)?; // pointwise, one chunk
        conv_case(8, conv_spec(16, 32, 1, 2, 1), 32, 32, dtype)?; // strided shortcut
        conv_case(4, conv_spec(64, 128, 3, 1, 1), 2, 2, dtype)?; // tiny maps
        conv_case(4, conv_spec(24, 12, 3, 1, 1), 16, 16, dtype)?; // direct input and weight gradients
        conv_case(2, conv_spec(32, 64, 1, 1, 1), 1, 1, dtype)?; // 1x1 maps
        conv_case(4, conv_spec(32, 64, 3, 1, 1), 8, 8, dtype)?; // channel-vectorised (f32 on AVX-512)
        conv_case(3, conv_spec(64, 32, 3, 1, 1), 16, 16, dtype)?; // the same, one block of outputs
        conv_case(2, conv_spec(16, 32, 3, 1, 1), 8, 8, dtype)?; // the same, dx elsewhere (16 inputs)
    }
    Ok(())
}

#[test]
fn dense_conv_matches_candle_on_odd_sizes() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        conv_case(3, conv_spec(5, 7, 3, 1, 1), 9, 11, dtype)?;
        conv_case(5, conv_spec(5, 7, 3, 2, 1), 9, 7, dtype)?;
        conv_case(3, conv_spec(3, 4, 5, 1, 1), 7, 5, dtype)?;
        conv_case(3, conv_spec(3, 4, 5, 2, 1), 8, 9, dtype)?;
        conv_case(7, conv_spec(6, 5, 1, 2, 1), 7, 7, dtype)?;
        conv_case(9, conv_spec(6, 5, 3, 1, 1), 23, 21, dtype)?;
    }
    Ok(())
}

#[test]
fn grouped_conv_matches_candle() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        conv_case(3, conv_spec(256, 256, 3, 1, 64), 8, 8, dtype)?; // ResNeXt, 4 per group
        conv_case(3, conv_spec(256, 256, 3, 2, 64), 8, 8, dtype)?;
        conv_case(2, conv_spec(256, 256, 3, 1, 64), 4, 4, dtype)?;
        conv_case(2, conv_spec(256, 256, 3, 2, 64), 2, 2, dtype)?;
        conv_case(3, conv_spec(16, 16, 3, 1, 4), 9, 7, dtype)?; // odd sizes
        conv_case(3, conv_spec(16, 16, 3, 2, 4), 9, 7, dtype)?;
        conv_case(2, conv_spec(12, 18, 3, 1, 6), 6, 5, dtype)?; // 2 in, 3 out per group
        conv_case(2, conv_spec(16, 40, 3, 2, 2), 7, 8, dtype)?; // 8 in, 20 out per group
        conv_case(2, conv_spec(8, 8, 5, 1, 2), 7, 6, dtype)?; // 5x5
        conv_case(2, conv_spec(8, 8, 5, 2, 4), 9, 9, dtype)?;
        conv_case(2, conv_spec(8, 12, 1, 2, 4), 5, 6, dtype)?; // 1x1, strided
    }
    Ok(())
}

/// Central differences in f64 on the grouped kernel's blocked paths (the existing gradcheck
/// covers the small dense and grouped shapes).
#[test]
fn grouped_conv_finite_differences() -> Result<()> {
    for (stride, hw) in [(1, 5), (2, 6), (2, 5)] {
        let c = conv_spec(8, 8, 3, stride, 2);
        let mut r = Lcg::new(3 + stride as u64);
        let x = r.tensor(&[2, 8, hw, hw], DType::F64)?;
        let w = r.tensor(&c.weight_dims(), DType::F64)?;
        let b = r.tensor(&[8], DType::F64)?;
        finite_differences(&format!("grouped stride {stride} {hw}x{hw}"), &[x, w, b], |t| conv2d(&t[0], &t[1], Some(&t[2]), &c, Kernels::Fast))?;
    }
    Ok(())
}

fn finite_differences(name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>) -> Result<()> {
    let vars: Vec<Var> = inputs.iter().map(Var::from_tensor).collect::<candle_core::Result<_>>()?;
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts)?;
    let r = Lcg::new(99).tensor(y.dims(), DType::F64)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let loss = |ts: &[Tensor]| -> Result<f64> { Ok((f(ts)? * &r)?.sum_all()?.to_scalar::<f64>()?) };
    for (i, v) in vars.iter().enumerate() {
        let analytic = grads.get(v).unwrap().flatten_all()?.to_vec1::<f64>()?;
        let base = v.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        for j in 0..base.len() {
            let at = |d: f64| -> Result<f64> {
                let mut p = base.clone();
                p[j] += d;
                let mut t: Vec<Tensor> = ts.iter().map(|t| t.detach()).collect();
                t[i] = Tensor::from_vec(p, v.dims(), &Device::Cpu)?;
                loss(&t)
            };
            let numeric = (at(1e-6)? - at(-1e-6)?) / 2e-6;
            let err = (numeric - analytic[j]).abs() / (1.0 + numeric.abs());
            assert!(err < 1e-6, "{name}: input {i}[{j}]: {numeric} vs {}", analytic[j]);
        }
    }
    Ok(())
}

#[test]
fn batch_norm_matches_candle() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 1e-4 } else { 1e-10 };
        for dims in [[16, 32, 8, 8], [3, 5, 7, 9], [128, 4, 1, 1], [4, 16, 33, 1]] {
            let mut r = Lcg::new(dims[1] as u64);
            // An offset mean checks the variance for cancellation.
            let x = r.tensor(&dims, dtype)?.affine(2.0, 3.0)?;
            let w = r.tensor(&[dims[1]], dtype)?;
            let b = r.tensor(&[dims[1]], dtype)?;
            for relu in [false, true] {
                let name = format!("batch norm {dims:?} relu={relu} {dtype:?}");
                compare(&name, &[x.clone(), w.clone(), b.clone()], tol, |t| normalize_train_act(&t[0], &t[1], &t[2], relu, Kernels::Fast).map(|o| o.0), |t| {
                    let y = candle_normalize_train(&t[0], &t[1], &t[2])?.0;
                    if relu { y.relu() } else { Ok(y) }
                })?;
            }
            let (_, m1, v1, n1) = batch_norm::normalize_train(&x, &w, &b, Kernels::Fast)?;
            let (_, m2, v2, n2) = candle_normalize_train(&x, &w, &b)?;
            assert_eq!(n1, n2);
            assert!(rel_err(&m1, &m2)? < tol && rel_err(&v1, &v2)? < tol, "statistics of {dims:?}");
        }
    }
    Ok(())
}

#[test]
fn batch_norm_relu_finite_differences() -> Result<()> {
    let mut r = Lcg::new(12);
    let x = r.tensor(&[3, 4, 3, 3], DType::F64)?;
    let w = r.tensor(&[4], DType::F64)?;
    let b = r.tensor(&[4], DType::F64)?;
    finite_differences("batch norm + relu", &[x, w, b], |t| normalize_train_act(&t[0], &t[1], &t[2], true, Kernels::Fast).map(|o| o.0))
}

#[test]
fn fused_batch_norm_relu_equals_the_two_layers() -> Result<()> {
    let bn = || -> Result<BatchNorm> {
        Ok(BatchNorm {
            weight: Var::from_tensor(&Lcg::new(1).tensor(&[6], DType::F32)?)?,
            bias: Var::from_tensor(&Lcg::new(2).tensor(&[6], DType::F32)?)?,
            running_mean: Var::zeros(6, DType::F32, &Device::Cpu)?,
            running_var: Var::ones(6, DType::F32, &Device::Cpu)?,
        })
    };
    let x = Lcg::new(4).tensor(&[5, 6, 4, 3], DType::F32)?;
    let (a, b) = (bn()?, bn()?);
    for train in [true, false] {
        let fused = a.forward_t_act(&x, train, true, Kernels::Fast)?;
        let plain = b.forward_t(&x, train, Kernels::Fast)?.relu()?;
        assert!(rel_err(&fused, &plain)? < 1e-6, "train={train}");
    }
    assert!(rel_err(a.running_mean.as_tensor(), b.running_mean.as_tensor())? < 1e-6);
    assert!(rel_err(a.running_var.as_tensor(), b.running_var.as_tensor())? < 1e-6);
    Ok(())
}

fn conv_bn_case(n: usize, c: Conv, hw: usize, relu: bool, dtype: DType) -> Result<()> {
    let mut r = Lcg::new((c.out_channels * 7 + c.groups + hw) as u64);
    let x = r.tensor(&[n, c.in_channels, hw, hw], dtype)?;
    let w = r.tensor(&c.weight_dims(), dtype)?;
    let b = r.tensor(&[c.out_channels], dtype)?;
    let gamma = r.tensor(&[c.out_channels], dtype)?;
    let beta = r.tensor(&[c.out_channels], dtype)?;
    let tol = if dtype == DType::F32 { 1e-4 } else { 1e-10 };
    let name = format!("conv+bn {c:?} {n}x{hw}x{hw} relu={relu} {dtype:?}");
    compare(&name, &[x, w, b, gamma, beta], tol, |t| {
        let params = Tensor::cat(&[&t[2], &t[3], &t[4]], 0)?;
        t[0].apply_op3(&t[1], &params, ConvBatchNorm::new(c.stride, c.padding, c.groups, 1e-5, relu))
    }, |t| {
        let z = reference_conv(&t[0], &t[1], &t[2], &c)?;
        let y = candle_normalize_train(&z, &t[3], &t[4])?.0;
        if relu { y.relu() } else { Ok(y) }
    })
}

#[test]
fn fused_conv_batch_norm_matches_the_two_layers() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        for relu in [false, true] {
            conv_bn_case(8, conv_spec(3, 16, 5, 1, 1), 32, relu, dtype)?; // stem, direct kernel
            conv_bn_case(6, conv_spec(16, 24, 3, 2, 1), 9, relu, dtype)?;
            conv_bn_case(6, conv_spec(16, 8, 1, 1, 1), 7, relu, dtype)?;
            conv_bn_case(3, conv_spec(32, 32, 3, 2, 8), 8, relu, dtype)?; // grouped
            conv_bn_case(3, conv_spec(32, 32, 3, 1, 1), 8, relu, dtype)?; // channel-vectorised (f32 on AVX-512)
        }
    }
    // Running statistics move exactly as with the layers apart.
    let c = conv_spec(4, 6, 3, 1, 1);
    let mut r = Lcg::new(5);
    let (x, w, b) = (r.tensor(&[4, 4, 6, 6], DType::F32)?, r.tensor(&c.weight_dims(), DType::F32)?, r.tensor(&[6], DType::F32)?);
    let layer = || -> Result<BatchNorm> {
        Ok(BatchNorm {
            weight: Var::ones(6, DType::F32, &Device::Cpu)?,
            bias: Var::zeros(6, DType::F32, &Device::Cpu)?,
            running_mean: Var::zeros(6, DType::F32, &Device::Cpu)?,
            running_var: Var::ones(6, DType::F32, &Device::Cpu)?,
        })
    };
    let (fused, apart) = (layer()?, layer()?);
    conv_batch_norm(&x, &w, Some(&b), &c, &fused, true)?;
    apart.forward_t_act(&candle_conv2d(&x, &w, Some(&b), &c)?, true, true, Kernels::Fast)?;
    assert!(rel_err(fused.running_mean.as_tensor(), apart.running_mean.as_tensor())? < 1e-5);
    assert!(rel_err(fused.running_var.as_tensor(), apart.running_var.as_tensor())? < 1e-5);
    Ok(())
}

#[test]
fn fused_conv_batch_norm_finite_differences() -> Result<()> {
    let c = conv_spec(3, 4, 3, 2, 1);
    let mut r = Lcg::new(21);
    let inputs = [r.tensor(&[3, 3, 5, 5], DType::F64)?, r.tensor(&c.weight_dims(), DType::F64)?, r.tensor(&[12], DType::F64)?];
    finite_differences("conv+bn+relu", &inputs, |t| t[0].apply_op3(&t[1], &t[2], ConvBatchNorm::new(2, 1, 1, 1e-5, true)))
}

#[test]
fn relu_matches_candle() -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let x = Lcg::new(8).tensor(&[3, 5, 7, 11], dtype)?;
        compare("relu", &[x.clone()], 1e-12, |t| activation::relu(&t[0], Kernels::Fast), |t| t[0].relu())?;
        let b = Lcg::new(9).tensor(&[3, 5, 7, 11], dtype)?;
        compare("add + relu", &[x, b], 1e-12, |t| activation::add_relu(&t[0], &t[1], Kernels::Fast), |t| (&t[0] + &t[1])?.relu())?;
    }
    Ok(())
}

#[test]
fn pooling_matches_candle_on_even_sizes() -> Result<()> {
    // candle's max-pool gradient is off by k² (see gradcheck.rs), so only forward there.
    let x = Lcg::new(9).tensor(&[4, 8, 16, 16], DType::F32)?;
    assert!(rel_err(&pool::max_pool2d(&x, 2, Kernels::Fast)?, &x.max_pool2d(2)?)? < 1e-7);
    compare("avg pool", &[x], 1e-6, |t| pool::avg_pool2d(&t[0], 2, Kernels::Fast), |t| t[0].avg_pool2d(2))
}

#[test]
fn bad_shapes_are_errors_not_panics() -> Result<()> {
    let t = |dims: &[usize]| Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
    let conv = Conv2d { stride: 1, padding: 1, groups: 1 };
    assert!(t(&[2, 3, 8, 8]).apply_op3(&t(&[4, 5, 3, 3]), &t(&[4]), conv).is_err(), "channel mismatch");
    assert!(t(&[2, 3, 8, 8]).apply_op3(&t(&[4, 3, 3, 3]), &t(&[5]), conv).is_err(), "bias mismatch");
    assert!(t(&[3, 8, 8]).apply_op3(&t(&[4, 3, 3, 3]), &t(&[4]), conv).is_err(), "not NCHW");
    assert!(t(&[2, 3, 8, 8]).apply_op3(&t(&[4, 3, 3, 2]), &t(&[4]), conv).is_err(), "non-square kernel");
    assert!(t(&[2, 3, 1, 1]).apply_op3(&t(&[4, 3, 5, 5]), &t(&[4]), Conv2d { stride: 1, padding: 0, groups: 1 }).is_err(), "kernel larger than input");
    let g = Conv2d { stride: 1, padding: 1, groups: 4 };
    assert!(t(&[2, 6, 8, 8]).apply_op3(&t(&[8, 2, 3, 3]), &t(&[8]), g).is_err(), "channels not divisible");
    let f64x = Tensor::zeros((2, 3, 8, 8), DType::F64, &Device::Cpu)?;
    assert!(f64x.apply_op3(&t(&[4, 3, 3, 3]), &t(&[4]), conv).is_err(), "mixed dtypes");
    let bn = || BatchNormTrain::new(1e-5, false);
    assert!(t(&[2, 3, 4, 4]).apply_op3(&t(&[4]), &t(&[3]), bn()).is_err(), "weight length");
    assert!(t(&[1, 3, 1, 1]).apply_op3(&t(&[3]), &t(&[3]), bn()).is_err(), "one value per channel");
    let u8x = Tensor::zeros((2, 3, 4, 4), DType::U8, &Device::Cpu)?;
    assert!(u8x.apply_op3(&u8x.clone(), &u8x.clone(), bn()).is_err(), "integer dtype");
    Ok(())
}
