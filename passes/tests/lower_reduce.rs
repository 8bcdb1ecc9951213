//! `Reduce` lowerings (sum, mean, max, min over trailing, middle and leading axes), run with the
//! kernel-IR reference executor and compared with the graph interpreter on the same operand.

mod launches;
mod lower_run;
mod random_data;

use cubevec_ir::op::ReduceOp;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op, Tensor};
use cubevec_passes::lower::{ArgRef, OpContext, TensorShape, reduce};
use lower_run::{Lowered, lower_and_run};
use random_data::random;

/// Lowers the reduction for `x`, runs it and compares with the interpreter within
/// `tol · max(1, |reference|)`; returns the number of launches.
fn check(op: ReduceOp, x: Tensor, axes: Vec<i64>, keep_dims: bool, tol: f64) -> usize {
    let op = Op::Reduce {
        op,
        axes,
        keep_dims,
    };
    let Lowered {
        lowering,
        got,
        expected,
    } = lower_and_run(&reduce::lower_reduce, &op, &[Some(x)]);
    if !lowering.view {
        assert_eq!(lowering.calls.len(), 1);
        assert_eq!(
            lowering.calls[0].args,
            vec![ArgRef::Operand(0), ArgRef::Result(0)]
        );
    }
    let got = &got[0];
    assert_eq!(got.shape(), expected[0].shape(), "{op:?}");
    assert_eq!(got.dtype(), expected[0].dtype(), "{op:?}");
    for (j, (a, b)) in got
        .to_f64_vec()
        .iter()
        .zip(expected[0].to_f64_vec())
        .enumerate()
    {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{op:?} element {j}: {a} vs {b}"
        );
    }
    lowering.calls.len()
}

const OPS: [ReduceOp; 4] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min];

#[test]
fn last_axis_reductions_of_every_kind() {
    for (i, op) in OPS.into_iter().enumerate() {
        let seed = i as u64;
        check(
            op,
            random(DType::F32, &[2, 3, 37], seed),
            vec![-1],
            false,
            1e-5,
        );
        check(
            op,
            random(DType::F32, &[5, 20000], seed),
            vec![1],
            true,
            1e-4,
        );
        check(
            op,
            random(DType::BF16, &[4, 4, 4], seed),
            vec![2],
            false,
            1e-2,
        );
        check(op, random(DType::F16, &[3, 9], seed), vec![-1], true, 5e-3);
    }
}

#[test]
fn middle_and_leading_axis_reductions() {
    for (i, op) in OPS.into_iter().enumerate() {
        let seed = 10 + i as u64;
        // The hyper-connection Sinkhorn: columns of a [.., 4, 4] matrix.
        check(
            op,
            random(DType::F32, &[2, 7, 4, 4], seed),
            vec![-2],
            true,
            1e-5,
        );
        check(
            op,
            random(DType::F32, &[3, 50, 9000], seed),
            vec![1],
            false,
            1e-4,
        );
        check(
            op,
            random(DType::BF16, &[6, 5, 40], seed),
            vec![0],
            false,
            1e-2,
        );
        check(
            op,
            random(DType::F32, &[2, 3, 4, 5], seed),
            vec![1, 2],
            true,
            1e-5,
        );
        check(
            op,
            random(DType::F16, &[3, 1, 4, 1, 6], seed),
            vec![1, 2, 3],
            false,
            5e-3,
        );
    }
}

#[test]
fn reductions_over_every_axis_and_unit_axes() {
    check(
        ReduceOp::Sum,
        random(DType::F32, &[3, 4, 5], 30),
        vec![],
        false,
        1e-5,
    );
    check(
        ReduceOp::Max,
        random(DType::F32, &[3, 4, 5], 31),
        vec![],
        true,
        1e-5,
    );
    let launches = check(
        ReduceOp::Mean,
        random(DType::F32, &[3, 1, 5], 32),
        vec![1],
        false,
        0.0,
    );
    assert_eq!(launches, 0, "a reduction over a unit axis is a view");
}

#[test]
fn scattered_axes_and_products_are_not_tiled() {
    let target = Target::by_name("ascend910b2").expect("target");
    for (op, axes) in [(ReduceOp::Sum, vec![0, 2]), (ReduceOp::Prod, vec![2])] {
        let op = Op::Reduce {
            op,
            axes,
            keep_dims: true,
        };
        let ctx = OpContext {
            name: "k0_reduce",
            op: &op,
            inputs: vec![Some(TensorShape::new(DType::F32, vec![2, 3, 4]))],
            outputs: vec![TensorShape::new(DType::F32, vec![1, 3, 1])],
            target: &target,
        };
        assert!(reduce::lower_reduce(&ctx).is_err(), "{op:?}");
    }
}
