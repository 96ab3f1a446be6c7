//! The layer graph: the one description of an architecture that every interpreter walks
//! (candle module, parameter/MAC counts, ONNX export).
//!
//! A graph is a list of nodes in execution order; each node names its inputs by index, so
//! residual adds and dense concatenations are plain nodes with several inputs. Shapes are
//! per image (no batch dimension) and are inferred when a node is added, so a graph that exists
//! is a graph whose shapes agree.

use serde::Serialize;
use std::fmt;

/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// PyTorch's `BatchNorm2d` defaults, which every seed model uses.
pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// Per-image shape of a node's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Shape {
    /// A feature map, channels × height × width.
    Map { c: usize, h: usize, w: usize },
    /// A feature vector.
    Flat(usize),
}

impl Shape {
    pub fn map(c: usize, h: usize, w: usize) -> Self {
        Shape::Map { c, h, w }
    }

    pub fn numel(&self) -> usize {
        match *self {
            Shape::Map { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }

    /// The dimensions without the batch axis.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Map { c, h, w } => vec![c, h, w],
            Shape::Flat(n) => vec![n],
        }
    }

    pub fn channels(&self) -> usize {
        match *self {
            Shape::Map { c, .. } => c,
            Shape::Flat(n) => n,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Map { c, h, w } => write!(f, "{c}x{h}x{w}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Conv {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
    pub bias: bool,
}

impl Conv {
    /// Inputs seen by one output value: the fan-in of PyTorch's default initialisation.
    pub fn fan_in(&self) -> usize {
        self.in_channels / self.groups * self.kernel * self.kernel
    }

    pub fn weight_dims(&self) -> [usize; 4] {
        [self.out_channels, self.in_channels / self.groups, self.kernel, self.kernel]
    }

    pub fn out_size(&self, size: usize) -> usize {
        (size + 2 * self.padding - self.kernel) / self.stride + 1
    }
}

/// One layer. Parameter-free layers carry only what their interpreters need.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Op {
    /// The image batch, NCHW.
    Input,
    Conv(Conv),
    /// `BatchNorm2d(channels)` with [`BN_EPS`] and [`BN_MOMENTUM`], affine.
    BatchNorm { channels: usize },
    Relu,
    /// Square window, stride = kernel, no padding, floor (PyTorch's `MaxPool2d(k)`).
    MaxPool { kernel: usize },
    /// Square window, stride = kernel, no padding, floor (PyTorch's `AvgPool2d(k)`).
    AvgPool { kernel: usize },
    /// `AdaptiveAvgPool2d(1)` followed by flatten: C×H×W → C.
    GlobalAvgPool,
    /// Zeroes whole channels with probability `p` in training.
    Dropout2d { p: f32 },
    /// Zeroes single values with probability `p` in training.
    Dropout { p: f32 },
    /// NCHW channel-major flatten (torch `.view(N, -1)`).
    Flatten,
    Linear { in_features: usize, out_features: usize, bias: bool },
    /// Element-wise sum of all inputs (same shape).
    Add,
    /// Channel concatenation of all inputs, in input order.
    Concat,
}

/// What a stored tensor of a layer is, so that initialisation, optimisers and exporters can
/// treat each kind as it must be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ParamKind {
    Weight,
    Bias,
    /// BatchNorm running statistics: state, not trained, never given to an optimiser.
    RunningMean,
    RunningVar,
}

impl ParamKind {
    pub fn is_trainable(self) -> bool {
        matches!(self, ParamKind::Weight | ParamKind::Bias)
    }
}

/// One tensor a layer stores, named `<node name>.<suffix>` as in PyTorch's `state_dict`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamSpec {
    pub suffix: &'static str,
    pub kind: ParamKind,
    pub dims: Vec<usize>,
}

