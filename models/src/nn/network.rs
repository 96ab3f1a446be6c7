//! The layer graph as a trainable candle module.

use super::batch_norm::BatchNorm;
use super::dropout::{DropoutRng, DropoutState};
use super::{activation, conv, conv_bn, init, linear, pool};
use crate::spec::{Graph, Op, ParamKind};
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::ModuleT;
use std::collections::HashMap;

/// The tensors one node owns.
enum Layer {
    None,
    Affine { weight: Var, bias: Option<Var> },
    BatchNorm(BatchNorm),
}

/// A model built from its [`Graph`]: parameters named by path (`chunks.1.block1.conv1.weight`),
/// train/eval behaviour through [`ModuleT::forward_t`].
pub struct Network {
    graph: Graph,
    layers: Vec<Layer>,
    /// Every stored tensor by name, in graph order, with its kind.
    tensors: Vec<(String, ParamKind, Var)>,
    readers: Vec<usize>,
    /// Batch norms and residual sums whose only reader is a ReLU compute it themselves (one
    /// pass and one autograd node less); that ReLU node then passes its input through.
    fused_relu: Vec<bool>,
    relu_done: Vec<bool>,
    /// In training on CPU, a conv whose only reader is a batch norm passes its input on, and
    /// that batch norm runs both layers as one op (`bn_conv[bn] = conv node`).
    conv_deferred: Vec<bool>,
    bn_conv: Vec<Option<usize>>,
    dropout: DropoutRng,
    device: Device,
    dtype: DType,
    /// The dtype activations and weights are computed in; `dtype` (the master copy the
    /// optimiser updates) unless mixed precision is on.
    compute: DType,
}

