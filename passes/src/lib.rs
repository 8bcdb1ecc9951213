//! cubevec passes: graph IR in, kernel IR out.
//!
//! - [`optimize`]: the e-graph optimiser (equality saturation with `egg`, Ascend-costed extraction).

pub mod optimize;
