//! Mixtral, Qwen2-MoE and Qwen3-MoE: pre-norm decoders with grouped-query attention, rotary
//! embeddings and softmax-routed SwiGLU experts. They differ in names and a few switches, which
//! [`Flavor`] and [`LlamaMoeConfig`] hold.

use cubevec_ir::op::{BinaryOp, ExpertActivation, RoutingMode, UnaryOp};
use cubevec_ir::{DType, Op, ValueId};

use super::HfError;
use super::builder::ModelBuilder;
use super::cache::{CacheEntry, CacheSpan, KvCache};
use super::config::Config;
use super::decoder::{DecoderSpec, Rotary, build_decoder, from_heads, to_heads};
use super::rope::{RopeFrequencies, RopeParameters};

/// Which of the three architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `mixtral`.
    Mixtral,
    /// `qwen2_moe`.
    Qwen2Moe,
    /// `qwen3_moe`.
    Qwen3Moe,
}

/// The sizes and switches of one model, read from `config.json`.
#[derive(Debug, Clone)]
pub struct LlamaMoeConfig {
    flavor: Flavor,
    hidden: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    vocab: u64,
    epsilon: f64,
    dense_intermediate: u64,
    expert_intermediate: u64,
    experts: u64,
    top_k: u64,
    normalize_topk: bool,
    shared_expert_intermediate: Option<u64>,
    qkv_bias: bool,
    tie_embeddings: bool,
    rope: RopeFrequencies,
    /// Per layer: whether it is an MoE layer, and its sliding window.
    layer_kinds: Vec<(bool, Option<u64>)>,
}

impl LlamaMoeConfig {
    /// Keys and values of every layer, over its sliding window or the whole context.
    pub fn kv_cache(&self, dtype: DType) -> KvCache {
        let layers = self
            .layer_kinds
            .iter()
            .map(|&(_, window)| {
                vec![CacheEntry {
                    name: "keys and values",
                    width: 2 * self.kv_heads * self.head_dim,
                    span: window.map_or(CacheSpan::Context, CacheSpan::Window),
                }]
            })
            .collect();
        KvCache { layers, dtype }
    }

    /// Reads the config of a `flavor` model.
    pub fn read(config: &Config, flavor: Flavor) -> Result<LlamaMoeConfig, HfError> {
        let hidden = config.u64("hidden_size")?;
        let heads = config.u64("num_attention_heads")?;
        let kv_heads = config.u64_or("num_key_value_heads", heads)?;
        if heads == 0 || kv_heads == 0 {
            return Err(config.error("num_attention_heads", "head counts must be positive"));
        }
        let head_dim = match config.opt_u64("head_dim")? {
            Some(d) => d,
            None => hidden / heads,
        };
        let layers = config.u64("num_hidden_layers")?;
        // Published configs say `num_local_experts` (Mixtral) or `num_experts` (Qwen);
        // transformers 5 writes `num_local_experts` for all three.
        let experts = match config.opt_u64("num_local_experts")? {
            Some(n) => n,
            None => config.u64("num_experts")?,
        };
        let (expert_intermediate, normalize_default) = match flavor {
            Flavor::Mixtral => (config.u64("intermediate_size")?, true),
            Flavor::Qwen2Moe | Flavor::Qwen3Moe => (config.u64("moe_intermediate_size")?, false),
        };
        // Mixtral always renormalises the top-k weights; Qwen does when `norm_topk_prob`.
        let normalize_topk = match flavor {
            Flavor::Mixtral => true,
            _ => config.bool_or("norm_topk_prob", normalize_default)?,
        };
        let top_k = config.u64("num_experts_per_tok")?;
        if !heads.is_multiple_of(kv_heads) || top_k == 0 || top_k > experts {
            return Err(config.error(
                "num_key_value_heads",
                format!(
                    "inconsistent sizes: {heads} heads, {kv_heads} kv heads, top-{top_k} of {experts} experts"
                ),
            ));
        }
        let partial = config.f64_or("partial_rotary_factor", 1.0)?;
        let rotary_dim = (head_dim as f64 * partial) as u64;
        let max_positions = config.u64_or("max_position_embeddings", 4096)?;
        let rope = RopeParameters::read(config)?.frequencies(config, rotary_dim, max_positions)?;
        let layer_kinds = layer_kinds(config, flavor, layers)?;
        Ok(LlamaMoeConfig {
            flavor,
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim,
            vocab: config.u64("vocab_size")?,
            epsilon: config.f64_or("rms_norm_eps", 1e-6)?,
            dense_intermediate: config.u64_or("intermediate_size", expert_intermediate)?,
            expert_intermediate,
            experts,
            top_k,
            normalize_topk,
            shared_expert_intermediate: match flavor {
                Flavor::Qwen2Moe => Some(config.u64("shared_expert_intermediate_size")?),
                _ => None,
            },
            qkv_bias: match flavor {
                Flavor::Qwen2Moe => config.bool_or("qkv_bias", true)?,
                Flavor::Qwen3Moe => config.bool_or("attention_bias", false)?,
                Flavor::Mixtral => false,
            },
            tie_embeddings: config.bool_or("tie_word_embeddings", false)?,
            rope,
            layer_kinds,
        })
    }
}