impl ParamSpec {
    fn new(suffix: &'static str, kind: ParamKind, dims: Vec<usize>) -> Self {
        Self { suffix, kind, dims }
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

impl Op {
    /// Short type name, as torchinfo prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Conv(_) => "Conv2d",
            Op::BatchNorm { .. } => "BatchNorm2d",
            Op::Relu => "ReLU",
            Op::MaxPool { .. } => "MaxPool2d",
            Op::AvgPool { .. } => "AvgPool2d",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::Dropout2d { .. } => "Dropout2d",
            Op::Dropout { .. } => "Dropout",
            Op::Flatten => "Flatten",
            Op::Linear { .. } => "Linear",
            Op::Add => "Add",
            Op::Concat => "Concat",
        }
    }

    /// A one-line description with the layer's hyper-parameters.
    pub fn describe(&self) -> String {
        match *self {
            Op::Conv(c) => {
                let mut s = format!("Conv2d({}->{}, k={}", c.in_channels, c.out_channels, c.kernel);
                if c.stride != 1 {
                    s += &format!(", s={}", c.stride);
                }
                if c.padding != 0 {
                    s += &format!(", p={}", c.padding);
                }
                if c.groups != 1 {
                    s += &format!(", g={}", c.groups);
                }
                if !c.bias {
                    s += ", bias=False";
                }
                s + ")"
            }
            Op::BatchNorm { channels } => format!("BatchNorm2d({channels})"),
            Op::MaxPool { kernel } => format!("MaxPool2d({kernel})"),
            Op::AvgPool { kernel } => format!("AvgPool2d({kernel})"),
            Op::Dropout2d { p } => format!("Dropout2d({p})"),
            Op::Dropout { p } => format!("Dropout({p})"),
            Op::Linear { in_features, out_features, .. } => {
                format!("Linear({in_features}->{out_features})")
            }
            other => other.kind().to_string(),
        }
    }

    /// The tensors this layer stores, in `state_dict` order.
    pub fn params(&self) -> Vec<ParamSpec> {
        use ParamKind::*;
        match *self {
            Op::Conv(c) => {
                let mut v = vec![ParamSpec::new("weight", Weight, c.weight_dims().to_vec())];
                if c.bias {
                    v.push(ParamSpec::new("bias", Bias, vec![c.out_channels]));
                }
                v
            }
            Op::BatchNorm { channels } => vec![
                ParamSpec::new("weight", Weight, vec![channels]),
                ParamSpec::new("bias", Bias, vec![channels]),
                ParamSpec::new("running_mean", RunningMean, vec![channels]),
                ParamSpec::new("running_var", RunningVar, vec![channels]),
            ],
            Op::Linear { in_features, out_features, bias } => {
                let mut v = vec![ParamSpec::new("weight", Weight, vec![out_features, in_features])];
                if bias {
                    v.push(ParamSpec::new("bias", Bias, vec![out_features]));
                }
                v
            }
            _ => Vec::new(),
        }
    }

    /// Number of trainable parameters (PyTorch's `numel` over `parameters()`).
    pub fn param_count(&self) -> usize {
        self.params().iter().filter(|p| p.kind.is_trainable()).map(ParamSpec::numel).sum()
    }

