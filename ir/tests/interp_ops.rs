//! Every op of the reference interpreter against values computed independently by
//! `scripts/gen_interp_fixtures.py` (numpy, onnx's reference evaluator, ml_dtypes).
//!
//! Each case reads `tests/fixtures/interp/<case>/in<slot>.npy` (an absent optional operand has no
//! file) and `out<i>.npy`, builds a one-node graph (inputs typed with the dtypes declared here;
//! npy has no bf16/fp8/fp4, so those are stored as `f32` holding exactly representable values),
//! runs it and compares. Where `infer::infer_types` accepts the operands, its result types must
//! equal the computed ones.
//!
//! Tolerances (`|got - expected| <= atol + rtol·|expected|`, NaN must match NaN, infinities must
//! be equal): `f32` rtol 2e-5, atol 1e-6 (one or two ulps: the reference computes in `f64` or with
//! another summation order); `f16` rtol 2^-10, atol 1e-5 and `bf16` rtol 2^-7, atol 1e-5 (one ulp:
//! a result may round differently after a different last bit of the `f32` intermediate); integer
//! and bool results exactly. Cases marked exact (casts, dequantisation, data movement) must match
//! bit for bit whatever their dtype.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cubevec_ir::DType::{self, *};
use cubevec_ir::graph::{FileSlice, Graph, Node, TensorType, WeightData};
use cubevec_ir::interp::{self, InterpError, RunOptions};
use cubevec_ir::npy::{NpyError, read_npy};
use cubevec_ir::op::{
    BinaryOp, ExpertActivation, Op, ReduceOp, RoutingMode, ScatterReduction, UnaryOp,
};
use cubevec_ir::shape::{Dim, DimBindings, Shape};
use cubevec_ir::tensor::Tensor;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/interp")
}

/// `t` stored as `dtype`; the fixture values must be exactly representable.
fn as_dtype(t: Tensor, dtype: DType, what: &str) -> Tensor {
    if t.dtype() == dtype {
        return t;
    }
    let converted = if t.dtype().is_float() {
        Tensor::from_f32(dtype, t.shape().to_vec(), &t.to_f32_vec())
    } else {
        Tensor::from_i64(dtype, t.shape().to_vec(), &t.to_i64_vec())
    };
    let same = converted
        .to_f64_vec()
        .iter()
        .zip(t.to_f64_vec())
        .all(|(a, b)| a == &b || (a.is_nan() && b.is_nan()));
    assert!(same, "{what}: fixture values are not exact in {dtype}");
    converted
}

/// The operands of a case: one per declared dtype, `None` where the fixture has no file.
fn load_inputs(case: &str, dtypes: &[DType]) -> Vec<Option<Tensor>> {
    let dir = fixtures().join(case);
    assert!(dir.is_dir(), "missing fixture directory {}", dir.display());
    dtypes
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let path = dir.join(format!("in{i}.npy"));
            path.exists().then(|| {
                let t = read_npy(&path).unwrap_or_else(|e| panic!("{case}: {e}"));
                as_dtype(t, d, &format!("{case}/in{i}"))
            })
        })
        .collect()
}

fn load_outputs(case: &str, count: usize) -> Vec<Tensor> {
    (0..count)
        .map(|i| {
            let path = fixtures().join(case).join(format!("out{i}.npy"));
            read_npy(&path).unwrap_or_else(|e| panic!("{case}: {e}"))
        })
        .collect()
}

/// `(rtol, atol)` for results of `dtype`.
fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        F32 => (2e-5, 1e-6),
        F16 => (1.0 / 1024.0, 1e-5),
        BF16 => (1.0 / 128.0, 1e-5),
        _ => (0.0, 0.0),
    }
}

fn compare(case: &str, index: usize, got: &Tensor, expected: &Tensor, exact: bool) {
    let what = format!("{case}/out{index}");
    assert_eq!(got.shape(), expected.shape(), "{what}: shape");
    if !got.dtype().is_float() {
        assert_eq!(got.to_i64_vec(), expected.to_i64_vec(), "{what}: values");
        return;
    }
    let (rtol, atol) = if exact {
        (0.0, 0.0)
    } else {
        tolerance(got.dtype())
    };
    for (i, (g, e)) in got
        .to_f64_vec()
        .iter()
        .zip(expected.to_f64_vec())
        .enumerate()
    {
        let ok = if e.is_nan() || g.is_nan() {
            e.is_nan() && g.is_nan()
        } else if e.is_infinite() || g.is_infinite() {
            *g == e
        } else {
            (g - e).abs() <= atol + rtol * e.abs()
        };
        assert!(ok, "{what}: element {i} is {g}, expected {e}");
    }
}

