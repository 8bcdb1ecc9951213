//! Integer index expressions of the kernel IR: loop bounds, tile extents, offsets.
//!
//! Expressions are over named variables: the block index `blk` (bound by the launch), loop
//! variables and `let` bindings. Every variable is a non-negative 64-bit integer at run time;
//! subtraction never goes below zero in a verified kernel.

use std::fmt;

/// An integer expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    /// A constant.
    Const(i64),
    /// A variable bound by the launch, a loop or a `let`.
    Var(String),
    /// `a + b`.
    Add(Box<Expr>, Box<Expr>),
    /// `a - b`.
    Sub(Box<Expr>, Box<Expr>),
    /// `a * b`.
    Mul(Box<Expr>, Box<Expr>),
    /// `a / b` rounded down (`b > 0`).
    Div(Box<Expr>, Box<Expr>),
    /// `a % b` (`b > 0`).
    Rem(Box<Expr>, Box<Expr>),
    /// `min(a, b)`.
    Min(Box<Expr>, Box<Expr>),
    /// `max(a, b)`.
    Max(Box<Expr>, Box<Expr>),
}

/// Values of the variables in scope.
///
/// Kernels bind a handful of variables (block, loop and `let` names) and rebind them on every
/// iteration, so the environment is a short list searched linearly by a packed prefix of the
/// name, newest first (the innermost names, read most often); a name keeps its slot when it
/// goes out of scope, so rebinding it never allocates.
#[derive(Clone, Debug, Default)]
pub struct Env {
    slots: Vec<Slot>,
}

/// One name of an [`Env`] and its value while bound.
#[derive(Clone, Debug)]
struct Slot {
    key: NameKey,
    name: String,
    value: Option<i64>,
}

/// The length and first eight bytes of a name: equal keys of names up to eight bytes long
/// mean equal names, so most lookups compare one pair of integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NameKey(usize, u64);

impl NameKey {
    fn of(name: &str) -> NameKey {
        let mut prefix = [0u8; 8];
        let len = name.len().min(8);
        prefix[..len].copy_from_slice(&name.as_bytes()[..len]);
        NameKey(name.len(), u64::from_le_bytes(prefix))
    }
}

impl Env {
    /// An environment binding nothing.
    pub fn new() -> Env {
        Env::default()
    }

    fn slot(&self, name: &str) -> Option<usize> {
        let key = NameKey::of(name);
        self.slots
            .iter()
            .rposition(|s| s.key == key && (name.len() <= 8 || s.name == name))
    }

    /// The value of `name`, if bound.
    pub fn get(&self, name: &str) -> Option<&i64> {
        self.slot(name).and_then(|i| self.slots[i].value.as_ref())
    }

    /// Binds `name` to `value`; returns its previous value.
    pub fn insert(&mut self, name: &str, value: i64) -> Option<i64> {
        match self.slot(name) {
            Some(i) => self.slots[i].value.replace(value),
            None => {
                self.slots.push(Slot {
                    key: NameKey::of(name),
                    name: name.to_string(),
                    value: Some(value),
                });
                None
            }
        }
    }

    /// Unbinds `name`; returns its value.
    pub fn remove(&mut self, name: &str) -> Option<i64> {
        self.slot(name).and_then(|i| self.slots[i].value.take())
    }

    /// Restores `name` to `previous` (a value returned by [`Env::insert`]).
    pub fn restore(&mut self, name: &str, previous: Option<i64>) {
        match previous {
            Some(v) => {
                self.insert(name, v);
            }
            None => {
                self.remove(name);
            }
        }
    }
}

impl<S: AsRef<str>> FromIterator<(S, i64)> for Env {
    fn from_iter<I: IntoIterator<Item = (S, i64)>>(iter: I) -> Env {
        let mut env = Env::new();
        for (name, value) in iter {
            env.insert(name.as_ref(), value);
        }
        env
    }
}

/// Evaluation failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// A variable is not bound.
    #[error("unbound variable `{0}`")]
    Unbound(String),
    /// Division or remainder by zero or a negative number.
    #[error("division by {divisor} in `{expr}`")]
    BadDivisor {
        /// The divisor value.
        divisor: i64,
        /// The expression.
        expr: String,
    },
    /// The result does not fit in 64 bits.
    #[error("overflow in `{0}`")]
    Overflow(String),
}

