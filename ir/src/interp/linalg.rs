//! Products: `MatMul`, `Gemm`, `Einsum` and `GroupedMatMul`.
//!
//! Float products accumulate in `f32` in `k` order (the row-times-matrix `i, k, j` loop, which
//! walks both operands contiguously); integer products are exact in `i64`.

use super::OpError;
use super::util::{self, Num};
use crate::dtype::DType;
use crate::tensor::Tensor;

/// `c[m, n] += a[m, k] · b[k, n]` on row-major slices, accumulating in `f32`.
pub fn gemm_f32(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        for (p, &aik) in a[i * k..(i + 1) * k].iter().enumerate() {
            for (acc, &bkj) in row.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *acc += aik * bkj;
            }
        }
    }
}

/// `c[m, n] += a[m, k] · b[k, n]` in `i64` (wrapping).
fn gemm_i64(m: usize, k: usize, n: usize, a: &[i64], b: &[i64], c: &mut [i64]) {
    for i in 0..m {
        for p in 0..k {
            let aik = a[i * k + p];
            for j in 0..n {
                c[i * n + j] = c[i * n + j].wrapping_add(aik.wrapping_mul(b[p * n + j]));
            }
        }
    }
}

/// numpy `matmul`: batch axes broadcast; rank-1 operands are promoted and the added axis removed.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    util::expect_dtype(b, 1, a.dtype())?;
    if a.shape().is_empty() || b.shape().is_empty() {
        return Err(OpError::Shape("matmul operands must have rank ≥ 1".into()));
    }
    let mut sa = a.shape().to_vec();
    let mut sb = b.shape().to_vec();
    let a_vec = sa.len() == 1;
    let b_vec = sb.len() == 1;
    if a_vec {
        sa.insert(0, 1);
    }
    if b_vec {
        sb.push(1);
    }
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != k2 {
        return Err(OpError::Shape(format!(
            "matmul of {:?} and {:?}: inner sizes {k} and {k2} differ",
            a.shape(),
            b.shape()
        )));
    }
    let batch_a = &sa[..sa.len() - 2];
    let batch_b = &sb[..sb.len() - 2];
    let batch = util::broadcast_shape(batch_a, batch_b)?;
    let ia = util::broadcast_index(batch_a, &batch)?;
    let ib = util::broadcast_index(batch_b, &batch)?;
    let mut shape = batch.clone();
    if !a_vec {
        shape.push(m);
    }
    if !b_vec {
        shape.push(n);
    }
    match (util::num(a), util::num(b)) {
        (Num::F(va), Num::F(vb)) => {
            let mut out = vec![0f32; ia.len() * m * n];
            for (bi, (&x, &y)) in ia.iter().zip(&ib).enumerate() {
                gemm_f32(
                    m,
                    k,
                    n,
                    &va[x * m * k..(x + 1) * m * k],
                    &vb[y * k * n..(y + 1) * k * n],
                    &mut out[bi * m * n..(bi + 1) * m * n],
                );
            }
            Ok(Tensor::from_f32(a.dtype(), shape, &out))
        }
        (Num::I(va), Num::I(vb)) => {
            let mut out = vec![0i64; ia.len() * m * n];
            for (bi, (&x, &y)) in ia.iter().zip(&ib).enumerate() {
                gemm_i64(
                    m,
                    k,
                    n,
                    &va[x * m * k..(x + 1) * m * k],
                    &vb[y * k * n..(y + 1) * k * n],
                    &mut out[bi * m * n..(bi + 1) * m * n],
                );
            }
            Ok(Tensor::from_i64(a.dtype(), shape, &out))
        }
        _ => unreachable!("operands of one dtype have one numeric view"),
    }
}

/// The `f32` elements of a 2-D float operand, transposed when asked, with its `(rows, cols)`.
fn matrix(
    t: &Tensor,
    operand: usize,
    transpose: bool,
) -> Result<(Vec<f32>, usize, usize), OpError> {
    util::expect_float(t, operand)?;
    util::expect_rank(t, operand, 2)?;
    let (r, c) = (t.shape()[0], t.shape()[1]);
    let v = t.to_f32_vec();
    if !transpose {
        return Ok((v, r, c));
    }
    let mut out = vec![0f32; v.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = v[i * c + j];
        }
    }
    Ok((out, c, r))
}

