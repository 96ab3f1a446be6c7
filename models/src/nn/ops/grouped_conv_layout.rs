//! The working layout of the direct grouped conv: each input channel of a group is copied,
//! padded and split into `stride²` phase planes, so that every kernel tap becomes one flat
//! offset and the conv over a plane becomes shifted products over contiguous memory.
//!
//! Phase plane (a, b) holds `xpad[s·r + a][s·c + b]` in rows of `RS` columns; output pixel
//! (oy, ox) lives at grid index `oy·RS + ox` (columns `ox ≥ Wo` are scratch), and tap (ky, kx)
//! reads the grid shifted by `base(ky % s, kx % s) + (ky / s)·RS + kx / s`.

use super::conv_geom::ConvGeom;
use super::grouped_conv_kernel::BLOCK;
use super::storage::num_like::NumLike;

#[derive(Clone, Debug)]
pub struct PhaseLayout {
    pub rs: usize,
    /// Elements per phase plane, with a spare row so shifted reads stay inside.
    pub plane: usize,
    /// Distance between channels: `stride²` planes plus room for block overruns.
    pub cstride: usize,
    /// Grid length of one output plane, `Ho · RS`, and the same rounded up to a block.
    pub grid: usize,
    pub grid_pad: usize,
    /// Flat offset of each tap, in `(ky, kx)` order.
    pub taps: Vec<usize>,
    /// Per phase plane: its taps as (tap index, shift within the plane).
    pub phase_taps: Vec<Vec<(usize, usize)>>,
    /// Largest in-plane shift: the zero margin an output-gradient grid needs in front.
    pub margin: usize,
    /// Offset of input row `iy` in a channel buffer.
    in_row: Vec<usize>,
    /// Per phase column b: the first input column that lands in it, and that column's offset;
    /// the following ones are `stride` apart in the input and adjacent in the plane.
    col_runs: Vec<(usize, usize)>,
}

/// `dst[j] = src[j·stride]`; strides 1 and 2 (the models') without a runtime step.
fn copy_strided_from<T: NumLike>(dst: &mut [T], src: &[T], stride: usize) {
    match stride {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => {
            let n = dst.len().min(src.len().div_ceil(2));
            if n == 0 {
                return;
            }
            let (dst, src) = (&mut dst[..n], &src[..2 * n - 1]);
            for j in 0..n {
                dst[j] = src[2 * j];
            }
        }
        _ => dst.iter_mut().zip(src.iter().step_by(stride)).for_each(|(d, &v)| *d = v),
    }
}

/// `dst[j·stride] = src[j]`.
fn copy_strided_to<T: NumLike>(dst: &mut [T], src: &[T], stride: usize) {
    match stride {
        1 => dst[..src.len()].copy_from_slice(src),
        2 => {
            let n = src.len().min(dst.len().div_ceil(2));
            if n == 0 {
                return;
            }
            let (dst, src) = (&mut dst[..2 * n - 1], &src[..n]);
            for j in 0..n {
                dst[2 * j] = src[j];
            }
        }
        _ => dst.iter_mut().step_by(stride).zip(src).for_each(|(d, &v)| *d = v),
    }
}

fn round_up(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

impl PhaseLayout {
    pub fn new(g: &ConvGeom) -> Self {
        let s = g.stride;
        let reach = (g.k - 1) / s;
        let rs = (g.wo + reach).max((g.w + 2 * g.pad).div_ceil(s));
        let rows = (g.ho + reach).max((g.h + 2 * g.pad).div_ceil(s));
        let plane = (rows + 1) * rs;
        let grid = g.ho * rs;
        let grid_pad = round_up(grid, BLOCK);
        let mut phase_taps = vec![Vec::new(); s * s];
        let taps = (0..g.k * g.k)
            .map(|t| {
                let (ky, kx) = (t / g.k, t % g.k);
                let phase = (ky % s) * s + kx % s;
                let shift = (ky / s) * rs + kx / s;
                phase_taps[phase].push((t, shift));
                phase * plane + shift
            })
            .collect();
        let at = |p: usize| (p % s, p / s);
        let in_row = (0..g.h).map(|iy| at(iy + g.pad)).map(|(a, r)| a * s * plane + r * rs).collect();
        let col_runs = (0..s)
            .filter_map(|b| {
                let ix0 = (0..g.w).find(|ix| (ix + g.pad) % s == b)?;
                let (b, c) = at(ix0 + g.pad);
                Some((ix0, b * plane + c))
            })
            .collect();
        Self {
            rs,
            plane,
            cstride: s * s * plane + round_up(plane, BLOCK) + grid_pad,
            grid,
            grid_pad,
            taps,
            phase_taps,
            margin: reach * rs + reach,
            in_row,
            col_runs,
        }
    }

    /// Copies input planes into channel buffers; positions that hold no input are left as
    /// they are (zero, once the caller has zeroed the buffer).
    pub fn scatter_input<T: NumLike>(&self, g: &ConvGeom, planes: &[T], channels: usize, dst: &mut [T]) {
        for ci in 0..channels {
            let src = &planes[ci * g.in_plane()..][..g.in_plane()];
            let buf = &mut dst[ci * self.cstride..][..self.cstride];
            for (iy, &r) in self.in_row.iter().enumerate() {
                let row = &src[iy * g.w..][..g.w];
                for &(ix0, off) in &self.col_runs {
                    let run = (g.w - ix0).div_ceil(g.stride);
                    copy_strided_from(&mut buf[r + off..][..run], &row[ix0..], g.stride);
                }
            }
        }
    }

    /// Reads the input positions of channel buffers back out into planes.
    pub fn gather_input<T: NumLike>(&self, g: &ConvGeom, src: &[T], channels: usize, planes: &mut [T]) {
        for ci in 0..channels {
            let buf = &src[ci * self.cstride..][..self.cstride];
            let dst = &mut planes[ci * g.in_plane()..][..g.in_plane()];
            for (iy, &r) in self.in_row.iter().enumerate() {
                let row = &mut dst[iy * g.w..][..g.w];
                for &(ix0, off) in &self.col_runs {
                    let run = (g.w - ix0).div_ceil(g.stride);
                    copy_strided_to(&mut row[ix0..], &buf[r + off..][..run], g.stride);
                }
            }
        }
    }

    /// Output planes onto grids `stride` apart, each starting `lead` zeros in; every other
    /// position of the `channels · stride` buffer is zeroed.
    pub fn output_to_grid<T: NumLike>(&self, g: &ConvGeom, planes: &[T], channels: usize, lead: usize, stride: usize, dst: &mut [T]) {
        for co in 0..channels {
            let buf = &mut dst[co * stride..][..stride];
            buf[..lead].fill(T::ZERO);
            for oy in 0..g.ho {
                let row = &mut buf[lead + oy * self.rs..][..self.rs];
                row[..g.wo].copy_from_slice(&planes[(co * g.ho + oy) * g.wo..][..g.wo]);
                row[g.wo..].fill(T::ZERO);
            }
            buf[lead + self.grid..].fill(T::ZERO);
        }
    }

    /// Grids (`grid_pad` apart) back to output planes, adding `bias[co]`.
    pub fn grid_to_output<T: NumLike>(&self, g: &ConvGeom, src: &[T], channels: usize, bias: &[T], planes: &mut [T]) {
        for co in 0..channels {
            for oy in 0..g.ho {
                let row = &src[co * self.grid_pad + oy * self.rs..][..g.wo];
                for (o, &v) in planes[(co * g.ho + oy) * g.wo..][..g.wo].iter_mut().zip(row) {
                    *o = v + bias[co];
                }
            }
        }
    }
}
