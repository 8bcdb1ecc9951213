//! Shape and dtype inference, per op family: accepted operands give the documented result types,
//! rejected ones an error naming the op, the operand and its shape.

use std::collections::BTreeMap;

use cubevec_ir::infer::{InferError, infer_types};
use cubevec_ir::op::{
    BinaryOp, ExpertActivation, ReduceOp, RoutingMode, ScatterReduction, UnaryOp,
};
use cubevec_ir::{DType, Dim, Op, Shape, TensorType};

use DType::{BF16, Bool, E8M0, F8E4M3FN, F16, F32, I32, I64};

/// A tensor type of known shape.
fn t(dtype: DType, dims: &[u64]) -> TensorType {
    TensorType::new(dtype, Shape::known(dims))
}

/// A tensor type of possibly symbolic shape.
fn ts(dtype: DType, dims: &[Dim]) -> TensorType {
    TensorType::new(dtype, Shape(dims.to_vec()))
}

fn sym(name: &str) -> Dim {
    Dim::sym(name)
}

fn k(n: u64) -> Dim {
    Dim::Known(n)
}

/// Inference with every operand present.
fn infer(op: &Op, inputs: &[&TensorType]) -> Result<Vec<TensorType>, InferError> {
    let slots: Vec<Option<&TensorType>> = inputs.iter().map(|t| Some(*t)).collect();
    infer_types(op, &slots)
}

/// The single result type of an accepted application.
fn one(op: &Op, inputs: &[&TensorType]) -> TensorType {
    let mut out = infer(op, inputs).unwrap_or_else(|e| panic!("{op:?} rejected: {e}"));
    assert_eq!(out.len(), 1, "{op:?} gave {out:?}");
    out.remove(0)
}

/// The error of a rejected application.
fn err(op: &Op, inputs: &[Option<&TensorType>]) -> InferError {
    match infer_types(op, inputs) {
        Ok(types) => panic!("{op:?} accepted {inputs:?}, giving {types:?}"),
        Err(e) => e,
    }
}

fn err_all(op: &Op, inputs: &[&TensorType]) -> InferError {
    let slots: Vec<Option<&TensorType>> = inputs.iter().map(|t| Some(*t)).collect();
    err(op, &slots)
}

/// Asserts a shape error at operand `index` whose message contains every fragment.
fn assert_shape_error(e: &InferError, index: usize, fragments: &[&str]) {
    assert!(
        matches!(e, InferError::Shape { index: i, .. } if *i == index),
        "expected a shape error at operand {index}, got {e:?}"
    );
    let message = e.to_string();
    for f in fragments {
        assert!(message.contains(f), "`{message}` lacks `{f}`");
    }
}

fn assert_dtype_error(e: &InferError, index: usize, found: DType) {
    assert!(
        matches!(e, InferError::DType { index: i, found: f, .. } if *i == index && *f == found),
        "expected a dtype error at operand {index} ({found}), got {e:?}"
    );
}

fn assert_attribute_error(e: &InferError, attribute: &str, fragment: &str) {
    assert!(
        matches!(e, InferError::Attribute { attribute: a, .. } if *a == attribute),
        "expected an error on attribute {attribute}, got {e:?}"
    );
    assert!(e.to_string().contains(fragment), "`{e}` lacks `{fragment}`");
}

#[test]
fn operand_counts_and_required_slots() {
    let x = t(F32, &[2, 2]);
    let e = err_all(&Op::MatMul, &[&x, &x, &x]);
    assert_eq!(
        e,
        InferError::OperandCount {
            op: "matmul",
            expected: "2".into(),
            got: 3
        }
    );
    assert_eq!(e.to_string(), "matmul takes 2 operands, got 3");
    let e = err(&Op::Binary(BinaryOp::Add), &[Some(&x), None]);
    assert_eq!(
        e,
        InferError::MissingOperand {
            op: "add",
            index: 1,
            operand: "b"
        }
    );
    let concat = Op::Concat { axis: 0 };
    assert!(matches!(
        err(&concat, &[]),
        InferError::OperandCount { got: 0, .. }
    ));
    assert_eq!(
        err(&concat, &[Some(&x), None]),
        InferError::MissingOperand {
            op: "concat",
            index: 1,
            operand: "x"
        }
    );
    // Trailing optional slots may be absent or left out.
    let clip = Op::Clip;
    assert_eq!(infer_types(&clip, &[Some(&x)]).unwrap(), vec![x.clone()]);
    assert_eq!(
        infer_types(&clip, &[Some(&x), None, None]).unwrap(),
        vec![x.clone()]
    );
}

#[test]
fn unary_ops() {
    let x = ts(BF16, &[sym("seq"), k(8)]);
    assert_eq!(one(&Op::Unary(UnaryOp::Exp), &[&x]), x);
    assert_eq!(
        one(&Op::Unary(UnaryOp::IsNaN), &[&x]),
        ts(Bool, &[sym("seq"), k(8)])
    );
    let i = t(I64, &[3]);
    assert_eq!(one(&Op::Unary(UnaryOp::Neg), &[&i]), i);
    assert_dtype_error(&err_all(&Op::Unary(UnaryOp::Exp), &[&i]), 0, I64);
    assert_dtype_error(&err_all(&Op::Unary(UnaryOp::Not), &[&x]), 0, BF16);
    let b = t(Bool, &[3]);
    assert_eq!(one(&Op::Unary(UnaryOp::Not), &[&b]), b);
    let e = err_all(&Op::Unary(UnaryOp::Silu), &[&t(F8E4M3FN, &[4])]);
    assert_eq!(
        e.to_string(),
        "silu operand 0 (`x`) has dtype f8e4m3fn, expected f32, f16 or bf16"
    );
}

