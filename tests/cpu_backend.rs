//! The CPU back end runs tiled kernels and matches the reference interpreter.

mod support;

use std::collections::BTreeMap;

use support::{buffer, c, flag, param, random, slice, target, values};

use cubevec_backend_cpu::{CpuBackend, CpuError, run_program};
use cubevec_ir::interp::eval_op;
use cubevec_ir::kernel::{
    Binding, BufId, BufferPlanner, CoreType, Expr, GmTensor, GmTile, Kernel, Launch, MemLevel,
    ParamRole, Pipe, Program, ReduceKind, ScalarSrc, Stmt, TensorId, TensorKind, Tile, VecArg,
    VecOp, verify,
};
use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::{DType, Op, Tensor};
use cubevec_passes::tile::gemm::{self, GemmProblem, GemmTiling, plan};
use cubevec_passes::tile::vector::{
    ChainArg, ChainStep, ElementwiseChain, RowKind, RowWise, plan_chain, plan_rows,
};

/// Runs `kernel` on copies of `inputs` (one per parameter, outputs included) and returns the
/// parameters' final bytes.
fn run(kernel: &Kernel, inputs: &[&Tensor]) -> Result<Vec<Vec<u8>>, CpuError> {
    let compiled = CpuBackend::new(&target())?.compile_kernel(kernel)?;
    let mut bufs: Vec<Vec<u8>> = inputs.iter().map(|t| t.bytes().to_vec()).collect();
    let mut views: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
    compiled.run(&mut views)?;
    Ok(bufs)
}

/// Asserts `got` (bytes of `expected`'s dtype and shape) is within `tol` (relative to the
/// largest magnitude of the expected values) of `expected` everywhere.
fn assert_close(what: &str, got: &[u8], expected: &Tensor, tol: f32) {
    let got = Tensor::from_bytes(expected.dtype(), expected.shape().to_vec(), got.to_vec())
        .expect("size")
        .to_f32_vec();
    let want = expected.to_f32_vec();
    let scale = want.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
    let mut worst = (0.0f32, 0usize);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let err = (g - w).abs() / scale;
        // NaN counts as the worst error.
        if err.is_nan() || err > worst.0 {
            worst = (err, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: element {} is {} but the interpreter says {} (error {:e} of the scale {scale})",
        worst.1,
        got[worst.1],
        want[worst.1],
        worst.0
    );
}

fn tolerance(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        _ => 1e-2,
    }
}

fn no_bindings() -> DimBindings {
    DimBindings::new()
}

/// `a · b` (or `a · bᵀ`) by the interpreter.
fn matmul_reference(a: &Tensor, b: &Tensor, b_transposed: bool) -> Tensor {
    let op = if b_transposed {
        Op::Gemm {
            alpha_bits: 1f32.to_bits(),
            beta_bits: 0f32.to_bits(),
            trans_a: false,
            trans_b: true,
        }
    } else {
        Op::MatMul
    };
    eval_op(&op, &[Some(a), Some(b)], &no_bindings()).expect("reference")[0].clone()
}

fn check_gemm(m: usize, n: usize, k: usize, dtype: DType, b_transposed: bool) {
    let problem = GemmProblem::plain("gemm", m as u64, n as u64, k as u64, dtype, b_transposed);
    let kernel = plan(&problem, &target()).expect("plan").kernel;
    let a = random(dtype, &[m, k], 1);
    let b = if b_transposed {
        random(dtype, &[n, k], 2)
    } else {
        random(dtype, &[k, n], 2)
    };
    let c = Tensor::zeros(dtype, vec![m, n]);
    let out = run(&kernel, &[&a, &b, &c]).expect("run");
    let want = matmul_reference(&a, &b, b_transposed);
    assert_close(
        &format!("{m}x{n}x{k} {dtype} gemm (b transposed: {b_transposed})"),
        &out[2],
        &want,
        tolerance(dtype),
    );
}

#[test]
fn gemm_with_tails_matches_the_interpreter() {
    check_gemm(100, 72, 200, DType::F32, true);
}

