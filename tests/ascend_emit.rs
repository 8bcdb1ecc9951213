//! The AscendC emitter end to end. Kernels tiled by `cubevec_passes` (and two written by hand
//! for the scalar and cross-core statements) are launched once each by one program, emitted as a
//! CANN project, built with g++ against the AscendC CPU emulation and run; every output is
//! compared with the graph interpreter's result for the same op. One project and one compile
//! keep the test short. Snapshots pin the emitted kernel sources.

use std::collections::BTreeMap;

mod support;

use support::{buffer, c, flag, param, random, slice, target, values};

use cubevec_backend_ascend::build_and_run;
use cubevec_backend_ascend::emit::{EmitError, Project, emit_project};
use cubevec_ir::interp::eval_op;
use cubevec_ir::kernel::{
    Binding, BufId, Buffer, BufferPlanner, CoreType, Expr, GmTensor, GmTile, Kernel, Launch,
    MemLevel, Param, ParamRole, Pipe, Program, ReduceKind, ScalarSrc, Stmt, TensorId, TensorKind,
    Tile, VecArg, VecOp,
};
use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::{DType, Op, Tensor};
use cubevec_passes::lower::epilogue::{EpilogueNode, lower_gemm_epilogue};
use cubevec_passes::lower::{ArgRef, OpContext, TensorShape};
use cubevec_passes::tile::gemm::{GemmProblem, GemmTiling, build, plan};
use cubevec_passes::tile::vector::{
    ChainArg, ChainStep, ElementwiseChain, RowKind, RowWise, plan_chain, plan_rows,
};

/// Names a hostile model could produce: for a kernel parameter and buffer, a tensor and an
/// output (kernel names are C identifiers, checked by the verifier; `main` must not clash with
/// the host's `main`).
const EVIL_NAME: &str = "soft\"max */\n#error injected";
const EVIL_KERNEL: &str = "main";
const EVIL_TENSOR: &str = "x\"); system(\"rm -rf /\"); /* \\\n*/ ??/";
const EVIL_OUTPUT: &str = "../../probs\"\n";

/// An output to compare: the binding name, the reference and the tolerance.
struct Check {
    output: String,
    reference: Tensor,
    rtol: f64,
    atol: f64,
}

/// Builds the program of all cases and remembers the input data and the references.
#[derive(Default)]
struct Cases {
    program: Program,
    data: BTreeMap<usize, Tensor>,
    checks: Vec<Check>,
}

impl Cases {
    fn tensor(&mut self, name: &str, dtype: DType, shape: &[usize], kind: TensorKind) -> TensorId {
        self.program.tensors.push(GmTensor {
            name: name.to_string(),
            dtype,
            shape: shape.iter().map(|&d| d as u64).collect(),
            kind,
        });
        TensorId(self.program.tensors.len() as u32 - 1)
    }

    /// A model input (`weight` = a constant) holding `data`.
    fn feed(&mut self, name: &str, data: &Tensor, weight: bool) -> TensorId {
        let kind = if weight {
            TensorKind::Constant
        } else {
            TensorKind::Input
        };
        let id = self.tensor(name, data.dtype(), data.shape(), kind);
        if !weight {
            self.program.inputs.push(Binding {
                name: name.to_string(),
                tensor: id,
                shape: data.shape().iter().map(|&d| d as u64).collect(),
            });
        }
        self.data.insert(id.index(), data.clone());
        id
    }

    /// Launches `kernel` on `args` plus a fresh result per `refs` entry, checked against it.
    fn launch(&mut self, kernel: Kernel, args: Vec<TensorId>, refs: Vec<(&str, Tensor)>) {
        self.launch_then(kernel, args, refs, Vec::new());
    }

    /// [`Cases::launch`] with `after` bound to the parameters after the results.
    fn launch_then(
        &mut self,
        kernel: Kernel,
        args: Vec<TensorId>,
        refs: Vec<(&str, Tensor)>,
        after: Vec<TensorId>,
    ) {
        let mut all = args;
        for (name, reference) in refs {
            let id = self.tensor(
                &format!("{name}_result"),
                reference.dtype(),
                reference.shape(),
                TensorKind::Intermediate,
            );
            // The emulation and the interpreter both accumulate in f32 in index order and round
            // once, so most results agree exactly; the tolerance allows a few final-rounding
            // steps (split-K adds partial sums rounded to f16).
            let (rtol, atol) = match reference.dtype() {
                DType::F32 => (1e-5, 1e-6),
                DType::F16 => (2e-3, 2e-2),
                DType::BF16 => (8e-3, 1e-2),
                _ => (0.0, 0.0),
            };
            self.program.outputs.push(Binding {
                name: name.to_string(),
                tensor: id,
                shape: reference.shape().iter().map(|&d| d as u64).collect(),
            });
            self.checks.push(Check {
                output: name.to_string(),
                reference,
                rtol,
                atol,
            });
            all.push(id);
        }
        all.extend(after);
        self.program.kernels.push(kernel);
        self.program.launches.push(Launch {
            kernel: self.program.kernels.len() - 1,
            args: all,
        });
    }
}

