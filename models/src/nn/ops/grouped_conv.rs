//! Grouped 2-D convolution (ResNeXt: 64 groups of 4 channels) on CPU as a direct kernel.
//!
//! With 4 channels per group a gemm is all packing and no arithmetic (M = 4, K = 36), and
//! candle runs one conv per group plus a concatenation, whose backward is 10-15x the forward.
//! Here each group's input is laid out once ([`PhaseLayout`]) and every product of forward,
//! input gradient and weight gradient is a shifted axpy or dot over contiguous memory.

use super::conv2d_backward::backward;
use super::conv_geom::ConvGeom;
use super::grouped_conv_kernel::{shifted_conv, shifted_dot, BLOCK, CO};
use super::grouped_conv_layout::PhaseLayout;
use super::scratch::{Pooled, Scratch};
use super::simd::multiversion;
use super::storage::{output_vec, num_like::NumLike, same_dtype, slice_of, with_float_type};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `conv2d(x, weight, stride, padding, groups) + bias`, arguments `(x, weight, bias)`.
#[derive(Clone, Copy, Debug)]
pub struct GroupedConv2d {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

impl CustomOp3 for GroupedConv2d {
    fn name(&self) -> &'static str {
        "grouped-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed_shaped(self.name(), &[l1.dims(), l2.dims()], || {
            same_dtype(s1, s2, self.name())?;
            same_dtype(s1, s3, self.name())?;
            let g = ConvGeom::new(l1.dims(), l2.dims(), self.stride, self.padding, self.groups, self.name())?;
            if l3.dims() != [g.cout] {
                bail!("{}: bias shape {:?} does not match {} output channels", self.name(), l3.dims(), g.cout);
            }
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let x = slice_of::<T>(s1, l1, self.name())?;
                let w = slice_of::<T>(s2, l2, self.name())?;
                let b = slice_of::<T>(s3, l3, self.name())?;
                T::storage(forward(x, w, b, &g))
            });
            Ok((out, Shape::from((g.n, g.cout, g.ho, g.wo))))
        })
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        backward(x, w, b, grad, self.stride, self.padding, self.groups)
    }
}

/// `(dy, weight) → dx`.
#[derive(Clone, Copy, Debug)]
pub struct GroupedConv2dInputGrad {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
    pub in_hw: (usize, usize),
}

impl CustomOp2 for GroupedConv2dInputGrad {
    fn name(&self) -> &'static str {
        "grouped-conv2d-input-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed_shaped(self.name(), &[l1.dims(), l2.dims()], || {
            same_dtype(s1, s2, self.name())?;
            let g = ConvGeom::from_grad(l1.dims(), l2.dims(), self.in_hw, self.stride, self.padding, self.groups, self.name())?;
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let dy = slice_of::<T>(s1, l1, self.name())?;
                let w = slice_of::<T>(s2, l2, self.name())?;
                T::storage(input_grad(dy, w, &g))
            });
            Ok((out, Shape::from((g.n, g.cin, g.h, g.w))))
        })
    }
}

/// `(x, dy) → dweight` for a `k × k` kernel.
#[derive(Clone, Copy, Debug)]
pub struct GroupedConv2dWeightGrad {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
    pub k: usize,
}

impl CustomOp2 for GroupedConv2dWeightGrad {
    fn name(&self) -> &'static str {
        "grouped-conv2d-weight-grad"
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
                T::storage(weight_grad(x, dy, &g))
            });
            Ok((out, Shape::from(wdims.to_vec())))
        })
    }
}

/// Channels per group in and out, and taps per kernel.
fn group_dims(g: &ConvGeom) -> (usize, usize, usize) {
    (g.cin / g.groups, g.cout / g.groups, g.k * g.k)
}

/// Forward weights per group as `[co][ci][tap]`, output channels zero-padded to blocks of [`CO`].
fn forward_weights<T: NumLike>(w: &[T], g: &ConvGeom) -> (Vec<T>, usize) {
    let (cgi, cgo, kk) = group_dims(g);
    let cop = cgo.div_ceil(CO) * CO;
    let mut out = vec![T::ZERO; g.groups * cop * cgi * kk];
    for gi in 0..g.groups {
        let n = cgo * cgi * kk;
        out[gi * cop * cgi * kk..][..n].copy_from_slice(&w[gi * n..][..n]);
    }
    (out, cop)
}

