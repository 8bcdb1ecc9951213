//! The per-op harness of the lowering tests: lower one op for ascend910b2, run every launch
//! with the kernel-IR reference executor, and compare the result with the graph interpreter.

use cubevec_ir::kernel::{GmData, ParamRole, execute};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op, Tensor, interp};
use cubevec_passes::lower::{ArgRef, LowerError, Lowering, OpContext, TensorShape};

/// Deterministic values in [-2, 2).
pub fn random(dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_f32(dtype, shape.to_vec(), &v)
}

/// The kernel-side shape of `t`.
fn shape_of(t: &Tensor) -> TensorShape {
    TensorShape::new(t.dtype(), t.shape().iter().map(|&d| d as u64).collect())
}

/// Lowers `op` with `lower`, runs every launch over GM data and compares result 0 with the
/// interpreter within `tol · max(1, |reference|)` (NaN where the interpreter gives NaN);
/// returns the lowering.
pub fn check(
    lower: &dyn Fn(&OpContext) -> Result<Lowering, LowerError>,
    op: Op,
    inputs: Vec<Tensor>,
    tol: f64,
) -> Lowering {
    let refs: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
    let expected = interp::eval_op(&op, &refs, &DimBindings::new()).expect("reference");
    let out = shape_of(&expected[0]);
    let target = Target::by_name("ascend910b2").expect("target");
    let ctx = OpContext {
        name: "k5_layer0_op",
        op: &op,
        inputs: inputs.iter().map(|t| Some(shape_of(t))).collect(),
        outputs: vec![out.clone()],
        target: &target,
    };
    let lowering = lower(&ctx).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    let mut operands: Vec<GmData> = inputs.iter().map(GmData::from_tensor).collect();
    let mut result = GmData::zeros(out.dtype, out.elements() as usize);
    let mut scratch: Vec<GmData> = lowering
        .scratch
        .iter()
        .map(|s| GmData::zeros(s.tensor.dtype, s.tensor.elements() as usize))
        .collect();
    for call in &lowering.calls {
        let mut params: Vec<GmData> = call
            .args
            .iter()
            .map(|a| match *a {
                ArgRef::Operand(i) => operands[i].clone(),
                ArgRef::Result(_) => result.clone(),
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
                ArgRef::Operand(i) => operands[i] = data,
                ArgRef::Result(_) => result = data,
                ArgRef::Scratch(i) => scratch[i] = data,
            }
        }
    }
    let dims: Vec<usize> = out.shape.iter().map(|&d| d as usize).collect();
    let got = result.to_tensor(dims).expect("result tensor");
    for (j, (a, b)) in got
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
