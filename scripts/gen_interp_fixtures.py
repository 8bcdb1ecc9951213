#!/usr/bin/env python3
"""Generates the reference fixtures of the interpreter's op tests (ir/tests/interp_ops.rs).

Every case writes its operands as ``in<slot>.npy`` (an absent optional operand has no file) and
the expected results as ``out<i>.npy`` under ``tests/fixtures/interp/<case>/``. The expected
values are computed here independently of cubevec: with numpy, with ``onnx.reference`` for ONNX
ops, and with ``ml_dtypes`` for bfloat16/fp8/fp4 rounding. npy has no bfloat16 or 8/4-bit float
types, so such operands and results are stored as float32 holding exactly representable values;
the Rust test declares the real dtype of each case.

Environment (pinned):

    python3 -m venv .venv && .venv/bin/pip install numpy==2.4.6 onnx==1.23.2 ml_dtypes==0.6.0
    .venv/bin/python scripts/gen_interp_fixtures.py            # writes tests/fixtures/interp/

An optional argument overrides the output directory.
"""

import math
import shutil
import sys
import zlib
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

F32 = np.float32
BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn
E5M2 = ml_dtypes.float8_e5m2
F4 = ml_dtypes.float4_e2m1fn

CASES = {}


def case(fn):
    """Registers a case under its function name; it returns (inputs, outputs)."""
    CASES[fn.__name__] = fn
    return fn


def rng(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def uniform(r, shape, lo=-2.0, hi=2.0):
    return r.uniform(lo, hi, size=shape).astype(F32)


def round_to(x, dtype):
    """Rounds float values to `dtype` (ml_dtypes: nearest even) and returns them as float32."""
    return np.asarray(x, dtype=F32).astype(dtype).astype(F32)


def sat(x, limit):
    """Saturates finite values to ±limit (ONNX `saturate=1` casts), keeping inf and NaN."""
    x = np.asarray(x, dtype=F32)
    return np.where(np.isfinite(x), np.clip(x, -limit, limit), x).astype(F32)


def onnx_run(op_type, inputs, n_out=1, **attrs):
    """Runs one ONNX node on numpy inputs with onnx's reference evaluator."""
    names = [f"i{i}" if x is not None else "" for i, x in enumerate(inputs)]
    outs = [f"o{i}" for i in range(n_out)]
    node = helper.make_node(op_type, names, outs, **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
        for n, x in zip(names, inputs)
        if x is not None
    ]
    graph_outputs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs]
    model = helper.make_model(
        helper.make_graph([node], "g", graph_inputs, graph_outputs),
        opset_imports=[helper.make_opsetid("", 23)],
    )
    feeds = {n: x for n, x in zip(names, inputs) if x is not None}
    return ReferenceEvaluator(model).run(None, feeds)


erf = np.vectorize(math.erf, otypes=[np.float64])


def sigmoid(x):
    x = np.asarray(x, np.float64)
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    x = np.asarray(x, np.float64)
    return np.logaddexp(0.0, x)


def silu(x):
    return x * sigmoid(x)


def gelu(x):
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


# ---------------------------------------------------------------- unary

UNARY = {
    "neg": (lambda x: -x, None),
    "abs": (np.abs, None),
    "exp": (np.exp, None),
    "log": (np.log, (0.1, 4.0)),
    "sqrt": (np.sqrt, (0.0, 4.0)),
    "rsqrt": (lambda x: 1.0 / np.sqrt(x), (0.1, 4.0)),
    "reciprocal": (lambda x: 1.0 / x, (0.2, 3.0)),
    "sin": (np.sin, (-6.0, 6.0)),
    "cos": (np.cos, (-6.0, 6.0)),
    "tanh": (np.tanh, (-4.0, 4.0)),
    "erf": (erf, (-4.5, 4.5)),
    "sigmoid": (sigmoid, (-8.0, 8.0)),
    "relu": (lambda x: np.maximum(x, 0), None),
    "silu": (silu, (-6.0, 6.0)),
    "gelu": (gelu, (-5.0, 5.0)),
    "gelu_tanh": (
        lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        (-5.0, 5.0),
    ),
    "softplus": (softplus, (-20.0, 20.0)),
    "floor": (np.floor, (-5.0, 5.0)),
    "ceil": (np.ceil, (-5.0, 5.0)),
    "round": (np.round, None),  # numpy rounds half to even
    "sign": (np.sign, None),
}


def make_unary(name, fn, domain):
    def build():
        r = rng("unary_" + name)
        lo, hi = domain or (-3.0, 3.0)
        x = uniform(r, (2, 3, 4), lo, hi)
        if name in ("round", "sign", "relu"):
            x.flat[:6] = [0.5, 1.5, -2.5, 0.0, -0.0, 2.5]
        return [x], [np.asarray(fn(x.astype(np.float64))).astype(F32)]

    build.__name__ = "unary_" + name
    return build


