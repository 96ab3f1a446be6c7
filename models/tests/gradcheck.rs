//! Finite-difference gradient checks in f64 for every op the models train through.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use cifar_models::nn::batch_norm::{self, BatchNorm};
use cifar_models::nn::{conv, linear, pool, Kernels};
use cifar_models::spec::Conv;
use cifar_models::testdata::Lcg;

/// f64 test tensors from the workspace's one generator.
trait Tensors {
    fn tensor(&mut self, dims: &[usize]) -> Result<Tensor>;
}

impl Tensors for Lcg {
    fn tensor(&mut self, dims: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.uniforms(dims.iter().product()), dims, &Device::Cpu)?)
    }
}

/// Compares d(Σ f(inputs)·R)/d(inputs) from autograd with central differences.
fn check(name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>) -> Result<()> {
    let vars: Vec<Var> = inputs.iter().map(Var::from_tensor).collect::<candle_core::Result<_>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&tensors)?;
    let weights = Lcg::new(99).tensor(out.dims())?;
    let loss = |ts: &[Tensor]| -> Result<f64> { Ok((f(ts)? * &weights)?.sum_all()?.to_scalar::<f64>()?) };
    let grads = (out * &weights)?.sum_all()?.backward()?;
    let eps = 1e-6;
    for (i, var) in vars.iter().enumerate() {
        let analytic = grads.get(var).map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap());
        let analytic = analytic.unwrap_or_else(|| vec![0.0; var.elem_count()]);
        let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        let mut worst: f64 = 0.0;
        for j in 0..base.len() {
            let at = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[j] += delta;
                let mut ts: Vec<Tensor> = tensors.iter().map(|t| t.detach()).collect();
                ts[i] = Tensor::from_vec(v, var.dims(), &Device::Cpu)?;
                loss(&ts)
            };
            let numeric = (at(eps)? - at(-eps)?) / (2.0 * eps);
            let err = (numeric - analytic[j]).abs() / (1.0 + numeric.abs());
            worst = worst.max(err);
        }
        assert!(worst < 1e-6, "{name}: input {i}: worst relative gradient error {worst:e}");
    }
    Ok(())
}

fn conv_case(name: &str, cin: usize, cout: usize, k: usize, stride: usize, groups: usize, hw: usize) -> Result<()> {
    let c = Conv { in_channels: cin, out_channels: cout, kernel: k, stride, padding: k / 2, groups, bias: true };
    let mut r = Lcg::new(cin as u64 * 31 + k as u64);
    let x = r.tensor(&[2, cin, hw, hw])?;
    let w = r.tensor(&c.weight_dims())?;
    let b = r.tensor(&[cout])?;
    check(name, &[x, w, b], |t| conv::conv2d(&t[0], &t[1], Some(&t[2]), &c, Kernels::Fast))
}

#[test]
fn conv_plain() -> Result<()> {
    conv_case("conv 3x3", 3, 4, 3, 1, 1, 5)
}

#[test]
fn conv_strided_and_pointwise() -> Result<()> {
    conv_case("conv 3x3 stride 2", 4, 6, 3, 2, 1, 6)?;
    conv_case("conv 1x1 stride 2", 4, 6, 1, 2, 1, 5)?;
    conv_case("conv 5x5 stem", 3, 2, 5, 1, 1, 6)
}

#[test]
fn conv_grouped() -> Result<()> {
    conv_case("grouped conv", 8, 8, 3, 1, 4, 5)?;
    conv_case("grouped conv stride 2", 8, 8, 3, 2, 2, 6)
}

#[test]
fn max_pool_even_and_odd_sizes() -> Result<()> {
    let mut r = Lcg::new(5);
    check("max pool 2 on 6x6", &[r.tensor(&[2, 3, 6, 6])?], |t| pool::max_pool2d(&t[0], 2, Kernels::Fast))?;
    check("max pool 2 on 5x7", &[r.tensor(&[2, 3, 5, 7])?], |t| pool::max_pool2d(&t[0], 2, Kernels::Fast))?;
    check("max pool 3 on 7x7", &[r.tensor(&[1, 2, 7, 7])?], |t| pool::max_pool2d(&t[0], 3, Kernels::Fast))
}

