//! Vector epilogues fused into a GEMM: one MIX kernel (an AIC and its two AIVs per block)
//! instead of a Cube kernel that stores the product and a vector kernel that reads it back.
//!
//! The AIC computes each output tile as the plain GEMM does, but its Fixpipe writes the tile,
//! rounded to the output dtype exactly as the unfused product would be, into workspace slot
//! `slot = t % 2` of its block (`t` counts the block's tiles of a group) and raises that slot's
//! cross-core flag [`READY`]. Each AIV takes half of the tile's rows: it waits on the slot's
//! `READY`, streams its rows through UB in chunks together with the epilogue's other operands
//! (whole `[m, n]` tensors such as a residual, or an `[n]` row such as a bias), applies the
//! chain in f32, stores the result, and raises the slot's [`FREE`] once it has read it. The AIC
//! waits on a slot's `FREE` before it writes the slot again. Each slot has its own pair of
//! flags, so consecutive tiles may use the same slot (the tile count restarts per group). The
//! AIVs raise both `FREE`s before their first tile (both slots start free) and the AIC takes
//! them back after its last, so every flag is balanced. The workspace is a few tiles per block
//! and stays in L2; the product never makes the HBM round trip.

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, BufferPlanner, Expr, Param, ParamRole, Pipe, Slice, Stmt, VecArg, VecOp,
};
use cubevec_ir::target::Target;

use super::TileError;
use super::build::{c, for_, gm, let_, set, tile, v, wait};
use super::vector::{
    ChainArg, ChainStep, slice, stream_epilogue, stream_prologue, temps_used, ub_buffer, vec_op,
};

/// Cross-core flags the AIC raises when a product tile is in workspace slot 0 or 1.
pub const READY: [u8; 2] = [0, 1];
/// Cross-core flags both AIVs raise when they have read workspace slot 0 or 1.
pub const FREE: [u8; 2] = [2, 3];

/// `stmt(flags[slot])` for the run-time `slot` (0 or 1) bound by the enclosing program: one
/// loop of one or no trips per flag.
pub(super) fn on_slot(flags: [u8; 2], stmt: impl Fn(u8) -> Stmt) -> Vec<Stmt> {
    vec![
        for_("on0", c(1).sub(v("slot")), false, vec![stmt(flags[0])]),
        for_("on1", v("slot"), false, vec![stmt(flags[1])]),
    ]
}

/// How an epilogue operand lines up with the `[m, n]` product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpilogueOperand {
    /// A whole `[m, n]` tensor (a residual).
    Full,
    /// One `[n]` row for every row of the product (a bias).
    Row,
    /// One value per row of the product, `[m, 1]` (a per-token scale).
    Column,
}

impl EpilogueOperand {
    /// How an operand of shape `operand` lines up with a product of shape `product` that it is
    /// broadcast against (the result having the product's shape), or `None` when it is none of
    /// the three. In a valid broadcast the element count tells them apart, whatever the ranks:
    /// the product's, a row's (ending in the product's last axis) or one per product row
    /// (ending in 1).
    pub fn of(operand: &[u64], product: &[u64]) -> Option<EpilogueOperand> {
        let elements: u64 = operand.iter().product();
        let total: u64 = product.iter().product();
        let n = *product.last()?;
        let last = operand.last().copied().unwrap_or(1);
        if elements == total && last == n {
            Some(EpilogueOperand::Full)
        } else if elements == n && last == n {
            Some(EpilogueOperand::Row)
        } else if last == 1 && elements.checked_mul(n) == Some(total) {
            Some(EpilogueOperand::Column)
        } else {
            None
        }
    }
}