#[test]
fn binary_ops_broadcast() {
    let a = ts(F32, &[sym("b"), k(1), k(4)]);
    let b = t(F32, &[3, 1]);
    let add = Op::Binary(BinaryOp::Add);
    assert_eq!(one(&add, &[&a, &b]), ts(F32, &[sym("b"), k(3), k(4)]));
    assert_eq!(
        one(&Op::Binary(BinaryOp::Less), &[&a, &b]),
        ts(Bool, &[sym("b"), k(3), k(4)])
    );
    let flags = t(Bool, &[2]);
    assert_eq!(one(&Op::Binary(BinaryOp::Xor), &[&flags, &flags]), flags);
    assert_dtype_error(&err_all(&Op::Binary(BinaryOp::And), &[&b, &b]), 0, F32);
    assert_dtype_error(&err_all(&add, &[&b, &t(F16, &[3, 1])]), 1, F16);
    let e = err_all(&add, &[&t(F32, &[2]), &t(F32, &[3])]);
    assert_shape_error(&e, 1, &["add", "[3]", "does not broadcast with [2]"]);
    // Two different symbols do not broadcast.
    let e = err_all(&add, &[&ts(F32, &[sym("s")]), &ts(F32, &[sym("t")])]);
    assert_shape_error(&e, 1, &["[t]", "[s]"]);
}

#[test]
fn clip_where_cast() {
    let x = t(F16, &[2, 3]);
    let lo = t(F16, &[]);
    assert_eq!(one(&Op::Clip, &[&x, &lo, &lo]), x);
    assert_shape_error(
        &err_all(&Op::Clip, &[&x, &t(F16, &[1])]),
        1,
        &["expected rank 0"],
    );
    let cond = t(Bool, &[2, 1]);
    let b = t(F16, &[3]);
    assert_eq!(one(&Op::Where, &[&cond, &x, &b]), x);
    assert_dtype_error(&err_all(&Op::Where, &[&x, &x, &x]), 0, F16);
    assert_dtype_error(&err_all(&Op::Where, &[&cond, &x, &t(F32, &[3])]), 2, F32);
    assert_eq!(one(&Op::Cast { to: F8E4M3FN }, &[&x]), t(F8E4M3FN, &[2, 3]));
}

#[test]
fn matmul_promotion_and_batch_broadcast() {
    let mm = Op::MatMul;
    assert_eq!(
        one(&mm, &[&t(F32, &[2, 3, 4]), &t(F32, &[4, 5])]),
        t(F32, &[2, 3, 5])
    );
    assert_eq!(
        one(&mm, &[&t(F32, &[4]), &t(F32, &[2, 4, 5])]),
        t(F32, &[2, 5])
    );
    assert_eq!(one(&mm, &[&t(F32, &[3, 4]), &t(F32, &[4])]), t(F32, &[3]));
    assert_eq!(one(&mm, &[&t(F32, &[4]), &t(F32, &[4])]), t(F32, &[]));
    assert_eq!(
        one(&mm, &[&t(BF16, &[2, 1, 3, 4]), &t(BF16, &[5, 4, 6])]),
        t(BF16, &[2, 5, 3, 6])
    );
    let x = ts(F16, &[sym("seq"), k(64)]);
    let w = ts(F16, &[k(64), sym("n")]);
    assert_eq!(one(&mm, &[&x, &w]), ts(F16, &[sym("seq"), sym("n")]));

    let e = err_all(&mm, &[&t(F32, &[2, 3]), &t(F32, &[4, 5])]);
    assert_shape_error(&e, 1, &["matmul", "[4, 5]", "4 does not match 3", "[2, 3]"]);
    let e = err_all(&mm, &[&t(F32, &[2, 2, 3]), &t(F32, &[3, 3, 5])]);
    assert_shape_error(&e, 1, &["batch dimensions"]);
    assert_shape_error(
        &err_all(&mm, &[&t(F32, &[]), &t(F32, &[3])]),
        0,
        &["rank at least 1"],
    );
    assert_dtype_error(&err_all(&mm, &[&t(I32, &[2, 2]), &t(I32, &[2, 2])]), 0, I32);
    assert_dtype_error(&err_all(&mm, &[&t(F32, &[2, 2]), &t(F16, &[2, 2])]), 1, F16);
}

#[test]
fn gemm_transposes_and_bias() {
    let gemm = |trans_a, trans_b| Op::Gemm {
        alpha_bits: 1.0f32.to_bits(),
        beta_bits: 1.0f32.to_bits(),
        trans_a,
        trans_b,
    };
    let a = t(F32, &[4, 3]);
    let b = t(F32, &[5, 4]);
    assert_eq!(one(&gemm(true, true), &[&a, &b]), t(F32, &[3, 5]));
    assert_eq!(
        one(&gemm(true, true), &[&a, &b, &t(F32, &[5])]),
        t(F32, &[3, 5])
    );
    assert_eq!(
        one(&gemm(true, true), &[&a, &b, &t(F32, &[3, 1])]),
        t(F32, &[3, 5])
    );
    assert_shape_error(
        &err_all(&gemm(true, true), &[&a, &b, &t(F32, &[4])]),
        2,
        &["does not broadcast to [3, 5]"],
    );
    assert_shape_error(
        &err_all(&gemm(false, true), &[&a, &b]),
        1,
        &["4 does not match 3"],
    );
    assert_shape_error(
        &err_all(&gemm(false, false), &[&t(F32, &[2, 3, 4]), &b]),
        0,
        &["expected rank 2"],
    );
}

#[test]
fn softmax_and_reductions() {
    let x = ts(F32, &[sym("b"), k(3), k(4)]);
    assert_eq!(one(&Op::Softmax { axis: -1 }, &[&x]), x);
    assert_shape_error(
        &err_all(&Op::LogSoftmax { axis: 3 }, &[&x]),
        0,
        &["axis 3 is out of range for rank 3"],
    );
    let reduce = |axes: Vec<i64>, keep_dims| Op::Reduce {
        op: ReduceOp::Sum,
        axes,
        keep_dims,
    };
    assert_eq!(one(&reduce(vec![], false), &[&x]), t(F32, &[]));
    assert_eq!(one(&reduce(vec![], true), &[&x]), t(F32, &[1, 1, 1]));
    assert_eq!(
        one(&reduce(vec![-1, 1], false), &[&x]),
        ts(F32, &[sym("b")])
    );
    assert_eq!(one(&reduce(vec![0], true), &[&x]), t(F32, &[1, 3, 4]));
    assert_attribute_error(
        &err_all(&reduce(vec![2, -1], false), &[&x]),
        "axes",
        "axis -1 is repeated",
    );
    assert_shape_error(&err_all(&reduce(vec![-4], false), &[&x]), 0, &["axis -4"]);
}

