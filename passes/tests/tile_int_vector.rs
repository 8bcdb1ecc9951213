//! Integer elementwise chains tiled for the vector unit compute exactly what the graph
//! interpreter computes: int32 chains in i32 (wrapping), int8/uint8 chains in f32 with
//! truncating division and wrap-around restored after every step. Each test plans a chain,
//! runs the kernel with the reference executor (`cubevec_ir::kernel::eval`) on random values
//! mixed with overflow edge cases, and compares every element with `cubevec_ir::interp`.

use cubevec_ir::interp::eval_op;
use cubevec_ir::kernel::{GmData, Kernel, ParamRole, execute};
use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op, Tensor};
use cubevec_passes::tile::TileError;
use cubevec_passes::tile::vector::{ChainArg, ChainStep, ElementwiseChain, plan_chain};

/// Elements per tensor: several tiles over the AIVs and a partial last tile.
const LEN: usize = 4099;

fn target() -> Target {
    Target::by_name("ascend910b2").expect("target")
}

/// The value range of an integer dtype.
fn range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I8 => (-128, 127),
        DType::U8 => (0, 255),
        DType::I32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        other => panic!("no range for {other}"),
    }
}

/// `LEN` values of `dtype`: uniform values from a 64-bit LCG, except that the first
/// `EDGES²` elements of the operand pair `cross = false` / `cross = true` run through every
/// pair of edge cases (extremes, their neighbours and halves, ±1, ±2, 0). Zeros become ones
/// when `nonzero` (divisors).
fn values(dtype: DType, seed: u64, cross: bool, nonzero: bool) -> Tensor {
    let (lo, hi) = range(dtype);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let span = (hi - lo + 1) as u64;
    let edges = [lo, lo + 1, hi, hi - 1, -1, 0, 1, 2, -2, lo / 2, hi / 2];
    let n = edges.len();
    let out: Vec<i64> = (0..LEN)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let x = if i < n * n {
                edges[if cross { i / n } else { i % n }]
            } else {
                lo + ((state >> 16) % span) as i64
            };
            let x = x.clamp(lo, hi);
            if nonzero && x == 0 { 1 } else { x }
        })
        .collect();
    Tensor::from_i64(dtype, vec![LEN], &out)
}

fn step(op: cubevec_ir::kernel::VecOp, srcs: Vec<ChainArg>) -> ChainStep {
    ChainStep { op, dst: 0, srcs }
}

fn chain(name: &str, dtype: DType, inputs: usize, steps: Vec<ChainStep>) -> ElementwiseChain {
    ElementwiseChain {
        name: name.to_string(),
        len: LEN as u64,
        dtype,
        inputs,
        steps,
        output: 0,
    }
}

/// Runs `kernel` on `inputs` (the output parameter starts as garbage) and returns the output.
fn run(kernel: &Kernel, inputs: &[&Tensor]) -> Vec<i64> {
    let mut inputs = inputs.iter();
    let mut params: Vec<GmData> = kernel
        .params
        .iter()
        .map(|p| match p.role {
            ParamRole::Input => GmData::from_tensor(inputs.next().expect("an input per param")),
            _ => GmData::from_i64(p.dtype, &vec![77; LEN]),
        })
        .collect();
    execute(kernel, &mut params).unwrap_or_else(|e| panic!("{}: {e}", kernel.name));
    params
        .last()
        .expect("an output")
        .to_tensor(vec![LEN])
        .expect("output tensor")
        .to_i64_vec()
}

fn interp(op: Op, inputs: &[&Tensor]) -> Tensor {
    let operands: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
    eval_op(&op, &operands, &DimBindings::new())
        .expect("reference")
        .remove(0)
}

fn assert_exact(name: &str, inputs: &[&Tensor], got: &[i64], want: &Tensor) {
    for (i, (&g, w)) in got.iter().zip(want.to_i64_vec()).enumerate() {
        let args: Vec<i64> = inputs.iter().map(|t| t.get_i64(i)).collect();
        assert_eq!(
            g, w,
            "{name}: element {i} of {args:?} is {g}, the interpreter gives {w}"
        );
    }
    assert_eq!(got.len(), want.numel(), "{name}: element count");
}

fn vec_op(op: BinaryOp) -> cubevec_ir::kernel::VecOp {
    use cubevec_ir::kernel::VecOp;
    match op {
        BinaryOp::Add => VecOp::Add,
        BinaryOp::Sub => VecOp::Sub,
        BinaryOp::Mul => VecOp::Mul,
        BinaryOp::Div => VecOp::Div,
        BinaryOp::Max => VecOp::Max,
        BinaryOp::Min => VecOp::Min,
        other => panic!("no vector op for {other:?}"),
    }
}

