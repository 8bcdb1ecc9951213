//! DeepSeek-V4: shared-key/value multi-query attention whose layers are sliding-window only,
//! compressed sparse (4-token pooled entries chosen per query by a lightning indexer) or heavily
//! compressed (128-token pooled entries), with attention sinks and a grouped low-rank output
//! projection; manifold-constrained hyper-connections (`hc_mult` residual streams mixed by
//! Sinkhorn-normalised matrices) instead of residual additions; sqrt-softplus routed MoE layers,
//! the first ones routed by a token-id hash table, with clamped SwiGLU experts and a shared
//! expert.
//!
//! Both the published checkpoint names (`embed.weight`, `layers.L.attn.wq_a.weight`, …) and the
//! names transformers writes (`model.embed_tokens.weight`, `model.layers.L.attn.wq_a.weight`, …)
//! are read. Quantised checkpoints store attention and shared-expert projections as FP8 E4M3 with
//! `*.scale` block scales and routed experts as FP4 E2M1 (packed two per byte in `I8`) with a
//! scale per 32 inputs; both stay explicit `Dequantize` nodes.

mod attention;
mod hyper;

use cubevec_ir::op::{BinaryOp, ExpertActivation, RoutingMode};
use cubevec_ir::{DType, Dim, Op, Tensor, ValueId};
use serde_json::{Map, Value};

use super::HfError;
use super::builder::{ModelBuilder, WeightSource};
use super::cache::{CacheEntry, CacheSpan, KvCache};
use super::config::Config;
use super::decoder::lm_head;
use super::rope::{RopeFrequencies, RopeParameters};

/// The attention of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttentionKind {
    /// Sliding-window attention only.
    Sliding,
    /// Sliding window plus compressed entries chosen by the lightning indexer.
    CompressedSparse,
    /// Sliding window plus every heavily compressed entry.
    HeavilyCompressed,
}

/// The sizes and switches of a DeepSeek-V4 model, read from `config.json`.
#[derive(Debug, Clone)]
pub struct DeepseekV4Config {
    hidden: u64,
    layers: u64,
    heads: u64,
    head_dim: u64,
    rope_dim: u64,
    q_lora_rank: u64,
    o_groups: u64,
    o_lora_rank: u64,
    vocab: u64,
    epsilon: f64,
    hc_mult: u64,
    sinkhorn_iters: u64,
    hc_eps: f64,
    window: u64,
    index_heads: u64,
    index_head_dim: u64,
    index_topk: u64,
    experts: u64,
    top_k: u64,
    expert_intermediate: u64,
    routed_scaling: f64,
    swiglu_limit: f64,
    tie_embeddings: bool,
    attention: Vec<AttentionKind>,
    hash_routed: Vec<bool>,
    csa_ratio: u64,
    hca_ratio: u64,
    main_rope: RopeFrequencies,
    compress_rope: RopeFrequencies,
    quant: Quantization,
}

/// How a quantised checkpoint stores its projections, as the config describes it (used in
/// shapes-only mode; with a checkpoint the stored dtypes decide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quantization {
    /// Attention and shared-expert projections are FP8 with block scales.
    fp8: bool,
    /// Routed experts are FP4 with a scale per 32 inputs (else FP8 like the rest).
    fp4_experts: bool,
    /// Storage dtype of the scales (`E8M0` for `scale_fmt: ue8m0`).
    scale_dtype: DType,
}

impl DeepseekV4Config {
    /// Per layer: the sliding window's entries; for compressed layers the compressed entries
    /// and the compressor's state (the projected values and gate scores of the windows still
    /// being pooled: two windows, twice as wide, at the overlapping rate 4); for compressed
    /// sparse layers also the indexer's keys and its compressor's state.
    pub fn kv_cache(&self, dtype: DType) -> KvCache {
        let compressed = |name, state, width, ratio: u64| {
            let overlap = if ratio == self.csa_ratio { 2 } else { 1 };
            [
                CacheEntry {
                    name,
                    width,
                    span: CacheSpan::Compressed(ratio),
                },
                CacheEntry {
                    name: state,
                    width: 2 * overlap * width,
                    span: CacheSpan::Window(overlap * ratio),
                },
            ]
        };
        let layers = self
            .attention
            .iter()
            .map(|kind| {
                let mut entries = vec![CacheEntry {
                    name: "sliding window",
                    width: self.head_dim,
                    span: CacheSpan::Window(self.window),
                }];
                match kind {
                    AttentionKind::Sliding => {}
                    AttentionKind::HeavilyCompressed => entries.extend(compressed(
                        "compressed entries",
                        "compressor state",
                        self.head_dim,
                        self.hca_ratio,
                    )),
                    AttentionKind::CompressedSparse => {
                        entries.extend(compressed(
                            "compressed entries",
                            "compressor state",
                            self.head_dim,
                            self.csa_ratio,
                        ));
                        entries.extend(compressed(
                            "indexer keys",
                            "indexer compressor state",
                            self.index_head_dim,
                            self.csa_ratio,
                        ));
                    }
                }
                entries
            })
            .collect();
        KvCache { layers, dtype }
    }