#[test]
fn normalisations() {
    let eps = 1e-6f32.to_bits();
    let x = ts(BF16, &[sym("t"), k(64)]);
    let rms = Op::RmsNorm {
        axis: -1,
        epsilon_bits: eps,
    };
    assert_eq!(one(&rms, &[&x, &t(BF16, &[64])]), x);
    assert_shape_error(
        &err_all(&rms, &[&x, &t(BF16, &[32])]),
        1,
        &["does not broadcast to [64]"],
    );
    assert_dtype_error(&err_all(&rms, &[&x, &t(F32, &[64])]), 1, F32);
    let ln = Op::LayerNorm {
        axis: 0,
        epsilon_bits: eps,
    };
    let y = t(F32, &[4, 8]);
    assert_eq!(one(&ln, &[&y, &t(F32, &[8]), &t(F32, &[4, 8])]), y);
    assert_eq!(
        infer_types(&ln, &[Some(&y), Some(&t(F32, &[1, 8])), None]).unwrap(),
        vec![y.clone()]
    );
    assert_shape_error(
        &err_all(&ln, &[&y, &t(F32, &[8]), &t(F32, &[2, 4, 8])]),
        2,
        &["does not broadcast to [4, 8]"],
    );
}

#[test]
fn topk() {
    let op = |k, axis| Op::TopK {
        k,
        axis,
        largest: true,
        sorted: true,
    };
    let x = ts(F32, &[sym("t"), k(64)]);
    let out = infer(&op(8, -1), &[&x]).unwrap();
    assert_eq!(
        out,
        vec![ts(F32, &[sym("t"), k(8)]), ts(I64, &[sym("t"), k(8)])]
    );
    // A symbolic axis cannot be checked and is accepted.
    assert_eq!(infer(&op(2, 0), &[&x]).unwrap()[0], ts(F32, &[k(2), k(64)]));
    assert_attribute_error(
        &err_all(&op(65, 1), &[&x]),
        "k",
        "k = 65 exceeds the size 64 of axis 1",
    );
}

#[test]
fn gathers() {
    let table = t(BF16, &[1000, 64]);
    let ids = ts(I64, &[sym("b"), sym("s")]);
    assert_eq!(
        one(&Op::Gather { axis: 0 }, &[&table, &ids]),
        ts(BF16, &[sym("b"), sym("s"), k(64)])
    );
    assert_eq!(
        one(&Op::Gather { axis: -1 }, &[&table, &t(I32, &[])]),
        t(BF16, &[1000])
    );
    assert_dtype_error(
        &err_all(&Op::Gather { axis: 0 }, &[&table, &t(F32, &[3])]),
        1,
        F32,
    );
    let ge = Op::GatherElements { axis: -1 };
    assert_eq!(
        one(&ge, &[&t(F32, &[3, 8]), &t(I64, &[3, 2])]),
        t(F32, &[3, 2])
    );
    assert_shape_error(
        &err_all(&ge, &[&t(F32, &[3, 8]), &t(I64, &[6])]),
        1,
        &["expected rank 2"],
    );
    assert_shape_error(
        &err_all(&ge, &[&t(F32, &[3, 8]), &t(I64, &[4, 2])]),
        1,
        &["axis 0 has size 4, more than 3"],
    );
}

#[test]
fn gather_nd_follows_onnx() {
    // The ONNX GatherND examples.
    let nd = |batch_dims| Op::GatherNd { batch_dims };
    assert_eq!(
        one(&nd(0), &[&t(F32, &[2, 2]), &t(I64, &[2, 2])]),
        t(F32, &[2])
    );
    assert_eq!(
        one(&nd(0), &[&t(F32, &[2, 2]), &t(I64, &[2, 1])]),
        t(F32, &[2, 2])
    );
    assert_eq!(
        one(&nd(0), &[&t(F32, &[2, 2, 2]), &t(I64, &[2, 1, 2])]),
        t(F32, &[2, 1, 2])
    );
    assert_eq!(
        one(&nd(1), &[&t(F32, &[2, 2, 2]), &t(I64, &[2, 1])]),
        t(F32, &[2, 2])
    );
    assert_shape_error(
        &err_all(&nd(0), &[&t(F32, &[2, 2]), &t(I64, &[2, 3])]),
        1,
        &["must lie in 1..=2"],
    );
    assert_shape_error(
        &err_all(&nd(0), &[&t(F32, &[2, 2]), &ts(I64, &[k(2), sym("m")])]),
        1,
        &["known size"],
    );
    assert_shape_error(
        &err_all(&nd(1), &[&t(F32, &[2, 2, 2]), &t(I64, &[3, 1])]),
        1,
        &["batch axis 0"],
    );
    assert_attribute_error(
        &err_all(&nd(2), &[&t(F32, &[2, 2]), &t(I64, &[2, 1])]),
        "batch_dims",
        "must be below",
    );
}

#[test]
fn scatters() {
    let se = Op::ScatterElements {
        axis: 1,
        reduction: ScatterReduction::Add,
    };
    let x = t(F32, &[3, 5]);
    let idx = t(I64, &[3, 2]);
    assert_eq!(one(&se, &[&x, &idx, &t(F32, &[3, 2])]), x);
    assert_shape_error(
        &err_all(&se, &[&x, &idx, &t(F32, &[2, 3])]),
        2,
        &["expected shape [3, 2] from operand 1 (`indices`)"],
    );
    let sn = Op::ScatterNd {
        reduction: ScatterReduction::None,
    };
    let data = t(F32, &[4, 4, 4]);
    assert_eq!(
        one(&sn, &[&data, &t(I64, &[2, 1]), &t(F32, &[2, 4, 4])]),
        data
    );
    assert_eq!(one(&sn, &[&data, &t(I64, &[3, 3]), &t(F32, &[3])]), data);
    assert_shape_error(
        &err_all(&sn, &[&data, &t(I64, &[2, 1]), &t(F32, &[2, 4])]),
        2,
        &["expected shape [2, 4, 4]"],
    );
    assert_dtype_error(
        &err_all(&sn, &[&data, &t(I64, &[2, 1]), &t(F16, &[2, 4, 4])]),
        2,
        F16,
    );
}