#[test]
fn gemm_in_every_cube_dtype_and_layout_matches_the_interpreter() {
    check_gemm(100, 72, 200, DType::F16, false);
    check_gemm(100, 72, 200, DType::BF16, true);
    check_gemm(64, 256, 128, DType::F16, true);
    check_gemm(33, 40, 9, DType::BF16, false);
}

#[test]
fn grouped_gemm_matches_the_interpreter() {
    let groups = [37u64, 0, 50, 13];
    let (n, k) = (48usize, 72usize);
    let problem = GemmProblem {
        name: "experts".into(),
        groups: groups.to_vec(),
        n: n as u64,
        k: k as u64,
        input: DType::BF16,
        output: DType::BF16,
        b_transposed: true,
        relu: false,
        epilogue: None,
        halves: None,
    };
    let kernel = plan(&problem, &target()).expect("plan").kernel;
    let t = groups.iter().sum::<u64>() as usize;
    let x = random(DType::BF16, &[t, k], 5);
    let w = random(DType::BF16, &[groups.len(), n, k], 6);
    let c = Tensor::zeros(DType::BF16, vec![t, n]);
    let out = run(&kernel, &[&x, &w, &c]).expect("run");
    let sizes: Vec<i64> = groups.iter().map(|&g| g as i64).collect();
    let sizes = Tensor::from_i64(DType::I64, vec![groups.len()], &sizes);
    let want = eval_op(
        &Op::GroupedMatMul,
        &[Some(&x), Some(&w), Some(&sizes)],
        &no_bindings(),
    )
    .expect("reference")[0]
        .clone();
    assert_close("grouped gemm", &out[2], &want, tolerance(DType::BF16));
}

/// A split-K GEMM (f16 in, f32 out, atomic accumulation into a zero-filled output).
fn split_k_kernel() -> Kernel {
    let mut problem = GemmProblem::plain("split", 64, 48, 200, DType::F16, true);
    problem.output = DType::F32;
    let tiling = GemmTiling {
        m1: 64,
        n1: 48,
        k1: 32,
        k0: 32,
        split_k: 3,
        l0c_stages: 2,
        swizzle: 1,
        swizzle_n_major: false,
        a_panel: false,
    };
    let kernel = gemm::build(&problem, &tiling, &target()).expect("build");
    verify(&kernel, &target()).expect("verify");
    assert_eq!(kernel.params[2].role, ParamRole::OutputZeroed);
    kernel
}

fn relu(t: &Tensor) -> Tensor {
    eval_op(&Op::Unary(UnaryOp::Relu), &[Some(t)], &no_bindings()).expect("relu")[0].clone()
}

fn to_f32(t: &Tensor) -> Tensor {
    eval_op(&Op::Cast { to: DType::F32 }, &[Some(t)], &no_bindings()).expect("cast")[0].clone()
}

#[test]
fn split_k_accumulates_atomically_into_a_zeroed_output() {
    let kernel = split_k_kernel();
    let a = random(DType::F16, &[64, 200], 7);
    let b = random(DType::F16, &[48, 200], 8);
    // Garbage in the output: the launcher must zero it.
    let c = random(DType::F32, &[64, 48], 9);
    let out = run(&kernel, &[&a, &b, &c]).expect("run");
    let want = matmul_reference(&to_f32(&a), &to_f32(&b), true);
    assert_close("split-K gemm", &out[2], &want, 1e-5);
}

#[test]
fn the_fixpipe_applies_relu() {
    let mut problem = GemmProblem::plain("relu", 48, 40, 64, DType::BF16, true);
    problem.relu = true;
    let kernel = plan(&problem, &target()).expect("plan").kernel;
    let a = random(DType::BF16, &[48, 64], 23);
    let b = random(DType::BF16, &[40, 64], 24);
    let c = Tensor::zeros(DType::BF16, vec![48, 40]);
    let out = run(&kernel, &[&a, &b, &c]).expect("run");
    let want = relu(&matmul_reference(&a, &b, true));
    assert_close("relu gemm", &out[2], &want, tolerance(DType::BF16));
}

