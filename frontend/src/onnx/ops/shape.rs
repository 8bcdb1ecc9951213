//! Layout and shape ops: `Reshape`, `Flatten`, `Transpose`, `Concat`, `Split`, `Slice`,
//! `Squeeze`, `Unsqueeze`, `Expand`, `Range`, `Shape`, `Size`, `ConstantOfShape`, `Constant`.
//! The ops that compute shapes fold onto symbolic shape vectors so that reshape and expand
//! targets become static attributes.

use cubevec_ir::{DType, Dim, Op, Shape, Tensor};

use super::{OpSpec, one, spec};
use crate::onnx::context::{FOLD_LIMIT, Importer, NodeCx, Val, attr_tensor};
use crate::onnx::error::OnnxError;
use crate::onnx::symbolic::{Known, SymInt, div_exact};

/// The layout and shape importers.
pub const OPS: &[OpSpec] = &[
    spec("Reshape", &[1, 5, 13, 14, 19, 21, 23, 24, 25], reshape),
    spec("Flatten", &[1, 9, 11, 13, 21, 23, 24, 25], flatten),
    spec("Transpose", &[1, 13, 21, 23, 24, 25], transpose),
    spec("Concat", &[1, 4, 11, 13], concat),
    spec("Split", &[1, 2, 11, 13, 18], split),
    spec("Slice", &[1, 10, 11, 13], slice),
    spec("Squeeze", &[1, 11, 13, 21, 23, 24, 25], squeeze),
    spec("Unsqueeze", &[1, 11, 13, 21, 23, 24, 25], unsqueeze),
    spec("Expand", &[8, 13], expand),
    spec("Range", &[11, 27], range),
    spec("Shape", &[1, 13, 15, 19, 21, 23, 24, 25], shape),
    spec("Size", &[1, 13, 19, 21, 23, 24, 25], size),
    spec(
        "ConstantOfShape",
        &[9, 20, 21, 23, 24, 25],
        constant_of_shape,
    ),
    spec(
        "Constant",
        &[1, 9, 11, 12, 13, 19, 21, 23, 24, 25],
        constant,
    ),
];

/// Folds a reshape of a symbolic shape vector (rank ≤ 1 in and out).
fn reshape_known(x: &Val, target: &[Dim]) -> Option<Val> {
    let (values, _, dtype) = x.known.as_ref().filter(|k| k.tensor().is_none())?.ints()?;
    let scalar = match target {
        [] => true,
        [Dim::Known(len)] if *len as usize == values.len() => false,
        _ => return None,
    };
    (values.len() == 1 || !scalar).then(|| {
        Val::known(Known::Ints {
            values,
            scalar,
            dtype,
        })
    })
}

/// Resolves a reshape target: `0` copies the operand's dimension (unless `allow_zero`), `-1`
/// is the element count divided by the product of the others.
fn resolve_reshape(
    n: &NodeCx,
    x: &Val,
    target: &[SymInt],
    allow_zero: bool,
) -> Result<Vec<Dim>, OnnxError> {
    let mut dims = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        match t {
            SymInt::Int(0) if !allow_zero => {
                dims.push(x.dims().get(i).cloned().ok_or_else(|| {
                    n.unsupported(format!("reshape target copies missing axis {i}"))
                })?)
            }
            SymInt::Int(-1) if infer_at.is_none() => {
                infer_at = Some(i);
                dims.push(Dim::Known(1));
            }
            other => dims.push(
                other
                    .to_dim()
                    .ok_or_else(|| n.unsupported(format!("invalid reshape target {target:?}")))?,
            ),
        }
    }
    if let Some(i) = infer_at {
        let known = dims.iter().fold(Dim::Known(1), |acc, d| acc.mul(d));
        if known == Dim::Known(0) {
            return Err(n.unsupported("reshape target with -1 and a zero dimension"));
        }
        let numel = x.ty.shape.numel();
        dims[i] = div_exact(&numel, &known).unwrap_or_else(|| numel.floor_div(&known));
    }
    Ok(dims)
}

fn reshape(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let target_val = imp.req(n, 1)?;
    let target = imp.sym_ints(n, &target_val, "the reshape target")?;
    let dims = resolve_reshape(n, &x, &target, n.flag("allowzero", false)?)?;
    if let Some(v) = reshape_known(&x, &dims) {
        return one(v);
    }
    one(imp.emit1(n, Op::Reshape { shape: dims }, &[Some(&x)])?)
}

