//! Walking a kernel program with concrete values: the control flow of one block.
//!
//! The verifier, the cost model and the tests all need to know exactly which instructions one
//! block issues and with which operands. [`walk`] runs the scalar part of a program (loops,
//! `let`, and scalar loads bound to their planned value) and hands every other statement, with
//! the variables in scope, to a visitor. The visitor also sees each `LoadScalar` before its
//! variable is bound.

use super::expr::Env;
use super::stmt::Stmt;
use super::verify::KernelError;
use super::{Kernel, Side};

/// The variable holding the block index of the running core (`GetBlockIdx()`).
pub const BLOCK_VAR: &str = "blk";

/// Runs `program` under `env`, calling `visit` for every statement other than `Let` and `For`,
/// in issue order.
pub fn walk<F>(program: &[Stmt], env: &mut Env, visit: &mut F) -> Result<(), KernelError>
where
    F: FnMut(&Stmt, &Env) -> Result<(), KernelError>,
{
    let mut bound: Vec<(&str, Option<i64>)> = Vec::new();
    let result = walk_body(program, env, visit, &mut bound);
    for (name, previous) in bound.into_iter().rev() {
        env.restore(name, previous);
    }
    result
}

fn walk_body<'p, F>(
    program: &'p [Stmt],
    env: &mut Env,
    visit: &mut F,
    bound: &mut Vec<(&'p str, Option<i64>)>,
) -> Result<(), KernelError>
where
    F: FnMut(&Stmt, &Env) -> Result<(), KernelError>,
{
    for stmt in program {
        match stmt {
            Stmt::Let { var, value } => {
                let v = value.eval(env).map_err(|source| KernelError::Expr {
                    context: format!("let {var}"),
                    source,
                })?;
                let previous = env.insert(var, v);
                bound.push((var, previous));
            }
            Stmt::LoadScalar { var, planned, .. } => {
                visit(stmt, env)?;
                let v = planned.eval(env).map_err(|source| KernelError::Expr {
                    context: format!("planned value of {var}"),
                    source,
                })?;
                let previous = env.insert(var, v);
                bound.push((var, previous));
            }
            Stmt::For {
                var, extent, body, ..
            } => {
                let trips = extent.eval(env).map_err(|source| KernelError::Expr {
                    context: format!("extent of loop {var}"),
                    source,
                })?;
                if trips < 0 {
                    return Err(KernelError::NegativeExtent {
                        var: var.clone(),
                        extent: trips,
                    });
                }
                let previous = env.get(var).copied();
                for i in 0..trips {
                    env.insert(var, i);
                    walk(body, env, visit)?;
                }
                env.restore(var, previous);
            }
            other => visit(other, env)?,
        }
    }
    Ok(())
}

/// Runs the `side` program of instance `block` of `kernel` (see [`Kernel::instances`]).
pub fn run_instance<F>(
    kernel: &Kernel,
    side: Side,
    block: u64,
    visit: &mut F,
) -> Result<(), KernelError>
where
    F: FnMut(&Stmt, &Env) -> Result<(), KernelError>,
{
    let mut env = Env::new();
    env.insert(BLOCK_VAR, block as i64);
    walk(kernel.program(side), &mut env, visit)
}
