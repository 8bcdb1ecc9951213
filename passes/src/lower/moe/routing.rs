//! The routing kernel: router logits → the `top_k` expert ids (`i32 [tokens, top_k]`) and
//! weights (`f32 [tokens, top_k]`) of every token, on the vector cores.
//!
//! Tokens are dealt in tiles of rows to the AIVs. Each token row is brought to f32 and scored
//! (softmax, raw logits, sigmoid or `sqrt(softplus)`), the selection score gets the bias, and
//! the top-k is taken by `k` rounds of `ReduceMax` with `calIndex`: the scalar unit reads the
//! index back, masks the chosen score with the lowest `f32` and writes the expert id. DeepSeek's
//! group limit first scores every group by the sum of its two best experts (two reductions per
//! group), keeps the best `topk_group` groups and copies only their experts into the array the
//! top-k scans. Weights are then normalised, soft-maxed (`TopKSoftmax`) and scaled.
//!
//! A row holds `groups` runs of `group_pitch` elements (one run when there is no group limit),
//! so every group starts 32-byte aligned: the logits are viewed as `[tokens · groups,
//! experts / groups]` and copied with a padded pitch. Reductions over one group cover its
//! experts only, and the array the top-k scans is rebuilt from the lowest `f32` and copies of
//! the kept groups, so padding is never selected.

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, BufferPlanner, Expr, Kernel, ParamRole, Pipe, ReduceKind, Stmt, VecArg, VecOp,
};
use cubevec_ir::op::RoutingMode;
use cubevec_ir::target::Target;

use super::emit::{
    MASK, at0, binary, c, copy_element, for_, gm, let_, load_gm, load_ub, param, pitch, reduce,
    scalar_op, set, set_value, sync, tile, ub, ub_bytes, unary, v, vop, wait,
};
use crate::cost::Work;
use crate::lower::LowerError;
use crate::tile::build::block_trips;

/// How a token's scores are computed from its logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Score {
    /// `softmax(logits)`; the top-k values are the weights.
    Softmax,
    /// The logits themselves; the top-k values are soft-maxed afterwards.
    Raw,
    /// `sigmoid(logits)`, selected with the bias added.
    Sigmoid,
    /// `sqrt(softplus(logits))`, selected with the bias added.
    SqrtSoftplus,
}

/// The hash-routing operands: token ids and the `[vocab, top_k]` expert table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashTable {
    /// Dtype of the token ids (`[tokens]`).
    pub ids: DType,
    /// Dtype of the table.
    pub table: DType,
    /// Rows of the table.
    pub vocab: u64,
}

/// One routing problem.
#[derive(Clone, Debug)]
pub struct Routing<'a> {
    /// Kernel name.
    pub name: String,
    /// Tokens (rows of the logits).
    pub tokens: u64,
    /// Experts (columns of the logits).
    pub experts: u64,
    /// Experts per token.
    pub top_k: u64,
    /// Dtype of the logits.
    pub logits: DType,
    /// Dtype of the selection bias, when given.
    pub bias: Option<DType>,
    /// The hash table operands ([`RoutingMode::Hash`] only).
    pub hash: Option<HashTable>,
    /// The routing rule.
    pub mode: &'a RoutingMode,
}

/// What a routing mode computes, decoded.
struct Rule {
    score: Score,
    /// Expert groups and groups kept (`(1, 1)` without a group limit).
    groups: (u64, u64),
    normalize: bool,
    scaling: f64,
    /// Experts come from the hash table.
    hashed: bool,
}

