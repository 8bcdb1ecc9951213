//! Extending the compiler: rewrite rules and op lowerings written by framework authors.
//!
//! Both plug into [`crate::CompileOptions`]: rules into `optimizer.extra_rules`, lowerings into
//! `lowerings`. They use the same interfaces as cubevec's own rules and lowerings, so they get
//! the same checks: every node a rule adds is type-checked as it is built, and a rule that
//! claims two tensors of different types are equal stops the optimiser with an error naming it;
//! every kernel a lowering returns goes through the program checks and the back ends' kernel
//! verification.
//!
//! # A rewrite rule
//!
//! A [`Rule`] is asked about every e-node; it reads the e-graph through a [`Ctx`] and pushes a
//! [`Recipe`]: new nodes over existing e-classes, and which class they equal. This one removes
//! `log(exp(x))`:
//!
//! ```
//! use cubevec::extend::{Ctx, CustomRules, Id, Recipe, Rule, Slot, TensorNode};
//! use cubevec::ir::op::UnaryOp;
//! use cubevec::ir::Op;
//! use cubevec::{Model, OptimizeOptions};
//!
//! struct LogOfExp;
//!
//! impl Rule for LogOfExp {
//!     fn name(&self) -> &'static str {
//!         "log-of-exp"
//!     }
//!
//!     fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
//!         if node.ir_op() != Some(&Op::Unary(UnaryOp::Log)) {
//!             return;
//!         }
//!         for x in ctx.unary(node.children[0], &Op::Unary(UnaryOp::Exp)) {
//!             out.push(Recipe::new().union(class, Slot::Class(x)));
//!         }
//!     }
//! }
//!
//! let model = Model::from_ir_text(
//!     "graph @g {\n  input %x: f32[4]\n  %e: f32[4] = exp(%x)\n  %y: f32[4] = log(%e)\n  return %y\n}\n",
//! )?;
//! let mut extra_rules = CustomRules::new();
//! extra_rules.add(LogOfExp)?;
//! let options = OptimizeOptions { extra_rules, ..OptimizeOptions::default() };
//! let (optimized, report) = model.optimize(&options)?;
//! assert_eq!(report.rules_fired["log-of-exp"], 1);
//! assert!(optimized.graph().nodes.is_empty(), "y is x");
//! # Ok::<(), cubevec::Error>(())
//! ```
//!
//! # An op lowering
//!
//! A lowering maps one node, described by an [`OpContext`] (its op, bound operand and result
//! shapes, the target), to kernel launches, or returns `None` to leave the node to the next
//! lowering and finally to the built-in ones. cubevec has no kernel for `softplus`; this one
//! builds it from the vector tiler as `ln(1 + exp(x))`:
//!
//! ```
//! use cubevec::extend::{
//!     ArgRef, ChainArg, ChainStep, ElementwiseChain, KernelCall, Lowering, Lowerings, plan_chain,
//! };
//! use cubevec::ir::kernel::VecOp;
//! use cubevec::ir::op::UnaryOp;
//! use cubevec::ir::target::Target;
//! use cubevec::ir::{DType, Op, Tensor};
//! use cubevec::{CompileOptions, Compiler, Engine, Model};
//! use std::collections::HashMap;
//!
//! let mut lowerings = Lowerings::new();
//! lowerings.register("softplus", |ctx| {
//!     if *ctx.op != Op::Unary(UnaryOp::Softplus) {
//!         return None;
//!     }
//!     let step = |op, srcs| ChainStep { op, dst: 0, srcs };
//!     let chain = ElementwiseChain {
//!         name: ctx.name.to_string(),
//!         len: ctx.outputs[0].elements(),
//!         dtype: ctx.outputs[0].dtype,
//!         inputs: 1,
//!         steps: vec![
//!             step(VecOp::Exp, vec![ChainArg::Input(0)]),
//!             step(VecOp::Adds, vec![ChainArg::Temp(0), ChainArg::Imm(1.0)]),
//!             step(VecOp::Ln, vec![ChainArg::Temp(0)]),
//!         ],
//!         output: 0,
//!     };
//!     Some(plan_chain(&chain, ctx.target).map(|plan| {
//!         Lowering::single(KernelCall {
//!             kernel: plan.kernel,
//!             cost: plan.cost,
//!             args: vec![ArgRef::Operand(0), ArgRef::Result(0)],
//!             assumptions: Vec::new(),
//!         })
//!     }).map_err(Into::into))
//! });
//!
//! let model = Model::from_ir_text(
//!     "graph @g {\n  input %x: f32[8, 64]\n  %y: f32[8, 64] = softplus(%x)\n  return %y\n}\n",
//! )?;
//! let options = CompileOptions { lowerings, optimize: false, ..CompileOptions::default() };
//! let compiled = Compiler::new(Target::by_name("ascend910b2")?).options(options).compile(&model)?;
//! let x: Vec<f32> = (0..512).map(|i| (i as f32 - 256.0) / 64.0).collect();
//! let inputs = HashMap::from([("x".to_string(), Tensor::from_f32(DType::F32, vec![8, 64], &x))]);
//! let got = compiled.run(Engine::KernelReference, &inputs)?[0].1.to_f32_vec();
//! let want = model.run_reference(&inputs)?[0].1.to_f32_vec();
//! assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use cubevec_passes::lower::{
    ArgRef, KernelCall, LowerError, Lowering, OpContext, Scratch, TensorShape,
};
pub use cubevec_passes::optimize::CustomRules;
pub use cubevec_passes::optimize::custom::{Ctx, DuplicateRule, Id, Recipe, Rule, Slot};
pub use cubevec_passes::optimize::language::{TensorNode, TensorOp};
pub use cubevec_passes::partition::{LowerFn, Lowerings};
pub use cubevec_passes::tile::vector::{ChainArg, ChainStep, ElementwiseChain, plan_chain};
