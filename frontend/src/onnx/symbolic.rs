//! Values known at import time: constant tensors, and shape-like integer vectors whose elements
//! may be symbolic dimensions.
//!
//! Exported models compute `Reshape`/`Expand` targets at run time from `Shape`; tracking these
//! vectors lets the importer fold `Shape → Gather/Slice → Concat → ...` chains into static
//! (possibly symbolic) attributes.

use cubevec_ir::{DType, Dim, Tensor};

/// One element of a shape-like integer vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymInt {
    /// A known integer (possibly negative, like the `-1` of a reshape target).
    Int(i64),
    /// A symbolic, non-negative dimension (never [`Dim::Known`]).
    Dim(Dim),
}

impl SymInt {
    /// The element for a dimension: known sizes become [`SymInt::Int`].
    pub fn from_dim(d: &Dim) -> SymInt {
        match d.as_known().and_then(|v| i64::try_from(v).ok()) {
            Some(v) => SymInt::Int(v),
            None => SymInt::Dim(d.clone()),
        }
    }

    /// The element as a dimension, when it is non-negative.
    pub fn to_dim(&self) -> Option<Dim> {
        match self {
            SymInt::Int(v) => u64::try_from(*v).ok().map(Dim::Known),
            SymInt::Dim(d) => Some(d.clone()),
        }
    }

    /// The element as a known integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            SymInt::Int(v) => Some(*v),
            SymInt::Dim(_) => None,
        }
    }
}

/// A value whose contents are known at import time.
#[derive(Clone, Debug, PartialEq)]
pub enum Known {
    /// Every element is known.
    Tensor(Tensor),
    /// An integer scalar (`scalar`) or vector some of whose elements are symbolic dimensions.
    Ints {
        /// The elements.
        values: Vec<SymInt>,
        /// Rank 0 (one element) rather than rank 1.
        scalar: bool,
        /// The integer dtype.
        dtype: DType,
    },
}

impl Known {
    /// A shape-like vector from dimensions, as `Shape` produces it.
    pub fn from_dims(dims: &[Dim]) -> Known {
        Known::Ints {
            values: dims.iter().map(SymInt::from_dim).collect(),
            scalar: false,
            dtype: DType::I64,
        }
        .normalized()
    }

    /// Turns an all-known `Ints` into a `Tensor`, so constant folding applies.
    pub fn normalized(self) -> Known {
        match self {
            Known::Ints {
                values,
                scalar,
                dtype,
            } if values.iter().all(|v| v.as_int().is_some()) => {
                let ints: Vec<i64> = values.iter().filter_map(SymInt::as_int).collect();
                let shape = if scalar { vec![] } else { vec![ints.len()] };
                Known::Tensor(Tensor::from_i64(dtype, shape, &ints))
            }
            other => other,
        }
    }

    /// The fully known tensor, if any.
    pub fn tensor(&self) -> Option<&Tensor> {
        match self {
            Known::Tensor(t) => Some(t),
            Known::Ints { .. } => None,
        }
    }

    /// The value as integer elements, when it is an integer tensor of rank 0 or 1 or an `Ints`:
    /// `(elements, is_scalar, dtype)`.
    pub fn ints(&self) -> Option<(Vec<SymInt>, bool, DType)> {
        match self {
            Known::Ints {
                values,
                scalar,
                dtype,
            } => Some((values.clone(), *scalar, *dtype)),
            Known::Tensor(t) if t.dtype().is_int() && t.shape().len() <= 1 => Some((
                t.to_i64_vec().into_iter().map(SymInt::Int).collect(),
                t.shape().is_empty(),
                t.dtype(),
            )),
            Known::Tensor(_) => None,
        }
    }
}

/// Splits a product of dimensions into its constant coefficient and its other factors.
fn factors(d: &Dim, coefficient: &mut Option<u64>, symbols: &mut Vec<Dim>) {
    match d {
        Dim::Known(n) => *coefficient = coefficient.and_then(|c| c.checked_mul(*n)),
        Dim::Mul(a, b) => {
            factors(a, coefficient, symbols);
            factors(b, coefficient, symbols);
        }
        other => symbols.push(other.clone()),
    }
}