fn eval(op: Op, inputs: &[&Tensor]) -> Tensor {
    let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
    eval_op(&op, &inputs, &DimBindings::new())
        .expect("interpreter")
        .remove(0)
}

fn gemm_case(
    cases: &mut Cases,
    problem: GemmProblem,
    a: Tensor,
    b: Tensor,
    op: Op,
    extra: &[&Tensor],
) {
    let kernel = plan(&problem, &target()).expect("plan").kernel;
    let mut inputs = vec![&a, &b];
    inputs.extend_from_slice(extra);
    let reference = eval(op, &inputs);
    let name = problem.name.clone();
    let ta = cases.feed(&format!("{name}_a"), &a, false);
    let tb = cases.feed(&format!("{name}_b"), &b, true);
    cases.launch(kernel, vec![ta, tb], vec![(&name, reference)]);
}

fn vector_program(
    name: &str,
    buffers: Vec<Buffer>,
    params: Vec<Param>,
    vector: Vec<Stmt>,
) -> Kernel {
    Kernel {
        name: name.to_string(),
        core: CoreType::Aiv,
        blocks: 1,
        params,
        buffers,
        cube: Vec::new(),
        vector,
        tiling: BTreeMap::new(),
    }
}

fn v(name: &str) -> Expr {
    Expr::var(name)
}

fn tile(buf: BufId, rows: Expr, cols: Expr) -> Tile {
    Tile {
        buf,
        stage: c(0),
        row: c(0),
        col: c(0),
        rows,
        cols,
    }
}

fn gm(param: usize, row: Expr, rows: u64, cols: u64) -> GmTile {
    GmTile {
        param,
        batch: c(0),
        row,
        col: c(0),
        rows: c(rows),
        cols: c(cols),
    }
}

/// Row arg-max with `ReduceMax` (index), scalar loads from GM and UB, `SetValue`, an int → float
/// `Cast`, and scalar operands: `idx[r]` = arg-max of row r for `count[0]` rows, `shifted` =
/// `idx + rows`, `dup` = `2 · rows`.
fn argmax_kernel() -> Kernel {
    let t = target();
    let mut p = BufferPlanner::new();
    let ub = |name: &str, dtype, rows, cols| buffer(name, MemLevel::Ub, dtype, rows, cols);
    let x = p.add(&t, ub("x", DType::F32, 8, 64));
    let stat = p.add(&t, ub("stat", DType::F32, 1, 8));
    let ib = p.add(&t, ub("ib", DType::I32, 1, 8));
    let fb = p.add(&t, ub("fb", DType::F32, 1, 8));
    let db = p.add(&t, ub("db", DType::I32, 1, 8));
    let params = vec![
        param("x", DType::F32, &[8, 64], ParamRole::Input),
        param("count", DType::I32, &[1], ParamRole::Input),
        param("idx", DType::I32, &[8], ParamRole::Output),
        param("shifted", DType::F32, &[8], ParamRole::Output),
        param("dup", DType::I32, &[8], ParamRole::Output),
    ];
    let mut row = vec![Stmt::Reduce {
        kind: ReduceKind::MaxIndex,
        dst: slice(stat, c(0)),
        src: slice(x, v("r").mul(c(64))),
        count: c(64),
    }];
    row.extend(flag(Pipe::V, Pipe::S));
    row.push(Stmt::LoadScalar {
        var: "i".into(),
        src: ScalarSrc::Ub(slice(stat, c(1))),
        planned: c(0),
    });
    row.push(Stmt::SetValue {
        dst: slice(ib, v("r")),
        value: VecArg::Scalar(v("i")),
    });
    row.extend(flag(Pipe::S, Pipe::V));
    let mut body = vec![
        Stmt::LoadScalar {
            var: "rows".into(),
            src: ScalarSrc::Gm {
                param: 1,
                index: c(0),
            },
            planned: c(8),
        },
        Stmt::CopyIn {
            dst: tile(x, c(8), c(64)),
            src: gm(0, c(0), 8, 64),
        },
    ];
    body.extend(flag(Pipe::Mte2, Pipe::V));
    body.push(Stmt::For {
        var: "r".into(),
        extent: v("rows"),
        pipelined: false,
        body: row,
    });
    body.extend([
        Stmt::Vector {
            op: VecOp::Cast,
            dst: slice(fb, c(0)),
            srcs: vec![VecArg::Slice(slice(ib, c(0)))],
            count: c(8),
        },
        Stmt::Vector {
            op: VecOp::Adds,
            dst: slice(fb, c(0)),
            srcs: vec![VecArg::Slice(slice(fb, c(0))), VecArg::Scalar(v("rows"))],
            count: c(8),
        },
        Stmt::Vector {
            op: VecOp::Duplicate,
            dst: slice(db, c(0)),
            srcs: vec![VecArg::Scalar(v("rows").mul(c(2)))],
            count: c(8),
        },
    ]);
    body.extend(flag(Pipe::V, Pipe::Mte3));
    for (param, buf) in [(2, ib), (3, fb), (4, db)] {
        body.push(Stmt::CopyOut {
            dst: gm(param, c(0), 1, 8),
            src: tile(buf, c(1), c(8)),
        });
    }
    vector_program("argmax_rows", p.finish(), params, body)
}