/// Runs `op` as a one-node graph on the case's operands and compares with its results.
fn run_case(
    case: &str,
    op: Op,
    in_dtypes: &[DType],
    out_dtypes: &[DType],
    shapes: Option<(&[Shape], &[Shape])>,
    exact: bool,
) {
    let inputs = load_inputs(case, in_dtypes);
    let expected = load_outputs(case, out_dtypes.len());
    let mut graph = Graph::new(case);
    let mut feeds = HashMap::new();
    let mut node_inputs = Vec::new();
    for (i, t) in inputs.iter().enumerate() {
        let Some(t) = t else {
            node_inputs.push(None);
            continue;
        };
        let shape = match shapes {
            Some((ins, _)) => ins[i].clone(),
            None => Shape::known(&t.shape().iter().map(|&d| d as u64).collect::<Vec<_>>()),
        };
        let name = format!("in{i}");
        node_inputs.push(Some(
            graph.add_input(&name, TensorType::new(t.dtype(), shape)),
        ));
        feeds.insert(name, t.clone());
    }
    let outputs: Vec<_> = out_dtypes
        .iter()
        .zip(&expected)
        .enumerate()
        .map(|(i, (&d, e))| {
            let shape = match shapes {
                Some((_, outs)) => outs[i].clone(),
                None => Shape::known(&e.shape().iter().map(|&d| d as u64).collect::<Vec<_>>()),
            };
            graph.add_value(format!("out{i}"), TensorType::new(d, shape))
        })
        .collect();
    let in_types: Vec<Option<TensorType>> = node_inputs
        .iter()
        .map(|v| v.map(|v| graph.value(v).ty.clone()))
        .collect();
    let in_refs: Vec<Option<&TensorType>> = in_types.iter().map(Option::as_ref).collect();
    let out_types: Vec<TensorType> = outputs.iter().map(|&v| graph.value(v).ty.clone()).collect();
    // Where shape inference accepts the operands, it must agree with the computed results (it
    // may reject operands the interpreter still evaluates, e.g. integer matmul).
    if let Ok(inferred) = cubevec_ir::infer::infer_types(&op, &in_refs) {
        assert_eq!(inferred, out_types, "{case}: inferred result types");
    }
    graph.add_node(Node {
        name: case.to_string(),
        op,
        inputs: node_inputs,
        outputs: outputs.clone(),
    });
    graph.outputs = outputs;
    let got = interp::run(&graph, &feeds, &RunOptions::default())
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.dtype(), out_dtypes[i], "{case}/out{i}: dtype");
        compare(case, i, g, e, exact);
    }
}

fn check(case: &str, op: Op, in_dtypes: &[DType], out_dtypes: &[DType]) {
    run_case(case, op, in_dtypes, out_dtypes, None, false);
}

fn check_exact(case: &str, op: Op, in_dtypes: &[DType], out_dtypes: &[DType]) {
    run_case(case, op, in_dtypes, out_dtypes, None, true);
}

fn bits(v: f32) -> u32 {
    v.to_bits()
}

#[test]
fn unary_ops() {
    for u in UnaryOp::ALL {
        let op = Op::Unary(u);
        let case = format!("unary_{}", op.name());
        let (input, output) = match u {
            UnaryOp::Not => (Bool, Bool),
            UnaryOp::IsNaN | UnaryOp::IsInf => (F32, Bool),
            _ => (F32, F32),
        };
        check(&case, op, &[input], &[output]);
    }
    check("unary_exp_bf16", Op::Unary(UnaryOp::Exp), &[BF16], &[BF16]);
    check("unary_tanh_f16", Op::Unary(UnaryOp::Tanh), &[F16], &[F16]);
    check("unary_neg_i64", Op::Unary(UnaryOp::Neg), &[I64], &[I64]);
    check("unary_abs_i32", Op::Unary(UnaryOp::Abs), &[I32], &[I32]);
}

#[test]
fn binary_ops() {
    for b in BinaryOp::ALL {
        let op = Op::Binary(b);
        let case = format!("binary_{}", op.name());
        let (input, output) = if b.is_logical() {
            (Bool, Bool)
        } else if b.is_comparison() {
            (F32, Bool)
        } else {
            (F32, F32)
        };
        check(&case, op, &[input, input], &[output]);
    }
    check(
        "binary_div_i64",
        Op::Binary(BinaryOp::Div),
        &[I64, I64],
        &[I64],
    );
    check(
        "binary_mod_i64",
        Op::Binary(BinaryOp::Mod),
        &[I64, I64],
        &[I64],
    );
    check(
        "binary_fmod_i32",
        Op::Binary(BinaryOp::FMod),
        &[I32, I32],
        &[I32],
    );
    check(
        "binary_pow_i64",
        Op::Binary(BinaryOp::Pow),
        &[I64, I64],
        &[I64],
    );
    check(
        "binary_add_bf16",
        Op::Binary(BinaryOp::Add),
        &[BF16, BF16],
        &[BF16],
    );
    check(
        "binary_mul_bf16",
        Op::Binary(BinaryOp::Mul),
        &[BF16, BF16],
        &[BF16],
    );
}

