//! DeepSeek-V3: multi-head latent attention (low-rank q and kv with a shared rotary key), dense
//! first layers, then sigmoid-routed group-limited MoE layers with a shared expert.

use cubevec_ir::op::{BinaryOp, ExpertActivation, RoutingMode};
use cubevec_ir::{DType, Dim, Op, ValueId};

use super::HfError;
use super::builder::ModelBuilder;
use super::cache::{CacheEntry, CacheSpan, KvCache};
use super::config::Config;
use super::decoder::{DecoderSpec, Rotary, build_decoder, from_heads, to_heads};
use super::rope::{RopeFrequencies, RopeParameters};

/// The sizes and switches of a DeepSeek-V3 model, read from `config.json`.
#[derive(Debug, Clone)]
pub struct DeepseekV3Config {
    hidden: u64,
    layers: u64,
    heads: u64,
    vocab: u64,
    epsilon: f64,
    q_lora_rank: Option<u64>,
    kv_lora_rank: u64,
    nope_dim: u64,
    rope_dim: u64,
    v_dim: u64,
    dense_intermediate: u64,
    expert_intermediate: u64,
    experts: u64,
    shared_experts: u64,
    top_k: u64,
    n_group: u64,
    topk_group: u64,
    routed_scaling: f64,
    normalize_topk: bool,
    first_dense: u64,
    moe_layer_freq: u64,
    rope_interleave: bool,
    attention_bias: bool,
    tie_embeddings: bool,
    rope: RopeFrequencies,
    softmax_scale: f64,
}

impl DeepseekV3Config {
    /// MLA caches the compressed latent and the shared rotary key of every position.
    pub fn kv_cache(&self, dtype: DType) -> KvCache {
        let entry = CacheEntry {
            name: "latent and rotary key",
            width: self.kv_lora_rank + self.rope_dim,
            span: CacheSpan::Context,
        };
        KvCache {
            layers: vec![vec![entry]; self.layers as usize],
            dtype,
        }
    }

    /// Reads the config of a `deepseek_v3` model.
    pub fn read(config: &Config) -> Result<DeepseekV3Config, HfError> {
        if let Some(scoring) = config.opt_str("scoring_func")?
            && scoring != "sigmoid"
        {
            return Err(config.error(
                "scoring_func",
                format!("`{scoring}` is not supported (DeepSeek-V3 routes with `sigmoid`)"),
            ));
        }
        if let Some(method) = config.opt_str("topk_method")?
            && method != "noaux_tc"
        {
            return Err(config.error(
                "topk_method",
                format!("`{method}` is not supported (DeepSeek-V3 uses `noaux_tc`)"),
            ));
        }
        let heads = config.u64("num_attention_heads")?;
        let nope_dim = config.u64("qk_nope_head_dim")?;
        let rope_dim = config.u64("qk_rope_head_dim")?;
        let experts = config.u64("n_routed_experts")?;
        let n_group = config.u64_or("n_group", 1)?.max(1);
        let topk_group = config.u64_or("topk_group", n_group)?;
        let top_k = config.u64("num_experts_per_tok")?;
        if !experts.is_multiple_of(n_group) || topk_group > n_group || top_k > experts {
            return Err(config.error(
                "n_group",
                format!(
                    "inconsistent routing: {experts} experts in {n_group} groups, {topk_group} groups kept, top-{top_k}"
                ),
            ));
        }
        let max_positions = config.u64_or("max_position_embeddings", 4096)?;
        let rope_parameters = RopeParameters::read(config)?;
        let rope = rope_parameters.frequencies(config, rope_dim, max_positions)?;
        let qk_dim = nope_dim + rope_dim;
        let softmax_scale =
            (qk_dim as f64).powf(-0.5) * rope_parameters.softmax_scale_correction()?;
        Ok(DeepseekV3Config {
            hidden: config.u64("hidden_size")?,
            layers: config.u64("num_hidden_layers")?,
            heads,
            vocab: config.u64("vocab_size")?,
            epsilon: config.f64_or("rms_norm_eps", 1e-6)?,
            q_lora_rank: config.opt_u64("q_lora_rank")?,
            kv_lora_rank: config.u64("kv_lora_rank")?,
            nope_dim,
            rope_dim,
            v_dim: config.u64("v_head_dim")?,
            dense_intermediate: config.u64("intermediate_size")?,
            expert_intermediate: config.u64("moe_intermediate_size")?,
            experts,
            shared_experts: config.u64_or("n_shared_experts", 0)?,
            top_k,
            n_group,
            topk_group,
            routed_scaling: config.f64_or("routed_scaling_factor", 1.0)?,
            normalize_topk: config.bool_or("norm_topk_prob", true)?,
            first_dense: config.u64_or("first_k_dense_replace", 0)?,
            moe_layer_freq: config.u64_or("moe_layer_freq", 1)?.max(1),
            rope_interleave: config.bool_or("rope_interleave", true)?,
            attention_bias: config.bool_or("attention_bias", false)?,
            tie_embeddings: config.bool_or("tie_word_embeddings", false)?,
            rope,
            softmax_scale,
        })
    }