#[test]
fn reshape_checks_element_counts_when_decidable() {
    let reshape = |shape: Vec<Dim>| Op::Reshape { shape };
    assert_eq!(
        one(&reshape(vec![k(6), k(4)]), &[&t(F32, &[2, 3, 4])]),
        t(F32, &[6, 4])
    );
    let e = err_all(&reshape(vec![k(5), k(5)]), &[&t(F32, &[2, 3, 4])]);
    assert_shape_error(&e, 0, &["has 24 elements", "[5, 5] has 25"]);
    let (b, s) = (sym("b"), sym("s"));
    let x = ts(F32, &[b.clone(), s.clone(), k(64)]);
    let flat = vec![b.mul(&s), k(64)];
    assert_eq!(one(&reshape(flat.clone()), &[&x]), ts(F32, &flat));
    let heads = vec![b.clone(), s.clone(), k(4), k(16)];
    assert_eq!(one(&reshape(heads.clone()), &[&x]), ts(F32, &heads));
    // `s+1` elements never fit `s`.
    let e = err_all(&reshape(vec![s.clone()]), &[&ts(F32, &[s.add(&k(1))])]);
    assert_shape_error(&e, 0, &["has s+1 elements"]);
    // Undecidable (two independent symbols): accepted.
    assert_eq!(
        one(
            &reshape(vec![sym("n")]),
            &[&ts(F32, std::slice::from_ref(&s))]
        ),
        ts(F32, &[sym("n")])
    );
}

#[test]
fn transpose() {
    let x = ts(F16, &[sym("b"), k(3), k(4)]);
    assert_eq!(
        one(
            &Op::Transpose {
                perm: vec![2, 0, 1]
            },
            &[&x]
        ),
        ts(F16, &[k(4), sym("b"), k(3)])
    );
    for perm in [vec![0, 0, 1], vec![0, 1], vec![0, 1, 3]] {
        assert_attribute_error(
            &err_all(&Op::Transpose { perm }, &[&x]),
            "perm",
            "is not a permutation of the 3 axes",
        );
    }
}

#[test]
fn concat_and_split() {
    let (b, past, seq) = (sym("b"), sym("past"), sym("seq"));
    let cat = Op::Concat { axis: -1 };
    let out = one(
        &cat,
        &[
            &ts(F32, &[b.clone(), past.clone()]),
            &ts(F32, &[b.clone(), seq.clone()]),
        ],
    );
    assert_eq!(out.shape.to_string(), "[b, past+seq]");
    assert_eq!(
        one(
            &Op::Concat { axis: 0 },
            &[&t(F32, &[2, 5]), &t(F32, &[3, 5]), &t(F32, &[1, 5])]
        ),
        t(F32, &[6, 5])
    );
    assert_shape_error(
        &err_all(
            &Op::Concat { axis: 0 },
            &[&t(F32, &[2, 5]), &t(F32, &[3, 4])],
        ),
        1,
        &["axis 1 differs", "[2, 5]"],
    );
    assert_dtype_error(
        &err_all(&cat, &[&t(F32, &[2, 5]), &t(F16, &[2, 4])]),
        1,
        F16,
    );

    let split = |sizes: Vec<Dim>| Op::Split { axis: -1, sizes };
    let pieces = infer(&split(vec![k(3), k(7)]), &[&t(F32, &[2, 10])]).unwrap();
    assert_eq!(pieces, vec![t(F32, &[2, 3]), t(F32, &[2, 7])]);
    assert_shape_error(
        &err_all(&split(vec![k(3), k(6)]), &[&t(F32, &[2, 10])]),
        0,
        &["axis 1 has size 10 but the pieces add up to 9"],
    );
    let last = vec![seq.sub(&k(1)), k(1)];
    let pieces = infer(&split(last), &[&ts(F32, std::slice::from_ref(&seq))]).unwrap();
    assert_eq!(pieces[0].shape.to_string(), "[seq-1]");
    assert_eq!(pieces[1], t(F32, &[1]));
    assert_attribute_error(
        &err_all(&split(vec![]), &[&t(F32, &[2])]),
        "sizes",
        "at least one piece",
    );
}

fn slice_op(starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64>) -> Op {
    Op::Slice {
        axes: vec![-1; starts.len()],
        starts,
        ends,
        steps,
    }
}

#[test]
fn slice_clamps_known_axes_like_onnx() {
    // Lengths agree with Python's `len(range(d)[start:end:step])`, which clamps like ONNX.
    let cases: [(u64, i64, i64, i64, u64); 10] = [
        (10, 2, -1, 3, 3),
        (10, -1, i64::MIN, -1, 10),
        (10, 100, 200, 1, 0),
        (10, -100, 3, 1, 3),
        (10, 0, i64::MAX, 4, 3),
        (10, 8, 2, -2, 3),
        (10, -3, -100, -3, 3),
        (10, 5, 5, 1, 0),
        (0, 0, i64::MAX, -1, 0),
        (7, i64::MAX, i64::MIN, -2, 4),
    ];
    for (d, start, end, step, want) in cases {
        let op = slice_op(vec![start], vec![end], vec![step]);
        assert_eq!(
            one(&op, &[&t(F32, &[2, d])]),
            t(F32, &[2, want]),
            "[{start}:{end}:{step}] of {d}"
        );
    }
    assert_attribute_error(
        &err_all(&slice_op(vec![0], vec![1], vec![0]), &[&t(F32, &[4])]),
        "steps",
        "zero",
    );
    let mismatched = Op::Slice {
        axes: vec![0],
        starts: vec![0, 1],
        ends: vec![1],
        steps: vec![1],
    };
    assert_attribute_error(&err_all(&mismatched, &[&t(F32, &[4])]), "axes", "lengths");
}

