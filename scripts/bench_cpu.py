"""Forward-pass time of cubevec's CPU back end against ONNX Runtime, on the same ONNX files.

Run through ``scripts/bench-cpu`` (which makes the pinned environment and builds cubevec in
release mode). Models, in a scratch directory:

* the tiny MoE block exports committed under ``tests/fixtures/models``;
* a Mixtral MoE block at realistic width (hidden 1024, 16 experts, top-2, intermediate 1024,
  256 tokens), exported from transformers the way the fixtures are;
* a plain 1024x1024x1024 f32 MatMul (activation times a weight initializer).

Both engines get the same thread count and the same input; each time is the median of
``--iters`` runs after warm-up runs, measuring only the forward pass (cubevec compiles once).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "models"
sys.path.insert(0, str(REPO / "scripts"))


def matmul_model(out: Path, size: int) -> tuple[Path, str, np.ndarray]:
    """``y = x @ w`` with ``w`` an initializer: the plain GEMM case."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((size, size)).astype(np.float32) / np.sqrt(size)
    x = rng.standard_normal((size, size)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    path = out / f"matmul-{size}.onnx"
    onnx.save(model, path)
    return path, "x", x


def realistic_moe_block(out: Path) -> tuple[Path, str, np.ndarray]:
    """A Mixtral sparse MoE block at hidden 1024 with 16 experts (top-2), exported by torch."""
    import torch
    from make_moe_fixtures import MoeBlockOnly, export_dynamo, fill_weights, save_onnx
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(
        vocab_size=32,
        hidden_size=1024,
        intermediate_size=1024,
        num_hidden_layers=1,
        num_attention_heads=8,
        num_key_value_heads=8,
        num_local_experts=16,
        num_experts_per_tok=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = MixtralForCausalLM(config).eval()
    fill_weights(model, seed=11)
    model.set_experts_implementation("batched_mm")
    block = MoeBlockOnly(model.model.layers[0].mlp).eval()
    rng = np.random.default_rng(5)
    trace = torch.from_numpy(rng.standard_normal((1, 8, 1024)).astype(np.float32))
    dims = {0: torch.export.Dim("batch", min=1, max=8), 1: torch.export.Dim("seq", min=2, max=4096)}
    proto = export_dynamo(block, (trace,), "hidden_states", "output", 20, dims)
    path = out / "mixtral-moe-block-h1024-e16.onnx"
    save_onnx(proto, path)
    x = rng.standard_normal((1, 256, 1024)).astype(np.float32)
    return path, "hidden_states", x


def ort_median_ms(path: Path, name: str, x: np.ndarray, threads: int, warmup: int, iters: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {name: x}
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def cubevec_median_ms(binary: Path, path: Path, name: str, x: np.ndarray, threads: int,
                      warmup: int, iters: int, scratch: Path) -> float:
    inp = scratch / f"{path.stem}.{name}.npy"
    np.save(inp, x)
    result = subprocess.run(
        [str(binary), str(path), "--input", f"{name}={inp}", "--threads", str(threads),
         "--warmup", str(warmup), "--iters", str(iters)],
        check=True, capture_output=True, text=True,
    )
    report = json.loads(result.stdout)
    return float(report["median_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cubevec", type=Path, required=True, help="the bench_cpu example binary")
    parser.add_argument("--scratch", type=Path, required=True, help="directory for generated models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)

    cases = []
    for stem in ["mixtral", "qwen2-moe", "qwen3-moe", "deepseek-v3"]:
        path = FIXTURES / f"{stem}-moe-block-opset20.onnx"
        x = np.load(FIXTURES / f"{stem}-moe-block-opset20.input.npy")
        cases.append((f"tiny {stem} MoE block", path, "hidden_states", x))
    cases.append(("MoE block h1024 e16 top-2 x256", *realistic_moe_block(args.scratch)))
    cases.append(("MatMul 1024^3 f32", *matmul_model(args.scratch, 1024)))

    print(f"threads: {args.threads}; median of {args.iters} runs after {args.warmup} warm-up runs")
    print(f"{'model':<34} {'onnxruntime ms':>15} {'cubevec ms':>11} {'speed vs ORT':>13}")
    for label, path, name, x in cases:
        ort_ms = ort_median_ms(path, name, x, args.threads, args.warmup, args.iters)
        try:
            ours = cubevec_median_ms(args.cubevec, path, name, x, args.threads, args.warmup,
                                     args.iters, args.scratch)
        except subprocess.CalledProcessError as err:
            print(f"{label:<34} {ort_ms:>15.3f} {'failed':>11}  ({err.stderr.strip().splitlines()[-1]})")
            continue
        print(f"{label:<34} {ort_ms:>15.3f} {ours:>11.3f} {ort_ms / ours:>12.2f}x")


if __name__ == "__main__":
    main()
