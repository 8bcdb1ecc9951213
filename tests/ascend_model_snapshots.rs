//! Snapshots of the AscendC emitted for the kernels a whole model is partitioned into: MoE
//! gating in both of the routing modes the fixtures use (Mixtral's softmax top-k, DeepSeek-V3's
//! sigmoid group-limited top-k with bias), the token sort, permute and weighted combine, the
//! grouped expert GEMM, SwiGLU, RoPE (rotate-half and DeepSeek's interleaved pairs), RMSNorm
//! and the attention softmax; and DeepSeek-V4's hash and sqrt-softplus routing, compressed
//! attention (pooling, the indexer's top-k, sinks), hyper-connection mixing and the grouped GEMM
//! over dequantised FP4 experts. Their numerics are proven by the emulated runs of the same
//! models in `model_kernels.rs`; these pin the text a reviewer reads.

use std::collections::HashMap;
use std::path::Path;

use cubevec::Model;
use cubevec::ir::npy;
use cubevec::ir::target::Target;
use cubevec_backend_ascend::emit::emit_project;

/// Kernel IR names (after their `kN_` numbering and the layer path) worth pinning per model.
const MIXTRAL: &[&str] = &[
    "model_layers_0_input_layernorm",
    "model_layers_0_self_attn_q_rope",
    "model_layers_0_self_attn_attn_softmax",
    "model_layers_0_block_sparse_moe_experts_route",
    "model_layers_0_block_sparse_moe_experts_sort",
    "model_layers_0_block_sparse_moe_experts_scatter",
    "model_layers_0_block_sparse_moe_experts_gate_up",
    "model_layers_0_block_sparse_moe_experts_combine",
];
const DEEPSEEK_V3: &[&str] = &[
    "model_layers_0_self_attn_q_rope_pairs",
    "model_layers_0_self_attn_q_rope_rotate",
    "model_layers_1_mlp_experts_route",
];

const DEEPSEEK_V4: &[&str] = &[
    // Hash routing (the first `num_hash_layers` layers) and sqrt-softplus top-k routing.
    "model_layers_0_ffn_experts_route",
    "model_layers_2_ffn_experts_route",
    // Compressed sparse attention: pooling of the compressed KV, the lightning indexer's
    // top-k, attention sinks.
    "model_layers_2_attn_compressor_pooled",
    "model_layers_2_attn_indexer_topk",
    "model_layers_2_attn_scores_with_sink",
    // Hyper-connection mixing and one Sinkhorn normalisation step.
    "model_layers_0_hc_attn_weighted",
    "model_layers_0_hc_attn_sinkhorn_0_cols",
];
/// The FP4 experts are dequantised once at load time (a constant); the grouped GEMM that
/// consumes them.
const DEEPSEEK_V4_FP8_FP4: &[&str] = &["layers_0_ffn_experts_gate"];

/// Emits the AscendC project of the fixture checkpoint `name` (planned for its committed
/// input's sequence length) and snapshots the kernels listed in `wanted`.
fn snapshot_kernels(name: &str, wanted: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name);
    let model = Model::load(&dir).expect("load");
    let inputs = HashMap::from([(
        "input_ids".to_string(),
        npy::read_npy(&dir.join("input_ids.npy")).expect("input"),
    )]);
    let target = Target::by_name("ascend910b2").expect("target");
    let bindings = model.bindings_for(&inputs).expect("bindings");
    let compiled = model.compile(&target, &bindings).expect("compile");
    let project = emit_project(compiled.program(), &target).expect("emit");
    let manifest = project.manifest().expect("manifest");
    for suffix in wanted {
        let kernel = manifest
            .kernels
            .iter()
            .find(|k| {
                k.name
                    .strip_prefix('k')
                    .and_then(|numbered| numbered.split_once('_'))
                    .is_some_and(|(number, rest)| number.parse::<u32>().is_ok() && rest == *suffix)
            })
            .unwrap_or_else(|| panic!("{name}: no kernel named k*_{suffix}"));
        let source = project.text(&kernel.source).expect("kernel source");
        insta::assert_snapshot!(format!("{name}__{suffix}"), source);
    }
}

#[test]
fn mixtral_kernels_snapshot() {
    snapshot_kernels("mixtral", MIXTRAL);
}

#[test]
fn deepseek_v3_kernels_snapshot() {
    snapshot_kernels("deepseek-v3", DEEPSEEK_V3);
}

#[test]
fn deepseek_v4_kernels_snapshot() {
    snapshot_kernels("deepseek-v4", DEEPSEEK_V4);
    snapshot_kernels("deepseek-v4-fp8-fp4", DEEPSEEK_V4_FP8_FP4);
}
