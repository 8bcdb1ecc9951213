//! Attention blocks of opset 23: `Attention` (grouped heads, causal, scale, mask, KV-cache
//! concatenation) and `RotaryEmbedding` (both layouts, position ids, partial rotation).

use cubevec_ir::op::{BinaryOp, ReduceOp, UnaryOp};
use cubevec_ir::{DType, Dim, Op, Tensor};

use super::{OpSpec, one, spec};
use crate::onnx::context::{FOLD_LIMIT, Importer, NodeCx, Val};
use crate::onnx::error::OnnxError;

/// The attention importers.
pub const OPS: &[OpSpec] = &[
    spec("Attention", &[23, 24, 25], attention),
    spec("RotaryEmbedding", &[23], rotary_embedding),
];

/// `[b, s, heads·d]` → `[b, heads, s, d]`.
pub fn split_heads(imp: &mut Importer, n: &NodeCx, x: &Val, heads: &Dim) -> Result<Val, OnnxError> {
    let [b, s, hidden] = x.dims() else {
        return Err(n.unsupported(format!(
            "expected a rank-3 operand, got shape {}",
            x.ty.shape
        )));
    };
    let shape = vec![b.clone(), s.clone(), heads.clone(), hidden.floor_div(heads)];
    let split = imp.emit1(n, Op::Reshape { shape }, &[Some(x)])?;
    imp.emit1(
        n,
        Op::Transpose {
            perm: vec![0, 2, 1, 3],
        },
        &[Some(&split)],
    )
}

/// `[b, heads, s, d]` → `[b, s, heads·d]`.
pub fn merge_heads(imp: &mut Importer, n: &NodeCx, x: &Val) -> Result<Val, OnnxError> {
    let t = imp.emit1(
        n,
        Op::Transpose {
            perm: vec![0, 2, 1, 3],
        },
        &[Some(x)],
    )?;
    let [b, s, h, d] = t.dims() else {
        return Err(n.unsupported("attention result is not rank 4"));
    };
    let shape = vec![b.clone(), s.clone(), h.mul(d)];
    imp.emit1(n, Op::Reshape { shape }, &[Some(&t)])
}

/// A required positive head-count attribute.
pub fn heads(n: &NodeCx, name: &str) -> Result<Dim, OnnxError> {
    match n.int(name, 0)? {
        h if h > 0 => Ok(Dim::Known(h as u64)),
        _ => Err(n.bad_attr(name, "a positive head count is required for rank-3 inputs")),
    }
}

fn attention(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let q = imp.req(n, 0)?;
    let k = imp.req(n, 1)?;
    let v = imp.req(n, 2)?;
    let mask = imp.input(n, 3)?;
    let past_key = imp.input(n, 4)?;
    let past_value = imp.input(n, 5)?;
    if imp.input(n, 6)?.is_some() {
        return Err(n.unsupported("the `nonpad_kv_seqlen` operand (opset 24) is not supported"));
    }
    for window in ["left_window_size", "right_window_size"] {
        if n.int(window, -1)? != -1 {
            return Err(n.bad_attr(
                window,
                "sliding-window attention (opset 25) is not supported",
            ));
        }
    }
    match n.int("softmax_precision", 1)? {
        0 | 1 => {}
        p => {
            return Err(n.bad_attr(
                "softmax_precision",
                format!("softmax runs in float; precision type {p} is not supported"),
            ));
        }
    }
    let softcap = n.float("softcap", 0.0)?;
    let qk_mode = n.int("qk_matmul_output_mode", 0)?;
    let three_d = q.rank() == 3;
    let (q, k, v) = if three_d {
        let hq = heads(n, "q_num_heads")?;
        let hk = heads(n, "kv_num_heads")?;
        (
            split_heads(imp, n, &q, &hq)?,
            split_heads(imp, n, &k, &hk)?,
            split_heads(imp, n, &v, &hk)?,
        )
    } else {
        (q, k, v)
    };
    if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
        return Err(n.unsupported("Q, K and V must all have rank 3 or all rank 4"));
    }
    let past_len = past_key.as_ref().map(|pk| pk.dims()[2].clone());
    let (k, v) = match (past_key, past_value) {
        (Some(pk), Some(pv)) => (
            imp.emit1(n, Op::Concat { axis: 2 }, &[Some(&pk), Some(&k)])?,
            imp.emit1(n, Op::Concat { axis: 2 }, &[Some(&pv), Some(&v)])?,
        ),
        (None, None) => (k, v),
        _ => return Err(n.unsupported("`past_key` and `past_value` must be given together")),
    };
    let scale = match n.opt_float("scale")? {
        Some(s) => s,
        None => {
            let d = q.dims()[3]
                .as_known()
                .ok_or_else(|| n.unsupported("the default scale needs a known head size"))?;
            1.0 / (d as f32).sqrt()
        }
    };
    let causal = n.flag("is_causal", false)?;
    let parts = Parts {
        q: &q,
        k: &k,
        v: &v,
        mask: mask.as_ref(),
        causal,
        past_len,
        scale,
    };
    let (y, qk) = if softcap != 0.0 || n.has_output(3) {
        decomposed(imp, n, &parts, softcap, qk_mode)?
    } else {
        (fused(imp, n, &parts)?, None)
    };
    let y = if three_d { merge_heads(imp, n, &y)? } else { y };
    Ok(vec![Some(y), Some(k), Some(v), qk])
}