#[test]
fn symbolic_dims_bind_from_inputs() {
    let b = Dim::sym("b");
    let ins = [
        Shape(vec![b.clone(), Dim::Known(3), Dim::Known(4)]),
        Shape::known(&[3, 1]),
    ];
    let outs = [Shape(vec![b, Dim::Known(3), Dim::Known(4)])];
    run_case(
        "symbolic_add",
        Op::Binary(BinaryOp::Add),
        &[F32, F32],
        &[F32],
        Some((&ins, &outs)),
        false,
    );
}

#[test]
fn clip_where_cast() {
    check("clip", Op::Clip, &[F32, F32, F32], &[F32]);
    check("clip_hi_only", Op::Clip, &[F32, F32, F32], &[F32]);
    check_exact("where", Op::Where, &[Bool, F32, F32], &[F32]);
    let cast = |to| Op::Cast { to };
    check_exact("cast_f32_bf16", cast(BF16), &[F32], &[BF16]);
    check_exact("cast_f32_f16", cast(F16), &[F32], &[F16]);
    check_exact("cast_f32_i32", cast(I32), &[F32], &[I32]);
    check_exact("cast_f32_e4m3", cast(F8E4M3FN), &[F32], &[F8E4M3FN]);
    check_exact("cast_f32_e5m2", cast(F8E5M2), &[F32], &[F8E5M2]);
    check_exact("cast_f32_f4", cast(F4E2M1), &[F32], &[F4E2M1]);
    check_exact("cast_i64_f32", cast(F32), &[I64], &[F32]);
    check_exact("cast_f32_bool", cast(Bool), &[F32], &[Bool]);
    check_exact("cast_bf16_f32", cast(F32), &[BF16], &[F32]);
}

#[test]
fn products() {
    check("matmul_batched", Op::MatMul, &[F32, F32], &[F32]);
    check("matmul_vec", Op::MatMul, &[F32, F32], &[F32]);
    check("matmul_vec_right", Op::MatMul, &[F32, F32], &[F32]);
    check("matmul_bf16", Op::MatMul, &[BF16, BF16], &[BF16]);
    check("matmul_i64", Op::MatMul, &[I64, I64], &[I64]);
    let gemm = |alpha: f32, beta: f32, trans: bool| Op::Gemm {
        alpha_bits: bits(alpha),
        beta_bits: bits(beta),
        trans_a: trans,
        trans_b: trans,
    };
    check("gemm_trans", gemm(0.5, 2.0, true), &[F32, F32, F32], &[F32]);
    check("gemm_no_c", gemm(1.5, 1.0, false), &[F32, F32], &[F32]);
    let einsum = |e: &str| Op::Einsum {
        equation: e.to_string(),
    };
    check(
        "einsum_batched",
        einsum("bij,bjk->bik"),
        &[F32, F32],
        &[F32],
    );
    check("einsum_diag", einsum("ii->i"), &[F32], &[F32]);
    check(
        "einsum_ellipsis",
        einsum("...j,j->..."),
        &[F32, F32],
        &[F32],
    );
    check(
        "grouped_matmul",
        Op::GroupedMatMul,
        &[F32, F32, I64],
        &[F32],
    );
}

#[test]
fn reductions() {
    check("softmax_last", Op::Softmax { axis: -1 }, &[F32], &[F32]);
    check("softmax_axis1", Op::Softmax { axis: 1 }, &[F32], &[F32]);
    check("log_softmax", Op::LogSoftmax { axis: 0 }, &[F32], &[F32]);
    let reduce = |op, axes: &[i64], keep_dims| Op::Reduce {
        op,
        axes: axes.to_vec(),
        keep_dims,
    };
    for (name, op) in [
        ("sum", ReduceOp::Sum),
        ("mean", ReduceOp::Mean),
        ("max", ReduceOp::Max),
        ("min", ReduceOp::Min),
        ("prod", ReduceOp::Prod),
    ] {
        let case = format!("reduce_{name}");
        check(&case, reduce(op, &[1, -1], true), &[F32], &[F32]);
    }
    check(
        "reduce_sum_all",
        reduce(ReduceOp::Sum, &[], false),
        &[F32],
        &[F32],
    );
    check(
        "reduce_mean_axis0",
        reduce(ReduceOp::Mean, &[0], false),
        &[F32],
        &[F32],
    );
    check(
        "reduce_max_nan",
        reduce(ReduceOp::Max, &[-1], false),
        &[F32],
        &[F32],
    );
    check(
        "reduce_sum_i64",
        reduce(ReduceOp::Sum, &[1], false),
        &[I64],
        &[I64],
    );
    let cumsum = |axis, exclusive, reverse| Op::CumSum {
        axis,
        exclusive,
        reverse,
    };
    check("cumsum", cumsum(1, true, true), &[F32], &[F32]);
    check("cumsum_i64", cumsum(-2, false, false), &[I64], &[I64]);
    let argmax = |axis, keep_dims, select_last_index| Op::ArgMax {
        axis,
        keep_dims,
        select_last_index,
    };
    check("argmax", argmax(1, true, false), &[F32], &[I64]);
    check("argmax_last", argmax(-1, false, true), &[F32], &[I64]);
    let topk = |k, axis, largest| Op::TopK {
        k,
        axis,
        largest,
        sorted: true,
    };
    check("topk_largest", topk(3, 1, true), &[F32], &[F32, I64]);
    check(
        "topk_smallest_axis0",
        topk(2, 0, false),
        &[F32],
        &[F32, I64],
    );
    check("topk_nan", topk(2, -1, true), &[F32], &[F32, I64]);
}

