//! Whole fixture models through the tiled kernels: every Hugging Face checkpoint and every ONNX
//! MoE block export is partitioned for ascend910b2, run with the kernel IR reference executor
//! (launch by launch beside the graph interpreter) and with the CPU back end (cranelift), and,
//! for a representative set, as emitted
//! AscendC built with g++ against the emulation; the outputs are compared with the torch /
//! onnxruntime references committed with the fixtures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cubevec::ir::target::Target;
use cubevec::ir::{Tensor, npy};
use cubevec::{Engine, Model, OptimizeOptions};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// Largest |a - b| over the largest |b|.
fn relative_error(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    g.iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale
}

struct Case<'a> {
    model: PathBuf,
    input: (&'a str, PathBuf),
    expected: PathBuf,
    optimize: bool,
    /// Relative tolerance against the framework's output (bf16 and FP8 checkpoints compute in
    /// bf16 in torch and in f32-accumulating kernels here).
    tolerance: f64,
}

fn checkpoint(name: &str, tolerance: f64) -> Case<'static> {
    let dir = fixture(&format!("models/{name}"));
    Case {
        input: ("input_ids", dir.join("input_ids.npy")),
        expected: dir.join("logits.npy"),
        model: dir,
        optimize: false,
        tolerance,
    }
}

fn moe_block(name: &str) -> Case<'static> {
    let stem = fixture(&format!("models/{name}-moe-block-opset20"));
    Case {
        model: stem.with_extension("onnx"),
        input: ("hidden_states", stem.with_extension("input.npy")),
        expected: stem.with_extension("output.npy"),
        optimize: true,
        tolerance: 1e-5,
    }
}

fn export(name: &str) -> Case<'static> {
    let stem = fixture(&format!("models/{name}"));
    Case {
        model: stem.with_extension("onnx"),
        input: ("input_ids", stem.with_extension("input_ids.npy")),
        expected: stem.with_extension("logits.npy"),
        optimize: true,
        tolerance: 1e-5,
    }
}

