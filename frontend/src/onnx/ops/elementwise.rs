//! Elementwise ops: unary functions, binary arithmetic, comparisons and logic, variadic
//! `Max`/`Min`/`Sum`, `Clip`, `Where`, `Identity` and the activations built from them.

use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::{DType, Op, Tensor};

use super::{OpSpec, one, spec};
use crate::onnx::context::{Importer, NodeCx, Val};
use crate::onnx::error::OnnxError;
use crate::onnx::symbolic::{IntOp, Known, fold_ints};

macro_rules! unary_importers {
    ($($name:ident => $op:expr),* $(,)?) => {
        $(fn $name(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
            unary(imp, n, $op)
        })*
    };
}

macro_rules! binary_importers {
    ($($name:ident => $op:expr),* $(,)?) => {
        $(fn $name(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
            binary(imp, n, $op)
        })*
    };
}

unary_importers! {
    neg => UnaryOp::Neg, abs => UnaryOp::Abs, exp => UnaryOp::Exp, log => UnaryOp::Log,
    sqrt => UnaryOp::Sqrt, reciprocal => UnaryOp::Reciprocal, sin => UnaryOp::Sin,
    cos => UnaryOp::Cos, tanh => UnaryOp::Tanh, erf => UnaryOp::Erf,
    sigmoid => UnaryOp::Sigmoid, relu => UnaryOp::Relu, softplus => UnaryOp::Softplus,
    floor => UnaryOp::Floor, ceil => UnaryOp::Ceil, round => UnaryOp::Round,
    sign => UnaryOp::Sign, not => UnaryOp::Not, isnan => UnaryOp::IsNaN,
}

binary_importers! {
    add => BinaryOp::Add, sub => BinaryOp::Sub, mul => BinaryOp::Mul, div => BinaryOp::Div,
    equal => BinaryOp::Equal, less => BinaryOp::Less, less_equal => BinaryOp::LessOrEqual,
    greater => BinaryOp::Greater, greater_equal => BinaryOp::GreaterOrEqual,
    and => BinaryOp::And, or => BinaryOp::Or, xor => BinaryOp::Xor,
}

/// The elementwise importers.
pub const OPS: &[OpSpec] = &[
    spec("Neg", &[1, 6, 13], neg),
    spec("Abs", &[1, 6, 13], abs),
    spec("Exp", &[1, 6, 13], exp),
    spec("Log", &[1, 6, 13], log),
    spec("Sqrt", &[1, 6, 13], sqrt),
    spec("Reciprocal", &[1, 6, 13], reciprocal),
    spec("Sin", &[7, 22], sin),
    spec("Cos", &[7, 22], cos),
    spec("Tanh", &[1, 6, 13], tanh),
    spec("Erf", &[9, 13], erf),
    spec("Sigmoid", &[1, 6, 13], sigmoid),
    spec("Relu", &[1, 6, 13, 14], relu),
    spec("Softplus", &[1, 22], softplus),
    spec("Floor", &[1, 6, 13], floor),
    spec("Ceil", &[1, 6, 13], ceil),
    spec("Round", &[11, 22], round),
    spec("Sign", &[9, 13], sign),
    spec("Not", &[1], not),
    spec("IsNaN", &[9, 13, 20], isnan),
    spec("IsInf", &[10, 20], isinf),
    spec("Add", &[1, 6, 7, 13, 14], add),
    spec("Sub", &[1, 6, 7, 13, 14], sub),
    spec("Mul", &[1, 6, 7, 13, 14], mul),
    spec("Div", &[1, 6, 7, 13, 14], div),
    spec("Pow", &[1, 7, 12, 13, 15], pow),
    spec("Mod", &[10, 13, 28], modulo),
    spec("Equal", &[1, 7, 11, 13, 19], equal),
    spec("Less", &[1, 7, 9, 13], less),
    spec("LessOrEqual", &[12, 16], less_equal),
    spec("Greater", &[1, 7, 9, 13], greater),
    spec("GreaterOrEqual", &[12, 16], greater_equal),
    spec("And", &[1, 7], and),
    spec("Or", &[1, 7], or),
    spec("Xor", &[1, 7], xor),
    spec("Max", &[1, 6, 8, 12, 13], max),
    spec("Min", &[1, 6, 8, 12, 13], min),
    spec("Sum", &[1, 6, 8, 13], sum),
    spec("Clip", &[1, 6, 11, 12, 13], clip),
    spec("Where", &[9, 16], where_),
    spec("Identity", &[1, 13, 14, 16, 19, 21, 23, 24, 25], identity),
    spec("Gelu", &[20], gelu),
    spec("Swish", &[24], swish),
    spec("HardSwish", &[14, 22], hard_swish),
    spec("SwiGLU", &[28], swiglu),
];

