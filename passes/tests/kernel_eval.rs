//! Kernels made by the tilers compute what the graph interpreter computes: each test tiles one
//! op, runs the kernel with the reference executor (`cubevec_ir::kernel::eval`) on random
//! inputs, and compares with `cubevec_ir::interp::eval_op` on the same op within the output
//! dtype's tolerance.

use cubevec_ir::interp::eval_op;
use cubevec_ir::kernel::{
    Binding, GmData, GmTensor, Kernel, Launch, ParamRole, Program, ProgramMemory, TensorId,
    TensorKind, execute,
};
use cubevec_ir::op::BinaryOp;
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op, Tensor};
use cubevec_passes::tile::gemm::{GemmProblem, GemmTiling, build, plan};
use cubevec_passes::tile::vector::{
    ChainArg, ChainStep, ElementwiseChain, RowKind, RowWise, plan_chain, plan_rows,
};

fn target() -> Target {
    Target::by_name("ascend910b2").expect("target")
}

/// Uniform values in `[-1, 1)` from a 64-bit LCG, rounded to `dtype`.
fn random(dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    Tensor::from_f32(dtype, shape.to_vec(), &values)
}

/// Checks every element: `|got - want| ≤ tol · max(|want|, mean |want|)`, `tol` by the result
/// dtype (the mean keeps elements that cancel to nearly zero from demanding more than the
/// dtype can give).
fn assert_close(name: &str, got: &[f64], want: &Tensor) {
    let tol = match want.dtype() {
        DType::F32 => 1e-4,
        DType::F16 => 2e-3,
        _ => 1e-2,
    };
    let want = want.to_f64_vec();
    assert_eq!(got.len(), want.len(), "{name}: element count");
    let scale = want.iter().map(|w| w.abs()).sum::<f64>() / want.len() as f64;
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(scale),
            "{name}: element {i} is {g}, the interpreter gives {w}"
        );
    }
}

/// Runs `kernel` with `inputs` bound to its input parameters in order and the other parameters
/// filled with garbage; returns the last parameter (the output).
fn run(kernel: &Kernel, inputs: &[&Tensor]) -> Vec<f64> {
    let mut inputs = inputs.iter();
    let mut params: Vec<GmData> = kernel
        .params
        .iter()
        .map(|p| match p.role {
            ParamRole::Input => GmData::from_tensor(inputs.next().expect("an input per param")),
            _ => {
                let n = p.shape.iter().product::<u64>() as usize;
                GmData::from_f64(p.dtype, &vec![1234.5; n])
            }
        })
        .collect();
    execute(kernel, &mut params).unwrap_or_else(|e| panic!("{e}"));
    params.last().expect("an output").to_f64_vec()
}

fn reference(op: &Op, inputs: &[&Tensor]) -> Tensor {
    let operands: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
    let mut out = eval_op(op, &operands, &DimBindings::new()).expect("reference");
    out.remove(0)
}

fn gemm_op(trans_b: bool) -> Op {
    Op::Gemm {
        alpha_bits: 1f32.to_bits(),
        beta_bits: 0f32.to_bits(),
        trans_a: false,
        trans_b,
    }
}

/// Tiles and runs an `m × n × k` GEMM and compares it with the interpreter.
fn check_gemm(m: u64, n: u64, k: u64, dtype: DType, b_transposed: bool) {
    let name = format!(
        "gemm_{dtype}_{m}x{n}x{k}{}",
        if b_transposed { "_bt" } else { "" }
    );
    let problem = GemmProblem::plain(&name, m, n, k, dtype, b_transposed);
    let kernel = plan(&problem, &target()).expect("tiles").kernel;
    let a = random(dtype, &[m as usize, k as usize], 1);
    let b_shape = if b_transposed { [n, k] } else { [k, n] };
    let b = random(dtype, &b_shape.map(|d| d as usize), 2);
    let got = run(&kernel, &[&a, &b]);
    assert_close(&name, &got, &reference(&gemm_op(b_transposed), &[&a, &b]));
}

#[test]
fn gemm_f32_with_tails_matches_the_interpreter() {
    // f32 B must be stored [n, k]: its L0B load needs no fractal transpose.
    check_gemm(100, 72, 200, DType::F32, true);
    check_gemm(1, 300, 64, DType::F32, true);
}

