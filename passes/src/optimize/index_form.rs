//! Index facts: what an integer or bool tensor computed from shapes alone holds, as a function of
//! each element's coordinates.
//!
//! Exporters build position ids, masks and gather indices from `range`, broadcasts, slices,
//! concatenations and comparisons. An [`IndexForm`] states the value of every element of such a
//! tensor exactly: an integer tensor whose element at `x` is `c + Σ aₖ·xₖ` ([`Affine`]), a bool
//! tensor whose element is `affine(x) ⋈ 0` ([`IndexForm::Pred`]), or a bool constant. [`transfer`]
//! derives the form of an op's results from the forms of its operands; it is used on the whole
//! graph before segmentation ([`graph_forms`], so a segment knows what its parameters hold) and by
//! the e-graph analysis for every e-node. Rules read the facts to prove, for example, that a mask
//! is causal rather than assuming it from its name or shape.
//!
//! Every fact holds for every binding of the symbolic dimensions. Where an offset along an axis
//! is symbolic (a concatenation after a piece of size `min(seq, 1)`), it is evaluated under the
//! assumption that the piece it positions is non-empty — the only case in which its elements
//! exist — which makes each symbol of that piece's size at least 1.

use cubevec_ir::graph::TensorType;
use cubevec_ir::op::{BinaryOp, Op, UnaryOp};
use cubevec_ir::shape::normalize_axis;
use cubevec_ir::{DType, Dim, Shape};

use super::language::ConstTensor;

/// `constant + Σ coeffs[k]·x[k]` over the coordinates `x` of a tensor (one coefficient per axis).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Affine {
    /// The value at the origin.
    pub constant: i64,
    /// The change per step along each axis.
    pub coeffs: Vec<i64>,
}

impl Affine {
    /// The same value `c` everywhere in a tensor of rank `rank`.
    pub fn splat(c: i64, rank: usize) -> Affine {
        Affine {
            constant: c,
            coeffs: vec![0; rank],
        }
    }

    /// Whether every element is the same.
    pub fn is_constant(&self) -> bool {
        self.coeffs.iter().all(|&a| a == 0)
    }

    fn zip(&self, other: &Affine, f: impl Fn(i64, i64) -> Option<i64>) -> Option<Affine> {
        if self.coeffs.len() != other.coeffs.len() {
            return None;
        }
        Some(Affine {
            constant: f(self.constant, other.constant)?,
            coeffs: self
                .coeffs
                .iter()
                .zip(&other.coeffs)
                .map(|(&a, &b)| f(a, b))
                .collect::<Option<_>>()?,
        })
    }

    fn scaled(&self, k: i64) -> Option<Affine> {
        Some(Affine {
            constant: self.constant.checked_mul(k)?,
            coeffs: self
                .coeffs
                .iter()
                .map(|&a| a.checked_mul(k))
                .collect::<Option<_>>()?,
        })
    }

    /// Whether every element is at least 0 (a sufficient condition: coordinates are never
    /// negative).
    fn non_negative(&self) -> bool {
        self.constant >= 0 && self.coeffs.iter().all(|&a| a >= 0)
    }
}

/// How a predicate compares its affine function with zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cmp {
    /// `f(x) == 0`.
    Eq,
    /// `f(x) != 0`.
    Ne,
    /// `f(x) < 0`.
    Lt,
    /// `f(x) <= 0`.
    Le,
}

/// The exact content of an `i64` or bool tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexForm {
    /// Integer elements given by an affine function of the coordinates.
    Affine(Affine),
    /// Integer elements of a tensor whose last axis has `rows.len()` entries: entry `j` is
    /// `rows[j]` of the coordinates (whose last coefficient is 0). The index tuples of a
    /// `gather_nd` are of this form.
    Rows(Vec<Affine>),
    /// Bool elements `f(x) ⋈ 0`.
    Pred(Affine, Cmp),
    /// The same bool everywhere.
    Truth(bool),
}

impl IndexForm {
    /// A predicate, folded to [`IndexForm::Truth`] when it does not depend on the coordinates.
    pub fn pred(f: Affine, cmp: Cmp) -> IndexForm {
        if !f.is_constant() {
            return IndexForm::Pred(f, cmp);
        }
        let c = f.constant;
        IndexForm::Truth(match cmp {
            Cmp::Eq => c == 0,
            Cmp::Ne => c != 0,
            Cmp::Lt => c < 0,
            Cmp::Le => c <= 0,
        })
    }

