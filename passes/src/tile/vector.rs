//! Vector-core (AIV) tiling: elementwise chains over flattened tensors, and row-wise kernels
//! (RMSNorm, softmax) over `[rows, cols]` tensors.
//!
//! Every kernel streams tiles GM → UB → compute → UB → GM with the input and output buffers
//! double-buffered (two stages, handed between MTE2, V and MTE3 by flags), and computes in f32
//! (16-bit inputs are cast up and the result cast back with round-to-nearest-even). Integer
//! chains follow the graph's wrap-around semantics: int32 chains of the ops the AIV has for
//! int32 compute in i32; int8/uint8 chains widen exactly through f16 to f32 and restore the
//! integer result after every step (truncating division, wrap-around modulo 256). The tile
//! length is the largest that fits the UB budget (all stages and temporaries), 32-byte
//! aligned, then balanced over the AIVs; tails are `min` extents, and UB row pitches are
//! rounded up to 16 elements so that every row starts 32-byte aligned.

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, Buffer, BufferPlanner, CoreType, Expr, Kernel, Layout, MemLevel, Param, ParamRole, Pipe,
    ReduceKind, Slice, Stmt, VecArg, VecOp, verify,
};
use cubevec_ir::target::Target;

use super::TileError;
use super::build::{block_trips, c, for_, gm, let_, set, tile, v, wait};
use crate::cost::{KernelCost, Work, estimate};

/// An operand of a chain step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChainArg {
    /// Input tensor `i` (in the compute dtype).
    Input(usize),
    /// Temporary `j` (in the compute dtype).
    Temp(usize),
    /// An immediate scalar.
    Imm(f64),
}

/// One step of an elementwise chain: `temps[dst] = op(srcs)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainStep {
    /// The vector operation (not [`VecOp::Cast`], which the tiler inserts itself).
    pub op: VecOp,
    /// The temporary written.
    pub dst: usize,
    /// Operands in [`VecOp::operand_kinds`] order.
    pub srcs: Vec<ChainArg>,
}

impl ChainStep {
    /// Whether the operands match the op's kinds (slices and immediates), with inputs below
    /// `inputs`; a [`VecOp::Cast`] never does.
    pub fn operands_fit(&self, inputs: usize) -> bool {
        let kinds = self.op.operand_kinds();
        self.op != VecOp::Cast
            && kinds.len() == self.srcs.len()
            && self.srcs.iter().zip(kinds).all(|(a, &is_slice)| match a {
                ChainArg::Input(j) => is_slice && *j < inputs,
                ChainArg::Temp(_) => is_slice,
                ChainArg::Imm(_) => !is_slice,
            })
    }
}

/// An elementwise computation over equally shaped tensors, flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct ElementwiseChain {
    /// Kernel name.
    pub name: String,
    /// Elements per tensor.
    pub len: u64,
    /// Storage dtype of the inputs and the output: f16, bf16 or f32; i32 for chains of
    /// Add/Sub/Mul/Max/Min, their scalar forms and Relu; i8 or u8 for those plus Div and Abs.
    pub dtype: DType,
    /// Number of input tensors.
    pub inputs: usize,
    /// The steps, in order.
    pub steps: Vec<ChainStep>,
    /// The temporary holding the result after the last step.
    pub output: usize,
}

impl ElementwiseChain {
    /// `silu(gate) * up` = `gate / (1 + exp(-gate)) * up` (SwiGLU with separate operands).
    pub fn swiglu(name: &str, len: u64, dtype: DType) -> ElementwiseChain {
        use ChainArg::{Imm, Input, Temp};
        let step = |op, srcs: Vec<ChainArg>| ChainStep { op, dst: 0, srcs };
        ElementwiseChain {
            name: name.to_string(),
            len,
            dtype,
            inputs: 2,
            steps: vec![
                step(VecOp::Muls, vec![Input(0), Imm(-1.0)]),
                step(VecOp::Exp, vec![Temp(0)]),
                step(VecOp::Adds, vec![Temp(0), Imm(1.0)]),
                step(VecOp::Div, vec![Input(0), Temp(0)]),
                step(VecOp::Mul, vec![Temp(0), Input(1)]),
            ],
            output: 0,
        }
    }

    fn temps(&self) -> usize {
        temps_used(&self.steps, self.output)
    }

    /// The useful work: one op per element per step; inputs and output once.
    pub fn work(&self) -> Work {
        let eb = self.dtype.bits() as f64 / 8.0;
        Work {
            flops: self.len as f64 * self.steps.len() as f64,
            bytes: self.len as f64 * eb * (self.inputs as f64 + 1.0),
            cube: false,
            dtype: self.dtype,
        }
    }
}

/// A row-wise normalisation over the last axis of `[rows, cols]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RowWise {
    /// Kernel name.
    pub name: String,
    /// Rows (product of the leading dimensions).
    pub rows: u64,
    /// Elements per row.
    pub cols: u64,
    /// Storage dtype (f16, bf16 or f32).
    pub dtype: DType,
    /// Which normalisation.
    pub kind: RowKind,
}

