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

/// A convolution whose `group` attribute splits the channels (ResNeXt's 3×3 convolutions).
pub fn is_grouped(n: &NodeProto) -> bool {
    n.op_type == "Conv" && n.attribute.iter().any(|a| a.name == "group" && a.i > 1)
}

fn is_activation_add(n: &NodeProto, inits: &HashSet<&str>) -> bool {
    n.op_type == "Add" && n.input.len() == 2 && n.input.iter().all(|t| !inits.contains(t.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{attr_int, initializer, node};
    use candle_onnx::onnx::ValueInfoProto;

    /// conv → relu → maxpool → two convs → add → relu → global pool → flatten → gemm.
    fn graph() -> GraphProto {
        let nodes = vec![
            node("Conv", "c1", &["input", "w1", "b1"], "c1", vec![]),
            node("Relu", "r1", &["c1"], "r1", vec![]),
            node("MaxPool", "p1", &["r1"], "p1", vec![]),
            node("Conv", "c2", &["p1", "w2", "b2"], "c2", vec![]),
            node("Conv", "c3", &["p1", "w3"], "c3", vec![]),
            node("Add", "a", &["c2", "c3"], "a", vec![]),
            node("Relu", "ra", &["a"], "ra", vec![]),
            node("GlobalAveragePool", "g", &["ra"], "g", vec![]),
            node("Flatten", "f", &["g"], "f", vec![attr_int("axis", 1)]),
            node("Gemm", "fc", &["f", "wf", "bf"], "logits", vec![attr_int("transB", 1)]),
        ];
        let inits = ["w1", "b1", "w2", "b2", "w3", "wf", "bf"].iter().map(|n| initializer(n, &[1], &[1.0])).collect();
        let io = |name: &str| ValueInfoProto { name: name.into(), ..Default::default() };
        GraphProto { node: nodes, initializer: inits, input: vec![io("input")], output: vec![io("logits")], ..Default::default() }
    }

    #[test]
    fn relus_are_quantized_after_and_pools_share_their_input_grid() {
        let p = plan(&graph(), KeepF32::default());
        let names: Vec<&str> = p.tensors.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["input", "r1", "p1", "c2", "c3", "ra", "f"]);
        assert_eq!(p.params("p1"), Some(&Params::SameAs("r1".into())));
        assert!(p.params("c1").is_none() && p.params("a").is_none(), "no Q between an op and its ReLU");
        assert!(p.params("logits").is_none(), "the logits stay f32");
        assert_eq!(p.weighted, HashSet::from([0, 3, 4, 9]));
    }

    #[test]
    fn kept_layers_read_and_write_f32() {
        let p = plan(&graph(), KeepF32 { first_conv: true, classifier: true });
        assert_eq!(p.weighted, HashSet::from([3, 4]));
        assert!(p.params("input").is_none() && p.params("f").is_none());
        assert_eq!(p.params("p1"), Some(&Params::Calibrated), "the pool's input is f32 now: it gets a range of its own");
    }
}
