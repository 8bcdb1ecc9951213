//! The ONNX node conformance suite: every committed case of `tests/fixtures/onnx-node` is read
//! by the ONNX frontend, run by the reference interpreter and compared with the outputs onnx's
//! reference implementation produced (written by `scripts/gen_onnx_conformance.py`).
//!
//! The test prints a per-op pass table and the summary line `N passed, M failed`. It fails when a
//! case that is not in [`KNOWN_FAILURES`] fails, or when fewer than 95% of the cases pass.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cubevec_frontend::onnx::{self, LoadOptions, OnnxError, proto::ModelProto};
use cubevec_ir::interp::{self, RunOptions};
use cubevec_ir::{DType, Tensor};
use prost::Message;

/// Cases that are expected to fail, with the reason (kept in sync with `docs/conformance.md`).
const KNOWN_FAILURES: &[(&str, &str)] = &[
    (
        "test_attention_23_boolmask_fullymasked_row_nan_robustness",
        "the IR's Attention gives NaN for a query whose every key is masked; ONNX gives zeros",
    ),
    (
        "test_attention_causal_boolmask_nan_robustness",
        "the IR's Attention gives NaN for a query whose every key is masked; ONNX gives zeros",
    ),
    (
        "test_cast_FLOAT16_to_FLOAT4E2M1",
        "NaN cast to FP4 E2M1: the IR encodes +6 (saturation), ONNX's reference encodes -0",
    ),
    (
        "test_cast_FLOAT_to_FLOAT4E2M1",
        "NaN cast to FP4 E2M1: the IR encodes +6 (saturation), ONNX's reference encodes -0",
    ),
    (
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FN",
        "Cast with saturate=0: the IR's Cast always saturates fp8 conversions",
    ),
    (
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2",
        "Cast with saturate=0: the IR's Cast always saturates fp8 conversions",
    ),
    (
        "test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FN",
        "Cast with saturate=0: the IR's Cast always saturates fp8 conversions",
    ),
    (
        "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2",
        "Cast with saturate=0: the IR's Cast always saturates fp8 conversions",
    ),
    (
        "test_castlike_FLOAT16_to_FLOAT4E2M1",
        "NaN cast to FP4 E2M1: the IR encodes +6 (saturation), ONNX's reference encodes -0",
    ),
    (
        "test_castlike_FLOAT_to_FLOAT4E2M1",
        "NaN cast to FP4 E2M1: the IR encodes +6 (saturation), ONNX's reference encodes -0",
    ),
    (
        "test_castlike_no_saturate_FLOAT16_to_FLOAT8E4M3FN",
        "Cast with saturate=0: the IR's Cast always saturates fp8 conversions",
    ),
    (
        "test_castlike_no_saturate_FLOAT16_to_FLOAT8E5M2",
        "Cast with saturate=0: the IR's Cast always saturates fp8 conversions",
    ),
    (
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E4M3FN",
        "Cast with saturate=0: the IR's Cast always saturates fp8 conversions",
    ),
    (
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E5M2",
        "Cast with saturate=0: the IR's Cast always saturates fp8 conversions",
    ),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx-node")
}

/// `(rtol, atol)` per dtype, as onnx's backend test compares (looser for narrow floats).
fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F32 => (1e-3, 1e-7),
        DType::F16 => (1e-3, 1e-3),
        DType::BF16 => (1e-2, 1e-2),
        DType::F8E4M3FN | DType::F8E5M2 | DType::E8M0 | DType::F4E2M1 => (1e-1, 1e-2),
        _ => (0.0, 0.0),
    }
}

/// Compares one output; `Err` describes the first mismatch.
fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!(
            "dtype {} != expected {}",
            got.dtype(),
            want.dtype()
        ));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} != expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let (rtol, atol) = tolerance(want.dtype());
    for i in 0..want.numel() {
        let (g, w) = (got.get_f64(i), want.get_f64(i));
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        if !ok {
            return Err(format!("element {i}: {g} != expected {w}"));
        }
    }
    Ok(())
}

