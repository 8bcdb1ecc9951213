//! Lowerings of data-movement, rope and attention ops, run with the kernel-IR reference
//! executor and compared with the graph interpreter on the same operands.

mod launches;
mod lower_run;
mod random_data;

use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::shape::Dim;
use cubevec_ir::{DType, Op, Tensor};
use cubevec_passes::lower::{
    LowerError, Lowering, OpContext, attention, clip, elementwise, movement, rope, rows,
};
use lower_run::{Lowered, lower_and_run};
use random_data::{lcg, random};

type LowerFn = fn(&OpContext) -> Result<Lowering, LowerError>;

fn ints(dtype: DType, shape: &[usize], values: &[i64]) -> Tensor {
    Tensor::from_i64(dtype, shape.to_vec(), values)
}

/// Lowers `op` for the operands' shapes, runs it, and compares every result with the
/// interpreter: exactly when `tol` is 0, else within `tol · max(1, |reference|)`.
fn check(f: LowerFn, op: Op, inputs: Vec<Option<Tensor>>, tol: f64) -> Lowering {
    let Lowered {
        lowering,
        got,
        expected,
    } = lower_and_run(&f, &op, &inputs);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.shape(), e.shape(), "{op:?} result {i}");
        assert_eq!(g.dtype(), e.dtype(), "{op:?} result {i}");
        if tol == 0.0 {
            assert!(g.bytes() == e.bytes(), "{op:?} result {i} differs");
            continue;
        }
        for (j, (a, b)) in g.to_f64_vec().iter().zip(e.to_f64_vec()).enumerate() {
            let ok = (a - b).abs() <= tol * b.abs().max(1.0) || (a.is_nan() && b.is_nan());
            assert!(ok, "{op:?} result {i} element {j}: {a} vs {b}");
        }
    }
    lowering
}

fn some(ts: Vec<Tensor>) -> Vec<Option<Tensor>> {
    ts.into_iter().map(Some).collect()
}

const F32: DType = DType::F32;
const F16: DType = DType::F16;
const BF16: DType = DType::BF16;

#[test]
fn embedding_gather_reads_each_id_with_the_scalar_unit() {
    let table = random(F32, &[256, 64], 1);
    let ids = ints(DType::I64, &[1, 7], &[3, 0, 255, -1, 17, 3, 128]);
    let l = check(
        movement::lower_gather,
        Op::Gather { axis: 0 },
        some(vec![table, ids]),
        0.0,
    );
    assert_eq!(l.calls.len(), 1);
    assert!(l.calls[0].kernel.blocks > 1, "rows spread over the cores");
    let table = random(BF16, &[50, 33], 2);
    let ids = ints(DType::I32, &[2, 3], &[49, 1, 0, 7, -50, 20]);
    check(
        movement::lower_gather,
        Op::Gather { axis: 0 },
        some(vec![table, ids]),
        0.0,
    );
}

#[test]
fn gather_along_an_inner_axis() {
    let x = random(F16, &[3, 10, 5], 3);
    let ids = ints(DType::I64, &[4], &[9, 0, -3, 4]);
    check(
        movement::lower_gather,
        Op::Gather { axis: 1 },
        some(vec![x, ids]),
        0.0,
    );
}

#[test]
fn transposes_of_the_fixtures() {
    let cases: Vec<(DType, Vec<usize>, Vec<u64>)> = vec![
        (F32, vec![1, 7, 4, 16], vec![0, 2, 1, 3]),
        (F32, vec![1, 4, 7, 16], vec![0, 2, 1, 3]),
        (BF16, vec![2, 5, 3, 24], vec![0, 2, 1, 3]),
        (F16, vec![1, 4, 7, 16], vec![0, 1, 3, 2]),
        (F32, vec![2, 7, 33], vec![0, 2, 1]),
        (F32, vec![7, 4, 16], vec![1, 0, 2]),
        (F32, vec![2, 3, 4, 5], vec![3, 1, 2, 0]),
        (BF16, vec![3, 9], vec![1, 0]),
    ];
    for (i, (dtype, shape, perm)) in cases.into_iter().enumerate() {
        let x = random(dtype, &shape, 10 + i as u64);
        check(
            movement::lower_transpose,
            Op::Transpose { perm },
            some(vec![x]),
            0.0,
        );
    }
    let x = random(F32, &[4, 1, 6], 20);
    let l = check(
        movement::lower_transpose,
        Op::Transpose {
            perm: vec![1, 0, 2],
        },
        some(vec![x]),
        0.0,
    );
    assert!(l.view, "moving a unit axis is a view");
}

