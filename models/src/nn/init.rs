//! PyTorch's default initialisation, drawn from a seeded generator so that the same seed gives
//! the same weights on every machine and device.
//!
//! Conv and linear weights: `kaiming_uniform_(a=√5)`, i.e. U(±1/√fan_in); their biases
//! U(±1/√fan_in). BatchNorm: weight 1, bias 0, running mean 0, running variance 1.

use crate::spec::{Graph, Op, ParamKind};
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Initial values of every stored tensor of `graph`, in [`Graph::named_params`] order.
pub fn initial_values(graph: &Graph, seed: u64) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    graph
        .named_params()
        .into_iter()
        .map(|p| {
            let n = p.spec.numel();
            let values = match (p.node.op, p.spec.kind) {
                (Op::BatchNorm { .. }, ParamKind::Weight | ParamKind::RunningVar) => vec![1.0; n],
                (Op::BatchNorm { .. }, _) => vec![0.0; n],
                (op, _) => {
                    let fan_in = match op {
                        Op::Conv(c) => c.fan_in(),
                        Op::Linear { in_features, .. } => in_features,
                        _ => unreachable!("only conv, linear and BN hold tensors"),
                    };
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
                }
            };
            (p.name, p.spec.dims, values)
        })
        .collect()
}
