//! One test per rewrite rule: the optimised graph has the expected ops and computes the same
//! outputs as the input graph on random inputs.

mod optimize_support;

use cubevec_ir::graph::Graph;
use cubevec_ir::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use cubevec_ir::{DType, Dim};
use cubevec_passes::optimize::{OptimizeOptions, RuleFamily};
use optimize_support::*;

const F32_TOLERANCE: f64 = 1e-5;

fn input(graph: &mut Graph, name: &str, dims: &[u64]) -> cubevec_ir::ValueId {
    graph
        .builder()
        .add_input(name, f32_ty(dims))
        .expect("unique input")
}

fn output(graph: &mut Graph, v: cubevec_ir::ValueId) {
    graph.builder().add_output(v).expect("known value");
}

fn binary(
    g: &mut Graph,
    name: &str,
    op: BinaryOp,
    a: cubevec_ir::ValueId,
    b: cubevec_ir::ValueId,
) -> cubevec_ir::ValueId {
    op_fn(g, name, Op::Binary(op), &[a, b])
}

fn unary(g: &mut Graph, name: &str, op: UnaryOp, a: cubevec_ir::ValueId) -> cubevec_ir::ValueId {
    op_fn(g, name, Op::Unary(op), &[a])
}

fn op_fn(g: &mut Graph, name: &str, o: Op, inputs: &[cubevec_ir::ValueId]) -> cubevec_ir::ValueId {
    op(g, name, o, inputs)
}

fn gemm(trans_b: bool) -> Op {
    Op::Gemm {
        alpha_bits: 1f32.to_bits(),
        beta_bits: 1f32.to_bits(),
        trans_a: false,
        trans_b,
    }
}

#[test]
fn identity_elements_disappear() {
    let mut g = Graph::new("identity");
    let x = input(&mut g, "x", &[4, 8]);
    let zero = constant(&mut g, "zero", &[], &[0.0]);
    let one = constant(&mut g, "one", &[1], &[1.0]);
    let a = binary(&mut g, "add", BinaryOp::Add, x, zero);
    let m = binary(&mut g, "mul", BinaryOp::Mul, one, a);
    let d = binary(&mut g, "div", BinaryOp::Div, m, one);
    let y = unary(&mut g, "relu", UnaryOp::Relu, d);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Algebra]), 0.0);
    assert_eq!(op_names(&opt), ["relu"]);
    assert!(report.rules_fired["identity-element"] >= 3);
}

#[test]
fn no_op_conversions_disappear() {
    let mut g = Graph::new("no-op");
    let x = input(&mut g, "x", &[4, 8]);
    let c = op(&mut g, "cast", Op::Cast { to: DType::F32 }, &[x]);
    let r = op(
        &mut g,
        "reshape",
        Op::Reshape {
            shape: vec![Dim::Known(4), Dim::Known(8)],
        },
        &[c],
    );
    let t = op(
        &mut g,
        "transpose",
        Op::Transpose { perm: vec![0, 1] },
        &[r],
    );
    let y = unary(&mut g, "exp", UnaryOp::Exp, t);
    output(&mut g, y);
    let (opt, _) = optimise_and_compare(&g, &only(&[RuleFamily::Algebra]), 0.0);
    assert_eq!(op_names(&opt), ["exp"]);
}

#[test]
fn transposes_and_reshapes_compose() {
    let mut g = Graph::new("compose");
    let x = input(&mut g, "x", &[2, 3, 4]);
    let t1 = op(
        &mut g,
        "t1",
        Op::Transpose {
            perm: vec![1, 2, 0],
        },
        &[x],
    );
    let t2 = op(
        &mut g,
        "t2",
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[t1],
    );
    let t3 = op(
        &mut g,
        "t3",
        Op::Transpose {
            perm: vec![0, 2, 1],
        },
        &[t2],
    );
    let t4 = op(
        &mut g,
        "t4",
        Op::Transpose {
            perm: vec![1, 0, 2],
        },
        &[t3],
    );
    let r1 = op(
        &mut g,
        "r1",
        Op::Reshape {
            shape: vec![Dim::Known(4), Dim::Known(6)],
        },
        &[t4],
    );
    let r2 = op(
        &mut g,
        "r2",
        Op::Reshape {
            shape: vec![Dim::Known(24)],
        },
        &[r1],
    );
    output(&mut g, r2);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Algebra]), 0.0);
    // t1∘t2 is the identity; t3∘t4 compose into one transpose; the reshapes into one.
    assert_eq!(op_names(&opt), ["transpose", "reshape"]);
    assert!(report.rules_fired.contains_key("transpose-transpose"));
    assert!(report.rules_fired.contains_key("reshape-reshape"));
}