#[test]
fn concat_and_split_along_any_axis() {
    let parts: Vec<Tensor> = (0..3).map(|i| random(F32, &[96, 64], 30 + i)).collect();
    check(
        movement::lower_concat,
        Op::Concat { axis: 0 },
        some(parts),
        0.0,
    );
    let parts = vec![random(F32, &[2, 7, 16], 33), random(F32, &[2, 7, 8], 34)];
    check(
        movement::lower_concat,
        Op::Concat { axis: -1 },
        some(parts),
        0.0,
    );
    let parts = vec![
        random(F16, &[2, 3, 5], 35),
        random(F16, &[2, 0, 5], 36),
        random(F16, &[2, 4, 5], 37),
    ];
    check(
        movement::lower_concat,
        Op::Concat { axis: 1 },
        some(parts),
        0.0,
    );

    let sizes = |s: &[u64]| s.iter().map(|&d| Dim::from(d)).collect::<Vec<_>>();
    check(
        movement::lower_split,
        Op::Split {
            axis: -1,
            sizes: sizes(&[32, 16, 16]),
        },
        some(vec![random(F32, &[2, 7, 64], 38)]),
        0.0,
    );
    check(
        movement::lower_split,
        Op::Split {
            axis: 0,
            sizes: sizes(&[3, 7]),
        },
        some(vec![random(BF16, &[10, 3], 39)]),
        0.0,
    );
}

#[test]
fn slices_with_offsets_and_steps() {
    let slice = |axes: Vec<i64>, starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64>| Op::Slice {
        axes,
        starts,
        ends,
        steps,
    };
    check(
        movement::lower_slice,
        slice(vec![3], vec![0], vec![8], vec![1]),
        some(vec![random(F32, &[1, 4, 7, 16], 40)]),
        0.0,
    );
    check(
        movement::lower_slice,
        slice(vec![-1], vec![1], vec![i64::MAX], vec![2]),
        some(vec![random(F16, &[2, 3, 16], 41)]),
        0.0,
    );
    check(
        movement::lower_slice,
        slice(vec![0, 1], vec![-2, 1], vec![i64::MAX, 4], vec![1, 1]),
        some(vec![random(F32, &[5, 6, 3], 42)]),
        0.0,
    );
}

#[test]
fn expands_broadcast_inner_and_outer_axes() {
    let expand = |shape: &[u64]| Op::Expand {
        shape: shape.iter().map(|&d| Dim::from(d)).collect(),
    };
    check(
        movement::lower_expand,
        expand(&[7]),
        some(vec![Tensor::from_f32(F32, vec![], &[1.0])]),
        0.0,
    );
    check(
        movement::lower_expand,
        expand(&[7, 64]),
        some(vec![random(F32, &[7, 1], 50)]),
        0.0,
    );
    check(
        movement::lower_expand,
        expand(&[3, 1, 1]),
        some(vec![random(BF16, &[1, 7, 16], 51)]),
        0.0,
    );
    check(
        movement::lower_expand,
        expand(&[2, 3, 16]),
        some(vec![random(F16, &[2, 1, 16], 52)]),
        0.0,
    );
    check(
        movement::lower_expand,
        expand(&[2, 7]),
        some(vec![ints(DType::I64, &[1, 7], &[0, 1, 2, 3, 4, 5, 6])]),
        0.0,
    );
    check(
        movement::lower_expand,
        expand(&[3, 5]),
        some(vec![ints(DType::I64, &[3, 1], &[-1, 4, 9])]),
        0.0,
    );
}