#[test]
fn slice_on_symbolic_axes() {
    let x = ts(F32, &[sym("b"), sym("seq")]);
    let cases: [(i64, i64, i64, &str); 7] = [
        (1, i64::MAX, 1, "[b, seq-1]"),
        (0, -1, 1, "[b, seq-1]"),
        (-1, i64::MAX, 1, "[b, 1]"),
        (0, 128, 1, "[b, min(seq, 128)]"),
        (-3, -1, 1, "[b, 2]"),
        (2, i64::MAX, 2, "[b, ceildiv(seq-2, 2)]"),
        (0, i64::MAX, 1, "[b, seq]"),
    ];
    for (start, end, step, want) in cases {
        let op = slice_op(vec![start], vec![end], vec![step]);
        assert_eq!(
            one(&op, &[&x]).shape.to_string(),
            want,
            "[{start}:{end}:{step}]"
        );
    }
    let e = err_all(&slice_op(vec![-1], vec![i64::MIN], vec![-1]), &[&x]);
    assert_shape_error(&e, 0, &["symbolic size seq", "positive steps"]);
    let e = err_all(&slice_op(vec![-4], vec![2], vec![1]), &[&x]);
    assert_shape_error(&e, 0, &["no exact size"]);
}

#[test]
fn squeeze_unsqueeze_expand() {
    let x = t(F32, &[1, 3, 1]);
    assert_eq!(one(&Op::Squeeze { axes: vec![0, -1] }, &[&x]), t(F32, &[3]));
    assert_eq!(one(&Op::Squeeze { axes: vec![] }, &[&x]), x);
    assert_shape_error(
        &err_all(&Op::Squeeze { axes: vec![1] }, &[&x]),
        0,
        &["axis 1 has size 3, not 1"],
    );
    assert_shape_error(
        &err_all(&Op::Squeeze { axes: vec![0] }, &[&ts(F32, &[sym("b")])]),
        0,
        &["symbolic size b"],
    );
    let y = ts(F32, &[sym("s"), k(4)]);
    assert_eq!(
        one(&Op::Unsqueeze { axes: vec![0, -1] }, &[&y]),
        ts(F32, &[k(1), sym("s"), k(4), k(1)])
    );
    assert_eq!(
        one(&Op::Unsqueeze { axes: vec![1] }, &[&y]),
        ts(F32, &[sym("s"), k(1), k(4)])
    );
    assert_shape_error(
        &err_all(&Op::Unsqueeze { axes: vec![4] }, &[&y]),
        0,
        &["axis 4 is out of range for result rank 3"],
    );
    let expand = Op::Expand {
        shape: vec![sym("b"), k(1), k(4)],
    };
    assert_eq!(
        one(&expand, &[&t(F32, &[3, 1])]),
        ts(F32, &[sym("b"), k(3), k(4)])
    );
    assert_shape_error(
        &err_all(&Op::Expand { shape: vec![k(4)] }, &[&t(F32, &[3])]),
        0,
        &["does not broadcast with the target shape [4]"],
    );
}

#[test]
fn range_cumsum_argmax_trilu() {
    let scalar = t(I64, &[]);
    let range = Op::Range { len: sym("n") };
    assert_eq!(
        one(&range, &[&scalar, &scalar, &scalar]),
        ts(I64, &[sym("n")])
    );
    assert_shape_error(
        &err_all(&range, &[&scalar, &t(I64, &[1]), &scalar]),
        1,
        &["expected rank 0"],
    );
    assert_dtype_error(&err_all(&range, &[&scalar, &scalar, &t(I32, &[])]), 2, I32);

    let x = t(F32, &[2, 3, 4]);
    let cumsum = Op::CumSum {
        axis: -3,
        exclusive: false,
        reverse: true,
    };
    assert_eq!(one(&cumsum, &[&x]), x);
    let argmax = |axis, keep_dims| Op::ArgMax {
        axis,
        keep_dims,
        select_last_index: false,
    };
    assert_eq!(one(&argmax(-2, false), &[&x]), t(I64, &[2, 4]));
    assert_eq!(one(&argmax(1, true), &[&x]), t(I64, &[2, 1, 4]));
    assert_shape_error(&err_all(&argmax(3, true), &[&x]), 0, &["axis 3"]);

    let trilu = Op::Trilu { upper: true, k: -1 };
    assert_eq!(one(&trilu, &[&x]), x);
    assert_shape_error(&err_all(&trilu, &[&t(F32, &[4])]), 0, &["rank at least 2"]);
}

#[test]
fn einsum_equations() {
    let einsum = |equation: &str| Op::Einsum {
        equation: equation.into(),
    };
    let a = ts(F32, &[sym("b"), k(2), k(3)]);
    let b = ts(F32, &[sym("b"), k(3), k(5)]);
    assert_eq!(
        one(&einsum("bij, bjk -> bik"), &[&a, &b]),
        ts(F32, &[sym("b"), k(2), k(5)])
    );
    assert_eq!(
        one(&einsum("bij,bjk->kb"), &[&a, &b]),
        ts(F32, &[k(5), sym("b")])
    );
    assert_eq!(one(&einsum("ii->i"), &[&t(F32, &[4, 4])]), t(F32, &[4]));
    let e = err_all(&einsum("bij,bkj->bik"), &[&a, &b]);
    assert_shape_error(
        &e,
        1,
        &["axis 2 (`j`) has size 5 but `j` has size 3 in operand 0"],
    );
    assert_attribute_error(&err_all(&einsum("bij,bjk"), &[&a, &b]), "equation", "`->`");
    assert_attribute_error(
        &err_all(&einsum("...ij,...jk->...ik"), &[&a, &b]),
        "equation",
        "ellipsis",
    );
    assert_attribute_error(
        &err_all(&einsum("bij,bjk->bix"), &[&a, &b]),
        "equation",
        "`x` appears in no input",
    );
    assert_attribute_error(
        &err_all(&einsum("bij->bii"), &[&a]),
        "equation",
        "`i` is repeated",
    );
    assert_attribute_error(
        &err_all(&einsum("bij->b"), &[&a, &b]),
        "equation",
        "1 input terms",
    );
    assert_shape_error(&err_all(&einsum("ij->i"), &[&a]), 0, &["`ij` has 2 axes"]);
}