    /// Reads the config of a `deepseek_v4` model, in the transformers 5 layout (`layer_types`,
    /// `mlp_layer_types`, `rope_parameters`) or the published one (`compress_ratios`,
    /// `num_hash_layers`, `rope_scaling`).
    pub fn read(config: &Config) -> Result<DeepseekV4Config, HfError> {
        if let Some(scoring) = config.opt_str("scoring_func")?
            && scoring != "sqrtsoftplus"
        {
            return Err(config.error(
                "scoring_func",
                format!("`{scoring}` is not supported (DeepSeek-V4 routes with `sqrtsoftplus`)"),
            ));
        }
        if let Some(act) = config.opt_str("hidden_act")?
            && act != "silu"
        {
            return Err(config.error(
                "hidden_act",
                format!("`{act}` is not supported (DeepSeek-V4 experts use `silu`)"),
            ));
        }
        let kv_heads = config.u64_or("num_key_value_heads", 1)?;
        if kv_heads != 1 {
            return Err(config.error(
                "num_key_value_heads",
                format!("{kv_heads} is not supported (DeepSeek-V4 shares one key/value head)"),
            ));
        }
        if config.bool_or("attention_bias", false)? {
            return Err(config.error("attention_bias", "true is not supported"));
        }
        if config.bool_or("mlp_bias", false)? {
            return Err(config.error("mlp_bias", "true is not supported"));
        }
        let shared = config.u64_or("n_shared_experts", 1)?;
        if shared != 1 {
            return Err(config.error(
                "n_shared_experts",
                format!("{shared} is not supported (DeepSeek-V4 has one shared expert)"),
            ));
        }
        let layers = config.u64("num_hidden_layers")?;
        let hidden = config.u64("hidden_size")?;
        let heads = config.u64("num_attention_heads")?;
        let head_dim = config.u64("head_dim")?;
        let rope_dim = match config.opt_u64("qk_rope_head_dim")? {
            Some(d) => d,
            None => {
                let factor = config.f64_or("partial_rotary_factor", 64.0 / 512.0)?;
                (head_dim as f64 * factor) as u64
            }
        };
        let index_head_dim = config.u64("index_head_dim")?;
        if rope_dim == 0
            || !rope_dim.is_multiple_of(2)
            || rope_dim > head_dim
            || rope_dim > index_head_dim
        {
            return Err(config.error(
                "qk_rope_head_dim",
                format!(
                    "{rope_dim} rotary features must be even, positive and fit head_dim {head_dim} and index_head_dim {index_head_dim}"
                ),
            ));
        }
        let o_groups = config.u64("o_groups")?;
        if o_groups == 0 || !(heads * head_dim).is_multiple_of(o_groups) {
            return Err(config.error(
                "o_groups",
                format!("{o_groups} groups do not divide {heads} heads × {head_dim}"),
            ));
        }
        let experts = config.u64("n_routed_experts")?;
        let top_k = config.u64("num_experts_per_tok")?;
        if top_k == 0 || top_k > experts {
            return Err(config.error(
                "num_experts_per_tok",
                format!("top-{top_k} of {experts} experts"),
            ));
        }
        let index_topk = config.u64("index_topk")?;
        if index_topk == 0 {
            return Err(config.error("index_topk", "must be positive"));
        }
        let window = config.u64("sliding_window")?;
        if window == 0 {
            return Err(config.error("sliding_window", "must be positive"));
        }
        let hc_mult = config.u64("hc_mult")?;
        if hc_mult == 0 {
            return Err(config.error("hc_mult", "must be positive"));
        }
        let sinkhorn_iters = config.u64_or("hc_sinkhorn_iters", 20)?;
        if sinkhorn_iters == 0 {
            return Err(config.error("hc_sinkhorn_iters", "must be positive"));
        }
        let (csa_ratio, hca_ratio) = compress_rates(config)?;
        let attention = attention_kinds(config, layers)?;
        let hash_routed = hash_layers(config, layers)?;
        let max_positions = config.u64_or("max_position_embeddings", 4096)?;
        let (main_rope, compress_rope) = rope_frequencies(config, rope_dim, max_positions)?;
        Ok(DeepseekV4Config {
            hidden,
            layers,
            heads,
            head_dim,
            rope_dim,
            q_lora_rank: config.u64("q_lora_rank")?,
            o_groups,
            o_lora_rank: config.u64("o_lora_rank")?,
            vocab: config.u64("vocab_size")?,
            epsilon: config.f64_or("rms_norm_eps", 1e-6)?,
            hc_mult,
            sinkhorn_iters,
            hc_eps: config.f64_or("hc_eps", 1e-6)?,
            window,
            index_heads: config.u64("index_n_heads")?,
            index_head_dim,
            index_topk,
            experts,
            top_k,
            expert_intermediate: config.u64("moe_intermediate_size")?,
            routed_scaling: config.f64_or("routed_scaling_factor", 1.0)?,
            swiglu_limit: config.f64_or("swiglu_limit", 10.0)?,
            tie_embeddings: config.bool_or("tie_word_embeddings", false)?,
            attention,
            hash_routed,
            csa_ratio,
            hca_ratio,
            main_rope,
            compress_rope,
            quant: quantization(config)?,
        })
    }
}

