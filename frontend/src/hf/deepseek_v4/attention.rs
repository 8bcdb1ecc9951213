//! DeepSeek-V4 attention: one shared key/value head (keys are values), partial interleaved rotary
//! on the trailing features, a sliding window, compressed entries (pooled windows of tokens)
//! appended to the keys, per-head attention sinks, and the grouped low-rank output projection.
//!
//! Compressed entries cover windows of `ratio` tokens; a query at position `i` may see entry `w`
//! only when `w < (i + 1) / ratio` (the window is complete). Windows are counted as
//! `ceil(seq / ratio)`: the last one, incomplete when `seq` is not a multiple of `ratio`, is never
//! visible, which keeps every shape a plain function of `seq`. The lightning indexer of
//! compressed sparse layers keeps the `index_topk` best-scoring visible entries per query.

use cubevec_ir::op::{BinaryOp, ScatterReduction, UnaryOp};
use cubevec_ir::{DType, Dim, Op, ValueId};

use super::{
    AttentionKind, DeepseekV4Config, Naming, Quantizable, V4, f32_param, index_vector, scalar,
    unweighted_rms_norm,
};
use crate::hf::HfError;
use crate::hf::builder::{ModelBuilder, WeightSource};
use crate::hf::rope::RopeFrequencies;

/// Rotary tables `[n, rope_dim/2]` in the compute dtype, with `-sin` for the inverse rotation.
#[derive(Debug, Clone, Copy)]
struct Rotation {
    cos: ValueId,
    sin: ValueId,
    neg_sin: ValueId,
}

/// The compressed entries of one compression rate, shared by every layer using it.
#[derive(Debug, Clone)]
struct Entries {
    /// Tokens per entry.
    ratio: u64,
    /// `ceil(seq / ratio)`.
    count: Dim,
    /// `0, 1, …, count-1` as f32 `[count]`.
    index: ValueId,
    /// Rotary tables at the entries' positions `w · ratio`.
    rotation: Rotation,
    /// bool `[seq, count]`: query `i` may see entry `w`.
    visible: ValueId,
    /// `[seq, count]` in the compute dtype: 0 where visible, `-inf` elsewhere.
    bias: ValueId,
}

/// What every layer's attention shares: rotary tables, the sliding-window mask and the
/// compressed-entry bookkeeping of each compression rate.
pub(super) struct RopeTables {
    main: Rotation,
    compress: Rotation,
    /// `[1, 1, seq, seq]` in the compute dtype: 0 inside the causal sliding window, else `-inf`.
    window_mask: ValueId,
    /// Entries of compressed sparse layers, built for the first such layer.
    csa: Option<Entries>,
    /// Entries of heavily compressed layers, built for the first such layer.
    hca: Option<Entries>,
}

impl RopeTables {
    /// The tables the layers of `c` need.
    pub(super) fn new(
        b: &mut ModelBuilder<'_, '_>,
        c: &DeepseekV4Config,
    ) -> Result<RopeTables, HfError> {
        let positions = b.positions()?;
        let main = rotation(b, "rope.main", positions, &c.main_rope)?;
        let compress = rotation(b, "rope.compress", positions, &c.compress_rope)?;
        let window_mask = window_mask(b, positions, c.window)?;
        Ok(RopeTables {
            main,
            compress,
            window_mask,
            csa: None,
            hca: None,
        })
    }

    /// The entries of a compressed layer kind, built on first use.
    fn entries(
        &mut self,
        b: &mut ModelBuilder<'_, '_>,
        c: &DeepseekV4Config,
        sparse: bool,
    ) -> Result<Entries, HfError> {
        let (slot, name, ratio) = if sparse {
            (&mut self.csa, "csa", c.csa_ratio)
        } else {
            (&mut self.hca, "hca", c.hca_ratio)
        };
        if let Some(e) = slot {
            return Ok(e.clone());
        }
        let positions = b.positions()?;
        let e = entries(b, c, name, ratio, positions)?;
        *slot = Some(e.clone());
        Ok(e)
    }
}