#[test]
fn dequantize_blocks() {
    let deq = |block: Vec<u64>, to| Op::Dequantize { block, to };
    let x = t(F8E4M3FN, &[256, 300]);
    assert_eq!(
        one(&deq(vec![128, 128], BF16), &[&x, &t(F32, &[2, 3])]),
        t(BF16, &[256, 300])
    );
    assert_eq!(
        one(&deq(vec![1, 32], F32), &[&x, &t(E8M0, &[256, 10])]),
        t(F32, &[256, 300])
    );
    assert_eq!(
        one(&deq(vec![], F16), &[&x, &t(F32, &[])]),
        t(F16, &[256, 300])
    );
    let q = ts(DType::I8, &[sym("n"), k(64)]);
    let scale = ts(F32, &[sym("n"), k(1)]);
    let zero = ts(DType::I8, &[sym("n"), k(1)]);
    assert_eq!(
        one(&deq(vec![1, 64], F32), &[&q, &scale, &zero]),
        ts(F32, &[sym("n"), k(64)])
    );
    assert_dtype_error(
        &err_all(&deq(vec![1, 64], F32), &[&q, &scale, &t(DType::U8, &[1])]),
        2,
        DType::U8,
    );
    let e = err_all(&deq(vec![128, 128], BF16), &[&x, &t(F32, &[2, 2])]);
    assert_shape_error(&e, 1, &["axis 1 has size 2 but ceildiv(300, 128)", "is 3"]);
    assert_dtype_error(
        &err_all(&deq(vec![], F32), &[&t(F32, &[4]), &t(F32, &[])]),
        0,
        F32,
    );
    assert_attribute_error(
        &err_all(&deq(vec![128], F32), &[&x, &t(F32, &[2])]),
        "block",
        "one entry per axis",
    );
    assert_attribute_error(
        &err_all(&deq(vec![], F8E4M3FN), &[&x, &t(F32, &[])]),
        "to",
        "f8e4m3fn",
    );
}

#[test]
fn swiglu_and_rope() {
    let split = Op::SwiGlu {
        split: true,
        limit_bits: None,
    };
    assert_eq!(one(&split, &[&t(BF16, &[4, 22])]), t(BF16, &[4, 11]));
    let i = sym("i");
    assert_eq!(
        one(&split, &[&ts(BF16, &[sym("t"), i.mul(&k(2))])]),
        ts(BF16, &[sym("t"), i.clone()])
    );
    assert_shape_error(&err_all(&split, &[&t(BF16, &[4, 21])]), 0, &["21 is odd"]);
    let pair = Op::SwiGlu {
        split: false,
        limit_bits: Some(7.0f32.to_bits()),
    };
    let g = t(F32, &[4, 8]);
    assert_eq!(one(&pair, &[&g, &g]), g);
    assert_shape_error(
        &err_all(&pair, &[&g, &t(F32, &[4, 9])]),
        1,
        &["expected shape [4, 8]"],
    );

    let rope = Op::Rope { interleaved: false };
    let x = ts(F16, &[k(1), k(8), sym("s"), k(128)]);
    let cos = ts(F16, &[sym("s"), k(32)]);
    assert_eq!(one(&rope, &[&x, &cos, &cos]), x);
    let wide = ts(F16, &[sym("s"), k(80)]);
    assert_shape_error(
        &err_all(&rope, &[&x, &wide, &wide]),
        0,
        &["128 is smaller than 2·80"],
    );
    let other = ts(F16, &[sym("t"), k(32)]);
    assert_shape_error(
        &err_all(&rope, &[&x, &other, &other]),
        1,
        &["does not broadcast to [1, 8, s, 32]"],
    );
    assert_shape_error(
        &err_all(&rope, &[&x, &cos, &t(F16, &[1, 32])]),
        2,
        &["expected shape [s, 32]"],
    );
}

#[test]
fn attention_grouped_heads() {
    let op = Op::Attention {
        scale_bits: 0.125f32.to_bits(),
        causal: true,
    };
    let (s, tt) = (sym("s"), sym("t"));
    let q = ts(BF16, &[k(1), k(32), s.clone(), k(128)]);
    let kv = ts(BF16, &[k(1), k(8), tt.clone(), k(128)]);
    let v = ts(BF16, &[k(1), k(8), tt.clone(), k(64)]);
    let want = ts(BF16, &[k(1), k(32), s.clone(), k(64)]);
    assert_eq!(one(&op, &[&q, &kv, &v]), want);
    let mask = ts(Bool, &[s.clone(), tt.clone()]);
    assert_eq!(one(&op, &[&q, &kv, &v, &mask]), want);
    let float_mask = ts(F32, &[k(1), k(1), s.clone(), tt.clone()]);
    assert_eq!(one(&op, &[&q, &kv, &v, &float_mask]), want);
    assert_shape_error(
        &err_all(
            &op,
            &[&q, &kv, &v, &ts(Bool, &[k(2), s.clone(), tt.clone()])],
        ),
        3,
        &["does not broadcast to [1, 32, s, t]"],
    );
    assert_dtype_error(
        &err_all(&op, &[&q, &kv, &v, &ts(I64, &[s.clone(), tt.clone()])]),
        3,
        I64,
    );
    let q6 = ts(BF16, &[k(1), k(6), s.clone(), k(128)]);
    let kv4 = ts(BF16, &[k(1), k(4), tt.clone(), k(128)]);
    assert_shape_error(
        &err_all(&op, &[&q6, &kv4, &kv4]),
        1,
        &["4 key/value heads do not divide the 6 query heads"],
    );
    let short = ts(BF16, &[k(1), k(8), tt.clone(), k(64)]);
    assert_shape_error(&err_all(&op, &[&q, &short, &v]), 1, &["axis 3 has size 64"]);
    assert_shape_error(
        &err_all(&op, &[&q, &kv, &ts(BF16, &[k(1), k(8), s.clone(), k(64)])]),
        2,
        &["axis 2 has size s but", "is t"],
    );
}

