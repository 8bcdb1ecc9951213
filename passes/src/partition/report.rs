//! The per-launch cost report of a partitioned graph.

use std::collections::BTreeMap;

use cubevec_ir::target::Target;
use serde::Serialize;

use super::{KernelKind, Partition};
use crate::cost::Bound;

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelReport {
    /// Kernel name.
    pub name: String,
    /// The graph node it implements.
    pub node: String,
    /// Cube, vector or MIX.
    pub kind: KernelKind,
    /// Tiling facts.
    pub tiles: BTreeMap<String, u64>,
    /// Useful operations.
    pub flops: f64,
    /// Minimum HBM bytes.
    pub bytes: f64,
    /// Modelled time in microseconds.
    pub modeled_time_us: f64,
    /// Roofline limit.
    pub bound: Bound,
    /// Roofline time / modelled time.
    pub efficiency: f64,
    /// Plan assumptions.
    pub assumptions: Vec<String>,
}

/// The per-launch report of a partitioned graph, serialisable as JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionReport {
    /// Graph name.
    pub graph: String,
    /// Target name.
    pub target: String,
    /// Distinct kernels (identical kernels of identical layers are shared).
    pub distinct_kernels: usize,
    /// Launches in execution order.
    pub kernels: Vec<KernelReport>,
    /// Sum of the modelled kernel times (launch overheads excluded).
    pub total_modeled_time_us: f64,
}

/// Builds the report of a partition.
pub fn report(target: &Target, partition: &Partition) -> PartitionReport {
    let (graph, program) = (&partition.graph, &partition.program);
    PartitionReport {
        graph: graph.name.clone(),
        target: target.name.clone(),
        distinct_kernels: program.kernels.len(),
        kernels: partition
            .launches
            .iter()
            .map(|k| {
                let kernel = &program.kernels[program.launches[k.launch].kernel];
                KernelReport {
                    name: kernel.name.clone(),
                    node: graph.node(k.node).name.clone(),
                    kind: k.kind,
                    tiles: kernel.tiling.clone(),
                    flops: k.cost.flops,
                    bytes: k.cost.bytes,
                    modeled_time_us: k.cost.modeled_time_us,
                    bound: k.cost.bound,
                    efficiency: k.cost.efficiency,
                    assumptions: k.assumptions.clone(),
                }
            })
            .collect(),
        total_modeled_time_us: partition
            .launches
            .iter()
            .map(|k| k.cost.modeled_time_us)
            .sum(),
    }
}