for _name, (_fn, _domain) in UNARY.items():
    case(make_unary(_name, _fn, _domain))


@case
def unary_not():
    x = rng("unary_not").random((3, 4)) < 0.5
    return [x], [np.logical_not(x)]


@case
def unary_isnan():
    x = np.array([1.0, np.nan, -np.inf, np.inf, 0.0, -np.nan], F32).reshape(2, 3)
    return [x], [np.isnan(x)]


@case
def unary_isinf():
    x = np.array([1.0, np.nan, -np.inf, np.inf, 0.0, 3e38], F32).reshape(2, 3)
    return [x], [np.isinf(x)]


@case
def unary_exp_bf16():
    x = round_to(uniform(rng("unary_exp_bf16"), (4, 8)), BF16)
    return [x], [round_to(np.exp(x.astype(np.float64)), BF16)]


@case
def unary_tanh_f16():
    x = uniform(rng("unary_tanh_f16"), (4, 8)).astype(np.float16)
    return [x], [np.tanh(x.astype(np.float64)).astype(np.float16)]


@case
def unary_neg_i64():
    x = np.array([[3, -7, 0], [2**40, -(2**40) - 1, 5]], np.int64)
    return [x], [-x]


@case
def unary_abs_i32():
    x = np.array([3, -7, 0, -(2**30)], np.int32)
    return [x], [np.abs(x)]


# ---------------------------------------------------------------- binary


def binary_case(name, fn, a, b):
    CASES[name] = lambda: ([a, b], [fn(a, b)])


def _binary_cases():
    r = rng("binary")
    a = uniform(r, (2, 3, 4))
    b = uniform(r, (3, 1))
    b[0, 0] = a[0, 0, 0]  # an exact tie for the comparisons
    pos_a = uniform(r, (2, 3, 4), 0.5, 2.0)
    f = lambda fn: (lambda x, y: fn(x, y).astype(F32))  # noqa: E731
    binary_case("binary_add", f(np.add), a, b)
    binary_case("binary_sub", f(np.subtract), a, b)
    binary_case("binary_mul", f(np.multiply), a, b)
    binary_case("binary_div", f(np.divide), a, b)
    binary_case("binary_pow", lambda x, y: np.power(x.astype(np.float64), y).astype(F32), pos_a, b)
    binary_case("binary_mod", f(np.fmod), a * 3, b)
    binary_case("binary_fmod", f(np.fmod), a * 3, b)
    an = a.copy()
    an[1, 2, 3] = np.nan
    binary_case("binary_max", f(np.maximum), an, b)
    binary_case("binary_min", f(np.minimum), an, b)
    binary_case("binary_equal", np.equal, a, b)
    binary_case("binary_less", np.less, a, b)
    binary_case("binary_less_equal", np.less_equal, a, b)
    binary_case("binary_greater", np.greater, a, b)
    binary_case("binary_greater_equal", np.greater_equal, a, b)
    p = r.random((2, 3)) < 0.5
    q = r.random((3,)) < 0.5
    binary_case("binary_and", np.logical_and, p, q)
    binary_case("binary_or", np.logical_or, p, q)
    binary_case("binary_xor", np.logical_xor, p, q)
    ia = np.array([[7, -7, 7, -7, 0, 9]], np.int64)
    ib = np.array([[2], [-2], [3]], np.int64)
    binary_case("binary_div_i64", lambda x, y: np.trunc(x / y).astype(np.int64), ia, ib)
    binary_case("binary_mod_i64", np.mod, ia, ib)  # sign of the divisor
    binary_case("binary_fmod_i32", np.fmod, ia.astype(np.int32), ib.astype(np.int32))
    binary_case("binary_pow_i64", np.power, np.array([2, -3, 5], np.int64), np.array([10, 3, 0], np.int64))
    ba = round_to(uniform(r, (4, 8)), BF16)
    bb = round_to(uniform(r, (8,)), BF16)
    binary_case("binary_add_bf16", lambda x, y: round_to(x + y, BF16), ba, bb)
    binary_case("binary_mul_bf16", lambda x, y: round_to(x * y, BF16), ba, bb)


_binary_cases()


@case
def symbolic_add():
    r = rng("symbolic_add")
    a = uniform(r, (5, 3, 4))
    b = uniform(r, (3, 1))
    return [a, b], [(a + b).astype(F32)]


# ---------------------------------------------------------------- misc elementwise


@case
def clip():
    x = uniform(rng("clip"), (3, 5))
    x[0, 0] = np.nan
    lo, hi = np.array(-0.5, F32), np.array(0.75, F32)
    return [x, lo, hi], [onnx_run("Clip", [x, lo, hi])[0]]


@case
def clip_hi_only():
    x = uniform(rng("clip_hi_only"), (3, 5))
    hi = np.array(0.25, F32)
    return [x, None, hi], [onnx_run("Clip", [x, None, hi])[0]]


