//! Runs the launches of a lowering with the kernel-IR reference executor over GM data: the
//! executor every lowering test shares.

use cubevec_ir::Tensor;
use cubevec_ir::kernel::{GmData, ParamRole, execute};
use cubevec_passes::lower::{ArgRef, Lowering, TensorShape};

/// The kernel-side shape of `t`.
pub fn shape_of(t: &Tensor) -> TensorShape {
    TensorShape::new(t.dtype(), t.shape().iter().map(|&d| d as u64).collect())
}

/// Executes the launches in order over the operands (`None` for an absent one), fresh results
/// of `outputs` and fresh scratch tensors; returns the results and the scratch tensors.
pub fn execute_launches(
    lowering: &Lowering,
    inputs: &[Option<Tensor>],
    outputs: &[TensorShape],
) -> (Vec<GmData>, Vec<GmData>) {
    let mut operands: Vec<Option<GmData>> = inputs
        .iter()
        .map(|t| t.as_ref().map(GmData::from_tensor))
        .collect();
    let fresh = |t: &TensorShape| GmData::zeros(t.dtype, t.elements() as usize);
    let mut results: Vec<GmData> = outputs.iter().map(fresh).collect();
    let mut scratch: Vec<GmData> = lowering.scratch.iter().map(|s| fresh(&s.tensor)).collect();
    for call in &lowering.calls {
        let mut params: Vec<GmData> = call
            .args
            .iter()
            .map(|a| match *a {
                ArgRef::Operand(i) => operands[i].clone().expect("operand present"),
                ArgRef::Result(i) => results[i].clone(),
                ArgRef::Scratch(i) => scratch[i].clone(),
            })
            .collect();
        if let Err(e) = execute(&call.kernel, &mut params) {
            panic!("{}: {e}\n{}", call.kernel.name, call.kernel);
        }
        for ((a, data), p) in call.args.iter().zip(params).zip(&call.kernel.params) {
            if p.role == ParamRole::Input {
                continue;
            }
            match *a {
                ArgRef::Operand(i) => operands[i] = Some(data),
                ArgRef::Result(i) => results[i] = data,
                ArgRef::Scratch(i) => scratch[i] = data,
            }
        }
    }
    (results, scratch)
}