#[test]
fn exact_cast_chains_collapse() {
    let mut g = Graph::new("casts");
    let x = g
        .builder()
        .add_input(
            "x",
            cubevec_ir::graph::TensorType::new(DType::F16, cubevec_ir::Shape::known(&[16])),
        )
        .expect("input");
    let wide = op(&mut g, "wide", Op::Cast { to: DType::F32 }, &[x]);
    let back = op(&mut g, "back", Op::Cast { to: DType::F16 }, &[wide]);
    let e = unary(&mut g, "neg", UnaryOp::Neg, back);
    let w2 = op(&mut g, "wide2", Op::Cast { to: DType::F32 }, &[e]);
    let bf = op(&mut g, "to_bf16", Op::Cast { to: DType::BF16 }, &[w2]);
    output(&mut g, bf);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Algebra]), 0.0);
    // f16 → f32 → f16 is the identity; f16 → f32 → bf16 is one cast.
    assert_eq!(op_names(&opt), ["neg", "cast"]);
    assert!(report.rules_fired["cast-chain"] >= 2);
}

#[test]
fn double_negation_disappears() {
    let mut g = Graph::new("neg");
    let x = input(&mut g, "x", &[5]);
    let a = unary(&mut g, "n1", UnaryOp::Neg, x);
    let b = unary(&mut g, "n2", UnaryOp::Neg, a);
    let y = unary(&mut g, "tanh", UnaryOp::Tanh, b);
    output(&mut g, y);
    let (opt, _) = optimise_and_compare(&g, &only(&[RuleFamily::Algebra]), 0.0);
    assert_eq!(op_names(&opt), ["tanh"]);
}

#[test]
fn small_constant_subgraphs_fold() {
    let mut g = Graph::new("fold");
    let x = input(&mut g, "x", &[3, 4]);
    let a = weight(&mut g, "a", &[4], 1);
    let b = weight(&mut g, "b", &[4], 2);
    let s = binary(&mut g, "sum", BinaryOp::Add, a, b);
    let e = unary(&mut g, "exp", UnaryOp::Exp, s);
    let y = binary(&mut g, "scale", BinaryOp::Mul, x, e);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Fold]), F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["mul"]);
    assert_eq!(report.rules_fired["constant-fold"], 2);
}

#[test]
fn transposes_fold_into_gemm_operands() {
    let mut g = Graph::new("gemm-transpose");
    let x = input(&mut g, "x", &[3, 8]);
    let w = input(&mut g, "w", &[8, 5]);
    let v = input(&mut g, "v", &[5, 8]);
    let wt = op(&mut g, "wt", Op::Transpose { perm: vec![1, 0] }, &[w]);
    let y = op(&mut g, "gemm", gemm(true), &[x, wt]);
    let vt = op(&mut g, "vt", Op::Transpose { perm: vec![1, 0] }, &[v]);
    let z = op(&mut g, "matmul", Op::MatMul, &[x, vt]);
    output(&mut g, y);
    output(&mut g, z);
    let (opt, _) = optimise_and_compare(&g, &only(&[RuleFamily::Layout]), F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["gemm", "gemm"]);
    assert!(matches!(opt.nodes[0].op, Op::Gemm { trans_b: false, .. }));
    assert!(matches!(opt.nodes[1].op, Op::Gemm { trans_b: true, .. }));
}

/// `x * rsqrt(mean(x²) + eps) * w` in the ONNX form with `Pow`, `Sqrt` and `Reciprocal`.
fn decomposed_rms_norm(
    g: &mut Graph,
    x: cubevec_ir::ValueId,
    w: cubevec_ir::ValueId,
    onnx_form: bool,
) -> cubevec_ir::ValueId {
    let two = constant(g, "two", &[], &[2.0]);
    let eps = constant(g, "eps", &[], &[1e-6]);
    let sq = if onnx_form {
        binary(g, "pow", BinaryOp::Pow, x, two)
    } else {
        binary(g, "square", BinaryOp::Mul, x, x)
    };
    let mean = op(
        g,
        "mean",
        Op::Reduce {
            op: ReduceOp::Mean,
            axes: vec![-1],
            keep_dims: true,
        },
        &[sq],
    );
    let var = binary(g, "add_eps", BinaryOp::Add, mean, eps);
    let inv = if onnx_form {
        let s = unary(g, "sqrt", UnaryOp::Sqrt, var);
        unary(g, "reciprocal", UnaryOp::Reciprocal, s)
    } else {
        unary(g, "rsqrt", UnaryOp::Rsqrt, var)
    };
    let n = binary(g, "normalise", BinaryOp::Mul, x, inv);
    binary(g, "scale", BinaryOp::Mul, w, n)
}

#[test]
fn rms_norm_is_recognised_in_both_forms() {
    for onnx_form in [false, true] {
        let mut g = Graph::new("rms");
        let x = input(&mut g, "x", &[3, 16]);
        let w = weight(&mut g, "w", &[16], 7);
        let y = decomposed_rms_norm(&mut g, x, w, onnx_form);
        output(&mut g, y);
        let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Norm]), F32_TOLERANCE);
        assert_eq!(op_names(&opt), ["rms_norm"], "onnx form: {onnx_form}");
        assert!(report.rules_fired.contains_key("rms-norm-scale"));
    }
}

