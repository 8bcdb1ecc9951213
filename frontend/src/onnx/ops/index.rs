//! Indexing ops: `TopK`, `Gather`, `GatherElements`, `GatherND`, `ScatterElements`,
//! `ScatterND`, `CumSum`, `Trilu`, `OneHot`.

use cubevec_ir::op::{BinaryOp, ScatterReduction};
use cubevec_ir::{DType, Op, Tensor};

use super::{OpSpec, one, spec};
use crate::onnx::context::{FOLD_LIMIT, Importer, NodeCx, Val};
use crate::onnx::error::OnnxError;
use crate::onnx::symbolic::Known;

/// The indexing importers.
pub const OPS: &[OpSpec] = &[
    spec("TopK", &[1, 10, 11, 24], topk),
    spec("Gather", &[1, 11, 13], gather),
    spec("GatherElements", &[11, 13], gather_elements),
    spec("GatherND", &[11, 12, 13], gather_nd),
    spec("ScatterElements", &[11, 13, 16, 18], scatter_elements),
    spec("ScatterND", &[11, 13, 16, 18], scatter_nd),
    spec("CumSum", &[11, 14], cumsum),
    spec("Trilu", &[14], trilu),
    spec("OneHot", &[9, 11, 28], one_hot),
];

fn topk(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let k_val = imp.req(n, 1)?;
    let k = imp.sym_ints(n, &k_val, "TopK's `k`")?;
    let k = match k.as_slice() {
        [k] => k
            .as_int()
            .and_then(|k| u64::try_from(k).ok())
            .ok_or_else(|| n.unsupported("`k` must be a known non-negative number"))?,
        _ => return Err(n.unsupported("`k` must hold exactly one element")),
    };
    let op = Op::TopK {
        k,
        axis: n.int("axis", -1)?,
        largest: n.flag("largest", true)?,
        sorted: n.flag("sorted", true)?,
    };
    Ok(imp
        .emit(n, op, &[Some(&x)])?
        .into_iter()
        .map(Some)
        .collect())
}

fn gather(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let indices = imp.req(n, 1)?;
    let axis = n.int("axis", 0)?;
    // Shape arithmetic: picking elements of a symbolic shape vector.
    if x.const_tensor().is_none()
        && let Some((values, false, dtype)) = x.known.as_ref().and_then(Known::ints)
        && let Some(idx) = indices.const_tensor()
        && idx.dtype().is_int()
        && idx.shape().len() <= 1
    {
        let len = values.len() as i64;
        let picked = idx
            .to_i64_vec()
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + len } else { i };
                usize::try_from(j).ok().and_then(|j| values.get(j).cloned())
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| n.unsupported("a shape index is out of range"))?;
        return one(Val::known(
            Known::Ints {
                values: picked,
                scalar: idx.shape().is_empty(),
                dtype,
            }
            .normalized(),
        ));
    }
    one(imp.emit1(n, Op::Gather { axis }, &[Some(&x), Some(&indices)])?)
}

fn gather_elements(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let indices = imp.req(n, 1)?;
    let axis = n.int("axis", 0)?;
    one(imp.emit1(n, Op::GatherElements { axis }, &[Some(&x), Some(&indices)])?)
}

fn gather_nd(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let indices = imp.req(n, 1)?;
    let batch_dims = n.int("batch_dims", 0)?;
    let batch_dims =
        u64::try_from(batch_dims).map_err(|_| n.bad_attr("batch_dims", "must not be negative"))?;
    one(imp.emit1(n, Op::GatherNd { batch_dims }, &[Some(&x), Some(&indices)])?)
}

fn reduction(n: &NodeCx) -> Result<ScatterReduction, OnnxError> {
    Ok(match n.string("reduction")?.as_deref() {
        None | Some("none") => ScatterReduction::None,
        Some("add") => ScatterReduction::Add,
        Some("mul") => ScatterReduction::Mul,
        Some("max") => ScatterReduction::Max,
        Some("min") => ScatterReduction::Min,
        Some(other) => return Err(n.bad_attr("reduction", format!("unknown reduction `{other}`"))),
    })
}