#[test]
fn normalisation() {
    let rms = |eps: f32| Op::RmsNorm {
        axis: -1,
        epsilon_bits: bits(eps),
    };
    check("rms_norm", rms(1e-6), &[F32, F32], &[F32]);
    check("rms_norm_bf16", rms(1e-5), &[BF16, BF16], &[BF16]);
    let ln = |axis, eps: f32| Op::LayerNorm {
        axis,
        epsilon_bits: bits(eps),
    };
    check("layer_norm", ln(-2, 1e-5), &[F32, F32, F32], &[F32]);
    check("layer_norm_no_bias", ln(1, 1e-3), &[F32, F32], &[F32]);
}

#[test]
fn indexing() {
    check_exact("gather", Op::Gather { axis: 1 }, &[F32, I64], &[F32]);
    check_exact("gather_scalar", Op::Gather { axis: 0 }, &[F32, I64], &[F32]);
    check_exact(
        "gather_elements",
        Op::GatherElements { axis: -1 },
        &[F32, I64],
        &[F32],
    );
    check_exact(
        "gather_nd",
        Op::GatherNd { batch_dims: 0 },
        &[F32, I64],
        &[F32],
    );
    check_exact(
        "gather_nd_batch",
        Op::GatherNd { batch_dims: 1 },
        &[F32, I64],
        &[F32],
    );
    let scatter = |axis, reduction| Op::ScatterElements { axis, reduction };
    check_exact(
        "scatter_elements",
        scatter(1, ScatterReduction::None),
        &[F32, I64, F32],
        &[F32],
    );
    check(
        "scatter_elements_add",
        scatter(0, ScatterReduction::Add),
        &[F32, I64, F32],
        &[F32],
    );
    check_exact(
        "scatter_nd",
        Op::ScatterNd {
            reduction: ScatterReduction::None,
        },
        &[F32, I64, F32],
        &[F32],
    );
    check(
        "scatter_nd_mul",
        Op::ScatterNd {
            reduction: ScatterReduction::Mul,
        },
        &[F32, I64, F32],
        &[F32],
    );
}

fn dims(sizes: &[u64]) -> Vec<Dim> {
    sizes.iter().map(|&d| Dim::Known(d)).collect()
}

#[test]
fn layout() {
    check_exact(
        "reshape",
        Op::Reshape {
            shape: dims(&[6, 4]),
        },
        &[F32],
        &[F32],
    );
    check_exact(
        "transpose",
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[F32],
        &[F32],
    );
    check_exact(
        "transpose_bf16",
        Op::Transpose { perm: vec![1, 0] },
        &[BF16],
        &[BF16],
    );
    check_exact("concat", Op::Concat { axis: -2 }, &[F32, F32, F32], &[F32]);
    check_exact(
        "split",
        Op::Split {
            axis: 1,
            sizes: dims(&[1, 4]),
        },
        &[F32],
        &[F32, F32],
    );
    check_exact(
        "slice_steps",
        Op::Slice {
            axes: vec![0, 1, -1],
            starts: vec![-1, 1, 10],
            ends: vec![i64::MIN, 100, -10],
            steps: vec![-2, 2, -1],
        },
        &[F32],
        &[F32],
    );
    check_exact(
        "slice_clamp",
        Op::Slice {
            axes: vec![0, 1],
            starts: vec![-100, 0],
            ends: vec![-100, -1],
            steps: vec![-1, 3],
        },
        &[F32],
        &[F32],
    );
    check_exact("squeeze", Op::Squeeze { axes: vec![0] }, &[F32], &[F32]);
    check_exact(
        "unsqueeze",
        Op::Unsqueeze { axes: vec![0, -1] },
        &[F32],
        &[F32],
    );
    check_exact(
        "expand",
        Op::Expand {
            shape: dims(&[2, 1, 4]),
        },
        &[F32],
        &[F32],
    );
    check(
        "range_f32",
        Op::Range { len: Dim::Known(8) },
        &[F32, F32, F32],
        &[F32],
    );
    check_exact(
        "range_i64",
        Op::Range { len: Dim::Known(4) },
        &[I64, I64, I64],
        &[I64],
    );
    check_exact(
        "trilu_upper",
        Op::Trilu { upper: true, k: 1 },
        &[F32],
        &[F32],
    );
    check_exact(
        "trilu_lower",
        Op::Trilu {
            upper: false,
            k: -1,
        },
        &[F32],
        &[F32],
    );
}