/// `cos, sin, -sin` of `positions [n] f32` times the inverse frequencies.
fn rotation(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    positions: ValueId,
    rope: &RopeFrequencies,
) -> Result<Rotation, HfError> {
    let column = b.op(
        &format!("{name}.positions"),
        Op::Unsqueeze { axes: vec![1] },
        &[positions],
    )?;
    let freqs = b.constant(
        &format!("{name}.inv_freq"),
        &cubevec_ir::Tensor::from_f32(DType::F32, vec![rope.inv_freq.len()], &rope.inv_freq),
    )?;
    let angles = b.binary(&format!("{name}.angles"), BinaryOp::Mul, column, freqs)?;
    let mut tables = Vec::with_capacity(2);
    for (part, op) in [("cos", UnaryOp::Cos), ("sin", UnaryOp::Sin)] {
        let mut t = b.unary(&format!("{name}.{part}"), op, angles)?;
        if rope.attention_factor != 1.0 {
            let factor = scalar(
                b,
                &format!("{name}.{part}.factor"),
                rope.attention_factor,
                DType::F32,
            )?;
            t = b.binary(&format!("{name}.{part}.scaled"), BinaryOp::Mul, t, factor)?;
        }
        tables.push(b.cast(&format!("{name}.{part}.cast"), t, b.dtype)?);
    }
    let neg_sin = b.unary(&format!("{name}.neg_sin"), UnaryOp::Neg, tables[1])?;
    Ok(Rotation {
        cos: tables[0],
        sin: tables[1],
        neg_sin,
    })
}

/// `0` where `cond` holds, `-inf` elsewhere, in the compute dtype.
fn bias_of(b: &mut ModelBuilder<'_, '_>, name: &str, cond: ValueId) -> Result<ValueId, HfError> {
    let zero = scalar(b, &format!("{name}.zero"), 0.0, b.dtype)?;
    let neg_inf = scalar(b, &format!("{name}.neg_inf"), f32::NEG_INFINITY, b.dtype)?;
    b.op(name, Op::Where, &[cond, zero, neg_inf])
}

/// The causal sliding-window mask `[1, 1, seq, seq]`: key `j` is visible from query `i` when
/// `0 <= i - j < window`.
fn window_mask(
    b: &mut ModelBuilder<'_, '_>,
    positions: ValueId,
    window: u64,
) -> Result<ValueId, HfError> {
    let rows = b.op(
        "window_mask.rows",
        Op::Unsqueeze { axes: vec![1] },
        &[positions],
    )?;
    let cols = b.op(
        "window_mask.cols",
        Op::Unsqueeze { axes: vec![0] },
        &[positions],
    )?;
    let distance = b.binary("window_mask.distance", BinaryOp::Sub, rows, cols)?;
    let zero = scalar(b, "window_mask.zero", 0.0, DType::F32)?;
    let limit = scalar(b, "window_mask.window", window as f32, DType::F32)?;
    let causal = b.binary(
        "window_mask.causal",
        BinaryOp::GreaterOrEqual,
        distance,
        zero,
    )?;
    let near = b.binary("window_mask.near", BinaryOp::Less, distance, limit)?;
    let keep = b.binary("window_mask.keep", BinaryOp::And, causal, near)?;
    let bias = bias_of(b, "window_mask.bias", keep)?;
    b.reshape(
        "window_mask",
        bias,
        vec![Dim::Known(1), Dim::Known(1), b.seq.clone(), b.seq.clone()],
    )
}

