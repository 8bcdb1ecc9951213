//! Shared by the Hugging Face reader tests: fixture paths, and running a fixture model against
//! the logits torch computed for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cubevec_frontend::hf::{self, HfOptions};
use cubevec_ir::interp::{RunOptions, run};
use cubevec_ir::npy::read_npy;
use cubevec_ir::verify::verify;
use cubevec_ir::{DType, Graph};

/// The repository's `tests/fixtures` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Reads the checkpoint in `dir` computing in f32, and verifies the graph.
pub fn load_f32(dir: &Path) -> Graph {
    let options = HfOptions {
        shapes_only: false,
        compute_dtype: Some(DType::F32),
    };
    let graph = hf::load(dir, options).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    verify(&graph).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    graph
}

/// Runs the model in `dir` on its `input_ids.npy` with the reference interpreter in f32 and
/// checks the logits against `expected` within 1e-4 of the largest logit; returns the graph.
pub fn check_logits_in(name: &str, dir: &Path, expected: &Path) -> Graph {
    let graph = load_f32(dir);
    let ids = read_npy(&dir.join("input_ids.npy")).unwrap();
    let expected = read_npy(expected).unwrap();
    let inputs = HashMap::from([("input_ids".to_string(), ids)]);
    let options = RunOptions {
        weight_dir: Some(dir.to_path_buf()),
    };
    let outputs = run(&graph, &inputs, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = &outputs[0];
    assert_eq!(got.shape(), expected.shape(), "{name}: logits shape");
    let (got, expected) = (got.to_f32_vec(), expected.to_f32_vec());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{name}: max |logit diff| {worst} exceeds 1e-4 × {scale}"
    );
    graph
}

/// [`check_logits_in`] for the fixture `tests/fixtures/models/{name}` and its `logits.npy`.
pub fn check_logits(name: &str) -> Graph {
    let dir = fixtures().join("models").join(name);
    check_logits_in(name, &dir, &dir.join("logits.npy"))
}