impl Network {
    /// A network with PyTorch-default initial weights drawn from `seed`; dropout masks are
    /// drawn from a stream derived from the same seed.
    pub fn new(graph: Graph, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        let mut values: HashMap<String, Var> = HashMap::new();
        let mut tensors = Vec::new();
        let specs = graph.named_params();
        for ((name, dims, data), p) in init::initial_values(&graph, seed).into_iter().zip(&specs) {
            let t = Tensor::from_vec(data, dims, &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?;
            let var = Var::from_tensor(&t)?;
            values.insert(name.clone(), var.clone());
            tensors.push((name, p.spec.kind, var));
        }
        let get = |node: &str, suffix: &str| values.get(&format!("{node}.{suffix}")).cloned();
        let layers = graph
            .nodes
            .iter()
            .map(|node| match node.op {
                Op::Conv(_) | Op::Linear { .. } => Layer::Affine {
                    weight: get(&node.name, "weight").expect("affine layers have weights"),
                    bias: get(&node.name, "bias"),
                },
                Op::BatchNorm { .. } => Layer::BatchNorm(BatchNorm {
                    weight: get(&node.name, "weight").expect("BN weight"),
                    bias: get(&node.name, "bias").expect("BN bias"),
                    running_mean: get(&node.name, "running_mean").expect("BN running mean"),
                    running_var: get(&node.name, "running_var").expect("BN running var"),
                }),
                _ => Layer::None,
            })
            .collect();
        let readers = graph.reader_counts();
        let mut fused_relu = vec![false; graph.nodes.len()];
        let mut relu_done = vec![false; graph.nodes.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            if let (Op::Relu, [src]) = (&node.op, node.inputs.as_slice()) {
                let fusable = match graph.nodes[*src].op {
                    Op::BatchNorm { .. } => true,
                    Op::Add => graph.nodes[*src].inputs.len() == 2,
                    _ => false,
                };
                if fusable && readers[*src] == 1 {
                    fused_relu[*src] = true;
                    relu_done[i] = true;
                }
            }
        }
        let mut conv_deferred = vec![false; graph.nodes.len()];
        let mut bn_conv = vec![None; graph.nodes.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            if let (Op::BatchNorm { .. }, [src]) = (&node.op, node.inputs.as_slice()) {
                if matches!(graph.nodes[*src].op, Op::Conv(_)) && readers[*src] == 1 {
                    conv_deferred[*src] = true;
                    bn_conv[i] = Some(*src);
                }
            }
        }
        // A separate stream from the one that drew the weights.
        let dropout = DropoutRng::new(seed ^ 0xD50F_0A7C_0000_0001);
        Ok(Self { graph, layers, tensors, readers, fused_relu, relu_done, conv_deferred, bn_conv, dropout, device: device.clone(), dtype, compute: dtype })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Mixed precision: convs, linears and everything between them run in `compute` (e.g.
    /// bf16) on casts of the master weights, whose gradients come back in `dtype`; batch norms
    /// and the logits stay in `dtype`, as PyTorch's autocast keeps them in f32.
    pub fn set_compute_dtype(&mut self, compute: DType) -> Result<()> {
        if !compute.is_float() {
            candle_core::bail!("compute dtype must be a float type, got {compute:?}");
        }
        self.compute = compute;
        Ok(())
    }

    pub fn compute_dtype(&self) -> DType {
        self.compute
    }

    fn mixed(&self) -> bool {
        self.compute != self.dtype
    }

    /// `t` in the compute dtype (a cast with a gradient path back to the master copy).
    fn compute(&self, t: &Tensor) -> Result<Tensor> {
        if self.mixed() { t.to_dtype(self.compute) } else { Ok(t.clone()) }
    }

    /// The parameters an optimiser may update: weights and biases, never running statistics.
    pub fn trainable_vars(&self) -> Vec<Var> {
        self.named_trainable().into_iter().map(|(_, v)| v).collect()
    }

    pub fn named_trainable(&self) -> Vec<(String, Var)> {
        self.tensors.iter().filter(|(_, k, _)| k.is_trainable()).map(|(n, _, v)| (n.clone(), v.clone())).collect()
    }

    /// Every stored tensor by name (parameters and running statistics), in graph order:
    /// what a checkpoint holds.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.tensors.iter().map(|(n, _, v)| (n.clone(), v.as_tensor().clone())).collect()
    }

    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        self.tensors.iter().find(|(n, _, _)| n == name).map(|(_, _, v)| v.as_tensor().clone())
    }

    /// Replaces every stored tensor from `values`, which must hold exactly this model's names
    /// and shapes.
    pub fn load(&self, values: &HashMap<String, Tensor>) -> Result<()> {
        let missing: Vec<&str> =
            self.tensors.iter().map(|(n, _, _)| n.as_str()).filter(|n| !values.contains_key(*n)).collect();
        if !missing.is_empty() {
            candle_core::bail!(
                "checkpoint does not fit model `{}`: {} tensors missing (first: {})",
                self.graph.name,
                missing.len(),
                missing[0]
            );
        }
        if let Some(extra) = values.keys().find(|k| self.tensors.iter().all(|(n, _, _)| n != *k)) {
            candle_core::bail!("checkpoint does not fit model `{}`: unexpected tensor {extra}", self.graph.name);
        }
        for (name, _, var) in &self.tensors {
            let v = &values[name];
            if v.dims() != var.dims() {
                candle_core::bail!("checkpoint tensor {name} has shape {:?}, model expects {:?}", v.dims(), var.dims());
            }
            // A copy: `Var::set` refuses a tensor that shares the variable's own storage.
            var.set(&v.to_dtype(self.dtype)?.to_device(&self.device)?.copy()?)?;
        }
        Ok(())
    }

    pub fn dropout_state(&self) -> DropoutState {
        self.dropout.state()
    }

    pub fn restore_dropout_state(&mut self, state: DropoutState) {
        self.dropout.restore(state)
    }
}

impl ModuleT for Network {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let want = self.graph.input_shape().dims();
        if x.rank() != want.len() + 1 || x.dims()[1..] != want[..] {
            candle_core::bail!("model `{}` expects input [N, {want:?}], got {:?}", self.graph.name, x.dims());
        }
        let mut values: Vec<Option<Tensor>> = vec![None; self.graph.nodes.len()];
        let mut pending = self.readers.clone();
        values[0] = Some(self.compute(x)?);
        for (i, node) in self.graph.nodes.iter().enumerate().skip(1) {
            let inputs: Vec<Tensor> = node
                .inputs
                .iter()
                .map(|&j| {
                    pending[j] -= 1;
                    // Release an intermediate as soon as its last reader has it.
                    if pending[j] == 0 { values[j].take() } else { values[j].clone() }
                        .expect("graph nodes come in execution order")
                })
                .collect();
            let x = &inputs[0];
            let fuse_conv = train && conv_bn::fusable(x);
            let y = match (&node.op, &self.layers[i]) {
                (Op::Conv(_), _) if fuse_conv && self.conv_deferred[i] => x.clone(),
                (Op::BatchNorm { .. }, Layer::BatchNorm(bn)) if fuse_conv && self.bn_conv[i].is_some() => {
                    let ci = self.bn_conv[i].expect("checked");
                    let (Op::Conv(c), Layer::Affine { weight, bias }) = (&self.graph.nodes[ci].op, &self.layers[ci]) else {
                        candle_core::bail!("node {} is not a conv", self.graph.nodes[ci].name);
                    };
                    conv_bn::conv_batch_norm(x, weight.as_tensor(), bias.as_ref().map(Var::as_tensor), c, bn, self.fused_relu[i])?
                }
                (Op::Conv(c), Layer::Affine { weight, bias }) => {
                    let bias = bias.as_ref().map(|b| self.compute(b.as_tensor())).transpose()?;
                    conv::conv2d(x, &self.compute(weight.as_tensor())?, bias.as_ref(), c)?
                }
                (Op::Linear { .. }, Layer::Affine { weight, bias }) => {
                    let bias = bias.as_ref().map(|b| self.compute(b.as_tensor())).transpose()?;
                    linear::linear(x, &self.compute(weight.as_tensor())?, bias.as_ref())?
                }
                (Op::BatchNorm { .. }, Layer::BatchNorm(bn)) if self.mixed() => {
                    self.compute(&bn.forward_t_act(&x.to_dtype(self.dtype)?, train, self.fused_relu[i])?)?
                }
                (Op::BatchNorm { .. }, Layer::BatchNorm(bn)) => bn.forward_t_act(x, train, self.fused_relu[i])?,
                (Op::Relu, _) if self.relu_done[i] => x.clone(),
                (Op::Relu, _) => activation::relu(x)?,
                (Op::MaxPool { kernel }, _) => pool::max_pool2d(x, *kernel)?,
                (Op::AvgPool { kernel }, _) => pool::avg_pool2d(x, *kernel)?,
                (Op::GlobalAvgPool, _) => pool::global_avg_pool(x)?,
                (Op::Dropout2d { p }, _) if train => self.dropout.dropout2d(x, *p)?,
                (Op::Dropout { p }, _) if train => self.dropout.dropout(x, *p)?,
                (Op::Dropout2d { .. } | Op::Dropout { .. }, _) => x.clone(),
                (Op::Flatten, _) => x.flatten_from(1)?,
                (Op::Add, _) if self.fused_relu[i] => activation::add_relu(&inputs[0], &inputs[1])?,
                (Op::Add, _) => {
                    let mut acc = x.clone();
                    for t in &inputs[1..] {
                        acc = (acc + t)?;
                    }
                    acc
                }
                (Op::Concat, _) => Tensor::cat(&inputs, 1)?,
                (op, _) => candle_core::bail!("node {} ({op:?}) has no interpreter", node.name),
            };
            values[i] = Some(y);
        }
        let logits = values[self.graph.output].take().expect("output computed");
        if self.mixed() { logits.to_dtype(self.dtype) } else { Ok(logits) }
    }
}