#[test]
fn silu_and_swiglu_are_recognised() {
    let mut g = Graph::new("swiglu");
    let gate = input(&mut g, "gate", &[4, 12]);
    let up = input(&mut g, "up", &[4, 12]);
    let s = unary(&mut g, "sigmoid", UnaryOp::Sigmoid, gate);
    let silu = binary(&mut g, "silu", BinaryOp::Mul, gate, s);
    let y = binary(&mut g, "gated", BinaryOp::Mul, silu, up);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Activation]), F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["swiglu"]);
    assert!(report.rules_fired.contains_key("silu"));
}

#[test]
fn swiglu_of_split_halves_becomes_one_operand() {
    let mut g = Graph::new("swiglu-split");
    let x = input(&mut g, "x", &[4, 24]);
    let halves = op_all(
        &mut g,
        "split",
        Op::Split {
            axis: -1,
            sizes: vec![Dim::Known(12), Dim::Known(12)],
        },
        &[Some(x)],
    );
    let silu = unary(&mut g, "silu", UnaryOp::Silu, halves[0]);
    let y = binary(&mut g, "gated", BinaryOp::Mul, silu, halves[1]);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Activation]), F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["swiglu"]);
    assert!(matches!(opt.nodes[0].op, Op::SwiGlu { split: true, .. }));
    assert!(report.rules_fired.contains_key("swiglu-split"));
}

fn decomposed_softmax(g: &mut Graph, x: cubevec_ir::ValueId, axis: i64) -> cubevec_ir::ValueId {
    let m = op(
        g,
        "max",
        Op::Reduce {
            op: ReduceOp::Max,
            axes: vec![axis],
            keep_dims: true,
        },
        &[x],
    );
    let d = binary(g, "shift", BinaryOp::Sub, x, m);
    let e = unary(g, "exp", UnaryOp::Exp, d);
    let s = op(
        g,
        "sum",
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![axis],
            keep_dims: true,
        },
        &[e],
    );
    binary(g, "normalise", BinaryOp::Div, e, s)
}

#[test]
fn softmax_is_recognised() {
    let mut g = Graph::new("softmax");
    let x = input(&mut g, "x", &[3, 5, 7]);
    let y = decomposed_softmax(&mut g, x, 1);
    output(&mut g, y);
    let (opt, _) = optimise_and_compare(&g, &only(&[RuleFamily::Softmax]), F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["softmax"]);
    assert_eq!(opt.nodes[0].op, Op::Softmax { axis: 1 });
}

#[test]
fn rotate_half_rope_is_recognised() {
    let mut g = Graph::new("rope");
    let x = input(&mut g, "x", &[1, 2, 3, 8]);
    let freqs = input(&mut g, "freqs", &[3, 4]);
    let emb = op(&mut g, "emb", Op::Concat { axis: -1 }, &[freqs, freqs]);
    let cos = unary(&mut g, "cos", UnaryOp::Cos, emb);
    let sin = unary(&mut g, "sin", UnaryOp::Sin, emb);
    let halves = op_all(
        &mut g,
        "halves",
        Op::Split {
            axis: -1,
            sizes: vec![Dim::Known(4), Dim::Known(4)],
        },
        &[Some(x)],
    );
    let neg = unary(&mut g, "neg", UnaryOp::Neg, halves[1]);
    let rot = op(&mut g, "rotate", Op::Concat { axis: -1 }, &[neg, halves[0]]);
    let a = binary(&mut g, "xcos", BinaryOp::Mul, x, cos);
    let b = binary(&mut g, "rsin", BinaryOp::Mul, rot, sin);
    let y = binary(&mut g, "rope", BinaryOp::Add, a, b);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Rope]), F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["cos", "sin", "rope"]);
    assert!(report.rules_fired.contains_key("rope-rotate-half"));
}

#[test]
fn deinterleaved_rope_becomes_interleaved_rope() {
    let mut g = Graph::new("rope-interleaved");
    let x = input(&mut g, "x", &[1, 2, 3, 8]);
    let cos = input(&mut g, "cos", &[3, 4]);
    let sin = input(&mut g, "sin", &[3, 4]);
    let known = |d: &[u64]| d.iter().map(|&v| Dim::Known(v)).collect::<Vec<_>>();
    let pairs = op(
        &mut g,
        "pairs",
        Op::Reshape {
            shape: known(&[1, 2, 3, 4, 2]),
        },
        &[x],
    );
    let swapped = op(
        &mut g,
        "swap",
        Op::Transpose {
            perm: vec![0, 1, 2, 4, 3],
        },
        &[pairs],
    );
    let halves = op(
        &mut g,
        "merge",
        Op::Reshape {
            shape: known(&[1, 2, 3, 8]),
        },
        &[swapped],
    );
    let y = op(
        &mut g,
        "rope",
        Op::Rope { interleaved: false },
        &[halves, cos, sin],
    );
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Rope]), F32_TOLERANCE);
    assert!(
        report.rules_fired.contains_key("rope-interleaved"),
        "{report}"
    );
    // Both forms cost the same; the e-graph holds both and the result must be equivalent.
    assert_eq!(count(&opt, "rope"), 1);
}

