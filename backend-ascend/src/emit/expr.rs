//! Kernel IR integer expressions as C++ `int64_t` expressions.
//!
//! The IR divides and takes remainders rounding down. Where the dividend is provably
//! non-negative (every IR variable is, by the kernel IR contract, and so are sums, products,
//! quotients, minima and maxima of non-negative terms) C++ `/` and `%` agree and are emitted;
//! otherwise the floor helpers `cvk::FloorDiv` / `cvk::FloorMod` of the kernel support header are.

use std::collections::BTreeMap;

use cubevec_ir::kernel::Expr;

/// Prints expressions whose variables are mapped to C++ identifiers.
pub(crate) struct ExprPrinter<'a> {
    /// IR variable name → C++ identifier.
    pub(crate) vars: &'a BTreeMap<String, String>,
}

impl ExprPrinter<'_> {
    /// `e` as a C++ expression without outer parentheses.
    pub(crate) fn top(&self, e: &Expr) -> String {
        match e {
            Expr::Add(a, b) => format!("{} + {}", self.operand(a), self.operand(b)),
            Expr::Sub(a, b) => format!("{} - {}", self.operand(a), self.operand(b)),
            Expr::Mul(a, b) => format!("{} * {}", self.operand(a), self.operand(b)),
            Expr::Div(a, b) if non_negative(a) => {
                format!("{} / {}", self.operand(a), self.operand(b))
            }
            Expr::Rem(a, b) if non_negative(a) => {
                format!("{} % {}", self.operand(a), self.operand(b))
            }
            Expr::Div(a, b) => format!("cvk::FloorDiv({}, {})", self.top(a), self.top(b)),
            Expr::Rem(a, b) => format!("cvk::FloorMod({}, {})", self.top(a), self.top(b)),
            Expr::Min(a, b) => format!("cvk::Min({}, {})", self.top(a), self.top(b)),
            Expr::Max(a, b) => format!("cvk::Max({}, {})", self.top(a), self.top(b)),
            Expr::Const(_) | Expr::Var(_) => self.operand(e),
        }
    }

    /// `e` as an operand of a binary operator: parenthesised unless atomic.
    pub(crate) fn operand(&self, e: &Expr) -> String {
        match e {
            Expr::Const(v) if *v == i64::MIN => "(-9223372036854775807LL - 1)".to_string(),
            Expr::Const(v) if *v < 0 => format!("({v}LL)"),
            Expr::Const(v) if *v > i64::from(i32::MAX) => format!("{v}LL"),
            Expr::Const(v) => v.to_string(),
            Expr::Var(name) => self
                .vars
                .get(name)
                .cloned()
                .unwrap_or_else(|| unreachable!("variable `{name}` has no C++ identifier")),
            Expr::Min(..) | Expr::Max(..) => self.top(e),
            Expr::Div(a, _) | Expr::Rem(a, _) if !non_negative(a) => self.top(e),
            _ => format!("({})", self.top(e)),
        }
    }
}

/// Whether `e` is non-negative for every binding of its variables (all IR variables are
/// non-negative at run time).
pub(crate) fn non_negative(e: &Expr) -> bool {
    match e {
        Expr::Const(v) => *v >= 0,
        Expr::Var(_) => true,
        Expr::Sub(..) => false,
        Expr::Max(a, b) => non_negative(a) || non_negative(b),
        Expr::Add(a, b) | Expr::Mul(a, b) | Expr::Div(a, b) | Expr::Rem(a, b) | Expr::Min(a, b) => {
            non_negative(a) && non_negative(b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str) -> Expr {
        Expr::var(name)
    }

    #[test]
    fn prints_with_floor_helpers_only_where_needed() {
        let vars: BTreeMap<String, String> = [("t", "v_t"), ("blk", "v_blk")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let p = ExprPrinter { vars: &vars };
        let trips = Expr::c(12).sub(v("blk")).add(Expr::c(11)).div(Expr::c(12));
        assert_eq!(p.top(&trips), "cvk::FloorDiv((12 - v_blk) + 11, 12)");
        let stage = v("t").add(v("blk")).rem(Expr::c(2));
        assert_eq!(p.top(&stage), "(v_t + v_blk) % 2");
        let tail = Expr::c(300).sub(v("t").mul(Expr::c(96))).min(Expr::c(96));
        assert_eq!(p.top(&tail), "cvk::Min(300 - (v_t * 96), 96)");
        assert_eq!(p.top(&Expr::Const(-3)), "(-3LL)");
        assert_eq!(p.top(&Expr::Const(1 << 40)), "1099511627776LL");
    }
}
