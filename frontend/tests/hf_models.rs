//! The Hugging Face reader against real checkpoints: tiny random-weight models saved by
//! transformers, whose logits torch computed (see `scripts/make_moe_fixtures.py`), and the
//! published configs of full-size models in shapes-only mode, with the KV cache each
//! architecture keeps.

use std::path::Path;

mod hf_support;

use cubevec_frontend::hf::{self, CacheSpan, HfError, HfOptions, KvCache};
use cubevec_ir::graph::FileSlice;
use cubevec_ir::op::Op;
use cubevec_ir::verify::verify;
use cubevec_ir::{DType, WeightData};
use hf_support::{check_logits, check_logits_in, fixtures};

#[test]
fn mixtral_matches_torch() {
    check_logits("mixtral");
}

#[test]
fn mixtral_sliding_window_shorter_than_the_input_matches_torch() {
    let tmp = copy_fixture("mixtral");
    edit_config(tmp.path(), |c| c["sliding_window"] = 4.into());
    let expected = tmp.path().join("logits-sliding-window-4.npy");
    check_logits_in("mixtral (window 4)", tmp.path(), &expected);
}

#[test]
fn mixtral_bf16_checkpoint_matches_torch_in_f32() {
    check_logits("mixtral-bf16");
}

#[test]
fn qwen2_moe_matches_torch() {
    check_logits("qwen2-moe");
}

#[test]
fn qwen3_moe_matches_torch() {
    check_logits("qwen3-moe");
}

#[test]
fn qwen3_moe_three_shards_match_torch() {
    check_logits("qwen3-moe-sharded");
}

#[test]
fn deepseek_v3_matches_torch() {
    check_logits("deepseek-v3");
}

#[test]
fn deepseek_v3_fp8_block_dequantisation_matches_numpy_reference() {
    check_logits("deepseek-v3-fp8");
}

#[test]
fn experts_stored_apart_are_one_weight_of_file_slices() {
    let dir = fixtures().join("models/qwen3-moe-sharded");
    let graph = hf::load(&dir, HfOptions::default()).unwrap();
    let moe = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Moe { .. }))
        .count();
    let stacked: Vec<&Vec<FileSlice>> = graph
        .initializers
        .iter()
        .filter_map(|i| match &i.data {
            WeightData::External(slices) if slices.len() > 1 => Some(slices),
            _ => None,
        })
        .collect();
    // Gate, up and down per MoE layer, no concatenation of weights left.
    assert_eq!(stacked.len(), 3 * moe);
    assert!(!graph.nodes.iter().any(|n| {
        matches!(n.op, Op::Concat { .. })
            && n.inputs
                .iter()
                .flatten()
                .all(|&v| graph.initializers.iter().any(|i| i.value == v))
    }));
    // The stacks read all three shards.
    let shards: std::collections::BTreeSet<_> = stacked
        .iter()
        .flat_map(|s| s.iter().map(|s| &s.path))
        .collect();
    assert_eq!(shards.len(), 3, "{stacked:?}");
}

#[test]
fn fp8_weights_keep_an_explicit_dequantize() {
    let dir = fixtures().join("models/deepseek-v3-fp8");
    let graph = hf::load(&dir, HfOptions::default()).unwrap();
    let dequantize: Vec<_> = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Dequantize { .. }))
        .collect();
    assert!(!dequantize.is_empty());
    for node in dequantize {
        let data = graph.value(node.inputs[0].unwrap());
        assert_eq!(data.ty.dtype, DType::F8E4M3FN, "{}", node.name);
    }
    // Weights are referenced, never copied into the graph.
    assert!(
        graph
            .initializers
            .iter()
            .filter(|i| graph.value(i.value).name.ends_with(".weight"))
            .all(|i| matches!(i.data, WeightData::External { .. }))
    );
}