/// `x[..., start::2]`, as exported (an end past the axis).
fn every_other(
    g: &mut Graph,
    name: &str,
    x: cubevec_ir::ValueId,
    start: i64,
) -> cubevec_ir::ValueId {
    let o = Op::Slice {
        axes: vec![-1],
        starts: vec![start],
        ends: vec![i64::MAX],
        steps: vec![2],
    };
    op(g, name, o, &[x])
}

/// DeepSeek-V3's exported rotary embedding of `x` by tables `cos`, `sin` (one angle per pair):
/// `cat(x₀·c − x₁·s, x₁·c + x₀·s)` over the even and odd features.
fn strided_rope(
    g: &mut Graph,
    x: cubevec_ir::ValueId,
    cos: cubevec_ir::ValueId,
    sin: cubevec_ir::ValueId,
) -> cubevec_ir::ValueId {
    let x0 = every_other(g, "even", x, 0);
    let x1 = every_other(g, "odd", x, 1);
    let a = binary(g, "x0cos", BinaryOp::Mul, x0, cos);
    let b = binary(g, "x1sin", BinaryOp::Mul, x1, sin);
    let first = binary(g, "first", BinaryOp::Sub, a, b);
    let c = binary(g, "x1cos", BinaryOp::Mul, cos, x1);
    let d = binary(g, "x0sin", BinaryOp::Mul, x0, sin);
    let second = binary(g, "second", BinaryOp::Add, d, c);
    op(g, "rotated", Op::Concat { axis: -1 }, &[first, second])
}

#[test]
fn strided_slice_rope_becomes_interleaved_rope() {
    let mut g = Graph::new("rope-strided");
    let x = input(&mut g, "x", &[1, 2, 3, 8]);
    let cos = input(&mut g, "cos", &[1, 1, 3, 4]);
    let sin = input(&mut g, "sin", &[1, 1, 3, 4]);
    let y = strided_rope(&mut g, x, cos, sin);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Rope]), F32_TOLERANCE);
    assert_eq!(
        op_names(&opt),
        ["rope", "reshape", "transpose", "reshape"],
        "{report}"
    );
    assert!(
        opt.nodes
            .iter()
            .any(|n| n.op == Op::Rope { interleaved: true }),
        "{report}"
    );
    assert_eq!(report.rules_fired["rope-strided-slices"], 1);
}

#[test]
fn strided_slice_rope_with_a_broadcast_angle_is_kept() {
    // One angle for every pair (a last axis of 1) is not `rope`, which would rotate one pair.
    let mut g = Graph::new("rope-strided-broadcast");
    let x = input(&mut g, "x", &[1, 2, 3, 8]);
    let cos = input(&mut g, "cos", &[1, 1, 3, 1]);
    let sin = input(&mut g, "sin", &[1, 1, 3, 1]);
    let y = strided_rope(&mut g, x, cos, sin);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Rope]), F32_TOLERANCE);
    assert_eq!(count(&opt, "rope"), 0, "{report}");
    assert_eq!(count(&opt, "slice"), 2, "{report}");
}

#[test]
fn attention_is_recognised() {
    let mut g = Graph::new("attention");
    let q = input(&mut g, "q", &[1, 2, 3, 8]);
    let k = input(&mut g, "k", &[1, 2, 5, 8]);
    let v = input(&mut g, "v", &[1, 2, 5, 4]);
    let mask = input(&mut g, "mask", &[1, 1, 3, 5]);
    let scale = constant(&mut g, "scale", &[], &[0.125]);
    let kt = op(
        &mut g,
        "kt",
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[k],
    );
    let s = op(&mut g, "scores", Op::MatMul, &[q, kt]);
    let ss = binary(&mut g, "scaled", BinaryOp::Mul, s, scale);
    let masked = binary(&mut g, "masked", BinaryOp::Add, ss, mask);
    let p = op(&mut g, "probs", Op::Softmax { axis: -1 }, &[masked]);
    let y = op(&mut g, "context", Op::MatMul, &[p, v]);
    output(&mut g, y);
    let (opt, _) = optimise_and_compare(&g, &only(&[RuleFamily::Attention]), F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["attention"]);
}

/// Adds an inline constant of `dtype` (integers or bool given as `f64`).
fn typed_constant(
    g: &mut Graph,
    name: &str,
    dtype: DType,
    dims: &[u64],
    values: &[f64],
) -> cubevec_ir::ValueId {
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let t = cubevec_ir::Tensor::from_f64(dtype, shape, values);
    g.builder()
        .add_initializer(
            name,
            cubevec_ir::graph::TensorType::new(dtype, cubevec_ir::Shape::known(dims)),
            cubevec_ir::graph::WeightData::Inline(t.bytes().into()),
        )
        .expect("unique initializer name")
}

