//! Lowering the mixture-of-experts ops: `GroupedMatMul` and the fused `Moe` block.
//!
//! `GroupedMatMul` is one Cube kernel that reads its `group_sizes` operand at run time
//! ([`crate::tile::gemm::plan_runtime`]).
//!
//! `Moe` becomes eight launches (seven for ungated or ReLU experts) over scratch tensors:
//!
//! 1. `route` (vector, all AIVs): router logits → `ids i32 [T, k]`, `weights f32 [T, k]`
//!    ([`RoutingMode`]: softmax/top-k with or without normalisation, top-k/softmax, DeepSeek-V3's
//!    sigmoid with group limit, DeepSeek-V4's `sqrt(softplus)` and hash routing).
//! 2. `sort` (vector, one block of scalar bookkeeping): counting sort of the `T·k` routed rows
//!    by expert → `offsets i32 [E + 1]` and each `(token, slot)`'s row in expert order,
//!    `places i32 [T, k]`.
//! 3. `scatter` (vector, all AIVs): `rows[places[t, j]] = x[t]`.
//! 4. `gate`, `up` (Cube): grouped GEMMs over `rows` reading `offsets` at run time.
//! 5. `act` (vector): the expert activation ([`ExpertActivation`]); ReLU is applied by the up
//!    GEMM's Fixpipe instead. A gated activation runs instead on the AIVs of one paired MIX
//!    kernel that computes both projections (`gate_up`, see [`crate::tile::epilogue`]) when
//!    the cost model finds that faster: 4 and 5 become one launch.
//! 6. `down` (Cube): grouped GEMM to `y f32 [T·k, H]`.
//! 7. `combine` (vector, all AIVs): `out[t] = Σ_j weights[t, j] · y[places[t, j]]`, then the
//!    binary ops with whole `[tokens, hidden]` operands the partitioner fused after the block
//!    (the residual add, see [`lower_moe`]).
//!
//! The grouped GEMMs are tiled for a balanced routing profile (`T·k / E` rows per expert),
//! which every launch states as its assumption; any real routing, including experts without
//! tokens, runs correctly on that tiling.

mod activation;
mod combine;
mod emit;
mod permute;
mod routing;

use cubevec_ir::kernel::{Kernel, verify};
use cubevec_ir::op::{ExpertActivation, RoutingMode};
use cubevec_ir::{DType, Op};

use super::elementwise::binary_op;
use super::epilogue::EpilogueNode;
use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext, Scratch, TensorShape};
use crate::cost::{Work, estimate};
use crate::tile::TileError;
use crate::tile::epilogue::{Epilogue, EpilogueOperand};
use crate::tile::gemm::{GemmProblem, GroupTable, GroupTableKind, Halves, plan_runtime};
use crate::tile::vector::plan_chain;
use combine::AfterCombine;

/// Operand positions of [`Op::Moe`].
const X: usize = 0;
const LOGITS: usize = 1;
const GATE: usize = 2;
const UP: usize = 3;
const DOWN: usize = 4;
const BIAS: usize = 5;
const TOKEN_IDS: usize = 6;
const TABLE: usize = 7;

fn unsupported(ctx: &OpContext, message: String) -> LowerError {
    LowerError::Unsupported(format!("{}: {message}", ctx.name))
}

/// `rows` spread as evenly as possible over `groups` (the planned routing profile).
fn balanced(rows: u64, groups: u64) -> Vec<u64> {
    (0..groups)
        .map(|g| rows / groups + u64::from(g < rows % groups))
        .collect()
}

/// A launch of a hand-built vector kernel: verified, then costed.
fn vector_call(
    ctx: &OpContext,
    (kernel, work): (Kernel, Work),
    args: Vec<ArgRef>,
    assumptions: &[String],
) -> Result<KernelCall, LowerError> {
    verify(&kernel, ctx.target).map_err(TileError::from)?;
    let cost = estimate(&kernel, ctx.target, &work).map_err(TileError::from)?;
    Ok(KernelCall {
        kernel,
        cost,
        args,
        assumptions: assumptions.to_vec(),
    })
}

/// A grouped GEMM `c = a · b[g]ᵀ` per group (expert weights stored `[n, k]`), planned for
/// `groups` rows; the kernel reads the real group rows from a table at run time.
fn expert_gemm(
    name: String,
    groups: Vec<u64>,
    (n, k): (u64, u64),
    (input, output): (DType, DType),
    relu: bool,
) -> GemmProblem {
    GemmProblem {
        name,
        groups,
        n,
        k,
        input,
        output,
        b_transposed: true,
        relu,
        epilogue: None,
        halves: None,
    }
}

