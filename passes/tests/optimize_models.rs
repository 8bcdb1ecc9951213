//! The optimiser on real models: the Hugging Face fixtures give the same logits after
//! optimisation, exported ONNX MoE blocks become `moe` ops with the same outputs, and the full
//! DeepSeek-V3 graph (shapes only) optimises through templates.

mod optimize_support;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use cubevec_frontend::hf::{self, HfOptions};
use cubevec_frontend::onnx;
use cubevec_ir::interp::{RunOptions, run};
use cubevec_ir::npy::read_npy;
use cubevec_ir::{DType, Op};
use cubevec_passes::optimize::{OptimizeOptions, index_form, optimize, template};
use optimize_support::{count, max_relative_difference};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn same_logits_after_optimisation(model: &str) {
    let dir = fixtures().join("models").join(model);
    let options = HfOptions {
        shapes_only: false,
        compute_dtype: Some(DType::F32),
    };
    let graph = hf::load(&dir, options).unwrap_or_else(|e| panic!("{model}: {e}"));
    let (optimised, report) = optimize(graph.clone(), &OptimizeOptions::default())
        .unwrap_or_else(|e| panic!("{model}: {e}"));
    let ids = read_npy(&dir.join("input_ids.npy")).expect("input ids");
    let inputs = HashMap::from([("input_ids".to_string(), ids)]);
    let run_options = RunOptions {
        weight_dir: Some(dir.clone()),
    };
    let before = run(&graph, &inputs, &run_options).expect("reference run");
    let after = run(&optimised, &inputs, &run_options).expect("optimised run");
    let diff = max_relative_difference(&before, &after);
    assert!(
        diff <= 1e-4,
        "{model}: logits differ by {diff} of the largest\n{report}"
    );
    assert!(report.segments >= 1 && report.templates <= report.segments);
}

#[test]
fn mixtral_logits_survive_optimisation() {
    same_logits_after_optimisation("mixtral");
}

#[test]
fn qwen2_moe_logits_survive_optimisation() {
    same_logits_after_optimisation("qwen2-moe");
}

#[test]
fn qwen3_moe_logits_survive_optimisation() {
    same_logits_after_optimisation("qwen3-moe");
}

#[test]
fn deepseek_v3_logits_survive_optimisation() {
    same_logits_after_optimisation("deepseek-v3");
}

/// Loads an exported MoE block, optimises it, checks the `moe` op appears and the output on the
/// fixture input is unchanged.
fn exported_moe_block_becomes_moe(stem: &str) {
    let models = fixtures().join("models");
    let graph =
        onnx::load(&models.join(format!("{stem}.onnx"))).unwrap_or_else(|e| panic!("{stem}: {e}"));
    let (optimised, report) = optimize(graph.clone(), &OptimizeOptions::default())
        .unwrap_or_else(|e| panic!("{stem}: {e}"));
    assert_eq!(count(&optimised, "moe"), 1, "{stem}\n{report}");
    assert_eq!(count(&optimised, "gather_nd"), 0, "{stem}\n{report}");
    assert!(report.rules_fired.contains_key("moe-gathered-experts"));
    let x = read_npy(&models.join(format!("{stem}.input.npy"))).expect("block input");
    let expected = read_npy(&models.join(format!("{stem}.output.npy"))).expect("block output");
    let name = graph.value(graph.inputs[0]).name.clone();
    let inputs = HashMap::from([(name, x)]);
    let before = run(&graph, &inputs, &RunOptions::default()).expect("reference run");
    let after = run(&optimised, &inputs, &RunOptions::default()).expect("optimised run");
    assert!(
        max_relative_difference(&before, &after) <= 1e-5,
        "{stem}\n{report}"
    );
    assert!(
        max_relative_difference(&[expected], &after) <= 1e-4,
        "{stem}: against the exporter's output"
    );
    assert!(report.cost_after < report.cost_before, "{stem}\n{report}");
}

#[test]
fn exported_mixtral_moe_block_becomes_moe() {
    exported_moe_block_becomes_moe("mixtral-moe-block-opset20");
}

#[test]
fn exported_qwen3_moe_block_becomes_moe() {
    exported_moe_block_becomes_moe("qwen3-moe-moe-block-opset20");
}