// The builder methods are named after the operators they build; they fold constants and return
// a new expression, so they are deliberately inherent methods rather than `std::ops` impls.
#[allow(clippy::should_implement_trait)]
impl Expr {
    /// A constant from an unsigned size.
    pub fn c(value: u64) -> Expr {
        Expr::Const(value as i64)
    }

    /// A variable.
    pub fn var(name: &str) -> Expr {
        Expr::Var(name.to_string())
    }

    /// The constant value, if the expression is one.
    pub fn as_const(&self) -> Option<i64> {
        match self {
            Expr::Const(v) => Some(*v),
            _ => None,
        }
    }

    /// `self + other`, folding constants.
    pub fn add(self, other: Expr) -> Expr {
        match (self.as_const(), other.as_const()) {
            (Some(a), Some(b)) => Expr::Const(a + b),
            (_, Some(0)) => self,
            (Some(0), _) => other,
            _ => Expr::Add(Box::new(self), Box::new(other)),
        }
    }

    /// `self - other`, folding constants.
    pub fn sub(self, other: Expr) -> Expr {
        match (self.as_const(), other.as_const()) {
            (Some(a), Some(b)) => Expr::Const(a - b),
            (_, Some(0)) => self,
            _ => Expr::Sub(Box::new(self), Box::new(other)),
        }
    }

    /// `self * other`, folding constants.
    pub fn mul(self, other: Expr) -> Expr {
        match (self.as_const(), other.as_const()) {
            (Some(a), Some(b)) => Expr::Const(a * b),
            (_, Some(1)) => self,
            (Some(1), _) => other,
            (_, Some(0)) | (Some(0), _) => Expr::Const(0),
            _ => Expr::Mul(Box::new(self), Box::new(other)),
        }
    }

    /// `self / other` rounded down, folding constants.
    pub fn div(self, other: Expr) -> Expr {
        match (self.as_const(), other.as_const()) {
            (Some(a), Some(b)) if b > 0 => Expr::Const(a.div_euclid(b)),
            (_, Some(1)) => self,
            _ => Expr::Div(Box::new(self), Box::new(other)),
        }
    }

    /// `self % other`, folding constants.
    pub fn rem(self, other: Expr) -> Expr {
        match (self.as_const(), other.as_const()) {
            (Some(a), Some(b)) if b > 0 => Expr::Const(a.rem_euclid(b)),
            (_, Some(1)) => Expr::Const(0),
            _ => Expr::Rem(Box::new(self), Box::new(other)),
        }
    }

    /// `min(self, other)`, folding constants.
    pub fn min(self, other: Expr) -> Expr {
        match (self.as_const(), other.as_const()) {
            (Some(a), Some(b)) => Expr::Const(a.min(b)),
            _ if self == other => self,
            _ => Expr::Min(Box::new(self), Box::new(other)),
        }
    }

    /// `max(self, other)`, folding constants.
    pub fn max(self, other: Expr) -> Expr {
        match (self.as_const(), other.as_const()) {
            (Some(a), Some(b)) => Expr::Const(a.max(b)),
            _ if self == other => self,
            _ => Expr::Max(Box::new(self), Box::new(other)),
        }
    }

    /// `ceil(self / other)` as `(self + other - 1) / other`.
    pub fn ceil_div(self, other: Expr) -> Expr {
        let minus_one = other.clone().sub(Expr::Const(1));
        self.add(minus_one).div(other)
    }

    /// Evaluates under `env`.
    pub fn eval(&self, env: &Env) -> Result<i64, ExprError> {
        // The fast path carries no error detail; a failure is evaluated again for its error.
        match self.value(env) {
            Some(v) => Ok(v),
            None => self.eval_explained(env),
        }
    }