/// A MIX kernel: the AIC multiplies two 16×16 f16 matrices into a GM workspace and signals its
/// AIVs (mode 2); each AIV scales its 8 rows by 2 into the output.
fn mix_kernel() -> Kernel {
    let t = target();
    let mut p = BufferPlanner::new();
    let f16 = |name: &str, level| buffer(name, level, DType::F16, 16, 16);
    let l1a = p.add(&t, f16("l1a", MemLevel::L1));
    let l1b = p.add(&t, f16("l1b", MemLevel::L1));
    let l0a = p.add(&t, f16("l0a", MemLevel::L0A));
    let l0b = p.add(&t, f16("l0b", MemLevel::L0B));
    let l0c = p.add(&t, buffer("l0c", MemLevel::L0C, DType::F32, 16, 16));
    let ub = p.add(&t, buffer("ub", MemLevel::Ub, DType::F32, 8, 16));
    let sixteen = || tile(l1a, c(16), c(16));
    let mut cube = vec![
        Stmt::CopyIn {
            dst: sixteen(),
            src: gm(0, c(0), 16, 16),
        },
        Stmt::CopyIn {
            dst: tile(l1b, c(16), c(16)),
            src: gm(1, c(0), 16, 16),
        },
    ];
    cube.extend(flag(Pipe::Mte2, Pipe::Mte1));
    cube.extend([
        Stmt::LoadL0 {
            dst: tile(l0a, c(16), c(16)),
            src: sixteen(),
            transpose: false,
        },
        Stmt::LoadL0 {
            dst: tile(l0b, c(16), c(16)),
            src: tile(l1b, c(16), c(16)),
            transpose: false,
        },
    ]);
    cube.extend(flag(Pipe::Mte1, Pipe::M));
    cube.push(Stmt::Mmad {
        c: l0c,
        c_stage: c(0),
        a: l0a,
        a_stage: c(0),
        b: l0b,
        b_stage: c(0),
        m: c(16),
        n: c(16),
        k: c(16),
        init: c(1),
    });
    cube.extend(flag(Pipe::M, Pipe::Fix));
    cube.extend([
        Stmt::Fixpipe {
            dst: gm(2, c(0), 16, 16),
            src: tile(l0c, c(16), c(16)),
            relu: false,
            atomic_add: false,
        },
        Stmt::CrossCoreSet {
            pipe: Pipe::Fix,
            flag: 0,
        },
    ]);
    let mut vector = vec![
        Stmt::CrossCoreWait { flag: 0 },
        Stmt::Let {
            var: "r0".into(),
            value: v("blk").mul(c(8)),
        },
        Stmt::CopyIn {
            dst: tile(ub, c(8), c(16)),
            src: gm(2, v("r0"), 8, 16),
        },
    ];
    vector.extend(flag(Pipe::Mte2, Pipe::V));
    vector.push(Stmt::Vector {
        op: VecOp::Muls,
        dst: slice(ub, c(0)),
        srcs: vec![VecArg::Slice(slice(ub, c(0))), VecArg::Imm(2.0)],
        count: c(128),
    });
    vector.extend(flag(Pipe::V, Pipe::Mte3));
    vector.push(Stmt::CopyOut {
        dst: gm(3, v("r0"), 8, 16),
        src: tile(ub, c(8), c(16)),
    });
    Kernel {
        name: "mix_scale".into(),
        core: CoreType::Mix1To2,
        blocks: 1,
        params: vec![
            param("a", DType::F16, &[16, 16], ParamRole::Input),
            param("b", DType::F16, &[16, 16], ParamRole::Input),
            param("ws", DType::F32, &[16, 16], ParamRole::Workspace),
            param("out", DType::F32, &[16, 16], ParamRole::Output),
        ],
        buffers: p.finish(),
        cube,
        vector,
        tiling: BTreeMap::new(),
    }
}

