//! ONNX Runtime's fused transformer ops, as its graph optimiser writes them:
//! `SimplifiedLayerNormalization` (registered in the default domain), and from `com.microsoft`
//! `SkipSimplifiedLayerNormalization`, `MultiHeadAttention` and `RotaryEmbedding`.

use cubevec_ir::op::{BinaryOp, ReduceOp, UnaryOp};
use cubevec_ir::{DType, Op, Tensor};

use super::attention::{Parts, fused, heads, merge_heads, rotary, split_heads};
use super::{OpSpec, one, spec};
use crate::onnx::MS_DOMAIN;
use crate::onnx::context::{Importer, NodeCx, Val};
use crate::onnx::error::OnnxError;

/// The ONNX Runtime fused-op importers.
pub const OPS: &[OpSpec] = &[
    spec("SimplifiedLayerNormalization", &[1], simplified_layer_norm),
    ms(
        "SkipSimplifiedLayerNormalization",
        skip_simplified_layer_norm,
    ),
    ms("MultiHeadAttention", multi_head_attention),
    ms("RotaryEmbedding", ms_rotary_embedding),
];

const fn ms(op_type: &'static str, import: super::ImportFn) -> OpSpec {
    OpSpec {
        domain: MS_DOMAIN,
        op_type,
        versions: &[1],
        import,
    }
}

/// `x / sqrt(mean(x², last axis) + eps)` as `(rms_norm(x, gamma), 1/rms)`; the second only
/// when `want_inv` (it is an optional result).
fn rms(
    imp: &mut Importer,
    n: &NodeCx,
    x: &Val,
    gamma: &Val,
    axis: i64,
    epsilon: f32,
    want_inv: bool,
) -> Result<(Val, Option<Val>), OnnxError> {
    let op = Op::RmsNorm {
        axis,
        epsilon_bits: epsilon.to_bits(),
    };
    let y = imp.emit1(n, op, &[Some(x), Some(gamma)])?;
    if !want_inv {
        return Ok((y, None));
    }
    let first = super::axis(n, "axis", axis, x.rank())?;
    let xf = if x.dtype() == DType::F32 {
        x.clone()
    } else {
        imp.emit1(n, Op::Cast { to: DType::F32 }, &[Some(x)])?
    };
    let square = imp.emit1(n, Op::Binary(BinaryOp::Mul), &[Some(&xf), Some(&xf)])?;
    let mean = Op::Reduce {
        op: ReduceOp::Mean,
        axes: (first as i64..x.rank() as i64).collect(),
        keep_dims: true,
    };
    let ms = imp.emit1(n, mean, &[Some(&square)])?;
    let eps = Val::tensor(Tensor::from_f32(DType::F32, vec![], &[epsilon]));
    let ms = imp.emit1(n, Op::Binary(BinaryOp::Add), &[Some(&ms), Some(&eps)])?;
    let root = imp.emit1(n, Op::Unary(UnaryOp::Sqrt), &[Some(&ms)])?;
    let inv = imp.emit1(n, Op::Unary(UnaryOp::Reciprocal), &[Some(&root)])?;
    Ok((y, Some(inv)))
}

fn simplified_layer_norm(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let gamma = imp.req(n, 1)?;
    let axis = n.int("axis", -1)?;
    let epsilon = n.float("epsilon", 1e-5)?;
    let (y, inv) = rms(imp, n, &x, &gamma, axis, epsilon, n.has_output(1))?;
    Ok(vec![Some(y), inv])
}

/// `sum = input + skip (+ bias)`; results `rms_norm(sum) · gamma`, the mean (not produced:
/// it has no meaning for the simplified norm), `1/rms`, and `sum`.
fn skip_simplified_layer_norm(
    imp: &mut Importer,
    n: &NodeCx,
) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let skip = imp.req(n, 1)?;
    let gamma = imp.req(n, 2)?;
    let bias = imp.input(n, 3)?;
    let epsilon = n.float("epsilon", 1e-12)?;
    let mut sum = imp.emit1(n, Op::Binary(BinaryOp::Add), &[Some(&x), Some(&skip)])?;
    if let Some(b) = &bias {
        sum = imp.emit1(n, Op::Binary(BinaryOp::Add), &[Some(&sum), Some(b)])?;
    }
    let (y, inv) = rms(imp, n, &sum, &gamma, -1, epsilon, n.has_output(2))?;
    Ok(vec![Some(y), None, inv, Some(sum)])
}

/// `query [b, s, h·d]`, `key`/`value [b, t, h·d]`, optional additive `attention_bias`
/// broadcasting to `[b, h, s, t]` → the IR's `Attention`; `present_key`/`present_value` are the
/// keys and values in `[b, h, t, d]`.
fn multi_head_attention(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let q = imp.req(n, 0)?;
    let k = imp.req(n, 1)?;
    let v = imp.req(n, 2)?;
    for (slot, what) in [
        (3, "bias"),
        (4, "key_padding_mask"),
        (6, "past_key"),
        (7, "past_value"),
        (8, "past_sequence_length"),
        (9, "cache_indirection"),
    ] {
        if imp.input(n, slot)?.is_some() {
            return Err(n.unsupported(format!("the `{what}` operand is not supported")));
        }
    }
    let bias = imp.input(n, 5)?;
    if q.rank() != 3 || k.rank() != 3 || v.rank() != 3 {
        return Err(n.unsupported("query, key and value must be [batch, seq, hidden]"));
    }
    let h = heads(n, "num_heads")?;
    let q = split_heads(imp, n, &q, &h)?;
    let k = split_heads(imp, n, &k, &h)?;
    let v = split_heads(imp, n, &v, &h)?;
    let scale = match n.float("scale", 0.0)? {
        s if s != 0.0 => s,
        _ => {
            let d = q.dims()[3]
                .as_known()
                .ok_or_else(|| n.unsupported("the default scale needs a known head size"))?;
            1.0 / (d as f32).sqrt()
        }
    };
    let parts = Parts {
        q: &q,
        k: &k,
        v: &v,
        mask: bias.as_ref(),
        causal: n.flag("unidirectional", false)?,
        past_len: None,
        scale,
    };
    let y = fused(imp, n, &parts)?;
    let y = merge_heads(imp, n, &y)?;
    Ok(vec![Some(y), Some(k), Some(v)])
}

/// ONNX Runtime's `RotaryEmbedding`: operands `input, position_ids [b, s], cos_cache, sin_cache`
/// (the standard op's order is `input, cos, sin, position_ids`).
fn ms_rotary_embedding(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let positions = imp.req(n, 1)?;
    let cos = imp.req(n, 2)?;
    let sin = imp.req(n, 3)?;
    if n.float("scale", 1.0)? != 1.0 {
        return Err(n.bad_attr("scale", "only 1.0 is supported"));
    }
    if n.flag("is_packed_batching", false)? {
        return Err(n.bad_attr("is_packed_batching", "packed batches are not supported"));
    }
    if positions.rank() != 2 {
        return Err(n.unsupported(format!(
            "position_ids must be [batch, seq], got shape {}",
            positions.ty.shape
        )));
    }
    one(rotary(imp, n, &x, cos, sin, Some(&positions))?)
}