#[test]
fn casts_round_to_nearest_even() {
    for (from, to) in [
        (F32, BF16),
        (BF16, F32),
        (F16, BF16),
        (F32, F16),
        (F16, F32),
    ] {
        let x = random(from, &[7, 65], 60);
        check(movement::lower_cast, Op::Cast { to }, some(vec![x]), 0.0);
    }
}

#[test]
fn floor_ceil_and_round_to_integral_values() {
    // Halves included: Round goes to even, like the interpreter.
    let halves = Tensor::from_f32(
        F32,
        vec![2, 5],
        &[0.5, 1.5, 2.5, -0.5, -2.5, 3.25, -3.75, 0.0, -0.0, 1e9],
    );
    for op in [UnaryOp::Floor, UnaryOp::Ceil, UnaryOp::Round] {
        check(
            elementwise::lower_elementwise,
            Op::Unary(op),
            some(vec![halves.clone()]),
            0.0,
        );
        for dtype in [F32, BF16, F16] {
            let x = random(dtype, &[3, 70], 61);
            check(
                elementwise::lower_elementwise,
                Op::Unary(op),
                some(vec![x]),
                0.0,
            );
        }
    }
}

#[test]
fn tanh_saturates_and_keeps_small_values() {
    let edges = Tensor::from_f32(
        F32,
        vec![10],
        &[0.0, 1e-4, -1e-4, 0.5, -0.5, 3.0, -3.0, 9.5, 40.0, -1e6],
    );
    check(
        elementwise::lower_elementwise,
        Op::Unary(UnaryOp::Tanh),
        some(vec![edges]),
        1e-6,
    );
    for (dtype, tol) in [(F32, 1e-6), (BF16, 1e-2), (F16, 1e-3)] {
        let x = random(dtype, &[4, 33], 62);
        check(
            elementwise::lower_elementwise,
            Op::Unary(UnaryOp::Tanh),
            some(vec![x]),
            tol,
        );
    }
}

#[test]
fn layer_norm_over_trailing_axes() {
    for (dtype, tol) in [(F32, 1e-5), (BF16, 2e-2)] {
        let x = random(dtype, &[3, 4, 20], 64);
        for (axis, normalised) in [(-1i64, vec![20]), (1, vec![4, 20])] {
            let scale = random(dtype, &normalised, 65);
            let bias = random(dtype, &normalised, 66);
            let op = Op::LayerNorm {
                axis,
                epsilon_bits: 1e-5f32.to_bits(),
            };
            check(
                rows::lower_rows,
                op.clone(),
                some(vec![x.clone(), scale.clone(), bias]),
                tol,
            );
            check(rows::lower_rows, op, some(vec![x.clone(), scale]), tol);
        }
    }
}

#[test]
fn erf_and_both_gelus() {
    let edges = Tensor::from_f32(
        F32,
        vec![8],
        &[0.0, 1e-3, -1e-3, 0.7, -0.7, 2.5, -4.0, 12.0],
    );
    for op in [UnaryOp::Erf, UnaryOp::Gelu, UnaryOp::GeluTanh] {
        check(
            elementwise::lower_elementwise,
            Op::Unary(op),
            some(vec![edges.clone()]),
            1e-6,
        );
        let x = random(BF16, &[3, 40], 67);
        check(
            elementwise::lower_elementwise,
            Op::Unary(op),
            some(vec![x]),
            1e-2,
        );
    }
}