@case
def where():
    r = rng("where")
    c = r.random((3, 1)) < 0.5
    a = uniform(r, (2, 3, 4))
    b = uniform(r, (4,))
    return [c, a, b], [np.where(c, a, b)]


def cast_case(name, x, fn):
    CASES[name] = lambda: ([x], [fn(x)])


def _cast_cases():
    r = rng("cast")
    x = uniform(r, (4, 8), -3, 3)
    x.flat[:4] = [1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, -2.5, 65504.0]  # bf16 ties to even
    cast_case("cast_f32_bf16", x, lambda v: round_to(v, BF16))
    cast_case("cast_f32_f16", x, lambda v: v.astype(np.float16))
    cast_case("cast_f32_i32", x * 10, lambda v: np.trunc(v).astype(np.int32))
    big = np.concatenate([x.ravel() * 100, [1000.0, -1000.0, 0.3, 448.0, 449.0]]).astype(F32)
    cast_case("cast_f32_e4m3", big, lambda v: round_to(sat(v, 448.0), E4M3))
    cast_case("cast_f32_e5m2", big * 100, lambda v: round_to(sat(v, 57344.0), E5M2))
    small = np.concatenate([x.ravel(), [2.5, 1.25, 100.0, -0.3, 0.25, 0.75]]).astype(F32)
    cast_case("cast_f32_f4", small, lambda v: round_to(sat(v, 6.0), F4))
    cast_case("cast_i64_f32", np.array([1, -5, 2**24 + 1, 2**40], np.int64), lambda v: v.astype(F32))
    cast_case("cast_f32_bool", np.array([0.0, -0.0, 1.5, np.nan, -2.0], F32), lambda v: v.astype(bool))
    cast_case("cast_bf16_f32", round_to(x, BF16), lambda v: v.astype(F32))


_cast_cases()

# ---------------------------------------------------------------- products


@case
def matmul_batched():
    r = rng("matmul_batched")
    a = uniform(r, (2, 1, 3, 4))
    b = uniform(r, (3, 4, 5))
    return [a, b], [np.matmul(a.astype(np.float64), b).astype(F32)]


@case
def matmul_vec():
    r = rng("matmul_vec")
    a = uniform(r, (4,))
    b = uniform(r, (2, 4, 3))
    return [a, b], [np.matmul(a.astype(np.float64), b).astype(F32)]


@case
def matmul_vec_right():
    r = rng("matmul_vec_right")
    a = uniform(r, (2, 3, 4))
    b = uniform(r, (4,))
    return [a, b], [np.matmul(a.astype(np.float64), b).astype(F32)]


@case
def matmul_bf16():
    r = rng("matmul_bf16")
    a = round_to(uniform(r, (3, 16)), BF16)
    b = round_to(uniform(r, (16, 5)), BF16)
    return [a, b], [round_to(a.astype(np.float64) @ b, BF16)]


@case
def matmul_i64():
    r = rng("matmul_i64")
    a = r.integers(-50, 50, (2, 3, 4)).astype(np.int64)
    b = r.integers(-50, 50, (4, 2)).astype(np.int64)
    return [a, b], [a @ b]


@case
def gemm_trans():
    r = rng("gemm_trans")
    a = uniform(r, (4, 3))
    b = uniform(r, (5, 4))
    c = uniform(r, (5,))
    out = onnx_run("Gemm", [a, b, c], alpha=0.5, beta=2.0, transA=1, transB=1)[0]
    return [a, b, c], [out]


@case
def gemm_no_c():
    r = rng("gemm_no_c")
    a = uniform(r, (3, 4))
    b = uniform(r, (4, 2))
    return [a, b], [onnx_run("Gemm", [a, b], alpha=1.5)[0]]


@case
def einsum_batched():
    r = rng("einsum_batched")
    a = uniform(r, (2, 3, 4))
    b = uniform(r, (2, 4, 5))
    return [a, b], [np.einsum("bij,bjk->bik", a.astype(np.float64), b).astype(F32)]


@case
def einsum_diag():
    x = uniform(rng("einsum_diag"), (4, 4))
    return [x], [np.einsum("ii->i", x)]


@case
def einsum_ellipsis():
    r = rng("einsum_ellipsis")
    a = uniform(r, (2, 3, 4))
    b = uniform(r, (4,))
    return [a, b], [np.einsum("...j,j->...", a.astype(np.float64), b).astype(F32)]


@case
def grouped_matmul():
    r = rng("grouped_matmul")
    x = uniform(r, (5, 4))
    w = uniform(r, (3, 6, 4))
    sizes = np.array([2, 0, 3], np.int64)
    rows, start = [], 0
    for e, n in enumerate(sizes):
        rows.append(x[start : start + n].astype(np.float64) @ w[e].T)
        start += n
    return [x, w, sizes], [np.concatenate(rows).astype(F32)]


# ---------------------------------------------------------------- reductions