fn unary(imp: &mut Importer, n: &NodeCx, op: UnaryOp) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    one(imp.emit1(n, Op::Unary(op), &[Some(&x)])?)
}

/// The shape-arithmetic counterpart of a binary op, for folding symbolic shape vectors.
fn int_op(op: BinaryOp) -> Option<IntOp> {
    Some(match op {
        BinaryOp::Add => IntOp::Add,
        BinaryOp::Sub => IntOp::Sub,
        BinaryOp::Mul => IntOp::Mul,
        BinaryOp::Div => IntOp::Div,
        BinaryOp::Max => IntOp::Max,
        BinaryOp::Min => IntOp::Min,
        _ => return None,
    })
}

/// `a op b`, folded on symbolic shape vectors when possible.
pub fn apply_binary(
    imp: &mut Importer,
    n: &NodeCx,
    op: BinaryOp,
    a: &Val,
    b: &Val,
) -> Result<Val, OnnxError> {
    let both_const = a.const_tensor().is_some() && b.const_tensor().is_some();
    if !both_const
        && let Some(iop) = int_op(op)
        && let (Some(ka), Some(kb)) = (
            a.known.as_ref().and_then(Known::ints),
            b.known.as_ref().and_then(Known::ints),
        )
        && let Some(k) = fold_ints(iop, &ka, &kb)
    {
        return Ok(Val::known(k));
    }
    imp.emit1(n, Op::Binary(op), &[Some(a), Some(b)])
}

fn binary(imp: &mut Importer, n: &NodeCx, op: BinaryOp) -> Result<Vec<Option<Val>>, OnnxError> {
    let a = imp.req(n, 0)?;
    let b = imp.req(n, 1)?;
    one(apply_binary(imp, n, op, &a, &b)?)
}

fn pow(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let a = imp.req(n, 0)?;
    let mut b = imp.req(n, 1)?;
    if b.dtype() != a.dtype() {
        b = imp.emit1(n, Op::Cast { to: a.dtype() }, &[Some(&b)])?;
    }
    one(imp.emit1(n, Op::Binary(BinaryOp::Pow), &[Some(&a), Some(&b)])?)
}

fn modulo(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    if n.flag("fmod", false)? {
        return binary(imp, n, BinaryOp::FMod);
    }
    let a = imp.req(n, 0)?;
    if !a.dtype().is_float() {
        return binary(imp, n, BinaryOp::Mod);
    }
    // Floats with fmod=0 (opset 28) take the divisor's sign: r = fmod(a, b), moved by b when
    // it is non-zero and its sign differs from b's. NaN and infinity cases follow from fmod.
    let b = imp.req(n, 1)?;
    let r = imp.emit1(n, Op::Binary(BinaryOp::FMod), &[Some(&a), Some(&b)])?;
    let zero = Val::tensor(Tensor::zeros(a.dtype(), vec![]));
    let r_neg = imp.emit1(n, Op::Binary(BinaryOp::Less), &[Some(&r), Some(&zero)])?;
    let b_neg = imp.emit1(n, Op::Binary(BinaryOp::Less), &[Some(&b), Some(&zero)])?;
    let r_pos = imp.emit1(n, Op::Binary(BinaryOp::Greater), &[Some(&r), Some(&zero)])?;
    let b_pos = imp.emit1(n, Op::Binary(BinaryOp::Greater), &[Some(&b), Some(&zero)])?;
    let neg_pos = imp.emit1(n, Op::Binary(BinaryOp::And), &[Some(&r_neg), Some(&b_pos)])?;
    let pos_neg = imp.emit1(n, Op::Binary(BinaryOp::And), &[Some(&r_pos), Some(&b_neg)])?;
    let differ = imp.emit1(
        n,
        Op::Binary(BinaryOp::Or),
        &[Some(&neg_pos), Some(&pos_neg)],
    )?;
    let moved = imp.emit1(n, Op::Binary(BinaryOp::Add), &[Some(&r), Some(&b)])?;
    one(imp.emit1(n, Op::Where, &[Some(&differ), Some(&moved), Some(&r)])?)
}

/// Folds a variadic op into a chain of binary ops.
fn variadic(imp: &mut Importer, n: &NodeCx, op: BinaryOp) -> Result<Vec<Option<Val>>, OnnxError> {
    let mut acc = imp.req(n, 0)?;
    for i in 1..n.num_inputs() {
        let next = imp.req(n, i)?;
        acc = apply_binary(imp, n, op, &acc, &next)?;
    }
    one(acc)
}

