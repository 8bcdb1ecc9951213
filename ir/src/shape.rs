//! Tensor shapes whose dimensions are concrete numbers or symbolic expressions (`seq`, `seq*2`).
//!
//! Symbolic dimensions let one graph serve every batch size and sequence length. A [`Dim`] built
//! with the constructors ([`Dim::add`], [`Dim::mul`], …) is kept canonical: a sum of products of
//! symbols is rewritten to one normal form (`1+seq-1` is `seq`, `2*seq` is `seq*2`), so two
//! dimensions that are equal as polynomials compare equal with `==`. Divisions, `min` and `max`
//! are kept as written and compared structurally.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A known size.
    Known(u64),
    /// A named size bound at run time (`batch`, `seq`). Shared: copies of a shape's dimensions
    /// (every inferred type) share the name, and equal names from one source compare by address.
    Sym(Arc<str>),
    /// `a + b`.
    Add(Box<Dim>, Box<Dim>),
    /// `a - b` (never negative at run time for a valid graph).
    Sub(Box<Dim>, Box<Dim>),
    /// `a * b`.
    Mul(Box<Dim>, Box<Dim>),
    /// `a / b`, rounded down.
    FloorDiv(Box<Dim>, Box<Dim>),
    /// `ceildiv(a, b)`: `a / b` rounded up.
    CeilDiv(Box<Dim>, Box<Dim>),
    /// `min(a, b)`.
    Min(Box<Dim>, Box<Dim>),
    /// `max(a, b)`.
    Max(Box<Dim>, Box<Dim>),
}

/// Values of the symbols in a graph's shapes, learnt from its inputs at run time.
pub type DimBindings = HashMap<String, u64>;

impl Dim {
    /// A named symbolic dimension.
    pub fn sym(name: impl Into<Arc<str>>) -> Dim {
        Dim::Sym(name.into())
    }

    /// The value if it is known without bindings.
    pub fn as_known(&self) -> Option<u64> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether the dimension contains no symbol.
    pub fn is_known(&self) -> bool {
        matches!(self, Dim::Known(_))
    }

    /// Evaluates the expression with the given symbol values; `None` if a symbol is unbound or a
    /// subtraction would go negative or a division is by zero.
    pub fn eval(&self, bindings: &DimBindings) -> Option<u64> {
        self.eval_with(&|s| bindings.get(s).copied())
    }