/// The published configs compile without weights, with the sizes they declare.
#[test]
fn full_size_configs_build_in_shapes_only_mode() {
    let cases = [
        ("deepseek-v3", 129280, 256),
        ("mixtral-8x7b-v0.1", 32000, 8),
        ("qwen3-30b-a3b", 151936, 128),
        ("qwen2-57b-a14b", 151936, 64),
    ];
    for (name, vocab, experts) in cases {
        let dir = fixtures().join("configs").join(name);
        let options = HfOptions {
            shapes_only: true,
            compute_dtype: None,
        };
        let graph = hf::load(&dir, options).unwrap_or_else(|e| panic!("{name}: {e}"));
        verify(&graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let logits = graph.value(graph.outputs[0]);
        assert_eq!(logits.ty.to_string(), format!("f32[batch, seq, {vocab}]"));
        let moe_layers = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Moe { .. }))
            .count();
        assert!(moe_layers > 0, "{name}: no MoE layer");
        let first_moe = graph
            .nodes
            .iter()
            .find(|n| matches!(n.op, Op::Moe { .. }))
            .unwrap();
        let gate = graph.value(first_moe.inputs[3].unwrap());
        assert_eq!(gate.ty.shape.0[0].as_known(), Some(experts), "{name}");
        // Checkpoint tensors are absent; only small computed constants (rope tables) are inline.
        for init in &graph.initializers {
            let name = &graph.value(init.value).name;
            if name.starts_with("rope.") || name.starts_with("model.rotary_emb.") {
                assert!(matches!(init.data, WeightData::Inline(_)), "{name}");
            } else {
                assert_eq!(init.data, WeightData::Absent, "{name}");
            }
        }
    }
}

#[test]
fn deepseek_v3_full_config_has_58_moe_layers_and_fp8_weights() {
    let dir = fixtures().join("configs/deepseek-v3");
    let graph = hf::load(
        &dir,
        HfOptions {
            shapes_only: true,
            compute_dtype: None,
        },
    )
    .unwrap();
    let moe: Vec<_> = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Moe { .. }))
        .collect();
    assert_eq!(moe.len(), 61 - 3);
    let fp8 = graph
        .initializers
        .iter()
        .filter(|i| graph.value(i.value).ty.dtype == DType::F8E4M3FN)
        .count();
    // Per MoE layer 3 stacks of 256 experts + 3 shared + 5 attention projections; per dense
    // layer 3 + 5.
    assert_eq!(fp8, 58 * (3 + 3 + 5) + 3 * (3 + 5));
    // A stack is one value: the whole graph has about as many values as nodes.
    assert!(
        graph.values.len() < 2 * graph.nodes.len(),
        "{} values",
        graph.values.len()
    );
}

// ---- errors: each names the file and the tensor or key at fault ----

/// Copies a fixture model into a temporary directory to be broken.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join("models").join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