/// ONNX `Gemm`: `alpha·op(a)·op(b) + beta·c`.
pub fn gemm(
    inputs: &[Option<&Tensor>],
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor, OpError> {
    let a = util::operand(inputs, 0)?;
    let b = util::operand(inputs, 1)?;
    util::expect_dtype(b, 1, a.dtype())?;
    let (va, m, k) = matrix(a, 0, trans_a)?;
    let (vb, k2, n) = matrix(b, 1, trans_b)?;
    if k != k2 {
        return Err(OpError::Shape(format!(
            "gemm inner sizes {k} and {k2} differ"
        )));
    }
    let mut out = vec![0f32; m * n];
    gemm_f32(m, k, n, &va, &vb, &mut out);
    out.iter_mut().for_each(|v| *v *= alpha);
    if let Some(c) = util::optional(inputs, 2) {
        util::expect_dtype(c, 2, a.dtype())?;
        let ic = util::broadcast_index(c.shape(), &[m, n])?;
        let vc = c.to_f32_vec();
        for (o, &i) in out.iter_mut().zip(&ic) {
            *o += beta * vc[i];
        }
    }
    Ok(Tensor::from_f32(a.dtype(), vec![m, n], &out))
}

/// The labels of one einsum term, with `...` expanded to `ellipsis_rank` fresh labels
/// (256 and up, counted from the right so that ellipses of different ranks align).
fn parse_term(term: &str, rank: Option<usize>, ellipsis_rank: usize) -> Result<Vec<u32>, OpError> {
    let bad = || OpError::Attribute(format!("einsum term `{term}`"));
    let (head, tail) = match term.find("...") {
        Some(p) => (&term[..p], Some(&term[p + 3..])),
        None => (term, None),
    };
    let letters = |s: &str| -> Result<Vec<u32>, OpError> {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    Ok(c as u32)
                } else {
                    Err(bad())
                }
            })
            .collect()
    };
    let mut labels = letters(head)?;
    if let Some(tail) = tail {
        let tail = letters(tail)?;
        let n = match rank {
            Some(r) => r.checked_sub(labels.len() + tail.len()).ok_or_else(bad)?,
            None => ellipsis_rank,
        };
        labels.extend((0..n).map(|i| 256 + (ellipsis_rank - n + i) as u32));
        labels.extend(tail);
    }
    if let Some(r) = rank
        && labels.len() != r
    {
        return Err(OpError::Shape(format!(
            "einsum term `{term}` has {} labels for an operand of rank {r}",
            labels.len()
        )));
    }
    Ok(labels)
}