#[test]
fn clip_with_either_or_both_bounds() {
    for dtype in [F32, BF16] {
        let x = random(dtype, &[5, 37], 63);
        let lo = Tensor::from_f32(dtype, vec![], &[-0.25]);
        let hi = Tensor::from_f32(dtype, vec![], &[0.5]);
        for (lo, hi, launches) in [
            (Some(lo.clone()), Some(hi.clone()), 2),
            (Some(lo.clone()), None, 1),
            (None, Some(hi.clone()), 1),
        ] {
            let lowering = check(
                clip::lower_clip,
                Op::Clip,
                vec![Some(x.clone()), lo, hi],
                0.0,
            );
            assert_eq!(lowering.calls.len(), launches);
        }
        let lowering = check(clip::lower_clip, Op::Clip, some(vec![x.clone()]), 0.0);
        assert!(lowering.view, "no bounds: the operand itself");
    }
}

#[test]
fn binary_ops_broadcast() {
    let cases: Vec<(BinaryOp, DType, Vec<usize>, Vec<usize>)> = vec![
        (BinaryOp::Mul, F32, vec![7, 64], vec![7, 1]),
        (BinaryOp::Add, BF16, vec![7, 64], vec![64]),
        (BinaryOp::Sub, F16, vec![2, 7, 64], vec![2, 1, 64]),
        (BinaryOp::Div, F32, vec![], vec![5, 33]),
        (BinaryOp::Max, F32, vec![3, 1, 5], vec![4, 1]),
        (BinaryOp::Min, BF16, vec![1, 300], vec![3, 1]),
        (BinaryOp::Add, F32, vec![2, 3, 4, 5], vec![2, 3, 4, 5]),
        (BinaryOp::Mul, F16, vec![2, 1, 3], vec![1, 5, 1]),
    ];
    for (i, (op, dtype, a, b)) in cases.into_iter().enumerate() {
        let x = random(dtype, &a, 70 + i as u64);
        let mut y = random(dtype, &b, 80 + i as u64);
        if op == BinaryOp::Div {
            let v: Vec<f32> = y.to_f32_vec().iter().map(|v| v.abs() + 0.5).collect();
            y = Tensor::from_f32(dtype, b.clone(), &v);
        }
        check(
            movement::lower_binary,
            Op::Binary(op),
            some(vec![x, y]),
            0.0,
        );
    }
    let a = ints(DType::I32, &[2, 3], &[1, -2, 3, 4, 5, 6]);
    let b = ints(DType::I32, &[3], &[10, 20, -30]);
    check(
        movement::lower_binary,
        Op::Binary(BinaryOp::Add),
        some(vec![a, b]),
        0.0,
    );
}

#[test]
fn reshapes_are_views() {
    let l = check(
        movement::lower_view,
        Op::Reshape {
            shape: vec![Dim::from(7u64), Dim::from(64u64)],
        },
        some(vec![random(F32, &[1, 7, 4, 16], 90)]),
        0.0,
    );
    assert!(l.view && l.calls.is_empty());
}

#[test]
fn rope_rotate_half() {
    let op = Op::Rope { interleaved: false };
    let cases: Vec<(DType, Vec<usize>, Vec<usize>)> = vec![
        (F32, vec![1, 4, 7, 16], vec![7, 8]),
        (BF16, vec![1, 2, 5, 16], vec![5, 8]),
        (F32, vec![2, 7, 4, 16], vec![2, 7, 1, 8]),
        (F16, vec![1, 2, 7, 24], vec![7, 8]),
        (F32, vec![3, 1, 32], vec![3, 1, 16]),
    ];
    for (i, (dtype, x, t)) in cases.into_iter().enumerate() {
        let seed = 100 + 3 * i as u64;
        let inputs = vec![
            random(dtype, &x, seed),
            random(F32, &t, seed + 1),
            random(F32, &t, seed + 2),
        ];
        let tol = if dtype == F32 { 1e-6 } else { 1e-2 };
        let l = check(rope::lower_rope, op.clone(), some(inputs), tol);
        assert_eq!(l.calls.len(), 1);
    }
}