/// Row-wise kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowKind {
    /// `x / sqrt(mean(x²) + eps) * gamma` with a `[cols]` gamma parameter.
    RmsNorm {
        /// Epsilon.
        eps: f64,
    },
    /// `exp(x - max) / sum(exp(x - max))`.
    Softmax,
    /// `x - max - ln(sum(exp(x - max)))`.
    LogSoftmax,
    /// `(x - mean) / sqrt(var + eps) * gamma (+ beta)` with `[cols]` gamma (and beta).
    LayerNorm {
        /// Epsilon.
        eps: f64,
        /// Whether a beta parameter follows gamma.
        bias: bool,
    },
}

impl RowWise {
    /// The useful work (ops per element: 4 for RMSNorm, 5 for softmax).
    pub fn work(&self) -> Work {
        let n = (self.rows * self.cols) as f64;
        let eb = self.dtype.bits() as f64 / 8.0;
        let (ops, extra) = match self.kind {
            RowKind::RmsNorm { .. } => (4.0, self.cols as f64 * eb),
            RowKind::Softmax => (5.0, 0.0),
            RowKind::LogSoftmax => (6.0, 0.0),
            RowKind::LayerNorm { bias, .. } => {
                let params = 1.0 + f64::from(u8::from(bias));
                (6.0, params * self.cols as f64 * eb)
            }
        };
        Work {
            flops: n * ops,
            bytes: 2.0 * n * eb + extra,
            cube: false,
            dtype: self.dtype,
        }
    }
}

/// A tiled vector kernel and its estimate.
#[derive(Clone, Debug)]
pub struct VectorPlan {
    /// Elements (chains) or rows (row-wise kernels) per tile.
    pub tile: u64,
    /// The kernel.
    pub kernel: Kernel,
    /// Its estimate.
    pub cost: KernelCost,
}

/// Elements per 256-byte-aligned granule used for flat tile lengths.
const GRANULE: u64 = 64;

/// Vector ops the AIV computes on int32 (arch 2201): the arithmetic without division, their
/// scalar forms, and `Relu`.
const INT32_OPS: [VecOp; 10] = [
    VecOp::Add,
    VecOp::Sub,
    VecOp::Mul,
    VecOp::Max,
    VecOp::Min,
    VecOp::Adds,
    VecOp::Muls,
    VecOp::Maxs,
    VecOp::Mins,
    VecOp::Relu,
];

/// Ops an int8/uint8 chain may use: computed in f32 (exact on 8-bit operands), then truncated
/// (`Div`) and wrapped back to the 8-bit range.
const INT8_OPS: [VecOp; 12] = [
    VecOp::Add,
    VecOp::Sub,
    VecOp::Mul,
    VecOp::Div,
    VecOp::Max,
    VecOp::Min,
    VecOp::Adds,
    VecOp::Muls,
    VecOp::Maxs,
    VecOp::Mins,
    VecOp::Relu,
    VecOp::Abs,
];

/// How a chain computes on its storage dtype.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Numerics {
    /// f16, bf16 or f32 storage, computed in f32.
    Float,
    /// i32 storage, computed in i32 (wrapping, as the vector unit's int32 ops).
    Int32,
    /// int8 / uint8 storage, widened exactly through f16 to f32; after every step the integer
    /// result is restored in f32 (`Div` truncated toward zero, then wrapped modulo 256 into
    /// the storage range) and finally narrowed back through f16, exactly.
    Int8 {
        /// uint8 (range 0..=255) rather than int8 (-128..=127).
        unsigned: bool,
    },
}

impl Numerics {
    /// The dtype of the temporaries.
    fn compute(self) -> DType {
        match self {
            Numerics::Int32 => DType::I32,
            Numerics::Float | Numerics::Int8 { .. } => DType::F32,
        }
    }
}

/// How a chain computes, or why its storage dtype has no vector path: int32 chains need the
/// AIV's int32 instructions (no division: f32 does not hold every int32 exactly); int8/uint8
/// chains need ops whose f32 result is exact before the integer fix-up; immediates of integer
/// chains are integers of the storage type.
fn chain_numerics(chain: &ElementwiseChain) -> Result<Numerics, TileError> {
    let unsupported = |what: String| TileError::Unsupported {
        name: chain.name.clone(),
        dtype: chain.dtype,
        what,
    };
    // The ops with an exact path, why the others have none, and the immediates' range.
    let (numerics, ops, why, lo, hi): (_, &[VecOp], _, f64, f64) = match chain.dtype {
        DType::F16 | DType::BF16 | DType::F32 => return Ok(Numerics::Float),
        DType::I32 => (
            Numerics::Int32,
            &INT32_OPS,
            "the AIV has no int32 form of it, and f32 does not hold every int32 exactly",
            f64::from(i32::MIN),
            f64::from(i32::MAX),
        ),
        DType::I8 => (
            Numerics::Int8 { unsigned: false },
            &INT8_OPS,
            "no exact integer result through f32",
            -128.0,
            127.0,
        ),
        DType::U8 => (
            Numerics::Int8 { unsigned: true },
            &INT8_OPS,
            "no exact integer result through f32",
            0.0,
            255.0,
        ),
        other => {
            return Err(unsupported(format!(
                "vector storage type (elementwise chains take f16, bf16, f32, i32, i8 or u8; \
                 the AIV has no {other} arithmetic)"
            )));
        }
    };
    for step in &chain.steps {
        if !ops.contains(&step.op) {
            return Err(unsupported(format!(
                "vector {} ({why}; {} chains take {})",
                step.op.name(),
                chain.dtype,
                ops.iter().map(|o| o.name()).collect::<Vec<_>>().join("/")
            )));
        }
        for arg in &step.srcs {
            if let ChainArg::Imm(x) = arg
                && (x.fract() != 0.0 || *x < lo || *x > hi)
            {
                return Err(unsupported(format!(
                    "vector {} with immediate {x} (not a {} value)",
                    step.op.name(),
                    chain.dtype
                )));
            }
        }
    }
    Ok(numerics)
}