/// Einstein summation with an explicit output (`...` allowed; size-1 axes broadcast).
pub fn einsum(inputs: &[Option<&Tensor>], equation: &str) -> Result<Tensor, OpError> {
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = equation
        .split_once("->")
        .ok_or_else(|| OpError::Attribute(format!("einsum `{equation}` has no `->`")))?;
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != inputs.len() {
        return Err(OpError::Attribute(format!(
            "einsum `{equation}` has {} terms for {} operands",
            terms.len(),
            inputs.len()
        )));
    }
    let operands = (0..inputs.len())
        .map(|i| util::operand(inputs, i))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, t) in operands.iter().enumerate() {
        util::expect_dtype(t, i, operands[0].dtype())?;
    }
    let ellipsis_rank = terms
        .iter()
        .zip(&operands)
        .filter(|(term, _)| term.contains("..."))
        .map(|(term, t)| t.shape().len().saturating_sub(term.len() - 3))
        .max()
        .unwrap_or(0);
    let labels = terms
        .iter()
        .zip(&operands)
        .map(|(term, t)| parse_term(term, Some(t.shape().len()), ellipsis_rank))
        .collect::<Result<Vec<_>, _>>()?;
    let out_labels = parse_term(rhs, None, ellipsis_rank)?;
    // Sizes of every label; size 1 broadcasts.
    let mut sizes: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
    for (ls, t) in labels.iter().zip(&operands) {
        for (&l, &d) in ls.iter().zip(t.shape()) {
            let s = sizes.entry(l).or_insert(d);
            if *s == 1 {
                *s = d;
            } else if d != 1 && d != *s {
                return Err(OpError::Shape(format!(
                    "einsum `{equation}`: a label has sizes {s} and {d}"
                )));
            }
        }
    }
    if let Some(&l) = out_labels.iter().find(|l| !sizes.contains_key(l)) {
        return Err(OpError::Attribute(format!(
            "einsum `{equation}`: output label {} appears in no input",
            char::from_u32(l).unwrap_or('?')
        )));
    }
    let sum_labels: Vec<u32> = sizes
        .keys()
        .copied()
        .filter(|l| !out_labels.contains(l))
        .collect();
    let all: Vec<u32> = out_labels.iter().chain(&sum_labels).copied().collect();
    let all_shape: Vec<usize> = all.iter().map(|l| sizes[l]).collect();
    // Per operand, its stride along every label of `all` (0 where absent or broadcast).
    let offsets: Vec<Vec<usize>> = labels
        .iter()
        .zip(&operands)
        .map(|(ls, t)| {
            let st = util::strides(t.shape());
            let per_label: Vec<usize> = all
                .iter()
                .map(|l| {
                    ls.iter()
                        .zip(t.shape())
                        .zip(&st)
                        .filter(|((m, d), _)| *m == l && **d != 1)
                        .map(|(_, s)| *s)
                        .sum()
                })
                .collect();
            util::strided_offsets(&all_shape, &per_label)
        })
        .collect();
    let out_shape: Vec<usize> = out_labels.iter().map(|l| sizes[l]).collect();
    let out_count: usize = out_shape.iter().product();
    let inner: usize = sum_labels.iter().map(|l| sizes[l]).product();
    let dtype = operands[0].dtype();
    if dtype.is_float() {
        let values: Vec<Vec<f32>> = operands.iter().map(|t| t.to_f32_vec()).collect();
        let mut out = vec![0f32; out_count];
        for (o, slot) in out.iter_mut().enumerate() {
            let mut acc = 0f32;
            for s in o * inner..(o + 1) * inner {
                acc += values
                    .iter()
                    .zip(&offsets)
                    .map(|(v, off)| v[off[s]])
                    .product::<f32>();
            }
            *slot = acc;
        }
        Ok(Tensor::from_f32(dtype, out_shape, &out))
    } else {
        let values: Vec<Vec<i64>> = operands.iter().map(|t| t.to_i64_vec()).collect();
        let mut out = vec![0i64; out_count];
        for (o, slot) in out.iter_mut().enumerate() {
            let mut acc = 0i64;
            for s in o * inner..(o + 1) * inner {
                acc = acc.wrapping_add(
                    values
                        .iter()
                        .zip(&offsets)
                        .fold(1i64, |p, (v, off)| p.wrapping_mul(v[off[s]])),
                );
            }
            *slot = acc;
        }
        Ok(Tensor::from_i64(dtype, out_shape, &out))
    }
}

/// `x [t, k], w [e, n, k], group_sizes [e]` → `[t, n]`, each group of rows times its expert's
/// weight transposed.
pub fn grouped_matmul(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = util::operand(inputs, 0)?;
    let w = util::operand(inputs, 1)?;
    let groups = util::operand(inputs, 2)?;
    util::expect_float(x, 0)?;
    util::expect_float(w, 1)?;
    util::expect_rank(x, 0, 2)?;
    util::expect_rank(w, 1, 3)?;
    util::expect_dtype(groups, 2, DType::I64)?;
    let (t, k) = (x.shape()[0], x.shape()[1]);
    let (e, n, k2) = (w.shape()[0], w.shape()[1], w.shape()[2]);
    if k != k2 || groups.shape() != [e] {
        return Err(OpError::Shape(format!(
            "grouped_matmul of x {:?}, w {:?}, group_sizes {:?}",
            x.shape(),
            w.shape(),
            groups.shape()
        )));
    }
    let sizes = groups.to_i64_vec();
    if sizes.iter().any(|&s| s < 0) || sizes.iter().sum::<i64>() != t as i64 {
        return Err(OpError::Shape(format!(
            "group sizes {sizes:?} do not add up to the {t} rows"
        )));
    }
    let vx = x.to_f32_vec();
    let vw = w.to_f32_vec();
    let mut out = vec![0f32; t * n];
    let mut row = 0usize;
    let mut wt = vec![0f32; k * n];
    for (g, &size) in sizes.iter().enumerate() {
        let size = size as usize;
        if size == 0 {
            continue;
        }
        let wg = &vw[g * n * k..(g + 1) * n * k];
        for j in 0..n {
            for p in 0..k {
                wt[p * n + j] = wg[j * k + p];
            }
        }
        gemm_f32(
            size,
            k,
            n,
            &vx[row * k..(row + size) * k],
            &wt,
            &mut out[row * n..(row + size) * n],
        );
        row += size;
    }
    Ok(Tensor::from_f32(x.dtype(), vec![t, n], &out))
}