/// Lowers `GroupedMatMul` (`x [t, k], w [e, n, k], group_sizes [e]` → `[t, n]`) to one Cube
/// kernel that reads `group_sizes` at run time; the tiling assumes a balanced profile.
pub fn lower_grouped_matmul(ctx: &OpContext) -> Result<Lowering, LowerError> {
    if *ctx.op != Op::GroupedMatMul {
        return Err(unsupported(
            ctx,
            format!("{} is not grouped_matmul", ctx.op.name()),
        ));
    }
    let (x, w, sizes) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let out = ctx.output(0)?;
    let fits = x.shape.len() == 2
        && w.shape.len() == 3
        && w.shape[2] == x.shape[1]
        && sizes.shape == [w.shape[0]]
        && w.shape[0] > 0;
    if !fits || x.dtype != w.dtype {
        return Err(unsupported(
            ctx,
            format!(
                "grouped_matmul of x {} {:?}, w {} {:?}, group_sizes {:?}",
                x.dtype, x.shape, w.dtype, w.shape, sizes.shape
            ),
        ));
    }
    let (tokens, k, experts, n) = (x.shape[0], x.shape[1], w.shape[0], w.shape[1]);
    let problem = expert_gemm(
        ctx.name.to_string(),
        balanced(tokens, experts),
        (n, k),
        (x.dtype, out.dtype),
        false,
    );
    let table = GroupTable {
        kind: GroupTableKind::Sizes,
        dtype: sizes.dtype,
    };
    let plan = plan_runtime(&problem, &table, ctx.target)?;
    let mut call = KernelCall::new(
        plan.kernel,
        plan.cost,
        vec![
            ArgRef::Operand(0),
            ArgRef::Operand(1),
            ArgRef::Result(0),
            ArgRef::Operand(2),
        ],
    );
    call.assumptions.push(format!(
        "planned routing: {tokens} rows balanced over {experts} experts (group sizes read at run time)"
    ));
    Ok(Lowering::single(call))
}

/// The scratch tensors of one MoE lowering.
struct Scratches(Vec<Scratch>);

impl Scratches {
    fn add(&mut self, name: &str, dtype: DType, shape: Vec<u64>) -> ArgRef {
        self.0.push(Scratch {
            name: name.to_string(),
            tensor: TensorShape::new(dtype, shape),
        });
        ArgRef::Scratch(self.0.len() - 1)
    }
}