fn rule(r: &Routing) -> Result<Rule, LowerError> {
    let unsupported = |m: String| LowerError::Unsupported(format!("{}: {m}", r.name));
    let (score, groups, normalize, scaling, hashed) = match r.mode {
        RoutingMode::SoftmaxTopK { normalize } => (Score::Softmax, (1, 1), *normalize, 1.0, false),
        RoutingMode::TopKSoftmax => (Score::Raw, (1, 1), false, 1.0, false),
        RoutingMode::SigmoidGroupLimited {
            n_group,
            topk_group,
            normalize,
            scaling_bits,
        } => {
            let (g, kept) = (u64::from(*n_group), u64::from(*topk_group));
            if g == 0 || !r.experts.is_multiple_of(g) || kept == 0 || kept > g {
                return Err(unsupported(format!(
                    "{} experts cannot form {g} groups with {kept} kept",
                    r.experts
                )));
            }
            if r.top_k > kept * (r.experts / g) {
                return Err(unsupported(format!(
                    "top_k {} exceeds the {} experts of the kept groups",
                    r.top_k,
                    kept * (r.experts / g)
                )));
            }
            let scaling = f64::from(f32::from_bits(*scaling_bits));
            (Score::Sigmoid, (g, kept), *normalize, scaling, false)
        }
        RoutingMode::SqrtSoftplus {
            normalize,
            scaling_bits,
        } => (
            Score::SqrtSoftplus,
            (1, 1),
            *normalize,
            f64::from(f32::from_bits(*scaling_bits)),
            false,
        ),
        RoutingMode::Hash {
            normalize,
            scaling_bits,
        } => (
            Score::SqrtSoftplus,
            (1, 1),
            *normalize,
            f64::from(f32::from_bits(*scaling_bits)),
            true,
        ),
    };
    if hashed != r.hash.is_some() {
        return Err(unsupported(
            "hash routing needs the token ids and the table, other modes neither".into(),
        ));
    }
    Ok(Rule {
        score,
        groups,
        normalize,
        scaling,
        hashed,
    })
}