#[test]
fn deepseek_v3_full_graph_optimises_through_templates() {
    let dir = fixtures().join("configs/deepseek-v3");
    let options = HfOptions {
        shapes_only: true,
        compute_dtype: None,
    };
    let graph = hf::load(&dir, options).expect("DeepSeek-V3 config");
    let (optimised, report) =
        optimize(graph.clone(), &OptimizeOptions::default()).expect("optimises");
    assert_eq!(count(&optimised, "moe"), 58);
    assert_eq!(count(&optimised, "attention"), 61);
    // 61 layers, a handful of distinct segment shapes.
    assert!(report.segments >= 61, "{report}");
    assert!(report.templates <= 8, "{report}");
    // The last MoE layer replays the MoE template (the final norm and head are a segment of
    // their own): every segment holding a `moe` has the same template.
    let options = OptimizeOptions::default();
    let order = graph.topological_order().expect("acyclic");
    let constants = template::small_constants(&graph, options.fold_limit);
    let forms = index_form::graph_forms(&graph, &order, &constants);
    let segments = template::split(&graph, &order, options.min_segment_nodes, &constants);
    let (template_of, _) = template::templates(&graph, &segments, &forms);
    let templates_with = |holds: fn(&Op) -> bool| -> BTreeSet<usize> {
        (segments.iter().zip(&template_of))
            .filter(|(seg, _)| seg.nodes.iter().any(|&n| holds(&graph.node(n).op)))
            .map(|(_, &t)| t)
            .collect()
    };
    assert_eq!(
        templates_with(|op| matches!(op, Op::Moe { .. })).len(),
        1,
        "{report}"
    );
    // The short pieces around repeating layers stand alone rather than make a layer unique:
    // the embedding before the first attention block and the dense MLPs between the first
    // four, so all 61 attention blocks replay one template.
    assert_eq!(
        templates_with(|op| matches!(op, Op::Attention { .. })).len(),
        1,
        "{report}"
    );
    assert_eq!(report.templates, 5, "{report}");
    assert!(report.cost_after <= report.cost_before, "{report}");
    // The same input gives the same output.
    let (again, _) = optimize(graph.clone(), &OptimizeOptions::default()).expect("optimises");
    assert_eq!(again, optimised);
}

/// A whole exported model: the decomposed RMSNorm, RoPE and MoE subgraphs become fused ops and
/// the logits stay the same.
fn exported_model_fuses_and_keeps_logits(stem: &str, layers: usize) {
    let models = fixtures().join("models");
    let graph =
        onnx::load(&models.join(format!("{stem}.onnx"))).unwrap_or_else(|e| panic!("{stem}: {e}"));
    let (optimised, report) = optimize(graph.clone(), &OptimizeOptions::default())
        .unwrap_or_else(|e| panic!("{stem}: {e}"));
    assert_eq!(count(&optimised, "moe"), layers, "{stem}\n{report}");
    assert_eq!(count(&optimised, "rope"), 2 * layers, "{stem}\n{report}");
    assert!(
        count(&optimised, "rms_norm") >= 2 * layers,
        "{stem}\n{report}"
    );
    // The half-size rotary tables the layers need are computed once.
    assert!(
        count(&optimised, "cos") <= count(&graph, "cos"),
        "{stem}\n{report}"
    );
    let ids = read_npy(&models.join(format!("{stem}.input_ids.npy"))).expect("input ids");
    let inputs = HashMap::from([("input_ids".to_string(), ids)]);
    let before = run(&graph, &inputs, &RunOptions::default()).expect("reference run");
    let after = run(&optimised, &inputs, &RunOptions::default()).expect("optimised run");
    let diff = max_relative_difference(&before, &after);
    assert!(diff <= 1e-4, "{stem}: logits differ by {diff}\n{report}");
}

#[test]
fn exported_mixtral_model_fuses_and_keeps_logits() {
    exported_model_fuses_and_keeps_logits("mixtral-opset20", 2);
}

#[test]
fn exported_qwen3_moe_model_fuses_and_keeps_logits() {
    exported_model_fuses_and_keeps_logits("qwen3-moe-opset20", 2);
}

#[test]
fn templates_give_the_same_graph_as_optimising_every_segment() {
    let dir = fixtures().join("configs/deepseek-v3");
    let options = HfOptions {
        shapes_only: true,
        compute_dtype: None,
    };
    let graph = hf::load(&dir, options).expect("DeepSeek-V3 config");
    let (reused, report) = optimize(graph.clone(), &OptimizeOptions::default()).expect("optimises");
    let each = OptimizeOptions {
        reuse_templates: false,
        ..OptimizeOptions::default()
    };
    let (separate, separate_report) = optimize(graph.clone(), &each).expect("optimises");
    assert_eq!(separate_report.templates, separate_report.segments);
    assert!(report.templates * 10 < report.segments, "{report}");
    assert_eq!(reused, separate);
}