    fn is_moe_layer(&self, layer: u64) -> bool {
        self.experts > 0 && layer >= self.first_dense && layer.is_multiple_of(self.moe_layer_freq)
    }
}

/// Builds the whole model: `input_ids [batch, seq]` → `logits [batch, seq, vocab]`. Layers past
/// `num_hidden_layers` (multi-token prediction) are not part of the forward pass.
pub fn build(b: &mut ModelBuilder<'_, '_>, c: &DeepseekV3Config) -> Result<(), HfError> {
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
        |b, _, prefix, x, rotary| mla(b, c, &format!("{prefix}.self_attn"), x, rotary),
        |b, layer, prefix, x| {
            c.is_moe_layer(layer)
                .then(|| moe_block(b, c, &format!("{prefix}.mlp"), x))
                .transpose()
        },
    )
}

/// Multi-head latent attention over `x [t, hidden]` (prefill form: keys and values expanded
/// from the latent for every head).
fn mla(
    b: &mut ModelBuilder<'_, '_>,
    c: &DeepseekV3Config,
    prefix: &str,
    x: ValueId,
    Rotary { cos, sin }: Rotary,
) -> Result<ValueId, HfError> {
    let qk_dim = c.nope_dim + c.rope_dim;
    let q = match c.q_lora_rank {
        Some(rank) => {
            let qa = b.linear(
                &format!("{prefix}.q_a_proj"),
                x,
                c.hidden,
                rank,
                c.attention_bias,
            )?;
            let qa = b.rms_norm(&format!("{prefix}.q_a_layernorm"), qa, rank, c.epsilon)?;
            b.linear(
                &format!("{prefix}.q_b_proj"),
                qa,
                rank,
                c.heads * qk_dim,
                false,
            )?
        }
        None => b.linear(
            &format!("{prefix}.q_proj"),
            x,
            c.hidden,
            c.heads * qk_dim,
            false,
        )?,
    };
    let q = to_heads(b, &format!("{prefix}.q"), q, c.heads, qk_dim)?;
    let [q_pass, q_rot] = split_last(b, &format!("{prefix}.q.split"), q, c.nope_dim, c.rope_dim)?;

    let compressed = b.linear(
        &format!("{prefix}.kv_a_proj_with_mqa"),
        x,
        c.hidden,
        c.kv_lora_rank + c.rope_dim,
        c.attention_bias,
    )?;
    let [kv_latent, k_rot] = split_last(
        b,
        &format!("{prefix}.kv_a.split"),
        compressed,
        c.kv_lora_rank,
        c.rope_dim,
    )?;
    let kv_latent = b.rms_norm(
        &format!("{prefix}.kv_a_layernorm"),
        kv_latent,
        c.kv_lora_rank,
        c.epsilon,
    )?;
    let kv = b.linear(
        &format!("{prefix}.kv_b_proj"),
        kv_latent,
        c.kv_lora_rank,
        c.heads * (c.nope_dim + c.v_dim),
        false,
    )?;
    let kv = to_heads(
        b,
        &format!("{prefix}.kv"),
        kv,
        c.heads,
        c.nope_dim + c.v_dim,
    )?;
    let [k_pass, v] = split_last(b, &format!("{prefix}.kv.split"), kv, c.nope_dim, c.v_dim)?;

    // The interleaved form rotates adjacent pairs; transformers writes the result de-interleaved,
    // a permutation applied to q and k alike, which leaves every q·k product unchanged.
    let rope = Op::Rope {
        interleaved: c.rope_interleave,
    };
    let q_rot = b.op(
        &format!("{prefix}.q_rope"),
        rope.clone(),
        &[q_rot, cos, sin],
    )?;
    let k_rot = b.reshape(
        &format!("{prefix}.k_rot.heads"),
        k_rot,
        vec![
            b.batch.clone(),
            Dim::Known(1),
            b.seq.clone(),
            Dim::Known(c.rope_dim),
        ],
    )?;
    let k_rot = b.op(&format!("{prefix}.k_rope"), rope, &[k_rot, cos, sin])?;
    let k_rot = b.op(
        &format!("{prefix}.k_rot.expand"),
        Op::Expand {
            shape: vec![
                b.batch.clone(),
                Dim::Known(c.heads),
                b.seq.clone(),
                Dim::Known(c.rope_dim),
            ],
        },
        &[k_rot],
    )?;
    let q = b.op(
        &format!("{prefix}.q.cat"),
        Op::Concat { axis: -1 },
        &[q_pass, q_rot],
    )?;
    let k = b.op(
        &format!("{prefix}.k.cat"),
        Op::Concat { axis: -1 },
        &[k_pass, k_rot],
    )?;
    let o = b.attention(&format!("{prefix}.attn"), q, k, v, c.softmax_scale, None)?;
    let o = from_heads(b, &format!("{prefix}.o"), o, c.heads, c.v_dim)?;
    b.linear(
        &format!("{prefix}.o_proj"),
        o,
        c.heads * c.v_dim,
        c.hidden,
        c.attention_bias,
    )
}

