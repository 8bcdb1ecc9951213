//! Broadcast-batch and f32 `MatMul`, clamped `SwiGlu` and inner-axis `Softmax` lowerings, run
//! with the kernel-IR reference executor and compared with the graph interpreter.

use cubevec_ir::kernel::{GmData, ParamRole, execute};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op, Tensor, interp};
use cubevec_passes::lower::{ArgRef, LowerError, Lowering, OpContext, TensorShape, misc};

type LowerFn = fn(&OpContext) -> Result<Lowering, LowerError>;

/// Deterministic values in [-2, 2).
fn random(dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_f32(dtype, shape.to_vec(), &v)
}

fn shape_of(t: &Tensor) -> TensorShape {
    TensorShape::new(t.dtype(), t.shape().iter().map(|&d| d as u64).collect())
}

/// Lowers `op`, runs every launch over GM data and compares result 0 with the interpreter within
/// `tol · max(1, |reference|)`; returns the lowering.
fn check(f: LowerFn, op: Op, inputs: Vec<Tensor>, tol: f64) -> Lowering {
    let refs: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
    let expected = interp::eval_op(&op, &refs, &DimBindings::new()).expect("reference");
    let out = shape_of(&expected[0]);
    let target = Target::by_name("ascend910b2").expect("target");
    let ctx = OpContext {
        name: "k5_layer0_op",
        op: &op,
        inputs: inputs.iter().map(|t| Some(shape_of(t))).collect(),
        outputs: vec![out.clone()],
        target: &target,
    };
    let lowering = f(&ctx).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    let mut operands: Vec<GmData> = inputs.iter().map(GmData::from_tensor).collect();
    let mut result = GmData::zeros(out.dtype, out.elements() as usize);
    let mut scratch: Vec<GmData> = lowering
        .scratch
        .iter()
        .map(|s| GmData::zeros(s.tensor.dtype, s.tensor.elements() as usize))
        .collect();
    for call in &lowering.calls {
        let mut params: Vec<GmData> = call
            .args
            .iter()
            .map(|a| match *a {
                ArgRef::Operand(i) => operands[i].clone(),
                ArgRef::Result(_) => result.clone(),
                ArgRef::Scratch(i) => scratch[i].clone(),
            })
            .collect();
        if let Err(e) = execute(&call.kernel, &mut params) {
            panic!("{}: {e}\n{}", call.kernel.name, call.kernel);
        }
        for ((a, data), p) in call.args.iter().zip(params).zip(&call.kernel.params) {
            if p.role == ParamRole::Input {
                continue;
            }
            match *a {
                ArgRef::Operand(i) => operands[i] = data,
                ArgRef::Result(_) => result = data,
                ArgRef::Scratch(i) => scratch[i] = data,
            }
        }
    }
    let dims: Vec<usize> = out.shape.iter().map(|&d| d as usize).collect();
    let got = result.to_tensor(dims).expect("result tensor");
    for (j, (a, b)) in got
        .to_f64_vec()
        .iter()
        .zip(expected[0].to_f64_vec())
        .enumerate()
    {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{op:?} element {j}: {a} vs {b}"
        );
    }
    lowering
}

#[test]
fn matmul_with_broadcast_batches() {
    // The compressed-attention scores of DeepSeek-V4: one key head for four query heads.
    let l = check(
        misc::lower_broadcast_matmul,
        Op::MatMul,
        vec![
            random(DType::F32, &[2, 4, 17, 32], 1),
            random(DType::F32, &[2, 1, 32, 24], 2),
        ],
        1e-4,
    );
    assert_eq!(l.calls.len(), 2, "one copy of the right operand, one GEMM");
    check(
        misc::lower_broadcast_matmul,
        Op::MatMul,
        vec![
            random(DType::BF16, &[3, 1, 16, 32], 3),
            random(DType::BF16, &[1, 2, 32, 16], 4),
        ],
        2e-2,
    );
}

#[test]
fn f32_matmul_by_a_plain_matrix() {
    let l = check(
        misc::lower_broadcast_matmul,
        Op::MatMul,
        vec![
            random(DType::F32, &[2, 7, 40], 5),
            random(DType::F32, &[40, 24], 6),
        ],
        1e-4,
    );
    assert_eq!(l.scratch.len(), 1, "the right operand is stored transposed");
}

#[test]
fn clamped_swiglu() {
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 1e-2)] {
        check(
            misc::lower_clamped_swiglu,
            Op::SwiGlu {
                split: false,
                limit_bits: Some(1.5f32.to_bits()),
            },
            vec![random(dtype, &[3, 50], 7), random(dtype, &[3, 50], 8)],
            tol,
        );
    }
}

#[test]
fn softmax_along_an_inner_axis() {
    check(
        misc::lower_inner_softmax,
        Op::Softmax { axis: 2 },
        vec![random(DType::F32, &[2, 3, 5, 4], 9)],
        1e-5,
    );
    check(
        misc::lower_inner_softmax,
        Op::Softmax { axis: 0 },
        vec![random(DType::BF16, &[6, 16], 10)],
        1e-2,
    );
}