/// `reshape(expand(unsqueeze(x, 2)), [b, 2·h, t, d])`: each head of `x [b, h, t, d]` twice.
fn repeat_heads(
    g: &mut Graph,
    name: &str,
    x: cubevec_ir::ValueId,
    dims: [u64; 4],
) -> cubevec_ir::ValueId {
    let [b, h, t, d] = dims;
    let known = |d: &[u64]| d.iter().map(|&v| Dim::Known(v)).collect::<Vec<_>>();
    let u = op(
        g,
        &format!("{name}.unsqueeze"),
        Op::Unsqueeze { axes: vec![2] },
        &[x],
    );
    let e = op(
        g,
        &format!("{name}.expand"),
        Op::Expand {
            shape: known(&[b, h, 2, t, d]),
        },
        &[u],
    );
    op(
        g,
        &format!("{name}.reshape"),
        Op::Reshape {
            shape: known(&[b, 2 * h, t, d]),
        },
        &[e],
    )
}

/// The torch SDPA export over `q [1, 4, 6, 8]` and key/value heads `[1, 2, 6, 8]` repeated to 4:
/// `q` and `kᵀ` each scaled by `8^-1/4`, `kᵀ` transposed on merged leading axes, the mask
/// `where(allowed(i, j), 0, f32::MIN)` with `i`, `j` from `range`, the NaN guard on the
/// probabilities.
fn exported_attention(g: &mut Graph, allowed: BinaryOp) -> cubevec_ir::ValueId {
    let known = |d: &[u64]| d.iter().map(|&v| Dim::Known(v)).collect::<Vec<_>>();
    let q = input(g, "q", &[1, 4, 6, 8]);
    let k = input(g, "k", &[1, 2, 6, 8]);
    let v = input(g, "v", &[1, 2, 6, 8]);
    let kr = repeat_heads(g, "k", k, [1, 2, 6, 8]);
    let vr = repeat_heads(g, "v", v, [1, 2, 6, 8]);
    let merged = op(
        g,
        "k.merge",
        Op::Reshape {
            shape: known(&[4, 6, 8]),
        },
        &[kr],
    );
    let swapped = op(
        g,
        "k.swap",
        Op::Transpose {
            perm: vec![0, 2, 1],
        },
        &[merged],
    );
    let kt = op(
        g,
        "kt",
        Op::Reshape {
            shape: known(&[1, 4, 8, 6]),
        },
        &[swapped],
    );
    let root = constant(g, "root_scale", &[], &[8f32.powf(-0.25)]);
    let qs = binary(g, "q.scaled", BinaryOp::Mul, q, root);
    let kts = binary(g, "kt.scaled", BinaryOp::Mul, kt, root);
    let scores = op(g, "scores", Op::MatMul, &[qs, kts]);
    let start = typed_constant(g, "start", DType::I64, &[], &[0.0]);
    let limit = typed_constant(g, "limit", DType::I64, &[], &[6.0]);
    let delta = typed_constant(g, "delta", DType::I64, &[], &[1.0]);
    let positions = op(
        g,
        "positions",
        Op::Range { len: Dim::Known(6) },
        &[start, limit, delta],
    );
    let rows = op(g, "rows", Op::Unsqueeze { axes: vec![1] }, &[positions]);
    let cols = op(g, "cols", Op::Unsqueeze { axes: vec![0] }, &[positions]);
    let keep = binary(g, "allowed", allowed, cols, rows);
    let zero = constant(g, "zero", &[], &[0.0]);
    let lowest = constant(g, "lowest", &[], &[f32::MIN]);
    let mask = op(g, "mask", Op::Where, &[keep, zero, lowest]);
    let masked = binary(g, "masked", BinaryOp::Add, scores, mask);
    let p = op(g, "probs", Op::Softmax { axis: -1 }, &[masked]);
    let nan = unary(g, "isnan", UnaryOp::IsNaN, p);
    let guarded = op(g, "guard", Op::Where, &[nan, zero, p]);
    op(g, "context", Op::MatMul, &[guarded, vr])
}

#[test]
fn exported_causal_attention_is_recognised() {
    let mut g = Graph::new("sdpa-export");
    let y = exported_attention(&mut g, BinaryOp::LessOrEqual);
    output(&mut g, y);
    let options = only(&[RuleFamily::Attention, RuleFamily::Layout]);
    let (opt, report) = optimise_and_compare(&g, &options, F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["attention"], "{report}");
    let Op::Attention {
        scale_bits,
        causal: true,
    } = opt.nodes[0].op
    else {
        panic!("not causal: {:?}", opt.nodes[0].op);
    };
    assert!((f32::from_bits(scale_bits) - 8f32.powf(-0.5)).abs() < 1e-7);
    // The fused op reads the two key/value heads themselves, and no mask.
    assert_eq!(
        opt.nodes[0].inputs,
        [g.inputs[0], g.inputs[1], g.inputs[2]].map(Some)
    );
    assert!(
        report
            .rules_fired
            .contains_key("transpose-through-merged-reshape")
    );
}