#[test]
fn dequantize() {
    let deq = |block: &[u64], to| Op::Dequantize {
        block: block.to_vec(),
        to,
    };
    check(
        "dequant_e4m3_block2d",
        deq(&[2, 4], F32),
        &[F8E4M3FN, F32],
        &[F32],
    );
    check_exact(
        "dequant_e5m2_block",
        deq(&[1, 3], BF16),
        &[F8E5M2, BF16],
        &[BF16],
    );
    check_exact(
        "dequant_fp4_e8m0",
        deq(&[1, 4], BF16),
        &[F4E2M1, E8M0],
        &[BF16],
    );
    check(
        "dequant_i8_zero_point",
        deq(&[2, 2], F32),
        &[I8, F32, I8],
        &[F32],
    );
    check_exact(
        "dequant_u8_per_tensor",
        deq(&[], F16),
        &[U8, F32, U8],
        &[F16],
    );
}

#[test]
fn fused_ops() {
    let swiglu = |split, limit: Option<f32>| Op::SwiGlu {
        split,
        limit_bits: limit.map(bits),
    };
    check("swiglu_split", swiglu(true, None), &[F32], &[F32]);
    check(
        "swiglu_split_limit",
        swiglu(true, Some(7.0)),
        &[F32],
        &[F32],
    );
    check("swiglu_pair", swiglu(false, None), &[F32, F32], &[F32]);
    check(
        "rope_half_partial",
        Op::Rope { interleaved: false },
        &[F32, F32, F32],
        &[F32],
    );
    check(
        "rope_interleaved",
        Op::Rope { interleaved: true },
        &[F32, F32, F32],
        &[F32],
    );
    let attention = |scale: f32, causal| Op::Attention {
        scale_bits: bits(scale),
        causal,
    };
    check(
        "attention_gqa_causal",
        attention(0.3, true),
        &[F32, F32, F32],
        &[F32],
    );
    check(
        "attention_bool_mask",
        attention(0.5, false),
        &[F32, F32, F32, Bool],
        &[F32],
    );
    check(
        "attention_float_mask",
        attention(0.5, true),
        &[F32, F32, F32, F32],
        &[F32],
    );
}

#[test]
fn moe_routing_modes() {
    let moe_dtypes = [F32, F32, F32, F32, F32, F32, I64, I64];
    let moe = |top_k, routing, activation| Op::Moe {
        top_k,
        routing,
        activation,
    };
    let cases = [
        (
            "moe_softmax_topk",
            moe(
                2,
                RoutingMode::SoftmaxTopK { normalize: false },
                ExpertActivation::SwiGlu,
            ),
        ),
        (
            "moe_softmax_topk_norm",
            moe(
                2,
                RoutingMode::SoftmaxTopK { normalize: true },
                ExpertActivation::Silu,
            ),
        ),
        (
            "moe_topk_softmax",
            moe(3, RoutingMode::TopKSoftmax, ExpertActivation::Gelu),
        ),
        (
            "moe_sigmoid_group",
            moe(
                3,
                RoutingMode::SigmoidGroupLimited {
                    n_group: 4,
                    topk_group: 2,
                    normalize: true,
                    scaling_bits: bits(2.5),
                },
                ExpertActivation::SwiGlu,
            ),
        ),
        (
            "moe_sigmoid_group_unnormalized",
            moe(
                2,
                RoutingMode::SigmoidGroupLimited {
                    n_group: 2,
                    topk_group: 1,
                    normalize: false,
                    scaling_bits: bits(1.0),
                },
                ExpertActivation::Relu,
            ),
        ),
        (
            "moe_sqrt_softplus",
            moe(
                2,
                RoutingMode::SqrtSoftplus {
                    normalize: true,
                    scaling_bits: bits(1.5),
                },
                ExpertActivation::SwiGluClamped {
                    limit_bits: bits(1.5),
                },
            ),
        ),
        (
            "moe_hash",
            moe(
                2,
                RoutingMode::Hash {
                    normalize: true,
                    scaling_bits: bits(2.0),
                },
                ExpertActivation::SwiGluClamped {
                    limit_bits: bits(1.5),
                },
            ),
        ),
    ];
    for (case, op) in cases {
        check(case, op, &moe_dtypes, &[F32]);
    }
}

