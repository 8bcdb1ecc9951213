//! Snapshots of the kernel IR text of representative kernels. Every kernel is verified first.

use cubevec_ir::DType;
use cubevec_ir::kernel::{Kernel, VecOp, verify};
use cubevec_ir::target::Target;
use cubevec_passes::tile::epilogue::{Epilogue, EpilogueOperand};
use cubevec_passes::tile::gemm::{
    GemmProblem, GroupTable, GroupTableKind, Halves, plan, plan_runtime,
};
use cubevec_passes::tile::vector::{
    ChainArg, ChainStep, ElementwiseChain, RowKind, RowWise, plan_chain, plan_rows,
};

fn target() -> Target {
    Target::by_name("ascend910b2").expect("target")
}

fn checked(kernel: Kernel) -> String {
    verify(&kernel, &target()).expect("verify");
    kernel.to_string()
}

#[test]
fn decode_gemm_m1() {
    let p = GemmProblem::plain("q_a_proj_decode", 1, 1536, 7168, DType::BF16, true);
    insta::assert_snapshot!(checked(plan(&p, &target()).expect("plan").kernel));
}

#[test]
fn prefill_gemm_m4096() {
    let p = GemmProblem::plain("gate_up_prefill", 4096, 4096, 7168, DType::BF16, true);
    insta::assert_snapshot!(checked(plan(&p, &target()).expect("plan").kernel));
}

#[test]
fn tail_gemm_with_b_row_major() {
    let p = GemmProblem::plain("tail_gemm", 100, 77, 300, DType::F16, false);
    insta::assert_snapshot!(checked(plan(&p, &target()).expect("plan").kernel));
}

#[test]
fn grouped_expert_gemm() {
    let p = GemmProblem {
        name: "moe_down_grouped".into(),
        groups: vec![37, 0, 130, 5],
        n: 2048,
        k: 1408,
        input: DType::BF16,
        output: DType::BF16,
        b_transposed: true,
        relu: false,
        epilogue: None,
        halves: None,
    };
    insta::assert_snapshot!(checked(plan(&p, &target()).expect("plan").kernel));
}

/// Tiled for 4 rows per expert: the kernel reads the real offsets at run time.
fn up_runtime() -> GemmProblem {
    GemmProblem {
        name: "moe_up_runtime".into(),
        groups: vec![4; 4],
        n: 96,
        k: 64,
        input: DType::BF16,
        output: DType::BF16,
        b_transposed: true,
        relu: false,
        epilogue: None,
        halves: None,
    }
}

fn plan_with_offsets(p: &GemmProblem) -> String {
    let table = GroupTable {
        kind: GroupTableKind::Offsets,
        dtype: DType::I32,
    };
    checked(plan_runtime(p, &table, &target()).expect("plan").kernel)
}

#[test]
fn grouped_expert_gemm_with_runtime_offsets() {
    insta::assert_snapshot!(plan_with_offsets(&up_runtime()));
}

/// The routed experts' gate and up projections with their SwiGLU on the AIVs: a paired MIX
/// kernel over runtime group offsets.
#[test]
fn expert_gate_up_swiglu_mix() {
    let swiglu = ElementwiseChain::swiglu("", 1, DType::BF16);
    let p = GemmProblem {
        name: "moe_gate_up_swiglu".into(),
        epilogue: Some(Epilogue {
            paired: true,
            operands: Vec::new(),
            steps: swiglu.steps,
            output: swiglu.output,
            result: DType::BF16,
        }),
        halves: Some(Halves::Separate),
        ..up_runtime()
    };
    insta::assert_snapshot!(plan_with_offsets(&p));
}

/// An output projection with the residual add on the AIVs.
#[test]
fn o_proj_with_residual_mix() {
    let p = GemmProblem {
        epilogue: Some(Epilogue {
            paired: false,
            operands: vec![(EpilogueOperand::Full, DType::BF16)],
            steps: vec![ChainStep {
                op: VecOp::Add,
                dst: 0,
                srcs: vec![ChainArg::Input(0), ChainArg::Input(1)],
            }],
            output: 0,
            result: DType::BF16,
        }),
        ..GemmProblem::plain("o_proj_residual", 64, 512, 1024, DType::BF16, true)
    };
    insta::assert_snapshot!(checked(plan(&p, &target()).expect("plan").kernel));
}

#[test]
fn rms_norm_rows() {
    let op = RowWise {
        name: "rms_norm".into(),
        rows: 300,
        cols: 7168,
        dtype: DType::BF16,
        kind: RowKind::RmsNorm { eps: 1e-6 },
    };
    insta::assert_snapshot!(checked(plan_rows(&op, &target()).expect("plan").kernel));
}

#[test]
fn softmax_rows() {
    let op = RowWise {
        name: "softmax".into(),
        rows: 64,
        cols: 1000,
        dtype: DType::F32,
        kind: RowKind::Softmax,
    };
    insta::assert_snapshot!(checked(plan_rows(&op, &target()).expect("plan").kernel));
}

#[test]
fn swiglu_chain() {
    let chain = ElementwiseChain::swiglu("swiglu", 4096 * 2048 + 13, DType::BF16);
    insta::assert_snapshot!(checked(plan_chain(&chain, &target()).expect("plan").kernel));
}