/// Plans `op` on `dtype` and compares the kernel with the interpreter for several seeds.
fn check_binary(dtype: DType, op: BinaryOp) {
    let name = format!("{op:?}_{dtype}").to_lowercase();
    let c = chain(
        &name,
        dtype,
        2,
        vec![step(
            vec_op(op),
            vec![ChainArg::Input(0), ChainArg::Input(1)],
        )],
    );
    let kernel = plan_chain(&c, &target())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .kernel;
    for seed in 1..=3 {
        let a = values(dtype, seed, false, false);
        let b = values(dtype, seed + 10, true, op == BinaryOp::Div);
        let got = run(&kernel, &[&a, &b]);
        let want = interp(Op::Binary(op), &[&a, &b]);
        assert_exact(&name, &[&a, &b], &got, &want);
    }
}

const EIGHT_BIT_OPS: [BinaryOp; 6] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Max,
    BinaryOp::Min,
];

#[test]
fn int8_binary_ops_wrap_and_truncate_like_the_interpreter() {
    for op in EIGHT_BIT_OPS {
        check_binary(DType::I8, op);
    }
}

#[test]
fn uint8_binary_ops_wrap_and_truncate_like_the_interpreter() {
    for op in EIGHT_BIT_OPS {
        check_binary(DType::U8, op);
    }
}

#[test]
fn int32_binary_ops_wrap_like_the_interpreter() {
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Max,
        BinaryOp::Min,
    ] {
        check_binary(DType::I32, op);
    }
}

/// `-128 / -1` wraps to -128 and `-7 / 2` truncates to -3, as the interpreter says.
#[test]
fn int8_division_edge_cases_are_exact() {
    let a = Tensor::from_i64(DType::I8, vec![6], &[-128, -7, 7, -128, 127, -1]);
    let b = Tensor::from_i64(DType::I8, vec![6], &[-1, 2, -2, 127, -128, 127]);
    let want = interp(Op::Binary(BinaryOp::Div), &[&a, &b]);
    assert_eq!(want.to_i64_vec(), vec![-128, -3, -3, -1, 0, 0]);
    let mut c = chain(
        "div_edges",
        DType::I8,
        2,
        vec![step(
            cubevec_ir::kernel::VecOp::Div,
            vec![ChainArg::Input(0), ChainArg::Input(1)],
        )],
    );
    c.len = 6;
    let kernel = plan_chain(&c, &target()).expect("plan").kernel;
    let mut params = vec![
        GmData::from_tensor(&a),
        GmData::from_tensor(&b),
        GmData::from_i64(DType::I8, &[0; 6]),
    ];
    execute(&kernel, &mut params).expect("run");
    let got = params[2].to_tensor(vec![6]).expect("tensor").to_i64_vec();
    assert_eq!(got, want.to_i64_vec());
}

/// A multi-step chain restores the integer value after every step:
/// `max(-(a · b) / a, b)` with the intermediate product and negation wrapping.
#[test]
fn multi_step_int8_chain_matches_the_composed_ops() {
    use ChainArg::{Imm, Input, Temp};
    use cubevec_ir::kernel::VecOp;
    let c = chain(
        "chain_i8",
        DType::I8,
        2,
        vec![
            step(VecOp::Mul, vec![Input(0), Input(1)]),
            step(VecOp::Muls, vec![Temp(0), Imm(-1.0)]),
            step(VecOp::Div, vec![Temp(0), Input(0)]),
            step(VecOp::Max, vec![Temp(0), Input(1)]),
        ],
    );
    let kernel = plan_chain(&c, &target()).expect("plan").kernel;
    let a = values(DType::I8, 5, false, true);
    let b = values(DType::I8, 6, true, false);
    let got = run(&kernel, &[&a, &b]);
    let product = interp(Op::Binary(BinaryOp::Mul), &[&a, &b]);
    let negated = interp(Op::Unary(UnaryOp::Neg), &[&product]);
    let quotient = interp(Op::Binary(BinaryOp::Div), &[&negated, &a]);
    let want = interp(Op::Binary(BinaryOp::Max), &[&quotient, &b]);
    assert_exact("chain_i8", &[&a, &b], &got, &want);
}

/// Integer forms without an exact vector path stay untiled, naming the dtype and the op.
#[test]
fn integer_forms_without_a_vector_path_are_rejected() {
    use cubevec_ir::kernel::VecOp;
    let cases = [
        (DType::I32, VecOp::Div, "Div"),
        (DType::I64, VecOp::Add, "i64"),
        (DType::I8, VecOp::Exp, "Exp"),
    ];
    for (dtype, op, needle) in cases {
        let srcs = if op == VecOp::Exp {
            vec![ChainArg::Input(0)]
        } else {
            vec![ChainArg::Input(0), ChainArg::Input(1)]
        };
        let c = chain("rejected", dtype, 2, vec![step(op, srcs)]);
        match plan_chain(&c, &target()) {
            Err(e @ TileError::Unsupported { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains(needle) && message.contains("rejected"),
                    "{dtype} {}: {message}",
                    op.name()
                );
            }
            other => panic!("{dtype} {} should be unsupported: {other:?}", op.name()),
        }
    }
}