/// Lowers the fused `Moe` op (see the module documentation for the launches). `epilogue` holds
/// the binary nodes fused after the block, each with a whole `[tokens, hidden]` operand of the
/// result's dtype appended to the context's inputs; the combine kernel applies them.
pub fn lower_moe(ctx: &OpContext, epilogue: &[EpilogueNode]) -> Result<Lowering, LowerError> {
    let Op::Moe {
        top_k,
        routing,
        activation,
    } = ctx.op
    else {
        return Err(unsupported(ctx, format!("{} is not moe", ctx.op.name())));
    };
    let (x, logits, up, down) = (
        ctx.input(X)?,
        ctx.input(LOGITS)?,
        ctx.input(UP)?,
        ctx.input(DOWN)?,
    );
    let gate = ctx.inputs.get(GATE).and_then(Option::as_ref);
    let out = ctx.output(0)?;
    let k = u64::from(*top_k);
    let [tokens, hidden] = x.shape[..] else {
        return Err(unsupported(
            ctx,
            format!("x {:?} is not [tokens, hidden]", x.shape),
        ));
    };
    let (experts, inter) = match up.shape[..] {
        [e, i, _] => (e, i),
        _ => (0, 0),
    };
    let fits = logits.shape == [tokens, experts]
        && up.shape == [experts, inter, hidden]
        && down.shape == [experts, hidden, inter]
        && gate.is_none_or(|g| g.shape == up.shape)
        && (1..=experts).contains(&k)
        && tokens > 0
        && inter > 0;
    if !fits {
        return Err(unsupported(
            ctx,
            format!(
                "x {:?}, logits {:?}, gate {:?}, up {:?}, down {:?} and top_k {k} do not form one MoE block",
                x.shape,
                logits.shape,
                gate.map(|g| &g.shape),
                up.shape,
                down.shape
            ),
        ));
    }
    if activation.is_gated() != gate.is_some() {
        return Err(unsupported(
            ctx,
            format!(
                "activation {activation:?} with gate operand present: {}",
                gate.is_some()
            ),
        ));
    }
    let dtype = x.dtype;
    let same = [Some(up), Some(down), gate]
        .into_iter()
        .flatten()
        .all(|t| t.dtype == dtype);
    if !same || !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(unsupported(
            ctx,
            format!(
                "x and the expert weights must share one of f32, f16, bf16 (x is {dtype}, up {}, down {})",
                up.dtype, down.dtype
            ),
        ));
    }
    let biased = matches!(
        routing,
        RoutingMode::SigmoidGroupLimited { .. } | RoutingMode::SqrtSoftplus { .. }
    );
    let bias = if biased {
        ctx.inputs.get(BIAS).and_then(Option::as_ref)
    } else {
        None
    };
    if bias.is_some_and(|b| b.shape != [experts]) {
        return Err(unsupported(ctx, format!("bias is not [{experts}]")));
    }
    let hash = match routing {
        RoutingMode::Hash { .. } => {
            let (ids, table) = (ctx.input(TOKEN_IDS)?, ctx.input(TABLE)?);
            let ok = ids.shape == [tokens]
                && table.shape.len() == 2
                && table.shape[1] == k
                && ids.dtype.is_int()
                && table.dtype.is_int();
            if !ok {
                return Err(unsupported(
                    ctx,
                    format!(
                        "hash routing needs integer token ids [{tokens}] and a table [vocab, {k}], got {:?} and {:?}",
                        ids.shape, table.shape
                    ),
                ));
            }
            Some(routing::HashTable {
                ids: ids.dtype,
                table: table.dtype,
                vocab: table.shape[0],
            })
        }
        _ => None,
    };

    let pairs = tokens * k;
    let planned = balanced(pairs, experts);
    let assumption = vec![format!(
        "planned routing: {pairs} routed rows balanced over {experts} experts (group offsets read at run time)"
    )];
    let name = |what: &str| format!("{}_{what}", ctx.name);
    let mut scratch = Scratches(Vec::new());
    let ids = scratch.add("ids", DType::I32, vec![tokens, k]);
    let weights = scratch.add("weights", DType::F32, vec![tokens, k]);
    let offsets = scratch.add("offsets", DType::I32, vec![experts + 1]);
    let places = scratch.add("places", DType::I32, vec![tokens, k]);
    let rows = scratch.add("rows", dtype, vec![pairs, hidden]);
    let mut calls = Vec::new();

    // 1. Routing.
    let route = routing::Routing {
        name: name("route"),
        tokens,
        experts,
        top_k: k,
        logits: logits.dtype,
        bias: bias.map(|b| b.dtype),
        hash,
        mode: routing,
    };
    let mut args = vec![ArgRef::Operand(LOGITS)];
    if bias.is_some() {
        args.push(ArgRef::Operand(BIAS));
    }
    if hash.is_some() {
        args.extend([ArgRef::Operand(TOKEN_IDS), ArgRef::Operand(TABLE)]);
    }
    args.extend([ids, weights]);
    calls.push(vector_call(
        ctx,
        routing::kernel(&route, ctx.target)?,
        args,
        &[],
    )?);

    // 2–3. Grouping by expert.
    calls.push(vector_call(
        ctx,
        permute::sort_kernel(&name("sort"), pairs, experts, permute::CHUNK, ctx.target)?,
        vec![ids, offsets, places],
        &assumption,
    )?);
    calls.push(vector_call(
        ctx,
        permute::scatter_kernel(&name("scatter"), tokens, hidden, k, dtype, ctx.target)?,
        vec![ArgRef::Operand(X), places, rows],
        &[],
    )?);

    // 4–6. Expert GEMMs and the activation.
    let table = GroupTable {
        kind: GroupTableKind::Offsets,
        dtype: DType::I32,
    };
    let gemm = |what: &str,
                weight: usize,
                (n, kk): (u64, u64),
                a: ArgRef,
                c: ArgRef,
                (output, relu): (DType, bool)|
     -> Result<KernelCall, LowerError> {
        let problem = expert_gemm(name(what), planned.clone(), (n, kk), (dtype, output), relu);
        let plan = plan_runtime(&problem, &table, ctx.target)?;
        let mut call = KernelCall::new(
            plan.kernel,
            plan.cost,
            vec![a, ArgRef::Operand(weight), c, offsets],
        );
        call.assumptions = assumption.clone();
        Ok(call)
    };
    let relu = *activation == ExpertActivation::Relu;
    let chain = activation::chain(&name("act"), pairs * inter, dtype, activation);
    // Apart: gate and up GEMMs, then the activation kernel, with their own scratch.
    let mut apart = Vec::new();
    let mut apart_scratch = Scratches(scratch.0.clone());
    let gated = if gate.is_some() {
        let g = apart_scratch.add("gate", dtype, vec![pairs, inter]);
        apart.push(gemm(
            "gate",
            GATE,
            (inter, hidden),
            rows,
            g,
            (dtype, false),
        )?);
        Some(g)
    } else {
        None
    };
    let u = apart_scratch.add("up", dtype, vec![pairs, inter]);
    apart.push(gemm("up", UP, (inter, hidden), rows, u, (dtype, relu))?);
    let apart_act = match &chain {
        Some(chain) => {
            let h = apart_scratch.add("act", dtype, vec![pairs, inter]);
            let plan = plan_chain(chain, ctx.target)?;
            let mut args: Vec<ArgRef> = gated.into_iter().collect();
            args.extend([u, h]);
            apart.push(KernelCall::new(plan.kernel, plan.cost, args));
            h
        }
        None => u,
    };
    // Together: one paired grouped GEMM whose AIVs apply a gated activation.
    let fused = match (&chain, gated) {
        (Some(chain), Some(_)) if chain.inputs == 2 => {
            let problem = GemmProblem {
                epilogue: Some(Epilogue {
                    paired: true,
                    operands: Vec::new(),
                    steps: chain.steps.clone(),
                    output: chain.output,
                    result: dtype,
                }),
                halves: Some(Halves::Separate),
                ..expert_gemm(
                    name("gate_up"),
                    planned.clone(),
                    (inter, hidden),
                    (dtype, dtype),
                    false,
                )
            };
            plan_runtime(&problem, &table, ctx.target).ok()
        }
        _ => None,
    };
    let apart_us: f64 = apart.iter().map(|c| c.cost.modeled_time_us).sum();
    let hidden_act = match fused {
        Some(plan) if plan.cost.modeled_time_us < apart_us => {
            let h = scratch.add("act", dtype, vec![pairs, inter]);
            let (ws_dtype, ws_shape) = plan.workspace().unwrap_or((dtype, Vec::new()));
            let ws = scratch.add("workspace", ws_dtype, ws_shape);
            let mut call = KernelCall::new(
                plan.kernel,
                plan.cost,
                vec![
                    rows,
                    ArgRef::Operand(GATE),
                    h,
                    offsets,
                    ArgRef::Operand(UP),
                    ws,
                ],
            );
            call.assumptions = assumption.clone();
            calls.push(call);
            h
        }
        _ => {
            scratch = apart_scratch;
            calls.extend(apart);
            apart_act
        }
    };
    let y = scratch.add("y", DType::F32, vec![pairs, hidden]);
    calls.push(gemm(
        "down",
        DOWN,
        (hidden, inter),
        hidden_act,
        y,
        (DType::F32, false),
    )?);

    // 7. Weighted sum per token, then the fused binary nodes.
    let (after, operands) = combine_epilogue(ctx, epilogue, tokens * hidden, hidden)?;
    let mut args = vec![y, weights, places, ArgRef::Result(0)];
    args.extend(operands);
    calls.push(vector_call(
        ctx,
        combine::kernel(
            &name("combine"),
            (tokens, hidden, k),
            out.dtype,
            &after,
            ctx.target,
        )?,
        args,
        &[],
    )?);
    Ok(Lowering {
        scratch: scratch.0,
        calls,
        view: false,
    })
}

