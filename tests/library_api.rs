//! The library API: `Compiler` artefacts, user rewrite rules and user lowerings, each checked
//! against the reference interpreter.

use std::collections::HashMap;
use std::path::PathBuf;

use cubevec::extend::{
    ArgRef, ChainArg, ChainStep, Ctx, CustomRules, ElementwiseChain, Id, KernelCall, LowerError,
    Lowering, Lowerings, Recipe, Rule, Slot, TensorNode, plan_chain,
};
use cubevec::ir::kernel::TensorKind;
use cubevec::ir::kernel::VecOp;
use cubevec::ir::op::UnaryOp;
use cubevec::ir::target::Target;
use cubevec::ir::{DType, Op, Tensor};
use cubevec::{
    CompileOptions, Compiler, Deployment, DeploymentOptions, Engine, Error, Model, OptimizeOptions,
};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

fn target() -> Target {
    Target::by_name("ascend910b2").expect("target")
}

/// Asserts every element of `got` is within `tolerance` of `want`, relative to `want`'s largest
/// magnitude (at least 1).
fn assert_close(got: &Tensor, want: &Tensor, tolerance: f32) {
    assert_eq!(got.shape(), want.shape());
    let want = want.to_f32_vec();
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.to_f32_vec().iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * scale,
            "element {i}: {g} vs {w}"
        );
    }
}

fn ramp(shape: Vec<usize>, step: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * step).collect();
    Tensor::from_f32(DType::F32, shape, &values)
}

#[test]
fn compiler_keeps_every_artefact_in_memory_and_the_program_matches_the_interpreter() {
    let model = Model::load(fixture("models/mixtral")).expect("mixtral");
    let options = CompileOptions {
        bindings: [("batch".to_string(), 2), ("seq".to_string(), 7)].into(),
        ..CompileOptions::default()
    };
    let compiler = Compiler::new(target()).options(options);
    let compiled = compiler.compile(&model).expect("compiles");
    let report = compiled.optimize_report().expect("optimised");
    assert_eq!(report.ops_after["moe"], 2);
    assert_eq!(compiled.model().graph().name, "mixtral");
    let project = compiled.ascend_project().expect("emitted");
    let kernel_files = project
        .files
        .keys()
        .filter(|p| p.starts_with("kernels/"))
        .count();
    assert_eq!(kernel_files, compiled.program().kernels.len());
    let phases: Vec<&str> = compiled.timings().iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, ["optimise", "plan kernels", "emit"]);
    // Compiling again gives the same sources.
    let again = compiler.compile(&model).expect("compiles again");
    assert_eq!(again.ascend_project(), Some(project));

    let ids: Vec<i64> = (0..14).map(|i| (i * 37 + 5) % 256).collect();
    let ids = Tensor::from_i64(DType::I64, vec![2, 7], &ids);
    let inputs = HashMap::from([("input_ids".to_string(), ids)]);
    let want = &model.run_reference(&inputs).expect("interpreter")[0].1;
    let got = &compiled.run(Engine::Cpu, &inputs).expect("cpu")[0].1;
    assert_close(got, want, 1e-4);
}

/// `log(exp(x))` → `x`.
struct LogOfExp;

impl Rule for LogOfExp {
    fn name(&self) -> &'static str {
        "log-of-exp"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        if node.ir_op() != Some(&Op::Unary(UnaryOp::Log)) {
            return;
        }
        for x in ctx.unary(node.children[0], &Op::Unary(UnaryOp::Exp)) {
            out.push(Recipe::new().union(class, Slot::Class(x)));
        }
    }
}

/// `h = x·w`, `y = log(exp(h)) + x`: the user rule leaves a matmul and an add.
const LOG_EXP: &str = "graph @log_exp {
  input %x: f32[16, 32]
  input %w: f32[32, 32]
  %h: f32[16, 32] = matmul(%x, %w)
  %e: f32[16, 32] = exp(%h)
  %l: f32[16, 32] = log(%e)
  %y: f32[16, 32] = add(%l, %x)
  return %y
}
";

#[test]
fn a_user_rewrite_rule_fires_and_the_optimised_graph_computes_the_same() {
    let model = Model::from_ir_text(LOG_EXP).expect("parses");
    let mut extra_rules = CustomRules::new();
    extra_rules.add(LogOfExp).expect("a new name");
    let optimizer = OptimizeOptions {
        extra_rules,
        ..OptimizeOptions::default()
    };
    let (plain, _) = model.optimize(&OptimizeOptions::default()).expect("plain");
    assert!(plain.graph().nodes.iter().any(|n| n.op.name() == "log"));
    let (optimized, report) = model.optimize(&optimizer).expect("optimises");
    assert_eq!(report.rules_fired["log-of-exp"], 1);
    let ops: Vec<&str> = optimized
        .graph()
        .nodes
        .iter()
        .map(|n| n.op.name())
        .collect();
    assert_eq!(ops, ["matmul", "add"]);

    let inputs = HashMap::from([
        ("x".to_string(), ramp(vec![16, 32], 0.01)),
        ("w".to_string(), ramp(vec![32, 32], 0.002)),
    ]);
    let want = &model.run_reference(&inputs).expect("original")[0].1;
    assert_close(
        &optimized.run_reference(&inputs).expect("optimised")[0].1,
        want,
        1e-5,
    );
    // Through the whole compiler: the exp and log launches are gone, the numbers the same.
    let without = Compiler::new(target()).compile(&model).expect("compiles");
    let options = CompileOptions {
        optimizer,
        ..CompileOptions::default()
    };
    let compiled = Compiler::new(target())
        .options(options)
        .compile(&model)
        .expect("compiles");
    assert_eq!(
        compiled.program().launches.len() + 2,
        without.program().launches.len()
    );
    assert_close(
        &compiled.run(Engine::Cpu, &inputs).expect("cpu")[0].1,
        want,
        1e-5,
    );
}