fn flatten(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let rank = x.rank();
    let axis = n.int("axis", 1)?;
    let axis = if axis < 0 { axis + rank as i64 } else { axis };
    let axis = usize::try_from(axis)
        .ok()
        .filter(|&a| a <= rank)
        .ok_or_else(|| n.bad_attr("axis", format!("out of range for rank {rank}")))?;
    let prod = |ds: &[Dim]| ds.iter().fold(Dim::Known(1), |acc, d| acc.mul(d));
    let shape = vec![prod(&x.dims()[..axis]), prod(&x.dims()[axis..])];
    one(imp.emit1(n, Op::Reshape { shape }, &[Some(&x)])?)
}

fn transpose(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let perm = match n.ints("perm")? {
        Some(p) => p
            .into_iter()
            .map(u64::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| n.bad_attr("perm", "negative entry"))?,
        None => (0..x.rank() as u64).rev().collect(),
    };
    one(imp.emit1(n, Op::Transpose { perm }, &[Some(&x)])?)
}

fn concat(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let axis = n.req_int("axis")?;
    let mut inputs = Vec::with_capacity(n.num_inputs());
    for i in 0..n.num_inputs() {
        inputs.push(imp.req(n, i)?);
    }
    // Shape arithmetic: concatenating shape vectors.
    if inputs.iter().any(|v| v.const_tensor().is_none()) {
        let parts: Option<Vec<_>> = inputs
            .iter()
            .map(|v| {
                v.known
                    .as_ref()
                    .and_then(Known::ints)
                    .filter(|(_, s, _)| !s)
            })
            .collect();
        if let Some(parts) = parts
            && let Some(dtype) = parts.first().map(|p| p.2)
        {
            let values = parts.into_iter().flat_map(|p| p.0).collect();
            return one(Val::known(
                Known::Ints {
                    values,
                    scalar: false,
                    dtype,
                }
                .normalized(),
            ));
        }
    }
    let refs: Vec<Option<&Val>> = inputs.iter().map(Some).collect();
    one(imp.emit1(n, Op::Concat { axis }, &refs)?)
}

fn split(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let axis = n.int("axis", 0)?;
    let ax = super::axis(n, "axis", axis, x.rank())?;
    let parts = n.proto.output.len();
    let given = if n.version >= 13 {
        match imp.input(n, 1)? {
            Some(s) => Some(imp.const_ints(n, &s, "the split sizes")?),
            None => None,
        }
    } else {
        n.ints("split")?
    };
    let sizes: Vec<Dim> = match given {
        Some(s) => s
            .into_iter()
            .map(|v| u64::try_from(v).map(Dim::Known))
            .collect::<Result<_, _>>()
            .map_err(|_| n.unsupported("negative split size"))?,
        None => {
            let count = if n.version >= 18 {
                n.req_int("num_outputs")?
            } else {
                parts as i64
            };
            let count = u64::try_from(count)
                .ok()
                .filter(|&c| c > 0)
                .ok_or_else(|| {
                    n.bad_attr("num_outputs", format!("must be positive, got {count}"))
                })?;
            let dim = &x.dims()[ax];
            let chunk = dim.ceil_div(&Dim::Known(count));
            match dim.as_known() {
                Some(total) => {
                    let chunk = total.div_ceil(count);
                    let mut sizes = Vec::new();
                    let mut left = total;
                    for _ in 0..count {
                        let s = chunk.min(left);
                        sizes.push(Dim::Known(s));
                        left -= s;
                    }
                    sizes
                }
                None => vec![chunk; count as usize],
            }
        }
    };
    Ok(imp
        .emit(n, Op::Split { axis, sizes }, &[Some(&x)])?
        .into_iter()
        .map(Some)
        .collect())
}

/// Python-style slice of a vector with ONNX clamping.
fn slice_vec<T: Clone>(v: &[T], start: i64, end: i64, step: i64) -> Vec<T> {
    let len = v.len() as i64;
    let clamp = |i: i64, lo: i64, hi: i64| {
        let i = if i < 0 { i + len } else { i };
        i.clamp(lo, hi)
    };
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, end) = (clamp(start, 0, len), clamp(end, 0, len));
        while i < end {
            out.push(v[i as usize].clone());
            i += step;
        }
    } else {
        let (mut i, end) = (clamp(start, -1, len - 1), clamp(end, -1, len - 1));
        while i > end {
            out.push(v[i as usize].clone());
            i += step;
        }
    }
    out
}