pub(super) fn check_dtype(name: &str, dtype: DType) -> Result<(), TileError> {
    if matches!(dtype, DType::F16 | DType::BF16 | DType::F32) {
        Ok(())
    } else {
        Err(TileError::Unsupported {
            name: name.to_string(),
            dtype,
            what: "vector storage type (use f16, bf16 or f32)".into(),
        })
    }
}

/// The temporaries `steps` write, with the result in `output`.
pub(super) fn temps_used(steps: &[ChainStep], output: usize) -> usize {
    steps
        .iter()
        .map(|s| s.dst + 1)
        .chain([output + 1])
        .max()
        .unwrap_or(1)
}

pub(super) fn ub_buffer(name: &str, dtype: DType, rows: u64, cols: u64, stages: u64) -> Buffer {
    Buffer {
        name: name.to_string(),
        level: MemLevel::Ub,
        dtype,
        layout: Layout::Nd,
        rows,
        cols,
        stages,
        offset: 0,
    }
}

pub(super) fn slice(buf: BufId, stage: Expr, offset: Expr) -> Slice {
    Slice { buf, stage, offset }
}

pub(super) fn vec_op(op: VecOp, dst: Slice, srcs: Vec<VecArg>, count: Expr) -> Stmt {
    Stmt::Vector {
        op,
        dst,
        srcs,
        count,
    }
}

/// Flags opening and closing a double-buffered MTE2 → V → MTE3 stream.
pub(super) fn stream_prologue() -> Vec<Stmt> {
    (0..2)
        .flat_map(|s| {
            [
                set(Pipe::V, Pipe::Mte2, c(s)),
                set(Pipe::Mte3, Pipe::V, c(s)),
            ]
        })
        .collect()
}

pub(super) fn stream_epilogue() -> Vec<Stmt> {
    (0..2)
        .flat_map(|s| {
            [
                wait(Pipe::V, Pipe::Mte2, c(s)),
                wait(Pipe::Mte3, Pipe::V, c(s)),
            ]
        })
        .collect()
}

/// UB bytes a chain needs per element of tile length.
fn chain_bytes_per_elem(chain: &ElementwiseChain, numerics: Numerics) -> u64 {
    let eb = (chain.dtype.bits() / 8) as u64;
    let cb = (numerics.compute().bits() / 8) as u64;
    let inputs = chain.inputs as u64;
    let io = (inputs + 1) * 2 * eb;
    let temps = chain.temps() as u64 * cb;
    match numerics {
        Numerics::Float if chain.dtype == DType::F32 => io + temps,
        Numerics::Float => io + inputs * cb + temps,
        Numerics::Int32 => io + temps,
        // f16 and f32 copies of each input, the f16 result, and the fix-up scratch (two f32, one i32).
        Numerics::Int8 { .. } => io + inputs * (2 + 4) + temps + 2 + 3 * 4,
    }
}

/// Scratch of the int8/uint8 fix-ups.
struct IntFixup {
    /// Storage range is 0..=255 rather than -128..=127.
    unsigned: bool,
    /// Two f32 scratch runs.
    q: [BufId; 2],
    /// An i32 scratch run (the rounding cast's target).
    qi: BufId,
}

impl IntFixup {
    /// `dst = rint(src + bias)` in f32 (through a round-to-nearest-even cast to i32 and back;
    /// exact for |src| < 2^22).
    fn rint_shifted(&self, dst: BufId, src: Slice, bias: f64, out: &mut Vec<Stmt>) {
        let s = |b| slice(b, c(0), c(0));
        out.extend([
            vec_op(
                VecOp::Adds,
                s(dst),
                vec![VecArg::Slice(src), VecArg::Imm(bias)],
                v("n"),
            ),
            vec_op(VecOp::Cast, s(self.qi), vec![VecArg::Slice(s(dst))], v("n")),
            vec_op(VecOp::Cast, s(dst), vec![VecArg::Slice(s(self.qi))], v("n")),
        ]);
    }

