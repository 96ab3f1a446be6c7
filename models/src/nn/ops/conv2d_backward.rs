//! Gradients of [`super::conv2d::Conv2d`], one op each for every group count: input (gemm +
//! col2im, or the direct kernel), weight (one gemm per chunk, summed, or the direct kernel),
//! bias (a channel sum). The gemm paths walk the batch in the same chunks as the forward.

use super::channel_conv;
use super::conv_geom::ConvGeom;
use super::conv_plan::{dense_kernel, weight_grad_transposes_col, ConvPlan, DenseKernel, Product};
use super::grouped_conv;
use super::gemm::{matmul, Mat};
use super::im2col::{col2im, im2col, images_to_channel_major, transpose};
use super::scratch::{Pooled, Scratch};
use super::storage::{output_vec, float_dispatch, num_like::NumLike, same_dtype, slice_of, with_float_type};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The gradients of `conv(x, w, stride, padding, groups) + b` for output gradient `grad`, each
/// only where its operand takes part in autograd (the network input needs none).
pub fn backward(x: &Tensor, w: &Tensor, b: &Tensor, grad: &Tensor, stride: usize, padding: usize, groups: usize) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let grad = grad.contiguous()?;
    let (_, _, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let dx = match x.track_op() {
        false => None,
        true => Some(grad.apply_op2_no_bwd(w, &Conv2dInputGrad { stride, padding, groups, in_hw: (h, wd) })?),
    };
    let dw = match w.track_op() {
        false => None,
        true => Some(x.apply_op2_no_bwd(&grad, &Conv2dWeightGrad { stride, padding, groups, k })?),
    };
    let db = if b.track_op() { Some(grad.apply_op1_no_bwd(&BiasGrad)?) } else { None };
    Ok((dx, dw, db))
}

/// `(dy, weight) → dx` for an input of spatial size `in_hw`.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dInputGrad {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
    pub in_hw: (usize, usize),
}

impl CustomOp2 for Conv2dInputGrad {
    fn name(&self) -> &'static str {
        if self.groups == 1 { "conv2d-input-grad" } else { "grouped-conv2d-input-grad" }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed_shaped(self.name(), &[l1.dims(), l2.dims()], || {
            same_dtype(s1, s2, self.name())?;
            let g = ConvGeom::from_grad(l1.dims(), l2.dims(), self.in_hw, self.stride, self.padding, self.groups, self.name())?;
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let dy = slice_of::<T>(s1, l1, self.name())?;
                let w = slice_of::<T>(s2, l2, self.name())?;
                T::storage(input_grad_any(dy, w, &g)?)
            });
            Ok((out, Shape::from((g.n, g.cin, g.h, g.w))))
        })
    }
}

/// `(x, dy) → dweight` for a `k × k` kernel.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dWeightGrad {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
    pub k: usize,
}

impl CustomOp2 for Conv2dWeightGrad {
    fn name(&self) -> &'static str {
        if self.groups == 1 { "conv2d-weight-grad" } else { "grouped-conv2d-weight-grad" }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed_shaped(self.name(), &[l1.dims(), l2.dims()], || {
            same_dtype(s1, s2, self.name())?;
            let (xd, dyd) = (l1.dims(), l2.dims());
            if xd.len() != 4 || dyd.len() != 4 || self.groups == 0 || xd[1] % self.groups != 0 {
                bail!("{}: input {xd:?} and gradient {dyd:?} do not fit {} groups", self.name(), self.groups);
            }
            let wdims = [dyd[1], xd[1] / self.groups, self.k, self.k];
            let g = ConvGeom::from_grad(dyd, &wdims, (xd[2], xd[3]), self.stride, self.padding, self.groups, self.name())?;
            if g.n != xd[0] {
                bail!("{}: batch of input {xd:?} and gradient {dyd:?} differ", self.name());
            }
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let x = slice_of::<T>(s1, l1, self.name())?;
                let dy = slice_of::<T>(s2, l2, self.name())?;
                T::storage(weight_grad_any(x, dy, &g)?)
            });
            Ok((out, Shape::from(wdims.to_vec())))
        })
    }
}

