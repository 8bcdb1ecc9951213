//! The DeepSeek-V4 reader against tiny random-weight checkpoints whose logits torch computed
//! (see `scripts/make_moe_fixtures.py`): transformers' own save, the same weights under the
//! published checkpoint names, and an FP8/FP4-quantised copy; plus the published V4-Flash config
//! in shapes-only mode.

use std::time::Instant;

mod hf_support;

use cubevec_frontend::hf::{self, HfError, HfOptions};
use cubevec_ir::op::{Op, RoutingMode};
use cubevec_ir::verify::verify;
use cubevec_ir::{DType, Graph, WeightData};
use hf_support::{check_logits, fixtures};

fn count(graph: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    graph.nodes.iter().filter(|n| pred(&n.op)).count()
}

/// The data of the graph's weights of `dtype`.
fn weights_of(graph: &Graph, dtype: DType) -> Vec<&WeightData> {
    (graph.initializers.iter())
        .filter(|i| graph.value(i.value).ty.dtype == dtype)
        .map(|i| &i.data)
        .collect()
}

#[test]
fn transformers_names_match_torch() {
    let graph = check_logits("deepseek-v4");
    let hash = count(&graph, |op| {
        matches!(
            op,
            Op::Moe {
                routing: RoutingMode::Hash { .. },
                ..
            }
        )
    });
    let scored = count(&graph, |op| {
        matches!(
            op,
            Op::Moe {
                routing: RoutingMode::SqrtSoftplus { .. },
                ..
            }
        )
    });
    assert_eq!(
        (hash, scored),
        (2, 2),
        "two hash-routed and two scored MoE layers"
    );
    assert_eq!(
        count(&graph, |op| matches!(op, Op::TopK { .. })),
        1,
        "one indexer"
    );
}

#[test]
fn published_names_match_torch() {
    check_logits("deepseek-v4-checkpoint-names");
}

#[test]
fn fp8_fp4_checkpoint_matches_torch_in_f32() {
    let graph = check_logits("deepseek-v4-fp8-fp4");
    let fp4 = weights_of(&graph, DType::F4E2M1);
    let fp8 = weights_of(&graph, DType::F8E4M3FN);
    // 4 layers × 3 projections of 8 experts in FP4, each projection's experts stacked into one
    // weight of 8 file slices; per layer 5 attention and 3 shared-expert projections in FP8,
    // plus the indexer's query projection.
    assert_eq!(fp4.len(), 4 * 3);
    assert!(
        fp4.iter()
            .all(|d| matches!(d, WeightData::External(slices) if slices.len() == 8)),
        "{fp4:?}"
    );
    assert_eq!(fp8.len(), 4 * 8 + 1);
}

#[test]
fn fp8_fp4_checkpoint_builds_in_its_bf16_dtype() {
    let dir = fixtures().join("models").join("deepseek-v4-fp8-fp4");
    let options = HfOptions {
        shapes_only: false,
        compute_dtype: None,
    };
    let graph = hf::load(&dir, options).unwrap_or_else(|e| panic!("{e}"));
    verify(&graph).unwrap_or_else(|e| panic!("{e}"));
    let targets: Vec<DType> = graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Dequantize { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    // Per layer: 5 attention and 3 shared-expert projections, 3 stacked expert weights; plus the
    // indexer's query projection.
    assert_eq!(targets.len(), 4 * (5 + 3 + 3) + 1);
    assert!(targets.iter().all(|&t| t == DType::BF16), "{targets:?}");
}

#[test]
fn v4_flash_config_builds_in_shapes_only_mode() {
    let dir = fixtures().join("configs").join("deepseek-v4-flash");
    let options = HfOptions {
        shapes_only: true,
        compute_dtype: None,
    };
    let start = Instant::now();
    let graph = hf::load(&dir, options).unwrap_or_else(|e| panic!("{e}"));
    let elapsed = start.elapsed();
    verify(&graph).unwrap_or_else(|e| panic!("{e}"));
    let moe = count(&graph, |op| matches!(op, Op::Moe { .. }));
    assert_eq!(moe, 43);
    let hash = count(&graph, |op| {
        matches!(
            op,
            Op::Moe {
                routing: RoutingMode::Hash { .. },
                ..
            }
        )
    });
    assert_eq!(hash, 3);
    // Layers 2..43 alternate compressed sparse (ratio 4, with an indexer) and heavily compressed
    // attention: 21 indexers. The 44th ratio belongs to the multi-token-prediction layer.
    assert_eq!(count(&graph, |op| matches!(op, Op::TopK { .. })), 21);
    // The 256 experts of each of the 43 MoE layers' 3 projections are one stacked weight.
    assert_eq!(weights_of(&graph, DType::F4E2M1).len(), 43 * 3);
    eprintln!("V4-Flash graph: {} nodes in {elapsed:?}", graph.nodes.len());
}

#[test]
fn unsupported_layer_type_names_the_key() {
    let dir = std::env::temp_dir().join(format!("cubevec-v4-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(fixtures().join("configs/deepseek-v4-flash/config.json"))
        .unwrap()
        .replace(
            "\"compress_ratios\": [0, 0, 4,",
            "\"compress_ratios\": [0, 0, 8,",
        );
    std::fs::write(dir.join("config.json"), text).unwrap();
    let options = HfOptions {
        shapes_only: true,
        compute_dtype: None,
    };
    let err = hf::load(&dir, options).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        matches!(&err, HfError::ConfigKey { key, .. } if key == "compress_ratios"),
        "{err}"
    );
}
