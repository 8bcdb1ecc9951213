//! Index-producing and index-consuming lowerings (`TopK`, `ArgMax`, `ScatterElements`) and `RmsNorm` with
//! a broadcast scale, run with the kernel-IR reference executor and compared with the graph
//! interpreter: shapes with tails, ties, infinities, every axis.

mod launches;
mod lower_run;

use cubevec_ir::op::ScatterReduction;
use cubevec_ir::{DType, Op, Tensor};
use cubevec_passes::lower::{LowerError, Lowering, OpContext, norm_scale, scatter, topk};
use lower_run::{Lowered, lower_and_run};

type LowerFn = fn(&OpContext) -> Result<Lowering, LowerError>;

/// Deterministic values: multiples of `step` in [-2, 2) (a coarse step makes ties), with every
/// `inf_every`-th element replaced by `-inf` and the one after it by `+inf` (0: none).
fn values(shape: &[usize], seed: u64, step: f32, inf_every: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0;
            if inf_every > 0 && i % inf_every == 0 {
                f32::NEG_INFINITY
            } else if inf_every > 0 && i % inf_every == 1 {
                f32::INFINITY
            } else {
                (x / step).round() * step
            }
        })
        .collect()
}

/// Lowers `op`, runs every launch over GM data and compares every result with the interpreter
/// within `tol · max(1, |reference|)` (infinities must match exactly); returns the lowering.
fn check(f: LowerFn, op: Op, inputs: Vec<Tensor>, tol: f64) -> Lowering {
    let inputs: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
    let Lowered {
        lowering,
        got,
        expected,
    } = lower_and_run(&f, &op, &inputs);
    for (r, (got, want)) in got.iter().zip(&expected).enumerate() {
        for (j, (a, b)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
            let close = if b.is_infinite() {
                *a == b
            } else {
                (a - b).abs() <= tol * b.abs().max(1.0)
            };
            assert!(close, "{op:?} result {r} element {j}: {a} vs {b}");
        }
    }
    lowering
}

fn topk_op(k: u64, axis: i64, largest: bool) -> Op {
    Op::TopK {
        k,
        axis,
        largest,
        sorted: true,
    }
}

#[test]
fn topk_over_rows_with_ties_and_infinities() {
    for (shape, k, step, inf_every) in [
        (vec![3, 37], 5, 0.5, 0),
        (vec![2, 5, 41], 4, 0.25, 7),
        (vec![70, 9], 9, 1.0, 3),
        (vec![1, 1], 1, 0.5, 0),
        (vec![5, 300], 16, 0.125, 11),
    ] {
        for largest in [true, false] {
            let x = Tensor::from_f32(
                DType::F32,
                shape.clone(),
                &values(&shape, 3, step, inf_every),
            );
            let l = check(topk::lower_topk, topk_op(k, -1, largest), vec![x], 0.0);
            assert_eq!(l.calls.len(), 1);
        }
    }
}

#[test]
fn argmax_keeps_the_first_of_equal_maxima_along_any_axis() {
    // Steps of 0.5 over few distinct values: many ties.
    let shape = vec![4, 6, 9];
    let x = Tensor::from_f32(DType::F32, shape.clone(), &values(&shape, 5, 0.5, 0));
    for (axis, keep_dims) in [(-1, false), (1, true), (0, false)] {
        let op = Op::ArgMax {
            axis,
            keep_dims,
            select_last_index: false,
        };
        let l = check(topk::lower_argmax, op, vec![x.clone()], 0.0);
        assert!(l.scratch.iter().any(|s| s.name == "max_values"));
    }
    let bf16 = Tensor::from_f32(DType::BF16, vec![3, 50], &values(&[3, 50], 6, 0.25, 0));
    let op = Op::ArgMax {
        axis: -1,
        keep_dims: true,
        select_last_index: false,
    };
    check(topk::lower_argmax, op, vec![bf16], 0.0);
}

#[test]
fn topk_of_mostly_infinite_rows() {
    // The DeepSeek-V4 indexer: rows padded with -inf, early rows all -inf.
    let (rows, n) = (12usize, 13usize);
    let mut v = vec![f32::NEG_INFINITY; rows * n];
    for r in 0..rows {
        for j in 4..(4 + r / 2).min(n) {
            v[r * n + j] = ((r * 7 + j * 3) % 5) as f32 - 2.0;
        }
    }
    let x = Tensor::from_f32(DType::F32, vec![1, rows, n], &v);
    check(topk::lower_topk, topk_op(4, -1, true), vec![x], 0.0);
}