    /// Restores the integer result of `op` in `r` (f32): truncation toward zero after `Div`
    /// (`rint(max(r, 0) − c) + rint(min(r, 0) + c)` with `c = 1/2 − 2⁻¹⁰`: an 8-bit quotient
    /// is an integer or at least 1/255 away from one), then wrap-around modulo 256
    /// (`r − 256·floor((r − lo)/256)`, the floor as `rint((r − lo − 127.5)/256)`: `r` is an
    /// integer). Max/Min/Relu results are already in range.
    fn restore(&self, op: VecOp, r: Slice, out: &mut Vec<Stmt>) {
        if matches!(
            op,
            VecOp::Max | VecOp::Min | VecOp::Maxs | VecOp::Mins | VecOp::Relu
        ) {
            return;
        }
        let s = |b| slice(b, c(0), c(0));
        let [q0, q1] = self.q;
        if op == VecOp::Div {
            let half = 0.5 - 1.0 / 1024.0;
            out.push(vec_op(
                VecOp::Maxs,
                s(q0),
                vec![VecArg::Slice(r.clone()), VecArg::Imm(0.0)],
                v("n"),
            ));
            self.rint_shifted(q0, s(q0), -half, out);
            out.push(vec_op(
                VecOp::Mins,
                s(q1),
                vec![VecArg::Slice(r.clone()), VecArg::Imm(0.0)],
                v("n"),
            ));
            self.rint_shifted(q1, s(q1), half, out);
            out.push(vec_op(
                VecOp::Add,
                r.clone(),
                vec![VecArg::Slice(s(q0)), VecArg::Slice(s(q1))],
                v("n"),
            ));
        }
        let lo = if self.unsigned { 0.0 } else { -128.0 };
        out.push(vec_op(
            VecOp::Muls,
            s(q0),
            vec![VecArg::Slice(r.clone()), VecArg::Imm(1.0 / 256.0)],
            v("n"),
        ));
        self.rint_shifted(q0, s(q0), -(lo + 127.5) / 256.0, out);
        out.extend([
            vec_op(
                VecOp::Muls,
                s(q0),
                vec![VecArg::Slice(s(q0)), VecArg::Imm(-256.0)],
                v("n"),
            ),
            vec_op(
                VecOp::Add,
                r.clone(),
                vec![VecArg::Slice(r), VecArg::Slice(s(q0))],
                v("n"),
            ),
        ]);
    }
}