def softmax_np(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@case
def softmax_last():
    x = uniform(rng("softmax_last"), (2, 3, 5), -5, 5)
    return [x], [softmax_np(x, -1).astype(F32)]


@case
def softmax_axis1():
    x = uniform(rng("softmax_axis1"), (2, 3, 5), -5, 5)
    return [x], [softmax_np(x, 1).astype(F32)]


@case
def log_softmax():
    x = uniform(rng("log_softmax"), (2, 3, 5), -5, 5)
    return [x], [np.log(softmax_np(x, 0)).astype(F32)]


def _reduce_cases():
    x = uniform(rng("reduce"), (2, 3, 4), 0.5, 1.5)
    for name, fn in [("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min), ("prod", np.prod)]:
        CASES[f"reduce_{name}"] = (
            lambda fn=fn: ([x], [fn(x.astype(np.float64), axis=(1, 2), keepdims=True).astype(F32)])
        )
    CASES["reduce_sum_all"] = lambda: ([x], [np.sum(x.astype(np.float64)).astype(F32)])
    CASES["reduce_mean_axis0"] = lambda: ([x], [np.mean(x.astype(np.float64), axis=0).astype(F32)])
    xn = x.copy()
    xn[1, 1, 1] = np.nan
    CASES["reduce_max_nan"] = lambda: ([xn], [np.max(xn, axis=-1)])
    xi = np.arange(24, dtype=np.int64).reshape(2, 3, 4) - 10
    CASES["reduce_sum_i64"] = lambda: ([xi], [np.sum(xi, axis=1)])


_reduce_cases()


@case
def cumsum():
    x = uniform(rng("cumsum"), (3, 4))
    out = onnx_run("CumSum", [x, np.array(1, np.int64)], exclusive=1, reverse=1)[0]
    return [x], [out]


@case
def cumsum_i64():
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    return [x], [np.cumsum(x, axis=0)]


@case
def argmax():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [np.nan, 1.0, np.nan, 2.0], [5.0, 5.0, 1.0, 5.0]], F32)
    return [x], [onnx_run("ArgMax", [x], axis=1, keepdims=1)[0]]


@case
def argmax_last():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 1.0, 2.0, 2.0]], F32)
    return [x], [onnx_run("ArgMax", [x], axis=-1, keepdims=0, select_last_index=1)[0]]


@case
def topk_largest():
    x = np.array([[1.0, 3.0, 3.0, 0.0, 2.0], [4.0, 4.0, 4.0, 1.0, 5.0]], F32)
    v, i = onnx_run("TopK", [x, np.array([3], np.int64)], n_out=2, axis=1, largest=1)
    return [x], [v, i]


@case
def topk_smallest_axis0():
    x = uniform(rng("topk_smallest_axis0"), (5, 3))
    x[3, 1] = x[1, 1]
    v, i = onnx_run("TopK", [x, np.array([2], np.int64)], n_out=2, axis=0, largest=0)
    return [x], [v, i]


@case
def topk_nan():
    x = np.array([[1.0, np.nan, 3.0, 2.0]], F32)
    # NaN orders above every number (numpy's sort order): largest-first puts it first.
    return [x], [np.array([[np.nan, 3.0]], F32), np.array([[1, 2]], np.int64)]


# ---------------------------------------------------------------- normalisation


@case
def rms_norm():
    r = rng("rms_norm")
    x = uniform(r, (2, 3, 8))
    s = uniform(r, (8,))
    x64 = x.astype(np.float64)
    out = x64 / np.sqrt(np.mean(x64**2, axis=-1, keepdims=True) + 1e-6) * s
    return [x, s], [out.astype(F32)]


@case
def rms_norm_bf16():
    r = rng("rms_norm_bf16")
    x = round_to(uniform(r, (4, 16)), BF16)
    s = round_to(uniform(r, (16,)), BF16)
    x64 = x.astype(np.float64)
    out = x64 / np.sqrt(np.mean(x64**2, axis=-1, keepdims=True) + 1e-5) * s
    return [x, s], [round_to(out, BF16)]


@case
def layer_norm():
    r = rng("layer_norm")
    x = uniform(r, (2, 3, 4))
    s = uniform(r, (3, 4))
    b = uniform(r, (3, 4))
    out = onnx_run("LayerNormalization", [x, s, b], axis=-2, epsilon=1e-5)[0]
    return [x, s, b], [out]


@case
def layer_norm_no_bias():
    r = rng("layer_norm_no_bias")
    x = uniform(r, (3, 6))
    s = uniform(r, (6,))
    return [x, s], [onnx_run("LayerNormalization", [x, s], axis=1, epsilon=1e-3)[0]]


# ---------------------------------------------------------------- indexing


@case
def gather():
    x = uniform(rng("gather"), (2, 5, 3))
    idx = np.array([[0, -1], [3, 1]], np.int64)
    return [x, idx], [np.take(x, np.where(idx < 0, idx + 5, idx), axis=1)]