/// Input-gradient weights per group and phase plane as `[ci][co][phase tap]`, input channels
/// zero-padded to blocks of [`CO`]: the forward's taps read backwards.
fn input_grad_weights<T: NumLike>(w: &[T], g: &ConvGeom, lay: &PhaseLayout) -> (Vec<Vec<Vec<T>>>, usize) {
    let (cgi, cgo, kk) = group_dims(g);
    let cip = cgi.div_ceil(CO) * CO;
    let per_group = (0..g.groups)
        .map(|gi| {
            lay.phase_taps
                .iter()
                .map(|taps| {
                    let mut v = vec![T::ZERO; cip * cgo * taps.len()];
                    for ci in 0..cgi {
                        for co in 0..cgo {
                            for (j, &(t, _)) in taps.iter().enumerate() {
                                v[(ci * cgo + co) * taps.len() + j] = w[((gi * cgo + co) * cgi + ci) * kk + t];
                            }
                        }
                    }
                    v
                })
                .collect()
        })
        .collect();
    (per_group, cip)
}

#[inline(always)]
fn forward_image<T: NumLike>(x: &[T], w: &[T], cop: usize, bias: &[T], g: &ConvGeom, lay: &PhaseLayout, y: &mut [T], xin: &mut [T], acc: &mut [T]) {
    let (cgi, cgo, kk) = group_dims(g);
    for gi in 0..g.groups {
        // Interior positions are rewritten for every group; the padding stays zero.
        lay.scatter_input(g, &x[gi * cgi * g.in_plane()..], cgi, xin);
        for cb in (0..cgo).step_by(CO) {
            let wts = &w[(gi * cop + cb) * cgi * kk..][..CO * cgi * kk];
            shifted_conv(acc, lay.grid_pad, lay.grid, xin, lay.cstride, cgi, &lay.taps, wts);
            let n = CO.min(cgo - cb);
            let first = gi * cgo + cb;
            lay.grid_to_output(g, acc, n, &bias[first..], &mut y[first * g.out_plane()..]);
        }
    }
}

multiversion!(fn forward_image_mv<T>(x: &[T], w: &[T], cop: usize, bias: &[T], g: &ConvGeom, lay: &PhaseLayout, y: &mut [T], xin: &mut [T], acc: &mut [T]) => forward_image);

pub fn forward<T: Pooled>(x: &[T], w: &[T], bias: &[T], g: &ConvGeom) -> Vec<T> {
    let lay = PhaseLayout::new(g);
    let (wp, cop) = forward_weights(w, g);
    let (cgi, _, _) = group_dims(g);
    let (in_img, out_img) = (g.cin * g.in_plane(), g.cout * g.out_plane());
    let mut y = output_vec(g.n * out_img);
    y.par_chunks_mut(out_img).enumerate().for_each(|(j, yo)| {
        let mut xin = Scratch::<T>::new(cgi * lay.cstride);
        xin.fill(T::ZERO);
        let mut acc = Scratch::<T>::new(CO * lay.grid_pad);
        forward_image_mv(&x[j * in_img..][..in_img], &wp, cop, bias, g, &lay, yo, &mut xin, &mut acc);
    });
    y
}

#[inline(always)]
fn input_grad_image<T: NumLike>(dy: &[T], w: &[Vec<Vec<T>>], g: &ConvGeom, lay: &PhaseLayout, dx: &mut [T], dxin: &mut [T], dyg: &mut [T]) {
    let (cgi, cgo, _) = group_dims(g);
    let gstride = dyg.len() / cgo;
    let mut offs = Vec::with_capacity(lay.taps.len());
    for gi in 0..g.groups {
        lay.output_to_grid(g, &dy[gi * cgo * g.out_plane()..], cgo, lay.margin, gstride, dyg);
        // Each phase plane of the padded input gradient gathers from the output gradient
        // through its own taps, read backwards from the zero margin in front of the grid.
        for (phase, taps) in lay.phase_taps.iter().enumerate() {
            let base = phase * lay.plane;
            if taps.is_empty() {
                for ci in 0..cgi {
                    dxin[ci * lay.cstride + base..][..lay.plane].fill(T::ZERO);
                }
                continue;
            }
            offs.clear();
            offs.extend(taps.iter().map(|&(_, shift)| lay.margin - shift));
            for cb in (0..cgi).step_by(CO) {
                let wts = &w[gi][phase][cb * cgo * taps.len()..][..CO * cgo * taps.len()];
                shifted_conv(&mut dxin[cb * lay.cstride + base..], lay.cstride, lay.plane, dyg, gstride, cgo, &offs, wts);
            }
        }
        lay.gather_input(g, dxin, cgi, &mut dx[gi * cgi * g.in_plane()..]);
    }
}