/// Builds an elementwise-chain kernel with `tile_len` elements per tile.
pub fn build_chain(
    chain: &ElementwiseChain,
    tile_len: u64,
    target: &Target,
) -> Result<Kernel, TileError> {
    let numerics = chain_numerics(chain)?;
    let compute = numerics.compute();
    let invalid = |message: String| TileError::Invalid {
        name: chain.name.clone(),
        message,
    };
    if chain.len == 0 || chain.inputs == 0 {
        return Err(invalid("empty chain".into()));
    }
    for (i, step) in chain.steps.iter().enumerate() {
        if !step.operands_fit(chain.inputs) {
            return Err(invalid(format!(
                "step {i} ({}) has wrong operands",
                step.op.name()
            )));
        }
    }
    if tile_len == 0 || !tile_len.is_multiple_of(GRANULE) {
        return Err(invalid(format!(
            "tile length {tile_len} is not a positive multiple of {GRANULE}"
        )));
    }
    let cast = chain.dtype != compute;
    // 8-bit integers widen (and narrow) through f16: the only vector casts of int8/uint8.
    let via_f16 = matches!(numerics, Numerics::Int8 { .. });
    let mut planner = BufferPlanner::new();
    let mut params = Vec::new();
    let mut inputs = Vec::new();
    let mut halves = Vec::new();
    let mut casts = Vec::new();
    for i in 0..chain.inputs {
        params.push(Param {
            name: format!("in{i}"),
            dtype: chain.dtype,
            shape: vec![chain.len],
            role: ParamRole::Input,
        });
        inputs.push(planner.add(
            target,
            ub_buffer(&format!("x{i}"), chain.dtype, 1, tile_len, 2),
        ));
        if via_f16 {
            halves.push(planner.add(
                target,
                ub_buffer(&format!("xh{i}"), DType::F16, 1, tile_len, 1),
            ));
        }
        if cast {
            casts.push(planner.add(
                target,
                ub_buffer(&format!("xf{i}"), compute, 1, tile_len, 1),
            ));
        }
    }
    params.push(Param {
        name: "out".into(),
        dtype: chain.dtype,
        shape: vec![chain.len],
        role: ParamRole::Output,
    });
    let temps: Vec<BufId> = (0..chain.temps())
        .map(|j| planner.add(target, ub_buffer(&format!("t{j}"), compute, 1, tile_len, 1)))
        .collect();
    let fixup = match numerics {
        Numerics::Int8 { unsigned } => {
            let mut scratch =
                |name: &str, dtype| planner.add(target, ub_buffer(name, dtype, 1, tile_len, 1));
            let q = [scratch("q0", DType::F32), scratch("q1", DType::F32)];
            let qi = scratch("qi", DType::I32);
            let yh = scratch("yh", DType::F16);
            Some((IntFixup { unsigned, q, qi }, yh))
        }
        Numerics::Float | Numerics::Int32 => None,
    };
    let y = planner.add(target, ub_buffer("y", chain.dtype, 1, tile_len, 2));
    let buffers = planner.finish();

    let tiles = chain.len.div_ceil(tile_len);
    let blocks = tiles.min(target.cores.aiv as u64);
    let out_param = chain.inputs;
    let mut body = vec![
        let_("tile", v("blk").add(v("t").mul(c(blocks)))),
        let_("off", v("tile").mul(c(tile_len))),
        let_("n", c(chain.len).sub(v("off")).min(c(tile_len))),
        let_("s", v("t").rem(c(2))),
        wait(Pipe::V, Pipe::Mte2, v("s")),
    ];
    for (i, &x) in inputs.iter().enumerate() {
        body.push(Stmt::CopyIn {
            dst: tile(x, v("s"), (c(0), c(0)), (c(1), v("n"))),
            src: gm(i, c(0), (c(0), v("off")), (c(1), v("n"))),
        });
    }
    body.extend([
        set(Pipe::Mte2, Pipe::V, v("s")),
        wait(Pipe::Mte2, Pipe::V, v("s")),
        wait(Pipe::Mte3, Pipe::V, v("s")),
    ]);
    let input_slice = |i: usize| {
        if cast {
            slice(casts[i], c(0), c(0))
        } else {
            slice(inputs[i], v("s"), c(0))
        }
    };
    for (i, &xf) in casts.iter().enumerate() {
        let mut from = slice(inputs[i], v("s"), c(0));
        if let Some(&xh) = halves.get(i) {
            let h = slice(xh, c(0), c(0));
            body.push(vec_op(
                VecOp::Cast,
                h.clone(),
                vec![VecArg::Slice(from)],
                v("n"),
            ));
            from = h;
        }
        body.push(vec_op(
            VecOp::Cast,
            slice(xf, c(0), c(0)),
            vec![VecArg::Slice(from)],
            v("n"),
        ));
    }
    if cast {
        body.push(set(Pipe::V, Pipe::Mte2, v("s")));
    }
    for step in &chain.steps {
        let srcs = step
            .srcs
            .iter()
            .map(|a| match a {
                ChainArg::Input(i) => VecArg::Slice(input_slice(*i)),
                ChainArg::Temp(j) => VecArg::Slice(slice(temps[*j], c(0), c(0))),
                ChainArg::Imm(x) => VecArg::Imm(*x),
            })
            .collect();
        let dst = slice(temps[step.dst], c(0), c(0));
        body.push(vec_op(step.op, dst.clone(), srcs, v("n")));
        if let Some((fix, _)) = &fixup {
            fix.restore(step.op, dst, &mut body);
        }
    }
    if !cast {
        body.push(set(Pipe::V, Pipe::Mte2, v("s")));
    }
    let result = slice(temps[chain.output], c(0), c(0));
    let out = slice(y, v("s"), c(0));
    match &fixup {
        Some((_, yh)) => {
            let h = slice(*yh, c(0), c(0));
            body.push(vec_op(
                VecOp::Cast,
                h.clone(),
                vec![VecArg::Slice(result)],
                v("n"),
            ));
            body.push(vec_op(VecOp::Cast, out, vec![VecArg::Slice(h)], v("n")));
        }
        None if cast => body.push(vec_op(
            VecOp::Cast,
            out,
            vec![VecArg::Slice(result)],
            v("n"),
        )),
        // A copy as `x · 1`, which keeps the sign of a zero result (`x + 0` would not).
        None => body.push(vec_op(
            VecOp::Muls,
            out,
            vec![VecArg::Slice(result), VecArg::Imm(1.0)],
            v("n"),
        )),
    }
    body.extend([
        set(Pipe::V, Pipe::Mte3, v("s")),
        wait(Pipe::V, Pipe::Mte3, v("s")),
        Stmt::CopyOut {
            dst: gm(out_param, c(0), (c(0), v("off")), (c(1), v("n"))),
            src: tile(y, v("s"), (c(0), c(0)), (c(1), v("n"))),
        },
        set(Pipe::Mte3, Pipe::V, v("s")),
    ]);
    let trips = block_trips(tiles, blocks);
    let mut vector = stream_prologue();
    vector.push(for_("t", trips, true, body));
    vector.extend(stream_epilogue());
    Ok(Kernel {
        name: chain.name.clone(),
        core: CoreType::Aiv,
        blocks: blocks as u32,
        params,
        buffers,
        cube: Vec::new(),
        vector,
        tiling: [
            ("tile_len".to_string(), tile_len),
            ("tiles".to_string(), tiles),
        ]
        .into_iter()
        .collect(),
    })
}

