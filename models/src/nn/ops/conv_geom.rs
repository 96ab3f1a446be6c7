//! The shape arithmetic shared by the convolution kernels, checked once at op entry so the
//! kernels can index without further tests.

use candle_core::{bail, Result};

/// A square-kernel 2-D convolution over an NCHW batch with OIHW weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeom {
    /// The geometry of `x: [n, cin, h, w]` convolved with `weight: [cout, cin/groups, k, k]`.
    pub fn new(x: &[usize], weight: &[usize], stride: usize, pad: usize, groups: usize, op: &str) -> Result<Self> {
        let &[n, cin, h, w] = x else { bail!("{op}: input must be NCHW, got {x:?}") };
        let &[cout, cin_g, k, k2] = weight else { bail!("{op}: weight must be [out, in/groups, k, k], got {weight:?}") };
        if k != k2 || k == 0 {
            bail!("{op}: only square kernels are supported, got {k}x{k2}");
        }
        if stride == 0 || groups == 0 || cin % groups != 0 || cout % groups != 0 || cin / groups != cin_g {
            bail!("{op}: input {x:?}, weight {weight:?}, stride {stride}, groups {groups} do not fit");
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            bail!("{op}: kernel {k} with padding {pad} does not fit {h}x{w}");
        }
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Ok(Self { n, cin, h, w, cout, k, stride, pad, groups, ho, wo })
    }

    /// Same geometry for an output gradient `dy` whose input was `[n, cin, h, w]`.
    pub fn from_grad(dy: &[usize], weight: &[usize], in_hw: (usize, usize), stride: usize, pad: usize, groups: usize, op: &str) -> Result<Self> {
        let &[n, cout, ho, wo] = dy else { bail!("{op}: gradient must be NCHW, got {dy:?}") };
        let cin = weight.get(1).copied().unwrap_or(0) * groups;
        let g = Self::new(&[n, cin, in_hw.0, in_hw.1], weight, stride, pad, groups, op)?;
        if g.cout != cout || g.ho != ho || g.wo != wo {
            bail!("{op}: gradient {dy:?} does not match the output of {g:?}");
        }
        Ok(g)
    }

    pub fn in_plane(&self) -> usize {
        self.h * self.w
    }

    pub fn out_plane(&self) -> usize {
        self.ho * self.wo
    }

    /// Length of one im2col row: inputs one output value sees.
    pub fn patch(&self) -> usize {
        self.cin / self.groups * self.k * self.k
    }

    /// A 1×1, stride-1, unpadded conv reads its input as the im2col matrix itself.
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    pub fn weight_dims(&self) -> [usize; 4] {
        [self.cout, self.cin / self.groups, self.k, self.k]
    }

    /// Multiply-accumulates of the forward pass.
    pub fn macs(&self) -> usize {
        self.n * self.out_plane() * self.patch() * self.cout
    }

    /// The range of output columns `ox` whose input column `ox*stride + kx - pad` is inside the
    /// image (the others read padding).
    pub fn valid_out(&self, kx: usize, size_in: usize, size_out: usize) -> (usize, usize) {
        let s = self.stride;
        // ox*s + kx >= pad  and  ox*s + kx < pad + size_in
        let lo = self.pad.saturating_sub(kx).div_ceil(s);
        let hi = if pad_end(self.pad + size_in, kx) == 0 { 0 } else { (pad_end(self.pad + size_in, kx) - 1) / s + 1 };
        (lo.min(size_out), hi.min(size_out).max(lo.min(size_out)))
    }
}

/// `a - b`, or 0 when b ≥ a.
fn pad_end(a: usize, b: usize) -> usize {
    a.saturating_sub(b)
}
