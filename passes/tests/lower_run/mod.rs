//! Lowers one op for ascend910b2 and runs its launches with the kernel-IR reference executor
//! over GM data, beside the graph interpreter's results: what every per-op lowering test
//! compares (each with its own tolerance rule).

use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{Op, Tensor, interp};
use cubevec_passes::lower::{LowerError, Lowering, OpContext, TensorShape};

use crate::launches::{execute_launches, shape_of};

/// A lowering, what its launches computed, and what the interpreter computes.
pub struct Lowered {
    /// The lowering.
    pub lowering: Lowering,
    /// Its results, in result order.
    pub got: Vec<Tensor>,
    /// The interpreter's results.
    pub expected: Vec<Tensor>,
}

/// Lowers `op` over `inputs` (`None` for an absent operand) with `lower` and runs it.
pub fn lower_and_run(
    lower: &dyn Fn(&OpContext) -> Result<Lowering, LowerError>,
    op: &Op,
    inputs: &[Option<Tensor>],
) -> Lowered {
    let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
    let expected = interp::eval_op(op, &refs, &DimBindings::new()).expect("reference");
    lower_and_run_against(lower, op, inputs, expected)
}

/// [`lower_and_run`] with the expected results given (for lowerings of several nodes, whose
/// reference is more than one interpreter op).
pub fn lower_and_run_against(
    lower: &dyn Fn(&OpContext) -> Result<Lowering, LowerError>,
    op: &Op,
    inputs: &[Option<Tensor>],
    expected: Vec<Tensor>,
) -> Lowered {
    let outputs: Vec<TensorShape> = expected.iter().map(shape_of).collect();
    let target = Target::by_name("ascend910b2").expect("target");
    let ctx = OpContext {
        name: "k7_layer0_op",
        op,
        inputs: inputs.iter().map(|t| t.as_ref().map(shape_of)).collect(),
        outputs: outputs.clone(),
        target: &target,
    };
    let lowering = lower(&ctx).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    let got = run(&lowering, inputs, &outputs);
    Lowered {
        lowering,
        got,
        expected,
    }
}

/// Runs every launch of `lowering` in order over the operands, results and scratch tensors;
/// a view is operand 0 reshaped.
fn run(lowering: &Lowering, inputs: &[Option<Tensor>], outputs: &[TensorShape]) -> Vec<Tensor> {
    let dims = |t: &TensorShape| t.shape.iter().map(|&d| d as usize).collect::<Vec<_>>();
    if lowering.view {
        let x = inputs[0].as_ref().expect("operand 0");
        return vec![x.reshaped(dims(&outputs[0]))];
    }
    let (results, _) = execute_launches(lowering, inputs, outputs);
    results
        .iter()
        .zip(outputs)
        .map(|(d, t)| d.to_tensor(dims(t)).expect("result tensor"))
        .collect()
}