multiversion!(fn input_grad_image_mv<T>(dy: &[T], w: &[Vec<Vec<T>>], g: &ConvGeom, lay: &PhaseLayout, dx: &mut [T], dxin: &mut [T], dyg: &mut [T]) => input_grad_image);

pub fn input_grad<T: Pooled>(dy: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let lay = PhaseLayout::new(g);
    let (wt, cip) = input_grad_weights(w, g, &lay);
    let (_, cgo, _) = group_dims(g);
    let (in_img, out_img) = (g.cin * g.in_plane(), g.cout * g.out_plane());
    // A grid with its zero margin in front and room behind for a whole plane of reads.
    let gstride = lay.margin + lay.plane.div_ceil(BLOCK) * BLOCK + BLOCK + lay.grid_pad;
    let mut dx = output_vec(g.n * in_img);
    dx.par_chunks_mut(in_img).enumerate().for_each(|(j, d)| {
        let mut dxin = Scratch::<T>::new(cip * lay.cstride);
        let mut dyg = Scratch::<T>::new(cgo * gstride);
        input_grad_image_mv(&dy[j * out_img..][..out_img], &wt, g, &lay, d, &mut dxin, &mut dyg);
    });
    dx
}

#[inline(always)]
fn weight_grad_image<T: NumLike>(x: &[T], dy: &[T], g: &ConvGeom, lay: &PhaseLayout, dw: &mut [T], xin: &mut [T], dyg: &mut [T]) {
    let (cgi, cgo, kk) = group_dims(g);
    let cop = dyg.len() / lay.grid_pad;
    for gi in 0..g.groups {
        lay.scatter_input(g, &x[gi * cgi * g.in_plane()..], cgi, xin);
        lay.output_to_grid(g, &dy[gi * cgo * g.out_plane()..], cgo, 0, lay.grid_pad, dyg);
        for cb in (0..cop).step_by(CO) {
            shifted_dot(&mut dw[(gi * cop + cb) * cgi * kk..], &dyg[cb * lay.grid_pad..], lay.grid_pad, lay.grid, xin, lay.cstride, cgi, &lay.taps);
        }
    }
}

multiversion!(fn weight_grad_image_mv<T>(x: &[T], dy: &[T], g: &ConvGeom, lay: &PhaseLayout, dw: &mut [T], xin: &mut [T], dyg: &mut [T]) => weight_grad_image);

pub fn weight_grad<T: Pooled>(x: &[T], dy: &[T], g: &ConvGeom) -> Vec<T> {
    let lay = PhaseLayout::new(g);
    let (cgi, cgo, kk) = group_dims(g);
    let cop = cgo.div_ceil(CO) * CO;
    let (in_img, out_img) = (g.cin * g.in_plane(), g.cout * g.out_plane());
    // Accumulated with output channels padded to whole blocks (zero gradients), then cut.
    let len = g.groups * cop * cgi * kk;
    // Scratch per partition; its padding stays zero between images.
    let scratch = || {
        let mut xin = Scratch::<T>::new(cgi * lay.cstride);
        xin.fill(T::ZERO);
        let mut dyg = Scratch::<T>::new(cop * lay.grid_pad);
        dyg.fill(T::ZERO);
        (xin, dyg)
    };
    let padded = super::reduce::ordered_sum_with::<T, _, std::convert::Infallible, _, _>(g.n, len, scratch, |j, (xin, dyg), dw| {
        weight_grad_image_mv(&x[j * in_img..][..in_img], &dy[j * out_img..][..out_img], g, &lay, dw, xin, dyg);
        Ok(())
    });
    let padded = match padded {
        Ok(v) => v,
        Err(never) => match never {},
    };
    let n = cgo * cgi * kk;
    (0..g.groups).flat_map(|gi| padded[gi * cop * cgi * kk..][..n].to_vec()).collect()
}
