//! Whole MoE models exported from PyTorch (`tests/fixtures/models/*.onnx`): each is read by the
//! ONNX frontend, run by the reference interpreter, and compared with the committed torch
//! outputs (max |diff| ≤ 1e-4 · max |reference|).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cubevec_frontend::onnx;
use cubevec_ir::interp::{self, RunOptions};
use cubevec_ir::npy::read_npy;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")
}

/// The input and reference files of a model: `<stem>.input_ids.npy`/`<stem>.logits.npy`,
/// `<stem>.input.npy`/`<stem>.output.npy`, or the fused-CPU variant's own names.
fn io_files(dir: &Path, stem: &str) -> Option<(PathBuf, PathBuf)> {
    let pairs = [
        (
            format!("{stem}.input_ids.npy"),
            format!("{stem}.logits.npy"),
        ),
        (format!("{stem}.input.npy"), format!("{stem}.output.npy")),
        (
            format!("{}.input_ids.npy", stem.trim_end_matches("-cpu")),
            format!("{stem}.ort_logits.npy"),
        ),
    ];
    pairs
        .into_iter()
        .map(|(i, o)| (dir.join(i), dir.join(o)))
        .find(|(i, o)| i.exists() && o.exists())
}

fn check_model(dir: &Path, stem: &str) -> Result<String, String> {
    let path = dir.join(format!("{stem}.onnx"));
    let (input_path, output_path) = io_files(dir, stem).ok_or("no input/reference files")?;
    let graph = onnx::load(&path).map_err(|e| format!("import: {e}"))?;
    let input = read_npy(&input_path).map_err(|e| e.to_string())?;
    let want = read_npy(&output_path).map_err(|e| e.to_string())?;
    let first = *graph.inputs.first().ok_or("the graph has no input")?;
    let inputs: HashMap<String, _> = [(graph.value(first).name.clone(), input)].into();
    let options = RunOptions {
        weight_dir: Some(dir.to_path_buf()),
    };
    let outputs = interp::run(&graph, &inputs, &options).map_err(|e| format!("run: {e}"))?;
    let got = outputs.first().ok_or("no output")?;
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} != reference {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let (g, w) = (got.to_f32_vec(), want.to_f32_vec());
    let max_ref = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_diff = g
        .iter()
        .zip(&w)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let bound = 1e-4 * max_ref;
    if max_diff.is_nan() || max_diff > bound {
        return Err(format!(
            "max |diff| {max_diff:e} > {bound:e} (max |ref| {max_ref})"
        ));
    }
    Ok(format!(
        "{} nodes, max |diff| {max_diff:.2e}, max |ref| {max_ref:.3}",
        graph.nodes.len()
    ))
}

#[test]
fn exported_moe_models_match_torch() {
    let dir = models_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("missing fixture directory {}", dir.display());
    };
    let mut stems: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".onnx"))
                .map(str::to_string)
        })
        .collect();
    stems.sort();
    assert!(!stems.is_empty(), "no .onnx models in {}", dir.display());
    let mut failures = Vec::new();
    for stem in &stems {
        match check_model(&dir, stem) {
            Ok(summary) => println!("{stem}: ok ({summary})"),
            Err(e) => {
                println!("{stem}: FAILED {e}");
                failures.push(stem.clone());
            }
        }
    }
    assert!(failures.is_empty(), "models failed: {failures:?}");
}