/// The operands of one attention, in the `[b, heads, seq, d]` layout, with the cache
/// concatenated.
pub struct Parts<'a> {
    /// Queries `[b, h, s, d]`.
    pub q: &'a Val,
    /// Keys `[b, hk, t, d]`.
    pub k: &'a Val,
    /// Values `[b, hk, t, dv]`.
    pub v: &'a Val,
    /// Bool (keep) or additive float mask broadcasting to `[b, h, s, t]`.
    pub mask: Option<&'a Val>,
    /// Causal masking.
    pub causal: bool,
    /// Keys that precede the queries (the cache length), when a cache was given.
    pub past_len: Option<Dim>,
    /// Score scale.
    pub scale: f32,
}

/// The visibility of key `j` to query `i` under ONNX's causal rule, `j <= i + offset`, as a
/// bool `[s, t]` constant.
fn causal_visibility(n: &NodeCx, p: &Parts) -> Result<Val, OnnxError> {
    let (s, t) = (&p.q.dims()[2], &p.k.dims()[2]);
    let offset = p.past_len.clone().unwrap_or(Dim::Known(0));
    let (Some(s), Some(t), Some(offset)) = (s.as_known(), t.as_known(), offset.as_known()) else {
        return Err(n.unsupported(format!(
            "causal attention with {s} queries, {t} keys and a cache of {offset} needs known lengths"
        )));
    };
    if s.saturating_mul(t) > FOLD_LIMIT as u64 {
        return Err(n.unsupported(format!(
            "an explicit causal mask of {s}x{t} is too large to build"
        )));
    }
    let visible: Vec<i64> = (0..s)
        .flat_map(|i| (0..t).map(move |j| (j <= i + offset) as i64))
        .collect();
    Ok(Val::tensor(Tensor::from_i64(
        DType::Bool,
        vec![s as usize, t as usize],
        &visible,
    )))
}

/// The IR's `Attention` op. Its causal mask is aligned bottom-right (offset `t - s`), which is
/// ONNX's rule with a cache, or when `s = t`; otherwise the mask is built explicitly.
pub fn fused(imp: &mut Importer, n: &NodeCx, p: &Parts) -> Result<Val, OnnxError> {
    let (s, t) = (&p.q.dims()[2], &p.k.dims()[2]);
    let ir_rule = p.past_len.is_some() || s == t;
    let mut mask = p.mask.cloned();
    if p.causal && !ir_rule {
        let tri = causal_visibility(n, p)?;
        mask = Some(match mask {
            None => tri,
            Some(m) if m.dtype() == DType::Bool => {
                imp.emit1(n, Op::Binary(BinaryOp::And), &[Some(&m), Some(&tri)])?
            }
            Some(m) => {
                let neg_inf =
                    Val::tensor(Tensor::from_f32(m.dtype(), vec![], &[f32::NEG_INFINITY]));
                imp.emit1(n, Op::Where, &[Some(&tri), Some(&m), Some(&neg_inf)])?
            }
        });
    }
    let op = Op::Attention {
        scale_bits: p.scale.to_bits(),
        causal: p.causal && ir_rule,
    };
    imp.emit1(n, op, &[Some(p.q), Some(p.k), Some(p.v), mask.as_ref()])
}