@case
def gather_scalar():
    x = uniform(rng("gather_scalar"), (4, 3))
    idx = np.array(2, np.int64)
    return [x, idx], [x[2]]


@case
def gather_elements():
    x = uniform(rng("gather_elements"), (3, 4))
    idx = np.array([[0, 3], [-1, 1], [2, 2]], np.int64)
    return [x, idx], [onnx_run("GatherElements", [x, idx], axis=1)[0]]


@case
def gather_nd():
    x = uniform(rng("gather_nd"), (3, 4, 2))
    idx = np.array([[[0, 1]], [[2, 3]], [[1, -1]]], np.int64)
    return [x, idx], [onnx_run("GatherND", [x, idx], batch_dims=0)[0]]


@case
def gather_nd_batch():
    x = uniform(rng("gather_nd_batch"), (2, 3, 4))
    idx = np.array([[[1], [0]], [[2], [2]]], np.int64)
    return [x, idx], [onnx_run("GatherND", [x, idx], batch_dims=1)[0]]


@case
def scatter_elements():
    r = rng("scatter_elements")
    x = uniform(r, (3, 4))
    idx = np.array([[1, 0], [3, -1], [0, 2]], np.int64)
    u = uniform(r, (3, 2))
    return [x, idx, u], [onnx_run("ScatterElements", [x, idx, u], axis=1)[0]]


@case
def scatter_elements_add():
    r = rng("scatter_elements_add")
    x = uniform(r, (3, 4))
    idx = np.array([[1, 1, 2, 1]], np.int64)
    u = uniform(r, (1, 4))
    return [x, idx, u], [onnx_run("ScatterElements", [x, idx, u], axis=0, reduction="add")[0]]


@case
def scatter_nd():
    r = rng("scatter_nd")
    x = uniform(r, (4, 3))
    idx = np.array([[2], [0]], np.int64)
    u = uniform(r, (2, 3))
    return [x, idx, u], [onnx_run("ScatterND", [x, idx, u])[0]]


@case
def scatter_nd_mul():
    r = rng("scatter_nd_mul")
    x = uniform(r, (2, 3))
    idx = np.array([[0, 1], [1, 2], [0, 1]], np.int64)
    u = uniform(r, (3,))
    return [x, idx, u], [onnx_run("ScatterND", [x, idx, u], reduction="mul")[0]]


# ---------------------------------------------------------------- layout


@case
def reshape():
    x = uniform(rng("reshape"), (2, 3, 4))
    return [x], [x.reshape(6, 4)]


@case
def transpose():
    x = uniform(rng("transpose"), (2, 3, 4))
    return [x], [np.transpose(x, (2, 0, 1))]


@case
def transpose_bf16():
    x = round_to(uniform(rng("transpose_bf16"), (3, 5)), BF16)
    return [x], [x.T.copy()]


@case
def concat():
    r = rng("concat")
    a, b, c = uniform(r, (2, 1, 3)), uniform(r, (2, 2, 3)), uniform(r, (2, 3, 3))
    return [a, b, c], [np.concatenate([a, b, c], axis=-2)]


@case
def split():
    x = uniform(rng("split"), (2, 5))
    return [x], [x[:, :1], x[:, 1:5]]


def slice_spec(x, starts, ends, axes, steps):
    """ONNX `Slice` with the clamping rules of the operator specification (onnxruntime follows
    them; onnx's reference evaluator uses numpy slicing, which differs for a negative step with a
    start before the beginning)."""
    for s, e, a, st in zip(starts, ends, axes, steps):
        dim = x.shape[a]
        s = int(s) + dim if s < 0 else int(s)
        e = int(e) + dim if e < 0 else int(e)
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
        x = np.take(x, np.arange(s, e, st, dtype=np.int64), axis=a)
    return x


@case
def slice_steps():
    x = uniform(rng("slice_steps"), (5, 6, 4))
    starts = np.array([-1, 1, 10], np.int64)
    ends = np.array([-9223372036854775808, 100, -10], np.int64)
    axes = np.array([0, 1, -1], np.int64)
    steps = np.array([-2, 2, -1], np.int64)
    out = onnx_run("Slice", [x, starts, ends, axes, steps])[0]
    assert np.array_equal(out, slice_spec(x, starts, ends, axes, steps))
    return [x], [out]


@case
def slice_clamp():
    x = uniform(rng("slice_clamp"), (4, 7))
    starts = np.array([-100, 0], np.int64)
    ends = np.array([-100, -1], np.int64)
    steps = np.array([-1, 3], np.int64)
    return [x], [slice_spec(x, starts, ends, [0, 1], steps)]


@case
def squeeze():
    x = uniform(rng("squeeze"), (1, 3, 1, 2))
    return [x], [x.reshape(3, 1, 2)]


@case
def unsqueeze():
    x = uniform(rng("unsqueeze"), (3, 2))
    return [x], [x.reshape(1, 3, 2, 1)]