/// A symbolic slice bound as a dimension: non-negative numbers, symbols, and "to the end"
/// (`i64::MAX`-like ends) as the axis size.
fn bound_dim(b: &SymInt, dim: &Dim) -> Option<Dim> {
    match b {
        SymInt::Int(v) if *v >= i32::MAX as i64 => Some(dim.clone()),
        other => other.to_dim(),
    }
}

fn slice(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let (starts, ends, axes, steps) = if n.version >= 10 {
        let starts_v = imp.req(n, 1)?;
        let ends_v = imp.req(n, 2)?;
        let starts = imp.sym_ints(n, &starts_v, "the slice starts")?;
        let ends = imp.sym_ints(n, &ends_v, "the slice ends")?;
        let axes = match imp.input(n, 3)? {
            Some(a) => Some(imp.const_ints(n, &a, "the slice axes")?),
            None => None,
        };
        let steps = match imp.input(n, 4)? {
            Some(s) => Some(imp.const_ints(n, &s, "the slice steps")?),
            None => None,
        };
        (starts, ends, axes, steps)
    } else {
        let get = |name| -> Result<Vec<SymInt>, OnnxError> {
            Ok(n.ints(name)?
                .ok_or_else(|| n.bad_attr(name, "required but absent"))?
                .into_iter()
                .map(SymInt::Int)
                .collect())
        };
        (get("starts")?, get("ends")?, n.ints("axes")?, None)
    };
    let count = starts.len();
    let axes = axes.unwrap_or_else(|| (0..count as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; count]);
    if ends.len() != count || axes.len() != count || steps.len() != count {
        return Err(n.unsupported("slice starts, ends, axes and steps differ in length"));
    }
    let mut norm_axes = Vec::with_capacity(count);
    let mut s = Vec::with_capacity(count);
    let mut e = Vec::with_capacity(count);
    let mut st = Vec::with_capacity(count);
    // Axes with symbolic bounds become a split: [start, end - start, size - end].
    let mut by_split = Vec::new();
    for i in 0..count {
        let ax = super::axis(n, "axes", axes[i], x.rank())?;
        let dim = x.dims()[ax].clone();
        if steps[i] == 0 {
            return Err(n.unsupported("slice step 0"));
        }
        match (&starts[i], &ends[i]) {
            (SymInt::Int(a), SymInt::Int(b)) => {
                s.push(*a);
                e.push(*b);
            }
            (SymInt::Int(a), SymInt::Dim(d)) if *d == dim => {
                s.push(*a);
                e.push(i64::MAX);
            }
            (start, end) => {
                let (Some(sd), Some(ed), 1) =
                    (bound_dim(start, &dim), bound_dim(end, &dim), steps[i])
                else {
                    return Err(n.unsupported(format!(
                        "slice bounds {start:?}..{end:?} with step {} on axis of size `{dim}`",
                        steps[i]
                    )));
                };
                by_split.push((ax, sd, ed));
                continue;
            }
        }
        norm_axes.push(ax as i64);
        st.push(steps[i]);
    }
    let steps = st;
    // Shape arithmetic: slicing a shape vector.
    if x.const_tensor().is_none()
        && let Some((values, false, dtype)) = x.known.as_ref().and_then(Known::ints)
        && let ([start], [end], [step]) = (s.as_slice(), e.as_slice(), steps.as_slice())
        && by_split.is_empty()
    {
        let picked = slice_vec(&values, *start, *end, *step);
        return one(Val::known(
            Known::Ints {
                values: picked,
                scalar: false,
                dtype,
            }
            .normalized(),
        ));
    }
    let mut y = if norm_axes.is_empty() {
        x.clone()
    } else {
        let op = Op::Slice {
            axes: norm_axes,
            starts: s,
            ends: e,
            steps,
        };
        imp.emit1(n, op, &[Some(&x)])?
    };
    for (ax, start, end) in by_split {
        let size = y.dims()[ax].clone();
        let pieces = [start.clone(), end.sub(&start), size.sub(&end)];
        let keep: Vec<usize> = (0..3)
            .filter(|&i| i == 1 || pieces[i] != Dim::Known(0))
            .collect();
        let sizes: Vec<Dim> = keep.iter().map(|&i| pieces[i].clone()).collect();
        let middle = keep.iter().position(|&i| i == 1).unwrap_or(0);
        let parts = imp.emit(
            n,
            Op::Split {
                axis: ax as i64,
                sizes,
            },
            &[Some(&y)],
        )?;
        y = parts
            .into_iter()
            .nth(middle)
            .ok_or_else(|| n.unsupported("split produced too few pieces"))?;
    }
    one(y)
}

