//! Shared helpers of the optimiser tests: building small graphs with inline weights, running
//! them before and after optimisation, and comparing the results.

#![allow(dead_code)]

use std::collections::HashMap;

use cubevec_ir::graph::{Graph, TensorType, ValueId, WeightData};
use cubevec_ir::interp::{RunOptions, run};
use cubevec_ir::verify::verify;
use cubevec_ir::{DType, Op, Shape, Tensor};
use cubevec_passes::optimize::{OptimizeOptions, OptimizeReport, RuleFamily, optimize};

/// A deterministic pseudo-random sequence in `[-1, 1)` (64-bit LCG).
pub struct Lcg(u64);

impl Lcg {
    /// A sequence from a seed.
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }

    /// The next value in `[-1, 1)`.
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `n` values.
    pub fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// An `f32` type of known shape.
pub fn f32_ty(dims: &[u64]) -> TensorType {
    TensorType::new(DType::F32, Shape::known(dims))
}

/// Adds an inline `f32` weight with pseudo-random values.
pub fn weight(graph: &mut Graph, name: &str, dims: &[u64], seed: u64) -> ValueId {
    let n: u64 = dims.iter().product();
    let values = Lcg::new(seed).values(n as usize);
    constant(graph, name, dims, &values)
}

/// Adds an inline `f32` constant.
pub fn constant(graph: &mut Graph, name: &str, dims: &[u64], values: &[f32]) -> ValueId {
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let t = Tensor::from_f32(DType::F32, shape, values);
    graph
        .builder()
        .add_initializer(name, f32_ty(dims), WeightData::Inline(t.bytes().into()))
        .expect("unique initializer name")
}

/// Adds one node and returns its first result.
pub fn op(graph: &mut Graph, name: &str, op: Op, inputs: &[ValueId]) -> ValueId {
    graph
        .builder()
        .add_op(name, op, inputs.iter().map(|&v| Some(v)).collect(), vec![])
        .unwrap_or_else(|e| panic!("{e}"))[0]
}

/// Adds one node and returns all its results.
pub fn op_all(graph: &mut Graph, name: &str, op: Op, inputs: &[Option<ValueId>]) -> Vec<ValueId> {
    graph
        .builder()
        .add_op(name, op, inputs.to_vec(), vec![])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Random inputs for every graph input (known shapes, `f32`).
pub fn random_inputs(graph: &Graph, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = Lcg::new(seed);
    graph
        .inputs
        .iter()
        .map(|&v| {
            let value = graph.value(v);
            let dims = value
                .ty
                .shape
                .as_known()
                .expect("test inputs have known shapes");
            let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
            let n = shape.iter().product();
            (
                value.name.clone(),
                Tensor::from_f32(value.ty.dtype, shape, &rng.values(n)),
            )
        })
        .collect()
}

/// Options running only `families`.
pub fn only(families: &[RuleFamily]) -> OptimizeOptions {
    OptimizeOptions {
        rules: families.to_vec(),
        ..OptimizeOptions::default()
    }
}

/// The largest difference between two output lists, relative to the largest reference value
/// (at least 1); infinite where one has a NaN and the other not.
pub fn max_relative_difference(expected: &[Tensor], actual: &[Tensor]) -> f64 {
    assert_eq!(expected.len(), actual.len(), "output count");
    let mut worst: f64 = 0.0;
    for (e, a) in expected.iter().zip(actual) {
        assert_eq!(e.shape(), a.shape(), "output shape");
        let (e, a) = (e.to_f64_vec(), a.to_f64_vec());
        let scale = e.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (x, y) in e.iter().zip(&a) {
            if x.is_nan() != y.is_nan() {
                return f64::INFINITY;
            }
            if !x.is_nan() {
                worst = worst.max((x - y).abs() / scale);
            }
        }
    }
    worst
}

/// Optimises `graph` with `options`, checks the result verifies and computes the same outputs
/// on random inputs (within `tolerance` of the largest output), and returns it.
pub fn optimise_and_compare(
    graph: &Graph,
    options: &OptimizeOptions,
    tolerance: f64,
) -> (Graph, OptimizeReport) {
    verify(graph).expect("test graph verifies");
    let (optimised, report) = optimize(graph.clone(), options).unwrap_or_else(|e| panic!("{e}"));
    verify(&optimised).expect("optimised graph verifies");
    for seed in 0..3 {
        let inputs = random_inputs(graph, seed);
        let before = run(graph, &inputs, &RunOptions::default()).expect("reference run");
        let after = run(&optimised, &inputs, &RunOptions::default()).expect("optimised run");
        let diff = max_relative_difference(&before, &after);
        assert!(
            diff <= tolerance,
            "outputs differ by {diff} (seed {seed})\n{report}"
        );
    }
    (optimised, report)
}

/// How many nodes of the graph have an op with this name.
pub fn count(graph: &Graph, name: &str) -> usize {
    graph.nodes.iter().filter(|n| n.op.name() == name).count()
}

/// The op names of the graph's nodes, in order.
pub fn op_names(graph: &Graph) -> Vec<&'static str> {
    graph.nodes.iter().map(|n| n.op.name()).collect()
}