fn check_rows(kind: RowKind, rows: usize, cols: usize, dtype: DType) {
    let op = RowWise {
        name: "rows".into(),
        rows: rows as u64,
        cols: cols as u64,
        dtype,
        kind,
    };
    let kernel = plan_rows(&op, &target()).expect("plan").kernel;
    let x = random(dtype, &[rows, cols], 10);
    let out = Tensor::zeros(dtype, vec![rows, cols]);
    let (got, want) = match kind {
        RowKind::RmsNorm { eps } => {
            let gamma = random(dtype, &[cols], 11);
            let got = run(&kernel, &[&x, &gamma, &out]).expect("run");
            let op = Op::RmsNorm {
                axis: -1,
                epsilon_bits: (eps as f32).to_bits(),
            };
            let want = eval_op(&op, &[Some(&x), Some(&gamma)], &no_bindings());
            (got[2].clone(), want.expect("reference")[0].clone())
        }
        RowKind::LayerNorm { eps, bias } => {
            let gamma = random(dtype, &[cols], 11);
            let beta = random(dtype, &[cols], 12);
            let mut operands = vec![Some(&x), Some(&gamma)];
            if bias {
                operands.push(Some(&beta));
            }
            let op = Op::LayerNorm {
                axis: -1,
                epsilon_bits: (eps as f32).to_bits(),
            };
            let want = eval_op(&op, &operands, &no_bindings());
            let mut args: Vec<&Tensor> = operands.into_iter().flatten().collect();
            args.push(&out);
            let got = run(&kernel, &args).expect("run");
            (
                got[args.len() - 1].clone(),
                want.expect("reference")[0].clone(),
            )
        }
        RowKind::Softmax | RowKind::LogSoftmax => {
            let got = run(&kernel, &[&x, &out]).expect("run");
            let op = if kind == RowKind::Softmax {
                Op::Softmax { axis: -1 }
            } else {
                Op::LogSoftmax { axis: -1 }
            };
            let want = eval_op(&op, &[Some(&x)], &no_bindings());
            (got[1].clone(), want.expect("reference")[0].clone())
        }
    };
    assert_close(
        &format!("{kind:?} over {rows} x {cols} {dtype}"),
        &got,
        &want,
        tolerance(dtype),
    );
}

#[test]
fn row_kernels_match_the_interpreter() {
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        check_rows(RowKind::RmsNorm { eps: 1e-6 }, 37, 200, dtype);
        check_rows(RowKind::Softmax, 19, 1003, dtype);
        check_rows(RowKind::LogSoftmax, 19, 1003, dtype);
        for bias in [false, true] {
            check_rows(RowKind::LayerNorm { eps: 1e-5, bias }, 23, 150, dtype);
        }
    }
}

#[test]
fn rows_longer_than_ub_stream_in_chunks() {
    // DeepSeek-V4's hyper-connection norm width (4 x 4096), and a ragged f32 softmax row.
    check_rows(RowKind::RmsNorm { eps: 1e-6 }, 3, 16_384, DType::BF16);
    check_rows(RowKind::Softmax, 2, 12_345, DType::F32);
}

fn run_chain(chain: &ElementwiseChain, inputs: &[&Tensor]) -> Vec<u8> {
    let kernel = plan_chain(chain, &target()).expect("plan").kernel;
    let out = Tensor::zeros(chain.dtype, vec![chain.len as usize]);
    let mut args = inputs.to_vec();
    args.push(&out);
    run(&kernel, &args).expect("run").pop().expect("output")
}

