//! Normalisations: `Softmax`, `LogSoftmax`, `LayerNormalization` (with its optional mean and
//! inverse-standard-deviation results), `RMSNormalization`.

use cubevec_ir::op::{BinaryOp, ReduceOp, UnaryOp};
use cubevec_ir::{DType, Op, Tensor};

use super::{OpSpec, one, spec};
use crate::onnx::context::{Importer, NodeCx, Val};
use crate::onnx::error::OnnxError;

/// The normalisation importers.
pub const OPS: &[OpSpec] = &[
    spec("Softmax", &[1, 11, 13], softmax),
    spec("LogSoftmax", &[1, 11, 13], log_softmax),
    spec("LayerNormalization", &[17], layer_norm),
    spec("RMSNormalization", &[23], rms_norm),
];

fn softmax(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let axis = n.int("axis", -1)?;
    one(imp.emit1(n, Op::Softmax { axis }, &[Some(&x)])?)
}

fn log_softmax(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let axis = n.int("axis", -1)?;
    one(imp.emit1(n, Op::LogSoftmax { axis }, &[Some(&x)])?)
}

/// Checks `stash_type`: statistics are always computed in f32.
fn check_stash(n: &NodeCx) -> Result<(), OnnxError> {
    match n.int("stash_type", 1)? {
        1 => Ok(()),
        other => Err(n.bad_attr(
            "stash_type",
            format!("only 1 (float statistics) is supported, got {other}"),
        )),
    }
}

fn layer_norm(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let scale = imp.req(n, 1)?;
    let bias = imp.input(n, 2)?;
    check_stash(n)?;
    let axis = n.int("axis", -1)?;
    let epsilon = n.float("epsilon", 1e-5)?;
    let first = super::axis(n, "axis", axis, x.rank())?;
    let y = imp.emit1(
        n,
        Op::LayerNorm {
            axis,
            epsilon_bits: epsilon.to_bits(),
        },
        &[Some(&x), Some(&scale), bias.as_ref()],
    )?;
    if !n.has_output(1) && !n.has_output(2) {
        return one(y);
    }
    // The statistics results, computed in f32 like the normalisation itself.
    let axes: Vec<i64> = (first as i64..x.rank() as i64).collect();
    let xf = if x.dtype() == DType::F32 {
        x.clone()
    } else {
        imp.emit1(n, Op::Cast { to: DType::F32 }, &[Some(&x)])?
    };
    let mean_op = Op::Reduce {
        op: ReduceOp::Mean,
        axes,
        keep_dims: true,
    };
    let mean = imp.emit1(n, mean_op.clone(), &[Some(&xf)])?;
    let centred = imp.emit1(n, Op::Binary(BinaryOp::Sub), &[Some(&xf), Some(&mean)])?;
    let square = imp.emit1(
        n,
        Op::Binary(BinaryOp::Mul),
        &[Some(&centred), Some(&centred)],
    )?;
    let var = imp.emit1(n, mean_op, &[Some(&square)])?;
    let eps = Val::tensor(Tensor::from_f32(DType::F32, vec![], &[epsilon]));
    let var = imp.emit1(n, Op::Binary(BinaryOp::Add), &[Some(&var), Some(&eps)])?;
    let std = imp.emit1(n, Op::Unary(UnaryOp::Sqrt), &[Some(&var)])?;
    let inv_std = imp.emit1(n, Op::Unary(UnaryOp::Reciprocal), &[Some(&std)])?;
    Ok(vec![Some(y), Some(mean), Some(inv_std)])
}

fn rms_norm(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let scale = imp.req(n, 1)?;
    check_stash(n)?;
    let op = Op::RmsNorm {
        axis: n.int("axis", -1)?,
        epsilon_bits: n.float("epsilon", 1e-5)?.to_bits(),
    };
    one(imp.emit1(n, op, &[Some(&x), Some(&scale)])?)
}