/// Per layer: MoE or dense MLP, and the sliding window if the layer has one.
fn layer_kinds(
    config: &Config,
    flavor: Flavor,
    layers: u64,
) -> Result<Vec<(bool, Option<u64>)>, HfError> {
    let mlp_only = config.opt_u64_list("mlp_only_layers")?.unwrap_or_default();
    let sparse_step = config.u64_or("decoder_sparse_step", 1)?.max(1);
    let use_sliding = config.bool_or("use_sliding_window", false)?;
    let window = config.opt_u64("sliding_window")?.filter(|&w| w > 0);
    let layer_types = config.opt_str_list("layer_types")?;
    let max_window_layers = config.u64_or("max_window_layers", layers)?;
    (0..layers)
        .map(|i| {
            let is_moe = match flavor {
                Flavor::Mixtral => true,
                Flavor::Qwen2Moe | Flavor::Qwen3Moe => {
                    !mlp_only.contains(&i) && (i + 1).is_multiple_of(sparse_step)
                }
            };
            let sliding = match flavor {
                Flavor::Mixtral => window,
                Flavor::Qwen3Moe => window.filter(|_| use_sliding),
                Flavor::Qwen2Moe => {
                    let is_sliding = match &layer_types {
                        Some(types) => types
                            .get(i as usize)
                            .is_some_and(|t| t == "sliding_attention"),
                        None => use_sliding && (i + 1) % 2 == 1 && i < max_window_layers,
                    };
                    window.filter(|_| is_sliding)
                }
            };
            Ok((is_moe, sliding))
        })
        .collect()
}

/// Builds the whole model: `input_ids [batch, seq]` → `logits [batch, seq, vocab]`.
pub fn build(b: &mut ModelBuilder<'_, '_>, c: &LlamaMoeConfig) -> Result<(), HfError> {
    let spec = DecoderSpec {
        hidden: c.hidden,
        vocab: c.vocab,
        layers: c.layers,
        epsilon: c.epsilon,
        tie_embeddings: c.tie_embeddings,
        dense_intermediate: c.dense_intermediate,
        rope: &c.rope,
    };
    build_decoder(
        b,
        &spec,
        |b, layer, prefix, x, rotary| {
            let window = c.layer_kinds[layer as usize].1;
            attention(b, c, &format!("{prefix}.self_attn"), x, rotary, window)
        },
        |b, layer, prefix, x| {
            let is_moe = c.layer_kinds[layer as usize].0;
            is_moe.then(|| moe_block(b, c, prefix, x)).transpose()
        },
    )
}