/// The entry bookkeeping of compression rate `ratio`.
fn entries(
    b: &mut ModelBuilder<'_, '_>,
    c: &DeepseekV4Config,
    name: &str,
    ratio: u64,
    positions: ValueId,
) -> Result<Entries, HfError> {
    let count = b.seq.ceil_div(&Dim::Known(ratio));
    let index = index_vector(b, &format!("{name}.entries"), count.clone())?;
    let ratio_f = scalar(b, &format!("{name}.ratio"), ratio as f32, DType::F32)?;
    let entry_positions = b.binary(
        &format!("{name}.entries.positions"),
        BinaryOp::Mul,
        index,
        ratio_f,
    )?;
    let rotation = rotation(
        b,
        &format!("rope.{name}.entries"),
        entry_positions,
        &c.compress_rope,
    )?;
    // Entry `w` is complete for query `i` when `w < floor((i + 1) / ratio)`.
    let one = scalar(b, &format!("{name}.one"), 1.0, DType::F32)?;
    let next = b.binary(&format!("{name}.next"), BinaryOp::Add, positions, one)?;
    let done = b.binary(&format!("{name}.complete"), BinaryOp::Div, next, ratio_f)?;
    let done = b.unary(&format!("{name}.complete.floor"), UnaryOp::Floor, done)?;
    let done = b.op(
        &format!("{name}.complete.column"),
        Op::Unsqueeze { axes: vec![1] },
        &[done],
    )?;
    let row = b.op(
        &format!("{name}.entries.row"),
        Op::Unsqueeze { axes: vec![0] },
        &[index],
    )?;
    let visible = b.binary(&format!("{name}.visible"), BinaryOp::Less, row, done)?;
    let bias = bias_of(b, &format!("{name}.visible.bias"), visible)?;
    Ok(Entries {
        ratio,
        count,
        index,
        rotation,
        visible,
        bias,
    })
}

/// Rotates the trailing `rope_dim` features of `x [..., dim]` by `(cos, sin)` in interleaved
/// pairs.
fn rope_trailing(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    x: ValueId,
    [dim, rope_dim]: [u64; 2],
    cos: ValueId,
    sin: ValueId,
) -> Result<ValueId, HfError> {
    let parts = b.node(
        &format!("{name}.split"),
        Op::Split {
            axis: -1,
            sizes: vec![Dim::Known(dim - rope_dim), Dim::Known(rope_dim)],
        },
        vec![Some(x)],
    )?;
    let rotated = b.op(name, Op::Rope { interleaved: true }, &[parts[1], cos, sin])?;
    b.op(
        &format!("{name}.cat"),
        Op::Concat { axis: -1 },
        &[parts[0], rotated],
    )
}