/// `num / den` when `den`'s factors all cancel against `num`'s (`batch*seq*8 / 4` is
/// `batch*seq*2`); `None` when the division is not exact in that sense.
pub fn div_exact(num: &Dim, den: &Dim) -> Option<Dim> {
    let (mut cn, mut fn_) = (Some(1u64), Vec::new());
    let (mut cd, mut fd) = (Some(1u64), Vec::new());
    factors(num, &mut cn, &mut fn_);
    factors(den, &mut cd, &mut fd);
    let (cn, cd) = (cn?, cd?);
    if cd == 0 || cn % cd != 0 {
        return None;
    }
    for f in fd {
        let at = fn_.iter().position(|g| *g == f)?;
        fn_.remove(at);
    }
    let product = fn_.iter().fold(Dim::Known(1), |acc, f| acc.mul(f));
    Some(product.mul(&Dim::Known(cn / cd)))
}

/// An elementwise integer operation folded on symbolic elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (operands non-negative: floor).
    Div,
    /// `max(a, b)`.
    Max,
    /// `min(a, b)`.
    Min,
}

/// Folds `a op b` on two elements; `None` when the result cannot be expressed (a symbolic
/// dimension combined with a negative number, a division by zero).
pub fn fold_int(op: IntOp, a: &SymInt, b: &SymInt) -> Option<SymInt> {
    if let (SymInt::Int(x), SymInt::Int(y)) = (a, b) {
        let v = match op {
            IntOp::Add => x.checked_add(*y)?,
            IntOp::Sub => x.checked_sub(*y)?,
            IntOp::Mul => x.checked_mul(*y)?,
            IntOp::Div => {
                if *y == 0 {
                    return None;
                }
                // ONNX integer division truncates toward zero.
                x / y
            }
            IntOp::Max => *x.max(y),
            IntOp::Min => *x.min(y),
        };
        return Some(SymInt::Int(v));
    }
    let (x, y) = (a.to_dim()?, b.to_dim()?);
    let d = match op {
        IntOp::Add => x.add(&y),
        IntOp::Sub => x.sub(&y),
        IntOp::Mul => x.mul(&y),
        IntOp::Div => {
            if y == Dim::Known(0) {
                return None;
            }
            x.floor_div(&y)
        }
        IntOp::Max => Dim::max(&x, &y),
        IntOp::Min => Dim::min(&x, &y),
    };
    Some(SymInt::from_dim(&d))
}

/// Folds an elementwise operation over two integer vectors with numpy broadcasting of rank ≤ 1.
pub fn fold_ints(
    op: IntOp,
    a: &(Vec<SymInt>, bool, DType),
    b: &(Vec<SymInt>, bool, DType),
) -> Option<Known> {
    let (n, m) = (a.0.len(), b.0.len());
    let len = if n == m {
        n
    } else if n == 1 {
        m
    } else if m == 1 {
        n
    } else {
        return None;
    };
    let values = (0..len)
        .map(|i| fold_int(op, &a.0[i.min(n - 1)], &b.0[i.min(m - 1)]))
        .collect::<Option<Vec<_>>>()?;
    Some(
        Known::Ints {
            values,
            scalar: a.1 && b.1,
            dtype: a.2,
        }
        .normalized(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_arithmetic_folds_symbols() {
        let seq = Dim::sym("seq");
        let shape = (
            vec![SymInt::Int(2), SymInt::Dim(seq.clone())],
            false,
            DType::I64,
        );
        let two = (vec![SymInt::Int(2)], true, DType::I64);
        let Some(Known::Ints { values, .. }) = fold_ints(IntOp::Mul, &shape, &two) else {
            panic!("expected symbolic ints");
        };
        assert_eq!(
            values,
            vec![SymInt::Int(4), SymInt::Dim(seq.mul(&Dim::Known(2)))]
        );
        let minus = (vec![SymInt::Int(-1)], true, DType::I64);
        assert!(fold_ints(IntOp::Add, &shape, &minus).is_none());
    }

    #[test]
    fn exact_division_cancels_factors() {
        let (b, s) = (Dim::sym("batch"), Dim::sym("seq"));
        let num = b.mul(&s).mul(&Dim::Known(2)).mul(&Dim::Known(64));
        let den = Dim::Known(128);
        assert_eq!(div_exact(&num, &den), Some(b.mul(&s)));
        assert_eq!(
            div_exact(&num, &s.mul(&Dim::Known(4))),
            Some(b.mul(&Dim::Known(32)))
        );
        assert_eq!(div_exact(&num, &Dim::Known(3)), None);
        assert_eq!(div_exact(&num, &Dim::sym("other")), None);
    }

    #[test]
    fn all_known_ints_become_tensors() {
        let k = Known::from_dims(&[Dim::Known(3), Dim::Known(4)]);
        assert_eq!(k.tensor().map(|t| t.to_i64_vec()), Some(vec![3, 4]));
    }
}