/// The compression rates of compressed sparse and heavily compressed layers.
fn compress_rates(config: &Config) -> Result<(u64, u64), HfError> {
    let (mut csa, mut hca) = (4, 128);
    if let Some(rates) = config.opt_object("compress_rates")? {
        csa = rates.u64_or("compressed_sparse_attention", csa)?;
        hca = rates.u64_or("heavily_compressed_attention", hca)?;
    }
    csa = config.u64_or("compress_rate_csa", csa)?;
    hca = config.u64_or("compress_rate_hca", hca)?;
    if csa == 0 {
        return Err(config.error("compress_rates", "the CSA rate must be positive"));
    }
    if hca == 0 {
        return Err(config.error("compress_rates", "the HCA rate must be positive"));
    }
    Ok((csa, hca))
}

/// The attention kind of every layer: `layer_types`, else `compress_ratios` (0 / 4 / 128, extra
/// entries of multi-token-prediction layers ignored), else transformers' default schedule.
fn attention_kinds(config: &Config, layers: u64) -> Result<Vec<AttentionKind>, HfError> {
    let n = layers as usize;
    let kinds: Vec<AttentionKind> = if let Some(types) = config.opt_str_list("layer_types")? {
        types
            .iter()
            .take(n)
            .map(|t| match t.as_str() {
                "sliding_attention" => Ok(AttentionKind::Sliding),
                "compressed_sparse_attention" => Ok(AttentionKind::CompressedSparse),
                "heavily_compressed_attention" => Ok(AttentionKind::HeavilyCompressed),
                other => Err(config.error(
                    "layer_types",
                    format!(
                        "`{other}` is not a DeepSeek-V4 layer type (sliding_attention, compressed_sparse_attention, heavily_compressed_attention)"
                    ),
                )),
            })
            .collect::<Result<_, _>>()?
    } else if let Some(ratios) = config.opt_u64_list("compress_ratios")? {
        ratios
            .iter()
            .take(n)
            .map(|&r| match r {
                0 => Ok(AttentionKind::Sliding),
                4 => Ok(AttentionKind::CompressedSparse),
                128 => Ok(AttentionKind::HeavilyCompressed),
                other => Err(config.error(
                    "compress_ratios",
                    format!("ratio {other} is not supported (0, 4 or 128)"),
                )),
            })
            .collect::<Result<_, _>>()?
    } else {
        (0..n)
            .map(|i| match i {
                // Two heavily compressed layers, then odd layers compressed sparse.
                0 | 1 => AttentionKind::HeavilyCompressed,
                i if i % 2 == 1 => AttentionKind::CompressedSparse,
                _ => AttentionKind::HeavilyCompressed,
            })
            .collect()
    };
    if kinds.len() != n {
        let key = if config.opt_str_list("layer_types")?.is_some() {
            "layer_types"
        } else {
            "compress_ratios"
        };
        return Err(config.error(key, format!("{} entries for {layers} layers", kinds.len())));
    }
    Ok(kinds)
}

/// Which layers route by the token-id hash table: `mlp_layer_types`, else the first
/// `num_hash_layers` (3 by default).
fn hash_layers(config: &Config, layers: u64) -> Result<Vec<bool>, HfError> {
    let n = layers as usize;
    match config.opt_str_list("mlp_layer_types")? {
        Some(types) => {
            let hashed: Vec<bool> = types
                .iter()
                .take(n)
                .map(|t| match t.as_str() {
                    "hash_moe" => Ok(true),
                    "moe" => Ok(false),
                    other => Err(config.error(
                        "mlp_layer_types",
                        format!("`{other}` is not a DeepSeek-V4 MLP type (hash_moe, moe)"),
                    )),
                })
                .collect::<Result<_, _>>()?;
            if hashed.len() != n {
                return Err(config.error(
                    "mlp_layer_types",
                    format!("{} entries for {layers} layers", hashed.len()),
                ));
            }
            Ok(hashed)
        }
        None => {
            let hash = config.u64_or("num_hash_layers", 3)?;
            Ok((0..layers).map(|l| l < hash).collect())
        }
    }
}