/// Every case in one program.
/// A bf16 RMSNorm over `[rows, cols]`.
/// `silu(a·b + bias) * u` in one MIX kernel: the AIC hands tiles to the AIVs through the
/// workspace.
fn fused_gemm_case(cases: &mut Cases) {
    let bf16 = DType::BF16;
    let (a, b) = (random(bf16, &[70, 96], 40), random(bf16, &[96, 88], 41));
    let (bias, u) = (random(bf16, &[88], 42), random(bf16, &[70, 88], 43));
    let product = eval(Op::MatMul, &[&a, &b]);
    let biased = eval(Op::Binary(BinaryOp::Add), &[&product, &bias]);
    let act = eval(Op::Unary(UnaryOp::Silu), &[&biased]);
    let reference = eval(Op::Binary(BinaryOp::Mul), &[&act, &u]);
    let shape =
        |t: &Tensor| TensorShape::new(t.dtype(), t.shape().iter().map(|&d| d as u64).collect());
    let t = target();
    let ctx = OpContext {
        name: "fused_gemm",
        op: &Op::MatMul,
        inputs: [&a, &b, &bias, &u].iter().map(|x| Some(shape(x))).collect(),
        outputs: vec![shape(&reference)],
        target: &t,
    };
    let nodes = [
        EpilogueNode::Binary {
            op: BinaryOp::Add,
            operand: 2,
            product_first: true,
        },
        EpilogueNode::Unary(UnaryOp::Silu),
        EpilogueNode::Binary {
            op: BinaryOp::Mul,
            operand: 3,
            product_first: true,
        },
    ];
    let mut lowering = lower_gemm_epilogue(&ctx, &nodes).expect("fused lowering");
    let call = lowering.calls.remove(0);
    assert_eq!(
        call.args,
        [
            ArgRef::Operand(0),
            ArgRef::Operand(1),
            ArgRef::Result(0),
            ArgRef::Operand(2),
            ArgRef::Operand(3),
            ArgRef::Scratch(0)
        ]
    );
    let ws = &lowering.scratch[0].tensor;
    let ws_shape: Vec<usize> = ws.shape.iter().map(|&d| d as usize).collect();
    let inputs = [
        cases.feed("fused_a", &a, false),
        cases.feed("fused_b", &b, true),
    ];
    let operands = vec![
        cases.feed("fused_bias", &bias, true),
        cases.feed("fused_u", &u, false),
    ];
    let workspace = cases.tensor("fused_ws", ws.dtype, &ws_shape, TensorKind::Intermediate);
    let mut after = operands;
    after.push(workspace);
    cases.launch_then(
        call.kernel,
        inputs.to_vec(),
        vec![("fused_gemm", reference)],
        after,
    );
}

fn rms_norm_case(cases: &mut Cases, name: &str, [rows, cols]: [usize; 2], seed: u64) {
    let x = random(DType::BF16, &[rows, cols], seed);
    let gamma = random(DType::BF16, &[cols], seed + 1);
    let rms = RowWise {
        name: name.into(),
        rows: rows as u64,
        cols: cols as u64,
        dtype: DType::BF16,
        kind: RowKind::RmsNorm { eps: 1e-6 },
    };
    let reference = eval(
        Op::RmsNorm {
            axis: -1,
            epsilon_bits: 1e-6f32.to_bits(),
        },
        &[&x, &gamma],
    );
    let (tx, tg) = (
        cases.feed(&format!("{name}_x"), &x, false),
        cases.feed(&format!("{name}_gamma"), &gamma, true),
    );
    cases.launch(
        plan_rows(&rms, &target()).expect("plan").kernel,
        vec![tx, tg],
        vec![(name, reference)],
    );
}

