//! The DeepSeek-V4 fixtures through the tiled kernels (the lightning indexer's top-k and
//! scatter, hyper-connection norms, compressed attention), partitioned for ascend910b2 and
//! compared with the transformers logits committed with the fixtures. Each engine runs where it
//! proves something new, to keep the test short: `deepseek-v4` is checked launch by launch
//! against the graph interpreter and run with the kernel IR reference executor; its
//! checkpoint-names copy (the same model under the real checkpoint's tensor names) with the
//! reference executor; the FP8/FP4 checkpoint (computed in f32, like its reference) with the
//! reference executor and the CPU back end (cranelift).

use std::collections::HashMap;
use std::path::Path;

use cubevec::ir::target::Target;
use cubevec::ir::{DType, Tensor, npy};
use cubevec::{Engine, LoadOptions, Model};

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

/// Runs fixture `name`; the CPU back end only when `cpu` (it compiles every distinct kernel, the
/// slow part, and the checkpoint-names fixture plans to the same kernels as `deepseek-v4`).
fn check(name: &str, verify: bool, cpu: bool) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name);
    let options = LoadOptions {
        compute_dtype: Some(DType::F32),
        ..LoadOptions::default()
    };
    let model = Model::load_with(&dir, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    let inputs = HashMap::from([(
        "input_ids".to_string(),
        npy::read_npy(&dir.join("input_ids.npy")).expect("input"),
    )]);
    let want = npy::read_npy(&dir.join("logits.npy")).expect("logits");
    let target = Target::by_name("ascend910b2").expect("target");
    let bindings = model.bindings_for(&inputs).expect("bindings");
    let compiled = model
        .compile(&target, &bindings)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    compiled.program().check().expect("program");
    if verify {
        assert_eq!(compiled.verify(&inputs).expect("verify"), None, "{name}");
    }
    let mut engines = vec![(Engine::KernelReference, "kernels")];
    if cpu {
        engines.push((Engine::Cpu, "CPU back end"));
    }
    for (engine, what) in engines {
        let outputs = compiled.run(engine, &inputs).expect(what);
        let err = relative_error(&outputs[0].1, &want);
        assert!(err <= 1e-4, "{name}: the {what} differ by {err}");
    }
}

#[test]
fn deepseek_v4_runs_through_the_kernels() {
    check("deepseek-v4", true, false);
}

#[test]
fn deepseek_v4_checkpoint_names_run_through_the_kernels() {
    check("deepseek-v4-checkpoint-names", false, false);
}

#[test]
fn deepseek_v4_fp8_fp4_runs_through_the_kernels() {
    check("deepseek-v4-fp8-fp4", false, true);
}