/// Tiles an elementwise chain: candidate tile lengths from the UB budget down to a balanced
/// split over the AIVs, the fastest under the cost model wins.
pub fn plan_chain(chain: &ElementwiseChain, target: &Target) -> Result<VectorPlan, TileError> {
    let numerics = chain_numerics(chain)?;
    let budget = target.buffers.ub.usable_bytes();
    let max_len = budget / chain_bytes_per_elem(chain, numerics) / GRANULE * GRANULE;
    if max_len == 0 {
        return Err(TileError::NoFit {
            name: chain.name.clone(),
            reason: "the chain's buffers exceed UB even for one granule".into(),
        });
    }
    let whole = chain.len.div_ceil(GRANULE) * GRANULE;
    let balanced = chain
        .len
        .div_ceil(target.cores.aiv as u64)
        .div_ceil(GRANULE)
        * GRANULE;
    let mut lens: Vec<u64> = [max_len, max_len / 2, max_len / 4, balanced, balanced / 2]
        .iter()
        .map(|&l| (l / GRANULE * GRANULE).clamp(GRANULE, max_len).min(whole))
        .collect();
    lens.sort_unstable();
    lens.dedup();
    pick(
        lens,
        |len| {
            let kernel = build_chain(chain, len, target)?;
            let cost = estimate(&kernel, target, &chain.work())?;
            Ok((kernel, cost))
        },
        target,
    )
}

pub(super) fn pick<F>(
    candidates: Vec<u64>,
    mut make: F,
    target: &Target,
) -> Result<VectorPlan, TileError>
where
    F: FnMut(u64) -> Result<(Kernel, KernelCost), TileError>,
{
    let mut best: Option<VectorPlan> = None;
    for tile in candidates {
        let (kernel, cost) = make(tile)?;
        if best
            .as_ref()
            .is_none_or(|b| cost.modeled_time_us < b.cost.modeled_time_us * (1.0 - 1e-9))
        {
            best = Some(VectorPlan { tile, kernel, cost });
        }
    }
    let Some(best) = best else {
        return Err(TileError::NoFit {
            name: "vector".into(),
            reason: "no tile length to try".into(),
        });
    };
    verify(&best.kernel, target)?;
    Ok(best)
}

/// `stat[0] = 1 / sqrt(Σ squares / n + eps)` from the `n` squares in `squares`.
fn inverse_rms(squares: Slice, stat: Slice, n: u64, eps: f64) -> Vec<Stmt> {
    vec![
        Stmt::Reduce {
            kind: ReduceKind::Sum,
            dst: stat.clone(),
            src: squares,
            count: c(n),
        },
        vec_op(
            VecOp::Muls,
            stat.clone(),
            vec![VecArg::Slice(stat.clone()), VecArg::Imm(1.0 / n as f64)],
            c(1),
        ),
        vec_op(
            VecOp::Adds,
            stat.clone(),
            vec![VecArg::Slice(stat.clone()), VecArg::Imm(eps)],
            c(1),
        ),
        vec_op(VecOp::Rsqrt, stat.clone(), vec![VecArg::Slice(stat)], c(1)),
    ]
}