#[test]
fn swiglu_and_elementwise_chains_match_the_interpreter() {
    let len = 100_003usize;
    for dtype in [DType::BF16, DType::F16, DType::F32] {
        let gate = random(dtype, &[len], 12);
        let up = random(dtype, &[len], 13);
        let got = run_chain(
            &ElementwiseChain::swiglu("swiglu", len as u64, dtype),
            &[&gate, &up],
        );
        let op = Op::SwiGlu {
            split: false,
            limit_bits: None,
        };
        let want = eval_op(&op, &[Some(&gate), Some(&up)], &no_bindings()).expect("reference");
        assert_close(&format!("swiglu {dtype}"), &got, &want[0], tolerance(dtype));
    }
    // sigmoid(x) as the partitioner writes it, and max(sqrt(|x|), y) - relu(y).
    use ChainArg::{Imm, Input, Temp};
    let step = |op, dst, srcs| ChainStep { op, dst, srcs };
    let x = random(DType::F32, &[len], 14);
    let y = random(DType::F32, &[len], 15);
    let sigmoid = ElementwiseChain {
        name: "sigmoid".into(),
        len: len as u64,
        dtype: DType::F32,
        inputs: 1,
        steps: vec![
            step(VecOp::Muls, 0, vec![Input(0), Imm(-1.0)]),
            step(VecOp::Exp, 0, vec![Temp(0)]),
            step(VecOp::Adds, 0, vec![Temp(0), Imm(1.0)]),
            step(VecOp::Reciprocal, 0, vec![Temp(0)]),
        ],
        output: 0,
    };
    let got = run_chain(&sigmoid, &[&x]);
    let want = eval_op(&Op::Unary(UnaryOp::Sigmoid), &[Some(&x)], &no_bindings());
    assert_close("sigmoid", &got, &want.expect("reference")[0], 1e-6);
    let mixed = ElementwiseChain {
        name: "mixed".into(),
        len: len as u64,
        dtype: DType::F32,
        inputs: 2,
        steps: vec![
            step(VecOp::Abs, 0, vec![Input(0)]),
            step(VecOp::Sqrt, 0, vec![Temp(0)]),
            step(VecOp::Max, 0, vec![Temp(0), Input(1)]),
            step(VecOp::Relu, 1, vec![Input(1)]),
            step(VecOp::Sub, 0, vec![Temp(0), Temp(1)]),
        ],
        output: 0,
    };
    let got = run_chain(&mixed, &[&x, &y]);
    let unary =
        |u, t: &Tensor| eval_op(&Op::Unary(u), &[Some(t)], &no_bindings()).expect("op")[0].clone();
    let binary = |b, l: &Tensor, r: &Tensor| {
        eval_op(&Op::Binary(b), &[Some(l), Some(r)], &no_bindings()).expect("op")[0].clone()
    };
    let root = unary(UnaryOp::Sqrt, &unary(UnaryOp::Abs, &x));
    let want = binary(
        BinaryOp::Sub,
        &binary(BinaryOp::Max, &root, &y),
        &unary(UnaryOp::Relu, &y),
    );
    assert_close("abs/sqrt/max/relu/sub chain", &got, &want, 1e-6);
}

#[test]
fn an_out_of_range_region_is_an_error_naming_the_statement() {
    let chain = ElementwiseChain::swiglu("short_out", 1000, DType::F32);
    let mut kernel = plan_chain(&chain, &target()).expect("plan").kernel;
    // Shrink the output: the last CopyOut now runs past its end.
    kernel.params[2].shape = vec![990];
    let x = random(DType::F32, &[1000], 16);
    let out = Tensor::zeros(DType::F32, vec![990]);
    let err = run(&kernel, &[&x, &x, &out]).expect_err("out of bounds");
    match &err {
        CpuError::Runtime {
            kernel,
            message,
            stmt,
            ..
        } => {
            assert_eq!(kernel, "short_out");
            assert!(message.contains("`out`"), "{err}");
            assert!(!stmt.is_empty(), "{err}");
        }
        other => panic!("expected a run-time error, got {other}"),
    }
}

fn region(buf: BufId, at: (Expr, u64), size: (u64, u64)) -> Tile {
    Tile {
        buf,
        stage: c(0),
        row: at.0,
        col: c(at.1),
        rows: c(size.0),
        cols: c(size.1),
    }
}

fn gm_region(param: usize, at: (Expr, u64), size: (u64, u64)) -> GmTile {
    GmTile {
        param,
        batch: c(0),
        row: at.0,
        col: c(at.1),
        rows: c(size.0),
        cols: c(size.1),
    }
}