    /// The logical negation of a bool form.
    pub fn not(&self) -> Option<IndexForm> {
        Some(match self {
            IndexForm::Truth(b) => IndexForm::Truth(!b),
            // ¬(f = 0) is f ≠ 0; ¬(f < 0) is -f ≤ 0; ¬(f ≤ 0) is -f < 0.
            IndexForm::Pred(f, Cmp::Eq) => IndexForm::Pred(f.clone(), Cmp::Ne),
            IndexForm::Pred(f, Cmp::Ne) => IndexForm::Pred(f.clone(), Cmp::Eq),
            IndexForm::Pred(f, Cmp::Lt) => IndexForm::Pred(f.scaled(-1)?, Cmp::Le),
            IndexForm::Pred(f, Cmp::Le) => IndexForm::Pred(f.scaled(-1)?, Cmp::Lt),
            IndexForm::Affine(_) | IndexForm::Rows(_) => return None,
        })
    }

    /// The form with the coefficients of axes of extent 1 set to 0 (their coordinate is always
    /// 0), so equal contents have equal forms more often; `None` if a number exceeds [`LIMIT`]
    /// or the rank is above 8.
    fn canonical(self, shape: &Shape) -> Option<IndexForm> {
        if shape.rank() > 8 {
            return None;
        }
        let fix = |mut f: Affine| {
            for (a, d) in f.coeffs.iter_mut().zip(shape.dims()) {
                if *d == Dim::Known(1) {
                    *a = 0;
                }
            }
            let small = f.constant.abs() <= LIMIT && f.coeffs.iter().all(|a| a.abs() <= LIMIT);
            small.then_some(f)
        };
        Some(match self {
            IndexForm::Affine(f) => IndexForm::Affine(fix(f)?),
            IndexForm::Pred(f, c) => IndexForm::pred(fix(f)?, c),
            IndexForm::Rows(rows) => {
                IndexForm::Rows(rows.into_iter().map(fix).collect::<Option<_>>()?)
            }
            IndexForm::Truth(b) => IndexForm::Truth(b),
        })
    }

    /// The form as seen through a map of coordinates: result axis `i` reads operand axis
    /// `from[i]` (`None`: an axis the operand does not have, or of extent 1 there).
    fn remap(&self, from: &[Option<usize>]) -> Option<IndexForm> {
        let map = |f: &Affine| Affine {
            constant: f.constant,
            coeffs: from
                .iter()
                .map(|a| a.and_then(|a| f.coeffs.get(a).copied()).unwrap_or(0))
                .collect(),
        };
        Some(match self {
            IndexForm::Affine(f) => IndexForm::Affine(map(f)),
            IndexForm::Pred(f, c) => IndexForm::Pred(map(f), *c),
            IndexForm::Truth(b) => IndexForm::Truth(*b),
            IndexForm::Rows(_) => return None,
        })
    }
}

/// Whether tensors of this dtype carry forms.
fn tracked(dtype: DType) -> bool {
    matches!(dtype, DType::I64 | DType::Bool)
}

/// The largest magnitude of a constant or coefficient kept in a form. With coordinates below
/// 2³² and at most 8 axes no element of a form can reach 2⁶³, so the `i64` arithmetic the graph
/// does never wraps where the form says it does not.
const LIMIT: i64 = 1 << 24;

/// The form of a constant: a bool splat or lower triangle, or integers that are an affine
/// function of their coordinates.
pub fn of_constant(c: &ConstTensor) -> Option<IndexForm> {
    if !tracked(c.dtype) {
        return None;
    }
    let t = c.to_tensor();
    if c.dtype == DType::Bool {
        let values = t.to_bool_vec();
        let first = *values.first()?;
        return if c.splat_value().is_some() {
            Some(IndexForm::Truth(first))
        } else {
            triangle(&values, &c.shape)
        };
    }
    let values = t.to_i64_vec();
    let origin = *values.first()?;
    let rank = c.shape.len();
    let mut strides = vec![1usize; rank];
    for k in (0..rank.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * c.shape[k + 1];
    }
    let coeffs: Vec<i64> = (0..rank)
        .map(|k| {
            if c.shape[k] > 1 {
                values[strides[k]].checked_sub(origin)
            } else {
                Some(0)
            }
        })
        .collect::<Option<_>>()?;
    let f = Affine {
        constant: origin,
        coeffs,
    };
    let fits = values.iter().enumerate().all(|(i, &v)| {
        let expected = strides.iter().zip(&c.shape).zip(&f.coeffs).try_fold(
            f.constant,
            |e, ((&stride, &size), &a)| {
                let x = ((i / stride) % size) as i64;
                a.checked_mul(x).and_then(|p| e.checked_add(p))
            },
        );
        expected == Some(v)
    });
    let shape = Shape(c.shape.iter().map(|&d| Dim::Known(d as u64)).collect());
    fits.then_some(IndexForm::Affine(f))?.canonical(&shape)
}