/// An elementwise chain applied to every product tile: [`ChainArg::Input`] 0 is the product
/// (of a paired GEMM: the first matrix's half, input 1 the second's), the operands follow;
/// the chain computes in f32 on operands widened from their dtypes and stores its result in
/// `result` (the product's dtype, or another one a cast in the chain asked for).
#[derive(Clone, Debug, PartialEq)]
pub struct Epilogue {
    /// The product tile holds two halves that the chain pairs up (SwiGLU's gate and up, see
    /// [`super::gemm::GemmProblem::halves`]).
    pub paired: bool,
    /// The other operands with their dtypes, in kernel parameter order after the output.
    pub operands: Vec<(EpilogueOperand, DType)>,
    /// The steps, in order (no [`VecOp::Cast`]: the tiler converts); none when the chain only
    /// changes the dtype (the result is the product).
    pub steps: Vec<ChainStep>,
    /// The temporary holding the result after the last step (unused without steps).
    pub output: usize,
    /// The dtype the result is stored in (the kernel's output parameter).
    pub result: DType,
}

impl Epilogue {
    /// Bytes of the other operands for an `m × n` product.
    pub fn operand_bytes(&self, m: u64, n: u64) -> f64 {
        self.operands
            .iter()
            .map(|(o, dtype)| {
                let elements = match o {
                    EpilogueOperand::Full => m * n,
                    EpilogueOperand::Row => n,
                    EpilogueOperand::Column => m,
                };
                elements as f64 * dtype.bits() as f64 / 8.0
            })
            .sum()
    }

    /// The chain input of operand 0.
    pub fn first_operand_input(&self) -> usize {
        1 + usize::from(self.paired)
    }

    fn temps(&self) -> usize {
        if self.steps.is_empty() {
            0
        } else {
            temps_used(&self.steps, self.output)
        }
    }

    /// Checks the steps' operands and the dtypes of the product, the operands and the result.
    pub(super) fn check(&self, name: &str, output: DType) -> Result<(), TileError> {
        let invalid = |message: String| TileError::Invalid {
            name: name.to_string(),
            message,
        };
        let dtypes = [(output, "product"), (self.result, "result")]
            .into_iter()
            .chain(self.operands.iter().map(|&(_, d)| (d, "operand")));
        for (dtype, what) in dtypes {
            if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
                return Err(TileError::Unsupported {
                    name: name.to_string(),
                    dtype,
                    what: format!("epilogue {what} (f32, f16 or bf16)"),
                });
            }
        }
        if self.steps.is_empty() && (self.paired || !self.operands.is_empty()) {
            return Err(invalid(
                "an epilogue without steps has neither a pair nor operands to combine".into(),
            ));
        }
        for (i, step) in self.steps.iter().enumerate() {
            if !step.operands_fit(self.first_operand_input() + self.operands.len()) {
                return Err(invalid(format!(
                    "epilogue step {i} ({}) has wrong operands",
                    step.op.name()
                )));
            }
        }
        Ok(())
    }

    /// Rows per UB chunk for `n1`-column tiles of `m1` rows (at most half a tile: each AIV
    /// takes half) of an `output` product, or `None` when not even one row fits UB.
    pub(super) fn chunk_rows(
        &self,
        output: DType,
        m1: u64,
        n1: u64,
        target: &Target,
    ) -> Option<u64> {
        let bytes_of = |dtype: DType| (dtype.bits() / 8) as u64;
        let widened_of = |dtype: DType| if dtype == DType::F32 { 0 } else { 4 };
        let (mut fixed, mut per_row) = (0, 0);
        for &(o, dtype) in &self.operands {
            let (eb, widened) = (bytes_of(dtype), widened_of(dtype));
            let bytes = n1 * (2 * eb + widened);
            match o {
                EpilogueOperand::Full => per_row += bytes,
                EpilogueOperand::Row => fixed += bytes,
                // Two stages of values (each padded to 32 bytes: at most 64 more), and one
                // row of the value broadcast (in f32, and in the output dtype first when that
                // is narrower).
                EpilogueOperand::Column => {
                    per_row += 2 * eb;
                    fixed += n1 * (4 + if widened > 0 { eb } else { 0 }) + 64;
                }
            }
        }
        // The product (two stages, widened once), the temporaries and the result (two stages).
        per_row += n1
            * (2 * bytes_of(output)
                + widened_of(output)
                + 4 * self.temps() as u64
                + 2 * bytes_of(self.result));
        let usable = target.buffers.ub.usable_bytes();
        let most = usable.checked_sub(fixed)? / per_row;
        // Equal chunks of an AIV's half tile.
        let half = m1.div_ceil(2);
        (most > 0).then(|| half.div_ceil(half.div_ceil(most)))
    }

    /// The kernel parameters after the output: the operands (inputs), then the workspace of
    /// `blocks` blocks × two `m1 × n1` slots of the `output` product.
    pub(super) fn params(
        &self,
        output: DType,
        m: u64,
        n: u64,
        blocks: u64,
        m1: u64,
        n1: u64,
    ) -> Vec<Param> {
        let mut params: Vec<Param> = self
            .operands
            .iter()
            .enumerate()
            .map(|(i, &(o, dtype))| Param {
                name: format!("e{i}"),
                dtype,
                shape: match o {
                    EpilogueOperand::Full => vec![m, n],
                    EpilogueOperand::Row => vec![n],
                    EpilogueOperand::Column => vec![1, m],
                },
                role: ParamRole::Input,
            })
            .collect();
        params.push(Param {
            name: "ws".into(),
            dtype: output,
            shape: vec![blocks * 2 * m1, n1],
            role: ParamRole::Workspace,
        });
        params
    }
}

