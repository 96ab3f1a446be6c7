//! The layer graph as an ONNX `ModelProto` (opset 17).

use super::fold::fold_batch_norm;
use candle_onnx::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use cifar_models::spec::{Graph, NodeId, Op, BN_EPS};
use cifar_models::{FusionPlan, Step};
use crate::recipe::Tta;

pub const OPSET: i64 = 17;
/// ONNX IR version 8 is the one that goes with opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;
pub use cifar_models::metadata::{INPUT_NAME as INPUT, OUTPUT_NAME as OUTPUT};
/// Name of the symbolic batch dimension.
const BATCH: &str = "batch";

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: ints.to_vec(), ..Default::default() }
}

pub(crate) fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

pub(crate) fn node(op: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn int_initializer(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub(crate) fn initializer(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
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

/// Why a network cannot be written as an ONNX graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("the model has no tensor {0}")]
    MissingTensor(String),
    #[error("reading tensor {name}")]
    Tensor { name: String, source: candle_core::Error },
    /// The graph itself does not fit the exporter (a bug in a constructor or in the plan).
    #[error("{0}")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, GraphError>;

fn unsupported<T>(what: impl Into<String>) -> Result<T> {
    Err(GraphError::Unsupported(what.into()))
}

fn values(net: &Network, name: &str) -> Result<Vec<f32>> {
    let t = net.tensor(name).ok_or_else(|| GraphError::MissingTensor(name.to_string()))?;
    let read = || t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>();
    read().map_err(|source| GraphError::Tensor { name: name.to_string(), source })
}

/// The ONNX graph under construction: nodes, initializers, and the ONNX value that holds each
/// graph node's output.
struct Builder<'a> {
    net: &'a Network,
    graph: &'a Graph,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    value: Vec<Option<String>>,
    /// The ONNX name of the network's logits (`logits`, or the per-view logits under TTA).
    output: String,
}

impl<'a> Builder<'a> {
    /// A builder whose network reads `input` and writes `output`.
    fn new(net: &'a Network, input: &str, output: &str) -> Self {
        let graph = net.graph();
        let mut value = vec![None; graph.nodes.len()];
        value[0] = Some(input.to_string());
        Self { net, graph, nodes: Vec::new(), inits: Vec::new(), value, output: output.to_string() }
    }

    /// The ONNX name of node `id`'s output.
    fn out_name(&self, id: NodeId) -> String {
        if id == self.graph.output { self.output.clone() } else { self.graph.nodes[id].name.clone() }
    }

    fn input_names(&self, id: NodeId) -> Result<Vec<String>> {
        self.graph.nodes[id]
            .inputs
            .iter()
            .map(|&i| self.value[i].clone().ok_or_else(|| GraphError::Unsupported(format!("node {id} reads node {i} before it is exported"))))
            .collect()
    }

    /// Emits an ONNX node for graph node `id` and records its output.
    fn emit(&mut self, id: NodeId, op: &str, inputs: &[String], attrs: Vec<AttributeProto>) {
        let output = self.out_name(id);
        let ins: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.nodes.push(node(op, &self.graph.nodes[id].name, &ins, &output, attrs));
        self.value[id] = Some(output);
    }

    /// A float initializer named `name` with `dims`; returns its name.
    fn init(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.inits.push(initializer(name, dims, data));
        name.to_string()
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match *step {
            Step::Node(id) => self.plain(id),
            Step::ConvBn { conv, bn, relu } => {
                self.conv(conv, Some(bn))?;
                relu.map_or(Ok(()), |r| self.relu(r, bn))
            }
            Step::BnRelu { bn, relu } => {
                self.batch_norm(bn)?;
                self.relu(relu, bn)
            }
            Step::AddRelu { add, relu } => {
                self.plain(add)?;
                self.relu(relu, add)
            }
        }
    }

    fn relu(&mut self, id: NodeId, src: NodeId) -> Result<()> {
        let Some(input) = self.value[src].clone() else { return unsupported("ReLU input not exported") };
        self.emit(id, "Relu", &[input], vec![]);
        Ok(())
    }

    /// A conv; with `fold`, the batch norm it alone feeds folded into its weights (the conv
    /// then produces the batch norm's output).
    fn conv(&mut self, id: NodeId, fold: Option<NodeId>) -> Result<()> {
        let Op::Conv(c) = self.graph.nodes[id].op else { return unsupported(format!("node {id} is not a conv")) };
        let name = self.graph.nodes[id].name.clone();
        let w = values(self.net, &format!("{name}.weight"))?;
        let b = if c.bias { Some(values(self.net, &format!("{name}.bias"))?) } else { None };
        let (w, b) = match fold {
            Some(bn) => {
                let bn_name = &self.graph.nodes[bn].name;
                let p = |s: &str| values(self.net, &format!("{bn_name}.{s}"));
                let f = fold_batch_norm(&w, b.as_deref(), &p("weight")?, &p("bias")?, &p("running_mean")?, &p("running_var")?);
                (f.weight, Some(f.bias))
            }
            None => (w, b),
        };
        let mut ins = self.input_names(id)?;
        ins.push(self.init(&format!("{name}.weight"), &c.weight_dims(), &w));
        if let Some(b) = &b {
            ins.push(self.init(&format!("{name}.bias"), &[c.out_channels], b));
        }
        let (k, s, p) = (c.kernel as i64, c.stride as i64, c.padding as i64);
        let attrs = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", c.groups as i64),
        ];
        let out = fold.unwrap_or(id);
        let output = self.out_name(out);
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        self.nodes.push(node("Conv", &name, &ins, &output, attrs));
        self.value[out] = Some(output);
        Ok(())
    }

    fn batch_norm(&mut self, id: NodeId) -> Result<()> {
        let Op::BatchNorm { channels } = self.graph.nodes[id].op else { return unsupported(format!("node {id} is not a batch norm")) };
        let name = self.graph.nodes[id].name.clone();
        let mut ins = self.input_names(id)?;
        for part in ["weight", "bias", "running_mean", "running_var"] {
            let tensor = format!("{name}.{part}");
            let data = values(self.net, &tensor)?;
            ins.push(self.init(&tensor, &[channels], &data));
        }
        let eps = AttributeProto { name: "epsilon".into(), r#type: AttributeType::Float as i32, f: BN_EPS as f32, ..Default::default() };
        self.emit(id, "BatchNormalization", &ins, vec![eps]);
        Ok(())
    }

    fn linear(&mut self, id: NodeId, in_features: usize, out_features: usize, bias: bool) -> Result<()> {
        let name = self.graph.nodes[id].name.clone();
        let mut ins = self.input_names(id)?;
        let w = values(self.net, &format!("{name}.weight"))?;
        ins.push(self.init(&format!("{name}.weight"), &[out_features, in_features], &w));
        if bias {
            let b = values(self.net, &format!("{name}.bias"))?;
            ins.push(self.init(&format!("{name}.bias"), &[out_features], &b));
        }
        self.emit(id, "Gemm", &ins, vec![attr_int("transB", 1)]);
        Ok(())
    }

    /// A node outside any fusion, in evaluation form.
    fn plain(&mut self, id: NodeId) -> Result<()> {
        let ins = self.input_names(id)?;
        match self.graph.nodes[id].op {
            Op::Input => return unsupported("the input is not a step"),
            Op::Conv(_) => self.conv(id, None)?,
            Op::BatchNorm { .. } => self.batch_norm(id)?,
            Op::Relu => self.emit(id, "Relu", &ins, vec![]),
            Op::MaxPool { kernel } | Op::AvgPool { kernel } => {
                let op = if matches!(self.graph.nodes[id].op, Op::MaxPool { .. }) { "MaxPool" } else { "AveragePool" };
                let k = kernel as i64;
                self.emit(id, op, &ins, vec![attr_ints("kernel_shape", &[k, k]), attr_ints("strides", &[k, k])]);
            }
            Op::GlobalAvgPool => {
                let pooled = format!("{}.pooled", self.graph.nodes[id].name);
                self.nodes.push(node("GlobalAveragePool", &pooled, &[ins[0].as_str()], &pooled, vec![]));
                self.emit(id, "Flatten", &[pooled], vec![attr_int("axis", 1)]);
            }
            // Evaluation form: dropout is the identity.
            Op::Dropout { .. } | Op::Dropout2d { .. } => self.value[id] = Some(ins[0].clone()),
            // NCHW channel-major, as torch's .view(N, -1).
            Op::Flatten => self.emit(id, "Flatten", &ins, vec![attr_int("axis", 1)]),
            Op::Linear { in_features, out_features, bias } => self.linear(id, in_features, out_features, bias)?,
            Op::Add => self.emit(id, if ins.len() == 2 { "Add" } else { "Sum" }, &ins, vec![]),
            Op::Concat => self.emit(id, "Concat", &ins, vec![attr_int("axis", 1)]),
        }
        Ok(())
    }
}

/// The test-time views of the input stacked along the batch (`tta::views`' order), and the
/// mean of their logits: nodes before and after the network.
impl Builder<'_> {
    const VIEWS: &'static str = "tta.views";
    const VIEW_LOGITS: &'static str = "tta.logits";

    fn slice(&mut self, name: &str, input: &str, axes: &[i64], starts: &[i64], ends: &[i64], steps: &[i64]) -> String {
        let mut ins = vec![input.to_string()];
        for (part, v) in [("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps)] {
            let init = format!("{name}.{part}");
            self.inits.push(int_initializer(&init, v));
            ins.push(init);
        }
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        self.nodes.push(node("Slice", name, &ins, name, vec![]));
        name.to_string()
    }

    fn flip(&mut self, name: &str, input: &str) -> String {
        self.slice(name, input, &[3], &[-1], &[i64::MIN], &[-1])
    }

    /// One pixel down and right, the first row and column repeated (`tta::translate`).
    fn translate(&mut self, name: &str, input: &str, side: i64) -> String {
        let pads = format!("{name}.pads");
        self.inits.push(int_initializer(&pads, &[0, 0, 1, 1, 0, 0, 0, 0]));
        let padded = format!("{name}.padded");
        let edge = AttributeProto { name: "mode".into(), r#type: AttributeType::String as i32, s: b"edge".to_vec(), ..Default::default() };
        self.nodes.push(node("Pad", &padded, &[input, &pads], &padded, vec![edge]));
        self.slice(name, &padded, &[2, 3], &[0, 0], &[side, side], &[1, 1])
    }

    fn tta_views(&mut self, tta: Tta, side: i64) {
        let mut views = vec![INPUT.to_string(), self.flip("tta.flip", INPUT)];
        if tta == Tta::FlipTranslate {
            let shifted = self.translate("tta.shift", INPUT, side);
            views.push(self.flip("tta.shift_flip", &shifted));
            views.push(shifted);
        }
        let ins: Vec<&str> = views.iter().map(String::as_str).collect();
        self.nodes.push(node("Concat", Self::VIEWS, &ins, Self::VIEWS, vec![attr_int("axis", 0)]));
    }

    fn tta_mean(&mut self, tta: Tta, classes: usize) {
        let shape = "tta.shape";
        self.inits.push(int_initializer(shape, &[tta.views() as i64, -1, classes as i64]));
        let stacked = "tta.stacked";
        self.nodes.push(node("Reshape", stacked, &[Self::VIEW_LOGITS, shape], stacked, vec![]));
        let mean_attrs = vec![attr_ints("axes", &[0]), attr_int("keepdims", 0)];
        self.nodes.push(node("ReduceMean", "tta.mean", &[stacked], OUTPUT, mean_attrs));
    }
}

/// Builds the evaluation-mode ONNX model of `net` with `meta` in `metadata_props`, walking the
/// same [`FusionPlan`] the candle interpreter runs (a conv + batch norm step becomes one folded
/// Conv). With `tta`, the graph runs the network on the test-time views of its input and
/// returns the mean of their logits, as `tta::logits` does.
pub fn to_model_proto(net: &Network, meta: &ModelMetadata, tta: Tta) -> Result<ModelProto> {
    let graph = net.graph();
    let averaged = tta != Tta::None;
    let (input, output) = if averaged { (Builder::VIEWS, Builder::VIEW_LOGITS) } else { (INPUT, OUTPUT) };
    let mut b = Builder::new(net, input, output);
    if averaged {
        b.tta_views(tta, graph.input_shape().dims()[2] as i64);
    }
    for step in &FusionPlan::new(graph).steps {
        b.step(step)?;
    }
    if b.value[graph.output].as_deref() != Some(output) {
        return unsupported("the graph's output is not produced by a node the exporter can name");
    }
    if averaged {
        b.tta_mean(tta, graph.output_shape().dims()[0]);
    }
    let onnx_graph = GraphProto {
        name: graph.name.clone(),
        node: b.nodes,
        initializer: b.inits,
        input: vec![value_info(INPUT, &batched(&graph.input_shape().dims()))],
        output: vec![value_info(OUTPUT, &batched(&graph.output_shape().dims()))],
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
        metadata_props: meta.to_props().into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect(),
        ..Default::default()
    })
}