/// The bool elements as `j - i + c ≤ 0` over the last two axes `(i, j)` (the same for every
/// leading index), if they are such a triangle.
fn triangle(values: &[bool], shape: &[usize]) -> Option<IndexForm> {
    let r = shape.len();
    let (rows, cols) = (*shape.get(r.checked_sub(2)?)?, *shape.last()?);
    let holds = |c: i64| {
        values.iter().enumerate().all(|(k, &b)| {
            let (i, j) = (((k / cols) % rows) as i64, (k % cols) as i64);
            b == (j - i + c <= 0)
        })
    };
    // Outside this range of `c` the elements would all be equal (a splat).
    let c = (-(cols as i64)..=rows as i64).find(|&c| holds(c))?;
    let mut coeffs = vec![0; r];
    coeffs[r - 2] = -1;
    coeffs[r - 1] = 1;
    Some(IndexForm::Pred(
        Affine {
            constant: c,
            coeffs,
        },
        Cmp::Le,
    ))
}

/// The forms of an op's results (one per result) from its operands' forms and types.
pub fn transfer(
    op: &Op,
    forms: &[Option<&IndexForm>],
    types: &[Option<&TensorType>],
    results: &[TensorType],
) -> Vec<Option<IndexForm>> {
    let mut out = vec![None; results.len()];
    if let Op::Split { axis, sizes } = op {
        let (Some(Some(form)), Some(Some(ty))) = (forms.first(), types.first()) else {
            return out;
        };
        let mut offset = Dim::Known(0);
        for (i, size) in sizes.iter().enumerate() {
            if let Some(result) = results.get(i)
                && tracked(result.dtype)
            {
                out[i] = shifted(form, ty, *axis, &offset, &result.shape)
                    .and_then(|f| f.canonical(&result.shape));
            }
            offset = offset.add(size);
        }
        return out;
    }
    if let [result] = results
        && tracked(result.dtype)
    {
        out[0] = single(op, forms, types, result).and_then(|f| f.canonical(&result.shape));
    }
    out
}