#[test]
fn gemm_f16_with_tails_matches_the_interpreter() {
    check_gemm(100, 72, 200, DType::F16, false);
    check_gemm(100, 72, 200, DType::F16, true);
}

#[test]
fn gemm_bf16_with_tails_matches_the_interpreter() {
    check_gemm(100, 72, 200, DType::BF16, false);
    check_gemm(100, 72, 200, DType::BF16, true);
    check_gemm(16, 16, 16, DType::BF16, false);
}

#[test]
fn matmul_op_matches_the_interpreter() {
    let problem = GemmProblem::plain("matmul", 33, 48, 70, DType::F16, false);
    let kernel = plan(&problem, &target()).expect("tiles").kernel;
    let a = random(DType::F16, &[33, 70], 3);
    let b = random(DType::F16, &[70, 48], 4);
    let got = run(&kernel, &[&a, &b]);
    assert_close("matmul", &got, &reference(&Op::MatMul, &[&a, &b]));
}

/// A tiling that splits K three ways.
fn split_three() -> GemmTiling {
    GemmTiling {
        m1: 32,
        n1: 32,
        k1: 64,
        k0: 32,
        split_k: 3,
        l0c_stages: 2,
        swizzle: 2,
        swizzle_n_major: false,
        a_panel: false,
    }
}

#[test]
fn relu_gemms_never_split_k() {
    let mut problem = GemmProblem::plain("relu", 40, 50, 4096, DType::F16, true);
    problem.relu = true;
    let tiling = split_three();
    let err = build(&problem, &tiling, &target()).expect_err("relu of partial sums");
    assert!(err.to_string().contains("partial sum"), "{err}");
    // A deep, narrow problem would split K without ReLU; with it the planner must not.
    let chosen = cubevec_passes::tile::gemm::plan(&problem, &target()).expect("plan");
    assert_eq!(chosen.tiling.split_k, 1);
    let plain = GemmProblem::plain("plain", 40, 50, 4096, DType::F16, true);
    let unsplit = cubevec_passes::tile::gemm::plan(&plain, &target()).expect("plan");
    assert!(
        unsplit.tiling.split_k > 1,
        "the check above would not mean anything"
    );
}

#[test]
fn split_k_gemm_accumulates_into_zeroed_output() {
    let problem = GemmProblem::plain("split_k", 40, 50, 300, DType::F16, true);
    let tiling = split_three();
    let kernel = build(&problem, &tiling, &target()).expect("builds");
    assert_eq!(kernel.params[2].role, ParamRole::OutputZeroed);
    let a = random(DType::F16, &[40, 300], 5);
    let b = random(DType::F16, &[50, 300], 6);
    // `run` fills the output with garbage: the launch must zero it before accumulating.
    let got = run(&kernel, &[&a, &b]);
    assert_close("split_k", &got, &reference(&gemm_op(true), &[&a, &b]));
}

#[test]
fn a_panel_gemm_matches_the_interpreter() {
    // 3 row strips (a 4-row tail) × 4 N tiles (a tail) on 5 blocks: runs that cross strips,
    // panel reloads mid-run, and a K tail inside the resident panel.
    for (b_transposed, seed) in [(true, 7), (false, 9)] {
        let problem = GemmProblem::plain("a_panel", 36, 60, 200, DType::F16, b_transposed);
        let tiling = GemmTiling {
            m1: 16,
            n1: 16,
            k1: 64,
            k0: 32,
            split_k: 1,
            l0c_stages: 1,
            swizzle: 1,
            swizzle_n_major: false,
            a_panel: true,
        };
        let mut small = target();
        small.cores.aic = 5;
        let kernel = build(&problem, &tiling, &small).expect("builds");
        assert_eq!(kernel.blocks, 5);
        assert_eq!(kernel.tiling.get("a_panel"), Some(&1));
        let a = random(DType::F16, &[36, 200], seed);
        let b_shape = if b_transposed { [60, 200] } else { [200, 60] };
        let b = random(DType::F16, &b_shape, seed + 1);
        let got = run(&kernel, &[&a, &b]);
        assert_close(
            "a_panel",
            &got,
            &reference(&gemm_op(b_transposed), &[&a, &b]),
        );
    }
}

