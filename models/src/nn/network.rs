//! The layer graph as a trainable candle module.

use super::batch_norm::BatchNorm;
use super::dropout::{DropoutRng, DropoutState};
use super::kernels::Kernels;
use super::{activation, conv, conv_bn, init, linear, pool};
use crate::plan::{FusionPlan, Step};
use crate::spec::{Graph, Node, Op, ParamKind};
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
/// train/eval behaviour through [`ModuleT::forward_t`], run step by step along the graph's
/// [`FusionPlan`].
pub struct Network {
    graph: Graph,
    plan: FusionPlan,
    layers: Vec<Layer>,
    /// Every stored tensor by name, in graph order, with its kind.
    tensors: Vec<(String, ParamKind, Var)>,
    readers: Vec<usize>,
    kernels: Kernels,
    dropout: DropoutRng,
    device: Device,
    dtype: DType,
    /// The dtype activations and weights are computed in; `dtype` (the master copy the
    /// optimiser updates) unless mixed precision is on.
    compute: DType,
}

impl Network {
    /// A network with PyTorch-default initial weights drawn from `seed`; dropout masks are
    /// drawn from a stream derived from the same seed. It runs the fast CPU ops where they
    /// apply ([`Kernels::Fast`]).
    pub fn new(graph: Graph, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        Self::with_kernels(graph, seed, dtype, device, Kernels::Fast)
    }