/// Named like a built-in rule.
struct Impostor;

impl Rule for Impostor {
    fn name(&self) -> &'static str {
        "double-negation"
    }

    fn find(&self, _: &Ctx<'_>, _: Id, _: &TensorNode, _: &mut Vec<Recipe>) {}
}

#[test]
fn rule_names_must_be_new() {
    let mut rules = CustomRules::new();
    let err = Error::from(rules.add(Impostor).expect_err("built-in name"));
    assert!(err.to_string().contains("double-negation"), "{err}");
    rules.add(LogOfExp).expect("first");
    assert!(rules.add(LogOfExp).is_err());
    assert_eq!(rules.names().collect::<Vec<_>>(), ["log-of-exp"]);
}

/// A one-input elementwise chain kernel named `{node}{suffix}` for every node of `op`.
fn chain_lowering(
    op: Op,
    suffix: &'static str,
    steps: Vec<ChainStep>,
) -> impl Fn(&cubevec::extend::OpContext) -> Option<Result<Lowering, LowerError>> {
    move |ctx| {
        if *ctx.op != op {
            return None;
        }
        let chain = ElementwiseChain {
            name: format!("{}{suffix}", ctx.name),
            len: ctx.outputs[0].elements(),
            dtype: ctx.outputs[0].dtype,
            inputs: 1,
            steps: steps.clone(),
            output: 0,
        };
        Some(
            plan_chain(&chain, ctx.target)
                .map(|plan| {
                    Lowering::single(KernelCall {
                        kernel: plan.kernel,
                        cost: plan.cost,
                        args: vec![ArgRef::Operand(0), ArgRef::Result(0)],
                        assumptions: Vec::new(),
                    })
                })
                .map_err(Into::into),
        )
    }
}

fn step(op: VecOp, srcs: Vec<ChainArg>) -> ChainStep {
    ChainStep { op, dst: 0, srcs }
}

/// `softplus(x) = ln(1 + exp(x))`.
fn softplus_steps() -> Vec<ChainStep> {
    vec![
        step(VecOp::Exp, vec![ChainArg::Input(0)]),
        step(VecOp::Adds, vec![ChainArg::Temp(0), ChainArg::Imm(1.0)]),
        step(VecOp::Ln, vec![ChainArg::Temp(0)]),
    ]
}

const SOFTPLUS: &str = "graph @softplus_block {
  input %x: f32[tokens, 96]
  %s: f32[tokens, 96] = softplus(%x) @act
  %y: f32[tokens, 96] = exp(%s) @grow
  return %y
}
";

#[test]
fn a_user_lowering_gives_an_op_without_kernels_one_that_matches_the_interpreter() {
    let model = Model::from_ir_text(SOFTPLUS).expect("parses");
    let bindings = [("tokens".to_string(), 24)].into();
    let err = model
        .compile(&target(), &bindings)
        .expect_err("no built-in softplus kernel");
    assert!(err.to_string().contains("act"), "{err}");

    let mut lowerings = Lowerings::new();
    lowerings.register(
        "softplus",
        chain_lowering(Op::Unary(UnaryOp::Softplus), "_softplus", softplus_steps()),
    );
    let compiled = model
        .compile_with(&target(), &bindings, &lowerings)
        .expect("compiles");
    let names: Vec<&str> = compiled
        .program()
        .kernels
        .iter()
        .map(|k| k.name.as_str())
        .collect();
    assert_eq!(names, ["k0_act_softplus", "k1_grow"]);
    let inputs = HashMap::from([("x".to_string(), ramp(vec![24, 96], 0.002))]);
    assert_eq!(compiled.verify_on(Engine::Cpu, &inputs).expect("cpu"), None);
    assert_eq!(compiled.verify(&inputs).expect("reference"), None);
    let want = &model.run_reference(&inputs).expect("interpreter")[0].1;
    assert_close(
        &compiled.run(Engine::Cpu, &inputs).expect("cpu")[0].1,
        want,
        1e-5,
    );
}