/// Splits the last axis of `x` into `first` and `second` features.
fn split_last(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    x: ValueId,
    first: u64,
    second: u64,
) -> Result<[ValueId; 2], HfError> {
    let parts = b.node(
        name,
        Op::Split {
            axis: -1,
            sizes: vec![Dim::Known(first), Dim::Known(second)],
        },
        vec![Some(x)],
    )?;
    Ok([parts[0], parts[1]])
}

/// The MoE block of one layer over `x [t, hidden]`: routed experts plus the shared experts.
fn moe_block(
    b: &mut ModelBuilder<'_, '_>,
    c: &DeepseekV3Config,
    prefix: &str,
    x: ValueId,
) -> Result<ValueId, HfError> {
    // The router runs in f32 whatever the model dtype, as DeepSeek's reference does.
    let storage = b.dtype;
    let router = b.stored_weight(
        &format!("{prefix}.gate.weight"),
        &[c.experts, c.hidden],
        storage,
    )?;
    let router = b.cast(&format!("{prefix}.gate.weight.f32"), router, DType::F32)?;
    let x32 = b.cast(&format!("{prefix}.gate.input.f32"), x, DType::F32)?;
    let logits = b.node(
        &format!("{prefix}.gate"),
        Op::Gemm {
            alpha_bits: 1f32.to_bits(),
            beta_bits: 1f32.to_bits(),
            trans_a: false,
            trans_b: true,
        },
        vec![Some(x32), Some(router), None],
    )?[0];
    let bias = b.stored_weight(
        &format!("{prefix}.gate.e_score_correction_bias"),
        &[c.experts],
        DType::F32,
    )?;
    let bias = b.cast(&format!("{prefix}.gate.bias.f32"), bias, DType::F32)?;
    let (hidden, inter) = (c.hidden, c.expert_intermediate);
    let mut stacked = Vec::new();
    for (part, shape) in [
        ("gate_proj", [inter, hidden]),
        ("up_proj", [inter, hidden]),
        ("down_proj", [hidden, inter]),
    ] {
        stacked.push(b.stacked_experts(
            &format!("{prefix}.experts.{part}"),
            c.experts,
            shape,
            |e| format!("{prefix}.experts.{e}.{part}.weight"),
        )?);
    }
    let routed = b.node(
        &format!("{prefix}.experts"),
        Op::Moe {
            top_k: c.top_k as u32,
            routing: RoutingMode::SigmoidGroupLimited {
                n_group: c.n_group as u32,
                topk_group: c.topk_group as u32,
                normalize: c.normalize_topk,
                scaling_bits: (c.routed_scaling as f32).to_bits(),
            },
            activation: ExpertActivation::SwiGlu,
        },
        vec![
            Some(x),
            Some(logits),
            Some(stacked[0]),
            Some(stacked[1]),
            Some(stacked[2]),
            Some(bias),
        ],
    )?[0];
    if c.shared_experts == 0 {
        return Ok(routed);
    }
    let shared = b.swiglu_mlp(
        &format!("{prefix}.shared_experts"),
        ["gate_proj", "up_proj", "down_proj"],
        x,
        c.hidden,
        c.expert_intermediate * c.shared_experts,
    )?;
    b.binary(&format!("{prefix}.output"), BinaryOp::Add, routed, shared)
}