/// Repeats each of the `hk` key/value heads `h / hk` times (`[h0, h0, h1, h1, ...]`).
fn repeat_heads(imp: &mut Importer, n: &NodeCx, x: &Val, h: &Dim) -> Result<Val, OnnxError> {
    let [b, hk, t, d] = x.dims() else {
        return Err(n.unsupported("expected rank 4"));
    };
    if hk == h {
        return Ok(x.clone());
    }
    let (Some(hq), Some(hkv)) = (h.as_known(), hk.as_known()) else {
        return Err(n.unsupported("grouped heads need known head counts"));
    };
    if hkv == 0 || hq % hkv != 0 {
        return Err(n.unsupported(format!(
            "{hkv} key/value heads do not divide {hq} query heads"
        )));
    }
    let group = Dim::Known(hq / hkv);
    let wide = imp.emit1(n, Op::Unsqueeze { axes: vec![2] }, &[Some(x)])?;
    let shape = vec![b.clone(), hk.clone(), group, t.clone(), d.clone()];
    let wide = imp.emit1(n, Op::Expand { shape }, &[Some(&wide)])?;
    let shape = vec![b.clone(), h.clone(), t.clone(), d.clone()];
    imp.emit1(n, Op::Reshape { shape }, &[Some(&wide)])
}

/// Attention from primitives, following ONNX's definition step by step, for the features the
/// IR op does not have: soft-capped scores and the `qk_matmul_output` result.
fn decomposed(
    imp: &mut Importer,
    n: &NodeCx,
    p: &Parts,
    softcap: f32,
    qk_mode: i64,
) -> Result<(Val, Option<Val>), OnnxError> {
    let dt = p.q.dtype();
    let scalar = |v: f32| Val::tensor(Tensor::from_f32(dt, vec![], &[v]));
    let h = p.q.dims()[1].clone();
    let k = repeat_heads(imp, n, p.k, &h)?;
    let v = repeat_heads(imp, n, p.v, &h)?;
    let kt = imp.emit1(
        n,
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[Some(&k)],
    )?;
    let qk = imp.emit1(n, Op::MatMul, &[Some(p.q), Some(&kt)])?;
    let mut scores = imp.emit1(
        n,
        Op::Binary(BinaryOp::Mul),
        &[Some(&qk), Some(&scalar(p.scale))],
    )?;
    if softcap != 0.0 {
        let scaled = imp.emit1(
            n,
            Op::Binary(BinaryOp::Div),
            &[Some(&scores), Some(&scalar(softcap))],
        )?;
        let capped = imp.emit1(n, Op::Unary(UnaryOp::Tanh), &[Some(&scaled)])?;
        scores = imp.emit1(
            n,
            Op::Binary(BinaryOp::Mul),
            &[Some(&capped), Some(&scalar(softcap))],
        )?;
    }
    // The additive bias: 0 where visible, -inf where masked.
    let zero = scalar(0.0);
    let neg_inf = scalar(f32::NEG_INFINITY);
    let mut bias = match p.mask {
        Some(m) if m.dtype() == DType::Bool => {
            Some(imp.emit1(n, Op::Where, &[Some(m), Some(&zero), Some(&neg_inf)])?)
        }
        Some(m) => Some(m.clone()),
        None => None,
    };
    if p.causal {
        let tri = causal_visibility(n, p)?;
        let base = bias.clone().unwrap_or_else(|| zero.clone());
        bias = Some(imp.emit1(n, Op::Where, &[Some(&tri), Some(&base), Some(&neg_inf)])?);
    }
    let with_bias = match &bias {
        Some(b) => imp.emit1(n, Op::Binary(BinaryOp::Add), &[Some(&scores), Some(b)])?,
        None => scores.clone(),
    };
    let mut probs = imp.emit1(n, Op::Softmax { axis: -1 }, &[Some(&with_bias)])?;
    if let Some(b) = &bias {
        // Rows whose every key is masked attend nothing: their probabilities are zero.
        let row_max = imp.emit1(
            n,
            Op::Reduce {
                op: ReduceOp::Max,
                axes: vec![-1],
                keep_dims: true,
            },
            &[Some(b)],
        )?;
        let inf = imp.emit1(n, Op::Unary(UnaryOp::IsInf), &[Some(&row_max)])?;
        let negative = imp.emit1(
            n,
            Op::Binary(BinaryOp::Less),
            &[Some(&row_max), Some(&zero)],
        )?;
        let all_masked = imp.emit1(n, Op::Binary(BinaryOp::And), &[Some(&inf), Some(&negative)])?;
        probs = imp.emit1(
            n,
            Op::Where,
            &[Some(&all_masked), Some(&zero), Some(&probs)],
        )?;
    }
    let y = imp.emit1(n, Op::MatMul, &[Some(&probs), Some(&v)])?;
    let qk_out = match qk_mode {
        _ if !n.has_output(3) => None,
        // 0: the scaled product, 1: after soft-capping (the same value here), 2: with the
        // mask bias added, 3: the softmax probabilities.
        0 | 1 => Some(scores),
        2 => Some(with_bias),
        3 => Some(probs),
        other => {
            return Err(n.bad_attr("qk_matmul_output_mode", format!("unknown mode {other}")));
        }
    };
    Ok((y, qk_out))
}