/// The three-node `chain` graph (`softmax(rms_norm(x · w, s))`) with `w` and `s` as weights.
fn chain_graph(w: WeightData, s: WeightData) -> Graph {
    let mut g = Graph::new("chain");
    let f32s = |d: &[u64]| TensorType::new(F32, Shape::known(d));
    let x = g.add_input("x", f32s(&[3, 4]));
    let w = g.add_initializer("w", f32s(&[4, 6]), w);
    let s = g.add_initializer("s", f32s(&[6]), s);
    let h = g.add_value("h", f32s(&[3, 6]));
    let n = g.add_value("n", f32s(&[3, 6]));
    let y = g.add_value("y", f32s(&[3, 6]));
    g.add_node(Node {
        name: "proj".into(),
        op: Op::MatMul,
        inputs: vec![Some(x), Some(w)],
        outputs: vec![h],
    });
    g.add_node(Node {
        name: "norm".into(),
        op: Op::RmsNorm {
            axis: -1,
            epsilon_bits: bits(1e-6),
        },
        inputs: vec![Some(h), Some(s)],
        outputs: vec![n],
    });
    g.add_node(Node {
        name: "probs".into(),
        op: Op::Softmax { axis: -1 },
        inputs: vec![Some(n)],
        outputs: vec![y],
    });
    g.outputs = vec![y];
    g
}