#[test]
fn a_mask_hiding_a_whole_row_keeps_the_nan_guard() {
    // j < i masks all of row 0: the guard and the mask must stay as they are.
    let mut g = Graph::new("sdpa-export-strict");
    let y = exported_attention(&mut g, BinaryOp::Less);
    output(&mut g, y);
    let options = only(&[RuleFamily::Attention, RuleFamily::Layout]);
    let (opt, report) = optimise_and_compare(&g, &options, F32_TOLERANCE);
    assert_eq!(count(&opt, "attention"), 0, "{report}");
    assert_eq!(count(&opt, "isnan"), 1, "{report}");
}

#[test]
fn a_causal_mask_hiding_rows_keeps_the_nan_guard() {
    // 5 queries over 3 keys, query i sees keys j ≤ i - 2: rows 0 and 1 see nothing, and the
    // guard zeroes them where the fused op would give NaN.
    let mut g = Graph::new("sdpa-short-keys");
    let q = input(&mut g, "q", &[1, 2, 5, 8]);
    let k = input(&mut g, "k", &[1, 2, 3, 8]);
    let v = input(&mut g, "v", &[1, 2, 3, 8]);
    let kt = op(
        &mut g,
        "kt",
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[k],
    );
    let scores = op(&mut g, "scores", Op::MatMul, &[q, kt]);
    let keep: Vec<f64> = (0..15)
        .map(|n| f64::from(u8::from(n % 3 + 2 <= n / 3)))
        .collect();
    let allowed = typed_constant(&mut g, "allowed", DType::Bool, &[5, 3], &keep);
    let zero = constant(&mut g, "zero", &[], &[0.0]);
    let hidden = constant(&mut g, "hidden", &[], &[f32::NEG_INFINITY]);
    let mask = op(&mut g, "mask", Op::Where, &[allowed, zero, hidden]);
    let masked = binary(&mut g, "masked", BinaryOp::Add, scores, mask);
    let p = op(&mut g, "probs", Op::Softmax { axis: -1 }, &[masked]);
    let nan = unary(&mut g, "isnan", UnaryOp::IsNaN, p);
    let guarded = op(&mut g, "guard", Op::Where, &[nan, zero, p]);
    let y = op(&mut g, "context", Op::MatMul, &[guarded, v]);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Attention]), F32_TOLERANCE);
    assert_eq!(count(&opt, "attention"), 0, "{report}");
}

#[test]
fn a_bool_causal_mask_of_an_attention_becomes_the_causal_flag() {
    // An ONNX `Attention` with repeated key/value heads and a constant lower-triangle mask.
    let mut g = Graph::new("attention-bool-mask");
    let q = input(&mut g, "q", &[1, 4, 3, 8]);
    let k = input(&mut g, "k", &[1, 2, 5, 8]);
    let v = input(&mut g, "v", &[1, 2, 5, 8]);
    let kr = repeat_heads(&mut g, "k", k, [1, 2, 5, 8]);
    let vr = repeat_heads(&mut g, "v", v, [1, 2, 5, 8]);
    // Query i of 3 sees keys j ≤ i + 2 of 5 (the last 3 positions are the queries).
    let keep: Vec<f64> = (0..15)
        .map(|n| f64::from(u8::from(n % 5 <= n / 5 + 2)))
        .collect();
    let mask = typed_constant(&mut g, "mask", DType::Bool, &[3, 5], &keep);
    let attention = Op::Attention {
        scale_bits: 0.125f32.to_bits(),
        causal: false,
    };
    let y = op(&mut g, "attention", attention, &[q, kr, vr, mask]);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::Attention]), F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["attention"], "{report}");
    assert_eq!(
        opt.nodes[0].op,
        Op::Attention {
            scale_bits: 0.125f32.to_bits(),
            causal: true
        }
    );
    assert_eq!(opt.nodes[0].inputs, [q, k, v].map(Some));
}

#[test]
fn slice_assignments_by_scatter_become_a_concat() {
    // The export of `k = zeros(..); k[..., :4] = a; k[..., 4:] = expand(b)`: rows scattered into
    // a transposed zero tensor, transposed back.
    let mut g = Graph::new("slice-scatter");
    let known = |d: &[u64]| d.iter().map(|&v| Dim::Known(v)).collect::<Vec<_>>();
    let a = input(&mut g, "a", &[2, 3, 5, 4]);
    let b = input(&mut g, "b", &[2, 1, 5, 2]);
    let b_heads = op(
        &mut g,
        "b.heads",
        Op::Expand {
            shape: known(&[2, 3, 5, 2]),
        },
        &[b],
    );
    let zero = constant(&mut g, "zero", &[], &[0.0]);
    let zeros = op(
        &mut g,
        "zeros",
        Op::Expand {
            shape: known(&[2, 3, 5, 6]),
        },
        &[zero],
    );
    let perm = || Op::Transpose {
        perm: vec![3, 1, 2, 0],
    };
    let zt = op(&mut g, "zeros.t", perm(), &[zeros]);
    let at = op(&mut g, "a.t", perm(), &[a]);
    let bt = op(&mut g, "b.t", perm(), &[b_heads]);
    let first = typed_constant(&mut g, "first", DType::I64, &[4, 1], &[0.0, 1.0, 2.0, 3.0]);
    let last = typed_constant(&mut g, "last", DType::I64, &[2, 1], &[4.0, 5.0]);
    let scatter = || Op::ScatterNd {
        reduction: cubevec_ir::op::ScatterReduction::None,
    };
    let s1 = op(&mut g, "scatter.a", scatter(), &[zt, first, at]);
    let s2 = op(&mut g, "scatter.b", scatter(), &[s1, last, bt]);
    let y = op(&mut g, "k", perm(), &[s2]);
    output(&mut g, y);
    let options = only(&[RuleFamily::Layout, RuleFamily::Algebra]);
    let (opt, report) = optimise_and_compare(&g, &options, 0.0);
    assert_eq!(op_names(&opt), ["expand", "concat"], "{report}");
    for rule in [
        "scatter-rows-as-concat",
        "slice-of-concat",
        "transpose-of-concat",
    ] {
        assert!(report.rules_fired.contains_key(rule), "{rule}\n{report}");
    }
}