fn rotary_embedding(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let cos = imp.req(n, 1)?;
    let sin = imp.req(n, 2)?;
    let positions = imp.input(n, 3)?;
    one(rotary(imp, n, &x, cos, sin, positions.as_ref())?)
}

/// Rotary embedding of `x` (`[b, h, s, d]`, or `[b, s, h·d]` with the `num_heads` attribute)
/// with cos/sin caches `[max_pos, r]` indexed by `positions [b, s]`, or `[b, s, r]` without
/// positions. Reads the `interleaved` and `rotary_embedding_dim` attributes.
pub fn rotary(
    imp: &mut Importer,
    n: &NodeCx,
    x: &Val,
    mut cos: Val,
    mut sin: Val,
    positions: Option<&Val>,
) -> Result<Val, OnnxError> {
    let interleaved = n.flag("interleaved", false)?;
    if let Some(p) = positions {
        cos = imp.emit1(n, Op::Gather { axis: 0 }, &[Some(&cos), Some(p)])?;
        sin = imp.emit1(n, Op::Gather { axis: 0 }, &[Some(&sin), Some(p)])?;
    }
    // cos/sin are [b, s, r]; rotate the first 2r features of each head.
    let rotary_dim = n.int("rotary_embedding_dim", 0)?;
    if rotary_dim > 0 {
        let half = rotary_dim / 2;
        let op = Op::Slice {
            axes: vec![-1],
            starts: vec![0],
            ends: vec![half],
            steps: vec![1],
        };
        cos = imp.emit1(n, op.clone(), &[Some(&cos)])?;
        sin = imp.emit1(n, op, &[Some(&sin)])?;
    }
    let (x4, head_axis) = match x.rank() {
        // [b, h, s, d]: broadcast cos over the heads axis 1.
        4 => (x.clone(), 1),
        // [b, s, h·d] → [b, s, h, d]: broadcast over axis 2.
        3 => {
            let heads = heads(n, "num_heads")?;
            let [b, s, hidden] = x.dims() else {
                return Err(n.unsupported("expected a rank-3 operand"));
            };
            let shape = vec![
                b.clone(),
                s.clone(),
                heads.clone(),
                hidden.floor_div(&heads),
            ];
            (imp.emit1(n, Op::Reshape { shape }, &[Some(x)])?, 2)
        }
        r => return Err(n.unsupported(format!("RotaryEmbedding input of rank {r}"))),
    };
    let unsq = Op::Unsqueeze {
        axes: vec![head_axis],
    };
    let cos = imp.emit1(n, unsq.clone(), &[Some(&cos)])?;
    let sin = imp.emit1(n, unsq, &[Some(&sin)])?;
    let y = imp.emit1(
        n,
        Op::Rope { interleaved },
        &[Some(&x4), Some(&cos), Some(&sin)],
    )?;
    if x.rank() == 3 {
        let shape = x.dims().to_vec();
        return imp.emit1(n, Op::Reshape { shape }, &[Some(&y)]);
    }
    Ok(y)
}