fn cases() -> Cases {
    let mut cases = Cases {
        program: Program {
            name: "emit test \"model\" */\n".into(),
            ..Program::default()
        },
        ..Cases::default()
    };
    let t = target();

    // MatMul bf16 → f32 accumulation → bf16.
    gemm_case(
        &mut cases,
        GemmProblem::plain("matmul_bf16", 48, 80, 160, DType::BF16, false),
        random(DType::BF16, &[48, 160], 1),
        random(DType::BF16, &[160, 80], 2),
        Op::MatMul,
        &[],
    );
    // Gemm with B stored transposed ([n, k], nn.Linear weights).
    gemm_case(
        &mut cases,
        GemmProblem::plain("gemm_tb_f16", 40, 72, 96, DType::F16, true),
        random(DType::F16, &[40, 96], 3),
        random(DType::F16, &[72, 96], 4),
        Op::Gemm {
            alpha_bits: 1f32.to_bits(),
            beta_bits: 0f32.to_bits(),
            trans_a: false,
            trans_b: true,
        },
        &[],
    );
    // f32 and int8 inputs (other fractal widths: 8 and 32 columns), B stored transposed.
    gemm_case(
        &mut cases,
        GemmProblem::plain("gemm_f32", 24, 40, 56, DType::F32, true),
        random(DType::F32, &[24, 56], 18),
        random(DType::F32, &[40, 56], 19),
        Op::Gemm {
            alpha_bits: 1f32.to_bits(),
            beta_bits: 0f32.to_bits(),
            trans_a: false,
            trans_b: true,
        },
        &[],
    );
    let int8 = |shape: &[usize], seed| {
        let v: Vec<f32> = values(shape.iter().product(), seed)
            .iter()
            .map(|x| x * 120.0)
            .collect();
        Tensor::from_f32(DType::I8, shape.to_vec(), &v)
    };
    let (a8, b8) = (int8(&[32, 96], 20), int8(&[48, 96], 21));
    let to_i32 = |x: &Tensor| eval(Op::Cast { to: DType::I32 }, &[x]);
    let b_t = eval(Op::Transpose { perm: vec![1, 0] }, &[&to_i32(&b8)]);
    let reference = eval(Op::MatMul, &[&to_i32(&a8), &b_t]);
    let mut problem = GemmProblem::plain("gemm_i8", 32, 48, 96, DType::I8, true);
    problem.output = DType::I32;
    let kernel = plan(&problem, &t).expect("plan").kernel;
    let (ta, tb) = (
        cases.feed("gemm_i8_a", &a8, false),
        cases.feed("gemm_i8_b", &b8, true),
    );
    cases.launch(kernel, vec![ta, tb], vec![("gemm_i8", reference)]);
    // M, N and K tails with split-K (atomic accumulation into a zero-filled output).
    gemm_case(
        &mut cases,
        GemmProblem::plain("tail_gemm", 100, 77, 300, DType::F16, false),
        random(DType::F16, &[100, 300], 5),
        random(DType::F16, &[300, 77], 6),
        Op::MatMul,
        &[],
    );
    // A-panel schedule: A strips resident in L1 across N tiles, runs crossing strips.
    let problem = GemmProblem::plain("a_panel", 36, 60, 200, DType::F16, true);
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
    let (ap, bp) = (
        random(DType::F16, &[36, 200], 22),
        random(DType::F16, &[60, 200], 23),
    );
    let reference = eval(
        Op::Gemm {
            alpha_bits: 1f32.to_bits(),
            beta_bits: 0f32.to_bits(),
            trans_a: false,
            trans_b: true,
        },
        &[&ap, &bp],
    );
    let kernel = build(&problem, &tiling, &t).expect("a-panel kernel");
    let (ta, tb) = (
        cases.feed("a_panel_a", &ap, false),
        cases.feed("a_panel_b", &bp, true),
    );
    cases.launch(kernel, vec![ta, tb], vec![("a_panel", reference)]);
    // Grouped expert GEMM (one expert without tokens).
    let sizes = Tensor::from_i64(DType::I64, vec![4], &[37, 0, 50, 5]);
    gemm_case(
        &mut cases,
        GemmProblem {
            name: "experts".into(),
            groups: vec![37, 0, 50, 5],
            n: 48,
            k: 64,
            input: DType::BF16,
            output: DType::BF16,
            b_transposed: true,
            relu: false,
            epilogue: None,
            halves: None,
        },
        random(DType::BF16, &[92, 64], 7),
        random(DType::BF16, &[4, 48, 64], 8),
        Op::GroupedMatMul,
        &[&sizes],
    );

    // A GEMM with a fused epilogue (MIX 1:2): bias row, SiLU, times a whole tensor.
    fused_gemm_case(&mut cases);

    // RMSNorm (rows of 400 bytes: unaligned copies), and over rows longer than UB (streamed in
    // chunks).
    rms_norm_case(&mut cases, "rms_norm", [20, 200], 9);
    rms_norm_case(&mut cases, "long_rms_norm", [3, 16_384], 31);

    // LayerNorm with gamma and beta, f16 rows of 150.
    let x = random(DType::F16, &[6, 150], 34);
    let gamma = random(DType::F16, &[150], 35);
    let beta = random(DType::F16, &[150], 36);
    let layer_norm = RowWise {
        name: "layer_norm".into(),
        rows: 6,
        cols: 150,
        dtype: DType::F16,
        kind: RowKind::LayerNorm {
            eps: 1e-5,
            bias: true,
        },
    };
    let reference = eval(
        Op::LayerNorm {
            axis: -1,
            epsilon_bits: 1e-5f32.to_bits(),
        },
        &[&x, &gamma, &beta],
    );
    let args = vec![
        cases.feed("layer_norm_x", &x, false),
        cases.feed("layer_norm_gamma", &gamma, true),
        cases.feed("layer_norm_beta", &beta, true),
    ];
    cases.launch(
        plan_rows(&layer_norm, &t).expect("plan").kernel,
        args,
        vec![("layer_norm", reference)],
    );
    let x = random(DType::F32, &[2, 12_345], 33);
    let long_softmax = RowWise {
        name: "long_softmax".into(),
        rows: 2,
        cols: 12_345,
        dtype: DType::F32,
        kind: RowKind::Softmax,
    };
    let reference = eval(Op::Softmax { axis: -1 }, &[&x]);
    let tx = cases.feed("long_softmax_x", &x, false);
    cases.launch(
        plan_rows(&long_softmax, &t).expect("plan").kernel,
        vec![tx],
        vec![("long_softmax", reference)],
    );

    // Softmax, under names a hostile model could choose.
    let x = random(DType::F32, &[24, 100], 11);
    let softmax = RowWise {
        name: EVIL_KERNEL.into(),
        rows: 24,
        cols: 100,
        dtype: DType::F32,
        kind: RowKind::Softmax,
    };
    let reference = eval(Op::Softmax { axis: -1 }, &[&x]);
    let tx = cases.feed(EVIL_TENSOR, &x, false);
    let mut kernel = plan_rows(&softmax, &t).expect("plan").kernel;
    kernel.params[0].name = EVIL_NAME.into();
    kernel.buffers[0].name = EVIL_NAME.into();
    cases.launch(kernel, vec![tx], vec![(EVIL_OUTPUT, reference)]);

    // SwiGLU with separate gate and up operands.
    let gate = random(DType::BF16, &[1000], 12);
    let up = random(DType::BF16, &[1000], 13);
    let reference = eval(
        Op::SwiGlu {
            split: false,
            limit_bits: None,
        },
        &[&gate, &up],
    );
    let chain = ElementwiseChain::swiglu("swiglu", 1000, DType::BF16);
    let (tgate, tup) = (
        cases.feed("gate", &gate, false),
        cases.feed("up", &up, false),
    );
    cases.launch(
        plan_chain(&chain, &t).expect("plan").kernel,
        vec![tgate, tup],
        vec![("swiglu", reference)],
    );

    // An elementwise chain: sigmoid as 1 / (1 + exp(-x)) in f16, 777 elements.
    let x = random(DType::F16, &[777], 14);
    let step = |op, srcs| ChainStep { op, dst: 0, srcs };
    let chain = ElementwiseChain {
        name: "sigmoid".into(),
        len: 777,
        dtype: DType::F16,
        inputs: 1,
        steps: vec![
            step(VecOp::Muls, vec![ChainArg::Input(0), ChainArg::Imm(-1.0)]),
            step(VecOp::Exp, vec![ChainArg::Temp(0)]),
            step(VecOp::Adds, vec![ChainArg::Temp(0), ChainArg::Imm(1.0)]),
            step(VecOp::Reciprocal, vec![ChainArg::Temp(0)]),
        ],
        output: 0,
    };
    let reference = eval(Op::Unary(UnaryOp::Sigmoid), &[&x]);
    let tx = cases.feed("sigmoid_x", &x, false);
    cases.launch(
        plan_chain(&chain, &t).expect("plan").kernel,
        vec![tx],
        vec![("sigmoid", reference)],
    );

    // Rounding to integral values (f32 → f32 Casts): floor(x) + ceil(x) + rint(x), with halves
    // (rint goes to even) and negative fractions (ceil gives -0).
    let mut xs: Vec<f32> = values(120, 16).iter().map(|v| v * 5.0).collect();
    xs[..6].copy_from_slice(&[0.5, 1.5, 2.5, -0.5, -2.5, -0.25]);
    let x = Tensor::from_f32(DType::F32, vec![120], &xs);
    let chain = ElementwiseChain {
        name: "rounding".into(),
        len: 120,
        dtype: DType::F32,
        inputs: 1,
        steps: vec![
            step(VecOp::Floor, vec![ChainArg::Input(0)]),
            ChainStep {
                op: VecOp::Ceil,
                dst: 1,
                srcs: vec![ChainArg::Input(0)],
            },
            step(VecOp::Add, vec![ChainArg::Temp(0), ChainArg::Temp(1)]),
            ChainStep {
                op: VecOp::Rint,
                dst: 1,
                srcs: vec![ChainArg::Input(0)],
            },
            step(VecOp::Add, vec![ChainArg::Temp(0), ChainArg::Temp(1)]),
        ],
        output: 0,
    };
    let unary = |op| eval(Op::Unary(op), &[&x]);
    let add = |a: &Tensor, b: &Tensor| eval(Op::Binary(BinaryOp::Add), &[a, b]);
    let reference = add(
        &add(&unary(UnaryOp::Floor), &unary(UnaryOp::Ceil)),
        &unary(UnaryOp::Round),
    );
    let tx = cases.feed("rounding_x", &x, false);
    cases.launch(
        plan_chain(&chain, &t).expect("plan").kernel,
        vec![tx],
        vec![("rounding", reference)],
    );

    // Scalar statements: arg-max rows.
    let x = random(DType::F32, &[8, 64], 15);
    let argmax = eval(
        Op::ArgMax {
            axis: 1,
            keep_dims: false,
            select_last_index: false,
        },
        &[&x],
    )
    .to_i64_vec();
    let idx = Tensor::from_i64(DType::I32, vec![8], &argmax);
    let shifted: Vec<f32> = argmax.iter().map(|&i| i as f32 + 8.0).collect();
    let (tx, tcount) = (
        cases.feed("argmax_x", &x, false),
        cases.feed(
            "argmax_rows",
            &Tensor::from_i64(DType::I32, vec![1], &[8]),
            false,
        ),
    );
    cases.launch(
        argmax_kernel(),
        vec![tx, tcount],
        vec![
            ("argmax", idx),
            (
                "argmax_shifted",
                Tensor::from_f32(DType::F32, vec![8], &shifted),
            ),
            (
                "argmax_dup",
                Tensor::from_i64(DType::I32, vec![8], &[16; 8]),
            ),
        ],
    );

    // A MIX kernel handing a Cube result to the AIVs through a GM workspace.
    let a = random(DType::F16, &[16, 16], 16);
    let b = random(DType::F16, &[16, 16], 17);
    let to_f32 = |x: &Tensor| eval(Op::Cast { to: DType::F32 }, &[x]);
    let product = eval(Op::MatMul, &[&to_f32(&a), &to_f32(&b)]);
    let two = Tensor::from_f32(DType::F32, vec![16, 16], &[2.0; 256]);
    let reference = eval(Op::Binary(BinaryOp::Mul), &[&product, &two]);
    let (ta, tb) = (
        cases.feed("mix_a", &a, false),
        cases.feed("mix_b", &b, false),
    );
    let ws = cases.tensor("mix_ws", DType::F32, &[16, 16], TensorKind::Intermediate);
    let kernel = mix_kernel();
    let out = cases.tensor("mix_out", DType::F32, &[16, 16], TensorKind::Intermediate);
    cases.program.outputs.push(Binding {
        name: "mix".into(),
        tensor: out,
        shape: vec![16, 16],
    });
    cases.checks.push(Check {
        output: "mix".into(),
        reference,
        rtol: 1e-5,
        atol: 1e-6,
    });
    cases.program.kernels.push(kernel);
    cases.program.launches.push(Launch {
        kernel: cases.program.kernels.len() - 1,
        args: vec![ta, tb, ws, out],
    });
    cases
}