/// The axes of `Squeeze`/`Unsqueeze`: an operand from schema version 13, an attribute before.
fn axes_operand(imp: &Importer, n: &NodeCx) -> Result<Option<Vec<i64>>, OnnxError> {
    if n.version >= 13 {
        match imp.input(n, 1)? {
            Some(a) => Ok(Some(imp.const_ints(n, &a, "the axes")?)),
            None => Ok(None),
        }
    } else {
        n.ints("axes")
    }
}

fn squeeze(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let axes = match axes_operand(imp, n)? {
        Some(a) => a,
        None => {
            let mut axes = Vec::new();
            for (i, d) in x.dims().iter().enumerate() {
                match d.as_known() {
                    Some(1) => axes.push(i as i64),
                    Some(_) => {}
                    None => {
                        return Err(n.unsupported(format!(
                            "Squeeze without axes on symbolic dimension `{d}`"
                        )));
                    }
                }
            }
            axes
        }
    };
    if x.const_tensor().is_none()
        && let Some((values, false, dtype)) = x.known.as_ref().and_then(Known::ints)
        && values.len() == 1
    {
        return one(Val::known(Known::Ints {
            values,
            scalar: true,
            dtype,
        }));
    }
    one(imp.emit1(n, Op::Squeeze { axes }, &[Some(&x)])?)
}

fn unsqueeze(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let axes = axes_operand(imp, n)?.ok_or_else(|| n.unsupported("Unsqueeze needs axes"))?;
    if x.const_tensor().is_none()
        && let Some((values, true, dtype)) = x.known.as_ref().and_then(Known::ints)
        && axes.len() == 1
    {
        return one(Val::known(Known::Ints {
            values,
            scalar: false,
            dtype,
        }));
    }
    one(imp.emit1(n, Op::Unsqueeze { axes }, &[Some(&x)])?)
}

/// A shape operand as dimensions (all elements non-negative).
fn dims_of(imp: &Importer, n: &NodeCx, v: &Val, what: &str) -> Result<Vec<Dim>, OnnxError> {
    imp.sym_ints(n, v, what)?
        .iter()
        .map(|s| {
            s.to_dim()
                .ok_or_else(|| n.unsupported(format!("{what} has a negative entry")))
        })
        .collect()
}

fn expand(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let shape_val = imp.req(n, 1)?;
    let shape = dims_of(imp, n, &shape_val, "the expand shape")?;
    one(imp.emit1(n, Op::Expand { shape }, &[Some(&x)])?)
}

fn range(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let start = imp.req(n, 0)?;
    let limit = imp.req(n, 1)?;
    let delta = imp.req(n, 2)?;
    if let (Some(s), Some(l), Some(d)) = (
        start.const_tensor(),
        limit.const_tensor(),
        delta.const_tensor(),
    ) {
        if s.numel() != 1 || l.numel() != 1 || d.numel() != 1 {
            return Err(n.unsupported("Range operands must be scalars"));
        }
        let (s, l, d) = (s.get_f64(0), l.get_f64(0), d.get_f64(0));
        if d == 0.0 {
            return Err(n.unsupported("Range with delta 0"));
        }
        let len = ((l - s) / d).ceil().max(0.0) as u64;
        let op = Op::Range {
            len: Dim::Known(len),
        };
        return one(imp.emit1(n, op, &[Some(&start), Some(&limit), Some(&delta)])?);
    }
    if start.dtype().is_float() {
        // Float ranges need every operand at import time.
        for (v, what) in [
            (&start, "Range's start"),
            (&limit, "Range's limit"),
            (&delta, "Range's delta"),
        ] {
            imp.const_of(n, v, what)?;
        }
    }
    // start and delta known, limit a symbolic dimension: len = ceildiv(limit - start, delta).
    let s = imp.sym_ints(n, &start, "Range's start")?;
    let l = imp.sym_ints(n, &limit, "Range's limit")?;
    let d = imp.sym_ints(n, &delta, "Range's delta")?;
    let (Some(s), Some(l), Some(d)) = (
        s.first().and_then(SymInt::to_dim),
        l.first().and_then(SymInt::to_dim),
        d.first().and_then(SymInt::as_int).filter(|&d| d > 0),
    ) else {
        return Err(n.unsupported(
            "Range needs known operands, or a known start ≥ 0 and delta > 0 with a symbolic limit",
        ));
    };
    let len = l.sub(&s).ceil_div(&Dim::Known(d as u64));
    one(imp.emit1(
        n,
        Op::Range { len },
        &[Some(&start), Some(&limit), Some(&delta)],
    )?)
}

