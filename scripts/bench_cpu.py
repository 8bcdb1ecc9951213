"""Forward-pass time of cubevec's CPU back end against ONNX Runtime, on the same ONNX files.

Run through ``scripts/bench-cpu`` (which makes the pinned environment and builds cubevec in
release mode). Models:

* the tiny MoE exports committed under ``tests/fixtures/models`` (``*-opset2*.onnx``: whole
  models and MoE blocks alone), on their committed inputs;
* a Mixtral MoE block at realistic width (hidden 1024, 16 experts, top-2, intermediate 1024,
  256 tokens), exported from transformers the way the fixtures are, into the scratch directory;
* a plain 1024x1024x1024 f32 MatMul (activation times a weight initializer).

Both engines get the same thread count and the same input; each time is the median of
``--iters`` runs after warm-up runs, measuring only the forward pass (cubevec compiles once:
optimise, partition for the 910B2 schedule, JIT). cubevec's first output is checked against
ONNX Runtime's (largest difference relative to the largest magnitude). A model cubevec cannot
compile is skipped with the reason.

Under the MatMul the bound of its JIT code is printed: its FLOPs at the machine's f32 FMA
throughput with 128-bit vectors (the widest the pinned cranelift emits), measured on the same
thread count, and the ratio to ONNX Runtime that bound allows (ONNX Runtime uses the widest
vectors the CPU has).
"""

from __future__ import annotations

import argparse
import json
import os
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


def matmul_model(out: Path, size: int) -> tuple[Path, dict[str, np.ndarray]]:
    """``y = x @ w`` with ``w`` an initializer: the plain GEMM case."""
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    x = rng.standard_normal((size, size)).astype(np.float32)
    path = out / f"matmul-{size}.onnx"
    if not path.exists():
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
            "matmul",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
            [numpy_helper.from_array(w, "w")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
        onnx.save(model, path)
    return path, {"x": x}


def realistic_moe_block(out: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A Mixtral sparse MoE block at hidden 1024 with 16 experts (top-2), exported by torch
    (about 200 MB of inline weights; exported once and kept in the scratch directory)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 256, 1024)).astype(np.float32)
    path = out / "mixtral-moe-block-h1024-e16.onnx"
    if path.exists():
        return path, {"hidden_states": x}
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
    trace = torch.from_numpy(np.random.default_rng(6).standard_normal((1, 8, 1024)).astype(np.float32))
    dims = {0: torch.export.Dim("batch", min=1, max=8), 1: torch.export.Dim("seq", min=2, max=4096)}
    proto = export_dynamo(block, (trace,), "hidden_states", "output", 20, dims)
    partial = path.with_suffix(".partial")
    save_onnx(proto, partial)
    partial.rename(path)
    return path, {"hidden_states": x}


def fixture_inputs(path: Path) -> dict[str, np.ndarray]:
    """The committed inputs of a fixture model: ``<stem>.<input name>.npy``, or
    ``<stem>.input.npy`` for a one-input model."""
    model = onnx.load(str(path), load_external_data=False)
    names = [i.name for i in model.graph.input]
    feeds = {}
    for name in names:
        file = path.with_name(f"{path.stem}.{name}.npy")
        if not file.exists() and len(names) == 1:
            file = path.with_name(f"{path.stem}.input.npy")
        feeds[name] = np.load(file)
    return feeds


def ort_run(path: Path, feeds: dict[str, np.ndarray], threads: int, warmup: int,
            iters: int) -> tuple[float, np.ndarray]:
    """Median milliseconds of ``session.run`` and the first output."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        out = session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), out[0]


def cubevec_run(binary: Path, path: Path, feeds: dict[str, np.ndarray], threads: int,
                warmup: int, iters: int, scratch: Path) -> tuple[dict, np.ndarray]:
    """The bench example's JSON report and its first output."""
    args = [str(binary), str(path)]
    for name, x in feeds.items():
        file = scratch / f"{path.stem}.{name}.npy"
        np.save(file, x)
        args += ["--input", f"{name}={file}"]
    out = scratch / f"{path.stem}.cubevec-output.npy"
    args += ["--output", str(out), "--threads", str(threads), "--warmup", str(warmup),
             "--iters", str(iters)]
    # No backtrace: a model that does not plan is reported by its error line.
    env = dict(os.environ, RUST_BACKTRACE="0")
    result = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return json.loads(result.stdout), np.load(out)