    /// Output shape for the given input shapes, or why they do not fit this layer.
    pub fn output_shape(&self, inputs: &[Shape]) -> Result<Shape, String> {
        let one = || -> Result<Shape, String> {
            match inputs {
                [s] => Ok(*s),
                _ => Err(format!("{} takes one input, got {}", self.kind(), inputs.len())),
            }
        };
        let map = || -> Result<(usize, usize, usize), String> {
            match one()? {
                Shape::Map { c, h, w } => Ok((c, h, w)),
                s => Err(format!("{} needs a feature map, got {s}", self.kind())),
            }
        };
        match *self {
            Op::Input => Err("Input has no inputs".into()),
            Op::Conv(conv) => {
                let (c, h, w) = map()?;
                if c != conv.in_channels {
                    return Err(format!("conv expects {} channels, got {c}", conv.in_channels));
                }
                if conv.groups == 0
                    || conv.in_channels % conv.groups != 0
                    || conv.out_channels % conv.groups != 0
                {
                    return Err(format!(
                        "{} -> {} channels do not split into {} groups",
                        conv.in_channels, conv.out_channels, conv.groups
                    ));
                }
                if conv.stride == 0 || h + 2 * conv.padding < conv.kernel || w + 2 * conv.padding < conv.kernel {
                    return Err(format!("kernel {} does not fit {h}x{w}", conv.kernel));
                }
                Ok(Shape::map(conv.out_channels, conv.out_size(h), conv.out_size(w)))
            }
            Op::BatchNorm { channels } => {
                let (c, h, w) = map()?;
                if c != channels {
                    return Err(format!("BatchNorm2d({channels}) got {c} channels"));
                }
                Ok(Shape::map(c, h, w))
            }
            Op::Relu | Op::Dropout { .. } => one(),
            Op::Dropout2d { .. } => map().map(|(c, h, w)| Shape::map(c, h, w)),
            Op::MaxPool { kernel } | Op::AvgPool { kernel } => {
                let (c, h, w) = map()?;
                if kernel == 0 || h < kernel || w < kernel {
                    return Err(format!("pool {kernel} does not fit {h}x{w}"));
                }
                Ok(Shape::map(c, h / kernel, w / kernel))
            }
            Op::GlobalAvgPool => map().map(|(c, _, _)| Shape::Flat(c)),
            Op::Flatten => one().map(|s| Shape::Flat(s.numel())),
            Op::Linear { in_features, out_features, .. } => match one()? {
                Shape::Flat(n) if n == in_features => Ok(Shape::Flat(out_features)),
                s => Err(format!("Linear expects {in_features} features, got {s}")),
            },
            Op::Add => {
                let first = *inputs.first().ok_or("Add needs inputs")?;
                if let Some(s) = inputs.iter().find(|s| **s != first) {
                    return Err(format!("Add of different shapes {first} and {s}"));
                }
                Ok(first)
            }
            Op::Concat => {
                let mut channels = 0;
                let mut size = None;
                for s in inputs {
                    let Shape::Map { c, h, w } = *s else {
                        return Err(format!("Concat needs feature maps, got {s}"));
                    };
                    if size.is_some_and(|hw| hw != (h, w)) {
                        return Err("Concat of different spatial sizes".into());
                    }
                    size = Some((h, w));
                    channels += c;
                }
                let (h, w) = size.ok_or("Concat needs inputs")?;
                Ok(Shape::map(channels, h, w))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// Path of the layer, e.g. `vanillachunks.0.blocks.1.conv2.conv`; its tensors are named
    /// `<name>.weight`, `<name>.bias`, ….
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Per-image output shape.
    pub shape: Shape,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Graph {
    /// Registry name, e.g. `resnet-light`.
    pub name: String,
    /// Nodes in execution order; node 0 is the input.
    pub nodes: Vec<Node>,
    pub output: NodeId,
}

/// A tensor of the model, with the node that owns it.
#[derive(Clone, Debug)]
pub struct NamedParam<'a> {
    pub name: String,
    pub node: &'a Node,
    pub spec: ParamSpec,
}

impl Graph {
    pub fn input_shape(&self) -> Shape {
        self.nodes[0].shape
    }

    pub fn output_shape(&self) -> Shape {
        self.nodes[self.output].shape
    }

    /// Every stored tensor (trainable and running statistics), in execution order.
    pub fn named_params(&self) -> Vec<NamedParam<'_>> {
        self.nodes
            .iter()
            .flat_map(|node| {
                node.op.params().into_iter().map(move |spec| NamedParam {
                    name: format!("{}.{}", node.name, spec.suffix),
                    node,
                    spec,
                })
            })
            .collect()
    }

    /// Number of trainable parameters.
    pub fn param_count(&self) -> usize {
        self.nodes.iter().map(|n| n.op.param_count()).sum()
    }

    /// For each node, how many later nodes read it (the output counts as one reader), so that
    /// interpreters can free intermediate results as soon as they are no longer needed.
    pub fn reader_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes.len()];
        for node in &self.nodes {
            for &i in &node.inputs {
                counts[i] += 1;
            }
        }
        counts[self.output] += 1;
        counts
    }
}