#[test]
fn grouped_gemm_matches_the_interpreter() {
    let groups = [30u64, 0, 50, 20];
    let (n, k) = (72u64, 96u64);
    let problem = GemmProblem {
        name: "grouped".into(),
        groups: groups.to_vec(),
        n,
        k,
        input: DType::BF16,
        output: DType::BF16,
        b_transposed: true,
        relu: false,
        epilogue: None,
        halves: None,
    };
    let kernel = plan(&problem, &target()).expect("tiles").kernel;
    let t = groups.iter().sum::<u64>() as usize;
    let x = random(DType::BF16, &[t, k as usize], 7);
    let w = random(DType::BF16, &[groups.len(), n as usize, k as usize], 8);
    let sizes: Vec<i64> = groups.iter().map(|&g| g as i64).collect();
    let sizes = Tensor::from_i64(DType::I64, vec![groups.len()], &sizes);
    let got = run(&kernel, &[&x, &w]);
    assert_close(
        "grouped",
        &got,
        &reference(&Op::GroupedMatMul, &[&x, &w, &sizes]),
    );
}

fn check_rows(kind: RowKind, rows: u64, cols: u64, dtype: DType) {
    let name = format!("rows_{dtype}_{rows}x{cols}");
    let op = RowWise {
        name: name.clone(),
        rows,
        cols,
        dtype,
        kind,
    };
    let kernel = plan_rows(&op, &target()).expect("tiles").kernel;
    let x = random(dtype, &[rows as usize, cols as usize], 9);
    let (got, want) = match kind {
        RowKind::RmsNorm { eps } => {
            let gamma = random(dtype, &[cols as usize], 10);
            let graph_op = Op::RmsNorm {
                axis: -1,
                epsilon_bits: (eps as f32).to_bits(),
            };
            (
                run(&kernel, &[&x, &gamma]),
                reference(&graph_op, &[&x, &gamma]),
            )
        }
        RowKind::Softmax => (
            run(&kernel, &[&x]),
            reference(&Op::Softmax { axis: -1 }, &[&x]),
        ),
        RowKind::LogSoftmax => (
            run(&kernel, &[&x]),
            reference(&Op::LogSoftmax { axis: -1 }, &[&x]),
        ),
        RowKind::LayerNorm { eps, bias } => {
            let gamma = random(dtype, &[cols as usize], 10);
            let beta = random(dtype, &[cols as usize], 11);
            let graph_op = Op::LayerNorm {
                axis: -1,
                epsilon_bits: (eps as f32).to_bits(),
            };
            let operands: Vec<&Tensor> = if bias {
                vec![&x, &gamma, &beta]
            } else {
                vec![&x, &gamma]
            };
            (run(&kernel, &operands), reference(&graph_op, &operands))
        }
    };
    assert_close(&name, &got, &want);
}

#[test]
fn layer_norm_matches_the_interpreter() {
    for bias in [false, true] {
        let kind = RowKind::LayerNorm { eps: 1e-5, bias };
        check_rows(kind, 37, 200, DType::F32);
        check_rows(kind, 5, 300, DType::BF16);
    }
}

#[test]
fn rms_norm_matches_the_interpreter() {
    let kind = RowKind::RmsNorm { eps: 1e-6 };
    check_rows(kind, 37, 200, DType::F32);
    check_rows(kind, 37, 200, DType::BF16);
    check_rows(kind, 3, 64, DType::F16);
}

#[test]
fn softmax_and_log_softmax_match_the_interpreter() {
    check_rows(RowKind::Softmax, 37, 100, DType::F32);
    check_rows(RowKind::Softmax, 37, 100, DType::F16);
    check_rows(RowKind::Softmax, 5, 1000, DType::BF16);
    check_rows(RowKind::LogSoftmax, 37, 100, DType::F32);
    check_rows(RowKind::LogSoftmax, 5, 1000, DType::BF16);
}

#[test]
fn swiglu_chain_matches_the_interpreter() {
    for (dtype, len) in [
        (DType::F32, 1000),
        (DType::BF16, 1000),
        (DType::F16, 20_000),
    ] {
        let chain = ElementwiseChain::swiglu("swiglu", len, dtype);
        let kernel = plan_chain(&chain, &target()).expect("tiles").kernel;
        let gate = random(dtype, &[len as usize], 11);
        let up = random(dtype, &[len as usize], 12);
        let op = Op::SwiGlu {
            split: false,
            limit_bits: None,
        };
        let got = run(&kernel, &[&gate, &up]);
        assert_close(
            &format!("swiglu {dtype}"),
            &got,
            &reference(&op, &[&gate, &up]),
        );
    }
}

