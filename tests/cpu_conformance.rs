//! The ONNX node conformance suite through the kernels: every committed case of
//! `tests/fixtures/onnx-node` is imported, partitioned into kernels tiled for the 910B2, compiled
//! by the CPU back end and run, and its outputs are compared with the ones onnx's reference
//! implementation produced.
//!
//! A case whose op has no kernel mapping yet is counted as "no kernel", and one whose kernel the
//! tilers cannot tile for this form (a dtype or layout they do not handle) as "no tiling", each
//! with the partitioner's reason; neither is a failure of the back end. The test prints a per-op
//! table and the summary line `N passed, M failed`, and fails when a case that plans gives a
//! wrong result or does not run, or when fewer than [`PASS_FLOOR`] cases pass.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cubevec::ir::target::Target;
use cubevec::ir::{DType, Tensor};
use cubevec::{Engine, Error, Model};
use cubevec_frontend::onnx::{self, LoadOptions, OnnxError, proto::ModelProto};
use cubevec_passes::lower::LowerError;
use cubevec_passes::partition::PartitionError;
use prost::Message;

/// Cases that run through the kernels and match. Raise it when kernels are added; it may not
/// drop.
const PASS_FLOOR: usize = 570;

/// Cases the reference interpreter itself does not match (`frontend/tests/conformance.rs`
/// lists them with the reason): the IR's semantics differ from ONNX's there, so the kernels,
/// which follow the IR, are not compared.
const IR_DIFFERS: &[&str] = &[
    "test_attention_23_boolmask_fullymasked_row_nan_robustness",
    "test_attention_causal_boolmask_nan_robustness",
    "test_cast_FLOAT16_to_FLOAT4E2M1",
    "test_cast_FLOAT_to_FLOAT4E2M1",
    "test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FN",
    "test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2",
    "test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FN",
    "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2",
    "test_castlike_FLOAT16_to_FLOAT4E2M1",
    "test_castlike_FLOAT_to_FLOAT4E2M1",
    "test_castlike_no_saturate_FLOAT16_to_FLOAT8E4M3FN",
    "test_castlike_no_saturate_FLOAT16_to_FLOAT8E5M2",
    "test_castlike_no_saturate_FLOAT_to_FLOAT8E4M3FN",
    "test_castlike_no_saturate_FLOAT_to_FLOAT8E5M2",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx-node")
}

/// `(rtol, atol)` per dtype, as onnx's backend test compares (looser for narrow floats).
fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F32 => (1e-3, 1e-6),
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

/// What became of one case.
enum Outcome {
    Passed,
    /// The partitioner has no kernel for an op of the case (its reason).
    NoKernel(String),
    /// The op has a kernel mapping but the tilers reject this form of it (their reason).
    NoTiling(String),
    /// Planned but failed or gave a wrong result.
    Failed(String),
}

/// Reads a case as the frontend test does: inputs an importer needs at import time (shapes,
/// axes, `k`) become constants, one at a time, as it asks for them.
fn import(dir: &Path) -> Result<(Model, HashMap<String, Tensor>), String> {
    let model_path = dir.join("model.onnx");
    let bytes = std::fs::read(&model_path).map_err(|e| e.to_string())?;
    let proto = ModelProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let onnx_graph = proto.graph.ok_or("no graph")?;
    let data = dir.join("test_data_set_0");
    let mut inputs = HashMap::new();
    for (i, input) in onnx_graph.input.iter().enumerate() {
        let path = data.join(format!("input_{i}.pb"));
        if path.exists() {
            let (_, t) = onnx::read_tensor_file(&path).map_err(|e| format!("input data: {e}"))?;
            inputs.insert(input.name.clone(), t);
        }
    }
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
    let model = if options.constant_inputs.is_empty() {
        Model::load(&model_path)
    } else {
        // The facade reads files without fixed inputs; the graph with them goes through the
        // textual IR (the node cases' initializers are inline).
        Model::from_ir_text(&cubevec::ir::text::print(&graph))
    }
    .map_err(|e| format!("model: {e}"))?;
    Ok((model, inputs))
}

