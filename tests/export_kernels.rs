//! The ONNX exports of the fixture models (and the checkpoints the optimiser rewrites the same
//! way) through the tiled kernels: each export is partitioned
//! for ascend910b2 (with and without the e-graph optimiser where both plan), run with the kernel
//! IR reference executor and the CPU back end, and its logits compared with the torch (or ONNX
//! Runtime) references committed with the fixtures. The symbolic dimensions of every export
//! (`batch`/`seq`, or the ORT exporter's `s72`/`s70`) are bound from the input's shape, which
//! differs from the traced one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cubevec::ir::target::Target;
use cubevec::ir::{Tensor, npy};
use cubevec::{Engine, Model, OptimizeOptions};

/// Largest absolute difference allowed on the logits (they are O(1); ONNX Runtime reproduces
/// torch to 3e-6).
const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// Largest |a - b|.
fn max_abs_diff(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape());
    got.to_f64_vec()
        .iter()
        .zip(want.to_f64_vec())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// One export: the model, its input and its reference logits (fixture file names).
struct Export {
    model: String,
    input: String,
    logits: String,
}

/// `<stem>.onnx` with `<stem>.input_ids.npy` and `<stem>.logits.npy`.
fn export(stem: &str) -> Export {
    Export {
        model: format!("{stem}.onnx"),
        input: format!("{stem}.input_ids.npy"),
        logits: format!("{stem}.logits.npy"),
    }
}

/// Plans `export` (optimised when `optimize`) and runs it on `engines`, checking the logits.
fn check(export: &Export, optimize: bool, engines: &[Engine]) {
    let start = Instant::now();
    let name = format!("{} (optimize: {optimize})", export.model);
    let mut model = Model::load(fixture(&export.model)).unwrap_or_else(|e| panic!("{name}: {e}"));
    if optimize {
        model = model
            .optimize(&OptimizeOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .0;
    }
    let ids = npy::read_npy(&fixture(&export.input)).expect("input");
    let want = npy::read_npy(&fixture(&export.logits)).expect("logits");
    let inputs = HashMap::from([("input_ids".to_string(), ids)]);
    let target = Target::by_name("ascend910b2").expect("target");
    let bindings = model.bindings_for(&inputs).expect("bindings");
    let compiled = model
        .compile(&target, &bindings)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    compiled.program().check().expect("program");
    let mut diffs = Vec::new();
    for &engine in engines {
        let outputs = compiled
            .run(engine, &inputs)
            .unwrap_or_else(|e| panic!("{name} on {engine:?}: {e}"));
        let (out, logits) = &outputs[0];
        assert_eq!(out, "logits", "{name}");
        let diff = max_abs_diff(logits, &want);
        assert!(
            diff <= TOLERANCE,
            "{name} on {engine:?}: logits differ by {diff}"
        );
        diffs.push(format!("{engine:?} {diff:.1e}"));
    }
    let program = compiled.program();
    eprintln!(
        "{name}: {} launches, {} kernels, max |diff| {}, {:.1} s",
        program.launches.len(),
        program.kernels.len(),
        diffs.join(", "),
        start.elapsed().as_secs_f64()
    );
}

const BOTH: &[Engine] = &[Engine::KernelReference, Engine::Cpu];

/// Without the optimiser the exports route experts with `TopK`, which has no kernel here;
/// optimised, routing is part of the fused MoE op.
#[test]
fn optimized_exports_run_through_the_kernels() {
    for name in ["mixtral", "qwen2-moe", "qwen3-moe", "deepseek-v3"] {
        for opset in [20, 23] {
            check(&export(&format!("{name}-opset{opset}")), true, BOTH);
        }
    }
}

/// The optimiser merges the gate and up projections of these checkpoints into one matmul whose
/// result feeds a one-operand SwiGLU.
#[test]
fn optimized_checkpoints_with_merged_projections_run_through_the_kernels() {
    for name in ["qwen2-moe", "deepseek-v3"] {
        let checkpoint = Export {
            model: name.into(),
            input: format!("{name}/input_ids.npy"),
            logits: format!("{name}/logits.npy"),
        };
        check(&checkpoint, true, BOTH);
    }
}

#[test]
fn ort_fused_mixtral_runs_through_the_kernels() {
    let fused = export("mixtral-ort-fused");
    let cpu = Export {
        model: "mixtral-ort-fused-cpu.onnx".into(),
        logits: "mixtral-ort-fused-cpu.ort_logits.npy".into(),
        ..export("mixtral-ort-fused")
    };
    for e in [fused, cpu] {
        check(&e, false, BOTH);
        check(&e, true, BOTH);
    }
}