#[test]
fn graph_with_external_and_inline_weights() {
    let inputs = load_inputs("chain", &[F32, F32, F32]);
    let [Some(x), Some(w), Some(s)] = inputs.as_slice() else {
        panic!("chain fixture incomplete");
    };
    let expected = load_outputs("chain", 2);
    // `w` lives at offset 16 of a file next to other bytes; `s` is inline.
    let dir = std::env::temp_dir().join(format!("cubevec-interp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = vec![0xAB; 16];
    file.extend_from_slice(w.bytes());
    file.extend_from_slice(&[0xCD; 8]);
    std::fs::write(dir.join("weights.bin"), &file).unwrap();
    // The second half of `w` is stored again after the padding, so `w` is also two slices.
    let half = w.bytes().len() / 2;
    file.extend_from_slice(&w.bytes()[half..]);
    std::fs::write(dir.join("weights.bin"), &file).unwrap();
    let external = WeightData::file_slice("weights.bin", 16, w.bytes().len() as u64);
    let graph = chain_graph(external, WeightData::Inline(s.bytes().into()));
    let feeds = HashMap::from([("x".to_string(), x.clone())]);
    let options = RunOptions {
        weight_dir: Some(dir.clone()),
    };
    let out = interp::run(&graph, &feeds, &options).unwrap();
    compare("chain", 0, &out[0], &expected[0], false);
    let second_half_at = (16 + w.bytes().len() + 8) as u64;
    let halves = WeightData::External(vec![
        FileSlice {
            path: "weights.bin".into(),
            offset: 16,
            length: half as u64,
        },
        FileSlice {
            path: "weights.bin".into(),
            offset: second_half_at,
            length: (w.bytes().len() - half) as u64,
        },
    ]);
    let graph_of_halves = chain_graph(halves, WeightData::Inline(s.bytes().into()));
    let out = interp::run(&graph_of_halves, &feeds, &options).unwrap();
    compare("chain", 0, &out[0], &expected[0], false);
    // run_all keeps every value, the intermediate product included.
    let all = interp::run_all(&graph, &feeds, &options).unwrap();
    let h = graph.value_by_name("h").unwrap();
    compare(
        "chain",
        1,
        all[h.index()].as_ref().unwrap(),
        &expected[1],
        false,
    );
    assert!(all.iter().all(Option::is_some));

    // A range past the end of the file is reported with the weight and file.
    let too_long = WeightData::file_slice("weights.bin", 16, file.len() as u64);
    let graph = chain_graph(too_long, WeightData::Inline(s.bytes().into()));
    let err = interp::run(&graph, &feeds, &options).unwrap_err();
    assert!(matches!(err, InterpError::WeightOutOfFile { .. }), "{err}");
    assert!(err.to_string().contains("`w`") && err.to_string().contains("weights.bin"));
    // A missing file too.
    let missing = WeightData::file_slice("absent.bin", 0, 4);
    let err = interp::run(&chain_graph(missing, WeightData::Absent), &feeds, &options);
    assert!(matches!(err, Err(InterpError::WeightFile { .. })));
    std::fs::remove_dir_all(&dir).unwrap();

    let err = interp::run(
        &chain_graph(WeightData::Inline(w.bytes().into()), WeightData::Absent),
        &feeds,
        &options,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("graph built from shapes only"),
        "{err}"
    );
}

#[test]
fn errors_name_the_node_and_value() {
    let mut g = Graph::new("bad");
    let a = g.add_input("a", TensorType::new(F32, Shape(vec![Dim::sym("s")])));
    let b = g.add_input("b", TensorType::new(F32, Shape(vec![Dim::sym("s")])));
    let c = g.add_value("c", TensorType::new(BF16, Shape(vec![Dim::sym("s")])));
    g.add_node(Node {
        name: "sum".into(),
        op: Op::Binary(BinaryOp::Add),
        inputs: vec![Some(a), Some(b)],
        outputs: vec![c],
    });
    g.outputs = vec![c];
    let t = |n: usize| Tensor::from_f32(F32, vec![n], &vec![1.0; n]);
    let feeds = HashMap::from([("a".to_string(), t(2)), ("b".to_string(), t(3))]);
    let err = interp::run(&g, &feeds, &RunOptions::default()).unwrap_err();
    assert!(
        matches!(&err, InterpError::SymbolMismatch { input, symbol, .. } if input == "b" && symbol == "s"),
        "{err}"
    );
    let feeds = HashMap::from([("a".to_string(), t(2)), ("b".to_string(), t(2))]);
    let err = interp::run(&g, &feeds, &RunOptions::default()).unwrap_err();
    assert!(matches!(err, InterpError::ResultDType { .. }), "{err}");
    assert!(err.to_string().contains("`sum`") && err.to_string().contains("`c`"));
    let err = interp::run(&g, &HashMap::new(), &RunOptions::default()).unwrap_err();
    assert!(matches!(err, InterpError::MissingInput(name) if name == "a"));
    // An op error carries the node.
    let bad_index = interp::eval_op(
        &Op::Gather { axis: 0 },
        &[Some(&t(2)), Some(&Tensor::from_i64(I64, vec![1], &[5]))],
        &DimBindings::new(),
    )
    .unwrap_err();
    assert!(bad_index.to_string().contains("index 5"), "{bad_index}");
}

#[test]
fn range_binds_a_fresh_length_symbol() {
    let inputs = load_inputs("range_f32", &[F32, F32, F32]);
    let expected = load_outputs("range_f32", 1);
    let mut g = Graph::new("range");
    let scalar = || TensorType::new(F32, Shape::scalar());
    let ids: Vec<_> = (0..3)
        .map(|i| g.add_input(format!("in{i}"), scalar()))
        .collect();
    let n = Dim::sym("n");
    let r = g.add_value("r", TensorType::new(F32, Shape(vec![n.clone()])));
    let twice = g.add_value(
        "twice",
        TensorType::new(F32, Shape(vec![n.mul(&Dim::Known(2))])),
    );
    g.add_node(Node {
        name: "range".into(),
        op: Op::Range { len: n.clone() },
        inputs: ids.iter().map(|&v| Some(v)).collect(),
        outputs: vec![r],
    });
    g.add_node(Node {
        name: "concat".into(),
        op: Op::Concat { axis: 0 },
        inputs: vec![Some(r), Some(r)],
        outputs: vec![twice],
    });
    g.outputs = vec![r, twice];
    let feeds = inputs
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("in{i}"), t.unwrap()))
        .collect();
    let out = interp::run(&g, &feeds, &RunOptions::default()).unwrap();
    compare("range_f32", 0, &out[0], &expected[0], false);
    assert_eq!(out[1].shape(), &[2 * expected[0].numel()]);
}

#[test]
fn eval_op_matches_the_graph_run() {
    let inputs = load_inputs("binary_add", &[F32, F32]);
    let expected = load_outputs("binary_add", 1);
    let operands: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
    let out = interp::eval_op(&Op::Binary(BinaryOp::Add), &operands, &DimBindings::new()).unwrap();
    compare("binary_add", 0, &out[0], &expected[0], false);
    // Symbolic attribute dims evaluate with the given bindings.
    let bindings = DimBindings::from([("rows".to_string(), 6)]);
    let reshape = Op::Reshape {
        shape: vec![Dim::sym("rows"), Dim::Known(4)],
    };
    let x = Tensor::from_f32(F32, vec![2, 3, 4], &[0.5; 24]);
    let out = interp::eval_op(&reshape, &[Some(&x)], &bindings).unwrap();
    assert_eq!(out[0].shape(), &[6, 4]);
    assert!(interp::eval_op(&reshape, &[Some(&x)], &DimBindings::new()).is_err());
}