/// The UB buffers of one epilogue operand.
struct OperandBufs {
    /// Where its values arrive (two stages).
    load: BufId,
    /// Its values in f32, for an operand narrower than f32; a column's broadcast row always.
    wide: Option<BufId>,
    /// A column's value broadcast along a row in the output dtype, when that is narrower.
    dup: Option<BufId>,
}

/// The UB buffers of an epilogue.
pub(super) struct EpilogueBufs {
    product: BufId,
    product_f32: Option<BufId>,
    operands: Vec<OperandBufs>,
    temps: Vec<BufId>,
    result: BufId,
}

/// An epilogue laid out for one tiling: what the AIV program needs.
pub(super) struct EpiloguePlan<'a> {
    /// The chain.
    pub epilogue: &'a Epilogue,
    /// Dtype of the product (in the workspace).
    pub output: DType,
    /// Rows of an output tile.
    pub m1: u64,
    /// Columns of an output tile (the UB row pitch).
    pub n1: u64,
    /// Rows per UB chunk.
    pub rows: u64,
    /// Every tile is `n1` wide, the product unpaired and no operand a row: each step runs
    /// once over a chunk.
    pub whole_chunks: bool,
    /// Kernel parameter of operand 0.
    pub operand_param: usize,
    /// Kernel parameter of the workspace.
    pub ws_param: usize,
}

