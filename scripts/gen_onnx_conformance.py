#!/usr/bin/env python3
"""Materialise the ONNX node conformance cases that the cubevec ONNX frontend is tested against.

The onnx wheel ships the node test cases as Python generators only. This script runs those
generators (the same code `backend-test-tools generate-data` runs for the model cases), keeps the
cases whose graph uses the operators cubevec imports, and copies them into
`tests/fixtures/onnx-node/<case>/` (`model.onnx` + `test_data_set_0/{input,output}_N.pb`).
Selected cases that cubevec cannot represent (element types the IR has no equivalent for, ...)
are not copied; they are written with the reason to `tests/fixtures/onnx-node/out_of_scope.tsv`.

It also writes a few cases of ONNX Runtime's contrib op `com.microsoft.MoE`
(`cubevec_ms_moe_*`), whose expected outputs come from onnxruntime's CPU kernel, or, for the
gated `fc3` form that kernel does not implement, from a numpy transcription of its semantics.

Pinned environment (run from the repository root):

    python3 -m venv .venv-onnx
    .venv-onnx/bin/pip install onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6 ml_dtypes==0.6.0
    .venv-onnx/bin/python scripts/gen_onnx_conformance.py

The output is deterministic: the generators use fixed seeds and the case list is sorted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

PINNED = {"onnx": "1.23.2", "onnxruntime": "1.32.0", "numpy": "2.4.6", "ml_dtypes": "0.6.0"}

# Operators of the default domain the frontend maps onto the graph IR.
OPS = {
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Equal", "Less", "LessOrEqual",
    "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Not", "Neg", "Abs", "Exp", "Log", "Sqrt",
    "Reciprocal", "Sin", "Cos", "Tanh", "Erf", "Sigmoid", "Relu", "Softplus", "Floor", "Ceil",
    "Round", "Sign", "IsNaN", "IsInf", "Clip", "Where", "Cast", "CastLike", "Identity", "MatMul",
    "Gemm", "Softmax", "LogSoftmax", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
    "ReduceProd", "Gelu", "LayerNormalization", "RMSNormalization", "TopK", "Gather",
    "GatherElements", "GatherND", "ScatterElements", "ScatterND", "Reshape", "Transpose",
    "Concat", "Split", "Slice", "Squeeze", "Unsqueeze", "Expand", "Range", "CumSum", "ArgMax",
    "Trilu", "Einsum", "Shape", "ConstantOfShape", "Constant", "OneHot", "DequantizeLinear",
    "Swish", "HardSwish", "SwiGLU", "Attention", "RotaryEmbedding", "Flatten", "Size", "Sum",
}

# Operators whose `_expanded` (function body) variants are kept as well.
EXPANDED_OPS = {
    "Softmax", "LayerNormalization", "RMSNormalization", "Attention", "RotaryEmbedding", "Gelu",
    "Range",
}

# TensorProto element types with a graph-IR equivalent.
SUPPORTED_ELEM_TYPES = {
    "FLOAT", "FLOAT16", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E5M2", "FLOAT8E8M0", "FLOAT4E2M1",
    "INT8", "UINT8", "INT32", "INT64", "BOOL",
}


def check_versions() -> None:
    import ml_dtypes
    import numpy
    import onnx
    import onnxruntime

    found = {
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "ml_dtypes": ml_dtypes.__version__,
    }
    if found != PINNED:
        sys.exit(f"pinned versions {PINNED} required, found {found}")


def generate_all(out_dir: Path) -> None:
    """Writes every node case of the onnx wheel into out_dir/node/<case>."""
    import onnx.backend.test.case.node as node_test
    import onnx.backend.test.cmd_tools as cmd_tools

    cmd_tools.model_test.collect_testcases = node_test.collect_testcases
    cmd_tools.generate_data(argparse.Namespace(output=str(out_dir)))


def elem_types(model) -> set[str]:
    """Element types of every tensor the case touches: graph inputs, outputs, initializers,
    tensor attributes and Cast-like `to` attributes."""
    import onnx

    names = set()

    def tensor_type(tp):
        if tp.HasField("tensor_type"):
            names.add(onnx.TensorProto.DataType.Name(tp.tensor_type.elem_type))
        else:
            names.add("non-tensor " + tp.WhichOneof("value"))

    graph = model.graph
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        tensor_type(vi.type)
    for init in graph.initializer:
        names.add(onnx.TensorProto.DataType.Name(init.data_type))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                names.add(onnx.TensorProto.DataType.Name(attr.t.data_type))
            if attr.name in ("to", "output_datatype", "stash_type") and attr.type == onnx.AttributeProto.INT:
                if attr.name != "stash_type":
                    names.add(onnx.TensorProto.DataType.Name(attr.i))
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                names.add("subgraph attribute")
    return names


def classify(case: str, model) -> tuple[str | None, str | None]:
    """Returns (op, None) for an in-scope case, (op, reason) for a selected but out-of-scope case
    and (None, None) for a case that is not about our operators."""
    nodes = model.graph.node
    if "_expanded" in case:
        return None, None  # decided through the twin case, see main()
    if len(nodes) != 1 or nodes[0].domain not in ("", "ai.onnx") or nodes[0].op_type not in OPS:
        return None, None
    op = nodes[0].op_type
    bad = sorted(t for t in elem_types(model) if t not in SUPPORTED_ELEM_TYPES)
    if bad:
        return op, "element type " + ", ".join(bad) + " has no graph-IR equivalent"
    reason = newer_feature(nodes[0])
    if reason:
        return op, reason
    return op, None


def newer_feature(node) -> str | None:
    """The reason a node uses a feature added after opset 23 that the frontend rejects."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Attention":
        if len(node.input) > 6 and node.input[6]:
            return "Attention `nonpad_kv_seqlen` operand (opset 24) is not supported"
        if attrs.get("left_window_size", -1) != -1 or attrs.get("right_window_size", -1) != -1:
            return "Attention sliding windows (opset 25) are not supported"
    if (
        node.op_type == "Cast"
        and attrs.get("to") == onnx.TensorProto.FLOAT8E8M0
        and attrs.get("round_mode", b"up") != b"nearest"
    ):
        return "Cast to FLOAT8E8M0 with round_mode `up` (opset 24) is not supported"
    return None


