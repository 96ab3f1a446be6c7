//! The fused steps of a graph, planned once: which layers run as one step. The candle
//! interpreter ([`crate::nn::Network`]) and the ONNX exporter both walk this plan, so they agree
//! on what is fused (a conv and the batch norm that alone reads it, a batch norm or a two-input
//! sum and the ReLU that alone reads it).
//!
//! How a step runs is the interpreter's choice: in training on the fast CPU path a
//! [`Step::ConvBn`] is one op, in evaluation its layers run in turn, and the exporter folds the
//! batch norm into the conv's weights.

use crate::spec::{Graph, NodeId, Op};

/// One step of execution; its value is that of its last node ([`Step::output`]), and its
/// inputs are those of its first node ([`Step::first`]). Nodes inside a step are read by no
/// other node, so they need no value of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// One node as the graph describes it.
    Node(NodeId),
    /// `relu?(bn(conv(x)))`: a conv read only by its batch norm (and a ReLU read only by it).
    ConvBn { conv: NodeId, bn: NodeId, relu: Option<NodeId> },
    /// `relu(bn(x))`: a batch norm, not fed by a fusable conv, read only by its ReLU.
    BnRelu { bn: NodeId, relu: NodeId },
    /// `relu(a + b)`: a two-input sum read only by its ReLU.
    AddRelu { add: NodeId, relu: NodeId },
}

impl Step {
    /// The node whose inputs are the step's inputs.
    pub fn first(&self) -> NodeId {
        match *self {
            Step::Node(n) => n,
            Step::ConvBn { conv, .. } => conv,
            Step::BnRelu { bn, .. } => bn,
            Step::AddRelu { add, .. } => add,
        }
    }

    /// The node whose value the step produces.
    pub fn output(&self) -> NodeId {
        match *self {
            Step::Node(n) => n,
            Step::ConvBn { bn, relu, .. } => relu.unwrap_or(bn),
            Step::BnRelu { relu, .. } | Step::AddRelu { relu, .. } => relu,
        }
    }
}

/// The steps of a graph in execution order; the input node is not a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusionPlan {
    pub steps: Vec<Step>,
}

impl FusionPlan {
    pub fn new(graph: &Graph) -> Self {
        let readers = graph.reader_counts();
        // `sole_reader[i]`: the one node that reads node i, when exactly one does (and i is not
        // the graph's output).
        let mut sole_reader = vec![None; graph.nodes.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for &src in &node.inputs {
                if readers[src] == 1 {
                    sole_reader[src] = Some(i);
                }
            }
        }
        let relu_after = |src: NodeId| sole_reader[src].filter(|&r| matches!(graph.nodes[r].op, Op::Relu));
        let mut absorbed = vec![false; graph.nodes.len()];
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (i, node) in graph.nodes.iter().enumerate().skip(1) {
            if absorbed[i] {
                continue;
            }
            let step = match node.op {
                Op::Conv(_) => match sole_reader[i].filter(|&b| matches!(graph.nodes[b].op, Op::BatchNorm { .. })) {
                    Some(bn) => Step::ConvBn { conv: i, bn, relu: relu_after(bn) },
                    None => Step::Node(i),
                },
                Op::BatchNorm { .. } => match relu_after(i) {
                    Some(relu) => Step::BnRelu { bn: i, relu },
                    None => Step::Node(i),
                },
                Op::Add if node.inputs.len() == 2 => match relu_after(i) {
                    Some(relu) => Step::AddRelu { add: i, relu },
                    None => Step::Node(i),
                },
                _ => Step::Node(i),
            };
            for n in Self::members(&step).into_iter().skip(1) {
                absorbed[n] = true;
            }
            steps.push(step);
        }
        Self { steps }
    }

    /// The nodes of a step, first to last.
    pub fn members(step: &Step) -> Vec<NodeId> {
        match *step {
            Step::Node(n) => vec![n],
            Step::ConvBn { conv, bn, relu } => [Some(conv), Some(bn), relu].into_iter().flatten().collect(),
            Step::BnRelu { bn, relu } => vec![bn, relu],
            Step::AddRelu { add, relu } => vec![add, relu],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::{build, MODEL_NAMES};

    #[test]
    fn every_node_is_in_one_step_and_every_step_reads_earlier_outputs() {
        for name in MODEL_NAMES {
            let g = build(name).unwrap();
            let plan = FusionPlan::new(&g);
            let mut seen: Vec<NodeId> = plan.steps.iter().flat_map(FusionPlan::members).collect();
            seen.sort_unstable();
            assert_eq!(seen, (1..g.nodes.len()).collect::<Vec<_>>(), "{name}");
            let mut available = vec![false; g.nodes.len()];
            available[0] = true;
            for step in &plan.steps {
                let inputs = &g.nodes[step.first()].inputs;
                assert!(inputs.iter().all(|&i| available[i]), "{name}: {step:?} reads a value not yet produced");
                available[step.output()] = true;
            }
            assert!(available[g.output], "{name}: no step produces the output");
        }
    }

    #[test]
    fn stems_and_residual_sums_fuse() {
        let g = build("resnet-light").unwrap();
        let plan = FusionPlan::new(&g);
        let name = |n: NodeId| g.nodes[n].name.as_str();
        // conv1 → bn1 → relu: one step.
        assert_eq!(plan.steps[0], Step::ConvBn { conv: 1, bn: 2, relu: Some(3) });
        assert_eq!(name(plan.steps[0].output()), "relu");
        let add_relus = plan.steps.iter().filter(|s| matches!(s, Step::AddRelu { .. })).count();
        let adds = g.nodes.iter().filter(|n| matches!(n.op, Op::Add)).count();
        assert!(adds > 0 && add_relus == adds, "{add_relus} of {adds} sums fused");
        // Every conv of resnet-light feeds a batch norm of its own.
        assert!(plan.steps.iter().all(|s| !matches!(s, Step::Node(n) if matches!(g.nodes[*n].op, Op::Conv(_)))));
    }

    #[test]
    fn a_conv_read_twice_is_not_fused() {
        use crate::spec::{GraphBuilder, Shape};
        let (mut b, x) = GraphBuilder::new("t", Shape::map(3, 8, 8));
        let c = b.conv("c", x, 4, 3, 1, 1).unwrap();
        let bn = b.batch_norm("bn", c).unwrap();
        let sum = b.push("sum", Op::Add, &[c, bn]).unwrap();
        let g = b.finish(sum);
        let plan = FusionPlan::new(&g);
        assert_eq!(plan.steps, vec![Step::Node(c), Step::Node(bn), Step::Node(sum)]);
    }
}