#[test]
fn grouped_matmul() {
    let x = ts(BF16, &[sym("t"), k(64)]);
    let w = t(BF16, &[8, 128, 64]);
    let sizes = t(I64, &[8]);
    assert_eq!(
        one(&Op::GroupedMatMul, &[&x, &w, &sizes]),
        ts(BF16, &[sym("t"), k(128)])
    );
    assert_shape_error(
        &err_all(&Op::GroupedMatMul, &[&x, &t(BF16, &[8, 128, 32]), &sizes]),
        1,
        &["axis 2 has size 32 but the size in operand 0 (`x`)"],
    );
    assert_shape_error(
        &err_all(&Op::GroupedMatMul, &[&x, &w, &t(I64, &[4])]),
        2,
        &["expert count"],
    );
    assert_dtype_error(
        &err_all(&Op::GroupedMatMul, &[&x, &w, &t(I32, &[8])]),
        2,
        I32,
    );
}

struct MoeOperands {
    x: TensorType,
    logits: TensorType,
    gate: TensorType,
    down: TensorType,
    bias: TensorType,
    ids: TensorType,
    table: TensorType,
}

fn moe_operands() -> MoeOperands {
    let tokens = sym("t");
    MoeOperands {
        x: ts(BF16, &[tokens.clone(), k(64)]),
        logits: ts(F32, &[tokens.clone(), k(16)]),
        gate: t(BF16, &[16, 32, 64]),
        down: t(BF16, &[16, 64, 32]),
        bias: t(F32, &[16]),
        ids: ts(I64, &[tokens]),
        table: t(I64, &[1000, 2]),
    }
}

fn moe(routing: RoutingMode, activation: ExpertActivation) -> Op {
    Op::Moe {
        top_k: 2,
        routing,
        activation,
    }
}

#[test]
fn moe_gated_and_ungated() {
    let m = moe_operands();
    let softmax = RoutingMode::SoftmaxTopK { normalize: true };
    let gated = moe(softmax.clone(), ExpertActivation::SwiGlu);
    let out = infer_types(
        &gated,
        &[
            Some(&m.x),
            Some(&m.logits),
            Some(&m.gate),
            Some(&m.gate),
            Some(&m.down),
        ],
    );
    assert_eq!(out.unwrap(), vec![m.x.clone()]);
    let e = err(
        &gated,
        &[
            Some(&m.x),
            Some(&m.logits),
            None,
            Some(&m.gate),
            Some(&m.down),
        ],
    );
    assert!(matches!(
        e,
        InferError::MissingOperand {
            index: 2,
            operand: "gate",
            ..
        }
    ));

    let ungated = moe(softmax.clone(), ExpertActivation::Gelu);
    let out = infer_types(
        &ungated,
        &[
            Some(&m.x),
            Some(&m.logits),
            None,
            Some(&m.gate),
            Some(&m.down),
        ],
    );
    assert_eq!(out.unwrap(), vec![m.x.clone()]);
    let e = err(
        &ungated,
        &[
            Some(&m.x),
            Some(&m.logits),
            Some(&m.gate),
            Some(&m.gate),
            Some(&m.down),
        ],
    );
    assert!(
        matches!(e, InferError::UnexpectedOperand { index: 2, .. }),
        "{e:?}"
    );

    let e = err(
        &gated,
        &[
            Some(&m.x),
            Some(&m.logits),
            Some(&m.gate),
            Some(&m.gate),
            Some(&m.gate),
        ],
    );
    assert_shape_error(
        &e,
        4,
        &["axis 1 has size 32 but the size in operand 0 (`x`)"],
    );
    let e = err(
        &gated,
        &[
            Some(&m.x),
            Some(&m.logits),
            Some(&m.gate),
            Some(&m.gate),
            Some(&m.down),
            Some(&m.bias),
        ],
    );
    assert!(
        matches!(e, InferError::UnexpectedOperand { index: 5, .. }),
        "{e:?}"
    );
    let too_many = Op::Moe {
        top_k: 17,
        routing: softmax,
        activation: ExpertActivation::SwiGlu,
    };
    let e = err(
        &too_many,
        &[
            Some(&m.x),
            Some(&m.logits),
            Some(&m.gate),
            Some(&m.gate),
            Some(&m.down),
        ],
    );
    assert_attribute_error(&e, "top_k", "17 exceeds the 16 experts");
}

#[test]
fn moe_routing_operands() {
    let m = moe_operands();
    let scaling_bits = 2.5f32.to_bits();
    let grouped = |n_group, topk_group| {
        moe(
            RoutingMode::SigmoidGroupLimited {
                n_group,
                topk_group,
                normalize: true,
                scaling_bits,
            },
            ExpertActivation::SwiGlu,
        )
    };
    let with_bias = [
        Some(&m.x),
        Some(&m.logits),
        Some(&m.gate),
        Some(&m.gate),
        Some(&m.down),
        Some(&m.bias),
    ];
    assert_eq!(
        infer_types(&grouped(4, 2), &with_bias).unwrap(),
        vec![m.x.clone()]
    );
    assert_attribute_error(
        &err(&grouped(3, 2), &with_bias),
        "n_group",
        "3 groups do not divide 16",
    );
    assert_attribute_error(&err(&grouped(16, 2), &with_bias), "n_group", "top two");
    assert_attribute_error(
        &err(&grouped(4, 5), &with_bias),
        "topk_group",
        "cannot supply",
    );
    let short_bias = t(F32, &[8]);
    let mut bad_bias = with_bias;
    bad_bias[5] = Some(&short_bias);
    assert_shape_error(&err(&grouped(4, 2), &bad_bias), 5, &["expert count"]);

    let hash = moe(
        RoutingMode::Hash {
            normalize: true,
            scaling_bits,
        },
        ExpertActivation::SwiGluClamped {
            limit_bits: 10.0f32.to_bits(),
        },
    );
    let hashed = [
        Some(&m.x),
        Some(&m.logits),
        Some(&m.gate),
        Some(&m.gate),
        Some(&m.down),
        None,
        Some(&m.ids),
        Some(&m.table),
    ];
    assert_eq!(infer_types(&hash, &hashed).unwrap(), vec![m.x.clone()]);
    let e = err(&hash, &hashed[..7]);
    assert!(
        matches!(
            e,
            InferError::MissingOperand {
                index: 7,
                operand: "table",
                ..
            }
        ),
        "{e:?}"
    );
    let wide_table = t(I64, &[1000, 3]);
    let mut bad_table = hashed;
    bad_table[7] = Some(&wide_table);
    assert_shape_error(
        &err(&hash, &bad_table),
        7,
        &["axis 1 has size 3 but top_k is 2"],
    );
    let softplus = moe(
        RoutingMode::SqrtSoftplus {
            normalize: false,
            scaling_bits,
        },
        ExpertActivation::SwiGlu,
    );
    let e = err(&softplus, &hashed);
    assert!(
        matches!(e, InferError::UnexpectedOperand { index: 6, .. }),
        "{e:?}"
    );
}

