//! 2-D convolution with bias on CPU, one op for every group count: dense convs (`groups = 1`)
//! as im2col + one gemm per chunk of images, the channel-vectorised kernel or the direct
//! kernel, whichever [`dense_kernel`] picks; grouped convs on the direct kernel of [`super::grouped_conv`]. The backward
//! ([`super::conv2d_backward`]) has the same shape.
//!
//! candle 0.11's own conv2d backward runs the input gradient through a naive
//! `conv_transpose2d`; this op keeps all three products on the gemm crate.

use super::channel_conv;
use super::conv2d_backward::backward;
use super::conv_geom::ConvGeom;
use super::conv_plan::{dense_kernel, ConvPlan, DenseKernel, Product};
use super::grouped_conv;
use super::gemm::{matmul, Mat};
use super::im2col::{channel_major_to_images, im2col};
use super::scratch::{Pooled, Scratch};
use super::storage::{output_vec, num_like::NumLike, same_dtype, slice_of, with_float_type};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `conv2d(x, weight, stride, padding, groups) + bias`, arguments `(x, weight, bias)`.
#[derive(Clone, Copy, Debug)]
pub struct Conv2d {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

impl Conv2d {
    fn geom(&self, x: &Layout, w: &Layout, b: &Layout) -> Result<ConvGeom> {
        let g = ConvGeom::new(x.dims(), w.dims(), self.stride, self.padding, self.groups, "conv2d")?;
        if b.dims() != [g.cout] {
            bail!("conv2d: bias shape {:?} does not match {} output channels", b.dims(), g.cout);
        }
        Ok(g)
    }
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        if self.groups == 1 { "conv2d" } else { "grouped-conv2d" }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed_shaped(self.name(), &[l1.dims(), l2.dims()], || {
            same_dtype(s1, s2, self.name())?;
            same_dtype(s1, s3, self.name())?;
            let g = self.geom(l1, l2, l3)?;
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let x = slice_of::<T>(s1, l1, self.name())?;
                let w = slice_of::<T>(s2, l2, self.name())?;
                let b = slice_of::<T>(s3, l3, self.name())?;
                T::storage(forward_any(x, w, b, &g)?)
            });
            Ok((out, Shape::from((g.n, g.cout, g.ho, g.wo))))
        })
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        backward(x, w, b, grad, self.stride, self.padding, self.groups)
    }
}

/// `y = conv(x, w) + b` for a whole batch, dense or grouped.
pub fn forward_any<T: Pooled>(x: &[T], w: &[T], bias: &[T], g: &ConvGeom) -> Result<Vec<T>> {
    if g.groups == 1 {
        forward(x, w, bias, g)
    } else {
        Ok(grouped_conv::forward(x, w, bias, g))
    }
}

/// `y = conv(x, w) + b` for a whole batch of a dense conv.
pub fn forward<T: Pooled>(x: &[T], w: &[T], bias: &[T], g: &ConvGeom) -> Result<Vec<T>> {
    match dense_kernel::<T>(g, Product::Forward) {
        DenseKernel::Channel => Ok(channel_conv::forward(x, w, bias, g)),
        DenseKernel::Direct => Ok(grouped_conv::forward(x, w, bias, g)),
        DenseKernel::Gemm => forward_gemm(x, w, bias, g),
    }
}

/// The im2col + gemm forward, whatever [`dense_kernel`] says.
pub fn forward_gemm<T: Pooled>(x: &[T], w: &[T], bias: &[T], g: &ConvGeom) -> Result<Vec<T>> {
    let plan = ConvPlan::new(g.n, g.out_plane());
    let per_image = g.cout * g.out_plane();
    let mut y = output_vec(g.n * per_image);
    let chunk = |c: usize, out: &mut [T]| -> Result<()> {
        let b = out.len() / per_image;
        let xs = &x[c * plan.images * g.cin * g.in_plane()..][..b * g.cin * g.in_plane()];
        forward_chunk(xs, w, bias, b, g, out, &plan)
    };
    if plan.parallel {
        y.par_chunks_mut(plan.images * per_image).enumerate().try_for_each(|(c, out)| chunk(c, out))?;
    } else {
        y.chunks_mut(plan.images * per_image).enumerate().try_for_each(|(c, out)| chunk(c, out))?;
    }
    Ok(y)
}

fn forward_chunk<T: Pooled>(x: &[T], w: &[T], bias: &[T], b: usize, g: &ConvGeom, out: &mut [T], plan: &ConvPlan) -> Result<()> {
    let (m, kk, p) = (b * g.out_plane(), g.patch(), g.out_plane());
    // One image of a pointwise conv is already the im2col matrix, and its output plane is
    // the gemm's column-major result: no copies at all.
    let col_buf;
    let col: &[T] = if g.is_pointwise() && b == 1 {
        x
    } else {
        let mut c = Scratch::new(kk * m);
        im2col(x, b, g, &mut c);
        col_buf = c;
        &col_buf
    };
    let mut tmp = if b == 1 { None } else { Some(Scratch::<T>::new(m * g.cout)) };
    let dst: &mut [T] = match tmp.as_mut() {
        Some(t) => t,
        None => out,
    };
    // Start from the bias so the gemm adds onto it instead of a separate pass.
    for (co, plane) in dst.chunks_exact_mut(m).enumerate() {
        plane.fill(bias[co]);
    }
    // (M × Cout, column-major) += colᵀ (M × K) · wᵀ (K × Cout)
    matmul(
        dst,
        Mat::col_major(m, g.cout),
        col,
        Mat { rows: m, cols: kk, rs: 1, cs: m },
        w,
        Mat { rows: kk, cols: g.cout, rs: 1, cs: kk },
        true,
        plan.gemm_par(),
    )?;
    if let Some(t) = tmp {
        channel_major_to_images(&t, b, g.cout, p, out);
    }
    Ok(())
}
