//! Lowerings the ONNX exports need: `Pow` (constant and tensor exponents), one-operand
//! `SwiGlu`, `ScatterNd` with constant indices, `IsNaN` and `IsInf`, run with the kernel-IR
//! reference executor on shapes with tails and compared with the graph interpreter.

mod launches;
mod lower_run;
mod lower_support;
mod random_data;

use cubevec_ir::kernel::VecOp;
use cubevec_ir::op::{BinaryOp, ScatterReduction, UnaryOp};
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op, Tensor};
use cubevec_passes::lower::{Lowering, OpContext, TensorShape, elementwise, movement};
use lower_support::{check, random};

const POW: Op = Op::Binary(BinaryOp::Pow);

#[test]
fn pow_by_constant_exponents_matches_powf() {
    // Negative bases included: integer exponents keep the sign, fractional ones give NaN.
    // Each exponent with the vector op its chain must use.
    let cases = [
        (2.0f32, VecOp::Mul),
        (0.5, VecOp::Sqrt),
        (1.0, VecOp::Muls),
        (0.0, VecOp::Duplicate),
        (-1.0, VecOp::Reciprocal),
        (3.0, VecOp::Ln),
        (-3.0, VecOp::Reciprocal),
        (4.0, VecOp::Ln),
        (-2.0, VecOp::Ln),
        (1.7, VecOp::Ln),
        (-0.5, VecOp::Ln),
    ];
    for (seed, (y, uses)) in cases.into_iter().enumerate() {
        let x = random(DType::F32, &[3, 37], seed as u64);
        let exponent = Tensor::from_f32(DType::F32, vec![], &[y]);
        let l = check(
            &|ctx| elementwise::lower_pow(ctx, Some(&exponent)),
            POW,
            vec![x, exponent.clone()],
            1e-5,
        );
        assert_eq!(l.calls.len(), 1, "x^{y}: one chain, x needs no broadcast");
        let chain = &l.calls[0].kernel;
        assert_eq!(chain.params.len(), 2, "x^{y} reads x alone");
        let text = chain.to_string();
        assert!(text.contains(uses.name()), "x^{y} uses {}", uses.name());
        if [2.0, 0.5].contains(&y) {
            assert!(!text.contains(VecOp::Exp.name()), "x^{y} needs no exp");
        }
    }
    // A 16-bit operand, broadcast against a larger constant exponent.
    let exponent = Tensor::from_f32(DType::BF16, vec![2, 1, 1], &[2.0, 2.0]);
    let l = check(
        &|ctx| elementwise::lower_pow(ctx, Some(&exponent)),
        POW,
        vec![random(DType::BF16, &[5, 67], 20), exponent.clone()],
        1e-2,
    );
    assert_eq!(
        l.scratch.len(),
        1,
        "x is broadcast to the result's shape first"
    );
}

#[test]
fn pow_by_tensor_exponents_keeps_the_sign_of_negative_bases() {
    // Exponents mixing integers (even and odd, negative) and fractions, against bases of both
    // signs.
    let raw = random(DType::F32, &[4, 45], 31).to_f32_vec();
    let y: Vec<f32> = raw
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 2 == 0 { (v * 2.0).round() } else { v })
        .collect();
    let y = Tensor::from_f32(DType::F32, vec![4, 45], &y);
    check(
        &|ctx| elementwise::lower_pow(ctx, None),
        POW,
        vec![random(DType::F32, &[4, 45], 32), y],
        1e-5,
    );
    // Broadcasting both ways: x [3, 1, 33] against y [5, 1].
    let l = check(
        &|ctx| elementwise::lower_pow(ctx, None),
        POW,
        vec![
            random(DType::F32, &[3, 1, 33], 33),
            Tensor::from_f32(DType::F32, vec![5, 1], &[2.0, -1.0, 3.0, 0.5, -2.5]),
        ],
        1e-5,
    );
    assert_eq!(l.scratch.len(), 2);
}

#[test]
fn split_swiglu_matches_the_interpreter() {
    for (limit, seed) in [(None, 40), (Some(1.5f32), 41)] {
        let op = Op::SwiGlu {
            split: true,
            limit_bits: limit.map(f32::to_bits),
        };
        let l = check(
            &elementwise::lower_split_swiglu,
            op,
            vec![random(DType::F32, &[3, 5, 2 * 48], seed)],
            1e-5,
        );
        assert_eq!(l.calls.len(), 2, "a split, then the activation");
    }
    check(
        &elementwise::lower_split_swiglu,
        Op::SwiGlu {
            split: true,
            limit_bits: None,
        },
        vec![random(DType::BF16, &[7, 2 * 40], 42)],
        1e-2,
    );
}

fn scatter(
    data: &[usize],
    indices: (Vec<usize>, Vec<i64>),
    updates: &[usize],
    seed: u64,
) -> Lowering {
    let indices = Tensor::from_i64(DType::I64, indices.0, &indices.1);
    let op = Op::ScatterNd {
        reduction: ScatterReduction::None,
    };
    check(
        &|ctx| movement::lower_scatter_nd(ctx, ScatterReduction::None, Some(&indices)),
        op,
        vec![
            random(DType::F32, data, seed),
            indices.clone(),
            random(DType::F32, updates, seed + 1),
        ],
        0.0,
    )
}

#[test]
fn scatter_nd_with_constant_indices() {
    // The exported slice assignment of DeepSeek-V3's rope: the first 16 of 24 rows.
    let l = scatter(
        &[24, 4, 5, 3],
        (vec![16, 1], (0..16).collect()),
        &[16, 4, 5, 3],
        50,
    );
    assert_eq!(l.calls.len(), 1);
    // Scattered, negative and repeated indices (the last update wins).
    scatter(&[9, 37], (vec![4, 1], vec![5, -1, 2, 5]), &[4, 37], 52);
    // Index pairs addressing rows of a 3-D tensor.
    scatter(
        &[3, 4, 19],
        (vec![3, 2], vec![0, 3, 2, -4, 1, 1]),
        &[3, 19],
        54,
    );
    let indices = Tensor::from_i64(DType::I64, vec![1, 1], &[9]);
    let target = Target::by_name("ascend910b2").expect("target");
    let op = Op::ScatterNd {
        reduction: ScatterReduction::None,
    };
    let ctx = OpContext {
        name: "k1_scatter",
        op: &op,
        inputs: vec![
            Some(TensorShape::new(DType::F32, vec![4, 8])),
            Some(TensorShape::new(DType::I64, vec![1, 1])),
            Some(TensorShape::new(DType::F32, vec![1, 8])),
        ],
        outputs: vec![TensorShape::new(DType::F32, vec![4, 8])],
        target: &target,
    };
    let err = movement::lower_scatter_nd(&ctx, ScatterReduction::None, Some(&indices))
        .expect_err("index 9 of 4 rows");
    assert!(err.to_string().contains("index 9"), "{err}");
    let err = movement::lower_scatter_nd(&ctx, ScatterReduction::None, None)
        .expect_err("unknown indices");
    assert!(err.to_string().contains("constant"), "{err}");
}

#[test]
fn isnan_and_isinf_classify_special_values() {
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let mut v = random(DType::F32, &[3, 41], 60).to_f32_vec();
        for (i, special) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN, -0.0]
            .into_iter()
            .enumerate()
        {
            v[i * 17] = special;
        }
        let x = Tensor::from_f32(dtype, vec![3, 41], &v);
        for op in [UnaryOp::IsNaN, UnaryOp::IsInf] {
            check(
                &movement::lower_classify,
                Op::Unary(op),
                vec![x.clone()],
                0.0,
            );
        }
    }
}