#[test]
fn avg_pool_even_and_odd_sizes() -> Result<()> {
    let mut r = Lcg::new(6);
    check("avg pool 2 on 6x6", &[r.tensor(&[2, 3, 6, 6])?], |t| pool::avg_pool2d(&t[0], 2, Kernels::Fast))?;
    check("avg pool 2 on 5x7", &[r.tensor(&[2, 3, 5, 7])?], |t| pool::avg_pool2d(&t[0], 2, Kernels::Fast))?;
    check("global avg pool", &[r.tensor(&[2, 3, 3, 5])?], |t| pool::global_avg_pool(&t[0]))
}

/// candle 0.11's own max-pool gradient is divided by k²; ours must be exactly PyTorch's.
#[test]
fn max_pool_gradient_routes_to_the_window_maximum() -> Result<()> {
    let x = Var::from_tensor(&Tensor::new(&[[[[1f64, 5., 2., 0.], [3., 4., 9., 8.]]]], &Device::Cpu)?)?;
    let y = pool::max_pool2d(x.as_tensor(), 2, Kernels::Fast)?;
    assert_eq!(y.flatten_all()?.to_vec1::<f64>()?, vec![5.0, 9.0]);
    let g = y.sum_all()?.backward()?;
    let gx = g.get(&x).unwrap().flatten_all()?.to_vec1::<f64>()?;
    assert_eq!(gx, vec![0., 1., 0., 0., 0., 0., 1., 0.]);
    Ok(())
}

#[test]
fn batch_norm_training_mode() -> Result<()> {
    let mut r = Lcg::new(7);
    let x = r.tensor(&[3, 4, 3, 3])?;
    let gamma = r.tensor(&[4])?;
    let beta = r.tensor(&[4])?;
    check("batch norm (train)", &[x, gamma, beta], |t| {
        batch_norm::normalize_train(&t[0], &t[1], &t[2], Kernels::Fast).map(|(y, ..)| y)
    })
}

#[test]
fn batch_norm_matches_pytorch_statistics() -> Result<()> {
    let x = Tensor::new(&[[[[1f64, 2.]]], [[[3., 6.]]]], &Device::Cpu)?; // N=2, C=1, 1x2
    let bn = BatchNorm {
        weight: Var::ones(1, DType::F64, &Device::Cpu)?,
        bias: Var::zeros(1, DType::F64, &Device::Cpu)?,
        running_mean: Var::zeros(1, DType::F64, &Device::Cpu)?,
        running_var: Var::ones(1, DType::F64, &Device::Cpu)?,
    };
    let y = bn.forward_t(&x, true, Kernels::Fast)?.flatten_all()?.to_vec1::<f64>()?;
    // mean 3, biased var 3.5, unbiased 14/3
    let s = (3.5f64 + 1e-5).sqrt();
    for (got, want) in y.iter().zip([-2.0 / s, -1.0 / s, 0.0, 3.0 / s]) {
        assert!((got - want).abs() < 1e-12);
    }
    assert!((bn.running_mean.to_vec1::<f64>()?[0] - 0.3).abs() < 1e-12);
    assert!((bn.running_var.to_vec1::<f64>()?[0] - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-12);
    Ok(())
}

#[test]
fn concat_linear_add() -> Result<()> {
    let mut r = Lcg::new(8);
    let (a, b, c) = (r.tensor(&[2, 2, 3, 3])?, r.tensor(&[2, 3, 3, 3])?, r.tensor(&[2, 1, 3, 3])?);
    check("concat", &[a, b, c], |t| Tensor::cat(t, 1))?;
    let (x, w, bias) = (r.tensor(&[3, 5])?, r.tensor(&[4, 5])?, r.tensor(&[4])?);
    check("linear", &[x, w, bias], |t| linear::linear(&t[0], &t[1], Some(&t[2])))
}