/// A MIX kernel: each AIV doubles 16 rows of `x` into a workspace and signals the AIC, which
/// waits for both and multiplies the workspace by `w` on the Cube. A stray wait makes that
/// side first wait for a flag nobody sets.
fn mix_kernel(cube_stray: Option<u8>, vector_stray: Option<u8>) -> Kernel {
    let t = target();
    let mut p = BufferPlanner::new();
    let xin = p.add(&t, buffer("xin", MemLevel::Ub, DType::F16, 16, 16));
    let y = p.add(&t, buffer("y", MemLevel::Ub, DType::F16, 16, 16));
    let l1a = p.add(&t, buffer("l1a", MemLevel::L1, DType::F16, 32, 16));
    let l1b = p.add(&t, buffer("l1b", MemLevel::L1, DType::F16, 16, 16));
    let l0a = p.add(&t, buffer("l0a", MemLevel::L0A, DType::F16, 32, 16));
    let l0b = p.add(&t, buffer("l0b", MemLevel::L0B, DType::F16, 16, 16));
    let l0c = p.add(&t, buffer("l0c", MemLevel::L0C, DType::F32, 32, 16));
    let row0 = || Expr::var("blk").mul(c(16));
    let mut vector: Vec<Stmt> = vector_stray
        .map(|flag| Stmt::CrossCoreWait { flag })
        .into_iter()
        .collect();
    vector.push(Stmt::CopyIn {
        dst: region(xin, (c(0), 0), (16, 16)),
        src: gm_region(0, (row0(), 0), (16, 16)),
    });
    vector.extend(flag(Pipe::Mte2, Pipe::V));
    vector.push(Stmt::Vector {
        op: VecOp::Muls,
        dst: slice(y, c(0)),
        srcs: vec![VecArg::Slice(slice(xin, c(0))), VecArg::Imm(2.0)],
        count: c(256),
    });
    vector.extend(flag(Pipe::V, Pipe::Mte3));
    vector.push(Stmt::CopyOut {
        dst: gm_region(2, (row0(), 0), (16, 16)),
        src: region(y, (c(0), 0), (16, 16)),
    });
    vector.push(Stmt::CrossCoreSet {
        pipe: Pipe::Mte3,
        flag: 0,
    });
    let mut cube: Vec<Stmt> = cube_stray
        .map(|flag| Stmt::CrossCoreWait { flag })
        .into_iter()
        .collect();
    cube.push(Stmt::CrossCoreWait { flag: 0 });
    cube.push(Stmt::CopyIn {
        dst: region(l1a, (c(0), 0), (32, 16)),
        src: gm_region(2, (c(0), 0), (32, 16)),
    });
    cube.push(Stmt::CopyIn {
        dst: region(l1b, (c(0), 0), (16, 16)),
        src: gm_region(1, (c(0), 0), (16, 16)),
    });
    cube.extend(flag(Pipe::Mte2, Pipe::Mte1));
    cube.push(Stmt::LoadL0 {
        dst: region(l0a, (c(0), 0), (32, 16)),
        src: region(l1a, (c(0), 0), (32, 16)),
        transpose: false,
    });
    cube.push(Stmt::LoadL0 {
        dst: region(l0b, (c(0), 0), (16, 16)),
        src: region(l1b, (c(0), 0), (16, 16)),
        transpose: false,
    });
    cube.extend(flag(Pipe::Mte1, Pipe::M));
    cube.push(Stmt::Mmad {
        c: l0c,
        c_stage: c(0),
        a: l0a,
        a_stage: c(0),
        b: l0b,
        b_stage: c(0),
        m: c(32),
        n: c(16),
        k: c(16),
        init: c(1),
    });
    cube.extend(flag(Pipe::M, Pipe::Fix));
    cube.push(Stmt::Fixpipe {
        dst: gm_region(3, (c(0), 0), (32, 16)),
        src: region(l0c, (c(0), 0), (32, 16)),
        relu: false,
        atomic_add: false,
    });
    Kernel {
        name: "mix".into(),
        core: CoreType::Mix1To2,
        blocks: 1,
        params: vec![
            param("x", DType::F16, &[32, 16], ParamRole::Input),
            param("w", DType::F16, &[16, 16], ParamRole::Input),
            param("ws", DType::F16, &[32, 16], ParamRole::Workspace),
            param("out", DType::F32, &[32, 16], ParamRole::Output),
        ],
        buffers: p.finish(),
        cube,
        vector,
        tiling: BTreeMap::new(),
    }
}