/// Self-attention of one layer over `x [t, hidden]`.
fn attention(
    b: &mut ModelBuilder<'_, '_>,
    c: &LlamaMoeConfig,
    prefix: &str,
    x: ValueId,
    Rotary { cos, sin }: Rotary,
    window: Option<u64>,
) -> Result<ValueId, HfError> {
    let (q_width, kv_width) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
    let q = b.linear(
        &format!("{prefix}.q_proj"),
        x,
        c.hidden,
        q_width,
        c.qkv_bias,
    )?;
    let k = b.linear(
        &format!("{prefix}.k_proj"),
        x,
        c.hidden,
        kv_width,
        c.qkv_bias,
    )?;
    let v = b.linear(
        &format!("{prefix}.v_proj"),
        x,
        c.hidden,
        kv_width,
        c.qkv_bias,
    )?;
    let mut q = to_heads(b, &format!("{prefix}.q"), q, c.heads, c.head_dim)?;
    let mut k = to_heads(b, &format!("{prefix}.k"), k, c.kv_heads, c.head_dim)?;
    let v = to_heads(b, &format!("{prefix}.v"), v, c.kv_heads, c.head_dim)?;
    if c.flavor == Flavor::Qwen3Moe {
        // Per-head RMSNorm over head_dim; it commutes with the head transpose.
        q = b.rms_norm(&format!("{prefix}.q_norm"), q, c.head_dim, c.epsilon)?;
        k = b.rms_norm(&format!("{prefix}.k_norm"), k, c.head_dim, c.epsilon)?;
    }
    let rope = Op::Rope { interleaved: false };
    let q = b.op(&format!("{prefix}.q_rope"), rope.clone(), &[q, cos, sin])?;
    let k = b.op(&format!("{prefix}.k_rope"), rope, &[k, cos, sin])?;
    let scale = 1.0 / (c.head_dim as f64).sqrt();
    let o = b.attention(&format!("{prefix}.attn"), q, k, v, scale, window)?;
    let o = from_heads(b, &format!("{prefix}.o"), o, c.heads, c.head_dim)?;
    b.linear(&format!("{prefix}.o_proj"), o, q_width, c.hidden, false)
}

/// The sparse MoE block of one layer over `x [t, hidden]`.
fn moe_block(
    b: &mut ModelBuilder<'_, '_>,
    c: &LlamaMoeConfig,
    layer_prefix: &str,
    x: ValueId,
) -> Result<ValueId, HfError> {
    let (block, names) = match c.flavor {
        Flavor::Mixtral => ("block_sparse_moe", ["w1", "w3", "w2"]),
        Flavor::Qwen2Moe | Flavor::Qwen3Moe => ("mlp", ["gate_proj", "up_proj", "down_proj"]),
    };
    let prefix = format!("{layer_prefix}.{block}");
    let logits = b.linear(&format!("{prefix}.gate"), x, c.hidden, c.experts, false)?;
    let [gate_name, up_name, down_name] = names;
    let (hidden, inter) = (c.hidden, c.expert_intermediate);
    let expert = |n: &str| {
        let prefix = prefix.clone();
        let n = n.to_string();
        move |e: u64| format!("{prefix}.experts.{e}.{n}.weight")
    };
    let gate = b.stacked_experts(
        &format!("{prefix}.experts.gate"),
        c.experts,
        [inter, hidden],
        expert(gate_name),
    )?;
    let up = b.stacked_experts(
        &format!("{prefix}.experts.up"),
        c.experts,
        [inter, hidden],
        expert(up_name),
    )?;
    let down = b.stacked_experts(
        &format!("{prefix}.experts.down"),
        c.experts,
        [hidden, inter],
        expert(down_name),
    )?;
    let routed = b.node(
        &format!("{prefix}.experts"),
        Op::Moe {
            top_k: c.top_k as u32,
            routing: RoutingMode::SoftmaxTopK {
                normalize: c.normalize_topk,
            },
            activation: ExpertActivation::SwiGlu,
        },
        vec![Some(x), Some(logits), Some(gate), Some(up), Some(down)],
    )?[0];
    let Some(shared_inter) = c.shared_expert_intermediate else {
        return Ok(routed);
    };
    let shared = b.swiglu_mlp(
        &format!("{prefix}.shared_expert"),
        ["gate_proj", "up_proj", "down_proj"],
        x,
        c.hidden,
        shared_inter,
    )?;
    let gate_logit = b.linear(
        &format!("{prefix}.shared_expert_gate"),
        x,
        c.hidden,
        1,
        false,
    )?;
    let gate = b.unary(
        &format!("{prefix}.shared_expert_gate.sigmoid"),
        UnaryOp::Sigmoid,
        gate_logit,
    )?;
    let shared = b.binary(
        &format!("{prefix}.shared_expert.gated"),
        BinaryOp::Mul,
        gate,
        shared,
    )?;
    b.binary(&format!("{prefix}.output"), BinaryOp::Add, routed, shared)
}