fn scatter_elements(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let indices = imp.req(n, 1)?;
    let updates = imp.req(n, 2)?;
    let op = Op::ScatterElements {
        axis: n.int("axis", 0)?,
        reduction: reduction(n)?,
    };
    one(imp.emit1(n, op, &[Some(&x), Some(&indices), Some(&updates)])?)
}

fn scatter_nd(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let indices = imp.req(n, 1)?;
    let updates = imp.req(n, 2)?;
    let op = Op::ScatterNd {
        reduction: reduction(n)?,
    };
    one(imp.emit1(n, op, &[Some(&x), Some(&indices), Some(&updates)])?)
}

/// A scalar (or one-element) integer operand known at import time.
fn scalar_int(imp: &Importer, n: &NodeCx, v: &Val, what: &str) -> Result<i64, OnnxError> {
    match imp.const_ints(n, v, what)?.as_slice() {
        [x] => Ok(*x),
        other => Err(n.unsupported(format!("{what} must hold one element, got {}", other.len()))),
    }
}

fn cumsum(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let axis_val = imp.req(n, 1)?;
    let op = Op::CumSum {
        axis: scalar_int(imp, n, &axis_val, "CumSum's axis")?,
        exclusive: n.flag("exclusive", false)?,
        reverse: n.flag("reverse", false)?,
    };
    one(imp.emit1(n, op, &[Some(&x)])?)
}

fn trilu(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let k = match imp.input(n, 1)? {
        Some(k) => scalar_int(imp, n, &k, "Trilu's `k`")?,
        None => 0,
    };
    let op = Op::Trilu {
        upper: n.flag("upper", true)?,
        k,
    };
    one(imp.emit1(n, op, &[Some(&x)])?)
}

/// `OneHot` as `where(unsqueeze(indices) == range(depth), on, off)`; negative indices count
/// from `depth`.
fn one_hot(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let indices = imp.req(n, 0)?;
    let depth_val = imp.req(n, 1)?;
    let values = imp.req(n, 2)?;
    let depth_t = imp.const_of(n, &depth_val, "OneHot's depth")?;
    if depth_t.numel() != 1 {
        return Err(n.unsupported("OneHot's depth must hold one element"));
    }
    let depth = depth_t.get_f64(0) as i64;
    if depth <= 0 || depth as usize > FOLD_LIMIT {
        return Err(n.unsupported(format!(
            "OneHot's depth must be in 1..={FOLD_LIMIT}, got {depth}"
        )));
    }
    let rank = indices.rank();
    let axis = super::axis(n, "axis", n.int("axis", -1)?, rank + 1)?;
    let idx = if indices.dtype() == DType::I64 {
        indices.clone()
    } else {
        imp.emit1(n, Op::Cast { to: DType::I64 }, &[Some(&indices)])?
    };
    let zero = Val::tensor(Tensor::from_i64(DType::I64, vec![], &[0]));
    let d = Val::tensor(Tensor::from_i64(DType::I64, vec![], &[depth]));
    let negative = imp.emit1(n, Op::Binary(BinaryOp::Less), &[Some(&idx), Some(&zero)])?;
    let wrapped = imp.emit1(n, Op::Binary(BinaryOp::Add), &[Some(&idx), Some(&d)])?;
    let idx = imp.emit1(n, Op::Where, &[Some(&negative), Some(&wrapped), Some(&idx)])?;
    let idx = imp.emit1(
        n,
        Op::Unsqueeze {
            axes: vec![axis as i64],
        },
        &[Some(&idx)],
    )?;
    let mut range_shape = vec![1usize; rank + 1];
    range_shape[axis] = depth as usize;
    let range: Vec<i64> = (0..depth).collect();
    let range = Val::tensor(Tensor::from_i64(DType::I64, range_shape, &range));
    let hit = imp.emit1(n, Op::Binary(BinaryOp::Equal), &[Some(&idx), Some(&range)])?;
    let pick = |imp: &mut Importer, i: i64| {
        let at = Val::tensor(Tensor::from_i64(DType::I64, vec![], &[i]));
        imp.emit1(n, Op::Gather { axis: 0 }, &[Some(&values), Some(&at)])
    };
    let off = pick(imp, 0)?;
    let on = pick(imp, 1)?;
    one(imp.emit1(n, Op::Where, &[Some(&hit), Some(&on), Some(&off)])?)
}