/// The form of the result of a single-result op.
fn single(
    op: &Op,
    forms: &[Option<&IndexForm>],
    types: &[Option<&TensorType>],
    result: &TensorType,
) -> Option<IndexForm> {
    let form = |i: usize| forms.get(i).copied().flatten();
    let ty = |i: usize| types.get(i).copied().flatten();
    // Operand `i` broadcast to the result's shape.
    let operand = |i: usize| -> Option<IndexForm> { broadcast(form(i)?, ty(i)?, &result.shape) };
    let rank = result.shape.rank();
    match op {
        Op::Unary(UnaryOp::Not) => form(0)?.not(),
        Op::Unary(UnaryOp::Neg) => match form(0)? {
            IndexForm::Affine(f) => Some(IndexForm::Affine(f.scaled(-1)?)),
            _ => None,
        },
        Op::Binary(b) => binary(*b, operand(0)?, operand(1)?, ty(0)?.dtype),
        Op::Where => match form(0)? {
            IndexForm::Truth(true) => operand(1),
            IndexForm::Truth(false) => operand(2),
            _ => None,
        },
        Op::Cast { to } => cast(form(0)?, ty(0)?.dtype, *to, rank),
        Op::Reshape { .. } => reshape(form(0)?, &ty(0)?.shape, &result.shape),
        Op::Unsqueeze { axes } => {
            let inserted: Vec<usize> = axes
                .iter()
                .map(|&a| normalize_axis(a, rank))
                .collect::<Option<_>>()?;
            let mut next = 0;
            let from: Vec<Option<usize>> = (0..rank)
                .map(|i| {
                    (!inserted.contains(&i)).then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect();
            form(0)?.remap(&from)
        }
        Op::Squeeze { axes } => {
            let in_rank = ty(0)?.shape.rank();
            let removed: Vec<usize> = axes
                .iter()
                .map(|&a| normalize_axis(a, in_rank))
                .collect::<Option<_>>()?;
            let from: Vec<Option<usize>> = (0..in_rank)
                .filter(|k| !removed.contains(k))
                .map(Some)
                .collect();
            if from.len() != rank {
                return None;
            }
            form(0)?.remap(&from)
        }
        Op::Expand { .. } => operand(0),
        Op::Transpose { perm } => {
            let from: Vec<Option<usize>> = perm.iter().map(|&p| Some(p as usize)).collect();
            form(0)?.remap(&from)
        }
        Op::Slice {
            axes,
            starts,
            steps,
            ..
        } => slice(form(0)?, &ty(0)?.shape, axes, starts, steps),
        Op::Concat { axis } => concat(forms, types, *axis, result),
        Op::GatherNd { batch_dims: 0 } => gather_nd(form(0), ty(0)?, form(1), ty(1)?, rank),
        Op::Range { .. } => match (form(0)?, form(2)?) {
            (IndexForm::Affine(start), IndexForm::Affine(delta))
                if start.coeffs.is_empty() && delta.coeffs.is_empty() =>
            {
                Some(IndexForm::Affine(Affine {
                    constant: start.constant,
                    coeffs: vec![delta.constant],
                }))
            }
            _ => None,
        },
        Op::CumSum {
            axis,
            exclusive,
            reverse,
        } => {
            let IndexForm::Affine(f) = form(0)? else {
                return None;
            };
            let axis = normalize_axis(*axis, rank)?;
            // Only a constant `c` has an affine running sum: `c·(x+1)`, or `c·x` exclusive.
            if !f.is_constant() || (*reverse && f.constant != 0) {
                return None;
            }
            let mut g = Affine::splat(if *exclusive { 0 } else { f.constant }, rank);
            g.coeffs[axis] = f.constant;
            Some(IndexForm::Affine(g))
        }
        _ => None,
    }
}

/// `a ⋄ b` for operands already broadcast to the result.
fn binary(op: BinaryOp, a: IndexForm, b: IndexForm, operand: DType) -> Option<IndexForm> {
    use IndexForm::{Affine as A, Truth};
    match (op, a, b) {
        (BinaryOp::Add, A(a), A(b)) => Some(A(a.zip(&b, i64::checked_add)?)),
        (BinaryOp::Sub, A(a), A(b)) => Some(A(a.zip(&b, i64::checked_sub)?)),
        (BinaryOp::Mul, A(a), A(b)) if b.is_constant() => Some(A(a.scaled(b.constant)?)),
        (BinaryOp::Mul, A(a), A(b)) if a.is_constant() => Some(A(b.scaled(a.constant)?)),
        (cmp, A(a), A(b)) if cmp.is_comparison() && operand != DType::Bool => {
            let d = a.zip(&b, i64::checked_sub)?;
            Some(match cmp {
                BinaryOp::Equal => IndexForm::pred(d, Cmp::Eq),
                BinaryOp::Less => IndexForm::pred(d, Cmp::Lt),
                BinaryOp::LessOrEqual => IndexForm::pred(d, Cmp::Le),
                BinaryOp::Greater => IndexForm::pred(d.scaled(-1)?, Cmp::Lt),
                _ => IndexForm::pred(d.scaled(-1)?, Cmp::Le),
            })
        }
        (BinaryOp::And, Truth(true), x) | (BinaryOp::And, x, Truth(true)) => Some(x),
        (BinaryOp::And, Truth(false), _) | (BinaryOp::And, _, Truth(false)) => Some(Truth(false)),
        (BinaryOp::Or, Truth(false), x) | (BinaryOp::Or, x, Truth(false)) => Some(x),
        (BinaryOp::Or, Truth(true), _) | (BinaryOp::Or, _, Truth(true)) => Some(Truth(true)),
        (BinaryOp::And | BinaryOp::Or, x, y) if x == y => Some(x),
        _ => None,
    }
}

/// A cast that keeps every value: bool to `i64` (a constant only), `i64` to bool (`≠ 0`), or to
/// the same dtype.
fn cast(form: &IndexForm, from: DType, to: DType, rank: usize) -> Option<IndexForm> {
    match (from, to, form) {
        (a, b, f) if a == b => Some(f.clone()),
        (DType::Bool, DType::I64, IndexForm::Truth(b)) => {
            Some(IndexForm::Affine(Affine::splat(i64::from(*b), rank)))
        }
        (DType::I64, DType::Bool, IndexForm::Affine(f)) => {
            Some(IndexForm::pred(f.clone(), Cmp::Ne))
        }
        _ => None,
    }
}

/// The operand's form broadcast (numpy rules, right-aligned) to `shape`.
fn broadcast(form: &IndexForm, ty: &TensorType, shape: &Shape) -> Option<IndexForm> {
    let lead = shape.rank().checked_sub(ty.shape.rank())?;
    let mut from = Vec::with_capacity(shape.rank());
    for (i, d) in shape.dims().iter().enumerate() {
        let Some(k) = i.checked_sub(lead) else {
            from.push(None);
            continue;
        };
        let operand = &ty.shape.dims()[k];
        if *operand == Dim::Known(1) {
            from.push(None);
        } else if operand.provably_equal(d) {
            from.push(Some(k));
        } else {
            return None;
        }
    }
    form.remap(&from)
}

/// A reshape that only inserts or removes axes of extent 1, or of a constant.
fn reshape(form: &IndexForm, from: &Shape, to: &Shape) -> Option<IndexForm> {
    let constant = match form {
        IndexForm::Truth(_) => true,
        IndexForm::Affine(f) | IndexForm::Pred(f, _) => f.is_constant(),
        IndexForm::Rows(_) => false,
    };
    let unit = |d: &Dim| *d == Dim::Known(1);
    let kept_in: Vec<usize> = (0..from.rank())
        .filter(|&k| !unit(&from.dims()[k]))
        .collect();
    let kept_out: Vec<usize> = (0..to.rank()).filter(|&i| !unit(&to.dims()[i])).collect();
    let paired = kept_in.len() == kept_out.len()
        && kept_in
            .iter()
            .zip(&kept_out)
            .all(|(&k, &i)| from.dims()[k].provably_equal(&to.dims()[i]));
    if !paired {
        return if constant {
            form.remap(&vec![None; to.rank()])
        } else {
            None
        };
    }
    let mut map = vec![None; to.rank()];
    for (&k, &i) in kept_in.iter().zip(&kept_out) {
        map[i] = Some(k);
    }
    form.remap(&map)
}

/// A strided slice with positive steps and non-negative starts.
fn slice(
    form: &IndexForm,
    shape: &Shape,
    axes: &[i64],
    starts: &[i64],
    steps: &[i64],
) -> Option<IndexForm> {
    let mut f = match form {
        IndexForm::Truth(b) => return Some(IndexForm::Truth(*b)),
        IndexForm::Affine(f) => f.clone(),
        _ => return None,
    };
    for ((&axis, &start), &step) in axes.iter().zip(starts).zip(steps) {
        let axis = normalize_axis(axis, shape.rank())?;
        let a = f.coeffs[axis];
        if a == 0 {
            continue;
        }
        if start < 0 || step <= 0 {
            return None;
        }
        f.constant = f.constant.checked_add(a.checked_mul(start)?)?;
        f.coeffs[axis] = a.checked_mul(step)?;
    }
    Some(IndexForm::Affine(f))
}

/// The part of `form` starting at `offset` along `axis`, of shape `piece`.
fn shifted(
    form: &IndexForm,
    ty: &TensorType,
    axis: i64,
    offset: &Dim,
    piece: &Shape,
) -> Option<IndexForm> {
    let axis = normalize_axis(axis, ty.shape.rank())?;
    match form {
        IndexForm::Truth(b) => Some(IndexForm::Truth(*b)),
        IndexForm::Affine(f) => {
            let a = f.coeffs[axis];
            let mut g = f.clone();
            if a != 0 {
                let o = offset_value(offset, piece)?;
                g.constant = g.constant.checked_add(a.checked_mul(o)?)?;
            }
            Some(IndexForm::Affine(g))
        }
        _ => None,
    }
}

/// The value of an offset, assuming the piece it positions is non-empty: every symbol that is a
/// factor of one of the piece's dimensions is then at least 1.
fn offset_value(offset: &Dim, piece: &Shape) -> Option<i64> {
    fn factors<'a>(d: &'a Dim, out: &mut Vec<&'a str>) -> bool {
        match d {
            Dim::Known(n) => *n >= 1,
            Dim::Sym(s) => {
                out.push(s);
                true
            }
            Dim::Mul(a, b) => factors(a, out) && factors(b, out),
            _ => false,
        }
    }
    fn lower(d: &Dim, positive: &[&str]) -> u64 {
        match d {
            Dim::Known(n) => *n,
            Dim::Sym(s) => u64::from(positive.contains(&&**s)),
            Dim::Add(a, b) => lower(a, positive).saturating_add(lower(b, positive)),
            Dim::Mul(a, b) => lower(a, positive).saturating_mul(lower(b, positive)),
            Dim::Min(a, b) => lower(a, positive).min(lower(b, positive)),
            Dim::Max(a, b) => lower(a, positive).max(lower(b, positive)),
            Dim::Sub(..) | Dim::FloorDiv(..) | Dim::CeilDiv(..) => 0,
        }
    }
    fn value(d: &Dim, positive: &[&str]) -> Option<u64> {
        let both = |a: &Dim, b: &Dim| Some((value(a, positive)?, value(b, positive)?));
        match d {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
            Dim::Add(a, b) => both(a, b).and_then(|(a, b)| a.checked_add(b)),
            Dim::Sub(a, b) => both(a, b).and_then(|(a, b)| a.checked_sub(b)),
            Dim::Mul(a, b) => both(a, b).and_then(|(a, b)| a.checked_mul(b)),
            Dim::FloorDiv(a, b) => both(a, b).and_then(|(a, b)| a.checked_div(b)),
            Dim::CeilDiv(a, b) => both(a, b).and_then(|(a, b)| (b != 0).then(|| a.div_ceil(b))),
            Dim::Max(a, b) => both(a, b).map(|(a, b)| a.max(b)),
            // min(a, b) is a known `a` when `b` is at least `a` (and the other way round).
            Dim::Min(a, b) => match (value(a, positive), value(b, positive)) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (Some(x), None) if lower(b, positive) >= x => Some(x),
                (None, Some(y)) if lower(a, positive) >= y => Some(y),
                _ => None,
            },
        }
    }
    let mut positive = Vec::new();
    for d in piece.dims() {
        let mut syms = Vec::new();
        if factors(d, &mut syms) {
            positive.extend(syms);
        }
    }
    i64::try_from(value(offset, &positive)?).ok()
}