impl EpiloguePlan<'_> {
    /// Places the UB buffers.
    pub(super) fn buffers(&self, planner: &mut BufferPlanner, target: &Target) -> EpilogueBufs {
        let (rows, n1) = (self.rows, self.n1);
        let mut add = |name: String, dtype, rows, cols, stages| {
            planner.add(target, ub_buffer(&name, dtype, rows, cols, stages))
        };
        let product = add("ep_c".into(), self.output, rows, n1, 2);
        let product_f32 =
            (self.output != DType::F32).then(|| add("ep_cf".into(), DType::F32, rows, n1, 1));
        let mut operands = Vec::new();
        for (i, &(o, dtype)) in self.epilogue.operands.iter().enumerate() {
            let wide = dtype != DType::F32;
            let bufs = match o {
                EpilogueOperand::Full | EpilogueOperand::Row => {
                    let r = if o == EpilogueOperand::Full { rows } else { 1 };
                    OperandBufs {
                        load: add(format!("ep_x{i}"), dtype, r, n1, 2),
                        wide: wide.then(|| add(format!("ep_xf{i}"), DType::F32, r, n1, 1)),
                        dup: None,
                    }
                }
                EpilogueOperand::Column => OperandBufs {
                    load: add(format!("ep_x{i}"), dtype, 1, rows, 2),
                    dup: wide.then(|| add(format!("ep_xd{i}"), dtype, 1, n1, 1)),
                    wide: Some(add(format!("ep_xf{i}"), DType::F32, 1, n1, 1)),
                },
            };
            operands.push(bufs);
        }
        let temps = (0..self.epilogue.temps())
            .map(|j| add(format!("ep_t{j}"), DType::F32, rows, n1, 1))
            .collect();
        let result = add("ep_y".into(), self.epilogue.result, rows, n1, 2);
        EpilogueBufs {
            product,
            product_f32,
            operands,
            temps,
            result,
        }
    }

    /// Statements before the tile loop: the stream flags, and both workspace slots free.
    pub(super) fn prologue(&self) -> Vec<Stmt> {
        let mut out = vec![
            let_("cb", v("blk").div(c(2))),
            let_("sub", v("blk").rem(c(2))),
        ];
        out.extend(stream_prologue());
        out.extend(FREE.map(|flag| Stmt::CrossCoreSet {
            pipe: Pipe::Mte2,
            flag,
        }));
        out
    }

    /// Statements after the tile loop.
    pub(super) fn finish(&self) -> Vec<Stmt> {
        stream_epilogue()
    }

    /// One tile's epilogue on this AIV, after `rb` (the group's first row), `mo`, `ml`, `no`
    /// and `nl` (the tile's first row in the group, rows, first column and columns) are bound,
    /// inside the tile loop over `t`.
    pub(super) fn tile_body(&self, b: &EpilogueBufs) -> Vec<Stmt> {
        let rows = self.rows;
        // A paired tile stores the first half whole, then the second's `nl` columns.
        let product_cols = if self.epilogue.paired {
            c(self.n1 / 2).add(v("nl"))
        } else {
            v("nl")
        };
        let mut chunk = vec![
            let_("er", v("r0").add(v("ch").mul(c(rows)))),
            let_("en", v("vrows").sub(v("ch").mul(c(rows))).min(c(rows))),
            let_("es", v("ch").rem(c(2))),
            wait(Pipe::V, Pipe::Mte2, v("es")),
            Stmt::CopyIn {
                dst: tile(
                    b.product,
                    v("es"),
                    (c(0), c(0)),
                    (v("en"), product_cols.clone()),
                ),
                src: gm(
                    self.ws_param,
                    c(0),
                    (v("slot_row").add(v("er")), c(0)),
                    (v("en"), product_cols),
                ),
            },
        ];
        for (i, (&(o, _), x)) in self.epilogue.operands.iter().zip(&b.operands).enumerate() {
            let first_row = || v("rb").add(v("mo")).add(v("er"));
            let (at, size) = match o {
                EpilogueOperand::Full => ((first_row(), v("no")), (v("en"), v("nl"))),
                EpilogueOperand::Row => ((c(0), v("no")), (c(1), v("nl"))),
                EpilogueOperand::Column => ((c(0), first_row()), (c(1), v("en"))),
            };
            chunk.push(Stmt::CopyIn {
                dst: tile(x.load, v("es"), (c(0), c(0)), size.clone()),
                src: gm(self.operand_param + i, c(0), at, size),
            });
        }
        chunk.extend([
            set(Pipe::Mte2, Pipe::V, v("es")),
            wait(Pipe::Mte2, Pipe::V, v("es")),
            wait(Pipe::Mte3, Pipe::V, v("es")),
        ]);
        if self.whole_chunks {
            chunk.extend(self.compute(b, c(0), v("en").mul(c(self.n1))));
        } else {
            chunk.push(for_(
                "row",
                v("en"),
                false,
                self.compute(b, v("row"), v("nl")),
            ));
        }
        chunk.extend([
            set(Pipe::V, Pipe::Mte2, v("es")),
            set(Pipe::V, Pipe::Mte3, v("es")),
            wait(Pipe::V, Pipe::Mte3, v("es")),
            Stmt::CopyOut {
                dst: gm(
                    2,
                    c(0),
                    (v("rb").add(v("mo")).add(v("er")), v("no")),
                    (v("en"), v("nl")),
                ),
                src: tile(b.result, v("es"), (c(0), c(0)), (v("en"), v("nl"))),
            },
            set(Pipe::Mte3, Pipe::V, v("es")),
        ]);
        vec![
            // AIV 0 takes the first ⌈ml/2⌉ rows, AIV 1 the rest.
            let_("half", v("ml").add(c(1)).div(c(2))),
            let_("r0", v("sub").mul(v("half"))),
            let_("vrows", v("ml").sub(v("r0")).min(v("half"))),
            let_("slot", v("t").rem(c(2))),
            let_("slot_row", v("cb").mul(c(2)).add(v("slot")).mul(c(self.m1))),
        ]
        .into_iter()
        .chain(on_slot(READY, |flag| Stmt::CrossCoreWait { flag }))
        .chain([for_(
            "ch",
            v("vrows").add(c(rows - 1)).div(c(rows)),
            true,
            chunk,
        )])
        .chain(on_slot(FREE, |flag| Stmt::CrossCoreSet {
            pipe: Pipe::Mte2,
            flag,
        }))
        .collect()
    }

    /// The chain over `count` elements into the result stage: from the start of a chunk's
    /// full-row buffers (`row` = 0, whole chunks), or over its row `row` (row operands are read
    /// from their start, a column's value `row` is broadcast).
    fn compute(&self, b: &EpilogueBufs, row: Expr, count: Expr) -> Vec<Stmt> {
        let offset = row.clone().mul(c(self.n1));
        let stage = || v("es");
        let at = |buf: BufId, stage: Expr, full: bool| {
            slice(buf, stage, if full { offset.clone() } else { c(0) })
        };
        let mut out = Vec::new();
        // `count` values of `from` as f32: cast into `to` at the same offset, or read in place
        // when already f32.
        let widen = |out: &mut Vec<Stmt>, from: Slice, to: Option<BufId>| match to {
            Some(wide) => {
                let dst = slice(wide, c(0), from.offset.clone());
                out.push(vec_op(
                    VecOp::Cast,
                    dst.clone(),
                    vec![VecArg::Slice(from)],
                    count.clone(),
                ));
                dst
            }
            None => from,
        };
        let product = |at: Expr| slice(b.product, stage(), at);
        let mut inputs = vec![widen(&mut out, product(offset.clone()), b.product_f32)];
        if self.epilogue.paired {
            let second = product(offset.clone().add(c(self.n1 / 2)));
            inputs.push(widen(&mut out, second, b.product_f32));
        }
        for (&(o, _), x) in self.epilogue.operands.iter().zip(&b.operands) {
            match (o, x.wide) {
                (EpilogueOperand::Column, Some(wide)) => {
                    // The row's value along a row: duplicated in the output dtype, then
                    // widened, or straight into f32.
                    let value = VecArg::Element(slice(x.load, stage(), row.clone()));
                    let row_buf = slice(x.dup.unwrap_or(wide), c(0), c(0));
                    out.push(vec_op(
                        VecOp::Duplicate,
                        row_buf.clone(),
                        vec![value],
                        count.clone(),
                    ));
                    let to = x.dup.map(|_| wide);
                    inputs.push(widen(&mut out, row_buf, to));
                }
                _ => {
                    let full = o == EpilogueOperand::Full;
                    inputs.push(widen(&mut out, at(x.load, stage(), full), x.wide));
                }
            }
        }
        for step in &self.epilogue.steps {
            let srcs = step
                .srcs
                .iter()
                .map(|a| match a {
                    ChainArg::Input(i) => VecArg::Slice(inputs[*i].clone()),
                    ChainArg::Temp(j) => VecArg::Slice(at(b.temps[*j], c(0), true)),
                    ChainArg::Imm(x) => VecArg::Imm(*x),
                })
                .collect();
            out.push(vec_op(
                step.op,
                at(b.temps[step.dst], c(0), true),
                srcs,
                count.clone(),
            ));
        }
        let result = VecArg::Slice(if self.epilogue.steps.is_empty() {
            inputs[0].clone()
        } else {
            at(b.temps[self.epilogue.output], c(0), true)
        });
        let dst = at(b.result, stage(), true);
        out.push(if self.epilogue.result != DType::F32 {
            vec_op(VecOp::Cast, dst, vec![result], count)
        } else {
            // A copy as `x · 1`, which keeps the sign of a zero result.
            vec_op(VecOp::Muls, dst, vec![result, VecArg::Imm(1.0)], count)
        });
        out
    }
}