/// The attention block of layer `layer` (names `{layer}.attn.*`) over `x [t, hidden]`.
pub(super) fn attention(
    b: &mut ModelBuilder<'_, '_>,
    v4: &V4<'_>,
    layer: &str,
    x: ValueId,
    tables: &mut RopeTables,
    kind: AttentionKind,
) -> Result<ValueId, HfError> {
    let c = v4.c;
    let p = format!("{layer}.attn");
    let (heads, hd, rd) = (c.heads, c.head_dim, c.rope_dim);
    let rot = match kind {
        AttentionKind::Sliding => tables.main,
        _ => tables.compress,
    };
    let qr = v4.linear(
        b,
        &format!("{p}.wq_a"),
        x,
        [c.hidden, c.q_lora_rank],
        Quantizable::Fp8,
    )?;
    let qr = b.rms_norm(&format!("{p}.q_norm"), qr, c.q_lora_rank, c.epsilon)?;
    let q = v4.linear(
        b,
        &format!("{p}.wq_b"),
        qr,
        [c.q_lora_rank, heads * hd],
        Quantizable::Fp8,
    )?;
    let q = b.reshape(
        &format!("{p}.q.heads"),
        q,
        vec![
            b.batch.clone(),
            b.seq.clone(),
            Dim::Known(heads),
            Dim::Known(hd),
        ],
    )?;
    let q = b.transpose(&format!("{p}.q.transpose"), q, &[0, 2, 1, 3])?;
    let q = unweighted_rms_norm(b, &format!("{p}.q.norm"), q, c.epsilon)?;
    let q = rope_trailing(b, &format!("{p}.q.rope"), q, [hd, rd], rot.cos, rot.sin)?;

    let kv = v4.linear(b, &format!("{p}.wkv"), x, [c.hidden, hd], Quantizable::Fp8)?;
    let kv_norm = kv_norm_name(b, v4.naming, &p);
    let kv = b.rms_norm(&kv_norm, kv, hd, c.epsilon)?;
    let mut kv = b.reshape(
        &format!("{p}.kv.heads"),
        kv,
        vec![
            b.batch.clone(),
            Dim::Known(1),
            b.seq.clone(),
            Dim::Known(hd),
        ],
    )?;
    kv = rope_trailing(b, &format!("{p}.kv.rope"), kv, [hd, rd], rot.cos, rot.sin)?;

    let mut mask = tables.window_mask;
    let compressed = match kind {
        AttentionKind::Sliding => None,
        AttentionKind::HeavilyCompressed => {
            let e = tables.entries(b, c, false)?;
            let pooled = compress(b, v4, &format!("{p}.compressor"), x, &e, hd, false)?;
            let bias = b.reshape(
                &format!("{p}.compressed.bias"),
                e.bias,
                vec![Dim::Known(1), Dim::Known(1), b.seq.clone(), e.count.clone()],
            )?;
            Some((pooled, bias))
        }
        AttentionKind::CompressedSparse => {
            let e = tables.entries(b, c, true)?;
            let pooled = compress(b, v4, &format!("{p}.compressor"), x, &e, hd, true)?;
            let bias = indexer(b, v4, &format!("{p}.indexer"), x, qr, &e, tables.compress)?;
            let window = b.op(
                &format!("{p}.window_mask.batch"),
                Op::Expand {
                    shape: vec![b.batch.clone(), Dim::Known(1), b.seq.clone(), b.seq.clone()],
                },
                &[mask],
            )?;
            mask = window;
            Some((pooled, bias))
        }
    };
    if let Some((pooled, bias)) = compressed {
        let pooled = b.op(
            &format!("{p}.compressed.head"),
            Op::Unsqueeze { axes: vec![1] },
            &[pooled],
        )?;
        kv = b.op(&format!("{p}.keys"), Op::Concat { axis: 2 }, &[kv, pooled])?;
        mask = b.op(&format!("{p}.mask"), Op::Concat { axis: -1 }, &[mask, bias])?;
    }

    // softmax([sink, q·kᵀ·scale + mask]) without the sink column, times the keys.
    let keys_t = b.transpose(&format!("{p}.keys.transpose"), kv, &[0, 1, 3, 2])?;
    let scores = b.op(&format!("{p}.scores"), Op::MatMul, &[q, keys_t])?;
    let scale = scalar(b, &format!("{p}.scale"), (hd as f32).powf(-0.5), b.dtype)?;
    let scores = b.binary(&format!("{p}.scores.scaled"), BinaryOp::Mul, scores, scale)?;
    let scores = b.binary(&format!("{p}.scores.masked"), BinaryOp::Add, scores, mask)?;
    let sinks = f32_param(b, &format!("{p}.attn_sink"), &[heads])?;
    let sinks = b.cast(&format!("{p}.attn_sink.cast"), sinks, b.dtype)?;
    let sinks = b.reshape(
        &format!("{p}.attn_sink.heads"),
        sinks,
        vec![
            Dim::Known(1),
            Dim::Known(heads),
            Dim::Known(1),
            Dim::Known(1),
        ],
    )?;
    let sinks = b.op(
        &format!("{p}.attn_sink.expand"),
        Op::Expand {
            shape: vec![
                b.batch.clone(),
                Dim::Known(heads),
                b.seq.clone(),
                Dim::Known(1),
            ],
        },
        &[sinks],
    )?;
    let logits = b.op(
        &format!("{p}.scores.with_sink"),
        Op::Concat { axis: -1 },
        &[sinks, scores],
    )?;
    let probs = b.op(&format!("{p}.probs"), Op::Softmax { axis: -1 }, &[logits])?;
    let probs = b.op(
        &format!("{p}.probs.drop_sink"),
        Op::Slice {
            axes: vec![-1],
            starts: vec![1],
            ends: vec![i64::MAX],
            steps: vec![1],
        },
        &[probs],
    )?;
    let o = b.op(&format!("{p}.context"), Op::MatMul, &[probs, kv])?;
    // Values carry the keys' rotation; the inverse rotation at the query position undoes it.
    let o = rope_trailing(
        b,
        &format!("{p}.o.unrope"),
        o,
        [hd, rd],
        rot.cos,
        rot.neg_sin,
    )?;

    // Grouped low-rank output projection: each group of heads projected by its own block.
    let groups = c.o_groups;
    let group_in = heads * hd / groups;
    let o = b.transpose(&format!("{p}.o.transpose"), o, &[0, 2, 1, 3])?;
    let o = b.reshape(
        &format!("{p}.o.groups"),
        o,
        vec![b.tokens.clone(), Dim::Known(groups), Dim::Known(group_in)],
    )?;
    let o = b.transpose(&format!("{p}.o.group_major"), o, &[1, 0, 2])?;
    let wo_a = v4.projection_weight(
        b,
        &format!("{p}.wo_a"),
        [groups * c.o_lora_rank, group_in],
        Quantizable::Fp8,
    )?;
    let wo_a = b.reshape(
        &format!("{p}.wo_a.groups"),
        wo_a,
        vec![
            Dim::Known(groups),
            Dim::Known(c.o_lora_rank),
            Dim::Known(group_in),
        ],
    )?;
    let wo_a = b.transpose(&format!("{p}.wo_a.transpose"), wo_a, &[0, 2, 1])?;
    let o = b.op(&format!("{p}.wo_a"), Op::MatMul, &[o, wo_a])?;
    let o = b.transpose(&format!("{p}.wo_a.token_major"), o, &[1, 0, 2])?;
    let o = b.reshape(
        &format!("{p}.wo_a.merge"),
        o,
        vec![b.tokens.clone(), Dim::Known(groups * c.o_lora_rank)],
    )?;
    v4.linear(
        b,
        &format!("{p}.wo_b"),
        o,
        [groups * c.o_lora_rank, c.hidden],
        Quantizable::Fp8,
    )
}