#[test]
fn topk_along_inner_axes_and_16_bit_types() {
    let shape = [2usize, 19, 3];
    let x = Tensor::from_f32(DType::F32, shape.to_vec(), &values(&shape, 5, 0.5, 0));
    let l = check(topk::lower_topk, topk_op(4, 1, true), vec![x.clone()], 0.0);
    assert_eq!(
        l.calls.len(),
        4,
        "transpose, search, values and indices back"
    );
    check(topk::lower_topk, topk_op(2, 0, false), vec![x], 0.0);
    for dtype in [DType::F16, DType::BF16] {
        let shape = [4usize, 33];
        let x = Tensor::from_f32(dtype, shape.to_vec(), &values(&shape, 9, 0.25, 5));
        check(topk::lower_topk, topk_op(6, -1, true), vec![x.clone()], 0.0);
        check(topk::lower_topk, topk_op(3, -1, false), vec![x], 0.0);
    }
}

/// Indices in `[-len, len)` (negative ones count from the end), repeats included.
fn indices(dtype: DType, shape: &[usize], len: usize, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<i64> = (0..n)
        .map(|i| ((i as u64 * 7919 + seed * 104_729) % (2 * len as u64)) as i64 - len as i64)
        .collect();
    Tensor::from_i64(dtype, shape.to_vec(), &v)
}

fn scatter_op(axis: i64, reduction: ScatterReduction) -> Op {
    Op::ScatterElements { axis, reduction }
}

#[test]
fn scatter_elements_along_the_last_axis() {
    // The DeepSeek-V4 indexer: zeros written at the top-k positions of a -inf row.
    let (rows, n, k) = (6usize, 9usize, 4usize);
    let x = Tensor::from_f32(
        DType::F32,
        vec![2, rows, n],
        &vec![f32::NEG_INFINITY; 2 * rows * n],
    );
    let ids = indices(DType::I64, &[2, rows, k], n, 1);
    let zeros = Tensor::from_f32(DType::F32, vec![2, rows, k], &vec![0.0; 2 * rows * k]);
    check(
        scatter::lower_scatter_elements,
        scatter_op(-1, ScatterReduction::None),
        vec![x, ids, zeros],
        0.0,
    );
    let shape = [3usize, 40];
    let x = Tensor::from_f32(DType::F16, shape.to_vec(), &values(&shape, 2, 0.25, 0));
    let upd = Tensor::from_f32(DType::F16, vec![3, 7], &values(&[3, 7], 4, 0.25, 0));
    check(
        scatter::lower_scatter_elements,
        scatter_op(1, ScatterReduction::None),
        vec![x, indices(DType::I32, &[3, 7], 40, 2), upd],
        0.0,
    );
}

#[test]
fn scatter_elements_along_inner_axes_with_reductions() {
    let shape = [5usize, 4, 3];
    let x = Tensor::from_f32(DType::F32, shape.to_vec(), &values(&shape, 6, 0.25, 0));
    for (axis, ids_shape, reduction) in [
        (0, [7usize, 2, 3], ScatterReduction::Add),
        (1, [3, 6, 2], ScatterReduction::Mul),
        (2, [4, 3, 5], ScatterReduction::Max),
        (1, [5, 2, 3], ScatterReduction::Min),
        (0, [2, 4, 1], ScatterReduction::None),
    ] {
        let len = shape[axis];
        let upd = Tensor::from_f32(
            DType::F32,
            ids_shape.to_vec(),
            &values(&ids_shape, 8, 0.25, 0),
        );
        check(
            scatter::lower_scatter_elements,
            scatter_op(axis as i64, reduction),
            vec![x.clone(), indices(DType::I64, &ids_shape, len, 3), upd],
            1e-6,
        );
    }
    let xi: Vec<i64> = (0..60).map(|i| i % 11 - 5).collect();
    let x = Tensor::from_i64(DType::I32, shape.to_vec(), &xi);
    let upd = Tensor::from_i64(
        DType::I32,
        vec![5, 4, 2],
        &(0..40).map(|i| i % 7).collect::<Vec<_>>(),
    );
    check(
        scatter::lower_scatter_elements,
        scatter_op(-1, ScatterReduction::Add),
        vec![x, indices(DType::I64, &[5, 4, 2], 3, 5), upd],
        0.0,
    );
}

#[test]
fn rms_norm_with_a_scalar_scale() {
    // DeepSeek-V4's hyper-connection norms scale by a scalar one.
    let shape = [5usize, 72];
    let x = Tensor::from_f32(DType::F32, shape.to_vec(), &values(&shape, 12, 1e-3, 0));
    let scale = Tensor::from_f32(DType::F32, vec![], &[1.5]);
    let op = Op::RmsNorm {
        axis: -1,
        epsilon_bits: 1e-6f32.to_bits(),
    };
    let l = check(norm_scale::lower_rms_norm, op, vec![x, scale], 1e-5);
    assert_eq!(l.calls.len(), 2, "the scale row, then the norm");
}