@case
def expand():
    x = uniform(rng("expand"), (3, 1))
    return [x], [np.broadcast_to(x, (2, 3, 4)).copy()]


@case
def range_f32():
    s, l, d = np.array(1.0, F32), np.array(2.9, F32), np.array(0.25, F32)
    return [s, l, d], [onnx_run("Range", [s, l, d])[0]]


@case
def range_i64():
    s, l, d = np.array(10, np.int64), np.array(-3, np.int64), np.array(-4, np.int64)
    return [s, l, d], [onnx_run("Range", [s, l, d])[0]]


@case
def trilu_upper():
    x = uniform(rng("trilu_upper"), (2, 3, 4))
    return [x], [onnx_run("Trilu", [x, np.array(1, np.int64)], upper=1)[0]]


@case
def trilu_lower():
    x = uniform(rng("trilu_lower"), (4, 3))
    return [x], [onnx_run("Trilu", [x, np.array(-1, np.int64)], upper=0)[0]]


# ---------------------------------------------------------------- quantisation


def expand_blocks(s, block, shape):
    """Repeats each scale over its block and crops to `shape` (ragged last blocks)."""
    for axis, b in enumerate(block):
        s = np.repeat(s, b, axis=axis)
    return s[tuple(slice(0, d) for d in shape)]


def fp_values(r, dtype, shape, scale):
    """Random values exactly representable in `dtype`, as float32."""
    return round_to(r.standard_normal(shape) * scale, dtype)


@case
def dequant_e4m3_block2d():
    r = rng("dequant_e4m3_block2d")
    x = fp_values(r, E4M3, (5, 7), 40.0)
    x.flat[0] = 448.0
    s = uniform(r, (3, 2), 0.01, 0.1)
    out = x * expand_blocks(s, (2, 4), x.shape)
    return [x, s], [out.astype(F32)]


@case
def dequant_e5m2_block():
    r = rng("dequant_e5m2_block")
    x = fp_values(r, E5M2, (4, 6), 1000.0)
    s = round_to(uniform(r, (4, 2), 0.001, 0.01), BF16)
    out = x * expand_blocks(s, (1, 3), x.shape)
    return [x, s], [round_to(out, BF16)]


@case
def dequant_fp4_e8m0():
    r = rng("dequant_fp4_e8m0")
    x = fp_values(r, F4, (3, 10), 3.0)
    s = (2.0 ** r.integers(-4, 5, (3, 3))).astype(F32)
    out = x * expand_blocks(s, (1, 4), x.shape)
    return [x, s], [round_to(out, BF16)]


@case
def dequant_i8_zero_point():
    r = rng("dequant_i8_zero_point")
    x = r.integers(-128, 128, (4, 6)).astype(np.int8)
    s = uniform(r, (2, 3), 0.01, 0.1)
    z = r.integers(-5, 5, (2, 3)).astype(np.int8)
    zf = expand_blocks(z.astype(F32), (2, 2), x.shape)
    out = (x.astype(F32) - zf) * expand_blocks(s, (2, 2), x.shape)
    return [x, s, z], [out.astype(F32)]


@case
def dequant_u8_per_tensor():
    r = rng("dequant_u8_per_tensor")
    x = r.integers(0, 256, (3, 4)).astype(np.uint8)
    s = np.array(0.05, F32)
    z = np.array(128, np.uint8)
    out = onnx_run("DequantizeLinear", [x, s, z])[0]
    return [x, s, z], [out.astype(np.float16)]


# ---------------------------------------------------------------- fused


def swiglu_np(g, u, limit=None):
    g = g.astype(np.float64)
    u = u.astype(np.float64)
    if limit is not None:
        g = np.minimum(g, limit)
        u = np.clip(u, -limit, limit)
    return (g / (1 + np.exp(-g))) * u


@case
def swiglu_split():
    x = uniform(rng("swiglu_split"), (2, 3, 8), -4, 4)
    return [x], [swiglu_np(x[..., :4], x[..., 4:]).astype(F32)]


@case
def swiglu_split_limit():
    x = uniform(rng("swiglu_split_limit"), (3, 6), -12, 12)
    return [x], [swiglu_np(x[..., :3], x[..., 3:], 7.0).astype(F32)]


@case
def swiglu_pair():
    r = rng("swiglu_pair")
    g, u = uniform(r, (4, 5), -4, 4), uniform(r, (4, 5), -4, 4)
    return [g, u], [swiglu_np(g, u).astype(F32)]


def rope_tables(r, s, rot):
    pos = np.arange(s)[:, None].astype(np.float64)
    freq = 1.0 / (10000.0 ** (np.arange(rot) / rot))
    angle = pos * freq + r.uniform(0, 0.1, (s, rot))
    return np.cos(angle).astype(F32), np.sin(angle).astype(F32)


