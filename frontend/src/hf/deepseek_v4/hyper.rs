//! Manifold-constrained hyper-connections: the residual stream is `hc_mult` streams
//! `[t, hc, hidden]`; before each block a learned projection of the normalised streams gives the
//! weights that collapse them into the block input (`pre`), spread the block output back over
//! the streams (`post`), and mix the streams (`comb`, projected towards a doubly-stochastic
//! matrix by Sinkhorn iterations). All of it is computed in f32, as transformers does.

use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::{DType, Dim, Op, ValueId};

use super::{DeepseekV4Config, f32_param, matmul_t, scalar, unweighted_rms_norm};
use crate::hf::HfError;
use crate::hf::builder::ModelBuilder;

/// The weights one hyper-connection derived from the streams, and the block input.
pub(super) struct Mix {
    /// `post [t, hc, 1]` in the compute dtype.
    post: ValueId,
    /// `combᵀ [t, hc, hc]` in the compute dtype (`out_k = Σ_j comb[j, k] · stream_j`).
    comb_t: ValueId,
    /// The collapsed block input `[t, hidden]`.
    pub(super) collapsed: ValueId,
}

/// The hyper-connection `{layer}.{kind}_{fn,base,scale}` (`kind` is `hc_attn` or `hc_ffn`) over
/// the streams `h [t, hc, hidden]`.
pub(super) fn connection(
    b: &mut ModelBuilder<'_, '_>,
    c: &DeepseekV4Config,
    layer: &str,
    kind: &str,
    h: ValueId,
) -> Result<Mix, HfError> {
    let name = format!("{layer}.{kind}");
    let hc = c.hc_mult;
    let width = (2 + hc) * hc;
    let dtype = b.dtype;
    let fn_w = f32_param(b, &format!("{name}_fn"), &[width, hc * c.hidden])?;
    let base = f32_param(b, &format!("{name}_base"), &[width])?;
    let scale = f32_param(b, &format!("{name}_scale"), &[3])?;
    let h32 = b.cast(&format!("{name}.streams.f32"), h, DType::F32)?;
    let mixes = stream_mixes(b, c, &name, h32, fn_w)?;
    let parts = b.node(
        &format!("{name}.split"),
        Op::Split {
            axis: -1,
            sizes: vec![Dim::Known(hc), Dim::Known(hc), Dim::Known(hc * hc)],
        },
        vec![Some(mixes)],
    )?;
    let bases = b.node(
        &format!("{name}.base.split"),
        Op::Split {
            axis: 0,
            sizes: vec![Dim::Known(hc), Dim::Known(hc), Dim::Known(hc * hc)],
        },
        vec![Some(base)],
    )?;
    let scales = b.node(
        &format!("{name}.scale.split"),
        Op::Split {
            axis: 0,
            sizes: vec![Dim::Known(1); 3],
        },
        vec![Some(scale)],
    )?;
    let eps = scalar(b, &format!("{name}.eps"), c.hc_eps as f32, DType::F32)?;

    let pre = affine(b, &format!("{name}.pre"), parts[0], scales[0], bases[0])?;
    let pre = b.unary(&format!("{name}.pre.sigmoid"), UnaryOp::Sigmoid, pre)?;
    let pre = b.binary(&format!("{name}.pre.eps"), BinaryOp::Add, pre, eps)?;

    let post = affine(b, &format!("{name}.post"), parts[1], scales[1], bases[1])?;
    let post = b.unary(&format!("{name}.post.sigmoid"), UnaryOp::Sigmoid, post)?;
    let two = scalar(b, &format!("{name}.post.two"), 2.0, DType::F32)?;
    let post = b.binary(&format!("{name}.post.double"), BinaryOp::Mul, post, two)?;
    let post = b.op(
        &format!("{name}.post.column"),
        Op::Unsqueeze { axes: vec![2] },
        &[post],
    )?;
    let post = b.cast(&format!("{name}.post.cast"), post, dtype)?;

    let square = vec![b.tokens.clone(), Dim::Known(hc), Dim::Known(hc)];
    let comb_w = b.reshape(&format!("{name}.comb.square"), parts[2], square)?;
    let comb_b = b.reshape(
        &format!("{name}.comb.base.square"),
        bases[2],
        vec![Dim::Known(hc), Dim::Known(hc)],
    )?;
    let comb = affine(b, &format!("{name}.comb"), comb_w, scales[2], comb_b)?;
    let comb = b.op(
        &format!("{name}.comb.softmax"),
        Op::Softmax { axis: -1 },
        &[comb],
    )?;
    let mut comb = b.binary(&format!("{name}.comb.eps"), BinaryOp::Add, comb, eps)?;
    comb = normalize(b, &format!("{name}.sinkhorn.0.cols"), comb, -2, eps)?;
    for i in 1..c.sinkhorn_iters {
        comb = normalize(b, &format!("{name}.sinkhorn.{i}.rows"), comb, -1, eps)?;
        comb = normalize(b, &format!("{name}.sinkhorn.{i}.cols"), comb, -2, eps)?;
    }
    let comb_t = b.transpose(&format!("{name}.comb.transpose"), comb, &[0, 2, 1])?;
    let comb_t = b.cast(&format!("{name}.comb.cast"), comb_t, dtype)?;

    let collapsed = collapse(b, &name, pre, h32)?;
    Ok(Mix {
        post,
        comb_t,
        collapsed,
    })
}