#[test]
fn rope_interleaved_pairs() {
    let op = Op::Rope { interleaved: true };
    let cases: Vec<(DType, Vec<usize>, Vec<usize>)> = vec![
        (F32, vec![1, 4, 7, 8], vec![7, 4]),
        (F16, vec![1, 2, 5, 24], vec![5, 4]),
    ];
    for (i, (dtype, x, t)) in cases.into_iter().enumerate() {
        let seed = 120 + 3 * i as u64;
        let inputs = vec![
            random(dtype, &x, seed),
            random(dtype, &t, seed + 1),
            random(dtype, &t, seed + 2),
        ];
        let tol = if dtype == F32 { 1e-6 } else { 1e-2 };
        let l = check(rope::lower_rope, op.clone(), some(inputs), tol);
        assert_eq!(l.calls.len(), 3);
        assert_eq!(l.scratch.len(), 2);
    }
}

fn attention_op(scale: f32, causal: bool) -> Op {
    Op::Attention {
        scale_bits: scale.to_bits(),
        causal,
    }
}

#[test]
fn causal_grouped_query_attention() {
    for (dtype, tol) in [(F32, 1e-5), (BF16, 3e-2), (F16, 5e-3)] {
        let inputs = vec![
            random(dtype, &[1, 4, 7, 16], 200),
            random(dtype, &[1, 2, 7, 16], 201),
            random(dtype, &[1, 2, 7, 16], 202),
        ];
        let l = check(
            attention::lower_attention,
            attention_op(0.25, true),
            some(inputs),
            tol,
        );
        let cube = l.calls.iter().filter(|c| !c.kernel.cube.is_empty()).count();
        assert_eq!(cube, 2, "scores and values on the Cube");
    }
}

#[test]
fn attention_with_masks_offsets_and_decode() {
    // Float mask, not causal, f16.
    let mut inputs = some(vec![
        random(F16, &[1, 4, 7, 16], 210),
        random(F16, &[1, 2, 7, 16], 211),
        random(F16, &[1, 2, 7, 16], 212),
    ]);
    let mask: Vec<f32> = (0..49)
        .map(|i| if (i * 7) % 5 == 0 { -1e4 } else { 0.0 })
        .collect();
    inputs.push(Some(Tensor::from_f32(F32, vec![1, 1, 7, 7], &mask)));
    check(
        attention::lower_attention,
        attention_op(0.25, false),
        inputs,
        5e-3,
    );
    // Bool mask over a key cache longer than the queries, causal with offset, dv ≠ d.
    let mut inputs = some(vec![
        random(F32, &[2, 2, 5, 16], 220),
        random(F32, &[2, 1, 9, 16], 221),
        random(F32, &[2, 1, 9, 24], 222),
    ]);
    let keep: Vec<i64> = (0..90).map(|i| i64::from(i % 9 != 1)).collect();
    inputs.push(Some(ints(DType::Bool, &[2, 1, 5, 9], &keep)));
    check(
        attention::lower_attention,
        attention_op(0.3, true),
        inputs,
        1e-5,
    );
    // Decode: one query against 13 keys.
    let inputs = some(vec![
        random(BF16, &[2, 2, 1, 32], 230),
        random(BF16, &[2, 1, 13, 32], 231),
        random(BF16, &[2, 1, 13, 32], 232),
    ]);
    check(
        attention::lower_attention,
        attention_op(0.17677669, true),
        inputs,
        3e-2,
    );
}

/// The `tile_rows` of the first kernel of a lowering.
fn tile_rows(l: &Lowering) -> u64 {
    l.calls[0]
        .kernel
        .tiling
        .get("tile_rows")
        .copied()
        .unwrap_or(0)
}