/// The combine kernel's steps for the nodes fused after a MoE block and the operands they read:
/// binary ops whose other operand is a whole tensor of the block's result (`elements` values
/// in rows of `hidden`, the result's dtype).
fn combine_epilogue(
    ctx: &OpContext,
    epilogue: &[EpilogueNode],
    elements: u64,
    hidden: u64,
) -> Result<(Vec<AfterCombine>, Vec<ArgRef>), LowerError> {
    let out = ctx.output(0)?;
    if !epilogue.is_empty() && (out.elements() != elements || out.shape.last() != Some(&hidden)) {
        return Err(unsupported(
            ctx,
            format!("the fused result {:?} is not the block's output", out.shape),
        ));
    }
    let mut after = Vec::new();
    let mut operands = Vec::new();
    for node in epilogue {
        let EpilogueNode::Binary {
            op,
            operand,
            product_first,
        } = *node
        else {
            return Err(unsupported(
                ctx,
                format!("only binary ops fuse after a MoE block, not {node:?}"),
            ));
        };
        let other = ctx.input(operand)?;
        let vec_op = binary_op(op).filter(|_| {
            EpilogueOperand::of(&other.shape, &out.shape) == Some(EpilogueOperand::Full)
                && other.dtype == out.dtype
        });
        let Some(vec_op) = vec_op else {
            return Err(unsupported(
                ctx,
                format!(
                    "no fused {op:?} after the MoE block with operand {} {:?}",
                    other.dtype, other.shape
                ),
            ));
        };
        after.push(AfterCombine {
            op: vec_op,
            combined_first: product_first,
        });
        operands.push(ArgRef::Operand(operand));
    }
    Ok((after, operands))
}
