//! Broadcast-batch and f32 `MatMul`, clamped `SwiGlu` and inner-axis `Softmax` lowerings, run
//! with the kernel-IR reference executor and compared with the graph interpreter.

mod launches;
mod lower_run;
mod lower_support;
mod random_data;

use cubevec_ir::{DType, Op};
use cubevec_passes::lower::misc;
use lower_support::{check, random};

#[test]
fn matmul_with_broadcast_batches() {
    // The compressed-attention scores of DeepSeek-V4: one key head for four query heads.
    let l = check(
        &misc::lower_broadcast_matmul,
        Op::MatMul,
        vec![
            random(DType::F32, &[2, 4, 17, 32], 1),
            random(DType::F32, &[2, 1, 32, 24], 2),
        ],
        1e-4,
    );
    assert_eq!(l.calls.len(), 2, "one copy of the right operand, one GEMM");
    check(
        &misc::lower_broadcast_matmul,
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
        &misc::lower_broadcast_matmul,
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
            &misc::lower_clamped_swiglu,
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
        &misc::lower_inner_softmax,
        Op::Softmax { axis: 2 },
        vec![random(DType::F32, &[2, 3, 5, 4], 9)],
        1e-5,
    );
    check(
        &misc::lower_inner_softmax,
        Op::Softmax { axis: 0 },
        vec![random(DType::BF16, &[6, 16], 10)],
        1e-2,
    );
}
