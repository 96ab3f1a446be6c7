//! The QDQ rewrite: every planned activation gets QuantizeLinear → DequantizeLinear (uint8,
//! asymmetric, per tensor), every planned Conv/Gemm an int8 weight (symmetric: zero point 0,
//! per output channel or per tensor) and an int32 bias at scale input × weight, each read
//! through a DequantizeLinear. The f32 graph is otherwise unchanged, so ORT fuses the
//! patterns into integer kernels and runs whatever it cannot fuse in f32.

use super::model::{floats, int32_tensor, int8_tensor, uint8_tensor};
use super::plan::{Params, Plan};
use super::QuantizeError;
use crate::export::{attr_int, initializer, node};
use candle_onnx::onnx::{GraphProto, NodeProto, TensorProto};
use std::collections::HashMap;

/// Scale and zero point of one uint8 activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActParams {
    pub scale: f32,
    pub zero_point: u8,
}

impl ActParams {
    /// The uint8 grid over [lo, hi], widened to hold 0 exactly (zero padding, ReLU's floor).
    pub fn of_range(lo: f32, hi: f32) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = (hi - lo) / 255.0;
        if !(scale > 0.0 && scale.is_finite()) {
            return ActParams { scale: 1.0, zero_point: 0 };
        }
        ActParams { scale, zero_point: (-lo / scale).round().clamp(0.0, 255.0) as u8 }
    }
}

/// How int8 weights are scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    PerChannel,
    PerTensor,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::PerChannel => "per-channel",
            Granularity::PerTensor => "per-tensor",
        }
    }
}

/// How much of the int8 grid weights use. ONNX Runtime multiplies uint8 activations by int8
/// weights; on CPUs without VNNI (AVX2 only, e.g. AMD Zen 3) its kernels add pairs of such
/// products in a saturating int16 (`vpmaddubsw`), and 2·255·127 overflows it: resnet-heavy lost
/// 4 points that way on a Zen 3 EPYC while it lost none on a VNNI machine. 2·255·63 fits, so
/// 7-bit weights (ONNX Runtime's `reduce_range`) give the same answers on every CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightRange {
    /// [-63, 63]: exact on every CPU.
    #[default]
    Reduced,
    /// [-127, 127]: one bit finer, exact only where the CPU has VNNI (or AMX).
    Full,
}

impl WeightRange {
    pub fn max(self) -> u8 {
        match self {
            WeightRange::Reduced => 63,
            WeightRange::Full => 127,
        }
    }
}

/// The int8 weights: their scaling and range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightGrid {
    pub granularity: Granularity,
    pub range: WeightRange,
}

/// `graph` rewritten per `plan`, with the calibrated `ranges` of its tensors.
pub fn rewrite(graph: &GraphProto, plan: &Plan, ranges: &HashMap<String, (f32, f32)>, weights: WeightGrid) -> Result<GraphProto, QuantizeError> {
    let params = resolve(plan, ranges)?;
    let mut inits: HashMap<String, TensorProto> = graph.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect();
    let mut out = Rewriter { nodes: Vec::new(), added: Vec::new(), params: &params };
    for input in &graph.input {
        out.quantize_activation(&input.name);
    }
    for (i, n) in graph.node.iter().enumerate() {
        let mut n = n.clone();
        for input in n.input.iter_mut() {
            if params.contains_key(input.as_str()) {
                *input = dq_name(input);
            }
        }
        if plan.weighted.contains(&i) {
            out.quantize_weights(&mut n, &inits, weights)?;
        }
        let outputs = n.output.clone();
        out.nodes.push(n);
        for o in &outputs {
            out.quantize_activation(o);
        }
    }
    // Keep the initializers still read, in their original order, then the new ones.
    let used: std::collections::HashSet<&str> = out.nodes.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
    let mut initializer: Vec<TensorProto> = graph.initializer.iter().filter(|t| used.contains(t.name.as_str())).filter_map(|t| inits.remove(&t.name)).collect();
    initializer.extend(out.added);
    Ok(GraphProto { node: out.nodes, initializer, ..graph.clone() })
}

