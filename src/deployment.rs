//! How a compiled model's memory spreads over several devices of its target.
//!
//! The layout is the usual one for serving large MoE models: the routed experts are sharded
//! over the devices (expert parallelism), every other weight is replicated, and each device
//! runs attention for its own share of the batch (data-parallel attention), so it holds the KV
//! cache of those sequences only. Weights count as stored on the device, after the
//! dequantisation the Cube needs (FP8/FP4 checkpoints become bf16 constants). The activation
//! arena is the one the compiled plan allocates for the whole batch, an upper bound for one
//! device's share.

use cubevec_ir::Op;
use cubevec_ir::kernel::TensorKind;
use serde::Serialize;

use crate::CompiledModel;

/// Devices tried when choosing the fewest that hold the model.
const MAX_DEVICES: u32 = 4096;

/// How to deploy: on how many devices, with how long a context cached per sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeploymentOptions {
    /// Devices to spread the model over; `None` for the fewest that hold it.
    pub devices: Option<u32>,
    /// Positions cached per sequence; `None` for the `seq` size the model was compiled for.
    pub context: Option<u64>,
}

/// Memory per device of a compiled model deployed on `devices` devices of its target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// Devices the model is spread over.
    pub devices: u32,
    /// HBM capacity of one device.
    pub hbm_bytes: u64,
    /// All weights and constants, as stored on the devices.
    pub weight_bytes: u64,
    /// The part of [`Deployment::weight_bytes`] that is routed-expert weights (sharded).
    pub expert_weight_bytes: u64,
    /// Weights on one device: the replicated part plus its share of the experts.
    pub weight_bytes_per_device: u64,
    /// Sequences in the batch.
    pub sequences: u64,
    /// Context positions cached per sequence.
    pub context: u64,
    /// KV cache of one sequence of [`Deployment::context`] positions, when the model's
    /// architecture defines one.
    pub kv_bytes_per_sequence: Option<u64>,
    /// KV cache on one device: its share of the sequences.
    pub kv_bytes_per_device: Option<u64>,
    /// The activation arena of the compiled plan.
    pub activation_bytes: u64,
    /// Weights, KV cache and activations on one device.
    pub bytes_per_device: u64,
    /// Whether [`Deployment::bytes_per_device`] fits in [`Deployment::hbm_bytes`].
    pub fits: bool,
}

impl Deployment {
    /// The deployment of `compiled` per `options`: on the devices asked for, or on the fewest
    /// that hold it (one when none up to 4096 does; [`Deployment::fits`] then says so). The
    /// batch is the `batch` size the model was compiled for.
    pub fn plan(compiled: &CompiledModel<'_>, options: &DeploymentOptions) -> Deployment {
        let program = compiled.program();
        let experts = expert_weight_names(compiled);
        let (mut weight_bytes, mut expert_weight_bytes) = (0, 0);
        for t in program
            .tensors
            .iter()
            .filter(|t| t.kind == TensorKind::Constant)
        {
            weight_bytes += t.bytes();
            if experts.binary_search(&t.name).is_ok() {
                expert_weight_bytes += t.bytes();
            }
        }
        let bindings = compiled.bindings();
        let sequences = bindings.get("batch").copied().unwrap_or(1).max(1);
        let context = options
            .context
            .unwrap_or_else(|| bindings.get("seq").copied().unwrap_or(1));
        let kv_cache = compiled.model().kv_cache();
        let on = |devices: u32| {
            let weight_bytes_per_device =
                weight_bytes - expert_weight_bytes + expert_weight_bytes.div_ceil(devices as u64);
            let kv_bytes_per_sequence = kv_cache.map(|kv| kv.bytes(context));
            let kv_bytes_per_device =
                kv_bytes_per_sequence.map(|b| b * sequences.div_ceil(devices as u64));
            let activation_bytes = program.memory.arena_bytes;
            let bytes_per_device =
                weight_bytes_per_device + kv_bytes_per_device.unwrap_or(0) + activation_bytes;
            let hbm_bytes = compiled.target().memory.hbm_bytes;
            Deployment {
                devices,
                hbm_bytes,
                weight_bytes,
                expert_weight_bytes,
                weight_bytes_per_device,
                sequences,
                context,
                kv_bytes_per_sequence,
                kv_bytes_per_device,
                activation_bytes,
                bytes_per_device,
                fits: bytes_per_device <= hbm_bytes,
            }
        };
        match options.devices {
            Some(n) => on(n.max(1)),
            None => (1..=MAX_DEVICES)
                .map(on)
                .find(|d| d.fits)
                .unwrap_or_else(|| on(1)),
        }
    }
}

/// Names of the values that hold routed-expert weights: the gate, up and down stacks of every
/// MoE op and the weight of every grouped matmul, in the graph the program was lowered from.
fn expert_weight_names(compiled: &CompiledModel<'_>) -> Vec<String> {
    let graph = &compiled.partition().graph;
    let mut names = Vec::new();
    for node in &graph.nodes {
        let slots: &[usize] = match node.op {
            Op::Moe { .. } => &[2, 3, 4],
            Op::GroupedMatMul => &[1],
            _ => &[],
        };
        for &slot in slots {
            if let Some(v) = node.inputs.get(slot).copied().flatten() {
                names.push(graph.value(v).name.clone());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}
