//! The fused mixture-of-experts block: routing per [`RoutingMode`], then the weighted sum of the
//! chosen experts' outputs per [`ExpertActivation`]. Routing math is in `f64`, expert products in
//! `f32`.

use super::OpError;
use super::elementwise::{gelu, sigmoid, silu, softplus};
use super::util;
use crate::op::{ExpertActivation, RoutingMode};
use crate::tensor::Tensor;

/// Operand positions of [`crate::op::Op::Moe`].
const X: usize = 0;
const LOGITS: usize = 1;
const GATE: usize = 2;
const UP: usize = 3;
const DOWN: usize = 4;
const BIAS: usize = 5;
const TOKEN_IDS: usize = 6;
const TABLE: usize = 7;

/// Indices of the `k` largest of `values` (ties: lower index first; NaN the largest).
fn top_k(values: &[f64], k: usize) -> Vec<usize> {
    let key = |v: f64| if v.is_nan() { f64::INFINITY } else { v };
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| {
        key(values[b])
            .total_cmp(&key(values[a]))
            .then((values[b].is_nan()).cmp(&values[a].is_nan()))
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

/// Divides by the sum when asked, then multiplies by `scaling`.
fn finish(weights: &mut [f64], normalize: bool, scaling: f64) {
    if normalize {
        let sum: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= sum);
    }
    weights.iter_mut().for_each(|w| *w *= scaling);
}

/// The chosen experts and their weights for one token.
fn route(
    mode: &RoutingMode,
    logits: &[f64],
    bias: Option<&[f64]>,
    hashed: Option<&[i64]>,
    k: usize,
) -> Result<(Vec<usize>, Vec<f64>), OpError> {
    let biased = |s: &[f64]| -> Vec<f64> {
        match bias {
            Some(b) => s.iter().zip(b).map(|(x, y)| x + y).collect(),
            None => s.to_vec(),
        }
    };
    Ok(match mode {
        RoutingMode::SoftmaxTopK { normalize } => {
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            let p: Vec<f64> = exps.iter().map(|e| e / sum).collect();
            let chosen = top_k(&p, k);
            let mut w: Vec<f64> = chosen.iter().map(|&e| p[e]).collect();
            finish(&mut w, *normalize, 1.0);
            (chosen, w)
        }
        RoutingMode::TopKSoftmax => {
            let chosen = top_k(logits, k);
            let max = chosen
                .iter()
                .map(|&e| logits[e])
                .fold(f64::NEG_INFINITY, f64::max);
            let mut w: Vec<f64> = chosen.iter().map(|&e| (logits[e] - max).exp()).collect();
            finish(&mut w, true, 1.0);
            (chosen, w)
        }
        RoutingMode::SigmoidGroupLimited {
            n_group,
            topk_group,
            normalize,
            scaling_bits,
        } => {
            let s: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
            let mut choice = biased(&s);
            let n_group = *n_group as usize;
            let e = s.len();
            if n_group == 0
                || e == 0
                || !e.is_multiple_of(n_group)
                || (*topk_group as usize) > n_group
            {
                return Err(OpError::Attribute(format!(
                    "{e} experts cannot form {n_group} groups with {topk_group} kept"
                )));
            }
            let per_group = e / n_group;
            let group_scores: Vec<f64> = choice
                .chunks(per_group)
                .map(|g| top_k(g, 2.min(g.len())).iter().map(|&i| g[i]).sum())
                .collect();
            let kept = top_k(&group_scores, *topk_group as usize);
            for (g, chunk) in choice.chunks_mut(per_group).enumerate() {
                if !kept.contains(&g) {
                    chunk.fill(f64::NEG_INFINITY);
                }
            }
            let chosen = top_k(&choice, k);
            let mut w: Vec<f64> = chosen.iter().map(|&i| s[i]).collect();
            finish(&mut w, *normalize, f32::from_bits(*scaling_bits) as f64);
            (chosen, w)
        }
        RoutingMode::SqrtSoftplus {
            normalize,
            scaling_bits,
        } => {
            let s: Vec<f64> = logits.iter().map(|&l| softplus(l).sqrt()).collect();
            let chosen = top_k(&biased(&s), k);
            let mut w: Vec<f64> = chosen.iter().map(|&i| s[i]).collect();
            finish(&mut w, *normalize, f32::from_bits(*scaling_bits) as f64);
            (chosen, w)
        }
        RoutingMode::Hash {
            normalize,
            scaling_bits,
        } => {
            let row = hashed.ok_or(OpError::MissingOperand(TABLE))?;
            let chosen = row
                .iter()
                .map(|&e| util::resolve_index(e, logits.len()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut w: Vec<f64> = chosen.iter().map(|&i| softplus(logits[i]).sqrt()).collect();
            finish(&mut w, *normalize, f32::from_bits(*scaling_bits) as f64);
            (chosen, w)
        }
    })
}

/// `out[r] = Σ_c w[r, c] · x[c]` for a row-major `w [rows, cols]`.
fn mat_vec(w: &[f32], x: &[f32], out: &mut [f32]) {
    let cols = x.len();
    for (o, row) in out.iter_mut().zip(w.chunks_exact(cols.max(1))) {
        *o = row.iter().zip(x).map(|(a, b)| a * b).sum();
    }
}

/// The full MoE block (see [`crate::op::Op::Moe`]).
pub fn moe(
    inputs: &[Option<&Tensor>],
    top_k: u32,
    routing: &RoutingMode,
    activation: &ExpertActivation,
) -> Result<Tensor, OpError> {
    let x = util::operand(inputs, X)?;
    let logits = util::operand(inputs, LOGITS)?;
    let up = util::operand(inputs, UP)?;
    let down = util::operand(inputs, DOWN)?;
    let gate = util::optional(inputs, GATE);
    util::expect_float(x, X)?;
    util::expect_float(logits, LOGITS)?;
    util::expect_rank(x, X, 2)?;
    util::expect_rank(logits, LOGITS, 2)?;
    util::expect_float(up, UP)?;
    util::expect_float(down, DOWN)?;
    if let Some(g) = gate {
        util::expect_float(g, GATE)?;
    }
    util::expect_rank(up, UP, 3)?;
    util::expect_rank(down, DOWN, 3)?;
    let (t, h) = (x.shape()[0], x.shape()[1]);
    let (e, inter) = (up.shape()[0], up.shape()[1]);
    let k = top_k as usize;
    let fits = logits.shape() == [t, e]
        && up.shape() == [e, inter, h]
        && down.shape() == [e, h, inter]
        && gate.is_none_or(|g| g.shape() == [e, inter, h])
        && k <= e;
    if !fits {
        return Err(OpError::Shape(format!(
            "x {:?}, logits {:?}, up {:?}, down {:?}, gate {:?} and top_k {k} do not fit one MoE block",
            x.shape(),
            logits.shape(),
            up.shape(),
            down.shape(),
            gate.map(|g| g.shape())
        )));
    }
    match (activation.is_gated(), gate.is_some()) {
        (true, false) => return Err(OpError::MissingOperand(GATE)),
        (false, true) => {
            return Err(OpError::Attribute(format!(
                "the ungated activation {activation:?} takes no gate operand"
            )));
        }
        _ => {}
    }
    let bias = util::optional(inputs, BIAS)
        .map(|b| -> Result<Vec<f64>, OpError> {
            util::expect_float(b, BIAS)?;
            if b.shape() != [e] {
                return Err(OpError::Shape(format!("bias {:?} is not [{e}]", b.shape())));
            }
            Ok(b.to_f64_vec())
        })
        .transpose()?;
    let hashed: Option<Vec<i64>> = if matches!(routing, RoutingMode::Hash { .. }) {
        let ids = util::operand(inputs, TOKEN_IDS)?;
        let table = util::operand(inputs, TABLE)?;
        util::expect_int(ids, TOKEN_IDS)?;
        util::expect_int(table, TABLE)?;
        util::expect_rank(table, TABLE, 2)?;
        if ids.shape() != [t] || table.shape()[1] != k {
            return Err(OpError::Shape(format!(
                "token ids {:?} and table {:?} do not fit {t} tokens with top_k {k}",
                ids.shape(),
                table.shape()
            )));
        }
        let vocab = table.shape()[0];
        let tv = table.to_i64_vec();
        let mut rows = Vec::with_capacity(t * k);
        for id in ids.to_i64_vec() {
            let r = util::resolve_index(id, vocab)?;
            rows.extend_from_slice(&tv[r * k..(r + 1) * k]);
        }
        Some(rows)
    } else {
        None
    };
    let xv = x.to_f32_vec();
    let lv = logits.to_f64_vec();
    let upv = up.to_f32_vec();
    let downv = down.to_f32_vec();
    let gatev = gate.map(|g| g.to_f32_vec());
    let mut out = vec![0f32; t * h];
    let (mut u, mut g, mut y) = (vec![0f32; inter], vec![0f32; inter], vec![0f32; h]);
    for tok in 0..t {
        let (chosen, weights) = route(
            routing,
            &lv[tok * e..(tok + 1) * e],
            bias.as_deref(),
            hashed.as_ref().map(|r| &r[tok * k..(tok + 1) * k]),
            k,
        )?;
        let xrow = &xv[tok * h..(tok + 1) * h];
        for (&ex, &w) in chosen.iter().zip(&weights) {
            mat_vec(&upv[ex * inter * h..(ex + 1) * inter * h], xrow, &mut u);
            if let Some(gv) = &gatev {
                mat_vec(&gv[ex * inter * h..(ex + 1) * inter * h], xrow, &mut g);
            }
            for (i, a) in u.iter_mut().enumerate() {
                *a = match activation {
                    ExpertActivation::SwiGlu => silu(g[i] as f64) as f32 * *a,
                    ExpertActivation::SwiGluClamped { limit_bits } => {
                        let l = f32::from_bits(*limit_bits);
                        silu(g[i].min(l) as f64) as f32 * a.clamp(-l, l)
                    }
                    ExpertActivation::Silu => silu(*a as f64) as f32,
                    ExpertActivation::Gelu => gelu(*a as f64) as f32,
                    ExpertActivation::Relu => a.max(0.0),
                };
            }
            mat_vec(&downv[ex * h * inter..(ex + 1) * h * inter], &u, &mut y);
            let w = w as f32;
            for (o, &v) in out[tok * h..(tok + 1) * h].iter_mut().zip(&y) {
                *o += w * v;
            }
        }
    }
    Ok(Tensor::from_f32(x.dtype(), vec![t, h], &out))
}