/// Runs one case directory.
fn run_case(dir: &Path) -> Result<(), String> {
    let model_path = dir.join("model.onnx");
    let bytes = std::fs::read(&model_path).map_err(|e| e.to_string())?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let onnx_graph = model.graph.ok_or("no graph")?;
    let data = dir.join("test_data_set_0");
    let mut inputs = HashMap::new();
    for (i, input) in onnx_graph.input.iter().enumerate() {
        let path = data.join(format!("input_{i}.pb"));
        if !path.exists() {
            continue;
        }
        let (_, t) = onnx::read_tensor_file(&path).map_err(|e| format!("input data: {e}"))?;
        inputs.insert(input.name.clone(), t);
    }
    // The node tests feed shapes, axes and `k` as graph inputs; the compiler needs them at
    // import time, so an input an importer asks for is fixed to its test value.
    let mut options = LoadOptions::default();
    let graph = loop {
        match onnx::load_with(&model_path, &options) {
            Ok(graph) => break graph,
            Err(OnnxError::NotConstant { value, .. })
                if inputs.contains_key(&value) && !options.constant_inputs.contains_key(&value) =>
            {
                let t = inputs.remove(&value).ok_or("input vanished")?;
                options.constant_inputs.insert(value, t);
            }
            Err(e) => return Err(format!("import: {e}")),
        }
    };
    let options = RunOptions {
        weight_dir: Some(dir.to_path_buf()),
    };
    let outputs = interp::run(&graph, &inputs, &options).map_err(|e| format!("run: {e}"))?;
    for (i, got) in outputs.iter().enumerate() {
        let (_, want) = onnx::read_tensor_file(&data.join(format!("output_{i}.pb")))
            .map_err(|e| format!("output data: {e}"))?;
        compare(got, &want).map_err(|e| format!("output {i}: {e}"))?;
    }
    Ok(())
}

/// The op a case tests: the single node's op type, or the twin case's op for `_expanded`
/// function-body variants.
fn case_op(root: &Path, case: &str) -> String {
    let op_of = |dir: &Path| -> Option<String> {
        let bytes = std::fs::read(dir.join("model.onnx")).ok()?;
        let model = ModelProto::decode(bytes.as_slice()).ok()?;
        let graph = model.graph?;
        (graph.node.len() == 1).then(|| graph.node[0].op_type.clone())
    };
    match case.split_once("_expanded") {
        Some((twin, _)) => match op_of(&root.join(twin)) {
            Some(op) => format!("{op} (expanded)"),
            None => "(expanded)".into(),
        },
        None => op_of(&root.join(case)).unwrap_or_else(|| "?".into()),
    }
}

#[test]
fn onnx_node_conformance() {
    let root = fixtures();
    let mut cases: Vec<String> = std::fs::read_dir(&root)
        .expect("fixture directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    let out_of_scope =
        std::fs::read_to_string(root.join("out_of_scope.tsv")).expect("out_of_scope.tsv");
    for line in out_of_scope.lines().filter(|l| !l.starts_with('#')) {
        let case = line.split('\t').next().unwrap_or_default();
        assert!(
            !cases.iter().any(|c| c == case),
            "{case} is listed out of scope but committed"
        );
    }
    let known: BTreeMap<&str, &str> = KNOWN_FAILURES.iter().copied().collect();
    let mut table: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut expected = Vec::new();
    let mut fixed = Vec::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &cases {
        let result = run_case(&root.join(case));
        let entry = table.entry(case_op(&root, case)).or_default();
        match result {
            Ok(()) => {
                passed += 1;
                entry.0 += 1;
                if known.contains_key(case.as_str()) {
                    fixed.push(case.clone());
                }
            }
            Err(e) => {
                failed += 1;
                entry.1 += 1;
                match known.get(case.as_str()) {
                    Some(reason) => expected.push(format!("{case}: {reason}")),
                    None => unexpected.push(format!("{case}: {e}")),
                }
            }
        }
    }
    println!("{:<34} {:>6} {:>6}", "op", "passed", "failed");
    for (op, (p, f)) in &table {
        println!("{op:<34} {p:>6} {f:>6}");
    }
    for line in &expected {
        println!("known failure {line}");
    }
    for case in &fixed {
        println!("known failure now passes (remove it from the list): {case}");
    }
    for line in &unexpected {
        println!("UNEXPECTED FAILURE {line}");
    }
    println!("{passed} passed, {failed} failed");
    assert!(
        unexpected.is_empty(),
        "{} unexpected failures",
        unexpected.len()
    );
    assert!(
        passed * 100 >= (passed + failed) * 95,
        "pass rate {passed}/{} is below 95%",
        passed + failed
    );
}
