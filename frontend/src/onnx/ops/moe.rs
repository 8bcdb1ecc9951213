//! ONNX Runtime's contrib `com.microsoft.MoE` → the IR's `Moe`.
//!
//! Operands: `input [t, h]` (or `[b, s, h]`), `router_probs [t, e]` (logits), `fc1 [e, i, h]`,
//! `fc1_bias?`, `fc2 [e, h, i]`, `fc2_bias?`, `fc3 [e, i, h]?`, `fc3_bias?`. ONNX Runtime takes
//! the softmax of the router logits over all experts, keeps the top `k` and, with
//! `normalize_routing_weights=1`, divides them by their sum: [`RoutingMode::SoftmaxTopK`].
//! With `fc3` the expert is gated, `fc2(act(fc1·x) ⊙ fc3·x)`, otherwise `fc2(act(fc1·x))`;
//! `activation_type="swiglu"` with `swiglu_fusion` 1 (interleaved) or 2 (halves) packs gate and
//! up rows into `fc1 [e, 2i, h]`.

use cubevec_ir::op::{ExpertActivation, RoutingMode};
use cubevec_ir::{Dim, Op};

use super::{OpSpec, one};
use crate::onnx::MS_DOMAIN;
use crate::onnx::context::{Importer, NodeCx, Val};
use crate::onnx::error::OnnxError;

/// The contrib-op importers.
pub const OPS: &[OpSpec] = &[OpSpec {
    domain: MS_DOMAIN,
    op_type: "MoE",
    versions: &[1],
    import: moe,
}];

fn moe(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let logits = imp.req(n, 1)?;
    let fc1 = imp.req(n, 2)?;
    let fc2 = imp.req(n, 4)?;
    let fc3 = imp.input(n, 6)?;
    for (slot, name) in [
        (3, "fc1_experts_bias"),
        (5, "fc2_experts_bias"),
        (7, "fc3_experts_bias"),
    ] {
        if let Some(bias) = imp.input(n, slot)?
            && bias.ty.shape.numel() != Dim::Known(0)
        {
            return Err(n.unsupported(format!(
                "expert biases are not supported (`{name}` is given)"
            )));
        }
    }
    if n.int("use_sparse_mixer", 0)? != 0 {
        return Err(n.bad_attr("use_sparse_mixer", "sparse-mixer routing is not supported"));
    }
    let k = n.int("k", 1)?;
    let top_k = u32::try_from(k)
        .ok()
        .filter(|&k| k > 0)
        .ok_or_else(|| n.bad_attr("k", format!("must be positive, got {k}")))?;
    let normalize = n.flag("normalize_routing_weights", false)?;
    let act = n
        .string("activation_type")?
        .unwrap_or_else(|| "relu".into());
    let fusion = n.int("swiglu_fusion", 0)?;
    let (activation, gate, up) = match (act.as_str(), fc3, fusion) {
        ("silu", Some(up), 0) => (ExpertActivation::SwiGlu, Some(fc1), up),
        ("silu", None, 0) => (ExpertActivation::Silu, None, fc1),
        ("gelu", None, 0) => (ExpertActivation::Gelu, None, fc1),
        ("relu", None, 0) => (ExpertActivation::Relu, None, fc1),
        ("swiglu", None, 1 | 2) => {
            let (gate, up) = split_fused(imp, n, &fc1, fusion == 1)?;
            (swiglu_activation(n)?, Some(gate), up)
        }
        (other, fc3, fusion) => {
            return Err(n.bad_attr(
                "activation_type",
                format!(
                    "`{other}` {} fc3 and swiglu_fusion={fusion} is not supported",
                    if fc3.is_some() { "with" } else { "without" }
                ),
            ));
        }
    };
    let rank3 = x.rank() == 3;
    let (x2, logits2) = if rank3 {
        let [b, s, h] = x.dims() else {
            return Err(n.unsupported("MoE input must have rank 2 or 3"));
        };
        let tokens = b.mul(s);
        let e = logits
            .dims()
            .last()
            .cloned()
            .ok_or_else(|| n.unsupported("router logits must have rank ≥ 1"))?;
        (
            imp.emit1(
                n,
                Op::Reshape {
                    shape: vec![tokens.clone(), h.clone()],
                },
                &[Some(&x)],
            )?,
            imp.emit1(
                n,
                Op::Reshape {
                    shape: vec![tokens, e],
                },
                &[Some(&logits)],
            )?,
        )
    } else {
        (x.clone(), logits)
    };
    let op = Op::Moe {
        top_k,
        routing: RoutingMode::SoftmaxTopK { normalize },
        activation,
    };
    let y = imp.emit1(
        n,
        op,
        &[
            Some(&x2),
            Some(&logits2),
            gate.as_ref(),
            Some(&up),
            Some(&fc2),
        ],
    )?;
    if rank3 {
        let shape = x.dims().to_vec();
        return one(imp.emit1(n, Op::Reshape { shape }, &[Some(&y)])?);
    }
    one(y)
}

/// Splits fused `[e, 2i, h]` SwiGLU weights into gate and up `[e, i, h]`: interleaved rows
/// (row `2j` gate, `2j + 1` up) or two halves (gate first).
fn split_fused(
    imp: &mut Importer,
    n: &NodeCx,
    fc1: &Val,
    interleaved: bool,
) -> Result<(Val, Val), OnnxError> {
    let rows = fc1
        .dims()
        .get(1)
        .and_then(Dim::as_known)
        .filter(|r| r % 2 == 0)
        .ok_or_else(|| n.unsupported("fused SwiGLU weights need an even, known row count"))?;
    let half = (rows / 2) as i64;
    let slice = |start: i64, end: i64, step: i64| Op::Slice {
        axes: vec![1],
        starts: vec![start],
        ends: vec![end],
        steps: vec![step],
    };
    let (g, u) = if interleaved {
        (slice(0, i64::MAX, 2), slice(1, i64::MAX, 2))
    } else {
        (slice(0, half, 1), slice(half, i64::MAX, 1))
    };
    Ok((
        imp.emit1(n, g, &[Some(fc1)])?,
        imp.emit1(n, u, &[Some(fc1)])?,
    ))
}

/// The SwiGLU form ONNX Runtime computes, `g·sigmoid(alpha·g)·(u + beta)` with optional clamping
/// by `swiglu_limit`: supported for `alpha = 1`, `beta = 0`.
fn swiglu_activation(n: &NodeCx) -> Result<ExpertActivation, OnnxError> {
    let alpha = n.float("activation_alpha", 1.0)?;
    let beta = n.float("activation_beta", 0.0)?;
    if alpha != 1.0 || beta != 0.0 {
        return Err(n.bad_attr(
            "activation_alpha",
            format!("SwiGLU with alpha {alpha} and beta {beta} is not supported (only 1 and 0)"),
        ));
    }
    Ok(match n.opt_float("swiglu_limit")? {
        Some(limit) if limit.is_finite() && limit > 0.0 => ExpertActivation::SwiGluClamped {
            limit_bits: limit.to_bits(),
        },
        _ => ExpertActivation::SwiGlu,
    })
}