/// The new streams after a block: `post · y + combᵀ · h`.
pub(super) fn residual(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    h: ValueId,
    mix: &Mix,
    y: ValueId,
) -> Result<ValueId, HfError> {
    let y = b.op(
        &format!("{name}.output.row"),
        Op::Unsqueeze { axes: vec![1] },
        &[y],
    )?;
    let spread = b.binary(&format!("{name}.spread"), BinaryOp::Mul, mix.post, y)?;
    let mixed = b.op(&format!("{name}.mix"), Op::MatMul, &[mix.comb_t, h])?;
    b.binary(&format!("{name}.streams"), BinaryOp::Add, spread, mixed)
}

/// The hyper head: the streams collapsed once more with weights from `names = [fn, base, scale]`.
pub(super) fn head(
    b: &mut ModelBuilder<'_, '_>,
    c: &DeepseekV4Config,
    [fn_name, base_name, scale_name]: [&str; 3],
    h: ValueId,
) -> Result<ValueId, HfError> {
    let hc = c.hc_mult;
    let fn_w = f32_param(b, fn_name, &[hc, hc * c.hidden])?;
    let base = f32_param(b, base_name, &[hc])?;
    let scale = f32_param(b, scale_name, &[1])?;
    let h32 = b.cast("hc_head.streams.f32", h, DType::F32)?;
    let mixes = stream_mixes(b, c, "hc_head", h32, fn_w)?;
    let pre = affine(b, "hc_head.pre", mixes, scale, base)?;
    let pre = b.unary("hc_head.pre.sigmoid", UnaryOp::Sigmoid, pre)?;
    let eps = scalar(b, "hc_head.eps", c.hc_eps as f32, DType::F32)?;
    let pre = b.binary("hc_head.pre.eps", BinaryOp::Add, pre, eps)?;
    collapse(b, "hc_head", pre, h32)
}

/// The normalised, flattened streams `h32 [t, hc, hidden]` projected by `fn_w [n, hc·hidden]`.
fn stream_mixes(
    b: &mut ModelBuilder<'_, '_>,
    c: &DeepseekV4Config,
    name: &str,
    h32: ValueId,
    fn_w: ValueId,
) -> Result<ValueId, HfError> {
    let flat = b.reshape(
        &format!("{name}.flatten"),
        h32,
        vec![b.tokens.clone(), Dim::Known(c.hc_mult * c.hidden)],
    )?;
    let flat = unweighted_rms_norm(b, &format!("{name}.norm"), flat, c.epsilon)?;
    matmul_t(b, &format!("{name}.project"), flat, fn_w)
}

/// `x · scale + bias`.
fn affine(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    x: ValueId,
    scale: ValueId,
    bias: ValueId,
) -> Result<ValueId, HfError> {
    let scaled = b.binary(&format!("{name}.scaled"), BinaryOp::Mul, x, scale)?;
    b.binary(&format!("{name}.biased"), BinaryOp::Add, scaled, bias)
}

/// `x / (Σ_axis x + eps)`.
fn normalize(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    x: ValueId,
    axis: i64,
    eps: ValueId,
) -> Result<ValueId, HfError> {
    let sum = b.sum(&format!("{name}.sum"), x, axis, true)?;
    let sum = b.binary(&format!("{name}.eps"), BinaryOp::Add, sum, eps)?;
    b.binary(name, BinaryOp::Div, x, sum)
}

/// `Σ_j pre[t, j] · h32[t, j, :]` in the compute dtype.
fn collapse(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    pre: ValueId,
    h32: ValueId,
) -> Result<ValueId, HfError> {
    let pre = b.op(
        &format!("{name}.pre.column"),
        Op::Unsqueeze { axes: vec![2] },
        &[pre],
    )?;
    let weighted = b.binary(&format!("{name}.weighted"), BinaryOp::Mul, pre, h32)?;
    let collapsed = b.sum(&format!("{name}.collapse"), weighted, 1, false)?;
    b.cast(&format!("{name}.collapse.cast"), collapsed, b.dtype)
}