#[test]
fn tiles_of_many_rows_and_chunked_runs() {
    let l = check(
        movement::lower_transpose,
        Op::Transpose {
            perm: vec![0, 2, 1, 3],
        },
        some(vec![random(BF16, &[1, 300, 4, 16], 300)]),
        0.0,
    );
    assert!(tile_rows(&l) > 1);
    let l = check(
        movement::lower_transpose,
        Op::Transpose { perm: vec![1, 0] },
        some(vec![random(F32, &[130, 70], 301)]),
        0.0,
    );
    assert!(tile_rows(&l) > 1);
    let ids: Vec<i64> = (0..300).map(|i| (i * 37) % 50 - 25).collect();
    let l = check(
        movement::lower_gather,
        Op::Gather { axis: 0 },
        some(vec![
            random(F16, &[50, 24], 302),
            ints(DType::I64, &[300], &ids),
        ]),
        0.0,
    );
    assert!(tile_rows(&l) > 1);
    // Runs longer than half of UB are chunked.
    let parts = vec![random(F32, &[1, 30000], 303), random(F32, &[1, 20000], 304)];
    check(
        movement::lower_concat,
        Op::Concat { axis: 1 },
        some(parts),
        0.0,
    );
    let cases: Vec<(BinaryOp, DType, Vec<usize>, Vec<usize>)> = vec![
        (BinaryOp::Mul, BF16, vec![200, 48], vec![200, 1]),
        (BinaryOp::Add, F32, vec![3, 200, 40], vec![3, 1, 40]),
        (BinaryOp::Sub, F16, vec![200, 40], vec![40]),
        (BinaryOp::Max, F32, vec![100, 1, 3], vec![100, 7, 1]),
        (BinaryOp::Add, F32, vec![1, 40000], vec![1]),
    ];
    for (i, (op, dtype, a, b)) in cases.into_iter().enumerate() {
        let x = random(dtype, &a, 310 + i as u64);
        let y = random(dtype, &b, 320 + i as u64);
        check(
            movement::lower_binary,
            Op::Binary(op),
            some(vec![x, y]),
            0.0,
        );
    }
    let expand = Op::Expand {
        shape: vec![Dim::from(300u64), Dim::from(40u64)],
    };
    let l = check(
        movement::lower_expand,
        expand,
        some(vec![random(F16, &[300, 1], 330)]),
        0.0,
    );
    assert!(tile_rows(&l) > 1);
}

#[test]
fn rope_and_attention_tiles_of_many_rows() {
    let op = Op::Rope { interleaved: false };
    let cases: Vec<(DType, Vec<usize>, Vec<usize>)> = vec![
        (F32, vec![1, 2, 300, 16], vec![300, 8]),
        (BF16, vec![1, 2, 300, 32], vec![300, 16]),
        (F32, vec![2, 150, 4, 16], vec![2, 150, 1, 8]),
    ];
    for (i, (dtype, x, t)) in cases.into_iter().enumerate() {
        let seed = 400 + 3 * i as u64;
        let inputs = vec![
            random(dtype, &x, seed),
            random(dtype, &t, seed + 1),
            random(dtype, &t, seed + 2),
        ];
        let tol = if dtype == F32 { 1e-6 } else { 1e-2 };
        let l = check(rope::lower_rope, op.clone(), some(inputs), tol);
        assert!(tile_rows(&l) > 1);
    }
    let inputs = some(vec![
        random(F32, &[1, 2, 100, 16], 410),
        random(F32, &[1, 1, 100, 16], 411),
        random(F32, &[1, 1, 100, 16], 412),
    ]);
    let l = check(
        attention::lower_attention,
        attention_op(0.25, true),
        inputs,
        1e-5,
    );
    let softmax = &l.calls[1].kernel;
    assert!(softmax.tiling["tile_rows"] > 1, "{softmax}");
}

fn bools(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<i64> = lcg(seed, n).iter().map(|x| i64::from(*x > 0.0)).collect();
    ints(DType::Bool, shape, &v)
}