/// The key/value norm's name: `kv_norm` in the published checkpoints, `norm` in the names
/// transformers writes (either is accepted when the checkpoint has it).
fn kv_norm_name(b: &ModelBuilder<'_, '_>, naming: Naming, attn: &str) -> String {
    let kv_norm = format!("{attn}.kv_norm");
    let norm = format!("{attn}.norm");
    match b.weight_source() {
        WeightSource::Checkpoint(checkpoint, _) => {
            if checkpoint.contains(&format!("{kv_norm}.weight")) {
                kv_norm
            } else {
                norm
            }
        }
        WeightSource::ShapesOnly { .. } => match naming {
            Naming::Published => kv_norm,
            Naming::Transformers => norm,
        },
    }
}

/// The compressor `{prefix}.{wkv,wgate,ape,norm}` over `x [t, hidden]`: `[batch, count, dim]`
/// entries, each the softmax(gate + ape)-weighted sum of its window's projected tokens,
/// normalised and rotated at the entry's position. With `overlap`, projections are `2·dim`
/// wide and entry `w` pools the first half of window `w-1` with the second half of window `w`.
fn compress(
    b: &mut ModelBuilder<'_, '_>,
    v4: &V4<'_>,
    prefix: &str,
    x: ValueId,
    e: &Entries,
    dim: u64,
    overlap: bool,
) -> Result<ValueId, HfError> {
    let c = v4.c;
    let width = if overlap { 2 * dim } else { dim };
    let ratio = e.ratio;
    let windows = |b: &mut ModelBuilder<'_, '_>, name: &str, v: ValueId| {
        let v = b.reshape(
            &format!("{name}.tokens"),
            v,
            vec![b.batch.clone(), b.seq.clone(), Dim::Known(width)],
        )?;
        let padded_len = e.count.mul(&Dim::Known(ratio));
        let pad_len = padded_len.sub(&b.seq);
        let zero = scalar(b, &format!("{name}.pad.zero"), 0.0, b.dtype)?;
        let pad = b.op(
            &format!("{name}.pad"),
            Op::Expand {
                shape: vec![b.batch.clone(), pad_len, Dim::Known(width)],
            },
            &[zero],
        )?;
        let v = b.op(&format!("{name}.padded"), Op::Concat { axis: 1 }, &[v, pad])?;
        b.reshape(
            &format!("{name}.windows"),
            v,
            vec![
                b.batch.clone(),
                e.count.clone(),
                Dim::Known(ratio),
                Dim::Known(width),
            ],
        )
    };
    let kv = v4.linear(
        b,
        &format!("{prefix}.wkv"),
        x,
        [c.hidden, width],
        Quantizable::No,
    )?;
    let kv = windows(b, &format!("{prefix}.kv"), kv)?;
    let gate = v4.linear(
        b,
        &format!("{prefix}.wgate"),
        x,
        [c.hidden, width],
        Quantizable::No,
    )?;
    let gate = windows(b, &format!("{prefix}.gate"), gate)?;
    let ape = f32_param(b, &format!("{prefix}.ape"), &[ratio, width])?;
    let ape = b.cast(&format!("{prefix}.ape.cast"), ape, b.dtype)?;
    let gate = b.binary(
        &format!("{prefix}.gate.positioned"),
        BinaryOp::Add,
        gate,
        ape,
    )?;
    let (kv, gate) = if overlap {
        let halves = |b: &mut ModelBuilder<'_, '_>, name: &str, v: ValueId| {
            b.node(
                &format!("{name}.halves"),
                Op::Split {
                    axis: -1,
                    sizes: vec![Dim::Known(dim), Dim::Known(dim)],
                },
                vec![Some(v)],
            )
        };
        let kv_h = halves(b, &format!("{prefix}.kv"), kv)?;
        let gate_h = halves(b, &format!("{prefix}.gate"), gate)?;
        // Window `w-1` of the first halves (window 0 has none: its gate is -inf).
        let one = scalar(b, &format!("{prefix}.previous.one"), 1.0, DType::F32)?;
        let prev = b.binary(&format!("{prefix}.previous"), BinaryOp::Sub, e.index, one)?;
        let prev = b.cast(&format!("{prefix}.previous.i64"), prev, DType::I64)?;
        let prev_kv = b.op(
            &format!("{prefix}.kv.previous"),
            Op::Gather { axis: 1 },
            &[kv_h[0], prev],
        )?;
        let prev_gate = b.op(
            &format!("{prefix}.gate.previous"),
            Op::Gather { axis: 1 },
            &[gate_h[0], prev],
        )?;
        let zero = scalar(b, &format!("{prefix}.first.zero"), 0.0, DType::F32)?;
        let first = b.binary(&format!("{prefix}.first"), BinaryOp::Equal, e.index, zero)?;
        let first = b.op(
            &format!("{prefix}.first.column"),
            Op::Unsqueeze { axes: vec![1, 2] },
            &[first],
        )?;
        let neg_inf = scalar(
            b,
            &format!("{prefix}.first.neg_inf"),
            f32::NEG_INFINITY,
            b.dtype,
        )?;
        let prev_gate = b.op(
            &format!("{prefix}.gate.previous.masked"),
            Op::Where,
            &[first, neg_inf, prev_gate],
        )?;
        let kv = b.op(
            &format!("{prefix}.kv.overlapped"),
            Op::Concat { axis: 2 },
            &[prev_kv, kv_h[1]],
        )?;
        let gate = b.op(
            &format!("{prefix}.gate.overlapped"),
            Op::Concat { axis: 2 },
            &[prev_gate, gate_h[1]],
        )?;
        (kv, gate)
    } else {
        (kv, gate)
    };
    let gate32 = b.cast(&format!("{prefix}.gate.f32"), gate, DType::F32)?;
    let weights = b.op(
        &format!("{prefix}.weights"),
        Op::Softmax { axis: 2 },
        &[gate32],
    )?;
    let weights = b.cast(&format!("{prefix}.weights.cast"), weights, b.dtype)?;
    let weighted = b.binary(&format!("{prefix}.weighted"), BinaryOp::Mul, kv, weights)?;
    let pooled = b.sum(&format!("{prefix}.pooled"), weighted, 2, false)?;
    let pooled = b.rms_norm(&format!("{prefix}.norm"), pooled, dim, c.epsilon)?;
    rope_trailing(
        b,
        &format!("{prefix}.rope"),
        pooled,
        [dim, c.rope_dim],
        e.rotation.cos,
        e.rotation.sin,
    )
}

