//! Integer expressions: `i64` arithmetic with floor division and remainder.

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC};
use cubevec_ir::kernel::{Env, Expr};

use super::Lowerer;
use crate::error::CpuError;

impl Lowerer<'_> {
    /// The value of `e`; constant sub-expressions are folded.
    pub(super) fn expr(&mut self, e: &Expr) -> Result<Value, CpuError> {
        if let Ok(v) = e.eval(&Env::new()) {
            return Ok(self.iconst(v));
        }
        Ok(match e {
            Expr::Const(v) => self.iconst(*v),
            Expr::Var(name) => {
                let Some(&(_, var)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return Err(self.unsupported(format!("unbound variable `{name}`")));
                };
                self.b.use_var(var)
            }
            Expr::Add(a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.b.ins().iadd(x, y)
            }
            Expr::Sub(a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                self.b.ins().isub(x, y)
            }
            Expr::Mul(a, b) => match (a.as_const(), b.as_const()) {
                (Some(c), _) => {
                    let y = self.expr(b)?;
                    self.b.ins().imul_imm_s(y, c)
                }
                (_, Some(c)) => {
                    let x = self.expr(a)?;
                    self.b.ins().imul_imm_s(x, c)
                }
                _ => {
                    let (x, y) = (self.expr(a)?, self.expr(b)?);
                    self.b.ins().imul(x, y)
                }
            },
            Expr::Div(a, b) | Expr::Rem(a, b) => {
                let div = matches!(e, Expr::Div(..));
                let x = self.expr(a)?;
                self.floor_div_rem(x, b, div, e)?
            }
            Expr::Min(a, b) | Expr::Max(a, b) => {
                let (x, y) = (self.expr(a)?, self.expr(b)?);
                let cc = if matches!(e, Expr::Min(..)) {
                    IntCC::SignedLessThan
                } else {
                    IntCC::SignedGreaterThan
                };
                let pick_x = self.b.ins().icmp(cc, x, y);
                self.b.ins().select(pick_x, x, y)
            }
        })
    }

    /// `x / d` or `x % d` rounded towards negative infinity, for a positive divisor `d`.
    fn floor_div_rem(
        &mut self,
        x: Value,
        d: &Expr,
        div: bool,
        whole: &Expr,
    ) -> Result<Value, CpuError> {
        if let Some(c) = d.as_const() {
            if c <= 0 {
                return Err(self.unsupported(format!("division by {c} in `{whole}`")));
            }
            if (c as u64).is_power_of_two() {
                // An arithmetic shift and a mask are exactly floor division and remainder.
                return Ok(if div {
                    self.b.ins().sshr_imm_s(x, c.trailing_zeros() as i64)
                } else {
                    self.b.ins().band_imm_s(x, c - 1)
                });
            }
        }
        let y = self.expr(d)?;
        if d.as_const().is_none() {
            let ok = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, y, 0);
            self.check(ok, format!("division by a non-positive value in `{whole}`"));
        }
        let q = self.b.ins().sdiv(x, y);
        let qy = self.b.ins().imul(q, y);
        let r = self.b.ins().isub(x, qy);
        let negative = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, 0);
        Ok(if div {
            let q1 = self.b.ins().iadd_imm_s(q, -1);
            self.b.ins().select(negative, q1, q)
        } else {
            let ry = self.b.ins().iadd(r, y);
            self.b.ins().select(negative, ry, r)
        })
    }
}