/// The rows of an integer form whose last axis has a known extent.
fn rows(form: &IndexForm, ty: &TensorType) -> Option<Vec<Affine>> {
    match form {
        IndexForm::Rows(rows) => Some(rows.clone()),
        IndexForm::Affine(f) => {
            let n = ty.shape.dims().last()?.as_known()?;
            let last = f.coeffs.len().checked_sub(1)?;
            let a = f.coeffs[last];
            (0..n as i64)
                .map(|j| {
                    let mut g = f.clone();
                    g.coeffs[last] = 0;
                    g.constant = g.constant.checked_add(a.checked_mul(j)?)?;
                    Some(g)
                })
                .collect()
        }
        _ => None,
    }
}

/// A concatenation: one affine function when the pieces agree on it (at their offsets), else,
/// along the last axis, the rows of all pieces.
fn concat(
    forms: &[Option<&IndexForm>],
    types: &[Option<&TensorType>],
    axis: i64,
    result: &TensorType,
) -> Option<IndexForm> {
    let rank = result.shape.rank();
    let axis = normalize_axis(axis, rank)?;
    let pieces: Vec<(&IndexForm, &TensorType)> = forms
        .iter()
        .zip(types)
        .map(|(f, t)| Some(((*f)?, (*t)?)))
        .collect::<Option<_>>()?;
    if pieces.iter().all(|(f, _)| **f == IndexForm::Truth(true)) {
        return Some(IndexForm::Truth(true));
    }
    if pieces.iter().all(|(f, _)| **f == IndexForm::Truth(false)) {
        return Some(IndexForm::Truth(false));
    }
    let affine: Option<Vec<(&Affine, &TensorType)>> = pieces
        .iter()
        .map(|(f, t)| match f {
            IndexForm::Affine(a) => Some((a, *t)),
            _ => None,
        })
        .collect();
    if let Some(affine) = affine
        && let Some(f) = concat_affine(&affine, axis)
    {
        return Some(IndexForm::Affine(f));
    }
    if axis + 1 != rank {
        return None;
    }
    let mut all = Vec::new();
    for (f, t) in pieces {
        all.extend(rows(f, t)?);
    }
    Some(IndexForm::Rows(all))
}

