//! Grouped 2-D convolution (ResNeXt: 64 groups of 4 channels) on CPU as a direct kernel.
//!
//! With 4 channels per group a gemm is all packing and no arithmetic (M = 4, K = 36), and
//! candle runs one conv per group plus a concatenation, whose backward is 10-15x the forward.
//! Here each group's input is laid out once ([`PhaseLayout`]) and every product of forward,
//! input gradient and weight gradient is a shifted axpy or dot over contiguous memory. The
//! ops that call these kernels are [`super::conv2d::Conv2d`] and its gradients.

use super::conv_geom::ConvGeom;
use super::grouped_conv_kernel::{shifted_conv, shifted_dot, BLOCK, CO};
use super::grouped_conv_layout::PhaseLayout;
use super::scratch::{Pooled, Scratch};
use super::simd::multiversion;
use super::storage::{output_vec, num_like::NumLike};
use rayon::prelude::*;

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