fn max(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    variadic(imp, n, BinaryOp::Max)
}

fn min(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    variadic(imp, n, BinaryOp::Min)
}

fn sum(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    variadic(imp, n, BinaryOp::Add)
}

fn isinf(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let negative = n.flag("detect_negative", true)?;
    let positive = n.flag("detect_positive", true)?;
    let inf = imp.emit1(n, Op::Unary(UnaryOp::IsInf), &[Some(&x)])?;
    if negative && positive {
        return one(inf);
    }
    if !negative && !positive {
        let zero = Val::tensor(Tensor::zeros(DType::Bool, vec![]));
        return one(imp.emit1(n, Op::Binary(BinaryOp::And), &[Some(&inf), Some(&zero)])?);
    }
    let zero = Val::tensor(Tensor::zeros(x.dtype(), vec![]));
    let cmp = if positive {
        BinaryOp::Greater
    } else {
        BinaryOp::Less
    };
    let side = imp.emit1(n, Op::Binary(cmp), &[Some(&x), Some(&zero)])?;
    one(imp.emit1(n, Op::Binary(BinaryOp::And), &[Some(&inf), Some(&side)])?)
}

fn clip(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let lo = imp.input(n, 1)?;
    let hi = imp.input(n, 2)?;
    one(imp.emit1(n, Op::Clip, &[Some(&x), lo.as_ref(), hi.as_ref()])?)
}

fn where_(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let c = imp.req(n, 0)?;
    let a = imp.req(n, 1)?;
    let b = imp.req(n, 2)?;
    one(imp.emit1(n, Op::Where, &[Some(&c), Some(&a), Some(&b)])?)
}

fn identity(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    one(Val { name: None, ..x })
}

fn gelu(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let op = match n.string("approximate")?.as_deref() {
        None | Some("none") => UnaryOp::Gelu,
        Some("tanh") => UnaryOp::GeluTanh,
        Some(other) => {
            return Err(n.bad_attr(
                "approximate",
                format!("must be `none` or `tanh`, got `{other}`"),
            ));
        }
    };
    unary(imp, n, op)
}

/// `x · sigmoid(alpha · x)`; `Silu` when `alpha` is 1.
fn swish_of(imp: &mut Importer, n: &NodeCx, x: &Val, alpha: f32) -> Result<Val, OnnxError> {
    if alpha == 1.0 {
        return imp.emit1(n, Op::Unary(UnaryOp::Silu), &[Some(x)]);
    }
    let a = Val::tensor(Tensor::from_f32(x.dtype(), vec![], &[alpha]));
    let scaled = imp.emit1(n, Op::Binary(BinaryOp::Mul), &[Some(x), Some(&a)])?;
    let gate = imp.emit1(n, Op::Unary(UnaryOp::Sigmoid), &[Some(&scaled)])?;
    imp.emit1(n, Op::Binary(BinaryOp::Mul), &[Some(x), Some(&gate)])
}

fn swish(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let alpha = n.float("alpha", 1.0)?;
    one(swish_of(imp, n, &x, alpha)?)
}

fn hard_swish(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    // x · max(0, min(1, x/6 + 1/2))
    let x = imp.req(n, 0)?;
    let dt = x.dtype();
    let sixth = Val::tensor(Tensor::from_f32(dt, vec![], &[1.0 / 6.0]));
    let half = Val::tensor(Tensor::from_f32(dt, vec![], &[0.5]));
    let zero = Val::tensor(Tensor::from_f32(dt, vec![], &[0.0]));
    let unit = Val::tensor(Tensor::from_f32(dt, vec![], &[1.0]));
    let t = imp.emit1(n, Op::Binary(BinaryOp::Mul), &[Some(&x), Some(&sixth)])?;
    let t = imp.emit1(n, Op::Binary(BinaryOp::Add), &[Some(&t), Some(&half)])?;
    let t = imp.emit1(n, Op::Clip, &[Some(&t), Some(&zero), Some(&unit)])?;
    one(imp.emit1(n, Op::Binary(BinaryOp::Mul), &[Some(&x), Some(&t)])?)
}

fn swiglu(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let gate = imp.req(n, 0)?;
    let up = imp.req(n, 1)?;
    let alpha = n.float("alpha", 1.0)?;
    if alpha == 1.0 {
        return one(imp.emit1(
            n,
            Op::SwiGlu {
                split: false,
                limit_bits: None,
            },
            &[Some(&gate), Some(&up)],
        )?);
    }
    let g = swish_of(imp, n, &gate, alpha)?;
    one(imp.emit1(n, Op::Binary(BinaryOp::Mul), &[Some(&g), Some(&up)])?)
}
