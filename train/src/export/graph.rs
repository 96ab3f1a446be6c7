//! The layer graph as an ONNX `ModelProto` (opset 17).

use super::fold::fold_batch_norm;
use anyhow::{bail, Context, Result};
use candle_onnx::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use cifar_models::spec::{Graph, NodeId, Op};

pub const OPSET: i64 = 17;
/// ONNX IR version 8 is the one that goes with opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";
/// Name of the symbolic batch dimension.
const BATCH: &str = "batch";

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: ints.to_vec(), ..Default::default() }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn initializer(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims.iter().map(|d| Dimension { value: Some(d.clone()), ..Default::default() }).collect(),
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn batched(dims: &[usize]) -> Vec<Dim> {
    std::iter::once(Dim::DimParam(BATCH.into())).chain(dims.iter().map(|&d| Dim::DimValue(d as i64))).collect()
}

/// Convs whose only reader is a BatchNorm: the pair becomes one folded Conv.
fn fold_pairs(graph: &Graph) -> Vec<Option<NodeId>> {
    let readers = graph.reader_counts();
    let mut folded_into = vec![None; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        if let (Op::BatchNorm { .. }, [src]) = (n.op, n.inputs.as_slice()) {
            if matches!(graph.nodes[*src].op, Op::Conv(_)) && readers[*src] == 1 {
                folded_into[*src] = Some(i);
            }
        }
    }
    folded_into
}

fn values(net: &Network, name: &str) -> Result<Vec<f32>> {
    let t = net.tensor(name).with_context(|| format!("model has no tensor {name}"))?;
    Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Builds the evaluation-mode ONNX model of `net` with `meta` in `metadata_props`.
pub fn to_model_proto(net: &Network, meta: &ModelMetadata) -> Result<ModelProto> {
    let graph = net.graph();
    let folded_into = fold_pairs(graph);
    // The ONNX value holding each node's output; aliases for the nodes that vanish.
    let mut value: Vec<String> = Vec::with_capacity(graph.nodes.len());
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let out_name = |id: NodeId, name: &str| if id == graph.output { OUTPUT.to_string() } else { name.to_string() };

    for (id, n) in graph.nodes.iter().enumerate() {
        let inputs: Vec<&str> = n.inputs.iter().map(|&i| value[i].as_str()).collect();
        let output = out_name(id, &n.name);
        let produced = match n.op {
            Op::Input => INPUT.to_string(),
            Op::Conv(c) => {
                let (wname, bname) = (format!("{}.weight", n.name), format!("{}.bias", n.name));
                let w = values(net, &wname)?;
                let b = if c.bias { Some(values(net, &bname)?) } else { None };
                // Folded: the conv takes over the BatchNorm's output name.
                let (w, b, output) = match folded_into[id] {
                    Some(bn) => {
                        let bn_name = &graph.nodes[bn].name;
                        let p = |s: &str| values(net, &format!("{bn_name}.{s}"));
                        let f = fold_batch_norm(&w, b.as_deref(), &p("weight")?, &p("bias")?, &p("running_mean")?, &p("running_var")?);
                        (f.weight, Some(f.bias), out_name(bn, bn_name))
                    }
                    None => (w, b, output),
                };
                inits.push(initializer(&wname, &c.weight_dims(), &w));
                let mut ins = vec![inputs[0], wname.as_str()];
                if let Some(b) = &b {
                    inits.push(initializer(&bname, &[c.out_channels], b));
                    ins.push(bname.as_str());
                }
                let k = c.kernel as i64;
                let (s, p) = (c.stride as i64, c.padding as i64);
                let attrs = vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("strides", &[s, s]),
                    attr_ints("pads", &[p, p, p, p]),
                    attr_ints("dilations", &[1, 1]),
                    attr_int("group", c.groups as i64),
                ];
                nodes.push(node("Conv", &n.name, &ins, &output, attrs));
                output
            }
            Op::BatchNorm { .. } if n.inputs.len() == 1 && folded_into[n.inputs[0]] == Some(id) => value[n.inputs[0]].clone(),
            Op::BatchNorm { channels } => {
                let names: Vec<String> =
                    ["weight", "bias", "running_mean", "running_var"].iter().map(|s| format!("{}.{s}", n.name)).collect();
                for name in &names {
                    inits.push(initializer(name, &[channels], &values(net, name)?));
                }
                let mut ins = vec![inputs[0]];
                ins.extend(names.iter().map(String::as_str));
                let eps = AttributeProto {
                    name: "epsilon".into(),
                    r#type: AttributeType::Float as i32,
                    f: cifar_models::spec::BN_EPS as f32,
                    ..Default::default()
                };
                nodes.push(node("BatchNormalization", &n.name, &ins, &output, vec![eps]));
                output
            }
            Op::Relu => {
                nodes.push(node("Relu", &n.name, &inputs, &output, vec![]));
                output
            }
            Op::MaxPool { kernel } | Op::AvgPool { kernel } => {
                let op = if matches!(n.op, Op::MaxPool { .. }) { "MaxPool" } else { "AveragePool" };
                let k = kernel as i64;
                let attrs = vec![attr_ints("kernel_shape", &[k, k]), attr_ints("strides", &[k, k])];
                nodes.push(node(op, &n.name, &inputs, &output, attrs));
                output
            }
            Op::GlobalAvgPool => {
                let pooled = format!("{}.pooled", n.name);
                nodes.push(node("GlobalAveragePool", &pooled, &inputs, &pooled, vec![]));
                nodes.push(node("Flatten", &n.name, &[pooled.as_str()], &output, vec![attr_int("axis", 1)]));
                output
            }
            // Evaluation form: dropout is the identity.
            Op::Dropout { .. } | Op::Dropout2d { .. } => inputs[0].to_string(),
            Op::Flatten => {
                // NCHW channel-major, as torch's .view(N, -1).
                nodes.push(node("Flatten", &n.name, &inputs, &output, vec![attr_int("axis", 1)]));
                output
            }
            Op::Linear { in_features, out_features, bias } => {
                let (wname, bname) = (format!("{}.weight", n.name), format!("{}.bias", n.name));
                inits.push(initializer(&wname, &[out_features, in_features], &values(net, &wname)?));
                let mut ins = vec![inputs[0], wname.as_str()];
                if bias {
                    inits.push(initializer(&bname, &[out_features], &values(net, &bname)?));
                    ins.push(bname.as_str());
                }
                nodes.push(node("Gemm", &n.name, &ins, &output, vec![attr_int("transB", 1)]));
                output
            }
            Op::Add => {
                let op = if inputs.len() == 2 { "Add" } else { "Sum" };
                nodes.push(node(op, &n.name, &inputs, &output, vec![]));
                output
            }
            Op::Concat => {
                nodes.push(node("Concat", &n.name, &inputs, &output, vec![attr_int("axis", 1)]));
                output
            }
        };
        value.push(produced);
    }
    if value[graph.output] != OUTPUT {
        bail!("the graph's output is not produced by a node the exporter can name");
    }

    let input_dims = graph.input_shape().dims();
    let output_dims = graph.output_shape().dims();
    let onnx_graph = GraphProto {
        name: graph.name.clone(),
        node: nodes,
        initializer: inits,
        input: vec![value_info(INPUT, &batched(&input_dims))],
        output: vec![value_info(OUTPUT, &batched(&output_dims))],
        doc_string: format!("{}: CIFAR-10 classifier, logits for NCHW float input normalised per channel", graph.name),
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "cifar-train".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: 1,
        graph: Some(onnx_graph),
        metadata_props: meta
            .to_props()
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
        ..Default::default()
    })
}
