//! What a decoder keeps between decode steps (its KV cache), per layer, as the architecture
//! defines it: the graphs cubevec builds are prefill passes without a cache, so the memory a
//! deployment needs for the cache comes from here.
//!
//! - Mixtral, Qwen2-MoE, Qwen3-MoE: keys and values, `2 · kv_heads · head_dim` per position,
//!   over the whole context or the layer's sliding window.
//! - DeepSeek-V3 (MLA): the compressed latent and the shared rotary key,
//!   `kv_lora_rank + qk_rope_head_dim` per position.
//! - DeepSeek-V4: the sliding window's `head_dim` entries (one KV head that serves as both K
//!   and V), the compressed entries of its compression rate (one per `ratio` positions), and
//!   for compressed sparse layers the lightning indexer's `index_head_dim` keys per entry.

use cubevec_ir::DType;

/// Which positions of the context a cache entry keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSpan {
    /// Every position.
    Context,
    /// The last `n` positions.
    Window(u64),
    /// One entry per `ratio` positions (pooled windows).
    Compressed(u64),
}

impl CacheSpan {
    /// Entries kept for a context of `positions` tokens.
    pub fn entries(self, positions: u64) -> u64 {
        match self {
            CacheSpan::Context => positions,
            CacheSpan::Window(n) => positions.min(n),
            CacheSpan::Compressed(ratio) => positions / ratio.max(1),
        }
    }
}

/// One tensor a layer caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// What it holds (`keys and values`, `latent`, `compressed`, `indexer keys`, ...).
    pub name: &'static str,
    /// Elements per cached position.
    pub width: u64,
    /// Which positions are kept.
    pub span: CacheSpan,
}

/// The KV cache of a decoder: the entries of each layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCache {
    /// Per layer, in order.
    pub layers: Vec<Vec<CacheEntry>>,
    /// The element type cached (the model's activation dtype).
    pub dtype: DType,
}

impl KvCache {
    /// Elements cached for one sequence of `positions` tokens, over all layers.
    pub fn elements(&self, positions: u64) -> u64 {
        self.layers
            .iter()
            .flatten()
            .map(|e| e.width * e.span.entries(positions))
            .sum()
    }

    /// Bytes cached for one sequence of `positions` tokens.
    pub fn bytes(&self, positions: u64) -> u64 {
        self.dtype.storage_bytes(self.elements(positions) as usize) as u64
    }
}