def print_fma_bound(binary: Path, threads: int, flops: float, ort_ms: float, ours_ms: float) -> None:
    """The time ``flops`` take at the 128-bit FMA peak on ``threads`` threads, and what it allows."""
    result = subprocess.run([str(binary), "--fma-peak", "--threads", str(threads)], check=True,
                            capture_output=True, text=True)
    peak = json.loads(result.stdout)["fma128_gflops"]
    if not peak:
        print("  (no FMA on this CPU: no 128-bit bound measured)")
        return
    bound_ms = flops / (peak * 1e9) * 1e3
    print(f"  bound: {peak:.1f} GFLOP/s 128-bit FMA peak on {threads} threads = {bound_ms:.3f} ms,"
          f" at most {ort_ms / bound_ms:.2f}x ORT (ORT ran at {flops / ort_ms / 1e6:.0f} GFLOP/s,"
          f" cubevec at {flops / ours_ms / 1e6:.0f}: {bound_ms / ours_ms:.0%} of the peak)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cubevec", type=Path, required=True, help="the bench_cpu example binary")
    parser.add_argument("--scratch", type=Path, required=True, help="directory for generated models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--only", default="", help="run only the models whose label contains this")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)

    cases = []
    for path in sorted(FIXTURES.glob("*-opset2*.onnx")):
        cases.append((f"tiny {path.stem}", lambda p=path: (p, fixture_inputs(p))))
    cases.append(("MoE block h1024 e16 top-2 x256", lambda: realistic_moe_block(args.scratch)))
    cases.append(("MatMul 1024^3 f32", lambda: matmul_model(args.scratch, 1024)))
    flops = {"MatMul 1024^3 f32": 2.0 * 1024**3}
    cases = [c for c in cases if args.only in c[0]]

    print(f"threads: {args.threads}; median of {args.iters} runs after {args.warmup} warm-up runs")
    print(f"{'model':<40} {'ORT ms':>9} {'cubevec ms':>11} {'vs ORT':>7} {'max rel diff':>13}"
          f" {'launches':>8} {'compile ms':>10}")
    for label, make in cases:
        path, feeds = make()
        ort_ms, want = ort_run(path, feeds, args.threads, args.warmup, args.iters)
        try:
            report, got = cubevec_run(args.cubevec, path, feeds, args.threads, args.warmup,
                                      args.iters, args.scratch)
        except subprocess.CalledProcessError as err:
            lines = [line.strip() for line in err.stderr.splitlines() if line.strip()]
            reason = next((line for line in lines if line.startswith("Error:")),
                          lines[-1] if lines else f"exit code {err.returncode}")
            print(f"{label:<40} {ort_ms:>9.3f} {'skipped':>11}  {reason}")
            continue
        ours = float(report["median_ms"])
        scale = max(float(np.abs(want).max()), 1e-30)
        diff = float(np.abs(got.astype(np.float64) - want).max()) / scale if got.shape == want.shape \
            else float("nan")
        print(f"{label:<40} {ort_ms:>9.3f} {ours:>11.3f} {ort_ms / ours:>6.2f}x {diff:>13.2e}"
              f" {report['launches']:>8} {report['compile_ms']:>10.0f}")
        if label in flops:
            print_fma_bound(args.cubevec, args.threads, flops[label], ort_ms, ours)


if __name__ == "__main__":
    main()
