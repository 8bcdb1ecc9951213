//! Matrix products: `MatMul`, `Gemm`, `Einsum`.

use std::collections::BTreeMap;

use cubevec_ir::Op;

use super::{OpSpec, one, spec};
use crate::onnx::context::{Importer, NodeCx, Val};
use crate::onnx::error::OnnxError;

/// The matrix-product importers.
pub const OPS: &[OpSpec] = &[
    spec("MatMul", &[1, 9, 13], matmul),
    spec("Gemm", &[1, 6, 7, 9, 11, 13], gemm),
    spec("Einsum", &[12, 28], einsum),
];

fn matmul(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let a = imp.req(n, 0)?;
    let b = imp.req(n, 1)?;
    one(imp.emit1(n, Op::MatMul, &[Some(&a), Some(&b)])?)
}

fn gemm(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let a = imp.req(n, 0)?;
    let b = imp.req(n, 1)?;
    let c = imp.input(n, 2)?;
    let op = Op::Gemm {
        alpha_bits: n.float("alpha", 1.0)?.to_bits(),
        beta_bits: n.float("beta", 1.0)?.to_bits(),
        trans_a: n.flag("transA", false)?,
        trans_b: n.flag("transB", false)?,
    };
    one(imp.emit1(n, op, &[Some(&a), Some(&b), c.as_ref()])?)
}

/// Makes an implicit-output equation explicit: the output lists the labels that appear once,
/// in alphabetical order, after any ellipsis.
pub fn explicit_equation(equation: &str) -> String {
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    if equation.contains("->") {
        return equation;
    }
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for c in equation.chars().filter(|c| c.is_ascii_alphabetic()) {
        *counts.entry(c).or_default() += 1;
    }
    let mut out = String::new();
    if equation.contains("...") {
        out.push_str("...");
    }
    out.extend(counts.iter().filter(|(_, n)| **n == 1).map(|(c, _)| *c));
    format!("{equation}->{out}")
}

fn einsum(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let equation = n
        .string("equation")?
        .ok_or_else(|| n.bad_attr("equation", "required but absent"))?;
    let mut inputs = Vec::with_capacity(n.num_inputs());
    for i in 0..n.num_inputs() {
        inputs.push(imp.req(n, i)?);
    }
    let refs: Vec<Option<&Val>> = inputs.iter().map(Some).collect();
    let op = Op::Einsum {
        equation: explicit_equation(&equation),
    };
    one(imp.emit1(n, op, &refs)?)
}

#[cfg(test)]
mod tests {
    use super::explicit_equation;

    #[test]
    fn implicit_einsum_outputs_are_sorted_single_labels() {
        assert_eq!(explicit_equation("ij,jk"), "ij,jk->ik");
        assert_eq!(explicit_equation("ba"), "ba->ab");
        assert_eq!(explicit_equation("...ii"), "...ii->...");
        assert_eq!(explicit_equation("ij -> ji"), "ij->ji");
    }
}
