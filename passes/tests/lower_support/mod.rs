//! The per-op harness of the lowering tests: lower one op for ascend910b2, run every launch
//! with the kernel-IR reference executor ([`crate::lower_run`]), and compare the result with
//! the graph interpreter (NaN only where the interpreter gives NaN).

use cubevec_ir::{Op, Tensor};
use cubevec_passes::lower::{LowerError, Lowering, OpContext};

use crate::lower_run::{Lowered, lower_and_run};
pub use crate::random_data::random;

/// Lowers `op` with `lower`, runs every launch over GM data and compares result 0 with the
/// interpreter within `tol · max(1, |reference|)` (NaN where the interpreter gives NaN);
/// returns the lowering.
pub fn check(
    lower: &dyn Fn(&OpContext) -> Result<Lowering, LowerError>,
    op: Op,
    inputs: Vec<Tensor>,
    tol: f64,
) -> Lowering {
    let inputs: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
    let Lowered {
        lowering,
        got,
        expected,
    } = lower_and_run(lower, &op, &inputs);
    for (j, (a, b)) in got[0]
        .to_f64_vec()
        .iter()
        .zip(expected[0].to_f64_vec())
        .enumerate()
    {
        let close = if b.is_nan() {
            a.is_nan()
        } else {
            (a - b).abs() <= tol * b.abs().max(1.0)
        };
        assert!(close, "{op:?} element {j}: {a} vs {b}");
    }
    lowering
}
