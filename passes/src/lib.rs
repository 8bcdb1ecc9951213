//! cubevec passes: graph IR in, kernel IR out.
//!
//! - [`optimize`]: the e-graph optimiser (equality saturation with `egg`, Ascend-costed extraction).
//! - [`lower`]: lowering one op to kernel launches.
//! - [`partition`]: splitting the optimised graph into Cube, Vector and MIX kernels.
//! - [`tile`]: tiling kernels for the Ascend memory hierarchy.
//! - [`cost`]: the analytic Ascend cost model.

pub mod cost;
pub mod lower;
pub mod optimize;
pub mod partition;
pub mod tile;