#[test]
fn parallel_projections_merge_when_cheaper() {
    let mut g = Graph::new("merge");
    let x = input(&mut g, "x", &[2, 64]);
    let wg = weight(&mut g, "w_gate", &[96, 64], 1);
    let wu = weight(&mut g, "w_up", &[96, 64], 2);
    let gate = op(&mut g, "gate", gemm(true), &[x, wg]);
    let up = op(&mut g, "up", gemm(true), &[x, wu]);
    let y = op(
        &mut g,
        "act",
        Op::SwiGlu {
            split: false,
            limit_bits: None,
        },
        &[gate, up],
    );
    output(&mut g, y);
    let options = only(&[RuleFamily::MatMul, RuleFamily::Activation]);
    let (opt, report) = optimise_and_compare(&g, &options, F32_TOLERANCE);
    assert_eq!(count(&opt, "gemm"), 1, "{report}");
    assert!(report.rules_fired.contains_key("merge-parallel-matmul"));
    assert!(report.cost_after < report.cost_before);
}

#[test]
fn low_rank_weight_chains_are_absorbed() {
    let mut g = Graph::new("absorb");
    let x = input(&mut g, "x", &[2, 32]);
    let b = weight(&mut g, "b", &[32, 256], 1);
    let c = weight(&mut g, "c", &[256, 32], 2);
    let xb = op(&mut g, "xb", Op::MatMul, &[x, b]);
    let y = op(&mut g, "xbc", Op::MatMul, &[xb, c]);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::MatMul]), 1e-4);
    // The weight product is computed from weights alone; one product by activations remains.
    assert!(report.rules_fired.contains_key("matmul-chain-absorb"));
    let by_activation = opt
        .nodes
        .iter()
        .filter(|n| n.op == Op::MatMul && n.inputs[0] == opt.inputs.first().copied())
        .count();
    assert_eq!(by_activation, 1, "{report}");
    assert!(report.cost_after < report.cost_before);
}

#[test]
fn factored_weights_stay_factored_when_reading_them_is_cheaper() {
    let mut g = Graph::new("factor");
    let x = input(&mut g, "x", &[2, 256]);
    let b = weight(&mut g, "b", &[256, 8], 1);
    let c = weight(&mut g, "c", &[8, 256], 2);
    let bc = op(&mut g, "bc", Op::MatMul, &[b, c]);
    let y = op(&mut g, "xbc", Op::MatMul, &[x, bc]);
    output(&mut g, y);
    let (opt, report) = optimise_and_compare(&g, &only(&[RuleFamily::MatMul]), 1e-4);
    assert!(report.rules_fired.contains_key("matmul-chain-factor"));
    assert_eq!(count(&opt, "matmul"), 2, "{report}");
    assert!(report.cost_after <= report.cost_before);
}

#[test]
fn default_options_run_every_family() {
    let mut g = Graph::new("all");
    let x = input(&mut g, "x", &[3, 16]);
    let w = weight(&mut g, "w", &[16], 3);
    let n = decomposed_rms_norm(&mut g, x, w, true);
    let y = decomposed_softmax(&mut g, n, -1);
    output(&mut g, y);
    let (opt, _) = optimise_and_compare(&g, &OptimizeOptions::default(), F32_TOLERANCE);
    assert_eq!(op_names(&opt), ["rms_norm", "softmax"]);
}

#[test]
fn limits_bound_saturation_and_the_result_stays_valid() {
    let mut g = Graph::new("limits");
    let x = input(&mut g, "x", &[3, 16]);
    let w = weight(&mut g, "w", &[16], 3);
    let n = decomposed_rms_norm(&mut g, x, w, true);
    let y = decomposed_softmax(&mut g, n, -1);
    output(&mut g, y);
    let options = OptimizeOptions {
        iter_limit: 1,
        ..OptimizeOptions::default()
    };
    let (_, report) = optimise_and_compare(&g, &options, F32_TOLERANCE);
    assert_eq!(report.iterations, 1);
    assert_eq!(
        report.stop_reasons.keys().collect::<Vec<_>>(),
        ["IterationLimit(1)"]
    );
    let options = OptimizeOptions {
        node_limit: 20,
        ..OptimizeOptions::default()
    };
    let (_, report) = optimise_and_compare(&g, &options, F32_TOLERANCE);
    assert!(report.egraph_nodes < 40, "{report}");
    assert!(
        report
            .stop_reasons
            .keys()
            .all(|r| r.starts_with("NodeLimit")),
        "{report}"
    );
}