#[test]
fn mix_kernels_run_cube_and_vector_concurrently_with_cross_core_flags() {
    let kernel = mix_kernel(None, None);
    verify(&kernel, &target()).expect("verify");
    let x = random(DType::F16, &[32, 16], 17);
    let w = random(DType::F16, &[16, 16], 18);
    let ws = Tensor::zeros(DType::F16, vec![32, 16]);
    let out = Tensor::zeros(DType::F32, vec![32, 16]);
    let got = run(&kernel, &[&x, &w, &ws, &out]).expect("run");
    let doubled: Vec<f32> = x.to_f32_vec().iter().map(|v| 2.0 * v).collect();
    let doubled = Tensor::from_f32(DType::F32, vec![32, 16], &doubled);
    let want = matmul_reference(&doubled, &to_f32(&w), false);
    assert_close("mix kernel", &got[3], &want, 1e-6);

    // The AIVs return without setting flag 1: the AIC's wait fails instead of hanging.
    let err = run(&mix_kernel(Some(1), None), &[&x, &w, &ws, &out]).expect_err("flag 1");
    assert!(
        matches!(&err, CpuError::Runtime { side: "cube", message, .. } if message.contains("flag 1")),
        "{err}"
    );
    // All three wait for flags nobody sets: a deadlock is reported.
    let err = run(&mix_kernel(Some(1), Some(2)), &[&x, &w, &ws, &out]).expect_err("deadlock");
    assert!(
        matches!(&err, CpuError::Runtime { message, .. } if message.contains("deadlock")),
        "{err}"
    );
}

#[test]
fn scalar_loads_set_value_and_max_index_use_the_real_data() {
    let t = target();
    let mut p = BufferPlanner::new();
    let ubx = p.add(&t, buffer("ubx", MemLevel::Ub, DType::F32, 1, 64));
    let st = p.add(&t, buffer("st", MemLevel::Ub, DType::F32, 1, 8));
    let o = p.add(&t, buffer("o", MemLevel::Ub, DType::F32, 1, 64));
    let mut vector = vec![Stmt::CopyIn {
        dst: region(ubx, (c(0), 0), (1, 64)),
        src: gm_region(0, (c(0), 0), (1, 64)),
    }];
    vector.extend(flag(Pipe::Mte2, Pipe::V));
    vector.push(Stmt::Reduce {
        kind: ReduceKind::MaxIndex,
        dst: slice(st, c(0)),
        src: slice(ubx, c(0)),
        count: c(64),
    });
    vector.extend(flag(Pipe::V, Pipe::S));
    vector.push(Stmt::LoadScalar {
        var: "idx".into(),
        src: ScalarSrc::Ub(slice(st, c(1))),
        planned: c(0),
    });
    vector.push(Stmt::LoadScalar {
        var: "base".into(),
        src: ScalarSrc::Gm {
            param: 1,
            index: c(2),
        },
        planned: c(0),
    });
    vector.push(Stmt::SetValue {
        dst: slice(st, c(4)),
        value: VecArg::Scalar(Expr::var("idx").add(Expr::var("base"))),
    });
    vector.extend(flag(Pipe::S, Pipe::V));
    vector.push(Stmt::Vector {
        op: VecOp::Duplicate,
        dst: slice(o, c(0)),
        srcs: vec![VecArg::Element(slice(st, c(4)))],
        count: c(64),
    });
    vector.push(Stmt::Vector {
        op: VecOp::Adds,
        dst: slice(o, c(0)),
        srcs: vec![
            VecArg::Slice(slice(o, c(0))),
            VecArg::Element(slice(st, c(0))),
        ],
        count: c(64),
    });
    vector.push(Stmt::Vector {
        op: VecOp::Adds,
        dst: slice(o, c(0)),
        srcs: vec![
            VecArg::Slice(slice(o, c(0))),
            VecArg::Scalar(Expr::var("idx")),
        ],
        count: c(1),
    });
    vector.extend(flag(Pipe::V, Pipe::Mte3));
    vector.push(Stmt::CopyOut {
        dst: gm_region(2, (c(0), 0), (1, 64)),
        src: region(o, (c(0), 0), (1, 64)),
    });
    let kernel = Kernel {
        name: "scalars".into(),
        core: CoreType::Aiv,
        blocks: 1,
        params: vec![
            param("x", DType::F32, &[1, 64], ParamRole::Input),
            param("ids", DType::I32, &[4], ParamRole::Input),
            param("out", DType::F32, &[1, 64], ParamRole::Output),
        ],
        buffers: p.finish(),
        cube: Vec::new(),
        vector,
        tiling: BTreeMap::new(),
    };
    verify(&kernel, &t).expect("verify");
    let mut xs = values(64, 19);
    xs[37] = 5.0;
    let x = Tensor::from_f32(DType::F32, vec![1, 64], &xs);
    let ids = Tensor::from_i64(DType::I32, vec![4], &[7, 8, 9, 10]);
    let out = Tensor::zeros(DType::F32, vec![1, 64]);
    let got = run(&kernel, &[&x, &ids, &out]).expect("run");
    let got = Tensor::from_bytes(DType::F32, vec![64], got[2].clone())
        .expect("size")
        .to_f32_vec();
    // idx = 37, base = ids[2] = 9, max = 5: 37 + 9 + 5 everywhere, plus 37 at element 0.
    let mut want = vec![51.0f32; 64];
    want[0] = 88.0;
    assert_eq!(got, want);
}