/// Whether the config declares FP8 projections and how experts and scales are stored.
fn quantization(config: &Config) -> Result<Quantization, HfError> {
    let Some(quant) = config.opt_object("quantization_config")? else {
        return Ok(Quantization {
            fp8: false,
            fp4_experts: false,
            scale_dtype: DType::F32,
        });
    };
    let fp8 = quant.opt_str("quant_method")? == Some("fp8");
    let expert_dtype = match quant.opt_str("expert_dtype")? {
        Some(d) => Some(d.to_string()),
        None => config.opt_str("expert_dtype")?.map(str::to_string),
    };
    let fp4_experts = match expert_dtype.as_deref() {
        None | Some("fp8") => false,
        Some("fp4") => true,
        Some(other) => {
            return Err(config.error(
                "expert_dtype",
                format!("`{other}` is not supported (fp4 or fp8)"),
            ));
        }
    };
    let scale_dtype = match quant.opt_str("scale_fmt")? {
        Some("ue8m0") => DType::E8M0,
        None => DType::F32,
        Some(other) => {
            return Err(quant.error(
                "scale_fmt",
                format!("`{other}` is not supported (ue8m0, or absent for f32 scales)"),
            ));
        }
    };
    Ok(Quantization {
        fp8,
        fp4_experts: fp8 && fp4_experts,
        scale_dtype,
    })
}

/// The rotary frequencies of sliding-window layers (`main`: `rope_theta`, no scaling) and of
/// compressed layers (`compress`: `compress_rope_theta` with the config's YaRN scaling, whose
/// attention factor defaults to 1), as transformers derives them.
fn rope_frequencies(
    config: &Config,
    rope_dim: u64,
    max_positions: u64,
) -> Result<(RopeFrequencies, RopeFrequencies), HfError> {
    let nested = config.opt_object("rope_parameters")?;
    let (main, compress) = match &nested {
        Some(p) => (p.opt_object("main")?, p.opt_object("compress")?),
        None => (None, None),
    };
    let main_params = match main {
        Some(m) => rope_entries(&m)?,
        None => Map::new(),
    };
    // A flat `rope_parameters` (or `rope_scaling`) holds the compressed layers' scaling; its
    // `rope_theta`, if any, is the main one, and `compress_rope_theta` always sets theirs.
    let flat = match (&compress, &nested) {
        (Some(_), _) => None,
        (None, Some(flat)) => Some(flat.clone()),
        (None, None) => config.opt_object("rope_scaling")?,
    };
    let flat_theta = match &flat {
        Some(f) => f.opt_f64("rope_theta")?,
        None => None,
    };
    let main_theta = match main_params.get("rope_theta").and_then(Value::as_f64) {
        Some(t) => t,
        None => match config.opt_f64("rope_theta")? {
            Some(t) => t,
            None => flat_theta.unwrap_or(10000.0),
        },
    };
    let mut compress_params = match (&compress, &flat) {
        (Some(c), _) => rope_entries(c)?,
        (None, Some(f)) => {
            let mut params = rope_entries(f)?;
            params.remove("rope_theta");
            params
        }
        (None, None) => Map::new(),
    };
    let compress_theta = match compress_params.get("rope_theta").and_then(Value::as_f64) {
        Some(t) => t,
        None => config.f64_or("compress_rope_theta", 160000.0)?,
    };
    let is_yarn = compress_params
        .get("rope_type")
        .or_else(|| compress_params.get("type"))
        .and_then(Value::as_str)
        == Some("yarn");
    if is_yarn && !compress_params.contains_key("attention_factor") {
        compress_params.insert("attention_factor".into(), Value::from(1.0));
    }
    let main = frequencies_of(config, main_theta, main_params, rope_dim, max_positions)?;
    let compress = frequencies_of(
        config,
        compress_theta,
        compress_params,
        rope_dim,
        max_positions,
    )?;
    Ok((main, compress))
}