fn emit(cases: &Cases) -> Project {
    emit_project(&cases.program, &target()).expect("emit")
}

#[test]
fn emitted_project_runs_on_the_emulator_and_matches_the_interpreter() {
    let cases = cases();
    let project = emit(&cases);
    let manifest = project.manifest().expect("manifest");
    let dir = tempfile::tempdir().expect("temporary directory");
    let (project_dir, inputs, outputs) = (
        dir.path().join("project"),
        dir.path().join("inputs"),
        dir.path().join("outputs"),
    );
    std::fs::create_dir_all(&project_dir).expect("mkdir");
    std::fs::create_dir_all(&inputs).expect("mkdir");
    project.write_into(&project_dir).expect("write project");
    for f in manifest.inputs.iter().chain(&manifest.constants) {
        let data = &cases.data[&f.tensor];
        assert_eq!(data.bytes().len() as u64, f.bytes, "{}", f.name);
        std::fs::write(inputs.join(&f.file), data.bytes()).expect("write input");
    }
    let run = build_and_run(&project_dir, &inputs, &outputs)
        .unwrap_or_else(|e| panic!("emulated run failed: {e}"));
    assert!(run.log.is_empty(), "emulator log:\n{}", run.log);
    for check in &cases.checks {
        let file = manifest
            .outputs
            .iter()
            .find(|o| o.name == check.output)
            .expect("output in manifest");
        let bytes = std::fs::read(outputs.join(&file.file)).expect("read output");
        let got = Tensor::from_bytes(
            check.reference.dtype(),
            check.reference.shape().to_vec(),
            bytes,
        )
        .expect("output size");
        let (got, want) = (got.to_f64_vec(), check.reference.to_f64_vec());
        let worst = got
            .iter()
            .zip(&want)
            .enumerate()
            .map(|(i, (g, w))| (i, (g - w).abs() - check.atol - check.rtol * w.abs()))
            .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        assert!(
            worst.1 <= 0.0,
            "{:?}: element {} is {} but the interpreter gives {}",
            check.output,
            worst.0,
            got[worst.0],
            want[worst.0]
        );
    }
}