/// Sum of an NCHW tensor over N, H and W: the bias gradient of a conv.
#[derive(Clone, Copy, Debug)]
pub struct BiasGrad;

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "conv-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            let &[n, c, h, w] = l.dims() else { bail!("{}: expected NCHW, got {:?}", self.name(), l.dims()) };
            let out = float_dispatch!(s, l, self.name(), |dy| channel_sums(dy, n, c, h * w));
            Ok((out, Shape::from(c)))
        })
    }
}

fn channel_sums<T: Pooled>(dy: &[T], n: usize, c: usize, p: usize) -> Vec<T> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut total = 0f64;
            for j in 0..n {
                total += plane_sum(&dy[(j * c + ch) * p..][..p]);
            }
            T::from_f64(total)
        })
        .collect()
}

/// Sum of a plane in 16 T lanes (vectorisable), then f64.
fn plane_sum<T: NumLike>(v: &[T]) -> f64 {
    const L: usize = 16;
    let mut acc = [T::ZERO; L];
    let mut chunks = v.chunks_exact(L);
    for ch in &mut chunks {
        for i in 0..L {
            acc[i] += ch[i];
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|v| v.to_f64()).sum();
    acc.iter().map(|v| v.to_f64()).sum::<f64>() + tail
}

/// The chunk of `dy` as a column-major `M × Cout` matrix: the slice itself for one image,
/// else a channel-major copy.
fn dy_matrix<'a, T: Pooled>(dy: &'a [T], b: usize, g: &ConvGeom, buf: &'a mut Option<Scratch<T>>) -> &'a [T] {
    if b == 1 {
        return dy;
    }
    let mut t = Scratch::new(dy.len());
    images_to_channel_major(dy, b, g.cout, g.out_plane(), &mut t);
    &**buf.insert(t)
}

/// `dx` of a conv with any group count.
pub fn input_grad_any<T: Pooled>(dy: &[T], w: &[T], g: &ConvGeom) -> Result<Vec<T>> {
    if g.groups == 1 { input_grad(dy, w, g) } else { Ok(grouped_conv::input_grad(dy, w, g)) }
}

/// `dw` of a conv with any group count.
pub fn weight_grad_any<T: Pooled>(x: &[T], dy: &[T], g: &ConvGeom) -> Result<Vec<T>> {
    if g.groups == 1 { weight_grad(x, dy, g) } else { Ok(grouped_conv::weight_grad(x, dy, g)) }
}

/// `dx` of a dense conv.
pub fn input_grad<T: Pooled>(dy: &[T], w: &[T], g: &ConvGeom) -> Result<Vec<T>> {
    match dense_kernel::<T>(g, Product::InputGrad) {
        DenseKernel::Channel => Ok(channel_conv::input_grad(dy, w, g)),
        DenseKernel::Direct => Ok(grouped_conv::input_grad(dy, w, g)),
        DenseKernel::Gemm => input_grad_gemm(dy, w, g),
    }
}

/// The gemm + col2im input gradient, whatever [`dense_kernel`] says.
pub fn input_grad_gemm<T: Pooled>(dy: &[T], w: &[T], g: &ConvGeom) -> Result<Vec<T>> {
    let plan = ConvPlan::new(g.n, g.out_plane());
    let (in_img, out_img) = (g.cin * g.in_plane(), g.cout * g.out_plane());
    let mut dx = output_vec(g.n * in_img);
    let chunk = |c: usize, dxs: &mut [T]| -> Result<()> {
        let b = dxs.len() / in_img;
        let m = b * g.out_plane();
        let dys = &dy[c * plan.images * out_img..][..b * out_img];
        let mut buf = None;
        let lhs = dy_matrix(dys, b, g, &mut buf);
        let (kk, par) = (g.patch(), plan.gemm_par());
        let w_mat = Mat::row_major(g.cout, kk);
        // colᵀ-gradient (M × K, column-major) = dyᵀ (M × Cout) · w (Cout × K)
        if g.is_pointwise() && b == 1 {
            return matmul(dxs, Mat::col_major(m, kk), lhs, Mat::col_major(m, g.cout), w, w_mat, false, par);
        }
        let mut dcol = Scratch::new(kk * m);
        matmul(&mut dcol, Mat::col_major(m, kk), lhs, Mat::col_major(m, g.cout), w, w_mat, false, par)?;
        // Written before col2im reads it: a fresh page read first maps the shared zero page and
        // then faults again, with a TLB shootdown, on the write (measured 10x slower).
        dxs.fill(T::ZERO);
        col2im(&dcol, b, g, dxs);
        Ok(())
    };
    if plan.parallel {
        dx.par_chunks_mut(plan.images * in_img).enumerate().try_for_each(|(c, d)| chunk(c, d))?;
    } else {
        dx.chunks_mut(plan.images * in_img).enumerate().try_for_each(|(c, d)| chunk(c, d))?;
    }
    Ok(dx)
}

/// `dw` of a dense conv.
pub fn weight_grad<T: Pooled>(x: &[T], dy: &[T], g: &ConvGeom) -> Result<Vec<T>> {
    match dense_kernel::<T>(g, Product::WeightGrad) {
        DenseKernel::Channel => Ok(channel_conv::weight_grad(x, dy, g)),
        DenseKernel::Direct => Ok(grouped_conv::weight_grad(x, dy, g)),
        DenseKernel::Gemm => weight_grad_gemm(x, dy, g),
    }
}

/// The im2col + gemm weight gradient, whatever [`dense_kernel`] says.
pub fn weight_grad_gemm<T: Pooled>(x: &[T], dy: &[T], g: &ConvGeom) -> Result<Vec<T>> {
    let plan = ConvPlan::new(g.n, g.out_plane());
    let (in_img, out_img, kk) = (g.cin * g.in_plane(), g.cout * g.out_plane(), g.patch());
    let chunks = g.n.div_ceil(plan.images);
    // dwᵀ (K × Cout, column-major, i.e. dw row-major) += col (K × M) · dy (M × Cout)
    let add_chunk = |c: usize, acc: &mut [T]| -> Result<()> {
        let first = c * plan.images;
        let b = plan.images.min(g.n - first);
        let m = b * g.out_plane();
        let xs = &x[first * in_img..][..b * in_img];
        let dys = &dy[first * out_img..][..b * out_img];
        let mut buf = None;
        let rhs = dy_matrix(dys, b, g, &mut buf);
        let col_buf;
        let col: &[T] = if g.is_pointwise() && b == 1 {
            xs
        } else {
            let mut cb = Scratch::new(kk * m);
            im2col(xs, b, g, &mut cb);
            col_buf = cb;
            &col_buf
        };
        if !weight_grad_transposes_col(g) {
            return matmul(acc, Mat::col_major(kk, g.cout), col, Mat::row_major(kk, m), rhs, Mat::col_major(m, g.cout), true, plan.gemm_par());
        }
        let mut col_t = Scratch::new(kk * m);
        transpose(col, kk, m, &mut col_t);
        matmul(acc, Mat::col_major(kk, g.cout), &col_t, Mat::col_major(kk, m), rhs, Mat::col_major(m, g.cout), true, plan.gemm_par())
    };
    if !plan.parallel {
        let mut acc = vec![T::ZERO; kk * g.cout];
        for c in 0..chunks {
            add_chunk(c, &mut acc)?;
        }
        return Ok(acc);
    }
    super::reduce::ordered_sum(chunks, kk * g.cout, add_chunk)
}