/// The lightning indexer `{prefix}.{wq_b,weights_proj,compressor.*}`: scores every compressed
/// entry for every query as `Σ_h w_h · relu(q_h · k)`, keeps the `index_topk` best visible ones,
/// and returns the attention bias over the entries `[batch, 1, seq, count]` (0 for kept entries,
/// `-inf` elsewhere).
fn indexer(
    b: &mut ModelBuilder<'_, '_>,
    v4: &V4<'_>,
    prefix: &str,
    x: ValueId,
    qr: ValueId,
    e: &Entries,
    rot: Rotation,
) -> Result<ValueId, HfError> {
    let c = v4.c;
    let (nh, ihd) = (c.index_heads, c.index_head_dim);
    let keys = compress(b, v4, &format!("{prefix}.compressor"), x, e, ihd, true)?;
    let q = v4.linear(
        b,
        &format!("{prefix}.wq_b"),
        qr,
        [c.q_lora_rank, nh * ihd],
        Quantizable::Fp8,
    )?;
    let q = b.reshape(
        &format!("{prefix}.q.heads"),
        q,
        vec![
            b.batch.clone(),
            b.seq.clone(),
            Dim::Known(nh),
            Dim::Known(ihd),
        ],
    )?;
    let q = b.transpose(&format!("{prefix}.q.transpose"), q, &[0, 2, 1, 3])?;
    let q = rope_trailing(
        b,
        &format!("{prefix}.q.rope"),
        q,
        [ihd, c.rope_dim],
        rot.cos,
        rot.sin,
    )?;
    let q = b.cast(&format!("{prefix}.q.f32"), q, DType::F32)?;
    let keys = b.cast(&format!("{prefix}.keys.f32"), keys, DType::F32)?;
    let keys = b.op(
        &format!("{prefix}.keys.head"),
        Op::Unsqueeze { axes: vec![1] },
        &[keys],
    )?;
    let keys_t = b.transpose(&format!("{prefix}.keys.transpose"), keys, &[0, 1, 3, 2])?;
    let scores = b.op(&format!("{prefix}.scores"), Op::MatMul, &[q, keys_t])?;
    let scores = b.unary(&format!("{prefix}.scores.relu"), UnaryOp::Relu, scores)?;
    let softmax_scale = scalar(
        b,
        &format!("{prefix}.scores.scale"),
        (ihd as f32).powf(-0.5),
        DType::F32,
    )?;
    let scores = b.binary(
        &format!("{prefix}.scores.scaled"),
        BinaryOp::Mul,
        scores,
        softmax_scale,
    )?;
    let w = v4.linear(
        b,
        &format!("{prefix}.weights_proj"),
        x,
        [c.hidden, nh],
        Quantizable::No,
    )?;
    let w = b.cast(&format!("{prefix}.weights.f32"), w, DType::F32)?;
    let w_scale = scalar(
        b,
        &format!("{prefix}.weights.scale"),
        (nh as f32).powf(-0.5),
        DType::F32,
    )?;
    let w = b.binary(
        &format!("{prefix}.weights.scaled"),
        BinaryOp::Mul,
        w,
        w_scale,
    )?;
    let w = b.reshape(
        &format!("{prefix}.weights.heads"),
        w,
        vec![b.batch.clone(), b.seq.clone(), Dim::Known(nh)],
    )?;
    let w = b.transpose(&format!("{prefix}.weights.transpose"), w, &[0, 2, 1])?;
    let w = b.op(
        &format!("{prefix}.weights.column"),
        Op::Unsqueeze { axes: vec![3] },
        &[w],
    )?;
    let weighted = b.binary(
        &format!("{prefix}.scores.weighted"),
        BinaryOp::Mul,
        scores,
        w,
    )?;
    let index = b.sum(&format!("{prefix}.index"), weighted, 1, false)?;
    // Entries a query may not see score -inf; `index_topk` -inf columns in front make top-k
    // well defined however few entries there are, and are dropped after the selection.
    let neg_inf = scalar(
        b,
        &format!("{prefix}.neg_inf"),
        f32::NEG_INFINITY,
        DType::F32,
    )?;
    let index = b.op(
        &format!("{prefix}.index.visible"),
        Op::Where,
        &[e.visible, index, neg_inf],
    )?;
    let k = c.index_topk;
    let padding = b.op(
        &format!("{prefix}.index.padding"),
        Op::Expand {
            shape: vec![b.batch.clone(), b.seq.clone(), Dim::Known(k)],
        },
        &[neg_inf],
    )?;
    let padded = b.op(
        &format!("{prefix}.index.padded"),
        Op::Concat { axis: -1 },
        &[padding, index],
    )?;
    let top = b.node(
        &format!("{prefix}.topk"),
        Op::TopK {
            k,
            axis: -1,
            largest: true,
            sorted: true,
        },
        vec![Some(padded)],
    )?;
    let all_hidden = b.op(
        &format!("{prefix}.selected.init"),
        Op::Expand {
            shape: vec![b.batch.clone(), b.seq.clone(), Dim::Known(k).add(&e.count)],
        },
        &[neg_inf],
    )?;
    let zero = scalar(b, &format!("{prefix}.selected.zero"), 0.0, DType::F32)?;
    let zeros = b.op(
        &format!("{prefix}.selected.zeros"),
        Op::Expand {
            shape: vec![b.batch.clone(), b.seq.clone(), Dim::Known(k)],
        },
        &[zero],
    )?;
    let selected = b.op(
        &format!("{prefix}.selected"),
        Op::ScatterElements {
            axis: -1,
            reduction: ScatterReduction::None,
        },
        &[all_hidden, top[1], zeros],
    )?;
    let selected = b.op(
        &format!("{prefix}.selected.entries"),
        Op::Slice {
            axes: vec![-1],
            starts: vec![k as i64],
            ends: vec![i64::MAX],
            steps: vec![1],
        },
        &[selected],
    )?;
    let selected = b.cast(&format!("{prefix}.selected.cast"), selected, b.dtype)?;
    // Selected entries a query may not see (fewer visible entries than `index_topk`) stay hidden.
    let bias = b.binary(&format!("{prefix}.bias"), BinaryOp::Add, selected, e.bias)?;
    b.op(
        &format!("{prefix}.bias.head"),
        Op::Unsqueeze { axes: vec![1] },
        &[bias],
    )
}