/// The entries of one rope parameter object that define frequencies.
fn rope_entries(params: &Config) -> Result<Map<String, Value>, HfError> {
    let mut out = Map::new();
    for key in ["rope_type", "type"] {
        if let Some(v) = params.opt_str(key)? {
            out.insert(key.into(), Value::from(v));
        }
    }
    for key in [
        "rope_theta",
        "factor",
        "beta_fast",
        "beta_slow",
        "mscale",
        "mscale_all_dim",
        "attention_factor",
    ] {
        if let Some(v) = params.opt_f64(key)? {
            out.insert(key.into(), Value::from(v));
        }
    }
    if let Some(v) = params.opt_u64("original_max_position_embeddings")? {
        out.insert("original_max_position_embeddings".into(), Value::from(v));
    }
    out.insert(
        "truncate".into(),
        Value::from(params.bool_or("truncate", true)?),
    );
    Ok(out)
}

/// Frequencies for `theta` and the scaling entries `params`, computed by the shared rope code.
fn frequencies_of(
    config: &Config,
    theta: f64,
    mut params: Map<String, Value>,
    rope_dim: u64,
    max_positions: u64,
) -> Result<RopeFrequencies, HfError> {
    params.remove("rope_theta");
    let mut root = Map::new();
    root.insert("rope_theta".into(), Value::from(theta));
    root.insert("rope_scaling".into(), Value::Object(params));
    let synthetic = Config::parse(&Value::Object(root).to_string(), config.path())?;
    RopeParameters::read(&synthetic)?.frequencies(&synthetic, rope_dim, max_positions)
}

/// Tensor names under the published checkpoint layout or transformers' hybrid one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// `embed.weight`, `layers.L.…`, `hc_head_fn`.
    Published,
    /// `model.embed_tokens.weight`, `model.layers.L.…`, `model.hc_head.hc_fn`.
    Transformers,
}

impl Naming {
    fn embed(self) -> &'static str {
        match self {
            Naming::Published => "embed",
            Naming::Transformers => "model.embed_tokens",
        }
    }

    fn norm(self) -> &'static str {
        match self {
            Naming::Published => "norm",
            Naming::Transformers => "model.norm",
        }
    }

    fn layer(self, layer: u64) -> String {
        match self {
            Naming::Published => format!("layers.{layer}"),
            Naming::Transformers => format!("model.layers.{layer}"),
        }
    }

    /// The three hyper-head parameters (`fn`, `base`, `scale`).
    fn hc_head(self) -> [&'static str; 3] {
        match self {
            Naming::Published => ["hc_head_fn", "hc_head_base", "hc_head_scale"],
            Naming::Transformers => [
                "model.hc_head.hc_fn",
                "model.hc_head.hc_base",
                "model.hc_head.hc_scale",
            ],
        }
    }
}

/// Whether a projection may be quantised in a quantised checkpoint, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantizable {
    /// Always stored in a float type (compressor, indexer weights, router).
    No,
    /// FP8 with block scales (attention, shared expert).
    Fp8,
    /// A routed expert: FP4 or FP8 as the config says.
    Expert,
}

/// How one projection is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// A float tensor.
    Plain,
    /// FP8 E4M3 with one scale per block of this shape.
    Fp8([u64; 2]),
    /// FP4 E2M1 packed in bytes, one scale per 32 inputs.
    Fp4,
}

/// A projection weight as stored: the data, and for quantised weights the scale with the block
/// each scale covers.
struct StoredProjection {
    data: ValueId,
    scale: Option<(ValueId, [u64; 2])>,
}

/// FP4 weights have one scale per this many inputs.
const FP4_BLOCK: u64 = 32;

/// The graph of one DeepSeek-V4 model under construction.
struct V4<'c> {
    c: &'c DeepseekV4Config,
    naming: Naming,
}

/// Builds the whole model: `input_ids [batch, seq]` → `logits [batch, seq, vocab]`. Multi-token
/// prediction layers are not part of the forward pass.
pub fn build(b: &mut ModelBuilder<'_, '_>, c: &DeepseekV4Config) -> Result<(), HfError> {
    let naming = match b.weight_source() {
        WeightSource::Checkpoint(checkpoint, _)
            if !checkpoint.contains("embed.weight")
                && checkpoint.contains("model.embed_tokens.weight") =>
        {
            Naming::Transformers
        }
        _ => Naming::Published,
    };
    let v4 = V4 { c, naming };
    v4.build(b)
}