/// Result shapes that ONNX's reference implementation gives for the same nodes
/// (`scripts/gen_infer_shape_cases.py`).
const ONNX_SHAPES: &str = include_str!("fixtures/infer/onnx_shapes.txt");

fn parse_shape(text: &str) -> Vec<u64> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("bad shape `{text}`"));
    inner
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap_or_else(|_| panic!("bad dim `{d}`")))
        .collect()
}

fn int_list(attrs: &BTreeMap<&str, &str>, key: &str) -> Vec<i64> {
    attrs[key]
        .split(',')
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad {key} `{v}`")))
        .collect()
}

fn int(attrs: &BTreeMap<&str, &str>, key: &str) -> i64 {
    attrs[key]
        .parse()
        .unwrap_or_else(|_| panic!("bad {key} `{}`", attrs[key]))
}

/// The cubevec op of a fixture line, and the dtype of each operand slot.
fn fixture_op(name: &str, attrs: &BTreeMap<&str, &str>) -> (Op, Vec<DType>) {
    let flag = |key| int(attrs, key) != 0;
    let dims = |key| {
        int_list(attrs, key)
            .into_iter()
            .map(|d| Dim::Known(d as u64))
            .collect()
    };
    let floats = vec![F32; 3];
    let indexed = vec![F32, I64, F32];
    match name {
        "matmul" => (Op::MatMul, floats),
        "gemm" => (
            Op::Gemm {
                alpha_bits: 1.0f32.to_bits(),
                beta_bits: 1.0f32.to_bits(),
                trans_a: flag("trans_a"),
                trans_b: flag("trans_b"),
            },
            floats,
        ),
        "add" => (Op::Binary(BinaryOp::Add), floats),
        "where" => (Op::Where, vec![Bool, F32, F32]),
        "reduce_sum" => (
            Op::Reduce {
                op: ReduceOp::Sum,
                axes: int_list(attrs, "axes"),
                keep_dims: flag("keep_dims"),
            },
            floats,
        ),
        "argmax" => (
            Op::ArgMax {
                axis: int(attrs, "axis"),
                keep_dims: flag("keep_dims"),
                select_last_index: false,
            },
            floats,
        ),
        "topk" => (
            Op::TopK {
                k: int(attrs, "k") as u64,
                axis: int(attrs, "axis"),
                largest: true,
                sorted: true,
            },
            floats,
        ),
        "gather" => (
            Op::Gather {
                axis: int(attrs, "axis"),
            },
            indexed,
        ),
        "gather_elements" => (
            Op::GatherElements {
                axis: int(attrs, "axis"),
            },
            indexed,
        ),
        "gather_nd" => (
            Op::GatherNd {
                batch_dims: int(attrs, "batch_dims") as u64,
            },
            indexed,
        ),
        "scatter_nd" => (
            Op::ScatterNd {
                reduction: ScatterReduction::None,
            },
            indexed,
        ),
        "scatter_elements" => (
            Op::ScatterElements {
                axis: int(attrs, "axis"),
                reduction: ScatterReduction::None,
            },
            indexed,
        ),
        "transpose" => (
            Op::Transpose {
                perm: int_list(attrs, "perm")
                    .into_iter()
                    .map(|p| p as u64)
                    .collect(),
            },
            floats,
        ),
        "concat" => (
            Op::Concat {
                axis: int(attrs, "axis"),
            },
            floats,
        ),
        "split" => (
            Op::Split {
                axis: int(attrs, "axis"),
                sizes: dims("sizes"),
            },
            floats,
        ),
        "squeeze" => (
            Op::Squeeze {
                axes: int_list(attrs, "axes"),
            },
            floats,
        ),
        "unsqueeze" => (
            Op::Unsqueeze {
                axes: int_list(attrs, "axes"),
            },
            floats,
        ),
        "expand" => (
            Op::Expand {
                shape: dims("shape"),
            },
            floats,
        ),
        "reshape" => (
            Op::Reshape {
                shape: dims("shape"),
            },
            floats,
        ),
        "trilu" => (Op::Trilu { upper: true, k: 0 }, floats),
        "slice" => (
            Op::Slice {
                axes: int_list(attrs, "axes"),
                starts: int_list(attrs, "starts"),
                ends: int_list(attrs, "ends"),
                steps: int_list(attrs, "steps"),
            },
            floats,
        ),
        "einsum" => (
            Op::Einsum {
                equation: attrs["equation"].to_string(),
            },
            floats,
        ),
        other => panic!("unknown fixture op `{other}`"),
    }
}

#[test]
fn result_shapes_agree_with_onnx_reference() {
    let mut checked = 0;
    for line in ONNX_SHAPES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let fields: Vec<&str> = line.split(" ; ").map(str::trim).collect();
        let [name, attrs, operands, results] = fields[..] else {
            panic!("bad fixture line `{line}`");
        };
        let attrs: BTreeMap<&str, &str> = attrs
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let (op, dtypes) = fixture_op(name, &attrs);
        let operand_types: Vec<TensorType> = operands
            .split(" | ")
            .enumerate()
            .map(|(i, s)| t(dtypes.get(i).copied().unwrap_or(F32), &parse_shape(s)))
            .collect();
        let refs: Vec<&TensorType> = operand_types.iter().collect();
        let got: Vec<Shape> = infer(&op, &refs)
            .unwrap_or_else(|e| panic!("`{line}`: {e}"))
            .into_iter()
            .map(|ty| ty.shape)
            .collect();
        let want: Vec<Shape> = results
            .split(" | ")
            .map(|s| Shape::known(&parse_shape(s)))
            .collect();
        assert_eq!(got, want, "`{line}`");
        checked += 1;
    }
    assert!(checked > 150, "only {checked} fixture cases");
}