#[test]
fn binary_chain_matches_the_interpreter() {
    for (dtype, op, vec_op) in [
        (DType::F16, BinaryOp::Sub, cubevec_ir::kernel::VecOp::Sub),
        (DType::F32, BinaryOp::Div, cubevec_ir::kernel::VecOp::Div),
    ] {
        let chain = ElementwiseChain {
            name: "binary".into(),
            len: 777,
            dtype,
            inputs: 2,
            steps: vec![ChainStep {
                op: vec_op,
                dst: 0,
                srcs: vec![ChainArg::Input(0), ChainArg::Input(1)],
            }],
            output: 0,
        };
        let kernel = plan_chain(&chain, &target()).expect("tiles").kernel;
        let a = random(dtype, &[777], 13);
        let b = random(dtype, &[777], 14);
        let got = run(&kernel, &[&a, &b]);
        assert_close(
            &format!("{op:?} {dtype}"),
            &got,
            &reference(&Op::Binary(op), &[&a, &b]),
        );
    }
}

/// A two-launch program: RMSNorm over `x` [2, 3, 64] viewed as [6, 64], then a split-K GEMM
/// with a constant weight [40, 64] (stored transposed) into an output the launch zero-fills.
#[test]
fn program_runs_launches_in_order_over_views() {
    let target = target();
    let norm = plan_rows(
        &RowWise {
            name: "norm".into(),
            rows: 6,
            cols: 64,
            dtype: DType::F32,
            kind: RowKind::RmsNorm { eps: 1e-5 },
        },
        &target,
    )
    .expect("tiles")
    .kernel;
    let tiling = GemmTiling {
        m1: 16,
        n1: 48,
        k1: 16,
        k0: 16,
        split_k: 2,
        l0c_stages: 1,
        swizzle: 1,
        swizzle_n_major: false,
        a_panel: false,
    };
    let problem = GemmProblem::plain("proj", 6, 40, 64, DType::F32, true);
    let proj = build(&problem, &tiling, &target).expect("builds");
    let tensor = |name: &str, shape: &[u64], kind| GmTensor {
        name: name.into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
        kind,
    };
    let program = Program {
        name: "norm_proj".into(),
        tensors: vec![
            tensor("x", &[2, 3, 64], TensorKind::Input),
            tensor("gamma", &[64], TensorKind::Constant),
            tensor("w", &[40, 64], TensorKind::Constant),
            tensor("h", &[2, 3, 64], TensorKind::Intermediate),
            tensor("y", &[2, 3, 40], TensorKind::Intermediate),
        ],
        kernels: vec![norm, proj],
        launches: vec![
            Launch {
                kernel: 0,
                args: vec![TensorId(0), TensorId(1), TensorId(3)],
            },
            Launch {
                kernel: 1,
                args: vec![TensorId(3), TensorId(2), TensorId(4)],
            },
        ],
        inputs: vec![Binding {
            name: "x".into(),
            tensor: TensorId(0),
            shape: vec![2, 3, 64],
        }],
        outputs: vec![Binding {
            name: "y".into(),
            tensor: TensorId(4),
            shape: vec![2, 3, 40],
        }],
        memory: Default::default(),
    };
    let x = random(DType::F32, &[2, 3, 64], 15);
    let gamma = random(DType::F32, &[64], 16);
    let w = random(DType::F32, &[40, 64], 17);
    let mut memory = ProgramMemory::new(&program);
    for (id, value) in [(0, &x), (1, &gamma), (2, &w)] {
        memory.write(TensorId(id), value).expect("fits");
    }
    // Garbage in the split-K output: the launch zero-fills it.
    memory.tensors[4] = GmData::from_f64(DType::F32, &[7.0; 240]);
    memory.run(&program).unwrap_or_else(|e| panic!("{e}"));
    let y = memory.read(&program.outputs[0]).expect("y");
    assert_eq!(y.shape(), [2, 3, 40]);

    let norm_op = Op::RmsNorm {
        axis: -1,
        epsilon_bits: 1e-5f32.to_bits(),
    };
    let h = reference(&norm_op, &[&x, &gamma]).reshaped(vec![6, 64]);
    let want = reference(&gemm_op(true), &[&h, &w]);
    assert_close("norm_proj", &y.to_f64_vec(), &want);
}