impl V4<'_> {
    fn build(&self, b: &mut ModelBuilder<'_, '_>) -> Result<(), HfError> {
        let c = self.c;
        let ids = b.token_ids()?;
        let embed_name = format!("{}.weight", self.naming.embed());
        let embed = b.weight(&embed_name, &[c.vocab, c.hidden], false)?;
        let x = b.op("embed", Op::Gather { axis: 0 }, &[embed, ids])?;
        let x = b.reshape(
            "embed.flatten",
            x,
            vec![b.tokens.clone(), Dim::Known(1), Dim::Known(c.hidden)],
        )?;
        let mut h = b.op(
            "hc.streams",
            Op::Expand {
                shape: vec![
                    b.tokens.clone(),
                    Dim::Known(c.hc_mult),
                    Dim::Known(c.hidden),
                ],
            },
            &[x],
        )?;
        let flat_ids = b.reshape("input_ids.flatten", ids, vec![b.tokens.clone()])?;
        let mut tables = attention::RopeTables::new(b, c)?;
        for layer in 0..c.layers {
            let prefix = self.naming.layer(layer);
            let mix = hyper::connection(b, c, &prefix, "hc_attn", h)?;
            let x = b.rms_norm(
                &format!("{prefix}.attn_norm"),
                mix.collapsed,
                c.hidden,
                c.epsilon,
            )?;
            let kind = c.attention[layer as usize];
            let y = attention::attention(b, self, &prefix, x, &mut tables, kind)?;
            h = hyper::residual(b, &format!("{prefix}.hc_attn"), h, &mix, y)?;

            let mix = hyper::connection(b, c, &prefix, "hc_ffn", h)?;
            let x = b.rms_norm(
                &format!("{prefix}.ffn_norm"),
                mix.collapsed,
                c.hidden,
                c.epsilon,
            )?;
            let y = self.moe(
                b,
                &format!("{prefix}.ffn"),
                x,
                flat_ids,
                c.hash_routed[layer as usize],
            )?;
            h = hyper::residual(b, &format!("{prefix}.hc_ffn"), h, &mix, y)?;
        }
        let x = hyper::head(b, c, self.naming.hc_head(), h)?;
        let x = b.rms_norm(self.naming.norm(), x, c.hidden, c.epsilon)?;
        let head = if c.tie_embeddings {
            self.naming.embed()
        } else {
            "head"
        };
        let logits = lm_head(b, head, x, c.hidden, c.vocab)?;
        b.output(logits)
    }

    /// How the projection `{prefix}.weight` is stored: from the checkpoint's dtypes and its
    /// `{prefix}.scale` sibling, or from the config in shapes-only mode.
    fn storage(&self, b: &ModelBuilder<'_, '_>, prefix: &str, kind: Quantizable) -> Storage {
        match b.weight_source() {
            WeightSource::Checkpoint(checkpoint, block) => {
                let has_scale = checkpoint.contains(&format!("{prefix}.scale"));
                match checkpoint
                    .get(&format!("{prefix}.weight"))
                    .map(|e| &e.dtype)
                {
                    Some(Ok(DType::F8E4M3FN)) if has_scale => Storage::Fp8(block),
                    Some(Ok(DType::I8 | DType::U8)) if has_scale => Storage::Fp4,
                    _ => Storage::Plain,
                }
            }
            WeightSource::ShapesOnly { fp8_block, .. } => {
                let block = fp8_block.unwrap_or([128, 128]);
                match kind {
                    _ if !self.c.quant.fp8 => Storage::Plain,
                    Quantizable::No => Storage::Plain,
                    Quantizable::Fp8 => Storage::Fp8(block),
                    Quantizable::Expert if self.c.quant.fp4_experts => Storage::Fp4,
                    Quantizable::Expert => Storage::Fp8(block),
                }
            }
        }
    }

    /// The weight `{prefix}.weight [out, in]` as stored (quantised data undequantised) with its
    /// scale and the dequantisation blocks, or the weight in the compute dtype.
    fn stored_projection(
        &self,
        b: &mut ModelBuilder<'_, '_>,
        prefix: &str,
        [out_f, in_f]: [u64; 2],
        storage: Storage,
    ) -> Result<StoredProjection, HfError> {
        let name = format!("{prefix}.weight");
        let scale_name = format!("{prefix}.scale");
        let scale_dtype = self.c.quant.scale_dtype;
        match storage {
            Storage::Plain => Ok(StoredProjection {
                data: b.weight(&name, &[out_f, in_f], false)?,
                scale: None,
            }),
            Storage::Fp8(block) => {
                let data = b.stored_weight(&name, &[out_f, in_f], DType::F8E4M3FN)?;
                let scale_shape = [out_f.div_ceil(block[0]), in_f.div_ceil(block[1])];
                let scale = b.stored_weight(&scale_name, &scale_shape, scale_dtype)?;
                Ok(StoredProjection {
                    data,
                    scale: Some((scale, block)),
                })
            }
            Storage::Fp4 => {
                // Two codes per byte; `reinterpreted_weight` checks the byte count.
                let data = b.reinterpreted_weight(
                    &name,
                    &[out_f, in_f.div_ceil(2)],
                    DType::F4E2M1,
                    &[out_f, in_f],
                )?;
                let scale_shape = [out_f, in_f.div_ceil(FP4_BLOCK)];
                let scale = b.stored_weight(&scale_name, &scale_shape, scale_dtype)?;
                Ok(StoredProjection {
                    data,
                    scale: Some((scale, [1, FP4_BLOCK])),
                })
            }
        }
    }

    /// The weight `{prefix}.weight [out, in]` in the compute dtype, dequantised if stored
    /// quantised.
    fn projection_weight(
        &self,
        b: &mut ModelBuilder<'_, '_>,
        prefix: &str,
        shape: [u64; 2],
        kind: Quantizable,
    ) -> Result<ValueId, HfError> {
        let storage = self.storage(b, prefix, kind);
        let StoredProjection { data, scale } = self.stored_projection(b, prefix, shape, storage)?;
        match scale {
            None => Ok(data),
            Some((scale, block)) => b
                .node(
                    &format!("{prefix}.dequantize"),
                    Op::Dequantize {
                        block: block.to_vec(),
                        to: b.dtype,
                    },
                    vec![Some(data), Some(scale), None],
                )
                .map(|v| v[0]),
        }
    }

    /// `x [t, in] · Wᵀ` for the projection `{prefix}.weight [out, in]`.
    fn linear(
        &self,
        b: &mut ModelBuilder<'_, '_>,
        prefix: &str,
        x: ValueId,
        [in_f, out_f]: [u64; 2],
        kind: Quantizable,
    ) -> Result<ValueId, HfError> {
        let w = self.projection_weight(b, prefix, [out_f, in_f], kind)?;
        matmul_t(b, prefix, x, w)
    }

    /// The routed experts' `{prefix}.experts.N.{part}.weight [out, in]` stacked into
    /// `[experts, out, in]` in the compute dtype; quantised experts are stacked as stored and
    /// dequantised once.
    fn stacked_experts(
        &self,
        b: &mut ModelBuilder<'_, '_>,
        prefix: &str,
        part: &str,
        [out_f, in_f]: [u64; 2],
    ) -> Result<ValueId, HfError> {
        let experts = self.c.experts;
        let first = format!("{prefix}.experts.0.{part}");
        let storage = self.storage(b, &first, Quantizable::Expert);
        let mut data = Vec::with_capacity(experts as usize);
        let mut scales = Vec::with_capacity(experts as usize);
        let mut block = None;
        for e in 0..experts {
            let stored = self.stored_projection(
                b,
                &format!("{prefix}.experts.{e}.{part}"),
                [out_f, in_f],
                storage,
            )?;
            data.push(stored.data);
            if let Some((s, blk)) = stored.scale {
                scales.push(s);
                block = Some(blk);
            }
        }
        let stacked_name = format!("{prefix}.experts.{part}");
        let stacked_shape =
            |rows: u64, cols: u64| vec![Dim::Known(experts), Dim::Known(rows), Dim::Known(cols)];
        let data = concat_rows(b, &format!("{stacked_name}.rows"), &data)?;
        let data = b.reshape(
            &format!("{stacked_name}.stack"),
            data,
            stacked_shape(out_f, in_f),
        )?;
        let Some(block) = block else {
            return Ok(data);
        };
        let scales = concat_rows(b, &format!("{stacked_name}.scale.rows"), &scales)?;
        let scales = b.reshape(
            &format!("{stacked_name}.scale.stack"),
            scales,
            stacked_shape(out_f.div_ceil(block[0]), in_f.div_ceil(block[1])),
        )?;
        b.node(
            &format!("{stacked_name}.dequantize"),
            Op::Dequantize {
                block: vec![1, block[0], block[1]],
                to: b.dtype,
            },
            vec![Some(data), Some(scales), None],
        )
        .map(|v| v[0])
    }

    /// The MoE block over `x [t, hidden]`: routed experts (by score, or by the token-id table in
    /// hash layers) plus the shared expert.
    fn moe(
        &self,
        b: &mut ModelBuilder<'_, '_>,
        prefix: &str,
        x: ValueId,
        token_ids: ValueId,
        hashed: bool,
    ) -> Result<ValueId, HfError> {
        let c = self.c;
        let (hidden, inter) = (c.hidden, c.expert_intermediate);
        // The router runs in f32 whatever the compute dtype.
        let router = self.projection_weight(
            b,
            &format!("{prefix}.gate"),
            [c.experts, hidden],
            Quantizable::No,
        )?;
        let router = b.cast(&format!("{prefix}.gate.weight.f32"), router, DType::F32)?;
        let x32 = b.cast(&format!("{prefix}.gate.input.f32"), x, DType::F32)?;
        let logits = matmul_t(b, &format!("{prefix}.gate"), x32, router)?;
        let gate = self.stacked_experts(b, prefix, "w1", [inter, hidden])?;
        let up = self.stacked_experts(b, prefix, "w3", [inter, hidden])?;
        let down = self.stacked_experts(b, prefix, "w2", [hidden, inter])?;
        let scaling_bits = (c.routed_scaling as f32).to_bits();
        let (routing, bias, ids, table) = if hashed {
            let table = b.stored_weight(
                &format!("{prefix}.gate.tid2eid"),
                &[c.vocab, c.top_k],
                DType::I64,
            )?;
            let routing = RoutingMode::Hash {
                normalize: true,
                scaling_bits,
            };
            (routing, None, Some(token_ids), Some(table))
        } else {
            let bias = f32_param(b, &format!("{prefix}.gate.bias"), &[c.experts])?;
            let routing = RoutingMode::SqrtSoftplus {
                normalize: true,
                scaling_bits,
            };
            (routing, Some(bias), None, None)
        };
        let limit_bits = (c.swiglu_limit as f32).to_bits();
        let routed = b.node(
            &format!("{prefix}.experts"),
            Op::Moe {
                top_k: c.top_k as u32,
                routing,
                activation: ExpertActivation::SwiGluClamped { limit_bits },
            },
            vec![
                Some(x),
                Some(logits),
                Some(gate),
                Some(up),
                Some(down),
                bias,
                ids,
                table,
            ],
        )?[0];
        let shared = format!("{prefix}.shared_experts");
        let g = self.linear(
            b,
            &format!("{shared}.w1"),
            x,
            [hidden, inter],
            Quantizable::Fp8,
        )?;
        let u = self.linear(
            b,
            &format!("{shared}.w3"),
            x,
            [hidden, inter],
            Quantizable::Fp8,
        )?;
        let act = b.op(
            &format!("{shared}.act"),
            Op::SwiGlu {
                split: false,
                limit_bits: Some(limit_bits),
            },
            &[g, u],
        )?;
        let shared = self.linear(
            b,
            &format!("{shared}.w2"),
            act,
            [inter, hidden],
            Quantizable::Fp8,
        )?;
        b.binary(&format!("{prefix}.output"), BinaryOp::Add, routed, shared)
    }
}

