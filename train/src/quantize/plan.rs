//! Which tensors of the f32 graph get a QuantizeLinear/DequantizeLinear pair, so that ONNX
//! Runtime's QDQ fusions fire: DQ → Conv/Gemm/Add → Q becomes QLinearConv/QGemm/QLinearAdd, a
//! ReLU right before a Q is absorbed into it (its zero point is the range's minimum), and
//! MaxPool/Flatten between pairs of equal parameters run on the integers themselves.

use candle_onnx::onnx::{GraphProto, NodeProto};
use std::collections::{HashMap, HashSet};

/// Where a quantized tensor's scale and zero point come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Params {
    /// Its own calibrated range.
    Calibrated,
    /// Those of this (calibrated) tensor: what MaxPool and Flatten need to run on integers.
    SameAs(String),
}

/// Parts of the network left in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepF32 {
    /// The first convolution (3 input channels: little work, and the most sensitive layer).
    pub first_conv: bool,
    /// The final classifier (the Gemm that produces the logits).
    pub classifier: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Quantized activation tensors, in graph order.
    pub tensors: Vec<(String, Params)>,
    /// Conv and Gemm nodes (indices into the graph's nodes) whose weights become int8.
    pub weighted: HashSet<usize>,
}

impl Plan {
    pub fn params(&self, tensor: &str) -> Option<&Params> {
        self.tensors.iter().find(|(t, _)| t == tensor).map(|(_, p)| p)
    }

    /// The tensors whose ranges calibration must measure.
    pub fn calibrated(&self) -> Vec<String> {
        self.tensors.iter().filter(|(_, p)| *p == Params::Calibrated).map(|(t, _)| t.clone()).collect()
    }

    fn mark(&mut self, tensor: &str, params: Params) {
        match self.tensors.iter_mut().find(|(t, _)| t == tensor) {
            // A pass-through's equal parameters win over a range of its own.
            Some(entry) if params != Params::Calibrated => entry.1 = params,
            Some(_) => {}
            None => self.tensors.push((tensor.to_string(), params)),
        }
    }
}

/// The QDQ plan of `graph`.
pub fn plan(graph: &GraphProto, keep: KeepF32) -> Plan {
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for input in &n.input {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let first_conv = graph.node.iter().position(|n| n.op_type == "Conv");
    let classifier = graph.node.iter().rposition(|n| n.op_type == "Gemm");
    let mut plan = Plan::default();
    for (i, n) in graph.node.iter().enumerate() {
        let weighted = has_weights(n, &inits);
        let kept = (keep.first_conv && Some(i) == first_conv) || (keep.classifier && Some(i) == classifier);
        let compute = (weighted && !kept) || is_activation_add(n, &inits);
        if !compute {
            continue;
        }
        if weighted {
            plan.weighted.insert(i);
        }
        for input in n.input.iter().filter(|t| !t.is_empty() && !inits.contains(t.as_str())) {
            plan.mark(input, Params::Calibrated);
        }
        // Quantize after a ReLU that alone reads the output, so that ORT absorbs the ReLU.
        let mut out = n.output[0].as_str();
        if let [j] = consumers.get(out).map(Vec::as_slice).unwrap_or_default() {
            if graph.node[*j].op_type == "Relu" && !outputs.contains(out) {
                out = graph.node[*j].output[0].as_str();
            }
        }
        if !outputs.contains(out) {
            plan.mark(out, Params::Calibrated);
        }
    }
    for n in &graph.node {
        if !matches!(n.op_type.as_str(), "MaxPool" | "Flatten") || outputs.contains(n.output[0].as_str()) {
            continue;
        }
        let root = match plan.params(&n.input[0]) {
            Some(Params::Calibrated) => n.input[0].clone(),
            Some(Params::SameAs(root)) => root.clone(),
            None => continue,
        };
        plan.mark(&n.output[0], Params::SameAs(root));
    }
    plan
}

/// A Conv or Gemm whose weight is an initializer; a Gemm only in the exporter's form (B
/// transposed, no scaling), the one ORT's QGemm fusion and the per-row weight scales assume.
pub fn has_weights(n: &NodeProto, inits: &HashSet<&str>) -> bool {
    let weight_init = n.input.get(1).is_some_and(|w| inits.contains(w.as_str()));
    match n.op_type.as_str() {
        "Conv" => weight_init,
        "Gemm" => {
            let attr = |name: &str| n.attribute.iter().find(|a| a.name == name);
            let trans_b = attr("transB").is_some_and(|a| a.i == 1);
            let plain = ["alpha", "beta"].iter().all(|k| attr(k).is_none_or(|a| a.f == 1.0)) && attr("transA").is_none_or(|a| a.i == 0);
            weight_init && trans_b && plain
        }
        _ => false,
    }
}

fn is_activation_add(n: &NodeProto, inits: &HashSet<&str>) -> bool {
    n.op_type == "Add" && n.input.len() == 2 && n.input.iter().all(|t| !inits.contains(t.as_str()))
}