/// Each planned tensor's parameters, a pass-through taking its source's.
fn resolve(plan: &Plan, ranges: &HashMap<String, (f32, f32)>) -> Result<HashMap<String, ActParams>, QuantizeError> {
    let mut params = HashMap::new();
    for (tensor, source) in &plan.tensors {
        let root = match source {
            Params::Calibrated => tensor,
            Params::SameAs(root) => root,
        };
        let &(lo, hi) = ranges.get(root).ok_or_else(|| QuantizeError::Calibration(format!("no range for tensor {root}")))?;
        params.insert(tensor.clone(), ActParams::of_range(lo, hi));
    }
    Ok(params)
}

fn dq_name(tensor: &str) -> String {
    format!("{tensor}.dq")
}

struct Rewriter<'a> {
    nodes: Vec<NodeProto>,
    added: Vec<TensorProto>,
    params: &'a HashMap<String, ActParams>,
}

impl Rewriter<'_> {
    /// QuantizeLinear → DequantizeLinear after `tensor`, when planned; readers use the DQ output.
    fn quantize_activation(&mut self, tensor: &str) {
        let Some(p) = self.params.get(tensor).copied() else { return };
        let (scale, zp, q) = (format!("{tensor}.scale"), format!("{tensor}.zero_point"), format!("{tensor}.q"));
        self.added.push(initializer(&scale, &[], &[p.scale]));
        self.added.push(uint8_tensor(&zp, &[], &[p.zero_point]));
        self.nodes.push(node("QuantizeLinear", &q, &[tensor, &scale, &zp], &q, vec![]));
        let dq = dq_name(tensor);
        self.nodes.push(node("DequantizeLinear", &dq, &[&q, &scale, &zp], &dq, vec![]));
    }

    /// Replaces the weight (and bias) of Conv/Gemm `n` by int8 (int32) initializers read
    /// through DequantizeLinear nodes, placed before `n`.
    fn quantize_weights(&mut self, n: &mut NodeProto, inits: &HashMap<String, TensorProto>, g: WeightGrid) -> Result<(), QuantizeError> {
        let input_scale = n.input[0].strip_suffix(".dq").and_then(|t| self.params.get(t)).map(|p| p.scale);
        let Some(input_scale) = input_scale else {
            return Err(QuantizeError::Unsupported(format!("{} {}: its input is not quantized", n.op_type, n.name)));
        };
        let w = inits.get(&n.input[1]).ok_or_else(|| QuantizeError::Unsupported(format!("no initializer {}", n.input[1])))?;
        let dims: Vec<usize> = w.dims.iter().map(|&d| d as usize).collect();
        let (qw, scales) = int8_weights(&floats(w)?, dims[0], g);
        let w_name = n.input[1].clone();
        n.input[1] = self.dequantized(&w_name, Quantized::Int8(&qw, &dims), &scales);
        if let Some(b_name) = n.input.get(2).filter(|b| !b.is_empty()).cloned() {
            let b = inits.get(&b_name).ok_or_else(|| QuantizeError::Unsupported(format!("no initializer {b_name}")))?;
            let bias_scales: Vec<f32> = scales.iter().map(|s| s * input_scale).collect();
            let qb = int32_bias(&floats(b)?, &bias_scales);
            n.input[2] = self.dequantized(&b_name, Quantized::Int32(&qb), &bias_scales);
        }
        Ok(())
    }

    /// Initializers for `values` quantized at `scales` (one: per tensor; else per channel
    /// along axis 0) with zero point 0, and the DequantizeLinear that reads them.
    fn dequantized(&mut self, name: &str, values: Quantized, scales: &[f32]) -> String {
        let (q, scale, zp, dq) = (format!("{name}.quantized"), format!("{name}.scale"), format!("{name}.zero_point"), format!("{name}.dq"));
        let per_channel = scales.len() > 1;
        let sdims: &[usize] = if per_channel { &[scales.len()] } else { &[] };
        self.added.push(initializer(&scale, sdims, scales));
        match values {
            Quantized::Int8(v, dims) => {
                self.added.push(int8_tensor(&q, dims, v));
                self.added.push(int8_tensor(&zp, sdims, &vec![0; scales.len()]));
            }
            Quantized::Int32(v) => {
                self.added.push(int32_tensor(&q, &[v.len()], v));
                self.added.push(int32_tensor(&zp, sdims, &vec![0; scales.len()]));
            }
        }
        let attrs = if per_channel { vec![attr_int("axis", 0)] } else { vec![] };
        self.nodes.push(node("DequantizeLinear", &dq, &[&q, &scale, &zp], &dq, attrs));
        dq
    }
}

