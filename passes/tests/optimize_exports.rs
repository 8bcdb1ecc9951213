//! Whole models exported from PyTorch to ONNX (opset 20: attention as the SDPA decomposition with
//! a mask built from ranges and comparisons and a NaN guard; opset 23: the ONNX `Attention` op
//! with a bool mask) and the exported DeepSeek-V3 MoE block. After optimisation the attention,
//! RoPE (rotate-half, or DeepSeek-V3's interleaved form on strided slices), RMSNorm and MoE
//! subgraphs are fused ops, no masking, selection or indexing op is left
//! on activations, and the logits still match the onnxruntime reference run of the export.

mod optimize_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cubevec_frontend::onnx;
use cubevec_ir::graph::Graph;
use cubevec_ir::interp::{RunOptions, run};
use cubevec_ir::npy::read_npy;
use cubevec_ir::op::Op;
use cubevec_passes::optimize::{OptimizeOptions, optimize};
use optimize_support::{count, max_relative_difference};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")
}

/// Ops that have no kernel lowering and must not be left computing on activations: the pieces
/// of decomposed masks, NaN guards, softmax attention, routing and slice assignments.
const DECOMPOSED: [&str; 15] = [
    "where",
    "isnan",
    "softmax",
    "equal",
    "less_equal",
    "and",
    "not",
    "range",
    "cumsum",
    "topk",
    "gather_nd",
    "gather_elements",
    "scatter_elements",
    "scatter_nd",
    "reduce_max",
];

/// The op names of the nodes whose results depend on a graph input.
fn ops_on_activations(graph: &Graph) -> Vec<&'static str> {
    let mut live = vec![false; graph.values.len()];
    for &v in &graph.inputs {
        live[v.index()] = true;
    }
    let mut out = Vec::new();
    for n in graph.topological_order().expect("acyclic") {
        let node = graph.node(n);
        if node.inputs.iter().flatten().any(|v| live[v.index()]) {
            for &v in &node.outputs {
                live[v.index()] = true;
            }
            out.push(node.op.name());
        }
    }
    out
}

/// Optimises an exported model and checks its fused ops (per layer one `attention` and a `rope`
/// of each of `q` and `k`, in the interleaved form when `interleaved`), what is left on
/// activations, and its logits against the onnxruntime reference (within 1e-4 of the largest).
fn export_fuses_and_matches_onnxruntime(
    stem: &str,
    layers: usize,
    moe_layers: usize,
    interleaved: bool,
) {
    let graph = onnx::load(&models().join(format!("{stem}.onnx")))
        .unwrap_or_else(|e| panic!("{stem}: {e}"));
    let (optimised, report) = optimize(graph.clone(), &OptimizeOptions::default())
        .unwrap_or_else(|e| panic!("{stem}: {e}"));
    assert_eq!(count(&optimised, "attention"), layers, "{stem}\n{report}");
    assert_eq!(count(&optimised, "moe"), moe_layers, "{stem}\n{report}");
    assert_eq!(count(&optimised, "rope"), 2 * layers, "{stem}\n{report}");
    for node in &optimised.nodes {
        match node.op {
            Op::Attention { causal, .. } => {
                assert!(causal, "{stem}: {} is not causal", node.name);
                assert_eq!(node.inputs.len(), 3, "{stem}: {} keeps a mask", node.name);
            }
            Op::Rope { interleaved: form } => {
                assert_eq!(
                    form, interleaved,
                    "{stem}: {} has the wrong form",
                    node.name
                );
            }
            _ => {}
        }
    }
    let left: Vec<&str> = ops_on_activations(&optimised)
        .into_iter()
        .filter(|op| DECOMPOSED.contains(op))
        .collect();
    assert!(left.is_empty(), "{stem}: {left:?} left on activations");
    let ids = read_npy(&models().join(format!("{stem}.input_ids.npy"))).expect("input ids");
    let expected = read_npy(&models().join(format!("{stem}.logits.npy"))).expect("logits");
    let inputs = HashMap::from([("input_ids".to_string(), ids)]);
    let after = run(&optimised, &inputs, &RunOptions::default()).expect("optimised run");
    let diff = max_relative_difference(&[expected], &after);
    assert!(diff <= 1e-4, "{stem}: logits differ by {diff}\n{report}");
}

#[test]
fn exported_mixtral_opset20_fuses_and_matches_onnxruntime() {
    export_fuses_and_matches_onnxruntime("mixtral-opset20", 2, 2, false);
}

#[test]
fn exported_mixtral_opset23_fuses_and_matches_onnxruntime() {
    export_fuses_and_matches_onnxruntime("mixtral-opset23", 2, 2, false);
}

#[test]
fn exported_qwen2_moe_opset20_fuses_and_matches_onnxruntime() {
    export_fuses_and_matches_onnxruntime("qwen2-moe-opset20", 3, 2, false);
}

#[test]
fn exported_qwen2_moe_opset23_fuses_and_matches_onnxruntime() {
    export_fuses_and_matches_onnxruntime("qwen2-moe-opset23", 3, 2, false);
}

#[test]
fn exported_qwen3_moe_opset20_fuses_and_matches_onnxruntime() {
    export_fuses_and_matches_onnxruntime("qwen3-moe-opset20", 2, 2, false);
}

#[test]
fn exported_qwen3_moe_opset23_fuses_and_matches_onnxruntime() {
    export_fuses_and_matches_onnxruntime("qwen3-moe-opset23", 2, 2, false);
}

#[test]
fn exported_deepseek_v3_opset20_fuses_and_matches_onnxruntime() {
    export_fuses_and_matches_onnxruntime("deepseek-v3-opset20", 3, 2, true);
}

#[test]
fn exported_deepseek_v3_opset23_fuses_and_matches_onnxruntime() {
    export_fuses_and_matches_onnxruntime("deepseek-v3-opset23", 3, 2, true);
}

#[test]
fn exported_deepseek_v3_moe_block_becomes_group_limited_moe() {
    let stem = "deepseek-v3-moe-block-opset20";
    let graph = onnx::load(&models().join(format!("{stem}.onnx"))).expect("block");
    let (optimised, report) =
        optimize(graph.clone(), &OptimizeOptions::default()).expect("optimises");
    let routings: Vec<String> = optimised
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Moe { routing, .. } => Some(format!("{routing:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        routings,
        [format!(
            "SigmoidGroupLimited {{ n_group: 4, topk_group: 2, normalize: true, scaling_bits: {} }}",
            2.5f32.to_bits()
        )],
        "{report}"
    );
    let left: Vec<&str> = ops_on_activations(&optimised)
        .into_iter()
        .filter(|op| DECOMPOSED.contains(op))
        .collect();
    assert!(left.is_empty(), "{left:?} left on activations\n{report}");
    let x = read_npy(&models().join(format!("{stem}.input.npy"))).expect("block input");
    let expected = read_npy(&models().join(format!("{stem}.output.npy"))).expect("block output");
    let name = graph.value(graph.inputs[0]).name.clone();
    let inputs = HashMap::from([(name, x)]);
    let after = run(&optimised, &inputs, &RunOptions::default()).expect("optimised run");
    let diff = max_relative_difference(&[expected], &after);
    assert!(
        diff <= 1e-4,
        "against the exporter's output: {diff}\n{report}"
    );
    assert!(report.cost_after < report.cost_before, "{report}");
}