    /// The value under `env`, or `None` where [`Expr::eval`] fails.
    fn value(&self, env: &Env) -> Option<i64> {
        let bin = |a: &Expr, b: &Expr| Some((a.value(env)?, b.value(env)?));
        match self {
            Expr::Const(v) => Some(*v),
            Expr::Var(name) => env.get(name).copied(),
            Expr::Add(a, b) => bin(a, b).and_then(|(x, y)| x.checked_add(y)),
            Expr::Sub(a, b) => bin(a, b).and_then(|(x, y)| x.checked_sub(y)),
            Expr::Mul(a, b) => bin(a, b).and_then(|(x, y)| x.checked_mul(y)),
            Expr::Div(a, b) => bin(a, b)
                .filter(|&(_, y)| y > 0)
                .map(|(x, y)| x.div_euclid(y)),
            Expr::Rem(a, b) => bin(a, b)
                .filter(|&(_, y)| y > 0)
                .map(|(x, y)| x.rem_euclid(y)),
            Expr::Min(a, b) => bin(a, b).map(|(x, y)| x.min(y)),
            Expr::Max(a, b) => bin(a, b).map(|(x, y)| x.max(y)),
        }
    }

    /// [`Expr::eval`] with the error of a failing evaluation.
    fn eval_explained(&self, env: &Env) -> Result<i64, ExprError> {
        let bin = |a: &Expr, b: &Expr| -> Result<(i64, i64), ExprError> {
            Ok((a.eval_explained(env)?, b.eval_explained(env)?))
        };
        let overflow = || ExprError::Overflow(self.to_string());
        match self {
            Expr::Const(v) => Ok(*v),
            Expr::Var(name) => env
                .get(name)
                .copied()
                .ok_or_else(|| ExprError::Unbound(name.clone())),
            Expr::Add(a, b) => {
                let (x, y) = bin(a, b)?;
                x.checked_add(y).ok_or_else(overflow)
            }
            Expr::Sub(a, b) => {
                let (x, y) = bin(a, b)?;
                x.checked_sub(y).ok_or_else(overflow)
            }
            Expr::Mul(a, b) => {
                let (x, y) = bin(a, b)?;
                x.checked_mul(y).ok_or_else(overflow)
            }
            Expr::Div(a, b) | Expr::Rem(a, b) => {
                let (x, y) = bin(a, b)?;
                if y <= 0 {
                    return Err(ExprError::BadDivisor {
                        divisor: y,
                        expr: self.to_string(),
                    });
                }
                Ok(if matches!(self, Expr::Div(..)) {
                    x.div_euclid(y)
                } else {
                    x.rem_euclid(y)
                })
            }
            Expr::Min(a, b) => {
                let (x, y) = bin(a, b)?;
                Ok(x.min(y))
            }
            Expr::Max(a, b) => {
                let (x, y) = bin(a, b)?;
                Ok(x.max(y))
            }
        }
    }

    /// Adds the names of the variables the expression reads to `out`.
    pub fn collect_vars(&self, out: &mut std::collections::BTreeSet<String>) {
        match self {
            Expr::Const(_) => {}
            Expr::Var(name) => {
                out.insert(name.clone());
            }
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Rem(a, b)
            | Expr::Min(a, b)
            | Expr::Max(a, b) => {
                a.collect_vars(out);
                b.collect_vars(out);
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Const(v) => write!(f, "{v}"),
            Expr::Var(name) => write!(f, "{name}"),
            Expr::Add(a, b) => write!(f, "({a} + {b})"),
            Expr::Sub(a, b) => write!(f, "({a} - {b})"),
            Expr::Mul(a, b) => write!(f, "{a}*{b}"),
            Expr::Div(a, b) => write!(f, "({a} / {b})"),
            Expr::Rem(a, b) => write!(f, "({a} % {b})"),
            Expr::Min(a, b) => write!(f, "min({a}, {b})"),
            Expr::Max(a, b) => write!(f, "max({a}, {b})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_and_evaluates() {
        let e = Expr::var("t").mul(Expr::c(128)).add(Expr::c(0));
        assert_eq!(e.to_string(), "t*128");
        let env: Env = [("t".to_string(), 3)].into_iter().collect();
        assert_eq!(e.eval(&env), Ok(384));
        let tail = Expr::c(300).sub(e).min(Expr::c(128));
        assert_eq!(tail.eval(&env), Ok(-84));
        assert_eq!(Expr::c(300).ceil_div(Expr::c(128)), Expr::Const(3));
        assert!(matches!(
            Expr::var("x").eval(&Env::new()),
            Err(ExprError::Unbound(_))
        ));
    }
}
