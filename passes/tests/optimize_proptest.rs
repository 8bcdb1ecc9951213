//! Property test: small random graphs built from the op set compute the same outputs before and
//! after optimisation with every rule family, on random inputs.

mod optimize_support;

use cubevec_ir::graph::Graph;
use cubevec_ir::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use cubevec_ir::{DType, Dim, ValueId};
use cubevec_passes::optimize::OptimizeOptions;
use optimize_support::{constant, f32_ty, op, optimise_and_compare, weight};
use proptest::prelude::*;

/// One step applied to the running value `v` (shape `[rows, cols]`, `f32`).
#[derive(Clone, Debug)]
enum Step {
    Unary(UnaryOp),
    AddZero,
    MulOne,
    AddConst(f32),
    MulConst(f32),
    WithInput(BinaryOp),
    DoubleTranspose,
    ReshapeRoundTrip,
    CastRoundTrip(DType),
    SigmoidMul,
    SiluMulInput,
    Softmax,
    RmsNorm,
    ConstantSubgraph,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        prop::sample::select(vec![
            UnaryOp::Neg,
            UnaryOp::Tanh,
            UnaryOp::Sigmoid,
            UnaryOp::Silu,
            UnaryOp::Relu,
            UnaryOp::Abs,
        ])
        .prop_map(Step::Unary),
        Just(Step::AddZero),
        Just(Step::MulOne),
        (-2.0f32..2.0).prop_map(Step::AddConst),
        (-2.0f32..2.0).prop_map(Step::MulConst),
        prop::sample::select(vec![
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Max
        ])
        .prop_map(Step::WithInput),
        Just(Step::DoubleTranspose),
        Just(Step::ReshapeRoundTrip),
        prop::sample::select(vec![DType::F16, DType::BF16]).prop_map(Step::CastRoundTrip),
        Just(Step::SigmoidMul),
        Just(Step::SiluMulInput),
        Just(Step::Softmax),
        Just(Step::RmsNorm),
        Just(Step::ConstantSubgraph),
    ]
}

fn build(rows: u64, cols: u64, steps: &[Step]) -> Graph {
    let mut g = Graph::new("random");
    let x = g
        .builder()
        .add_input("x", f32_ty(&[rows, cols]))
        .expect("input");
    let y = g
        .builder()
        .add_input("y", f32_ty(&[rows, cols]))
        .expect("input");
    let mut v = x;
    let bin = |g: &mut Graph, name: &str, o: BinaryOp, a: ValueId, b: ValueId| {
        op(g, name, Op::Binary(o), &[a, b])
    };
    let un = |g: &mut Graph, name: &str, o: UnaryOp, a: ValueId| op(g, name, Op::Unary(o), &[a]);
    for (i, s) in steps.iter().enumerate() {
        let n = |what: &str| format!("s{i}.{what}");
        v = match s {
            Step::Unary(u) => un(&mut g, &n("unary"), *u, v),
            Step::AddZero => {
                let z = constant(&mut g, &n("zero"), &[], &[0.0]);
                bin(&mut g, &n("add"), BinaryOp::Add, z, v)
            }
            Step::MulOne => {
                let one = constant(&mut g, &n("one"), &[cols], &vec![1.0; cols as usize]);
                bin(&mut g, &n("mul"), BinaryOp::Mul, v, one)
            }
            Step::AddConst(c) => {
                let k = constant(&mut g, &n("c"), &[], &[*c]);
                bin(&mut g, &n("add"), BinaryOp::Add, v, k)
            }
            Step::MulConst(c) => {
                let k = constant(&mut g, &n("c"), &[], &[*c]);
                bin(&mut g, &n("mul"), BinaryOp::Mul, k, v)
            }
            Step::WithInput(b) => bin(&mut g, &n("bin"), *b, v, y),
            Step::DoubleTranspose => {
                let t = op(&mut g, &n("t1"), Op::Transpose { perm: vec![1, 0] }, &[v]);
                op(&mut g, &n("t2"), Op::Transpose { perm: vec![1, 0] }, &[t])
            }
            Step::ReshapeRoundTrip => {
                let flat = op(
                    &mut g,
                    &n("flat"),
                    Op::Reshape {
                        shape: vec![Dim::Known(rows * cols)],
                    },
                    &[v],
                );
                op(
                    &mut g,
                    &n("back"),
                    Op::Reshape {
                        shape: vec![Dim::Known(rows), Dim::Known(cols)],
                    },
                    &[flat],
                )
            }
            Step::CastRoundTrip(d) => {
                let narrow = op(&mut g, &n("narrow"), Op::Cast { to: *d }, &[v]);
                op(&mut g, &n("wide"), Op::Cast { to: DType::F32 }, &[narrow])
            }
            Step::SigmoidMul => {
                let s = un(&mut g, &n("sigmoid"), UnaryOp::Sigmoid, v);
                bin(&mut g, &n("mul"), BinaryOp::Mul, s, v)
            }
            Step::SiluMulInput => {
                let s = un(&mut g, &n("silu"), UnaryOp::Silu, v);
                bin(&mut g, &n("mul"), BinaryOp::Mul, s, y)
            }
            Step::Softmax => {
                let m = op(
                    &mut g,
                    &n("max"),
                    Op::Reduce {
                        op: ReduceOp::Max,
                        axes: vec![-1],
                        keep_dims: true,
                    },
                    &[v],
                );
                let d = bin(&mut g, &n("sub"), BinaryOp::Sub, v, m);
                let e = un(&mut g, &n("exp"), UnaryOp::Exp, d);
                let s = op(
                    &mut g,
                    &n("sum"),
                    Op::Reduce {
                        op: ReduceOp::Sum,
                        axes: vec![-1],
                        keep_dims: true,
                    },
                    &[e],
                );
                bin(&mut g, &n("div"), BinaryOp::Div, e, s)
            }
            Step::RmsNorm => {
                let w = weight(&mut g, &n("w"), &[cols], i as u64);
                let eps = constant(&mut g, &n("eps"), &[], &[1e-5]);
                let sq = bin(&mut g, &n("sq"), BinaryOp::Mul, v, v);
                let m = op(
                    &mut g,
                    &n("mean"),
                    Op::Reduce {
                        op: ReduceOp::Mean,
                        axes: vec![1],
                        keep_dims: true,
                    },
                    &[sq],
                );
                let a = bin(&mut g, &n("eps"), BinaryOp::Add, m, eps);
                let r = un(&mut g, &n("rsqrt"), UnaryOp::Rsqrt, a);
                let nv = bin(&mut g, &n("norm"), BinaryOp::Mul, v, r);
                bin(&mut g, &n("scale"), BinaryOp::Mul, nv, w)
            }
            Step::ConstantSubgraph => {
                let a = weight(&mut g, &n("a"), &[cols], 100 + i as u64);
                let t = un(&mut g, &n("tanh"), UnaryOp::Tanh, a);
                let s = bin(&mut g, &n("s"), BinaryOp::Add, t, a);
                bin(&mut g, &n("add"), BinaryOp::Add, v, s)
            }
        };
    }
    g.builder().add_output(v).expect("output");
    g
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn random_graphs_keep_their_outputs(
        rows in 1u64..4,
        cols in 1u64..7,
        steps in prop::collection::vec(step(), 1..9),
    ) {
        let graph = build(rows, cols, &steps);
        let (optimised, _) = optimise_and_compare(&graph, &OptimizeOptions::default(), 1e-4);
        prop_assert!(optimised.nodes.len() <= graph.nodes.len());
    }
}
