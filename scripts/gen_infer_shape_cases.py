#!/usr/bin/env python3
"""Generates the result-shape fixture of the shape inference tests (ir/tests/infer.rs).

Each case is one ONNX node run by ONNX's reference implementation (``onnx.reference``) on random
operands of the given shapes; the shapes of its results are the expected result shapes of the
matching cubevec op. This makes ONNX itself the oracle for the intricate shape rules (matmul
promotion and batch broadcasting, slice clamping, GatherND/ScatterND, einsum, ...).

One line per case, fields separated by `` ; ``::

    <cubevec op> ; <attr=value ...> ; <operand shapes, ` | `-separated> ; <result shapes>

A shape is written ``[2,3,4]`` (``[]`` for a scalar); list attributes are comma-separated.

Environment (pinned), run from the repository root:

    python3 -m venv .venv && .venv/bin/pip install numpy==2.4.6 onnx==1.23.2
    .venv/bin/python scripts/gen_infer_shape_cases.py      # writes ir/tests/fixtures/infer/

An optional argument overrides the output file.
"""

import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

OPSET = 21
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
RNG = np.random.default_rng(20240607)


def run(op_type, operands, attrs=None, n_out=1):
    """Runs one ONNX node on the given numpy operands; returns the result shapes."""
    names = [f"in{i}" for i in range(len(operands))]
    inputs = [
        helper.make_tensor_value_info(
            n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)
        )
        for n, a in zip(names, operands)
    ]
    outs = [f"out{i}" for i in range(n_out)]
    outputs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs]
    node = helper.make_node(op_type, names, outs, **(attrs or {}))
    graph = helper.make_graph([node], "case", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    results = ReferenceEvaluator(model).run(None, dict(zip(names, operands)))
    return [list(np.asarray(r).shape) for r in results]


def data(shape):
    return RNG.standard_normal(shape).astype(np.float32)


def indices(shape, bound):
    return RNG.integers(0, bound, size=shape, dtype=np.int64)


def ints(values):
    return np.array(values, dtype=np.int64)


def fmt_shape(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def fmt_value(v):
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


CASES = []


def case(op, attrs, shapes, results):
    attr_text = " ".join(f"{k}={fmt_value(v)}" for k, v in attrs.items())
    CASES.append(
        " ; ".join(
            [
                op,
                attr_text,
                " | ".join(fmt_shape(s) for s in shapes),
                " | ".join(fmt_shape(s) for s in results),
            ]
        )
    )


def matmul_cases():
    for a, b in [
        ([2, 3, 4], [4, 5]),
        ([4], [2, 4, 5]),
        ([3, 4], [4]),
        ([4], [4]),
        ([2, 1, 3, 4], [5, 4, 6]),
        ([1, 3, 4], [2, 1, 4, 2]),
        ([7, 1, 2], [1, 2, 3]),
    ]:
        case("matmul", {}, [a, b], run("MatMul", [data(a), data(b)]))


def gemm_cases():
    for ta, tb, a, b, c in [
        (0, 0, [3, 4], [4, 5], None),
        (1, 0, [4, 3], [4, 5], [5]),
        (0, 1, [3, 4], [5, 4], [3, 1]),
        (1, 1, [4, 3], [5, 4], [3, 5]),
        (1, 1, [4, 3], [5, 4], []),
    ]:
        operands = [data(a), data(b)] + ([] if c is None else [data(c)])
        shapes = [a, b] + ([] if c is None else [c])
        result = run("Gemm", operands, {"transA": ta, "transB": tb})
        case("gemm", {"trans_a": ta, "trans_b": tb}, shapes, result)


def broadcast_cases():
    for a, b in [([2, 1, 4], [3, 1]), ([], [5]), ([1], [3, 1, 2]), ([4, 1], [1, 6])]:
        case("add", {}, [a, b], run("Add", [data(a), data(b)]))
    for c, a, b in [([2, 1], [3], [1, 1, 3]), ([], [2], [2, 2])]:
        cond = RNG.integers(0, 2, size=c).astype(bool)
        case("where", {}, [c, a, b], run("Where", [cond, data(a), data(b)]))


def reduce_cases():
    x = [2, 3, 4]
    for axes, keep in [([], 0), ([], 1), ([-1, 1], 0), ([0], 1), ([-3, -2, -1], 0)]:
        operands = [data(x)] + ([ints(axes)] if axes else [])
        result = run("ReduceSum", operands, {"keepdims": keep})
        case("reduce_sum", {"axes": axes, "keep_dims": keep}, [x], result)
    for axis, keep in [(-2, 0), (1, 1), (0, 0)]:
        result = run("ArgMax", [data(x)], {"axis": axis, "keepdims": keep})
        case("argmax", {"axis": axis, "keep_dims": keep}, [x], result)
    for k, axis in [(2, -1), (3, 1), (0, 0), (4, 2)]:
        result = run("TopK", [data(x), ints([k])], {"axis": axis}, n_out=2)
        case("topk", {"k": k, "axis": axis}, [x], result)


def index_cases():
    for x, idx, axis in [
        ([5, 4], [2, 3], 0),
        ([5, 4], [], -1),
        ([2, 5, 4], [6], 1),
        ([3], [2, 2, 2], 0),
    ]:
        bound = x[axis]
        result = run("Gather", [data(x), indices(idx, bound)], {"axis": axis})
        case("gather", {"axis": axis}, [x, idx], result)
    for x, idx, axis in [([3, 5], [3, 2], 1), ([3, 5], [1, 5], 0), ([2, 3, 4], [2, 3, 7], -1)]:
        # The reference implementation does not normalise negative axes here.
        bound = x[axis]
        operands = [data(x), indices(idx, bound)]
        result = run("GatherElements", operands, {"axis": axis % len(x)})
        case("gather_elements", {"axis": axis}, [x, idx], result)
    for x, idx, b in [
        ([2, 2], [2, 2], 0),
        ([2, 2], [2, 1], 0),
        ([2, 2, 2], [2, 1, 2], 0),
        ([2, 2, 2], [2, 1], 1),
        ([2, 3, 4, 5], [2, 3, 6, 1], 2),
        ([4, 5, 6], [7, 8, 3], 0),
    ]:
        bound = min(x)
        result = run("GatherND", [data(x), indices(idx, bound)], {"batch_dims": b})
        case("gather_nd", {"batch_dims": b}, [x, idx], result)
    for x, idx, upd in [
        ([4, 4, 4], [2, 1], [2, 4, 4]),
        ([4, 4, 4], [3, 3], [3]),
        ([8], [4, 1], [4]),
        ([4, 5], [2, 3, 1], [2, 3, 5]),
    ]:
        operands = [data(x), indices(idx, min(x)), data(upd)]
        case("scatter_nd", {}, [x, idx, upd], run("ScatterND", operands))
    for x, idx, axis in [([3, 5], [3, 2], 1), ([3, 5], [2, 5], 0)]:
        operands = [data(x), indices(idx, x[axis]), data(idx)]
        result = run("ScatterElements", operands, {"axis": axis})
        case("scatter_elements", {"axis": axis}, [x, idx, idx], result)


def layout_cases():
    for x, perm in [([2, 3, 4], [2, 0, 1]), ([5], [0]), ([1, 2, 3, 4], [0, 2, 1, 3])]:
        result = run("Transpose", [data(x)], {"perm": perm})
        case("transpose", {"perm": perm}, [x], result)
    for xs, axis in [([[2, 5], [3, 5], [1, 5]], 0), ([[2, 5], [2, 0], [2, 1]], -1)]:
        result = run("Concat", [data(s) for s in xs], {"axis": axis})
        case("concat", {"axis": axis}, xs, result)
    for x, axis, sizes in [([2, 10], -1, [3, 7]), ([6, 2], 0, [1, 2, 3]), ([4], 0, [4])]:
        result = run("Split", [data(x), ints(sizes)], {"axis": axis}, n_out=len(sizes))
        case("split", {"axis": axis, "sizes": sizes}, [x], result)
    for x, axes in [([1, 3, 1], [0, -1]), ([1, 3, 1], [2]), ([1], [0])]:
        case("squeeze", {"axes": axes}, [x], run("Squeeze", [data(x), ints(axes)]))
    for x, axes in [([3, 4], [0, -1]), ([3, 4], [1]), ([], [0]), ([2], [-1, 0])]:
        case("unsqueeze", {"axes": axes}, [x], run("Unsqueeze", [data(x), ints(axes)]))
    for x, shape in [([3, 1], [2, 1, 4]), ([1], [5]), ([2, 1, 3], [4, 3]), ([4], [])]:
        case("expand", {"shape": shape}, [x], run("Expand", [data(x), ints(shape)]))
    for x, shape in [([2, 3, 4], [6, 4]), ([6], [1, 2, 3, 1]), ([], [1, 1])]:
        case("reshape", {"shape": shape}, [x], run("Reshape", [data(x), ints(shape)]))
    for x in [[3, 4], [2, 5, 3]]:
        case("trilu", {}, [x], run("Trilu", [data(x)]))


def slice_cases():
    bounds = [I64_MIN, -12, -10, -3, -1, 0, 1, 2, 5, 9, 10, 12, I64_MAX]
    for _ in range(80):
        d = int(RNG.choice([0, 1, 3, 7, 10]))
        start, end = (int(v) for v in RNG.choice(bounds, size=2))
        step = int(RNG.choice([-3, -2, -1, 1, 2, 3]))
        x = [2, d]
        operands = [data(x), ints([start]), ints([end]), ints([-1]), ints([step])]
        attrs = {"axes": [-1], "starts": [start], "ends": [end], "steps": [step]}
        case("slice", attrs, [x], run("Slice", operands))
    x = [6, 7, 8]
    operands = [data(x), ints([1, -2]), ints([I64_MAX, 0]), ints([0, 2]), ints([2, -3])]
    attrs = {"axes": [0, 2], "starts": [1, -2], "ends": [I64_MAX, 0], "steps": [2, -3]}
    case("slice", attrs, [x], run("Slice", operands))


def einsum_cases():
    for equation, shapes in [
        ("bij,bjk->bik", [[2, 3, 4], [2, 4, 5]]),
        ("ij->ji", [[3, 4]]),
        ("ii->i", [[4, 4]]),
        ("ij,j->i", [[3, 4], [4]]),
        ("bhsd,bhtd->bhst", [[1, 2, 3, 4], [1, 2, 5, 4]]),
        ("ij,kl->ijkl", [[2, 3], [4, 5]]),
        ("ij->", [[2, 3]]),
    ]:
        result = run("Einsum", [data(s) for s in shapes], {"equation": equation})
        case("einsum", {"equation": equation}, shapes, result)


def main():
    root = Path(__file__).resolve().parent.parent
    default = root / "ir" / "tests" / "fixtures" / "infer" / "onnx_shapes.txt"
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    matmul_cases()
    gemm_cases()
    broadcast_cases()
    reduce_cases()
    index_cases()
    layout_cases()
    slice_cases()
    einsum_cases()
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Result shapes of ONNX nodes under onnx.reference (onnx==1.23.2, numpy==2.4.6).\n"
        "# Generated by scripts/gen_infer_shape_cases.py; do not edit.\n"
    )
    out.write_text(header + "\n".join(CASES) + "\n")
    print(f"{len(CASES)} cases -> {out}")


if __name__ == "__main__":
    main()