#[test]
fn comparisons_and_logic_on_the_scalar_unit() {
    let pos: Vec<i64> = (0..7).collect();
    let rows = ints(DType::I64, &[1, 1, 7, 1], &pos);
    let cols = ints(DType::I64, &[1, 1, 1, 7], &pos);
    check(
        movement::lower_compare,
        Op::Binary(BinaryOp::LessOrEqual),
        some(vec![cols, rows]),
        0.0,
    );
    // Signed zeros, negatives and ties among floats.
    let a = [-0.0f32, 0.0, -1.5, 2.0, -3.0, 1.0, 0.5, -0.25];
    let b = [0.0f32, -0.0, -1.0, 2.0, -4.0, -1.0, 0.25, -0.25];
    for dtype in [F32, F16, BF16] {
        for op in [
            BinaryOp::Less,
            BinaryOp::Greater,
            BinaryOp::Equal,
            BinaryOp::LessOrEqual,
            BinaryOp::GreaterOrEqual,
        ] {
            let x = Tensor::from_f32(dtype, vec![8], &a);
            let y = Tensor::from_f32(dtype, vec![8], &b);
            check(
                movement::lower_compare,
                Op::Binary(op),
                some(vec![x, y]),
                0.0,
            );
        }
    }
    let x = ints(
        DType::I32,
        &[3, 4],
        &[5, -2, 0, 7, 1, 1, -9, 3, 4, 4, 2, -1],
    );
    let y = ints(DType::I32, &[4], &[1, -2, 3, 7]);
    check(
        movement::lower_compare,
        Op::Binary(BinaryOp::GreaterOrEqual),
        some(vec![x, y]),
        0.0,
    );
    for op in [BinaryOp::And, BinaryOp::Or, BinaryOp::Xor] {
        let x = bools(&[2, 1, 9], 500);
        let y = bools(&[3, 1], 501);
        check(
            movement::lower_compare,
            Op::Binary(op),
            some(vec![x, y]),
            0.0,
        );
    }
    check(
        movement::lower_not,
        Op::Unary(cubevec_ir::op::UnaryOp::Not),
        some(vec![bools(&[5, 70], 502)]),
        0.0,
    );
}

#[test]
fn where_copies_the_chosen_elements() {
    let cond = bools(&[2, 1, 7, 7], 510);
    let zero = Tensor::from_f32(F32, vec![], &[0.0]);
    let neg_inf = Tensor::from_f32(F32, vec![], &[f32::NEG_INFINITY]);
    check(
        movement::lower_where,
        Op::Where,
        some(vec![cond, zero, neg_inf]),
        0.0,
    );
    let cond = bools(&[4, 1], 511);
    let a = random(F16, &[4, 33], 512);
    let b = random(F16, &[33], 513);
    check(
        movement::lower_where,
        Op::Where,
        some(vec![cond, a, b]),
        0.0,
    );
    let cond = bools(&[300], 514);
    let a = ints(DType::I64, &[300], &(0..300).collect::<Vec<_>>());
    let b = ints(DType::I64, &[1], &[-7]);
    check(
        movement::lower_where,
        Op::Where,
        some(vec![cond, a, b]),
        0.0,
    );
}

#[test]
fn integer_and_bool_casts_on_the_scalar_unit() {
    let x = ints(DType::I64, &[2, 5], &[0, 1, -3, 70000, 5, -1, 2, 9, 0, 255]);
    for to in [DType::I32, DType::Bool, F32, F16, BF16] {
        check(
            movement::lower_cast,
            Op::Cast { to },
            some(vec![x.clone()]),
            0.0,
        );
    }
    for to in [DType::I64, F32] {
        check(
            movement::lower_cast,
            Op::Cast { to },
            some(vec![bools(&[3, 11], 520)]),
            0.0,
        );
    }
    let x = Tensor::from_f32(F16, vec![6], &[0.0, -0.0, 1.5, -2.0, 1e-7, 3.0]);
    check(
        movement::lower_cast,
        Op::Cast { to: DType::Bool },
        some(vec![x]),
        0.0,
    );
}
