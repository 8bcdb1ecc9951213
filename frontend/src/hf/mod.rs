//! The Hugging Face checkpoint reader: `config.json` + `*.safetensors` → graph IR.
//!
//! The architecture is chosen by `model_type`; its graph is built from the config's sizes, and
//! every weight is bound by reference to its bytes in the (possibly sharded) checkpoint, checked
//! against the shape the config implies. FP8 block-quantised weights (`weight_scale_inv`) keep an
//! explicit `Dequantize`. In shapes-only mode no weights are read at all, so the configs of
//! 600 GB checkpoints compile from `config.json` alone.
//!
//! The graph takes `input_ids` (i64 `[batch, seq]`) and returns `logits` (f32
//! `[batch, seq, vocab]`), the prefill forward pass without a KV cache.

mod builder;
mod cache;
mod checkpoint;
mod config;
mod decoder;
mod deepseek_v3;
mod deepseek_v4;
mod error;
mod llama_moe;
mod rope;
mod stacking;

use std::path::Path;

use cubevec_ir::{DType, Graph};

pub use cache::{CacheEntry, CacheSpan, KvCache};
pub use checkpoint::{Checkpoint, TensorEntry};
pub use config::Config;
pub use error::HfError;

use builder::{ModelBuilder, WeightSource};
use llama_moe::Flavor;

/// How to read a checkpoint directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HfOptions {
    /// Build the graph from `config.json` alone; weights are absent and the graph cannot run.
    pub shapes_only: bool,
    /// Compute activations in this dtype instead of the checkpoint's (f32 runs a bf16 or FP8
    /// checkpoint at full precision, as a numerical reference).
    pub compute_dtype: Option<DType>,
}

/// Whether `dir` looks like a Hugging Face model directory (it has a `config.json`).
pub fn is_model_dir(dir: &Path) -> bool {
    dir.is_dir() && dir.join("config.json").is_file()
}

/// Reads the model in `dir` into a graph. External weights are referenced relative to `dir`.
pub fn load(dir: &Path, options: HfOptions) -> Result<Graph, HfError> {
    let config = Config::read(&dir.join("config.json"))?;
    let architecture = Architecture::read(&config)?;
    let checkpoint = if options.shapes_only {
        None
    } else {
        Some(Checkpoint::open(dir)?)
    };
    let block = fp8_block(&config)?;
    let source = match &checkpoint {
        Some(checkpoint) => WeightSource::Checkpoint(checkpoint, block.unwrap_or([128, 128])),
        None => WeightSource::ShapesOnly {
            dtype: config_dtype(&config)?,
            fp8_block: block,
        },
    };
    // Activations are computed in the dtype asked for, else the embedding's stored float type,
    // else the one the config names.
    let stored = checkpoint
        .as_ref()
        .and_then(|c| c.get("model.embed_tokens.weight"))
        .and_then(|e| e.dtype.clone().ok())
        .filter(|d| matches!(d, DType::F32 | DType::F16 | DType::BF16));
    let dtype = match options.compute_dtype.or(stored) {
        Some(dtype) => dtype,
        None => config_dtype(&config)?,
    };
    let mut graph = Graph::new(model_type(&config)?);
    let mut b = ModelBuilder::new(&mut graph, source, dtype);
    match &architecture {
        Architecture::LlamaMoe(c) => llama_moe::build(&mut b, c)?,
        Architecture::DeepseekV3(c) => deepseek_v3::build(&mut b, c)?,
        Architecture::DeepseekV4(c) => deepseek_v4::build(&mut b, c)?,
    }
    drop(b);
    stacking::merge_stacked_weights(&mut graph);
    Ok(graph)
}

/// The KV cache a decoder of the model in `dir` keeps, read from its `config.json`, in the
/// compute dtype of `options` (else the dtype the config names).
pub fn kv_cache(dir: &Path, options: HfOptions) -> Result<KvCache, HfError> {
    let config = Config::read(&dir.join("config.json"))?;
    let dtype = match options.compute_dtype {
        Some(dtype) => dtype,
        None => config_dtype(&config)?,
    };
    Ok(match Architecture::read(&config)? {
        Architecture::LlamaMoe(c) => c.kv_cache(dtype),
        Architecture::DeepseekV3(c) => c.kv_cache(dtype),
        Architecture::DeepseekV4(c) => c.kv_cache(dtype),
    })
}

/// The sizes of a supported architecture, read from the config.
enum Architecture {
    /// Mixtral, Qwen2-MoE, Qwen3-MoE.
    LlamaMoe(llama_moe::LlamaMoeConfig),
    /// DeepSeek-V3 (MLA + MoE).
    DeepseekV3(deepseek_v3::DeepseekV3Config),
    /// DeepSeek-V4.
    DeepseekV4(deepseek_v4::DeepseekV4Config),
}

/// The config's `model_type`.
fn model_type(config: &Config) -> Result<&str, HfError> {
    config
        .opt_str("model_type")?
        .ok_or_else(|| config.error("model_type", "missing"))
}

impl Architecture {
    /// Reads the config of the architecture its `model_type` names.
    fn read(config: &Config) -> Result<Architecture, HfError> {
        Ok(match model_type(config)? {
            "mixtral" => {
                Architecture::LlamaMoe(llama_moe::LlamaMoeConfig::read(config, Flavor::Mixtral)?)
            }
            "qwen2_moe" => {
                Architecture::LlamaMoe(llama_moe::LlamaMoeConfig::read(config, Flavor::Qwen2Moe)?)
            }
            "qwen3_moe" => {
                Architecture::LlamaMoe(llama_moe::LlamaMoeConfig::read(config, Flavor::Qwen3Moe)?)
            }
            "deepseek_v3" => Architecture::DeepseekV3(deepseek_v3::DeepseekV3Config::read(config)?),
            "deepseek_v4" => Architecture::DeepseekV4(deepseek_v4::DeepseekV4Config::read(config)?),
            _ => {
                return Err(HfError::UnknownModelType {
                    path: config.path().to_path_buf(),
                    model_type: model_type(config)?.to_string(),
                });
            }
        })
    }
}

/// The dtype the config says the weights are stored in (`torch_dtype`, or `dtype` in newer
/// configs); bf16 when absent.
fn config_dtype(config: &Config) -> Result<DType, HfError> {
    let key = if config.opt_str("torch_dtype")?.is_some() {
        "torch_dtype"
    } else {
        "dtype"
    };
    match config.opt_str(key)? {
        None | Some("bfloat16") => Ok(DType::BF16),
        Some("float16") => Ok(DType::F16),
        Some("float32") => Ok(DType::F32),
        Some(other) => Err(config.error(
            key,
            format!("`{other}` is not supported (float32, float16 or bfloat16)"),
        )),
    }
}

/// The weight block shape of an FP8 block-quantised checkpoint (`quantization_config` with
/// `quant_method: fp8` and `weight_block_size`).
fn fp8_block(config: &Config) -> Result<Option<[u64; 2]>, HfError> {
    let Some(quant) = config.opt_object("quantization_config")? else {
        return Ok(None);
    };
    if quant.opt_str("quant_method")? != Some("fp8") {
        return Ok(None);
    }
    match quant.opt_u64_list("weight_block_size")?.as_deref() {
        Some(&[rows, cols]) if rows > 0 && cols > 0 => Ok(Some([rows, cols])),
        None => Ok(Some([128, 128])),
        Some(other) => Err(quant.error(
            "weight_block_size",
            format!("expected two positive block sizes, got {other:?}"),
        )),
    }
}