/// One affine function for affine pieces concatenated along `axis`, if they agree.
fn concat_affine(pieces: &[(&Affine, &TensorType)], axis: usize) -> Option<Affine> {
    let others = |f: &Affine| -> Vec<i64> {
        let mut c = f.coeffs.clone();
        c[axis] = 0;
        c
    };
    let (first, _) = pieces.first()?;
    if pieces.iter().any(|(f, _)| others(f) != others(first)) {
        return None;
    }
    let extent = |t: &TensorType| t.shape.dims()[axis].clone();
    // The step along the axis: that of the pieces longer than one element, which must agree.
    let mut step: Option<i64> = None;
    for (f, t) in pieces {
        if extent(t) != Dim::Known(1) {
            match step {
                Some(s) if s != f.coeffs[axis] => return None,
                _ => step = Some(f.coeffs[axis]),
            }
        }
    }
    let mut offsets = Vec::with_capacity(pieces.len());
    let mut offset = Dim::Known(0);
    for (_, t) in pieces {
        offsets.push(offset.clone());
        offset = offset.add(&extent(t));
    }
    let step = match step {
        Some(s) => s,
        // Single elements only: the step between the first two.
        None => match pieces {
            [(a, _), (b, _), ..] => b.constant.checked_sub(a.constant)?,
            _ => 0,
        },
    };
    let mut constant: Option<i64> = None;
    for ((f, t), o) in pieces.iter().zip(&offsets) {
        let c = if step == 0 {
            f.constant
        } else {
            let o = offset_value(o, &t.shape)?;
            f.constant.checked_sub(step.checked_mul(o)?)?
        };
        match constant {
            Some(k) if k != c => return None,
            _ => constant = Some(c),
        }
    }
    let mut coeffs = others(first);
    coeffs[axis] = step;
    Some(Affine {
        constant: constant?,
        coeffs,
    })
}