#[test]
fn an_invalid_input_graph_is_rejected() {
    let mut g = Graph::new("invalid");
    let x = input(&mut g, "x", &[2]);
    let y = unary(&mut g, "neg", UnaryOp::Neg, x);
    output(&mut g, y);
    g.nodes[0].inputs[0] = Some(cubevec_ir::ValueId(99));
    let err =
        cubevec_passes::optimize::optimize(g.clone(), &OptimizeOptions::default()).unwrap_err();
    assert!(
        matches!(err, cubevec_passes::optimize::OptimizeError::Input(_)),
        "{err}"
    );
    assert!(err.to_string().starts_with("input graph: "), "{err}");
}

/// `reshape(transpose(reshape(x, [.., a, b]), swap of the last two), [.., a·b])`: the
/// de-interleaving permutation an export applies to rotary halves.
fn deinterleave(
    g: &mut Graph,
    name: &str,
    x: cubevec_ir::ValueId,
    dims: &[u64],
    (a, b): (u64, u64),
) -> cubevec_ir::ValueId {
    let lead: Vec<Dim> = dims[..dims.len() - 1]
        .iter()
        .map(|&d| Dim::Known(d))
        .collect();
    let split = [lead.clone(), vec![Dim::Known(a), Dim::Known(b)]].concat();
    let s = op(
        g,
        &format!("{name}.split"),
        Op::Reshape { shape: split },
        &[x],
    );
    // The split has one axis more: swap its last two.
    let rank = dims.len() + 1;
    let mut perm: Vec<u64> = (0..rank as u64).collect();
    perm.swap(rank - 2, rank - 1);
    let t = op(g, &format!("{name}.swap"), Op::Transpose { perm }, &[s]);
    let merged = [lead, vec![Dim::Known(a * b)]].concat();
    op(
        g,
        &format!("{name}.merge"),
        Op::Reshape { shape: merged },
        &[t],
    )
}

/// Queries and keys whose trailing 8 dims are permuted, the keys' by `key_split` and shared by
/// both heads through an expand.
fn permuted_rotary_attention(key_split: (u64, u64)) -> Graph {
    let mut g = Graph::new("permuted-rotary");
    let qa = input(&mut g, "q_nope", &[1, 2, 3, 4]);
    let qb = input(&mut g, "q_rope", &[1, 2, 3, 8]);
    let ka = input(&mut g, "k_nope", &[1, 2, 3, 4]);
    let kb = input(&mut g, "k_rope", &[1, 1, 3, 8]);
    let v = input(&mut g, "v", &[1, 2, 3, 4]);
    let qp = deinterleave(&mut g, "q", qb, &[1, 2, 3, 8], (4, 2));
    let kp = deinterleave(&mut g, "k", kb, &[1, 1, 3, 8], key_split);
    let shape = [1, 2, 1, 1].map(Dim::Known).to_vec();
    let ke = op(&mut g, "k.heads", Op::Expand { shape }, &[kp]);
    let q = op(&mut g, "q", Op::Concat { axis: -1 }, &[qa, qp]);
    let k = op(&mut g, "k", Op::Concat { axis: -1 }, &[ka, ke]);
    let attention = Op::Attention {
        scale_bits: 0.25f32.to_bits(),
        causal: true,
    };
    let y = op(&mut g, "attention", attention, &[q, k, v]);
    output(&mut g, y);
    g
}

#[test]
fn a_permutation_common_to_query_and_key_parts_is_dropped() {
    let g = permuted_rotary_attention((4, 2));
    let options = only(&[RuleFamily::Attention]);
    let (opt, report) = optimise_and_compare(&g, &options, F32_TOLERANCE);
    assert_eq!(
        report.rules_fired["attention-common-key-permutation"], 1,
        "{report}"
    );
    assert_eq!(count(&opt, "transpose"), 0, "{report}");
    assert_eq!(count(&opt, "reshape"), 0, "{report}");
    assert_eq!(count(&opt, "attention"), 1, "{report}");
}

#[test]
fn different_permutations_of_query_and_key_parts_stay() {
    // [4, 2] de-interleaves the queries, [2, 4] interleaves the keys: the scores change.
    let g = permuted_rotary_attention((2, 4));
    let options = only(&[RuleFamily::Attention]);
    let (opt, report) = optimise_and_compare(&g, &options, F32_TOLERANCE);
    assert!(
        !report
            .rules_fired
            .contains_key("attention-common-key-permutation"),
        "{report}"
    );
    assert_eq!(count(&opt, "transpose"), 2, "{report}");
}