/// Builds a row-wise kernel with `tile_rows` rows per tile.
pub fn build_rows(op: &RowWise, tile_rows: u64, target: &Target) -> Result<Kernel, TileError> {
    check_dtype(&op.name, op.dtype)?;
    if op.rows == 0 || op.cols == 0 || tile_rows == 0 {
        return Err(TileError::Invalid {
            name: op.name.clone(),
            message: format!(
                "empty shape {} x {} or tile of {tile_rows} rows",
                op.rows, op.cols
            ),
        });
    }
    let cols = op.cols;
    let pitch = cols.div_ceil(16) * 16;
    let cast = op.dtype != DType::F32;
    let mut planner = BufferPlanner::new();
    let mut params = vec![Param {
        name: "x".into(),
        dtype: op.dtype,
        shape: vec![op.rows, cols],
        role: ParamRole::Input,
    }];
    let x = planner.add(target, ub_buffer("x", op.dtype, tile_rows, pitch, 2));
    let y = planner.add(target, ub_buffer("y", op.dtype, tile_rows, pitch, 2));
    let xf = cast.then(|| planner.add(target, ub_buffer("xf", DType::F32, 1, pitch, 1)));
    let tmp = planner.add(target, ub_buffer("tmp", DType::F32, 1, pitch, 1));
    let stat = planner.add(target, ub_buffer("stat", DType::F32, 1, 32, 1));
    // A `[cols]` parameter row (gamma, beta), converted to f32 for 16-bit storage.
    let mut row_param = |name: &str, params: &mut Vec<Param>| {
        params.push(Param {
            name: name.into(),
            dtype: op.dtype,
            shape: vec![cols],
            role: ParamRole::Input,
        });
        let raw = planner.add(
            target,
            ub_buffer(&format!("{name}_in"), op.dtype, 1, pitch, 1),
        );
        let f = if cast {
            planner.add(target, ub_buffer(name, DType::F32, 1, pitch, 1))
        } else {
            raw
        };
        (params.len() - 1, raw, f)
    };
    let (gamma, beta) = match op.kind {
        RowKind::RmsNorm { .. } | RowKind::LayerNorm { bias: false, .. } => {
            (Some(row_param("gamma", &mut params)), None)
        }
        RowKind::LayerNorm { bias: true, .. } => (
            Some(row_param("gamma", &mut params)),
            Some(row_param("beta", &mut params)),
        ),
        RowKind::Softmax | RowKind::LogSoftmax => (None, None),
    };
    params.push(Param {
        name: "out".into(),
        dtype: op.dtype,
        shape: vec![op.rows, cols],
        role: ParamRole::Output,
    });
    let out_param = params.len() - 1;
    let buffers = planner.finish();

    let tiles = op.rows.div_ceil(tile_rows);
    let blocks = tiles.min(target.cores.aiv as u64);
    let mut vector = Vec::new();
    for (param, raw, f) in gamma.into_iter().chain(beta) {
        vector.push(Stmt::CopyIn {
            dst: tile(raw, c(0), (c(0), c(0)), (c(1), c(cols))),
            src: gm(param, c(0), (c(0), c(0)), (c(1), c(cols))),
        });
        vector.push(set(Pipe::Mte2, Pipe::V, c(2)));
        vector.push(wait(Pipe::Mte2, Pipe::V, c(2)));
        if cast {
            vector.push(vec_op(
                VecOp::Cast,
                slice(f, c(0), c(0)),
                vec![VecArg::Slice(slice(raw, c(0), c(0)))],
                c(cols),
            ));
        }
    }
    vector.extend(stream_prologue());
    let row_x = || slice(x, v("s"), v("xo"));
    let xf_row = match xf {
        Some(b) => slice(b, c(0), c(0)),
        None => row_x(),
    };
    let t0 = || slice(tmp, c(0), c(0));
    let st = |off: u64| slice(stat, c(0), c(off));
    let n = || c(cols);
    let mut row = vec![let_("xo", v("r").mul(c(pitch)))];
    if cast {
        row.push(vec_op(
            VecOp::Cast,
            xf_row.clone(),
            vec![VecArg::Slice(row_x())],
            n(),
        ));
    }
    let out_row = slice(y, v("s"), v("xo"));
    match op.kind {
        RowKind::RmsNorm { eps } | RowKind::LayerNorm { eps, .. } => {
            // LayerNorm first centres the row in place (x - mean, -mean in stat[0]); both then
            // scale by 1/sqrt(mean of squares + eps), kept in `rstd`.
            let layer = matches!(op.kind, RowKind::LayerNorm { .. });
            let rstd = if layer { st(8) } else { st(0) };
            if layer {
                row.extend([
                    Stmt::Reduce {
                        kind: ReduceKind::Sum,
                        dst: st(0),
                        src: xf_row.clone(),
                        count: n(),
                    },
                    vec_op(
                        VecOp::Muls,
                        st(0),
                        vec![VecArg::Slice(st(0)), VecArg::Imm(-1.0 / cols as f64)],
                        c(1),
                    ),
                    vec_op(
                        VecOp::Adds,
                        xf_row.clone(),
                        vec![VecArg::Slice(xf_row.clone()), VecArg::Element(st(0))],
                        n(),
                    ),
                ]);
            }
            row.push(vec_op(
                VecOp::Mul,
                t0(),
                vec![VecArg::Slice(xf_row.clone()), VecArg::Slice(xf_row.clone())],
                n(),
            ));
            row.extend(inverse_rms(t0(), rstd.clone(), cols, eps));
            row.push(vec_op(
                VecOp::Muls,
                t0(),
                vec![VecArg::Slice(xf_row), VecArg::Element(rstd)],
                n(),
            ));
            // · gamma (+ beta), the last step writing the output row directly when it is f32.
            let affine: Vec<(VecOp, BufId)> = gamma
                .map(|(_, _, f)| (VecOp::Mul, f))
                .into_iter()
                .chain(beta.map(|(_, _, f)| (VecOp::Add, f)))
                .collect();
            for (i, &(op, f)) in affine.iter().enumerate() {
                let dst = if i + 1 == affine.len() && !cast {
                    out_row.clone()
                } else {
                    t0()
                };
                row.push(vec_op(
                    op,
                    dst,
                    vec![VecArg::Slice(t0()), VecArg::Slice(slice(f, c(0), c(0)))],
                    n(),
                ));
            }
            if cast {
                row.push(vec_op(VecOp::Cast, out_row, vec![VecArg::Slice(t0())], n()));
            }
        }
        RowKind::Softmax | RowKind::LogSoftmax => {
            // st(8) = -max, t0 = exp(x - max), st(16) = Σ t0.
            row.extend([
                Stmt::Reduce {
                    kind: ReduceKind::Max,
                    dst: st(0),
                    src: xf_row.clone(),
                    count: n(),
                },
                vec_op(
                    VecOp::Muls,
                    st(8),
                    vec![VecArg::Slice(st(0)), VecArg::Imm(-1.0)],
                    c(1),
                ),
                vec_op(
                    VecOp::Adds,
                    t0(),
                    vec![VecArg::Slice(xf_row.clone()), VecArg::Element(st(8))],
                    n(),
                ),
                vec_op(VecOp::Exp, t0(), vec![VecArg::Slice(t0())], n()),
                Stmt::Reduce {
                    kind: ReduceKind::Sum,
                    dst: st(16),
                    src: t0(),
                    count: n(),
                },
            ]);
            // softmax = t0 / Σ; log-softmax = x + (-max - ln Σ).
            let (scale_op, scaled) = if op.kind == RowKind::Softmax {
                row.push(vec_op(
                    VecOp::Reciprocal,
                    st(16),
                    vec![VecArg::Slice(st(16))],
                    c(1),
                ));
                (VecOp::Muls, t0())
            } else {
                row.extend([
                    vec_op(VecOp::Ln, st(16), vec![VecArg::Slice(st(16))], c(1)),
                    vec_op(
                        VecOp::Sub,
                        st(16),
                        vec![VecArg::Slice(st(8)), VecArg::Slice(st(16))],
                        c(1),
                    ),
                ]);
                (VecOp::Adds, xf_row)
            };
            let dst = if cast { t0() } else { out_row.clone() };
            row.push(vec_op(
                scale_op,
                dst,
                vec![VecArg::Slice(scaled), VecArg::Element(st(16))],
                n(),
            ));
            if cast {
                row.push(vec_op(VecOp::Cast, out_row, vec![VecArg::Slice(t0())], n()));
            }
        }
    }
    let body = vec![
        let_("tile", v("blk").add(v("t").mul(c(blocks)))),
        let_("r0", v("tile").mul(c(tile_rows))),
        let_("rl", c(op.rows).sub(v("r0")).min(c(tile_rows))),
        let_("s", v("t").rem(c(2))),
        wait(Pipe::V, Pipe::Mte2, v("s")),
        Stmt::CopyIn {
            dst: tile(x, v("s"), (c(0), c(0)), (v("rl"), c(cols))),
            src: gm(0, c(0), (v("r0"), c(0)), (v("rl"), c(cols))),
        },
        set(Pipe::Mte2, Pipe::V, v("s")),
        wait(Pipe::Mte2, Pipe::V, v("s")),
        wait(Pipe::Mte3, Pipe::V, v("s")),
        for_("r", v("rl"), false, row),
        set(Pipe::V, Pipe::Mte2, v("s")),
        set(Pipe::V, Pipe::Mte3, v("s")),
        wait(Pipe::V, Pipe::Mte3, v("s")),
        Stmt::CopyOut {
            dst: gm(out_param, c(0), (v("r0"), c(0)), (v("rl"), c(cols))),
            src: tile(y, v("s"), (c(0), c(0)), (v("rl"), c(cols))),
        },
        set(Pipe::Mte3, Pipe::V, v("s")),
    ];
    let trips = block_trips(tiles, blocks);
    vector.push(for_("t", trips, true, body));
    vector.extend(stream_epilogue());
    let tiling = [
        ("tile_rows", tile_rows),
        ("row_pitch", pitch),
        ("tiles", tiles),
    ];
    Ok(Kernel::vector(
        &op.name,
        blocks as u32,
        params,
        buffers,
        vector,
        &tiling,
    ))
}