    /// [`Dim::eval`] with each symbol's value from `symbol`.
    pub fn eval_with(&self, symbol: &dyn Fn(&str) -> Option<u64>) -> Option<u64> {
        let both = |a: &Dim, b: &Dim| Some((a.eval_with(symbol)?, b.eval_with(symbol)?));
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(s) => symbol(s),
            Dim::Add(a, b) => both(a, b).map(|(a, b)| a + b),
            Dim::Sub(a, b) => both(a, b).and_then(|(a, b)| a.checked_sub(b)),
            Dim::Mul(a, b) => both(a, b).map(|(a, b)| a * b),
            Dim::FloorDiv(a, b) => both(a, b).and_then(|(a, b)| a.checked_div(b)),
            Dim::CeilDiv(a, b) => both(a, b).and_then(|(a, b)| (b != 0).then(|| a.div_ceil(b))),
            Dim::Min(a, b) => both(a, b).map(|(a, b)| a.min(b)),
            Dim::Max(a, b) => both(a, b).map(|(a, b)| a.max(b)),
        }
    }

    /// The symbols this dimension mentions, in order of first appearance.
    pub fn symbols(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_symbols(&mut out);
        out
    }

    fn collect_symbols<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Dim::Known(_) => {}
            Dim::Sym(s) => {
                if !out.contains(&&**s) {
                    out.push(s);
                }
            }
            Dim::Add(a, b)
            | Dim::Sub(a, b)
            | Dim::Mul(a, b)
            | Dim::FloorDiv(a, b)
            | Dim::CeilDiv(a, b)
            | Dim::Min(a, b)
            | Dim::Max(a, b) => {
                a.collect_symbols(out);
                b.collect_symbols(out);
            }
        }
    }

    /// `self + other`, in normal form.
    pub fn add(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(a + b),
            (x, Dim::Known(0)) | (Dim::Known(0), x) => x.clone(),
            _ => Dim::Add(Box::new(self.clone()), Box::new(other.clone())).normalized(),
        }
    }

    /// `self - other`, in normal form (`x - x` is 0).
    pub fn sub(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) if a >= b => Dim::Known(a - b),
            (x, Dim::Known(0)) => x.clone(),
            _ => Dim::Sub(Box::new(self.clone()), Box::new(other.clone())).normalized(),
        }
    }

    /// `self * other`, in normal form (constants on the right: `seq*2`).
    pub fn mul(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(a * b),
            (_, Dim::Known(0)) | (Dim::Known(0), _) => Dim::Known(0),
            (x, Dim::Known(1)) | (Dim::Known(1), x) => x.clone(),
            _ => Dim::Mul(Box::new(self.clone()), Box::new(other.clone())).normalized(),
        }
    }

    /// The expression rewritten to the normal form of its polynomial: monomials in a fixed
    /// order, each `atom*atom*…*coefficient`, positive terms added, negative ones subtracted, the
    /// constant last. Expressions whose polynomial has no positive term (not a valid size) and
    /// those whose coefficients overflow are returned unchanged.
    pub fn normalized(self) -> Dim {
        let Some(poly) = Poly::of(&self) else {
            return self;
        };
        poly.to_dim().unwrap_or(self)
    }

    /// What can be decided about `self` and `other` for every binding of their symbols.
    pub fn relate(&self, other: &Dim) -> DimRelation {
        if self == other {
            return DimRelation::Equal;
        }
        let (Some(a), Some(b)) = (Poly::of(self), Poly::of(other)) else {
            return DimRelation::Unknown;
        };
        match a.minus(&b) {
            None => DimRelation::Unknown,
            Some(diff) if diff.0.is_empty() => DimRelation::Equal,
            Some(diff) if diff.0.keys().all(Vec::is_empty) => DimRelation::Different,
            Some(_) => DimRelation::Unknown,
        }
    }

    /// Whether `self` and `other` are equal for every binding of their symbols.
    pub fn provably_equal(&self, other: &Dim) -> bool {
        self.relate(other) == DimRelation::Equal
    }

    /// `self / other` rounded down, folded when possible (`(x*k)/k` is `x`).
    pub fn floor_div(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) if *b != 0 => Dim::Known(a / b),
            (x, Dim::Known(1)) => x.clone(),
            (Dim::Mul(x, k), b) if **k == *b => (**x).clone(),
            (a, b) if a.provably_equal(b) => Dim::Known(1),
            _ => Dim::FloorDiv(Box::new(self.clone()), Box::new(other.clone())),
        }
    }

    /// `self / other` rounded up, folded when possible.
    pub fn ceil_div(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) if *b != 0 => Dim::Known(a.div_ceil(*b)),
            (x, Dim::Known(1)) => x.clone(),
            (Dim::Mul(x, k), b) if **k == *b => (**x).clone(),
            _ => Dim::CeilDiv(Box::new(self.clone()), Box::new(other.clone())),
        }
    }

    /// `min(self, other)`, folded when possible.
    pub fn min(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(*a.min(b)),
            (a, b) if a.provably_equal(b) => a.clone(),
            _ => Dim::Min(Box::new(self.clone()), Box::new(other.clone())),
        }
    }

    /// `max(self, other)`, folded when possible.
    pub fn max(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => Dim::Known(*a.max(b)),
            (a, b) if a.provably_equal(b) => a.clone(),
            _ => Dim::Max(Box::new(self.clone()), Box::new(other.clone())),
        }
    }

    /// Binding strength when printed: atoms and calls 3, `*` and `/` 2, `+` and `-` 1.
    fn precedence(&self) -> u8 {
        match self {
            Dim::Add(..) | Dim::Sub(..) => 1,
            Dim::Mul(..) | Dim::FloorDiv(..) => 2,
            _ => 3,
        }
    }
}

impl From<u64> for Dim {
    fn from(n: u64) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    /// Prints the expression as the textual IR writes it: `seq`, `seq*2`, `(seq+1)/2`,
    /// `ceildiv(seq, 128)`. Left operands are parenthesised when they bind looser than the
    /// operator, right operands when they bind no tighter (the operators are left-associative).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operand = |f: &mut fmt::Formatter<'_>, d: &Dim, min: u8| {
            if d.precedence() < min {
                write!(f, "({d})")
            } else {
                write!(f, "{d}")
            }
        };
        let infix = |f: &mut fmt::Formatter<'_>, a: &Dim, op: &str, b: &Dim, prec: u8| {
            operand(f, a, prec)?;
            f.write_str(op)?;
            operand(f, b, prec + 1)
        };
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Add(a, b) => infix(f, a, "+", b, 1),
            Dim::Sub(a, b) => infix(f, a, "-", b, 1),
            Dim::Mul(a, b) => infix(f, a, "*", b, 2),
            Dim::FloorDiv(a, b) => infix(f, a, "/", b, 2),
            Dim::CeilDiv(a, b) => write!(f, "ceildiv({a}, {b})"),
            Dim::Min(a, b) => write!(f, "min({a}, {b})"),
            Dim::Max(a, b) => write!(f, "max({a}, {b})"),
        }
    }
}