enum Quantized<'a> {
    Int8(&'a [i8], &'a [usize]),
    Int32(&'a [i32]),
}

/// Symmetric int8 weights in [-max, max] of `g.range` and their scales: one per output channel
/// (the leading axis) or one in all.
pub fn int8_weights(w: &[f32], channels: usize, g: WeightGrid) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / channels.max(1);
    let top = g.range.max() as f32;
    let scale_of = |chunk: &[f32]| {
        let max = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        if max > 0.0 { max / top } else { 1.0 }
    };
    let scales: Vec<f32> = match g.granularity {
        Granularity::PerChannel => w.chunks(per).map(scale_of).collect(),
        Granularity::PerTensor => vec![scale_of(w)],
    };
    let q = w.iter().enumerate().map(|(i, v)| (v / scales[(i / per).min(scales.len() - 1)]).round().clamp(-top, top) as i8).collect();
    (q, scales)
}

/// The bias at the accumulator's scale (input scale × weight scale), as int32.
pub fn int32_bias(b: &[f32], scales: &[f32]) -> Vec<i32> {
    b.iter().enumerate().map(|(i, v)| (*v as f64 / scales[i.min(scales.len() - 1)] as f64).round().clamp(-(i32::MAX as f64), i32::MAX as f64) as i32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_grids_hold_zero_and_the_range() {
        let p = ActParams::of_range(0.0, 6.0);
        assert_eq!(p.zero_point, 0);
        assert!((p.scale * 255.0 - 6.0).abs() < 1e-5);
        let p = ActParams::of_range(-1.0, 3.0);
        assert_eq!(p.zero_point, 64);
        assert_eq!(ActParams::of_range(0.0, 0.0), ActParams { scale: 1.0, zero_point: 0 });
    }

    #[test]
    fn weights_round_trip_within_half_a_step_per_channel() {
        let w = [0.5, -1.0, 0.25, 0.001, -0.002, 0.0];
        let grid = |granularity, range| WeightGrid { granularity, range };
        let (q, s) = int8_weights(&w, 2, grid(Granularity::PerChannel, WeightRange::Full));
        assert_eq!(s.len(), 2);
        assert_eq!(q[1], -127);
        for (i, v) in w.iter().enumerate() {
            assert!((q[i] as f32 * s[i / 3] - v).abs() <= s[i / 3] / 2.0 + 1e-9);
        }
        let (q, s) = int8_weights(&w, 2, grid(Granularity::PerChannel, WeightRange::Reduced));
        assert_eq!(q[1], -63, "7 bits by default");
        assert!(q.iter().all(|v| (-63..=63).contains(v)));
        for (i, v) in w.iter().enumerate() {
            assert!((q[i] as f32 * s[i / 3] - v).abs() <= s[i / 3] / 2.0 + 1e-9);
        }
        let (q, s) = int8_weights(&w, 2, grid(Granularity::PerTensor, WeightRange::Full));
        assert_eq!(s.len(), 1);
        assert_eq!(&q[3..], &[0, 0, 0], "one scale for all rounds the small channel away");
        assert_eq!(int32_bias(&[1.0, -0.5], &[0.01, 0.5]), [100, -1]);
    }
}