/// Why a graph could not be built: a constructor was given parameters that do not fit together.
#[derive(Debug, thiserror::Error)]
#[error("layer `{node}`: {reason}")]
pub struct GraphError {
    pub node: String,
    pub reason: String,
}

/// Builds a [`Graph`] node by node, inferring shapes; names are prefixed by the current scope.
pub struct GraphBuilder {
    name: String,
    nodes: Vec<Node>,
    scope: Vec<String>,
}

impl GraphBuilder {
    /// A builder whose node 0 is an input of the given per-image shape.
    pub fn new(name: impl Into<String>, input: Shape) -> (Self, NodeId) {
        let input = Node { name: "input".into(), op: Op::Input, inputs: vec![], shape: input };
        (Self { name: name.into(), nodes: vec![input], scope: vec![] }, 0)
    }

    pub fn shape(&self, id: NodeId) -> Shape {
        self.nodes[id].shape
    }

    /// Runs `f` with `part` appended to the name scope.
    pub fn scoped<T>(&mut self, part: impl fmt::Display, f: impl FnOnce(&mut Self) -> T) -> T {
        self.scope.push(part.to_string());
        let out = f(self);
        self.scope.pop();
        out
    }

    fn full_name(&self, name: &str) -> String {
        let mut parts: Vec<&str> = self.scope.iter().map(String::as_str).collect();
        if !name.is_empty() {
            parts.push(name);
        }
        parts.join(".")
    }

    /// Adds a node named `name` within the current scope.
    pub fn push(&mut self, name: &str, op: Op, inputs: &[NodeId]) -> Result<NodeId, GraphError> {
        let name = self.full_name(name);
        let shapes: Vec<Shape> = inputs.iter().map(|&i| self.nodes[i].shape).collect();
        let shape = op.output_shape(&shapes).map_err(|reason| GraphError { node: name.clone(), reason })?;
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(GraphError { node: name, reason: "duplicate layer name".into() });
        }
        self.nodes.push(Node { name, op, inputs: inputs.to_vec(), shape });
        Ok(self.nodes.len() - 1)
    }

    /// `Conv2d(cin, cout, k, stride, padding=k//2, groups, bias=True)`, the only conv the seed uses.
    pub fn conv(
        &mut self,
        name: &str,
        x: NodeId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
    ) -> Result<NodeId, GraphError> {
        let conv = Conv {
            in_channels: self.shape(x).channels(),
            out_channels,
            kernel,
            stride,
            padding: kernel / 2,
            groups,
            bias: true,
        };
        self.push(name, Op::Conv(conv), &[x])
    }

    pub fn batch_norm(&mut self, name: &str, x: NodeId) -> Result<NodeId, GraphError> {
        let channels = self.shape(x).channels();
        self.push(name, Op::BatchNorm { channels }, &[x])
    }

    pub fn relu(&mut self, name: &str, x: NodeId) -> Result<NodeId, GraphError> {
        self.push(name, Op::Relu, &[x])
    }

    pub fn linear(&mut self, name: &str, x: NodeId, out_features: usize) -> Result<NodeId, GraphError> {
        let in_features = self.shape(x).numel();
        self.push(name, Op::Linear { in_features, out_features, bias: true }, &[x])
    }

    /// The seed's `conv → BN` pair, as modules named `<name>.conv` and `<name>.bn`.
    pub fn conv_bn(
        &mut self,
        name: &str,
        x: NodeId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
    ) -> Result<NodeId, GraphError> {
        self.scoped(name, |b| {
            let y = b.conv("conv", x, out_channels, kernel, stride, 1)?;
            b.batch_norm("bn", y)
        })
    }

    /// `conv → BN → ReLU`, the seed's post-activation unit.
    pub fn conv_bn_relu(
        &mut self,
        name: &str,
        x: NodeId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
    ) -> Result<NodeId, GraphError> {
        let y = self.conv_bn(name, x, out_channels, kernel, stride)?;
        self.scoped(name, |b| b.relu("relu", y))
    }

    pub fn finish(self, output: NodeId) -> Graph {
        Graph { name: self.name, nodes: self.nodes, output }
    }
}