/// What can be decided about two dimension expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimRelation {
    /// Equal for every binding of the symbols.
    Equal,
    /// Different for every binding (they differ by a non-zero constant).
    Different,
    /// Neither could be shown.
    Unknown,
}

/// A factor of a monomial: a symbol, or a sub-expression that is not a polynomial (a division,
/// `min`, `max`), compared structurally.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Atom<'d> {
    Sym(&'d Arc<str>),
    Opaque(&'d Dim),
}

impl Atom<'_> {
    fn to_dim(&self) -> Dim {
        match self {
            Atom::Sym(s) => Dim::Sym(Arc::clone(s)),
            Atom::Opaque(d) => (*d).clone(),
        }
    }
}

/// A polynomial with integer coefficients: sorted monomials (the constant term has no factors)
/// to non-zero coefficients.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Poly<'d>(BTreeMap<Vec<Atom<'d>>, i128>);

impl<'d> Poly<'d> {
    /// The normal form of `d`, or `None` if a coefficient overflows.
    fn of(d: &'d Dim) -> Option<Poly<'d>> {
        let atom = |a: Atom<'d>| Poly(BTreeMap::from([(vec![a], 1)]));
        match d {
            Dim::Known(0) => Some(Poly(BTreeMap::new())),
            Dim::Known(n) => Some(Poly(BTreeMap::from([(Vec::new(), i128::from(*n))]))),
            Dim::Sym(s) => Some(atom(Atom::Sym(s))),
            Dim::Add(a, b) => Poly::of(a)?.plus(&Poly::of(b)?, 1),
            Dim::Sub(a, b) => Poly::of(a)?.minus(&Poly::of(b)?),
            Dim::Mul(a, b) => Poly::of(a)?.times(&Poly::of(b)?),
            _ => Some(atom(Atom::Opaque(d))),
        }
    }

    /// `self + sign·other`.
    fn plus(mut self, other: &Poly<'d>, sign: i128) -> Option<Poly<'d>> {
        for (m, c) in &other.0 {
            let entry = self.0.entry(m.clone()).or_insert(0);
            *entry = entry.checked_add(c.checked_mul(sign)?)?;
            if *entry == 0 {
                self.0.remove(m);
            }
        }
        Some(self)
    }

    fn minus(&self, other: &Poly<'d>) -> Option<Poly<'d>> {
        self.clone().plus(other, -1)
    }

    fn times(&self, other: &Poly<'d>) -> Option<Poly<'d>> {
        let mut out = Poly(BTreeMap::new());
        for (ma, ca) in &self.0 {
            for (mb, cb) in &other.0 {
                let mut m = ma.clone();
                m.extend(mb.iter().cloned());
                m.sort();
                out = out.plus(&Poly(BTreeMap::from([(m, ca.checked_mul(*cb)?)])), 1)?;
            }
        }
        Some(out)
    }

    /// The polynomial as a `Dim` in normal form, or `None` when it has no positive term.
    fn to_dim(&self) -> Option<Dim> {
        let term = |atoms: &[Atom<'d>], magnitude: u64| -> Dim {
            let mut product: Option<Dim> = None;
            for a in atoms {
                let a = a.to_dim();
                product = Some(match product {
                    None => a,
                    Some(p) => Dim::Mul(Box::new(p), Box::new(a)),
                });
            }
            match product {
                None => Dim::Known(magnitude),
                Some(p) if magnitude == 1 => p,
                Some(p) => Dim::Mul(Box::new(p), Box::new(Dim::Known(magnitude))),
            }
        };
        // Symbolic monomials in order, then the constant.
        let mut terms: Vec<(&Vec<Atom<'d>>, i128)> = self
            .0
            .iter()
            .filter(|(m, _)| !m.is_empty())
            .map(|(m, c)| (m, *c))
            .collect();
        if let Some(c) = self.0.get(&Vec::new()) {
            terms.push((&EMPTY_MONOMIAL, *c));
        }
        if terms.is_empty() {
            return Some(Dim::Known(0));
        }
        let first = terms.iter().position(|(_, c)| *c > 0)?;
        let magnitude = |c: i128| u64::try_from(c.unsigned_abs()).ok();
        let (m, c) = terms.remove(first);
        let mut acc = term(m, magnitude(c)?);
        for (m, c) in terms {
            let t = term(m, magnitude(c)?);
            acc = if c > 0 {
                Dim::Add(Box::new(acc), Box::new(t))
            } else {
                Dim::Sub(Box::new(acc), Box::new(t))
            };
        }
        Some(acc)
    }
}

/// The monomial of the constant term.
static EMPTY_MONOMIAL: Vec<Atom<'static>> = Vec::new();

/// A tensor shape: one [`Dim`] per axis; rank 0 is a scalar.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape of known sizes.
    pub fn known(dims: &[u64]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    /// The scalar shape `[]`.
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dimensions.
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The sizes if every dimension is known.
    pub fn as_known(&self) -> Option<Vec<u64>> {
        self.0.iter().map(Dim::as_known).collect()
    }

    /// The sizes under the given bindings.
    pub fn eval(&self, bindings: &DimBindings) -> Option<Vec<u64>> {
        self.0.iter().map(|d| d.eval(bindings)).collect()
    }

    /// The element count as a dimension expression.
    pub fn numel(&self) -> Dim {
        self.0.iter().fold(Dim::Known(1), |acc, d| acc.mul(d))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(dims: Vec<Dim>) -> Shape {
        Shape(dims)
    }
}

/// Turns a possibly negative axis into an index in `0..rank`; `None` if out of range.
pub fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let rank = rank as i64;
    let axis = if axis < 0 { axis + rank } else { axis };
    (0..rank).contains(&axis).then_some(axis as usize)
}

/// The numpy-broadcast shape of two shapes, or `None` if they do not broadcast. A dimension of
/// known size 1 stretches; two symbolic dimensions must be equal expressions.
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Option<Shape> {
    let rank = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = (i + a.rank()).checked_sub(rank).map(|j| &a.0[j]);
        let db = (i + b.rank()).checked_sub(rank).map(|j| &b.0[j]);
        let d = match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) if x.provably_equal(y) => x.clone(),
            (Some(Dim::Known(1)), Some(y)) => y.clone(),
            (Some(x), Some(Dim::Known(1))) => x.clone(),
            _ => return None,
        };
        out.push(d);
    }
    Some(Shape(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_keeps_expressions_canonical() {
        let seq = Dim::sym("seq");
        assert_eq!(seq.mul(&Dim::Known(2)).to_string(), "seq*2");
        assert_eq!(Dim::Known(2).mul(&seq).to_string(), "seq*2");
        assert_eq!(seq.mul(&Dim::Known(2)).floor_div(&Dim::Known(2)), seq);
        assert_eq!(seq.add(&Dim::Known(1)).sub(&Dim::Known(1)), seq);
        assert_eq!(Dim::Known(6).ceil_div(&Dim::Known(4)), Dim::Known(2));
        let one_plus = Dim::Known(1).add(&seq);
        assert_eq!(one_plus.sub(&Dim::Known(1)), seq);
        assert_eq!(one_plus.to_string(), "seq+1");
        let b = Dim::sym("batch");
        assert_eq!(seq.mul(&b), b.mul(&seq));
        assert_eq!(seq.mul(&b).to_string(), "batch*seq");
        assert_eq!(seq.sub(&Dim::Known(3)).to_string(), "seq-3");
    }

    #[test]
    fn relations_between_dims() {
        let seq = Dim::sym("seq");
        let a = Dim::Add(Box::new(Dim::Known(1)), Box::new(seq.clone()));
        let a = Dim::Sub(Box::new(a), Box::new(Dim::Known(1)));
        assert_eq!(a.relate(&seq), DimRelation::Equal);
        assert_eq!(seq.add(&Dim::Known(2)).relate(&seq), DimRelation::Different);
        assert_eq!(seq.relate(&Dim::sym("t")), DimRelation::Unknown);
        let div = seq.floor_div(&Dim::Known(2));
        assert_eq!(div.add(&seq).sub(&seq), div);
    }

    #[test]
    fn printing_parenthesises_by_precedence() {
        let seq = Dim::sym("seq");
        let e = seq.add(&Dim::Known(1)).floor_div(&Dim::Known(2));
        assert_eq!(e.to_string(), "(seq+1)/2");
        let e = Dim::Sub(
            Box::new(seq.clone()),
            Box::new(Dim::sym("pad").sub(&Dim::Known(1))),
        );
        assert_eq!(e.to_string(), "seq-(pad-1)");
    }

    #[test]
    fn eval_with_bindings() {
        let e = Dim::sym("seq").mul(&Dim::sym("batch")).add(&Dim::Known(3));
        let b: DimBindings = [("seq".into(), 5), ("batch".into(), 2)].into();
        assert_eq!(e.eval(&b), Some(13));
        assert_eq!(e.eval(&DimBindings::new()), None);
    }

    #[test]
    fn broadcasting() {
        let a = Shape(vec![Dim::sym("b"), Dim::Known(1), Dim::Known(4)]);
        let b = Shape::known(&[3, 1]);
        let c = broadcast_shapes(&a, &b).unwrap();
        assert_eq!(c.to_string(), "[b, 3, 4]");
        assert!(broadcast_shapes(&Shape::known(&[2]), &Shape::known(&[3])).is_none());
    }

    #[test]
    fn axes() {
        assert_eq!(normalize_axis(-1, 3), Some(2));
        assert_eq!(normalize_axis(3, 3), None);
        assert_eq!(normalize_axis(-4, 3), None);
    }
}