fn run_case(dir: &Path, target: &Target) -> Outcome {
    let (model, inputs) = match import(dir) {
        Ok(x) => x,
        Err(e) => return Outcome::Failed(e),
    };
    let bindings = match model.bindings_for(&inputs) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(format!("bindings: {e}")),
    };
    let compiled = match model.compile(target, &bindings) {
        Ok(c) => c,
        Err(Error::Partition(e)) => {
            return match *e {
                PartitionError::Lower { node, source } => match *source {
                    LowerError::Unsupported(why) => Outcome::NoKernel(format!("{node}: {why}")),
                    LowerError::Tile(why) => Outcome::NoTiling(format!("{node}: {why}")),
                },
                other => Outcome::Failed(format!("plan: {other}")),
            };
        }
        Err(e) => return Outcome::Failed(format!("plan: {e}")),
    };
    let outputs = match compiled.run(Engine::Cpu, &inputs) {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(format!("run: {e}")),
    };
    let data = dir.join("test_data_set_0");
    for (i, (_, got)) in outputs.iter().enumerate() {
        let want = match onnx::read_tensor_file(&data.join(format!("output_{i}.pb"))) {
            Ok((_, t)) => t,
            Err(e) => return Outcome::Failed(format!("output data: {e}")),
        };
        if let Err(e) = compare(got, &want) {
            return Outcome::Failed(format!("output {i}: {e}"));
        }
    }
    Outcome::Passed
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

/// Per-op counts.
#[derive(Default)]
struct Row {
    passed: usize,
    no_kernel: usize,
    no_tiling: usize,
    failed: usize,
}

#[test]
fn onnx_node_conformance_on_cpu() {
    let root = fixtures();
    let target = Target::by_name("ascend910b2").expect("target");
    let mut cases: Vec<String> = std::fs::read_dir(&root)
        .expect("fixture directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|c| !IR_DIFFERS.contains(&c.as_str()))
        .collect();
    cases.sort();
    let mut table: BTreeMap<String, Row> = BTreeMap::new();
    let mut no_kernel = Vec::new();
    let mut no_tiling = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        let op = case_op(&root, case);
        let row = table.entry(op.clone()).or_default();
        match run_case(&root.join(case), &target) {
            Outcome::Passed => row.passed += 1,
            Outcome::NoKernel(why) => {
                row.no_kernel += 1;
                no_kernel.push(format!("{case} ({op}): {why}"));
            }
            Outcome::NoTiling(why) => {
                row.no_tiling += 1;
                no_tiling.push(format!("{case} ({op}): {why}"));
            }
            Outcome::Failed(why) => {
                row.failed += 1;
                failures.push(format!("{case} ({op}): {why}"));
            }
        }
    }
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>6}",
        "op", "passed", "no kernel", "no tiling", "failed"
    );
    for (op, r) in &table {
        println!(
            "{op:<34} {:>6} {:>9} {:>9} {:>6}",
            r.passed, r.no_kernel, r.no_tiling, r.failed
        );
    }
    for line in &no_kernel {
        println!("no kernel: {line}");
    }
    for line in &no_tiling {
        println!("no tiling: {line}");
    }
    for line in &failures {
        println!("FAILURE {line}");
    }
    let passed: usize = table.values().map(|r| r.passed).sum();
    println!(
        "not counted: {} no kernel, {} no tiling, {} where the IR differs from ONNX",
        no_kernel.len(),
        no_tiling.len(),
        IR_DIFFERS.len()
    );
    println!("{passed} passed, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} planned cases fail on the CPU back end",
        failures.len()
    );
    assert!(
        passed >= PASS_FLOOR,
        "{passed} cases pass, fewer than the floor of {PASS_FLOOR}"
    );
}
