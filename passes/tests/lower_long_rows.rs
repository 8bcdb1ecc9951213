//! RMSNorm and softmax over rows longer than UB (streamed in chunks over two or three
//! passes), run with the kernel-IR reference executor and compared with the graph interpreter.

mod launches;
mod lower_run;
mod lower_support;
mod random_data;

use cubevec_ir::{DType, Op};
use cubevec_passes::lower::{Lowering, norm_scale, rows};
use lower_support::{check, random};

fn rms_norm() -> Op {
    Op::RmsNorm {
        axis: -1,
        epsilon_bits: 1e-6f32.to_bits(),
    }
}

/// The chunk length of the lowering's single kernel: present only on the long-row path.
fn chunk(lowering: &Lowering) -> u64 {
    let kernel = &lowering.calls.last().expect("a launch").kernel;
    *kernel
        .tiling
        .get("chunk")
        .unwrap_or_else(|| panic!("`{}` is not a long-row kernel:\n{kernel}", kernel.name))
}

#[test]
fn rms_norm_over_rows_longer_than_ub() {
    // 12345 f32 features: three chunks with a ragged tail.
    let cols = 12_345;
    let lowering = check(
        &rows::lower_rows,
        rms_norm(),
        vec![
            random(DType::F32, &[3, cols], 1),
            random(DType::F32, &[cols], 2),
        ],
        1e-5,
    );
    assert!(chunk(&lowering) < cols as u64);
    let lowering = check(
        &rows::lower_rows,
        rms_norm(),
        vec![
            random(DType::BF16, &[2, 20_000], 3),
            random(DType::BF16, &[20_000], 4),
        ],
        1e-2,
    );
    assert!(chunk(&lowering) < 20_000);
}

#[test]
fn rms_norm_with_a_scalar_scale_over_hyper_connection_streams() {
    // DeepSeek-V4's hyper-connection norm: hc_mult (4) x hidden (4096) features, scale [1].
    let lowering = check(
        &norm_scale::lower_rms_norm,
        rms_norm(),
        vec![
            random(DType::BF16, &[2, 16_384], 5),
            random(DType::BF16, &[1], 6),
        ],
        1e-2,
    );
    assert!(chunk(&lowering) < 16_384);
}

#[test]
fn softmax_over_rows_longer_than_ub() {
    let lowering = check(
        &rows::lower_rows,
        Op::Softmax { axis: -1 },
        vec![random(DType::F32, &[3, 13_001], 7)],
        1e-5,
    );
    assert!(chunk(&lowering) < 13_001);
    check(
        &rows::lower_rows,
        Op::Softmax { axis: -1 },
        vec![random(DType::F16, &[2, 40_000], 8)],
        1e-2,
    );
}