/// Runs `case` through the kernels (and the emulation when `emulate`), checking each launch
/// against the interpreter and the outputs against the reference.
fn check(case: &Case, emulate: bool) {
    let name = case.model.display().to_string();
    let mut model = Model::load(&case.model).unwrap_or_else(|e| panic!("{name}: {e}"));
    if case.optimize {
        model = model
            .optimize(&OptimizeOptions::default())
            .expect("optimize")
            .0;
    }
    let inputs = HashMap::from([(
        case.input.0.to_string(),
        npy::read_npy(&case.input.1).expect("input"),
    )]);
    let want = npy::read_npy(&case.expected).expect("expected output");
    let target = Target::by_name("ascend910b2").expect("target");
    let bindings = model.bindings_for(&inputs).expect("bindings");
    let compiled = model
        .compile(&target, &bindings)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    compiled.program().check().expect("program");
    let mismatch = compiled.verify(&inputs).expect("verify");
    assert_eq!(mismatch, None, "{name}");
    let outputs = compiled
        .run(Engine::KernelReference, &inputs)
        .expect("kernel run");
    let err = relative_error(&outputs[0].1, &want);
    assert!(err <= case.tolerance, "{name}: kernels differ by {err}");
    let outputs = compiled.run(Engine::Cpu, &inputs).expect("CPU run");
    let err = relative_error(&outputs[0].1, &want);
    assert!(
        err <= case.tolerance,
        "{name}: the CPU back end differs by {err}"
    );
    if emulate {
        let outputs = compiled
            .run_emulated(&inputs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let err = relative_error(&outputs[0].1, &want);
        assert!(
            err <= case.tolerance,
            "{name}: emulated AscendC differs by {err}"
        );
    }
}

#[test]
fn hugging_face_checkpoints_run_through_the_kernels() {
    for (name, tolerance) in [
        ("mixtral", 1e-5),
        ("qwen2-moe", 1e-5),
        ("qwen3-moe", 1e-5),
        ("qwen3-moe-sharded", 1e-5),
        ("deepseek-v3", 1e-5),
        ("mixtral-bf16", 2e-2),
        ("deepseek-v3-fp8", 2e-2),
    ] {
        check(&checkpoint(name, tolerance), false);
    }
}

#[test]
fn onnx_moe_blocks_run_through_the_kernels() {
    for name in ["mixtral", "qwen2-moe", "qwen3-moe"] {
        check(&moe_block(name), false);
    }
}

#[test]
fn emitted_ascendc_runs_whole_models_under_emulation() {
    check(&checkpoint("mixtral", 1e-5), true);
    // Fused epilogues of every kind: residual adds, SwiGLU pairs, the MoE experts' gate_up and
    // the shared expert's per-token gate column.
    check(&checkpoint("qwen2-moe", 1e-5), true);
    check(&checkpoint("deepseek-v3", 1e-5), true);
    check(&checkpoint("deepseek-v3-fp8", 2e-2), true);
    check(&moe_block("qwen2-moe"), true);
}

/// Every other fixture as emulated AscendC (about 5-12 s each, almost all of it g++; run with
/// `cargo test --test model_kernels -- --ignored`). The DeepSeek-V4 checkpoints are emulated
/// with `compile-model … --run --emulate` (about 90 s each).
#[test]
#[ignore = "several minutes of g++: the test above emulates a representative set"]
fn emitted_ascendc_runs_every_fixture_under_emulation() {
    for (name, tolerance) in [
        ("mixtral-bf16", 2e-2),
        ("qwen3-moe", 1e-5),
        ("qwen3-moe-sharded", 1e-5),
    ] {
        check(&checkpoint(name, tolerance), true);
    }
    for name in ["mixtral", "qwen3-moe", "deepseek-v3"] {
        check(&moe_block(name), true);
    }
    for model in ["mixtral", "qwen2-moe", "qwen3-moe", "deepseek-v3"] {
        for opset in [20, 23] {
            check(&export(&format!("{model}-opset{opset}")), true);
        }
    }
}

/// The kernels `name`'s checkpoint fixture compiles to for ascend910b2.
fn checkpoint_kernels(name: &str) -> Vec<cubevec::ir::kernel::Kernel> {
    let case = checkpoint(name, 0.0);
    let model = Model::load(&case.model).expect("model");
    let inputs = HashMap::from([(
        case.input.0.to_string(),
        npy::read_npy(&case.input.1).expect("input"),
    )]);
    let target = Target::by_name("ascend910b2").expect("target");
    let bindings = model.bindings_for(&inputs).expect("bindings");
    let compiled = model.compile(&target, &bindings).expect("compile");
    compiled.program().kernels.clone()
}

/// The residual add after each MoE block runs in the block's combine kernel (the cost model
/// finds that faster than a launch of its own): Mixtral has no residual kernel after its
/// experts, and its combine kernel reads the residual.
#[test]
fn the_residual_add_after_a_moe_block_runs_in_its_combine() {
    let kernels = checkpoint_kernels("mixtral");
    let names: Vec<&str> = kernels.iter().map(|k| k.name.as_str()).collect();
    assert!(
        names.iter().all(|n| !n.contains("residual")),
        "a residual kernel remains: {names:?}"
    );
    let combine = kernels
        .iter()
        .find(|k| k.name.ends_with("experts_combine"))
        .expect("a combine kernel");
    let params: Vec<&str> = combine.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(params, ["y", "weights", "places", "out", "operand0"]);
}

/// A bf16 checkpoint's head widens its logits to f32 in the head GEMM's epilogue: one MIX
/// kernel writing f32, no cast kernel after it.
#[test]
fn a_bf16_head_writes_f32_logits_itself() {
    let kernels = checkpoint_kernels("mixtral-bf16");
    let head: Vec<_> = kernels
        .iter()
        .filter(|k| k.name.contains("lm_head"))
        .collect();
    assert_eq!(
        head.len(),
        1,
        "{:?}",
        head.iter().map(|k| &k.name).collect::<Vec<_>>()
    );
    assert_eq!(head[0].core, cubevec::ir::kernel::CoreType::Mix1To2);
    let c = head[0]
        .params
        .iter()
        .find(|p| p.name == "c")
        .expect("output");
    assert_eq!(c.dtype, cubevec::ir::DType::F32);
}