/// Builds the routing kernel. Parameters: `logits`, then `bias` when given, then `token_ids`
/// and `table` for hash routing, then the outputs `ids` and `weights`.
pub fn kernel(r: &Routing, target: &Target) -> Result<(Kernel, Work), LowerError> {
    let rule = rule(r)?;
    for dt in [Some(r.logits), r.bias].into_iter().flatten() {
        if !matches!(dt, DType::F32 | DType::F16 | DType::BF16) {
            return Err(LowerError::Unsupported(format!(
                "{}: router logits and bias must be f32, f16 or bf16, not {dt}",
                r.name
            )));
        }
    }
    let (e, k, tokens) = (r.experts, r.top_k, r.tokens);
    let (groups, kept) = rule.groups;
    let pg = e / groups;
    let align = [Some(r.logits), r.bias]
        .into_iter()
        .flatten()
        .map(super::emit::align_elems)
        .max()
        .unwrap_or(8);
    let gpad = pg.div_ceil(align) * align;
    let width = groups * gpad;
    // Elements an elementwise step or a reduction over the whole row covers.
    let n = if groups == 1 { e } else { width };
    let kp = pitch(k, DType::F32);
    let gp = pitch(groups + 1, DType::F32);
    let f32b = |cols: u64| ub_bytes(DType::F32, 1, cols);

    // UB budget: per-row scratch is fixed, tiles of `rows` tokens grow with the logits and results.
    let fixed = 5 * f32b(width)
        + f32b(64)
        + 3 * f32b(gp)
        + r.bias
            .map_or(0, |b| ub_bytes(b, groups, gpad) + f32b(width));
    let per_row = ub_bytes(r.logits, groups, gpad) + 2 * f32b(kp);
    let budget = target.buffers.ub.usable_bytes();
    if fixed + per_row > budget {
        return Err(LowerError::Unsupported(format!(
            "{}: a routing row of {e} experts does not fit UB",
            r.name
        )));
    }
    let aiv = u64::from(target.cores.aiv);
    let rows = tokens
        .div_ceil(aiv)
        .clamp(1, ((budget - fixed) / per_row).max(1));
    let tiles = tokens.div_ceil(rows);
    let blocks = tiles.min(aiv);

    let mut params = vec![param(
        "logits",
        r.logits,
        vec![tokens * groups, pg],
        ParamRole::Input,
    )];
    let bias_param = r.bias.map(|dt| {
        params.push(param("bias", dt, vec![groups, pg], ParamRole::Input));
        params.len() - 1
    });
    let hash_params = r.hash.map(|h| {
        params.push(param("token_ids", h.ids, vec![tokens], ParamRole::Input));
        params.push(param("table", h.table, vec![h.vocab, k], ParamRole::Input));
        (params.len() - 2, params.len() - 1)
    });
    params.push(param("ids", DType::I32, vec![tokens, k], ParamRole::Output));
    params.push(param(
        "weights",
        DType::F32,
        vec![tokens, k],
        ParamRole::Output,
    ));
    let (ids_param, w_param) = (params.len() - 2, params.len() - 1);

    let mut planner = BufferPlanner::new();
    let mut add = |b| planner.add(target, b);
    let lg = add(ub("lg", r.logits, rows * groups, gpad, 1));
    let xf = add(ub("xf", DType::F32, 1, width, 1));
    let sv = add(ub("score", DType::F32, 1, width, 1));
    let ss = add(ub("select", DType::F32, 1, width, 1));
    let tmp = add(ub("tmp", DType::F32, 1, width, 1));
    let ks = add(ub("kept", DType::F32, 1, width, 1));
    let st = add(ub("stat", DType::F32, 1, 64, 1));
    let ga = add(ub("group_top1", DType::F32, 1, gp, 1));
    let gb = add(ub("group_top2", DType::F32, 1, gp, 1));
    let gs = add(ub("group_score", DType::F32, 1, gp, 1));
    let bias_bufs = r.bias.map(|dt| {
        let raw = add(ub("bias_in", dt, groups, gpad, 1));
        let f = if dt == DType::F32 {
            raw
        } else {
            add(ub("bias", DType::F32, 1, width, 1))
        };
        (raw, f)
    });
    let wb = add(ub("w", DType::F32, rows, kp, 1));
    let ib = add(ub("ids", DType::I32, rows, kp, 1));
    let buffers = planner.finish();

    let stat = |i: u64| at0(st, c(i));
    let neg = VecArg::Imm(-1.0);
    let mut row = vec![let_("lo", v("r").mul(c(width)))];
    // The logits row in f32.
    if r.logits == DType::F32 {
        row.push(scalar_op(
            VecOp::Adds,
            at0(xf, c(0)),
            at0(lg, v("lo")),
            VecArg::Imm(0.0),
            c(n),
        ));
    } else {
        row.push(unary(VecOp::Cast, at0(xf, c(0)), at0(lg, v("lo")), c(n)));
    }
    let x = || at0(xf, c(0));
    let s = || at0(sv, c(0));
    let t = || at0(tmp, c(0));
    let cn = || c(n);
    // The array the top-k scans, and where the weight of a chosen expert comes from.
    let select = match rule.score {
        Score::Softmax => {
            row.extend([
                reduce(ReduceKind::Max, stat(0), x(), c(e)),
                scalar_op(VecOp::Muls, stat(8), stat(0), neg.clone(), c(1)),
                scalar_op(VecOp::Adds, s(), x(), VecArg::Element(stat(8)), cn()),
                unary(VecOp::Exp, s(), s(), cn()),
                reduce(ReduceKind::Sum, stat(16), s(), c(e)),
                unary(VecOp::Reciprocal, stat(16), stat(16), c(1)),
                scalar_op(VecOp::Muls, s(), s(), VecArg::Element(stat(16)), cn()),
            ]);
            sv
        }
        Score::Raw => xf,
        Score::Sigmoid | Score::SqrtSoftplus => {
            if rule.score == Score::Sigmoid {
                row.extend([
                    scalar_op(VecOp::Muls, t(), x(), neg.clone(), cn()),
                    unary(VecOp::Exp, t(), t(), cn()),
                    scalar_op(VecOp::Adds, t(), t(), VecArg::Imm(1.0), cn()),
                    unary(VecOp::Reciprocal, s(), t(), cn()),
                ]);
            } else {
                // sqrt(max(x, 0) + ln(1 + exp(-|x|)))
                row.extend([
                    unary(VecOp::Abs, t(), x(), cn()),
                    scalar_op(VecOp::Muls, t(), t(), neg.clone(), cn()),
                    unary(VecOp::Exp, t(), t(), cn()),
                    scalar_op(VecOp::Adds, t(), t(), VecArg::Imm(1.0), cn()),
                    unary(VecOp::Ln, t(), t(), cn()),
                    unary(VecOp::Relu, s(), x(), cn()),
                    binary(VecOp::Add, s(), s(), t(), cn()),
                    unary(VecOp::Sqrt, s(), s(), cn()),
                ]);
            }
            match (bias_bufs, rule.hashed) {
                (_, true) => {}
                (Some((_, bf)), false) => {
                    row.push(binary(VecOp::Add, at0(ss, c(0)), s(), at0(bf, c(0)), cn()))
                }
                (None, false) => row.push(scalar_op(
                    VecOp::Adds,
                    at0(ss, c(0)),
                    s(),
                    VecArg::Imm(0.0),
                    cn(),
                )),
            }
            ss
        }
    };
    let select = if groups > 1 {
        row.extend(group_limit(GroupBufs {
            select,
            scratch: tmp,
            kept: ks,
            top1: ga,
            top2: gb,
            score: gs,
            stat: st,
            groups,
            kept_groups: kept,
            pg,
            gpad,
            width,
        }));
        ks
    } else {
        select
    };

    let wslot = || at0(wb, v("r").mul(c(kp)).add(v("j")));
    let islot = || at0(ib, v("r").mul(c(kp)).add(v("j")));
    if let Some((ids_p, table_p)) = hash_params {
        let vocab = r.hash.map_or(1, |h| h.vocab);
        row.push(load_gm(
            "tid",
            ids_p,
            v("t0").add(v("r")),
            v("t0").add(v("r")).rem(c(vocab)),
        ));
        row.push(for_(
            "j",
            c(k),
            false,
            [
                vec![
                    load_gm(
                        "e",
                        table_p,
                        v("tid").mul(c(k)).add(v("j")),
                        v("t0").add(v("r")).add(v("j")).rem(c(e)),
                    ),
                    set_value(islot(), VecArg::Scalar(v("e"))),
                ],
                copy_element(at0(sv, v("e")), wslot(), stat(24)).to_vec(),
            ]
            .concat(),
        ));
    } else {
        let expert = if groups > 1 {
            v("p").sub(v("p").div(c(gpad)).mul(c(gpad - pg)))
        } else {
            v("p")
        };
        let weight = match rule.score {
            Score::Softmax | Score::Raw => stat(0),
            Score::Sigmoid | Score::SqrtSoftplus => at0(sv, v("p")),
        };
        let mut body = vec![reduce(
            ReduceKind::MaxIndex,
            stat(0),
            at0(select, c(0)),
            cn(),
        )];
        body.extend(sync(Pipe::V, Pipe::S, 0));
        body.extend([
            load_ub("p", stat(1), v("j")),
            set_value(at0(select, v("p")), VecArg::Imm(MASK)),
            set_value(islot(), VecArg::Scalar(expert)),
        ]);
        body.extend(sync(Pipe::S, Pipe::V, 0));
        body.extend(copy_element(weight, wslot(), stat(24)));
        row.push(for_("j", c(k), false, body));
    }

    // Weights: softmax over the chosen logits, or normalisation, then scaling.
    let w = || at0(wb, v("r").mul(c(kp)));
    if rule.score == Score::Raw {
        row.extend([
            scalar_op(VecOp::Muls, stat(8), w(), neg.clone(), c(1)),
            scalar_op(VecOp::Adds, w(), w(), VecArg::Element(stat(8)), c(k)),
            unary(VecOp::Exp, w(), w(), c(k)),
        ]);
    }
    if rule.normalize || rule.score == Score::Raw {
        row.extend([
            reduce(ReduceKind::Sum, stat(16), w(), c(k)),
            unary(VecOp::Reciprocal, stat(16), stat(16), c(1)),
            scalar_op(VecOp::Muls, w(), w(), VecArg::Element(stat(16)), c(k)),
        ]);
    }
    if rule.scaling != 1.0 {
        row.push(scalar_op(
            VecOp::Muls,
            w(),
            w(),
            VecArg::Imm(rule.scaling),
            c(k),
        ));
    }

    let mut vector = Vec::new();
    if let (Some(bp), Some((raw, f))) = (bias_param, bias_bufs) {
        vector.push(Stmt::CopyIn {
            dst: tile(raw, c(0), (c(0), c(0)), (c(groups), c(pg))),
            src: gm(bp, (c(0), c(0)), (c(groups), c(pg))),
        });
        vector.extend(sync(Pipe::Mte2, Pipe::V, 1));
        if f != raw {
            vector.push(unary(VecOp::Cast, at0(f, c(0)), at0(raw, c(0)), c(n)));
        }
    }
    vector.extend([
        set(Pipe::V, Pipe::Mte2, 0),
        set(Pipe::Mte3, Pipe::V, 0),
        set(Pipe::Mte3, Pipe::S, 0),
    ]);
    let mut body = vec![
        let_("tile", v("blk").add(v("t").mul(c(blocks)))),
        let_("t0", v("tile").mul(c(rows))),
        let_("rl", c(tokens).sub(v("t0")).min(c(rows))),
        wait(Pipe::V, Pipe::Mte2, 0),
        Stmt::CopyIn {
            dst: tile(lg, c(0), (c(0), c(0)), (v("rl").mul(c(groups)), c(pg))),
            src: gm(
                0,
                (v("t0").mul(c(groups)), c(0)),
                (v("rl").mul(c(groups)), c(pg)),
            ),
        },
    ];
    body.extend(sync(Pipe::Mte2, Pipe::V, 0));
    body.extend([wait(Pipe::Mte3, Pipe::V, 0), wait(Pipe::Mte3, Pipe::S, 0)]);
    body.push(for_("r", v("rl"), false, row));
    body.push(set(Pipe::V, Pipe::Mte2, 0));
    body.extend(sync(Pipe::V, Pipe::Mte3, 0));
    body.extend(sync(Pipe::S, Pipe::Mte3, 0));
    body.extend([
        Stmt::CopyOut {
            dst: gm(ids_param, (v("t0"), c(0)), (v("rl"), c(k))),
            src: tile(ib, c(0), (c(0), c(0)), (v("rl"), c(k))),
        },
        Stmt::CopyOut {
            dst: gm(w_param, (v("t0"), c(0)), (v("rl"), c(k))),
            src: tile(wb, c(0), (c(0), c(0)), (v("rl"), c(k))),
        },
        set(Pipe::Mte3, Pipe::V, 0),
        set(Pipe::Mte3, Pipe::S, 0),
    ]);
    let trips = block_trips(tiles, blocks);
    vector.push(for_("t", trips, false, body));
    vector.extend([
        wait(Pipe::V, Pipe::Mte2, 0),
        wait(Pipe::Mte3, Pipe::V, 0),
        wait(Pipe::Mte3, Pipe::S, 0),
    ]);

    let tiling = [
        ("tile_tokens", rows),
        ("tiles", tiles),
        ("groups", groups),
        ("group_pitch", gpad),
        ("top_k", k),
    ];
    let kernel = Kernel::vector(&r.name, blocks as u32, params, buffers, vector, &tiling);
    let eb = r.logits.bits() as f64 / 8.0;
    let work = Work {
        flops: (tokens * e) as f64 * (8.0 + k as f64),
        bytes: (tokens * e) as f64 * eb + (tokens * k * 8) as f64,
        cube: false,
        dtype: DType::F32,
    };
    Ok((kernel, work))
}