#[test]
fn a_program_runs_its_launches_over_shared_tensors() {
    let t = target();
    let gemm = split_k_kernel();
    let chain = ElementwiseChain {
        name: "half".into(),
        len: 64 * 48,
        dtype: DType::F32,
        inputs: 1,
        steps: vec![ChainStep {
            op: VecOp::Muls,
            dst: 0,
            srcs: vec![ChainArg::Input(0), ChainArg::Imm(0.5)],
        }],
        output: 0,
    };
    let scale = plan_chain(&chain, &t).expect("plan").kernel;
    let tensor_of = |name: &str, dtype, shape: &[u64], kind| GmTensor {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        kind,
    };
    let program = Program {
        name: "two_kernels".into(),
        tensors: vec![
            tensor_of("a", DType::F16, &[64, 200], TensorKind::Input),
            tensor_of("b", DType::F16, &[48, 200], TensorKind::Constant),
            tensor_of("h", DType::F32, &[64, 48], TensorKind::Intermediate),
            tensor_of("y", DType::F32, &[64, 48], TensorKind::Intermediate),
        ],
        kernels: vec![gemm, scale],
        launches: vec![
            Launch {
                kernel: 0,
                args: vec![TensorId(0), TensorId(1), TensorId(2)],
            },
            Launch {
                kernel: 1,
                args: vec![TensorId(2), TensorId(3)],
            },
        ],
        inputs: vec![Binding {
            name: "a".into(),
            tensor: TensorId(0),
            shape: vec![64, 200],
        }],
        outputs: vec![Binding {
            name: "y".into(),
            tensor: TensorId(3),
            shape: vec![64, 48],
        }],
        memory: Default::default(),
    };
    let compiled = CpuBackend::new(&t)
        .expect("backend")
        .compile_program(&program)
        .expect("compile");
    let a = random(DType::F16, &[64, 200], 20);
    let b = random(DType::F16, &[48, 200], 21);
    let mut memory = [
        a.bytes().to_vec(),
        b.bytes().to_vec(),
        random(DType::F32, &[64, 48], 22).bytes().to_vec(),
        vec![0u8; 64 * 48 * 4],
    ];
    let mut views: Vec<&mut [u8]> = memory.iter_mut().map(|m| m.as_mut_slice()).collect();
    run_program(&compiled, &mut views).expect("run");
    let h = matmul_reference(&to_f32(&a), &to_f32(&b), true);
    let halves: Vec<f32> = h.to_f32_vec().iter().map(|v| 0.5 * v).collect();
    let want = Tensor::from_f32(DType::F32, vec![64, 48], &halves);
    assert_close("program output", &memory[3], &want, 1e-5);
}