/// Tiles a row-wise kernel: rows per tile from the UB budget, balanced over the AIVs; a row
/// too long for UB is streamed in chunks instead (see [`super::long_rows`]).
pub fn plan_rows(op: &RowWise, target: &Target) -> Result<VectorPlan, TileError> {
    check_dtype(&op.name, op.dtype)?;
    let pitch = op.cols.div_ceil(16) * 16;
    let eb = (op.dtype.bits() / 8) as u64;
    let per_row = 4 * pitch * eb;
    let beta = matches!(op.kind, RowKind::LayerNorm { bias: true, .. });
    let fixed = pitch * 4 * 3 + pitch * eb + 128 + 4 * 32 * 8 + u64::from(beta) * pitch * (4 + eb);
    let budget = target.buffers.ub.usable_bytes();
    if fixed + per_row > budget {
        if let RowKind::LayerNorm { .. } | RowKind::LogSoftmax = op.kind {
            return Err(TileError::NoFit {
                name: op.name.clone(),
                reason: format!(
                    "a row of {} elements does not fit UB (rows longer than UB are streamed \
                     for RMSNorm and softmax only)",
                    op.cols
                ),
            });
        }
        return super::long_rows::plan_long_rows(op, target);
    }
    let max_rows = ((budget - fixed) / per_row).min(op.rows).max(1);
    let balanced = op.rows.div_ceil(target.cores.aiv as u64).clamp(1, max_rows);
    let mut rows = vec![
        max_rows,
        (max_rows / 2).max(1),
        balanced,
        (balanced / 2).max(1),
    ];
    rows.sort_unstable();
    rows.dedup();
    pick(
        rows,
        |r| {
            let kernel = build_rows(op, r, target)?;
            let cost = estimate(&kernel, target, &op.work())?;
            Ok((kernel, cost))
        },
        target,
    )
}