#[test]
fn user_lowerings_come_before_the_built_in_ones_and_their_errors_name_them() {
    let model = Model::from_ir_text(SOFTPLUS).expect("parses");
    let bindings = [("tokens".to_string(), 8)].into();
    let mut lowerings = Lowerings::new();
    lowerings.register(
        "softplus",
        chain_lowering(Op::Unary(UnaryOp::Softplus), "_softplus", softplus_steps()),
    );
    lowerings.register(
        "exp",
        chain_lowering(
            Op::Unary(UnaryOp::Exp),
            "_mine",
            vec![step(VecOp::Exp, vec![ChainArg::Input(0)])],
        ),
    );
    let compiled = model
        .compile_with(&target(), &bindings, &lowerings)
        .expect("compiles");
    assert_eq!(compiled.program().kernels[1].name, "k1_grow_mine");
    let inputs = HashMap::from([("x".to_string(), ramp(vec![8, 96], 0.003))]);
    assert_eq!(compiled.verify_on(Engine::Cpu, &inputs).expect("cpu"), None);

    let mut failing = Lowerings::new();
    failing.register("picky", |ctx| {
        (*ctx.op == Op::Unary(UnaryOp::Softplus))
            .then(|| Err(LowerError::Unsupported("not today".to_string())))
    });
    let err = model
        .compile_with(&target(), &bindings, &failing)
        .expect_err("the lowering refuses");
    let message = err.to_string();
    assert!(
        message.contains("act") && message.contains("user lowering `picky`: not today"),
        "{message}"
    );
}

#[test]
fn graphs_built_in_code_compile_and_run() {
    use cubevec::ir::graph::{TensorType, WeightData};
    use cubevec::ir::{Graph, Shape};

    let mut graph = Graph::new("built");
    let mut b = graph.builder();
    let x = b
        .add_input("x", TensorType::new(DType::F32, Shape::known(&[32, 64])))
        .expect("x");
    let w = ramp(vec![64, 64], 0.001);
    let w = b
        .add_initializer(
            "w",
            TensorType::new(DType::F32, Shape::known(&[64, 64])),
            WeightData::Inline(w.bytes().into()),
        )
        .expect("w");
    let h = b
        .add_op("proj", Op::MatMul, vec![Some(x), Some(w)], vec![])
        .expect("matmul")[0];
    let y = b
        .add_op("act", Op::Unary(UnaryOp::Silu), vec![Some(h)], vec![])
        .expect("silu")[0];
    b.add_output(y).expect("output");
    let model = Model::from_graph(graph).expect("verifies");
    let compiled = Compiler::new(target()).compile(&model).expect("compiles");
    let inputs = HashMap::from([("x".to_string(), ramp(vec![32, 64], 0.01))]);
    let want = &model.run_reference(&inputs).expect("interpreter")[0].1;
    assert_close(
        &compiled.run(Engine::Cpu, &inputs).expect("cpu")[0].1,
        want,
        1e-5,
    );
    // A graph that does not verify is refused with the node named.
    let mut bad = Graph::new("bad");
    let mut b = bad.builder();
    let x = b
        .add_input("x", TensorType::new(DType::F32, Shape::known(&[4])))
        .expect("x");
    let err = b
        .add_op("oops", Op::MatMul, vec![Some(x)], vec![])
        .expect_err("one operand");
    assert!(Error::from(err).to_string().contains("oops"));
}

#[test]
fn deployment_shards_experts_and_splits_the_kv_cache_by_sequence() {
    let model = Model::load(fixture("models/mixtral")).expect("loads");
    let kv = model
        .kv_cache()
        .expect("a checkpoint describes its cache")
        .clone();
    let options = CompileOptions {
        bindings: [("batch".to_string(), 3), ("seq".to_string(), 8)].into(),
        emit_ascendc: false,
        ..CompileOptions::default()
    };
    let compiled = Compiler::new(target())
        .options(options)
        .compile(&model)
        .expect("compiles");
    let constants: u64 = compiled
        .program()
        .tensors
        .iter()
        .filter(|t| t.kind == TensorKind::Constant)
        .map(|t| t.bytes())
        .sum();

    let one = Deployment::plan(&compiled, &DeploymentOptions::default());
    assert_eq!(one.devices, 1, "a tiny model fits one device");
    assert!(one.fits);
    assert_eq!(one.weight_bytes, constants);
    assert_eq!(one.weight_bytes_per_device, constants);
    assert_eq!(one.context, 8);
    assert_eq!(one.kv_bytes_per_device, Some(3 * kv.bytes(8)));

    let two = Deployment::plan(
        &compiled,
        &DeploymentOptions {
            devices: Some(2),
            context: Some(1000),
        },
    );
    // The stacked expert weights are most of a MoE model's bytes; the rest is replicated.
    assert!(two.expert_weight_bytes > constants / 2, "{two:?}");
    assert_eq!(
        two.weight_bytes_per_device,
        constants - two.expert_weight_bytes + two.expert_weight_bytes.div_ceil(2)
    );
    // Two of the three sequences on the busier device, each with 1000 cached positions.
    assert_eq!(two.kv_bytes_per_sequence, Some(kv.bytes(1000)));
    assert_eq!(two.kv_bytes_per_device, Some(2 * kv.bytes(1000)));
    assert_eq!(
        two.bytes_per_device,
        two.weight_bytes_per_device + 2 * kv.bytes(1000) + compiled.program().memory.arena_bytes
    );
}