/// `gather_nd` without batch axes: `out[o, r] = data[idx[o, 0], …, idx[o, m-1], r]`.
fn gather_nd(
    data: Option<&IndexForm>,
    data_ty: &TensorType,
    indices: Option<&IndexForm>,
    indices_ty: &TensorType,
    rank: usize,
) -> Option<IndexForm> {
    let data = data?;
    // A constant gathers to itself, whatever the indices.
    match data {
        IndexForm::Truth(b) => return Some(IndexForm::Truth(*b)),
        IndexForm::Affine(f) if f.is_constant() => {
            return Some(IndexForm::Affine(Affine::splat(f.constant, rank)));
        }
        IndexForm::Affine(_) => {}
        _ => return None,
    }
    let IndexForm::Affine(f) = data else {
        return None;
    };
    let rows = rows(indices?, indices_ty)?;
    let lead = indices_ty.shape.rank().checked_sub(1)?;
    let m = rows.len();
    if m > data_ty.shape.rank() || lead + data_ty.shape.rank() - m != rank {
        return None;
    }
    let mut g = Affine::splat(f.constant, rank);
    for (j, row) in rows.iter().enumerate() {
        let a = f.coeffs[j];
        if a == 0 {
            continue;
        }
        // A negative index would count from the end: only non-negative rows are followed.
        if !row.non_negative() {
            return None;
        }
        g.constant = g.constant.checked_add(a.checked_mul(row.constant)?)?;
        for (k, &b) in row.coeffs.iter().take(lead).enumerate() {
            g.coeffs[k] = g.coeffs[k].checked_add(a.checked_mul(b)?)?;
        }
    }
    for (k, &a) in f.coeffs.iter().enumerate().skip(m) {
        g.coeffs[lead + k - m] = a;
    }
    Some(IndexForm::Affine(g))
}

/// The index forms of a graph's values, for the values that have one (most have none).
pub type IndexForms = rustc_hash::FxHashMap<cubevec_ir::ValueId, IndexForm>;

