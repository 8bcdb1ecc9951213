//! Reductions: `ReduceSum`/`Mean`/`Max`/`Min`/`Prod` (axes as attribute before opset 13/18,
//! as an operand after) and `ArgMax`.

use cubevec_ir::op::ReduceOp;
use cubevec_ir::{DType, Op};

use super::{OpSpec, one, spec};
use crate::onnx::context::{Importer, NodeCx, Val};
use crate::onnx::error::OnnxError;

/// The reduction importers.
pub const OPS: &[OpSpec] = &[
    spec("ReduceSum", &[1, 11, 13], reduce_sum),
    spec("ReduceMean", &[1, 11, 13, 18], reduce_mean),
    spec("ReduceMax", &[1, 11, 12, 13, 18, 20], reduce_max),
    spec("ReduceMin", &[1, 11, 12, 13, 18, 20], reduce_min),
    spec("ReduceProd", &[1, 11, 13, 18], reduce_prod),
    spec("ArgMax", &[1, 11, 12, 13], argmax),
];

fn reduce_sum(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    reduce(imp, n, ReduceOp::Sum, 13)
}

fn reduce_mean(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    reduce(imp, n, ReduceOp::Mean, 18)
}

fn reduce_max(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    reduce(imp, n, ReduceOp::Max, 18)
}

fn reduce_min(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    reduce(imp, n, ReduceOp::Min, 18)
}

fn reduce_prod(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    reduce(imp, n, ReduceOp::Prod, 18)
}

/// A reduction whose axes became an operand at schema version `axes_input_since`.
fn reduce(
    imp: &mut Importer,
    n: &NodeCx,
    op: ReduceOp,
    axes_input_since: i64,
) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let keep_dims = n.flag("keepdims", true)?;
    let axes = if n.version >= axes_input_since {
        match imp.input(n, 1)? {
            Some(a) => imp.const_ints(n, &a, "the reduction axes")?,
            None => Vec::new(),
        }
    } else {
        n.ints("axes")?.unwrap_or_default()
    };
    if axes.is_empty() && n.flag("noop_with_empty_axes", false)? {
        return one(Val { name: None, ..x });
    }
    for &a in &axes {
        super::axis(n, "axes", a, x.rank())?;
    }
    let reduce = Op::Reduce {
        op,
        axes,
        keep_dims,
    };
    if x.dtype() == DType::Bool && matches!(op, ReduceOp::Max | ReduceOp::Min) {
        // Max/min of booleans are any/all: reduce them as bytes.
        let bytes = imp.emit1(n, Op::Cast { to: DType::U8 }, &[Some(&x)])?;
        let r = imp.emit1(n, reduce, &[Some(&bytes)])?;
        return one(imp.emit1(n, Op::Cast { to: DType::Bool }, &[Some(&r)])?);
    }
    one(imp.emit1(n, reduce, &[Some(&x)])?)
}

fn argmax(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let op = Op::ArgMax {
        axis: n.int("axis", 0)?,
        keep_dims: n.flag("keepdims", true)?,
        select_last_index: n.flag("select_last_index", false)?,
    };
    one(imp.emit1(n, op, &[Some(&x)])?)
}