fn shape(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let rank = x.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(n.int("start", 0)?);
    let end = clamp(n.int("end", rank)?);
    let dims = x.dims()[start..end.max(start)].to_vec();
    one(Val::known(Known::from_dims(&dims)))
}

fn size(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let numel = x.ty.shape.numel();
    one(Val::known(
        Known::Ints {
            values: vec![SymInt::from_dim(&numel)],
            scalar: true,
            dtype: DType::I64,
        }
        .normalized(),
    ))
}

/// A tensor of `shape` filled with the single element of `value`.
fn filled(value: &Tensor, shape: Vec<usize>) -> Tensor {
    let count = shape.iter().product();
    let dt = value.dtype();
    if dt.is_int() || dt == DType::Bool {
        Tensor::from_i64(dt, shape, &vec![value.get_i64(0); count])
    } else {
        Tensor::from_f64(dt, shape, &vec![value.get_f64(0); count])
    }
}

fn constant_of_shape(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let shape_val = imp.req(n, 0)?;
    let dims = dims_of(imp, n, &shape_val, "the shape")?;
    let value = match n.attr("value").and_then(|a| a.t.as_ref()) {
        Some(t) => attr_tensor(n.file, &imp.base_dir, n, t)?,
        None => Tensor::zeros(DType::F32, vec![1]),
    };
    if value.numel() != 1 {
        return Err(n.bad_attr("value", "must hold exactly one element"));
    }
    let known = Shape(dims.clone()).as_known();
    if let Some(sizes) = known
        && sizes.iter().product::<u64>() as usize <= FOLD_LIMIT
    {
        let sizes = sizes.iter().map(|&s| s as usize).collect();
        return one(Val::tensor(filled(&value, sizes)));
    }
    let scalar = Val::tensor(value.reshaped(vec![]));
    one(imp.emit1(n, Op::Expand { shape: dims }, &[Some(&scalar)])?)
}

fn constant(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let attr = n
        .proto
        .attribute
        .first()
        .ok_or_else(|| n.bad_attr("value", "Constant has no value attribute"))?;
    let t = match attr.name.as_str() {
        "value" => {
            let proto = attr
                .t
                .as_ref()
                .ok_or_else(|| n.bad_attr("value", "no tensor given"))?;
            attr_tensor(n.file, &imp.base_dir, n, proto)?
        }
        "value_float" => Tensor::from_f32(DType::F32, vec![], &[n.float("value_float", 0.0)?]),
        "value_floats" => Tensor::from_f32(DType::F32, vec![attr.floats.len()], &attr.floats),
        "value_int" => Tensor::from_i64(DType::I64, vec![], &[n.req_int("value_int")?]),
        "value_ints" => Tensor::from_i64(DType::I64, vec![attr.ints.len()], &attr.ints),
        other => {
            return Err(n.bad_attr(
                other,
                "only tensor, float(s) and int(s) constants are supported",
            ));
        }
    };
    one(Val::tensor(t))
}

#[cfg(test)]
mod tests {
    use super::slice_vec;

    #[test]
    fn slices_clamp_like_onnx() {
        let v = [0, 1, 2, 3, 4];
        assert_eq!(slice_vec(&v, 1, i64::MAX, 1), vec![1, 2, 3, 4]);
        assert_eq!(slice_vec(&v, -2, 100, 1), vec![3, 4]);
        assert_eq!(slice_vec(&v, -1, i64::MIN, -2), vec![4, 2, 0]);
        assert_eq!(slice_vec(&v, 0, 4, 2), vec![0, 2]);
    }
}