#[test]
fn npy_files_written_by_numpy() {
    let dir = fixtures().join("npy");
    let read = |name: &str| read_npy(&dir.join(name));
    let f64s = read("f64.npy").unwrap();
    assert_eq!(f64s.dtype(), F32, "f64 is read as f32");
    assert_eq!(f64s.shape(), &[2, 2]);
    assert_eq!(f64s.to_f32_vec(), vec![1.5, -2.25, 1e-3, 3.0]);
    let f16s = read("f16.npy").unwrap();
    assert_eq!(
        (f16s.dtype(), f16s.to_f32_vec()),
        (F16, vec![1.0, -0.5, 65504.0])
    );
    let bools = read("bool.npy").unwrap();
    assert_eq!((bools.dtype(), bools.shape()), (Bool, &[1usize, 3][..]));
    assert_eq!(bools.to_bool_vec(), vec![true, false, true]);
    assert_eq!(read("i8.npy").unwrap().to_i64_vec(), vec![-128, 0, 127]);
    assert_eq!(read("u8.npy").unwrap().to_i64_vec(), vec![0, 200, 255]);
    assert_eq!(read("i32.npy").unwrap().to_i64_vec(), vec![-(1 << 31), 7]);
    let scalar = read("scalar_i64.npy").unwrap();
    assert_eq!((scalar.shape(), scalar.to_i64_vec()), (&[][..], vec![-42]));
    let v2 = read("v2.npy").unwrap();
    assert_eq!(v2.shape(), &[3, 2]);
    assert_eq!(v2.to_f32_vec(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let err = read("fortran.npy").unwrap_err();
    assert!(
        matches!(&err, NpyError::File { source, .. } if matches!(**source, NpyError::FortranOrder)),
        "{err}"
    );
    assert!(matches!(read("absent.npy"), Err(NpyError::Io { .. })));
}

/// The positions ONNX `Slice` picks along an axis of `dim` elements: negative bounds count from
/// the end, then for a positive step both are clamped to `[0, dim]`, for a negative one `start`
/// to `[0, dim - 1]` and `end` to `[-1, dim - 1]`.
fn onnx_slice(dim: i64, start: i64, end: i64, step: i64) -> Vec<i64> {
    let clamp = |v: i64, low: i64, high: i64| {
        let v = if v < 0 { v.saturating_add(dim) } else { v };
        v.clamp(low, high)
    };
    if step > 0 {
        let (s, e) = (clamp(start, 0, dim), clamp(end, 0, dim));
        (s..e).step_by(step as usize).collect()
    } else {
        let (s, e) = (clamp(start, 0, dim - 1), clamp(end, -1, dim - 1));
        let mut out = Vec::new();
        let mut i = s;
        while i > e {
            out.push(i);
            i += step;
        }
        out
    }
}

proptest::proptest! {
    /// Slices copied in contiguous runs (innermost step 1, any outer steps) and element by
    /// element pick what the ONNX rules say, in every dtype width.
    #[test]
    fn slices_pick_what_the_onnx_rules_say(
        shape in proptest::collection::vec(1usize..5, 1..5),
        picks in proptest::collection::vec((0usize..4, -6i64..7, -6i64..7, -3i64..4), 0..4),
        inner_unit_step in proptest::bool::ANY,
        dtype in proptest::sample::select(vec![F32, BF16, I8, I64]),
    ) {
        let rank = shape.len();
        let mut spec: Vec<(i64, i64, i64)> = shape.iter().map(|&d| (0, d as i64, 1)).collect();
        for &(axis, start, end, step) in &picks {
            let step = if step == 0 { 1 } else { step };
            spec[axis % rank] = (start, end, step);
        }
        if inner_unit_step {
            spec[rank - 1].2 = 1;
        }
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|i| (i % 100) as f32).collect();
        let x = Tensor::from_f32(dtype, shape.clone(), &values);
        let op = Op::Slice {
            axes: (0..rank as i64).collect(),
            starts: spec.iter().map(|s| s.0).collect(),
            ends: spec.iter().map(|s| s.1).collect(),
            steps: spec.iter().map(|s| s.2).collect(),
        };
        let got = &interp::eval_op(&op, &[Some(&x)], &DimBindings::new()).unwrap()[0];
        let axes: Vec<Vec<i64>> = (shape.iter().zip(&spec))
            .map(|(&d, &(s, e, st))| onnx_slice(d as i64, s, e, st))
            .collect();
        let want_shape: Vec<usize> = axes.iter().map(Vec::len).collect();
        let mut want = Vec::new();
        let total: usize = want_shape.iter().product();
        for flat in 0..total {
            let (mut rest, mut source) = (flat, 0usize);
            let mut stride = count;
            for (axis, picked) in axes.iter().enumerate() {
                let inner: usize = want_shape[axis + 1..].iter().product();
                stride /= shape[axis];
                source += picked[rest / inner] as usize * stride;
                rest %= inner;
            }
            want.push(values[source]);
        }
        proptest::prop_assert_eq!(got.shape(), &want_shape[..]);
        proptest::prop_assert_eq!(got.to_f32_vec(), want);
    }
}