#[test]
fn project_sources_snapshot() {
    let cases = cases();
    let project = emit(&cases);
    let manifest = project.manifest().expect("manifest");
    for k in &manifest.kernels {
        let source = project.text(&k.source).expect("kernel source");
        insta::assert_snapshot!(k.symbol.clone(), source);
    }
    for (name, path) in [
        ("host_main", "host/main.cpp"),
        ("cmake_lists", "CMakeLists.txt"),
        ("launch_header", "include/cubevec_launch.h"),
        ("tiling_header", "include/cubevec_tiling.h"),
        ("device_launch", "launch/main.cpp"),
        ("emulated_launch", "emulate/main.cpp"),
    ] {
        insta::assert_snapshot!(name, project.text(path).expect("project file"));
    }
}

#[test]
fn model_names_cannot_break_the_cpp() {
    let cases = cases();
    let project = emit(&cases);
    let manifest = project.manifest().expect("manifest");
    for (path, bytes) in &project.files {
        assert!(
            !path.contains("..") && !path.contains('"') && !path.contains('\n'),
            "{path:?}"
        );
        let text = std::str::from_utf8(bytes).expect("utf-8");
        if path.ends_with(".json") {
            continue;
        }
        for evil in [EVIL_NAME, EVIL_TENSOR, EVIL_OUTPUT, "*/\n", "??/", "\\\n"] {
            assert!(!text.contains(evil), "{path} contains {evil:?}");
        }
    }
    // The manifest keeps the names exactly, and the files derived from them are tame.
    assert_eq!(manifest.program, cases.program.name);
    let kernel = manifest
        .kernels
        .iter()
        .find(|k| k.name == EVIL_KERNEL)
        .expect("kernel");
    assert_eq!(kernel.symbol, "cubevec_main");
    assert_eq!(kernel.params[0].name, EVIL_NAME);
    let out = manifest
        .outputs
        .iter()
        .find(|o| o.name == EVIL_OUTPUT)
        .expect("output");
    assert_eq!(out.file, "probs.bin");
    let input = manifest
        .inputs
        .iter()
        .find(|i| i.name == EVIL_TENSOR)
        .expect("input");
    assert_eq!(input.file, "x_system_rm_rf.bin");
}

#[test]
fn emission_is_deterministic_and_rejects_broken_programs() {
    let cases = cases();
    assert_eq!(emit(&cases), emit(&cases));
    let mut broken = cases.program.clone();
    broken.launches[0].args.pop();
    assert!(matches!(
        emit_project(&broken, &target()),
        Err(EmitError::Program(_))
    ));
    let mut unknown = target();
    unknown.name = "ascend310p".into();
    assert!(matches!(
        emit_project(&cases.program, &unknown),
        Err(EmitError::UnknownSoc(_))
    ));
}