def moe_reference(x, logits, fc1, fc2, fc3, k, normalize, activation):
    """ONNX Runtime's MoE: softmax over all experts, top-k (ties to the lower index), optional
    renormalisation, expert = fc2(act(fc1 x) [* fc3 x])."""
    import numpy as np

    acts = {
        "silu": lambda v: v / (1.0 + np.exp(-v)),
        "relu": lambda v: np.maximum(v, 0.0),
    }
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        idx = np.argsort(-p[t], kind="stable")[:k]
        w = p[t, idx]
        if normalize:
            w = w / w.sum()
        for e, weight in zip(idx, w):
            h = acts[activation](fc1[e] @ x[t])
            if fc3 is not None:
                h = h * (fc3[e] @ x[t])
            out[t] += weight * (fc2[e] @ h)
    return out.astype(np.float32)


def write_moe_cases(dest: Path) -> list[str]:
    """Writes the `com.microsoft.MoE` cases; returns their names."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    cases = [
        # name, tokens shape, experts, hidden, inter, k, normalize, activation, gated
        ("cubevec_ms_moe_silu_normalized", (6,), 4, 8, 6, 2, 1, "silu", False),
        ("cubevec_ms_moe_relu_unnormalized_3d", (2, 3), 4, 8, 5, 2, 0, "relu", False),
        ("cubevec_ms_moe_swiglu_fc3", (5,), 8, 16, 12, 3, 1, "silu", True),
    ]
    rng = np.random.default_rng(20261129)
    names = []
    for name, tokens, e, h, i, k, normalize, act, gated in cases:
        x = rng.standard_normal((*tokens, h)).astype(np.float32)
        # Router logits are [tokens, experts] even for a [batch, seq, hidden] input.
        logits = rng.standard_normal((int(np.prod(tokens)), e)).astype(np.float32)
        fc1 = (rng.standard_normal((e, i, h)) * 0.3).astype(np.float32)
        fc2 = (rng.standard_normal((e, h, i)) * 0.3).astype(np.float32)
        fc3 = (rng.standard_normal((e, i, h)) * 0.3).astype(np.float32) if gated else None
        inputs = ["x", "logits", "fc1", "", "fc2"] + (["", "fc3"] if gated else [])
        node = helper.make_node(
            "MoE", inputs, ["y"], domain="com.microsoft", k=k,
            normalize_routing_weights=normalize, activation_type=act,
        )
        inits = [numpy_helper.from_array(fc1, "fc1"), numpy_helper.from_array(fc2, "fc2")]
        if gated:
            inits.append(numpy_helper.from_array(fc3, "fc3"))
        graph = helper.make_graph(
            [node], name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
             helper.make_tensor_value_info("logits", TensorProto.FLOAT, logits.shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)],
            initializer=inits,
        )
        model = helper.make_model(
            graph, producer_name="cubevec-conformance",
            opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)],
        )
        flat_x, flat_l = x.reshape(-1, h), logits.reshape(-1, e)
        ref = moe_reference(flat_x, flat_l, fc1, fc2, fc3, k, normalize, act).reshape(x.shape)
        if gated:
            y = ref  # onnxruntime's CPU kernel has no fc3
        else:
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            y = session.run(None, {"x": x, "logits": logits})[0]
            assert np.abs(y - ref).max() <= 1e-5, f"{name}: onnxruntime and numpy disagree"
        case = dest / name
        (case / "test_data_set_0").mkdir(parents=True)
        (case / "model.onnx").write_bytes(model.SerializeToString())
        for j, (arr, nm) in enumerate([(x, "x"), (logits, "logits")]):
            (case / "test_data_set_0" / f"input_{j}.pb").write_bytes(
                numpy_helper.from_array(arr, nm).SerializeToString()
            )
        (case / "test_data_set_0" / "output_0.pb").write_bytes(
            numpy_helper.from_array(y, "y").SerializeToString()
        )
        names.append(name)
    return names


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    dest = repo / "tests" / "fixtures" / "onnx-node"
    check_versions()
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        generate_all(Path(tmp))
        node_dir = Path(tmp) / "node"
        cases = sorted(os.listdir(node_dir))
        models = {c: onnx.load(str(node_dir / c / "model.onnx")) for c in cases}

        selected: dict[str, str] = {}
        out_of_scope: dict[str, str] = {}
        for case in cases:
            op, reason = classify(case, models[case])
            if op is None:
                continue
            (out_of_scope if reason else selected)[case] = reason or op
        for case in cases:
            if "_expanded" not in case:
                continue
            twin = case.split("_expanded")[0]
            op = selected.get(twin) or (
                models[twin].graph.node[0].op_type if twin in out_of_scope else None
            )
            if op not in EXPANDED_OPS:
                continue
            model = models[case]
            foreign = sorted(
                {n.op_type for n in model.graph.node if n.op_type not in OPS or n.domain not in ("", "ai.onnx")}
            )
            bad = sorted(t for t in elem_types(model) if t not in SUPPORTED_ELEM_TYPES)
            if twin in out_of_scope:
                out_of_scope[case] = out_of_scope[twin]
            elif foreign:
                out_of_scope[case] = "expanded body uses " + ", ".join(foreign)
            elif bad:
                out_of_scope[case] = "element type " + ", ".join(bad) + " has no graph-IR equivalent"
            else:
                selected[case] = op

        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for case in sorted(selected):
            shutil.copytree(node_dir / case, dest / case)
        with open(dest / "out_of_scope.tsv", "w", encoding="utf-8") as f:
            f.write("# case\treason (written by scripts/gen_onnx_conformance.py)\n")
            for case in sorted(out_of_scope):
                f.write(f"{case}\t{out_of_scope[case]}\n")
        moe = write_moe_cases(dest)
        print(f"{len(selected)} cases copied, {len(moe)} MoE cases written, {len(out_of_scope)} out of scope")


if __name__ == "__main__":
    main()