    /// [`Self::new`] with the choice of building-block implementations: [`Kernels::Portable`]
    /// runs candle's generic ops (the CUDA path) on any device.
    pub fn with_kernels(graph: Graph, seed: u64, dtype: DType, device: &Device, kernels: Kernels) -> Result<Self> {
        let mut values: HashMap<String, Var> = HashMap::new();
        let mut tensors = Vec::new();
        let specs = graph.named_params();
        for ((name, dims, data), p) in init::initial_values(&graph, seed).into_iter().zip(&specs) {
            let t = Tensor::from_vec(data, dims, &Device::Cpu)?.to_dtype(dtype)?.to_device(device)?;
            let var = Var::from_tensor(&t)?;
            values.insert(name.clone(), var.clone());
            tensors.push((name, p.spec.kind, var));
        }
        let layers = graph.nodes.iter().map(|node| layer_of(node, &values)).collect();
        let readers = graph.reader_counts();
        let plan = FusionPlan::new(&graph);
        // A separate stream from the one that drew the weights.
        let dropout = DropoutRng::new(seed ^ 0xD50F_0A7C_0000_0001);
        Ok(Self { graph, plan, layers, tensors, readers, kernels, dropout, device: device.clone(), dtype, compute: dtype })
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
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

/// The tensors of `node`, looked up by path.
fn layer_of(node: &Node, values: &HashMap<String, Var>) -> Layer {
    let get = |suffix: &str| values.get(&format!("{}.{suffix}", node.name)).cloned();
    match node.op {
        Op::Conv(_) | Op::Linear { .. } => Layer::Affine { weight: get("weight").expect("affine layers have weights"), bias: get("bias") },
        Op::BatchNorm { .. } => Layer::BatchNorm(BatchNorm {
            weight: get("weight").expect("BN weight"),
            bias: get("bias").expect("BN bias"),
            running_mean: get("running_mean").expect("BN running mean"),
            running_var: get("running_var").expect("BN running var"),
        }),
        _ => Layer::None,
    }
}

impl Network {
    /// One step of the plan on its inputs.
    fn run_step(&self, step: &Step, inputs: &[Tensor], train: bool) -> Result<Tensor> {
        let x = &inputs[0];
        match *step {
            Step::Node(i) => self.run_node(i, inputs, train),
            Step::ConvBn { conv, bn, relu } if train && self.kernels.fast_for(x) => {
                let (Op::Conv(c), Layer::Affine { weight, bias }) = (&self.graph.nodes[conv].op, &self.layers[conv]) else {
                    candle_core::bail!("node {} is not a conv", self.graph.nodes[conv].name);
                };
                conv_bn::conv_batch_norm(x, weight.as_tensor(), bias.as_ref().map(Var::as_tensor), c, self.batch_norm(bn)?, relu.is_some())
            }
            Step::ConvBn { conv, bn, relu } => {
                let z = self.run_node(conv, inputs, train)?;
                self.run_batch_norm(bn, &z, train, relu.is_some())
            }
            Step::BnRelu { bn, .. } => self.run_batch_norm(bn, x, train, true),
            Step::AddRelu { .. } => activation::add_relu(&inputs[0], &inputs[1], self.kernels),
        }
    }

    fn batch_norm(&self, i: usize) -> Result<&BatchNorm> {
        match &self.layers[i] {
            Layer::BatchNorm(bn) => Ok(bn),
            _ => candle_core::bail!("node {} is not a batch norm", self.graph.nodes[i].name),
        }
    }

    /// A batch norm (then a ReLU when `relu`), in the master dtype under mixed precision as
    /// autocast keeps it.
    fn run_batch_norm(&self, i: usize, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let bn = self.batch_norm(i)?;
        if self.mixed() {
            return self.compute(&bn.forward_t_act(&x.to_dtype(self.dtype)?, train, relu, self.kernels)?);
        }
        bn.forward_t_act(x, train, relu, self.kernels)
    }

    /// One node as the graph describes it.
    fn run_node(&self, i: usize, inputs: &[Tensor], train: bool) -> Result<Tensor> {
        let (node, x, k) = (&self.graph.nodes[i], &inputs[0], self.kernels);
        let affine = |weight: &Var, bias: &Option<Var>| -> Result<(Tensor, Option<Tensor>)> {
            Ok((self.compute(weight.as_tensor())?, bias.as_ref().map(|b| self.compute(b.as_tensor())).transpose()?))
        };
        Ok(match (&node.op, &self.layers[i]) {
            (Op::Conv(c), Layer::Affine { weight, bias }) => {
                let (w, b) = affine(weight, bias)?;
                conv::conv2d(x, &w, b.as_ref(), c, k)?
            }
            (Op::Linear { .. }, Layer::Affine { weight, bias }) => {
                let (w, b) = affine(weight, bias)?;
                linear::linear(x, &w, b.as_ref())?
            }
            (Op::BatchNorm { .. }, _) => self.run_batch_norm(i, x, train, false)?,
            (Op::Relu, _) => activation::relu(x, k)?,
            (Op::MaxPool { kernel }, _) => pool::max_pool2d(x, *kernel, k)?,
            (Op::AvgPool { kernel }, _) => pool::avg_pool2d(x, *kernel, k)?,
            (Op::GlobalAvgPool, _) => pool::global_avg_pool(x)?,
            (Op::Dropout2d { p }, _) if train => self.dropout.dropout2d(x, *p)?,
            (Op::Dropout { p }, _) if train => self.dropout.dropout(x, *p)?,
            (Op::Dropout2d { .. } | Op::Dropout { .. }, _) => x.clone(),
            (Op::Flatten, _) => x.flatten_from(1)?,
            (Op::Add, _) => {
                let mut acc = x.clone();
                for t in &inputs[1..] {
                    acc = (acc + t)?;
                }
                acc
            }
            (Op::Concat, _) => Tensor::cat(inputs, 1)?,
            (op, _) => candle_core::bail!("node {} ({op:?}) has no interpreter", node.name),
        })
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
        for step in &self.plan.steps {
            let inputs: Vec<Tensor> = self.graph.nodes[step.first()]
                .inputs
                .iter()
                .map(|&j| {
                    pending[j] -= 1;
                    // Release an intermediate as soon as its last reader has it.
                    if pending[j] == 0 { values[j].take() } else { values[j].clone() }
                        .expect("plan steps come in execution order")
                })
                .collect();
            values[step.output()] = Some(self.run_step(step, &inputs, train)?);
        }
        let logits = values[self.graph.output].take().expect("output computed");
        if self.mixed() { logits.to_dtype(self.dtype) } else { Ok(logits) }
    }
}