#[test]
fn int8_gemm_accumulates_exactly_in_i32() {
    let (m, n, k) = (40usize, 48usize, 100usize);
    let mut problem = GemmProblem::plain("int8", m as u64, n as u64, k as u64, DType::I8, true);
    problem.output = DType::I32;
    let kernel = plan(&problem, &target()).expect("plan").kernel;
    let ints = |len: usize, seed: u64| -> Vec<i64> {
        values(len, seed)
            .iter()
            .map(|v| (v * 128.0) as i64)
            .collect()
    };
    let (av, bv) = (ints(m * k, 25), ints(n * k, 26));
    let a = Tensor::from_i64(DType::I8, vec![m, k], &av);
    let b = Tensor::from_i64(DType::I8, vec![n, k], &bv);
    let c = Tensor::zeros(DType::I32, vec![m, n]);
    let out = run(&kernel, &[&a, &b, &c]).expect("run");
    let got: Vec<i32> = out[2]
        .chunks_exact(4)
        .map(|w| i32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    for i in 0..m {
        for j in 0..n {
            let want: i64 = (0..k).map(|p| av[i * k + p] * bv[j * k + p]).sum();
            assert_eq!(got[i * n + j] as i64, want, "c[{i}][{j}]");
        }
    }
}

#[test]
fn integer_vector_ops_and_rounding_casts_are_exact() {
    let t = target();
    let mut p = BufferPlanner::new();
    let a = p.add(&t, buffer("a", MemLevel::Ub, DType::I32, 1, 40));
    let f = p.add(&t, buffer("f", MemLevel::Ub, DType::F32, 1, 40));
    let count = 37;
    let op = |op, dst, srcs| Stmt::Vector {
        op,
        dst: slice(dst, c(0)),
        srcs,
        count: c(count),
    };
    let run_of = |buf| VecArg::Slice(slice(buf, c(0)));
    let mut vector = vec![Stmt::CopyIn {
        dst: region(a, (c(0), 0), (1, count)),
        src: gm_region(0, (c(0), 0), (1, count)),
    }];
    vector.extend(flag(Pipe::Mte2, Pipe::V));
    vector.extend([
        op(VecOp::Muls, a, vec![run_of(a), VecArg::Imm(3.0)]),
        op(VecOp::Adds, a, vec![run_of(a), VecArg::Scalar(c(5))]),
        op(VecOp::Relu, a, vec![run_of(a)]),
        op(VecOp::Mins, a, vec![run_of(a), VecArg::Imm(50.0)]),
        op(VecOp::Cast, f, vec![run_of(a)]),
        op(VecOp::Muls, f, vec![run_of(f), VecArg::Imm(0.5)]),
        op(VecOp::Cast, a, vec![run_of(f)]),
        op(VecOp::Cast, f, vec![run_of(a)]),
    ]);
    vector.extend(flag(Pipe::V, Pipe::Mte3));
    vector.push(Stmt::CopyOut {
        dst: gm_region(1, (c(0), 0), (1, count)),
        src: region(f, (c(0), 0), (1, count)),
    });
    let kernel = Kernel {
        name: "ints".into(),
        core: CoreType::Aiv,
        blocks: 1,
        params: vec![
            param("v", DType::I32, &[1, count], ParamRole::Input),
            param("out", DType::F32, &[1, count], ParamRole::Output),
        ],
        buffers: p.finish(),
        cube: Vec::new(),
        vector,
        tiling: BTreeMap::new(),
    };
    verify(&kernel, &t).expect("verify");
    let v: Vec<i64> = (0..count as i64).map(|i| i - 12).collect();
    let input = Tensor::from_i64(DType::I32, vec![1, count as usize], &v);
    let out = Tensor::zeros(DType::F32, vec![1, count as usize]);
    let got = run(&kernel, &[&input, &out]).expect("run");
    let got = Tensor::from_bytes(DType::F32, vec![count as usize], got[1].clone())
        .expect("size")
        .to_f32_vec();
    let want: Vec<f32> = v
        .iter()
        .map(|&x| ((3 * x + 5).clamp(0, 50) as f32 * 0.5).round_ties_even())
        .collect();
    assert_eq!(got, want);
}
