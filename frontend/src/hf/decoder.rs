//! The skeleton shared by the pre-norm decoders (Mixtral, Qwen-MoE, DeepSeek-V3): token
//! embedding, rotary tables, `num_hidden_layers` × (norm → attention → residual, norm → MLP →
//! residual), final norm and output head. Each architecture supplies its attention and MLP; the
//! head and the split into attention heads are shared with DeepSeek-V4.

use cubevec_ir::op::BinaryOp;
use cubevec_ir::{DType, Dim, Op, ValueId};

use super::HfError;
use super::builder::ModelBuilder;
use super::rope::RopeFrequencies;

/// The sizes the shared skeleton needs.
pub struct DecoderSpec<'c> {
    /// `hidden_size`.
    pub hidden: u64,
    /// `vocab_size`.
    pub vocab: u64,
    /// `num_hidden_layers`.
    pub layers: u64,
    /// `rms_norm_eps`.
    pub epsilon: f64,
    /// `tie_word_embeddings`: the head reuses the embedding matrix.
    pub tie_embeddings: bool,
    /// Width of the dense SwiGLU MLP (`mlp.{gate,up,down}_proj`) of layers without experts.
    pub dense_intermediate: u64,
    /// Rotary frequencies shared by every layer.
    pub rope: &'c RopeFrequencies,
}

/// The rotary tables `cos, sin` `[seq, r]` every layer's attention uses.
#[derive(Clone, Copy)]
pub struct Rotary {
    /// `cos` table.
    pub cos: ValueId,
    /// `sin` table.
    pub sin: ValueId,
}

/// Builds the model: `input_ids [batch, seq]` → `logits [batch, seq, vocab]`, calling
/// `attention(b, layer, prefix, x, rotary)` and `sparse_mlp(b, layer, prefix, x)` for each layer
/// with `prefix = model.layers.{layer}` and `x` the normalised `[t, hidden]` input. A layer whose
/// `sparse_mlp` gives `None` has the dense SwiGLU MLP `{prefix}.mlp.{gate,up,down}_proj`.
pub fn build_decoder<'g, 'a>(
    b: &mut ModelBuilder<'g, 'a>,
    spec: &DecoderSpec,
    mut attention: impl FnMut(
        &mut ModelBuilder<'g, 'a>,
        u64,
        &str,
        ValueId,
        Rotary,
    ) -> Result<ValueId, HfError>,
    mut sparse_mlp: impl FnMut(
        &mut ModelBuilder<'g, 'a>,
        u64,
        &str,
        ValueId,
    ) -> Result<Option<ValueId>, HfError>,
) -> Result<(), HfError> {
    let ids = b.token_ids()?;
    let embed = b.weight(
        "model.embed_tokens.weight",
        &[spec.vocab, spec.hidden],
        false,
    )?;
    let h = b.op("model.embed_tokens", Op::Gather { axis: 0 }, &[embed, ids])?;
    let mut h = b.reshape(
        "model.embed_tokens.flatten",
        h,
        vec![b.tokens.clone(), Dim::Known(spec.hidden)],
    )?;
    let (cos, sin) = b.rope_tables(
        "model.rotary_emb",
        &spec.rope.inv_freq,
        spec.rope.attention_factor,
    )?;
    let rotary = Rotary { cos, sin };
    for layer in 0..spec.layers {
        let prefix = format!("model.layers.{layer}");
        let norm = format!("{prefix}.input_layernorm");
        let x = b.rms_norm(&norm, h, spec.hidden, spec.epsilon)?;
        let attn = attention(b, layer, &prefix, x, rotary)?;
        h = b.binary(&format!("{prefix}.attn_residual"), BinaryOp::Add, h, attn)?;
        let norm = format!("{prefix}.post_attention_layernorm");
        let x = b.rms_norm(&norm, h, spec.hidden, spec.epsilon)?;
        let out = match sparse_mlp(b, layer, &prefix, x)? {
            Some(out) => out,
            None => b.swiglu_mlp(
                &format!("{prefix}.mlp"),
                ["gate_proj", "up_proj", "down_proj"],
                x,
                spec.hidden,
                spec.dense_intermediate,
            )?,
        };
        h = b.binary(&format!("{prefix}.mlp_residual"), BinaryOp::Add, h, out)?;
    }
    let h = b.rms_norm("model.norm", h, spec.hidden, spec.epsilon)?;
    let head = if spec.tie_embeddings {
        "model.embed_tokens"
    } else {
        "lm_head"
    };
    let logits = lm_head(b, head, h, spec.hidden, spec.vocab)?;
    b.output(logits)
}

/// The output projection to the graph output `logits` `[batch, seq, vocab]` f32.
pub fn lm_head(
    b: &mut ModelBuilder<'_, '_>,
    weight_prefix: &str,
    h: ValueId,
    hidden: u64,
    vocab: u64,
) -> Result<ValueId, HfError> {
    let logits = b.projection(weight_prefix, h, [hidden, vocab], false, false)?;
    let logits = b.cast("lm_head.f32", logits, DType::F32)?;
    let shape = vec![b.batch.clone(), b.seq.clone(), Dim::Known(vocab)];
    b.op_named(
        "lm_head.unflatten",
        Op::Reshape { shape },
        &[logits],
        "logits",
    )
}

/// Splits `[t, heads·d]` into `[batch, heads, seq, d]`.
pub fn to_heads(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    x: ValueId,
    heads: u64,
    dim: u64,
) -> Result<ValueId, HfError> {
    let x = b.reshape(
        &format!("{name}.heads"),
        x,
        vec![
            b.batch.clone(),
            b.seq.clone(),
            Dim::Known(heads),
            Dim::Known(dim),
        ],
    )?;
    b.transpose(&format!("{name}.transpose"), x, &[0, 2, 1, 3])
}

/// Merges `[batch, heads, seq, d]` back into `[t, heads·d]`.
pub fn from_heads(
    b: &mut ModelBuilder<'_, '_>,
    name: &str,
    x: ValueId,
    heads: u64,
    dim: u64,
) -> Result<ValueId, HfError> {
    let x = b.transpose(&format!("{name}.transpose"), x, &[0, 2, 1, 3])?;
    b.reshape(
        &format!("{name}.merge"),
        x,
        vec![b.tokens.clone(), Dim::Known(heads * dim)],
    )
}