@case
def rope_half_partial():
    r = rng("rope_half_partial")
    x = uniform(r, (1, 2, 3, 10))
    cos, sin = rope_tables(r, 3, 3)  # rotates the first 6 of 10 features
    rot, rest = x[..., :6].astype(np.float64), x[..., 6:]
    c2, s2 = np.concatenate([cos, cos], -1), np.concatenate([sin, sin], -1)
    rotated = np.concatenate([-rot[..., 3:], rot[..., :3]], -1)  # HF rotate_half
    out = np.concatenate([(rot * c2 + rotated * s2).astype(F32), rest], -1)
    return [x, cos, sin], [out]


@case
def rope_interleaved():
    r = rng("rope_interleaved")
    x = uniform(r, (2, 4, 8))
    cos, sin = rope_tables(r, 4, 4)
    pairs = x.astype(np.float64).reshape(2, 4, 4, 2)
    z = (pairs[..., 0] + 1j * pairs[..., 1]) * (cos + 1j * sin)  # rotation as complex product
    out = np.stack([z.real, z.imag], -1).reshape(2, 4, 8)
    return [x, cos, sin], [out.astype(F32)]


def attention_np(q, k, v, scale, mask=None, causal=False):
    h, hk = q.shape[1], k.shape[1]
    k = np.repeat(k.astype(np.float64), h // hk, axis=1)
    v = np.repeat(v.astype(np.float64), h // hk, axis=1)
    scores = q.astype(np.float64) @ np.swapaxes(k, -1, -2) * scale
    s, t = q.shape[2], k.shape[2]
    if mask is not None:
        scores = np.where(mask, scores, -np.inf) if mask.dtype == bool else scores + mask
    if causal:
        allowed = np.tril(np.ones((s, t), bool), k=t - s)
        scores = np.where(allowed, scores, -np.inf)
    return softmax_np(scores, -1) @ v


@case
def attention_gqa_causal():
    r = rng("attention_gqa_causal")
    q, k, v = uniform(r, (2, 4, 3, 8)), uniform(r, (2, 2, 5, 8)), uniform(r, (2, 2, 5, 6))
    return [q, k, v], [attention_np(q, k, v, 0.3, causal=True).astype(F32)]


@case
def attention_bool_mask():
    r = rng("attention_bool_mask")
    q, k, v = uniform(r, (1, 2, 4, 4)), uniform(r, (1, 1, 4, 4)), uniform(r, (1, 1, 4, 4))
    mask = r.random((4, 4)) < 0.7
    mask[:, 0] = True
    return [q, k, v, mask], [attention_np(q, k, v, 0.5, mask=mask).astype(F32)]


@case
def attention_float_mask():
    r = rng("attention_float_mask")
    q, k, v = uniform(r, (1, 2, 3, 4)), uniform(r, (1, 2, 6, 4)), uniform(r, (1, 2, 6, 5))
    mask = uniform(r, (1, 1, 3, 6), -3, 0)
    return [q, k, v, mask], [attention_np(q, k, v, 0.5, mask=mask, causal=True).astype(F32)]


# ---------------------------------------------------------------- MoE (plain numpy reference)


def topk_stable(v, k):
    return np.argsort(-v, kind="stable")[:k]


def moe_np(x, logits, gate, up, down, k, routing, act, bias=None, ids=None, table=None):
    t, hdim = x.shape
    out = np.zeros((t, hdim))
    for i in range(t):
        lg = logits[i].astype(np.float64)
        kind = routing["kind"]
        if kind == "softmax_topk":
            p = softmax_np(lg, -1)
            idx = topk_stable(p, k)
            w = p[idx]
            if routing["normalize"]:
                w = w / w.sum()
        elif kind == "topk_softmax":
            idx = topk_stable(lg, k)
            w = softmax_np(lg[idx], -1)
        elif kind == "sigmoid_group":
            s = sigmoid(lg)
            choice = s + (bias if bias is not None else 0)
            groups = choice.reshape(routing["n_group"], -1)
            gscore = np.sort(groups, axis=-1)[:, -2:].sum(-1)
            keep = topk_stable(gscore, routing["topk_group"])
            masked = np.full_like(groups, -np.inf)
            masked[keep] = groups[keep]
            idx = topk_stable(masked.reshape(-1), k)
            w = s[idx]
            if routing["normalize"]:
                w = w / w.sum()
            w = w * routing["scaling"]
        elif kind == "sqrt_softplus":
            s = np.sqrt(softplus(lg))
            idx = topk_stable(s + (bias if bias is not None else 0), k)
            w = s[idx]
            if routing["normalize"]:
                w = w / w.sum()
            w = w * routing["scaling"]
        elif kind == "hash":
            s = np.sqrt(softplus(lg))
            idx = table[ids[i]]
            w = s[idx]
            if routing["normalize"]:
                w = w / w.sum()
            w = w * routing["scaling"]
        for e, we in zip(idx, w):
            u = up[e].astype(np.float64) @ x[i]
            if act == "swiglu":
                hmid = silu(gate[e].astype(np.float64) @ x[i]) * u
            elif act == "swiglu_clamped":
                g = np.minimum(gate[e].astype(np.float64) @ x[i], 1.5)
                hmid = silu(g) * np.clip(u, -1.5, 1.5)
            elif act == "silu":
                hmid = silu(u)
            elif act == "gelu":
                hmid = gelu(u)
            else:
                hmid = np.maximum(u, 0)
            out[i] += we * (down[e].astype(np.float64) @ hmid)
    return out.astype(F32)


def moe_case(name, routing, act, with_bias=False, hashed=False, e=8, k=2):
    def build():
        r = rng(name)
        t, hdim, inter = 4, 6, 5
        x = uniform(r, (t, hdim), -1, 1)
        logits = uniform(r, (t, e), -3, 3)
        gate = uniform(r, (e, inter, hdim), -0.5, 0.5) if act.startswith("swiglu") else None
        up = uniform(r, (e, inter, hdim), -0.5, 0.5)
        down = uniform(r, (e, hdim, inter), -0.5, 0.5)
        bias = uniform(r, (e,), -0.3, 0.3) if with_bias else None
        ids = table = None
        if hashed:
            ids = np.array([3, 0, 3, 5], np.int64)
            table = r.integers(0, e, (6, k)).astype(np.int64)
        out = moe_np(x, logits, gate, up, down, k, routing, act, bias, ids, table)
        return [x, logits, gate, up, down, bias, ids, table], [out]

    build.__name__ = name
    CASES[name] = build


moe_case("moe_softmax_topk", {"kind": "softmax_topk", "normalize": False}, "swiglu")
moe_case("moe_softmax_topk_norm", {"kind": "softmax_topk", "normalize": True}, "silu")
moe_case("moe_topk_softmax", {"kind": "topk_softmax"}, "gelu", k=3)
moe_case(
    "moe_sigmoid_group",
    {"kind": "sigmoid_group", "n_group": 4, "topk_group": 2, "normalize": True, "scaling": 2.5},
    "swiglu",
    with_bias=True,
    k=3,
)
moe_case(
    "moe_sigmoid_group_unnormalized",
    {"kind": "sigmoid_group", "n_group": 2, "topk_group": 1, "normalize": False, "scaling": 1.0},
    "relu",
)
moe_case(
    "moe_sqrt_softplus",
    {"kind": "sqrt_softplus", "normalize": True, "scaling": 1.5},
    "swiglu_clamped",
    with_bias=True,
)
moe_case("moe_hash", {"kind": "hash", "normalize": True, "scaling": 2.0}, "swiglu_clamped", hashed=True)


# ---------------------------------------------------------------- graphs


@case
def chain():
    """x → matmul(w) → rms_norm(s) → softmax: a three-node graph with a weight."""
    r = rng("chain")
    x = uniform(r, (3, 4))
    w = uniform(r, (4, 6))
    s = uniform(r, (6,))
    h = x.astype(np.float64) @ w
    n = h / np.sqrt(np.mean(h**2, -1, keepdims=True) + 1e-6) * s
    return [x, w, s], [softmax_np(n, -1).astype(F32), h.astype(F32)]


# ---------------------------------------------------------------- npy formats


def write_npy_formats(root):
    """Files numpy itself wrote, for the npy reader tests."""
    d = root / "npy"
    d.mkdir(parents=True)
    np.save(d / "f64.npy", np.array([[1.5, -2.25], [1e-3, 3.0]], np.float64))
    np.save(d / "f16.npy", np.array([1.0, -0.5, 65504.0], np.float16))
    np.save(d / "bool.npy", np.array([[True, False, True]]))
    np.save(d / "i8.npy", np.array([-128, 0, 127], np.int8))
    np.save(d / "u8.npy", np.array([0, 200, 255], np.uint8))
    np.save(d / "i32.npy", np.array([-(2**31), 7], np.int32))
    np.save(d / "scalar_i64.npy", np.array(-42, np.int64))
    np.save(d / "fortran.npy", np.asfortranarray(np.arange(6, dtype=F32).reshape(2, 3)))
    with open(d / "v2.npy", "wb") as f:
        np.lib.format.write_array(f, np.arange(6, dtype=F32).reshape(3, 2), version=(2, 0))


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "interp"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for name, build in CASES.items():
        inputs, outputs = build()
        d = root / name
        d.mkdir()
        for i, x in enumerate(inputs):
            if x is not None:
                np.save(d / f"in{i}.npy", np.asarray(x, order="C"))
        for i, y in enumerate(outputs):
            np.save(d / f"out{i}.npy", np.asarray(y, order="C"))
    write_npy_formats(root)
    print(f"wrote {len(CASES)} cases to {root}")


if __name__ == "__main__":
    assert onnx.__version__ == "1.23.2" and np.__version__ == "2.4.6" and ml_dtypes.__version__ == "0.6.0"
    main()