/// The forms of a graph's values: constants from `constants`, then each node in `order` from its
/// operands.
pub fn graph_forms(
    graph: &cubevec_ir::Graph,
    order: &[cubevec_ir::graph::NodeId],
    constants: &rustc_hash::FxHashMap<cubevec_ir::ValueId, ConstTensor>,
) -> IndexForms {
    let mut forms = IndexForms::default();
    for (&v, c) in constants {
        if let Some(form) = of_constant(c) {
            forms.insert(v, form);
        }
    }
    for &n in order {
        let node = graph.node(n);
        if !node
            .outputs
            .iter()
            .any(|&v| tracked(graph.value(v).ty.dtype))
        {
            continue;
        }
        let results: Vec<TensorType> = node
            .outputs
            .iter()
            .map(|&v| graph.value(v).ty.clone())
            .collect();
        let operand_forms: Vec<Option<&IndexForm>> = node
            .inputs
            .iter()
            .map(|v| v.and_then(|v| forms.get(&v)))
            .collect();
        let operand_types: Vec<Option<&TensorType>> = node
            .inputs
            .iter()
            .map(|v| v.map(|v| &graph.value(v).ty))
            .collect();
        let new = transfer(&node.op, &operand_forms, &operand_types, &results);
        for (&v, f) in node.outputs.iter().zip(new) {
            if let Some(f) = f {
                forms.insert(v, f);
            }
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(dtype: DType, dims: &[Dim]) -> TensorType {
        TensorType::new(dtype, Shape(dims.to_vec()))
    }

    #[test]
    fn constants_fit_affine_functions_or_nothing() {
        let t = cubevec_ir::Tensor::from_i64(DType::I64, vec![2, 3], &[5, 7, 9, 4, 6, 8]);
        assert_eq!(
            of_constant(&ConstTensor::from_tensor(&t)),
            Some(IndexForm::Affine(Affine {
                constant: 5,
                coeffs: vec![-1, 2]
            }))
        );
        let t = cubevec_ir::Tensor::from_i64(DType::I64, vec![3], &[0, 1, 3]);
        assert_eq!(of_constant(&ConstTensor::from_tensor(&t)), None);
        // A bool lower triangle with the diagonal (j ≤ i) and one without (j < i).
        let lower = |strict: bool| {
            let v: Vec<f64> = (0..12)
                .map(|k| {
                    f64::from(u8::from(if strict {
                        k % 4 < k / 4
                    } else {
                        k % 4 <= k / 4
                    }))
                })
                .collect();
            let t = cubevec_ir::Tensor::from_f64(DType::Bool, vec![3, 4], &v);
            of_constant(&ConstTensor::from_tensor(&t))
        };
        let causal = |c| {
            Some(IndexForm::Pred(
                Affine {
                    constant: c,
                    coeffs: vec![-1, 1],
                },
                Cmp::Le,
            ))
        };
        assert_eq!(lower(false), causal(0));
        assert_eq!(lower(true), causal(1));
    }

    #[test]
    fn a_piece_after_a_symbolic_offset_is_placed_when_it_exists() {
        // concat(x[:, :1] - 1, x) for x[b, i] = i: the offset of x is min(seq, 1), which is 1
        // whenever x has an element.
        let seq = Dim::sym("seq");
        let one = Dim::min(&seq, &Dim::Known(1));
        let head = ty(DType::I64, &[Dim::sym("batch"), one.clone()]);
        let x = ty(DType::I64, &[Dim::sym("batch"), seq.clone()]);
        let out = ty(DType::I64, &[Dim::sym("batch"), seq.add(&one)]);
        let f_head = IndexForm::Affine(Affine {
            constant: -1,
            coeffs: vec![0, 1],
        });
        let f_x = IndexForm::Affine(Affine {
            constant: 0,
            coeffs: vec![0, 1],
        });
        let got = transfer(
            &Op::Concat { axis: -1 },
            &[Some(&f_head), Some(&f_x)],
            &[Some(&head), Some(&x)],
            std::slice::from_ref(&out),
        );
        assert_eq!(got, vec![Some(f_head.clone())]);
        // The offset of x cannot be evaluated if x's extent says nothing about seq.
        let x2 = ty(DType::I64, &[Dim::sym("batch"), Dim::sym("other")]);
        let got = transfer(
            &Op::Concat { axis: -1 },
            &[Some(&f_head), Some(&f_x)],
            &[Some(&head), Some(&x2)],
            std::slice::from_ref(&out),
        );
        assert_eq!(got, vec![None]);
    }

    #[test]
    fn comparisons_give_predicates_and_negation_flips_them() {
        let s = ty(DType::I64, &[Dim::sym("seq"), Dim::sym("seq")]);
        let i = IndexForm::Affine(Affine {
            constant: 0,
            coeffs: vec![1, 0],
        });
        let j = IndexForm::Affine(Affine {
            constant: 0,
            coeffs: vec![0, 1],
        });
        let b = ty(DType::Bool, &[Dim::sym("seq"), Dim::sym("seq")]);
        let le = transfer(
            &Op::Binary(BinaryOp::LessOrEqual),
            &[Some(&j), Some(&i)],
            &[Some(&s), Some(&s)],
            std::slice::from_ref(&b),
        );
        let causal = IndexForm::Pred(
            Affine {
                constant: 0,
                coeffs: vec![-1, 1],
            },
            Cmp::Le,
        );
        assert_eq!(le, vec![Some(causal.clone())]);
        let not = transfer(
            &Op::Unary(UnaryOp::Not),
            &[Some(&causal)],
            &[Some(&b)],
            std::slice::from_ref(&b),
        );
        let above = IndexForm::Pred(
            Affine {
                constant: 0,
                coeffs: vec![1, -1],
            },
            Cmp::Lt,
        );
        assert_eq!(not, vec![Some(above)]);
        // An equality of equal functions is true everywhere.
        let eq = transfer(
            &Op::Binary(BinaryOp::Equal),
            &[Some(&i), Some(&i)],
            &[Some(&s), Some(&s)],
            std::slice::from_ref(&b),
        );
        assert_eq!(eq, vec![Some(IndexForm::Truth(true))]);
    }
}