fn load_err(dir: &Path) -> HfError {
    match hf::load(dir, HfOptions::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

#[test]
fn unknown_model_type_is_named() {
    let tmp = copy_fixture("mixtral");
    edit_config(tmp.path(), |c| c["model_type"] = "llama4_moe".into());
    let err = load_err(tmp.path());
    assert!(matches!(err, HfError::UnknownModelType { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("llama4_moe"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let tmp = copy_fixture("mixtral");
    edit_config(tmp.path(), |c| c["num_hidden_layers"] = 9.into());
    let msg = load_err(tmp.path()).to_string();
    assert!(
        msg.contains("model.layers.") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn shape_that_disagrees_with_config_is_named() {
    let tmp = copy_fixture("mixtral");
    edit_config(tmp.path(), |c| c["hidden_size"] = 96.into());
    let err = load_err(tmp.path());
    let msg = err.to_string();
    assert!(matches!(err, HfError::TensorShape { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("model.embed_tokens.weight"),
        "{msg}"
    );
}

#[test]
fn bad_config_value_names_the_key() {
    let tmp = copy_fixture("mixtral");
    edit_config(tmp.path(), |c| c["num_attention_heads"] = "four".into());
    let msg = load_err(tmp.path()).to_string();
    assert!(msg.contains("num_attention_heads"), "{msg}");
}

#[test]
fn truncated_shard_is_reported() {
    let tmp = copy_fixture("mixtral");
    let shard = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 1000]).unwrap();
    let err = load_err(tmp.path());
    let msg = err.to_string();
    assert!(matches!(err, HfError::Shard { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn header_larger_than_file_is_reported() {
    let tmp = copy_fixture("mixtral");
    let shard = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&shard, &bytes).unwrap();
    let msg = load_err(tmp.path()).to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("header"),
        "{msg}"
    );
}

#[test]
fn index_pointing_to_missing_shard_is_reported() {
    let tmp = copy_fixture("qwen3-moe-sharded");
    std::fs::remove_file(tmp.path().join("model-00002-of-00003.safetensors")).unwrap();
    let err = load_err(tmp.path());
    let msg = err.to_string();
    assert!(matches!(err, HfError::MissingShard { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors.index.json") && msg.contains("model-00002-of-00003"),
        "{msg}"
    );
}

#[test]
fn directory_without_weights_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("models/mixtral/config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    assert!(matches!(load_err(tmp.path()), HfError::NoWeights { .. }));
}

#[test]
fn tensor_of_an_unsupported_dtype_is_named() {
    let tmp = copy_fixture("mixtral");
    let shard = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    // Same width, same header length: only the dtype tag changes.
    let entry = header.find("\"model.norm.weight\"").unwrap();
    let tag = entry + header[entry..].find("\"F32\"").unwrap();
    bytes[8 + tag..8 + tag + 5].copy_from_slice(b"\"U32\"");
    std::fs::write(&shard, &bytes).unwrap();
    let err = load_err(tmp.path());
    let msg = err.to_string();
    assert!(matches!(err, HfError::TensorDtype { .. }), "{msg}");
    assert!(
        msg.contains("model.norm.weight") && msg.contains("U32"),
        "{msg}"
    );
}

#[test]
fn zero_heads_is_an_error_not_a_panic() {
    let tmp = copy_fixture("mixtral");
    edit_config(tmp.path(), |c| c["num_key_value_heads"] = 0.into());
    let msg = load_err(tmp.path()).to_string();
    assert!(msg.contains("head counts must be positive"), "{msg}");
}

fn cache(config: &str) -> KvCache {
    let dir = fixtures().join("configs").join(config);
    hf::kv_cache(&dir, HfOptions::default()).unwrap_or_else(|e| panic!("{config}: {e}"))
}

#[test]
fn grouped_query_attention_caches_keys_and_values_per_position() {
    // Mixtral-8x7B: 32 layers x 2 x 8 KV heads x 128.
    let mixtral = cache("mixtral-8x7b-v0.1");
    assert_eq!(mixtral.layers.len(), 32);
    assert_eq!(mixtral.dtype, DType::BF16);
    assert_eq!(mixtral.elements(1), 32 * 2 * 8 * 128);
    assert_eq!(mixtral.bytes(4096), 4096 * 32 * 2 * 8 * 128 * 2);
    // Qwen3-30B-A3B: head_dim 128 given explicitly, 4 KV heads, 48 layers.
    assert_eq!(cache("qwen3-30b-a3b").elements(1), 48 * 2 * 4 * 128);
    // Qwen2-57B-A14B names a sliding window but does not use it.
    let qwen2 = cache("qwen2-57b-a14b");
    assert_eq!(qwen2.elements(10), 10 * 28 * 2 * 4 * 128);
    assert!(
        qwen2
            .layers
            .iter()
            .flatten()
            .all(|e| e.span == CacheSpan::Context)
    );
}

#[test]
fn mla_caches_the_latent_and_the_rotary_key() {
    // DeepSeek-V3: 61 layers x (kv_lora_rank 512 + rope 64) = 70 272 bytes per token in bf16.
    let v3 = cache("deepseek-v3");
    assert_eq!(v3.bytes(1), 70_272);
    assert_eq!(v3.bytes(1000), 70_272_000);
}

/// V4's cache at `l` positions from its layer schedule: `csa` compressed sparse layers (rate 4,
/// with indexer keys), `hca` heavily compressed ones (rate 128), `layers` sliding windows.
fn v4_elements(layers: u64, csa: u64, hca: u64, l: u64) -> u64 {
    let (hd, ihd) = (512, 128);
    let window = layers * hd * l.min(128);
    let heavy = hca * (hd * (l / 128) + 2 * hd * l.min(128));
    let sparse = csa * ((hd + ihd) * (l / 4) + 2 * 2 * (hd + ihd) * l.min(8));
    window + heavy + sparse
}

#[test]
fn deepseek_v4_caches_windows_and_compressed_entries() {
    // V4-Flash: layers 0-1 sliding only, then rates 4 and 128 alternating (21 and 20 layers).
    let flash = cache("deepseek-v4-flash");
    assert_eq!(flash.layers.len(), 43);
    for l in [1, 7, 100, 128, 129, 4096, 1 << 20] {
        assert_eq!(
            flash.elements(l),
            v4_elements(43, 21, 20, l),
            "{l} positions"
        );
    }
    // V4-Pro: layers 0-1 heavily compressed, then 30 rate-4 and 29 rate-128 layers.
    let pro = cache("deepseek-v4-pro");
    assert_eq!(pro.layers.len(), 61);
    assert_eq!(pro.elements(1 << 20), v4_elements(61, 30, 31, 1 << 20));
    // At a million tokens the compressed cache is about a seventh of DeepSeek-V3's MLA cache
    // (DeepSeek quotes a tenth of V3.2's, which also caches the indexer's keys).
    let ratio = pro.bytes(1 << 20) as f64 / cache("deepseek-v3").bytes(1 << 20) as f64;
    assert!((0.1..0.2).contains(&ratio), "V4-Pro / V3 KV cache: {ratio}");
}