/// `x · wᵀ` for a 2-D `x [t, in]` and `w [out, in]`.
fn matmul_t(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    x: ValueId,
    w: ValueId,
) -> Result<ValueId, HfError> {
    b.node(
        name,
        Op::Gemm {
            alpha_bits: 1f32.to_bits(),
            beta_bits: 1f32.to_bits(),
            trans_a: false,
            trans_b: true,
        },
        vec![Some(x), Some(w), None],
    )
    .map(|v| v[0])
}

/// Concatenates values along axis 0 (one operand is returned as is).
fn concat_rows(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    values: &[ValueId],
) -> Result<ValueId, HfError> {
    if values.len() == 1 {
        return Ok(values[0]);
    }
    b.op(name, Op::Concat { axis: 0 }, values)
}

/// A parameter the checkpoints store in f32 (hyper-connection weights, attention sinks, position
/// biases, router biases), in f32.
fn f32_param(b: &mut ModelBuilder<'_, '_>, name: &str, shape: &[u64]) -> Result<ValueId, HfError> {
    let value = b.stored_weight(name, shape, DType::F32)?;
    b.cast(&format!("{name}.f32"), value, DType::F32)
}

/// A scalar constant of `dtype`.
fn scalar(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    value: f32,
    dtype: DType,
) -> Result<ValueId, HfError> {
    b.constant(name, &Tensor::scalar_f32(dtype, value))
}

/// `x / sqrt(mean(x²) + eps)` over the last axis, without a weight.
fn unweighted_rms_norm(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    x: ValueId,
    epsilon: f64,
) -> Result<ValueId, HfError> {
    let dtype = b.ty(x).dtype;
    let one = scalar(b, &format!("{name}.one"), 1.0, dtype)?;
    b.op(
        name,
        Op::RmsNorm {
            axis: -1,
            epsilon_bits: (epsilon as f32).to_bits(),
        },
        &[x, one],
    )
}

/// `0, 1, …, len-1` as f32 `[len]`.
fn index_vector(b: &mut ModelBuilder<'_, '_>, name: &str, len: Dim) -> Result<ValueId, HfError> {
    let one = scalar(b, &format!("{name}.one"), 1.0, DType::F32)?;
    let ones = b.op(
        &format!("{name}.ones"),
        Op::Expand { shape: vec![len] },
        &[one],
    )?;
    b.op(
        name,
        Op::CumSum {
            axis: 0,
            exclusive: true,
            reverse: false,
        },
        &[ones],
    )
}