/// The buffers and sizes of the group-limited selection.
struct GroupBufs {
    select: BufId,
    scratch: BufId,
    kept: BufId,
    top1: BufId,
    top2: BufId,
    score: BufId,
    stat: BufId,
    groups: u64,
    kept_groups: u64,
    pg: u64,
    gpad: u64,
    width: u64,
}

/// Builds the array the top-k scans when experts are grouped: padding and the experts of
/// dropped groups masked, the kept groups' selection scores copied. With a group limit, each
/// group is scored by the sum of its two best selection scores and the best `kept_groups` are
/// kept.
fn group_limit(b: GroupBufs) -> Vec<Stmt> {
    let run = |buf, group: Expr| at0(buf, group.mul(c(b.gpad)));
    let mut out = Vec::new();
    if b.kept_groups < b.groups {
        out.push(scalar_op(
            VecOp::Adds,
            at0(b.scratch, c(0)),
            at0(b.select, c(0)),
            VecArg::Imm(0.0),
            c(b.width),
        ));
        let mut per_group = vec![reduce(
            ReduceKind::MaxIndex,
            at0(b.top1, v("g")),
            run(b.scratch, v("g")),
            c(b.pg),
        )];
        if b.pg > 1 {
            per_group.extend(sync(Pipe::V, Pipe::S, 0));
            per_group.extend([
                load_ub("q", at0(b.top1, v("g").add(c(1))), c(0)),
                set_value(
                    at0(b.scratch, v("g").mul(c(b.gpad)).add(v("q"))),
                    VecArg::Imm(MASK),
                ),
            ]);
            per_group.extend(sync(Pipe::S, Pipe::V, 0));
            per_group.push(reduce(
                ReduceKind::Max,
                at0(b.top2, v("g")),
                run(b.scratch, v("g")),
                c(b.pg),
            ));
        }
        out.push(for_("g", c(b.groups), false, per_group));
        out.push(if b.pg > 1 {
            binary(
                VecOp::Add,
                at0(b.score, c(0)),
                at0(b.top1, c(0)),
                at0(b.top2, c(0)),
                c(b.groups),
            )
        } else {
            scalar_op(
                VecOp::Adds,
                at0(b.score, c(0)),
                at0(b.top1, c(0)),
                VecArg::Imm(0.0),
                c(b.groups),
            )
        });
    }
    out.push(vop(
        VecOp::Duplicate,
        at0(b.kept, c(0)),
        vec![VecArg::Imm(MASK)],
        c(b.width),
    ));
    let copy = scalar_op(
        VecOp::Adds,
        run(b.kept, v("gq")),
        run(b.select, v("gq")),
        VecArg::Imm(0.0),
        c(b.pg),
    );
    if b.kept_groups < b.groups {
        let mut keep = vec![reduce(
            ReduceKind::MaxIndex,
            at0(b.stat, c(0)),
            at0(b.score, c(0)),
            c(b.groups),
        )];
        keep.extend(sync(Pipe::V, Pipe::S, 0));
        keep.extend([
            load_ub("gq", at0(b.stat, c(1)), v("i")),
            set_value(at0(b.score, v("gq")), VecArg::Imm(MASK)),
        ]);
        keep.extend(sync(Pipe::S, Pipe::V, 0));
        keep.push(copy);
        out.push(for_("i", c(b.kept_groups), false, keep));
    } else {
        out.push(for_("gq", c(b.groups), false, vec![copy]));
    }
    out
}
