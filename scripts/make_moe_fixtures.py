#!/usr/bin/env python3
"""Build the tiny Mixture-of-Experts model fixtures under tests/fixtures/models.

Every fixture is a random-weight model with a fixed seed, small enough to commit, and comes with
reference outputs computed by PyTorch in float32:

* Hugging Face checkpoints (``config.json`` + ``model.safetensors``) written by ``save_pretrained``
  for Mixtral, Qwen2-MoE, Qwen3-MoE and DeepSeek-V3, plus a DeepSeek-V3 FP8 checkpoint
  (E4M3 weights with 128x128 ``weight_scale_inv`` blocks), a three-shard copy of Qwen3-MoE and a
  bfloat16 copy of Mixtral. Each directory holds ``input_ids.npy`` (int64) and ``logits.npy``
  (float32).
* ONNX exports of the four base models (``torch.onnx.export(dynamo=True)`` with the
  ``batched_mm`` experts implementation) at opsets 20 and 23, each with its own
  ``<name>-opset<N>.input_ids.npy`` / ``<name>-opset<N>.logits.npy``; onnxruntime is run on every
  export and must reproduce the torch logits.
* Each base model's MoE block exported alone, and Mixtral exported through transformers'
  ``OnnxConfig(ort_fusions="cuda")`` path, which fuses the experts into ``com.microsoft.MoE``
  (plus a copy rewritten into the interleaved-SwiGLU form that ONNX Runtime runs on CPU).

Environment (exact pins in scripts/requirements-fixtures.txt)::

    python3 -m venv .venv-fixtures
    .venv-fixtures/bin/pip install -r scripts/requirements-fixtures.txt
    .venv-fixtures/bin/python scripts/make_moe_fixtures.py

The output is deterministic: running the script twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Single-threaded kernels make the float32 reference outputs reproducible run to run.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    DeepseekV3Config,
    MixtralConfig,
    PreTrainedConfig,
    PreTrainedModel,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)
from transformers.utils import logging as hf_logging  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")
logging.getLogger("torch.onnx").setLevel(logging.ERROR)
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "models"
VOCAB = 256
OPSETS = (20, 23)
# Byte strings that must never appear in a committed ONNX file (absolute paths of the machine
# that ran the export, source locations from stack traces).
FORBIDDEN_MARKERS = tuple(f"/{root}/".encode() for root in ("tmp", "work", "root", "home", "usr")) + (
    b"site-packages",
    b".py:",
)
FP8_BLOCK = 128
FP8_MAX = 448.0


@dataclass(frozen=True)
class Spec:
    """A tiny model fixture: its directory name, configuration and random seed."""

    name: str
    make_config: Callable[[], PreTrainedConfig]
    seed: int
    family: str  # "softmax" (Mixtral/Qwen routers) or "deepseek" (sigmoid + groups)


def mixtral_config() -> MixtralConfig:
    """Mixtral: 8 experts top-2, always renormalised softmax router, GQA 4/2."""
    return MixtralConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        num_local_experts=8,
        num_experts_per_tok=2,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )


def qwen2_moe_config() -> Qwen2MoeConfig:
    """Qwen2-MoE: gated shared expert, unnormalised top-k weights, q/k/v bias, one dense layer."""
    # Layer 1 is a dense MLP (mlp_only_layers); layers 0 and 2 are sparse.
    return Qwen2MoeConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=96,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=False,
        decoder_sparse_step=1,
        mlp_only_layers=[1],
        qkv_bias=True,
        use_sliding_window=False,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )


def qwen3_moe_config() -> Qwen3MoeConfig:
    """Qwen3-MoE: per-head q/k RMSNorm, explicit head_dim, renormalised top-k weights."""
    # head_dim 32 differs from hidden_size / num_attention_heads = 16.
    return Qwen3MoeConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=128,
        moe_intermediate_size=32,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        attention_bias=False,
        use_sliding_window=False,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )


def deepseek_v3_config(
    hidden_size: int = 64,
    intermediate_size: int = 128,
    moe_intermediate_size: int = 32,
    num_hidden_layers: int = 3,
    q_lora_rank: int = 32,
    kv_lora_rank: int = 16,
) -> DeepseekV3Config:
    # Layer 0 is dense (first_k_dense_replace 1); 8 routed experts in 4 groups, 2 groups kept.
    return DeepseekV3Config(
        vocab_size=VOCAB,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        moe_intermediate_size=moe_intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_shared_experts=1,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
        first_k_dense_replace=1,
        q_lora_rank=q_lora_rank,
        kv_lora_rank=kv_lora_rank,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        max_position_embeddings=128,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 32,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
        rope_interleave=True,
        rms_norm_eps=1e-6,
        num_nextn_predict_layers=0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
    )


def deepseek_v3_fp8_config() -> DeepseekV3Config:
    """DeepSeek-V3 sized so that 128x128 FP8 scale blocks have partial edges."""
    # hidden 160 and dense intermediate 288 are not multiples of 128, so every projection has a
    # partial last 128x128 scale block in at least one dimension.
    return deepseek_v3_config(
        hidden_size=160,
        intermediate_size=288,
        moe_intermediate_size=96,
        num_hidden_layers=2,
        q_lora_rank=64,
        kv_lora_rank=32,
    )


BASE_SPECS = (
    Spec("mixtral", mixtral_config, 1001, "softmax"),
    Spec("qwen2-moe", qwen2_moe_config, 1002, "softmax"),
    Spec("qwen3-moe", qwen3_moe_config, 1003, "softmax"),
    Spec("deepseek-v3", deepseek_v3_config, 1004, "deepseek"),
)
FP8_SPEC = Spec("deepseek-v3-fp8", deepseek_v3_fp8_config, 1005, "deepseek")


# ---------------------------------------------------------------------------------------------
# Model construction and reference outputs
# ---------------------------------------------------------------------------------------------


def fill_weights(model: PreTrainedModel, seed: int) -> None:
    """Overwrite every parameter (and the DeepSeek score-correction bias) from a seeded numpy RNG.

    Linear-like weights are N(0, 1/fan_in) with fan_in the last dimension, so activations stay O(1)
    and router scores are well separated; norms are 1 + N(0, 0.1^2), biases N(0, 0.1^2),
    embeddings N(0, 1). Router weights get a 3x larger scale for clear top-k margins.
    """
    rng = np.random.default_rng(seed)
    tensors = dict(model.named_parameters())
    for name, buf in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            tensors[name] = buf
    with torch.no_grad():
        for name in sorted(tensors):
            tensor = tensors[name]
            shape = tuple(tensor.shape)
            if name.endswith("e_score_correction_bias"):
                values = 0.05 * rng.standard_normal(shape)
            elif "norm" in name.split(".")[-2] or name.split(".")[-2].endswith("layernorm"):
                values = 1.0 + 0.1 * rng.standard_normal(shape)
            elif name.endswith(".bias"):
                values = 0.1 * rng.standard_normal(shape)
            elif "embed_tokens" in name:
                values = rng.standard_normal(shape)
            else:
                scale = 1.0 / math.sqrt(shape[-1])
                if name.endswith("mlp.gate.weight"):
                    scale *= 3.0
                values = scale * rng.standard_normal(shape)
            tensor.copy_(torch.from_numpy(values.astype(np.float32)))


def build_model(spec: Spec) -> PreTrainedModel:
    """A float32 model with eager attention and seeded weights."""
    config = spec.make_config()
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    fill_weights(model, spec.seed)
    return model


def make_input_ids(seed: int, batch: int, seq: int) -> np.ndarray:
    """Seeded int64 token ids in ``[0, VOCAB)``."""
    rng = np.random.default_rng(seed + 7)
    return rng.integers(0, VOCAB, size=(batch, seq), dtype=np.int64)


def torch_logits(model: PreTrainedModel, input_ids: np.ndarray) -> np.ndarray:
    """Float32 logits of a full forward pass without a KV cache."""
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(input_ids), use_cache=False)
    return out.logits.to(torch.float32).numpy()


def routing_margin(model: PreTrainedModel, input_ids: np.ndarray, family: str) -> float:
    """Smallest gap, over tokens and MoE layers, between the last chosen and the first rejected
    router score (and, for DeepSeek, group score). A large gap means expert selection is robust to
    float rounding in another implementation."""
    captured: list[tuple[torch.nn.Module, torch.Tensor]] = []
    hooks = []
    for name, module in model.named_modules():
        if name.endswith("mlp.gate") and type(module).__name__.endswith("Router"):
            hooks.append(
                module.register_forward_hook(lambda mod, _inp, out: captured.append((mod, out[0].detach())))
            )
    torch_logits(model, input_ids)
    for hook in hooks:
        hook.remove()
    margin = math.inf
    for module, logits in captured:
        logits = logits.to(torch.float64)
        k = module.top_k
        if family == "softmax":
            scores = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True).values
            margin = min(margin, float((scores[:, k - 1] - scores[:, k]).min()))
            continue
        scores = torch.sigmoid(logits) + module.e_score_correction_bias.to(torch.float64)
        groups = scores.view(scores.shape[0], module.num_group, -1)
        group_scores = groups.topk(2, dim=-1).values.sum(-1)
        ordered = group_scores.sort(dim=-1, descending=True).values
        margin = min(margin, float((ordered[:, module.topk_group - 1] - ordered[:, module.topk_group]).min()))
        keep = torch.zeros_like(group_scores).scatter_(1, group_scores.topk(module.topk_group, dim=-1).indices, 1.0)
        masked = groups.masked_fill(keep.unsqueeze(-1) == 0, -math.inf).reshape(scores.shape[0], -1)
        ordered = masked.sort(dim=-1, descending=True).values
        margin = min(margin, float((ordered[:, k - 1] - ordered[:, k]).min()))
    return margin


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write a C-contiguous ``.npy`` file (no pickled objects)."""
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def write_json(path: Path, value: dict) -> None:
    """Write JSON the way ``save_pretrained`` does (indent 2, sorted keys, final newline)."""
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def save_hf(model: PreTrainedModel, out_dir: Path, **kwargs) -> None:
    """``save_pretrained`` into a fresh directory."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, **kwargs)


# ---------------------------------------------------------------------------------------------
# FP8 (DeepSeek-V3 style 128x128 block scales)
# ---------------------------------------------------------------------------------------------


def is_fp8_quantized(name: str, shape: tuple[int, ...]) -> bool:
    """DeepSeek-V3 quantises every linear projection; embeddings, lm_head, norms and the router
    stay high precision."""
    return len(shape) == 2 and (name.endswith("_proj.weight") or name.endswith("_proj_with_mqa.weight"))


def quantize_fp8_blocks(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E4M3 codes and float32 ``weight_scale_inv`` of shape [ceil(N/128), ceil(K/128)].

    Edge blocks cover only the rows/columns that exist (the last block of a dimension that is not
    a multiple of 128 is smaller)."""
    rows, cols = weight.shape
    row_blocks, col_blocks = -(-rows // FP8_BLOCK), -(-cols // FP8_BLOCK)
    scale_inv = np.zeros((row_blocks, col_blocks), dtype=np.float32)
    codes = np.zeros(weight.shape, dtype=ml_dtypes.float8_e4m3fn)
    for bi in range(row_blocks):
        for bj in range(col_blocks):
            rs = slice(bi * FP8_BLOCK, min((bi + 1) * FP8_BLOCK, rows))
            cs = slice(bj * FP8_BLOCK, min((bj + 1) * FP8_BLOCK, cols))
            block = weight[rs, cs]
            amax = float(np.abs(block).max())
            scale = np.float32(amax / FP8_MAX) if amax > 0 else np.float32(1.0)
            scale_inv[bi, bj] = scale
            codes[rs, cs] = np.clip(block / scale, -FP8_MAX, FP8_MAX).astype(ml_dtypes.float8_e4m3fn)
    return codes, scale_inv


def dequantize_fp8_blocks(codes: np.ndarray, scale_inv: np.ndarray) -> np.ndarray:
    """``w[i, j] = fp8[i, j] * scale_inv[i // 128, j // 128]`` with true (partial) edge blocks."""
    expanded = np.repeat(np.repeat(scale_inv, FP8_BLOCK, axis=0), FP8_BLOCK, axis=1)
    rows, cols = codes.shape
    return codes.astype(np.float32) * expanded[:rows, :cols]


def make_fp8_fixture(out_root: Path, report: dict) -> None:
    """``deepseek-v3-fp8``: E4M3 projections with float32 128x128 ``weight_scale_inv``, BF16 rest."""
    spec = FP8_SPEC
    model = build_model(spec)
    out_dir = out_root / spec.name
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = Path(tmp) / "fp32"
        model.save_pretrained(base_dir)
        base = load_file(str(base_dir / "model.safetensors"))
        config = json.loads((base_dir / "config.json").read_text())

        quantized: dict[str, torch.Tensor] = {}
        dequantized: dict[str, torch.Tensor] = {}
        for name in sorted(base):
            weight = base[name].to(torch.float32).numpy()
            if is_fp8_quantized(name, weight.shape):
                codes, scale_inv = quantize_fp8_blocks(weight)
                quantized[name] = torch.from_numpy(codes.view(np.uint8)).view(torch.float8_e4m3fn)
                quantized[name.removesuffix("weight") + "weight_scale_inv"] = torch.from_numpy(scale_inv)
                dequantized[name] = torch.from_numpy(dequantize_fp8_blocks(codes, scale_inv))
            elif name.endswith("e_score_correction_bias"):
                quantized[name] = torch.from_numpy(weight)
                dequantized[name] = torch.from_numpy(weight)
            else:
                as_bf16 = torch.from_numpy(weight).to(torch.bfloat16)
                quantized[name] = as_bf16
                dequantized[name] = as_bf16.to(torch.float32)

        # Reference: the exact dequantised weights in a float32 model, run by torch.
        ref_dir = Path(tmp) / "dequantized"
        ref_dir.mkdir()
        save_file(dequantized, str(ref_dir / "model.safetensors"), metadata={"format": "pt"})
        write_json(ref_dir / "config.json", config)
        ref_model = AutoModelForCausalLM.from_pretrained(ref_dir, attn_implementation="eager", dtype=torch.float32)
        ref_model.eval()

        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        save_file(quantized, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        config["dtype"] = "bfloat16"
        config["quantization_config"] = {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": [FP8_BLOCK, FP8_BLOCK],
        }
        write_json(out_dir / "config.json", config)

    input_ids = make_input_ids(spec.seed, 2, 7)
    logits = torch_logits(ref_model, input_ids)
    save_npy(out_dir / "input_ids.npy", input_ids)
    save_npy(out_dir / "logits.npy", logits)
    fp32_logits = torch_logits(model, input_ids)
    report[spec.name] = {
        "fp8_vs_fp32_max_abs_diff": float(np.abs(logits - fp32_logits).max()),
        "max_abs_logit": float(np.abs(logits).max()),
        "routing_margin": routing_margin(ref_model, input_ids, spec.family),
        "quantized_tensors": sum(1 for n in quantized if n.endswith("weight_scale_inv")),
    }


# ---------------------------------------------------------------------------------------------
# ONNX export
# ---------------------------------------------------------------------------------------------


class LogitsOnly(torch.nn.Module):
    """``input_ids -> logits`` without a KV cache, the graph every ONNX fixture exports.

    Position ids are expanded to the batch explicitly so that the rotary cos/sin tensors carry the
    batch dimension: opset 23 ``RotaryEmbedding`` requires them to match the input's batch."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        batch, seq = input_ids.shape
        position_ids = torch.arange(seq, dtype=torch.int64).unsqueeze(0).expand(batch, seq)
        return self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits


def strip_onnx(model: onnx.ModelProto) -> None:
    """Remove doc strings, metadata and stack traces (which carry machine paths) everywhere."""

    def strip_graph(graph: onnx.GraphProto) -> None:
        graph.doc_string = ""
        del graph.metadata_props[:]
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            value.doc_string = ""
            del value.metadata_props[:]
        for init in graph.initializer:
            init.doc_string = ""
            del init.metadata_props[:]
        for node in graph.node:
            strip_node(node)

    def strip_node(node: onnx.NodeProto) -> None:
        node.doc_string = ""
        del node.metadata_props[:]
        for attr in node.attribute:
            attr.doc_string = ""
            if attr.HasField("g"):
                strip_graph(attr.g)
            for sub in attr.graphs:
                strip_graph(sub)

    model.doc_string = ""
    del model.metadata_props[:]
    strip_graph(model.graph)
    for function in model.functions:
        function.doc_string = ""
        del function.metadata_props[:]
        for node in function.node:
            strip_node(node)


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    strip_onnx(model)
    data = model.SerializeToString(deterministic=True)
    for marker in FORBIDDEN_MARKERS:
        if marker in data:
            raise RuntimeError(f"{path.name}: serialized model still contains {marker!r}")
    path.write_bytes(data)


def ort_run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a model file on ONNX Runtime's CPU provider, single-threaded."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def export_dynamo(module: torch.nn.Module, args: tuple, input_name: str, output_name: str, opset: int,
                  dynamic_dims: dict[int, torch.export.Dim]) -> onnx.ModelProto:
    """``torch.onnx.export(dynamo=True)`` of a one-input, one-output module, weights inline."""
    program = torch.onnx.export(
        module,
        args,
        dynamo=True,
        opset_version=opset,
        external_data=False,
        input_names=[input_name],
        output_names=[output_name],
        dynamic_shapes={input_name: dynamic_dims},
        optimize=True,
        verbose=False,
        report=False,
    )
    return program.model_proto


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Node count per op type (prefixed with the domain outside the default one)."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def export_model_onnx(spec: Spec, model: PreTrainedModel, out_root: Path, report: dict) -> None:
    """Whole model at opsets 20 and 23, with SDPA attention (exported as the ``Attention`` op at
    opset 23) and ``batched_mm`` experts (the only experts implementation that exports)."""
    model.set_experts_implementation("batched_mm")
    model.set_attn_implementation("sdpa")
    wrapper = LogitsOnly(model).eval()
    trace_ids = torch.from_numpy(make_input_ids(spec.seed + 100, 2, 7))
    # The fixture input has another batch and length than the trace, exercising the dynamic dims.
    input_ids = make_input_ids(spec.seed + 200, 3, 5)
    reference = torch_logits(model, input_ids)
    dims = {0: torch.export.Dim("batch", min=1, max=8), 1: torch.export.Dim("seq", min=2, max=64)}
    for opset in OPSETS:
        stem = f"{spec.name}-opset{opset}"
        proto = export_dynamo(wrapper, (trace_ids,), "input_ids", "logits", opset, dims)
        path = out_root / f"{stem}.onnx"
        save_onnx(proto, path)
        (got,) = ort_run(path, {"input_ids": input_ids})
        diff = float(np.abs(got - reference).max())
        save_npy(out_root / f"{stem}.input_ids.npy", input_ids)
        save_npy(out_root / f"{stem}.logits.npy", reference)
        report[stem] = {
            "ort_vs_torch_max_abs_diff": diff,
            "nodes": len(proto.graph.node),
            "ops": op_histogram(proto),
        }
        print(f"  {stem}: {len(proto.graph.node)} nodes, ORT vs torch max |diff| {diff:.3g}")
        if diff > 1e-4:
            raise RuntimeError(f"{stem}: onnxruntime differs from torch by {diff}")
    model.set_experts_implementation("eager")
    model.set_attn_implementation("eager")


class MoeBlockOnly(torch.nn.Module):
    """One sparse MoE block, ``hidden_states [B, S, H] -> [B, S, H]``."""

    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = self.block(hidden_states)
        return out[0] if isinstance(out, tuple) else out


def export_moe_block(spec: Spec, model: PreTrainedModel, layer: int, out_root: Path, report: dict) -> None:
    """One MoE block at opset 20 with dynamic batch and sequence, checked on ONNX Runtime."""
    model.set_experts_implementation("batched_mm")
    block = MoeBlockOnly(model.model.layers[layer].mlp).eval()
    hidden = model.config.hidden_size
    rng = np.random.default_rng(spec.seed + 300)
    trace = torch.from_numpy(rng.standard_normal((2, 7, hidden)).astype(np.float32))
    x = rng.standard_normal((3, 5, hidden)).astype(np.float32)
    with torch.no_grad():
        y = block(torch.from_numpy(x)).numpy()
    stem = f"{spec.name}-moe-block-opset20"
    dims = {0: torch.export.Dim("batch", min=1, max=8), 1: torch.export.Dim("seq", min=2, max=64)}
    proto = export_dynamo(block, (trace,), "hidden_states", "output", 20, dims)
    path = out_root / f"{stem}.onnx"
    save_onnx(proto, path)
    (got,) = ort_run(path, {"hidden_states": x})
    diff = float(np.abs(got - y).max())
    save_npy(out_root / f"{stem}.input.npy", x)
    save_npy(out_root / f"{stem}.output.npy", y)
    report[stem] = {"layer": layer, "ort_vs_torch_max_abs_diff": diff, "nodes": len(proto.graph.node),
                    "ops": op_histogram(proto)}
    print(f"  {stem}: {len(proto.graph.node)} nodes, ORT vs torch max |diff| {diff:.3g}")
    model.set_experts_implementation("eager")
    if diff > 1e-4:
        raise RuntimeError(f"{stem}: onnxruntime differs from torch by {diff}")


def interleave_swiglu_experts(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every ``com.microsoft.MoE`` with separate fc1 (gate) / fc3 (up) weights into the
    form ONNX Runtime's CPU kernel implements: one fc1 ``[E, 2I, H]`` with gate and up rows
    interleaved, ``activation_type="swiglu"``, ``swiglu_fusion=1``, alpha 1 and beta 0, which
    computes ``silu(gate) * up`` exactly like the unfused experts."""
    from onnx import helper, numpy_helper

    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    initializers = {init.name: init for init in rewritten.graph.initializer}
    replaced: set[str] = set()
    moe_nodes = [n for n in rewritten.graph.node if n.domain == "com.microsoft" and n.op_type == "MoE"]
    for index, node in enumerate(moe_nodes):
        gate = numpy_helper.to_array(initializers[node.input[2]])
        up = numpy_helper.to_array(initializers[node.input[6]])
        experts, inter, hidden = gate.shape
        fused = np.stack([gate, up], axis=2).reshape(experts, 2 * inter, hidden)
        fused_name = f"moe_{index}_fc1_swiglu_interleaved"
        rewritten.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(fused), fused_name))
        replaced.update((node.input[2], node.input[6]))
        node.input[2] = fused_name
        del node.input[6]
        while node.input and node.input[-1] == "":
            del node.input[-1]
        kept = [a for a in node.attribute if a.name != "activation_type"]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.extend([
            helper.make_attribute("activation_type", "swiglu"),
            helper.make_attribute("swiglu_fusion", 1),
            helper.make_attribute("activation_alpha", 1.0),
            helper.make_attribute("activation_beta", 0.0),
        ])
    used = {name for node in rewritten.graph.node for name in node.input}
    survivors = [init for init in rewritten.graph.initializer if init.name not in replaced or init.name in used]
    del rewritten.graph.initializer[:]
    rewritten.graph.initializer.extend(survivors)
    return rewritten


def export_ort_fused(spec: Spec, model: PreTrainedModel, out_root: Path, report: dict) -> None:
    """Mixtral through transformers' exporter with ONNX Runtime CUDA fusions (com.microsoft.MoE,
    MultiHeadAttention, RotaryEmbedding, SkipSimplifiedLayerNormalization), plus the same graph
    with its MoE nodes rewritten into the interleaved-SwiGLU form that ORT's CPU kernel runs."""
    import onnx_ir
    from transformers.exporters import OnnxConfig, OnnxExporter

    trace_ids = torch.from_numpy(make_input_ids(spec.seed + 100, 2, 7))
    exported = OnnxExporter().export(
        model, {"input_ids": trace_ids}, config=OnnxConfig(dynamic=True, ort_fusions="cuda")
    )
    proto = onnx_ir.serde.serialize_model(exported.program)
    stem = f"{spec.name}-ort-fused"
    path = out_root / f"{stem}.onnx"
    save_onnx(proto, path)
    input_ids = make_input_ids(spec.seed + 200, 3, 5)
    model.set_experts_implementation("eager")
    reference = torch_logits(model, input_ids)
    save_npy(out_root / f"{stem}.input_ids.npy", input_ids)
    save_npy(out_root / f"{stem}.logits.npy", reference)
    entry = {"nodes": len(proto.graph.node), "ops": op_histogram(proto)}
    try:
        ort_run(path, {"input_ids": input_ids})
        entry["ort_cpu"] = "runs"
    except Exception as error:  # ORT's CPU MoE kernel has no separate fc3 (up) input.
        entry["ort_cpu"] = str(error).splitlines()[0][:200]
    print(f"  {stem}: ORT CPU: {entry['ort_cpu']}")
    report[stem] = entry

    cpu_stem = f"{stem}-cpu"
    cpu_proto = interleave_swiglu_experts(proto)
    cpu_path = out_root / f"{cpu_stem}.onnx"
    save_onnx(cpu_proto, cpu_path)
    got = ort_run(cpu_path, {"input_ids": input_ids})[0]
    save_npy(out_root / f"{cpu_stem}.ort_logits.npy", got)
    diff = float(np.abs(got - reference).max())
    report[cpu_stem] = {"ort_vs_torch_max_abs_diff": diff, "nodes": len(cpu_proto.graph.node),
                        "ops": op_histogram(cpu_proto)}
    print(f"  {cpu_stem}: ORT CPU vs torch max |diff| {diff:.3g}")
    if diff > 1e-4:
        raise RuntimeError(f"{cpu_stem}: onnxruntime differs from torch by {diff}")


# ---------------------------------------------------------------------------------------------
# DeepSeek-V4 (hash-routed and sqrt-softplus-routed MoE, hyper-connections, compressed attention)
# ---------------------------------------------------------------------------------------------

V4_SEED = 1006
# Long enough that the heavily compressed (ratio 128) layer gets a compressed block and the
# compressed sparse (ratio 4) layer's indexer has more blocks than index_topk.
V4_SEQ = 136
V4_COMPRESS_RATIOS = [0, 0, 4, 128]
V4_HASH_LAYERS = 2
UE8M0_BIAS = 127
FP4_GROUP = 32


def deepseek_v4_config() -> PreTrainedConfig:
    """The tiny DeepSeek-V4 as a transformers config (built from the checkpoint-style dict)."""
    from transformers import DeepseekV4Config

    return DeepseekV4Config(**deepseek_v4_checkpoint_config(quantized=False))


def deepseek_v4_checkpoint_config(quantized: bool) -> dict:
    """A tiny config in the layout of the published DeepSeek-V4 ``config.json`` (legacy keys
    ``compress_ratios``, ``num_hash_layers``, ``qk_rope_head_dim``, ``rope_scaling``)."""
    config = {
        "architectures": ["DeepseekV4ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "hc_eps": 1e-06,
        "hc_mult": 4,
        "hc_sinkhorn_iters": 20,
        "head_dim": 32,
        "hidden_act": "silu",
        "hidden_size": 64,
        "index_head_dim": 16,
        "index_n_heads": 2,
        "index_topk": 4,
        "initializer_range": 0.02,
        "max_position_embeddings": 512,
        "model_type": "deepseek_v4",
        "moe_intermediate_size": 32,
        "n_routed_experts": 8,
        "n_shared_experts": 1,
        "norm_topk_prob": True,
        "num_attention_heads": 4,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 4,
        "num_hash_layers": V4_HASH_LAYERS,
        "num_key_value_heads": 1,
        "num_nextn_predict_layers": 0,
        "o_groups": 2,
        "o_lora_rank": 16,
        "q_lora_rank": 32,
        "qk_rope_head_dim": 8,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 16,
            "original_max_position_embeddings": 32,
            "type": "yarn",
        },
        "rope_theta": 10000,
        "routed_scaling_factor": 1.5,
        "scoring_func": "sqrtsoftplus",
        "sliding_window": 8,
        "swiglu_limit": 10.0,
        "tie_word_embeddings": False,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16" if quantized else "float32",
        "use_cache": True,
        "vocab_size": VOCAB,
        "compress_rope_theta": 160000,
        "compress_ratios": list(V4_COMPRESS_RATIOS),
    }
    if quantized:
        config["expert_dtype"] = "fp4"
        config["quantization_config"] = {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "scale_fmt": "ue8m0",
            "weight_block_size": [FP8_BLOCK, FP8_BLOCK],
        }
    return config


def v4_checkpoint_name(name: str) -> str:
    """Map a name written by transformers' ``save_pretrained`` to the published checkpoint's
    naming (no ``model.`` prefix, ``embed``/``head``, ``hc_head_*``, ``attn.kv_norm``)."""
    if name.startswith("model."):
        name = name[len("model."):]
    if name == "embed_tokens.weight":
        return "embed.weight"
    if name.startswith("hc_head.hc_"):
        return "hc_head_" + name[len("hc_head.hc_"):]
    parts = name.split(".")
    # layers.L.attn.norm.weight is the attention's kv norm; compressor norms keep "norm".
    if len(parts) == 5 and parts[0] == "layers" and parts[2] == "attn" and parts[3] == "norm":
        parts[3] = "kv_norm"
    return ".".join(parts)


def is_v4_fp8(name: str) -> bool:
    """Non-expert linears stored as FP8 with UE8M0 128x128 block scales in the published files."""
    parts = name.split(".")
    if parts[-1] != "weight" or ".experts." in name:
        return False
    if ".shared_experts." in name:
        return True
    return parts[-2] in ("wq_a", "wq_b", "wkv", "wo_a", "wo_b") and ".compressor." not in name


def is_v4_fp4(name: str) -> bool:
    """Routed experts are stored as packed FP4 in the published files."""
    return ".ffn.experts." in name and name.endswith(".weight")


def ue8m0_scale(amax: np.ndarray, max_code: float) -> np.ndarray:
    """Smallest power of two ``s`` with ``amax / s <= max_code`` (1 where ``amax`` is 0)."""
    safe = np.where(amax > 0, amax / max_code, 1.0)
    return np.exp2(np.ceil(np.log2(safe))).astype(np.float32)


def to_e8m0_tensor(scale: np.ndarray) -> torch.Tensor:
    """Power-of-two scales as ``float8_e8m0fnu`` (byte = exponent + 127)."""
    exponent = np.log2(scale).astype(np.int32) + UE8M0_BIAS
    return torch.from_numpy(exponent.astype(np.uint8)).view(torch.float8_e8m0fnu)


def quantize_fp8_ue8m0(weight: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """E4M3 codes with power-of-two (UE8M0) scales per 128x128 block (edge blocks partial)."""
    rows, cols = weight.shape
    row_blocks, col_blocks = -(-rows // FP8_BLOCK), -(-cols // FP8_BLOCK)
    padded = np.zeros((row_blocks * FP8_BLOCK, col_blocks * FP8_BLOCK), dtype=np.float32)
    padded[:rows, :cols] = np.abs(weight)
    amax = padded.reshape(row_blocks, FP8_BLOCK, col_blocks, FP8_BLOCK).max(axis=(1, 3))
    scale = ue8m0_scale(amax, FP8_MAX)
    expanded = np.repeat(np.repeat(scale, FP8_BLOCK, axis=0), FP8_BLOCK, axis=1)[:rows, :cols]
    codes = np.clip(weight / expanded, -FP8_MAX, FP8_MAX).astype(ml_dtypes.float8_e4m3fn)
    dequantized = codes.astype(np.float32) * expanded
    return torch.from_numpy(codes.view(np.uint8)).view(torch.float8_e4m3fn), to_e8m0_tensor(scale), dequantized


def quantize_fp4_ue8m0(weight: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """E2M1 codes packed two per byte (element 2j in the low nibble, 2j+1 in the high nibble) as
    int8 ``[N, K/2]``, with one UE8M0 scale per row and 32 elements of K (``[N, K/32]``)."""
    rows, cols = weight.shape
    groups = weight.reshape(rows, cols // FP4_GROUP, FP4_GROUP)
    scale = ue8m0_scale(np.abs(groups).max(axis=2), 6.0)
    expanded = np.repeat(scale, FP4_GROUP, axis=1)
    codes = (weight / expanded).astype(ml_dtypes.float4_e2m1fn)
    dequantized = codes.astype(np.float32) * expanded
    nibbles = codes.view(np.uint8) & 0x0F
    packed = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)
    # Independent decode of the packed bytes through the E2M1 value table.
    lut = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
                   dtype=np.float32)
    decoded = np.stack([lut[packed & 0x0F], lut[packed >> 4]], axis=-1).reshape(rows, cols) * expanded
    if not np.array_equal(decoded, dequantized):
        raise RuntimeError("FP4 packing does not round-trip")
    return torch.from_numpy(packed.view(np.int8)), to_e8m0_tensor(scale), dequantized


def build_v4_model() -> PreTrainedModel:
    """Tiny DeepSeek-V4 with seeded weights and a seeded hash-routing table (distinct experts per token)."""
    model = AutoModelForCausalLM.from_config(deepseek_v4_config(), attn_implementation="eager", dtype=torch.float32)
    model.eval()
    fill_weights(model, V4_SEED)
    rng = np.random.default_rng(V4_SEED + 1)
    with torch.no_grad():
        for name, buf in sorted(model.named_buffers()):
            if name.endswith("tid2eid"):
                experts, k = model.config.n_routed_experts, buf.shape[1]
                table = np.stack([rng.permutation(experts)[:k] for _ in range(buf.shape[0])])
                buf.copy_(torch.from_numpy(table.astype(np.int64)))
    return model


@contextlib.contextmanager
def lowest_index_topk_ties():
    """Make the lightning indexer's top-k break ties by the lower index (the ONNX rule).

    Indexer scores are `sum_h w_h * relu(q_h . k)`: an entry whose every head is cut by the ReLU
    scores exactly 0, so ties at the selection boundary are common, and torch's CPU `topk` orders
    equal values as `std::nth_element` happens to leave them. The reference therefore selects
    with a stable descending sort instead, which any implementation can reproduce.
    """
    from transformers.models.deepseek_v4.modeling_deepseek_v4 import DeepseekV4Indexer

    original_forward = DeepseekV4Indexer.forward
    torch_topk = torch.Tensor.topk

    def stable_topk(tensor, k, dim=-1, largest=True, sorted=True):  # noqa: A002
        order = torch.sort(tensor, dim=dim, descending=largest, stable=True)
        return torch.return_types.topk((order.values.narrow(dim, 0, k), order.indices.narrow(dim, 0, k)))

    def forward(self, *args, **kwargs):
        torch.Tensor.topk = stable_topk
        try:
            return original_forward(self, *args, **kwargs)
        finally:
            torch.Tensor.topk = torch_topk

    DeepseekV4Indexer.forward = forward
    try:
        yield
    finally:
        DeepseekV4Indexer.forward = original_forward


def load_v4_logits(directory: Path, input_ids: np.ndarray) -> np.ndarray:
    """Logits of a checkpoint directory loaded back through transformers."""
    model = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32)
    return torch_logits(model.eval(), input_ids)


def make_v4_fixtures(out_root: Path, report: dict) -> None:
    """``deepseek-v4`` (as transformers saves it), ``deepseek-v4-checkpoint-names`` (the same
    weights under the published checkpoint names and config keys) and ``deepseek-v4-fp8-fp4``
    (published names; FP8/UE8M0 non-expert linears, packed FP4/UE8M0 experts, BF16 rest)."""
    with lowest_index_topk_ties():
        make_v4_fixtures_with_stable_ties(out_root, report)


def make_v4_fixtures_with_stable_ties(out_root: Path, report: dict) -> None:
    """The body of `make_v4_fixtures`, run with the indexer's top-k ties broken by index."""
    model = build_v4_model()
    input_ids = make_input_ids(V4_SEED, 2, V4_SEQ)
    logits = torch_logits(model, input_ids)

    hf_dir = out_root / "deepseek-v4"
    save_hf(model, hf_dir)
    save_npy(hf_dir / "input_ids.npy", input_ids)
    save_npy(hf_dir / "logits.npy", logits)
    reload_diff = float(np.abs(load_v4_logits(hf_dir, input_ids) - logits).max())

    saved = load_file(str(hf_dir / "model.safetensors"))
    renamed = {v4_checkpoint_name(name): tensor for name, tensor in saved.items()}
    names_dir = out_root / "deepseek-v4-checkpoint-names"
    if names_dir.exists():
        shutil.rmtree(names_dir)
    names_dir.mkdir(parents=True)
    save_file(renamed, str(names_dir / "model.safetensors"), metadata={"format": "pt"})
    write_json(names_dir / "config.json", deepseek_v4_checkpoint_config(quantized=False))
    save_npy(names_dir / "input_ids.npy", input_ids)
    save_npy(names_dir / "logits.npy", logits)
    names_diff = float(np.abs(load_v4_logits(names_dir, input_ids) - logits).max())

    quantized: dict[str, torch.Tensor] = {}
    dequantized: dict[str, torch.Tensor] = {}
    for name in sorted(renamed):
        tensor = renamed[name]
        if tensor.dtype == torch.int64:
            quantized[name] = tensor
            dequantized[name] = tensor
            continue
        weight = tensor.to(torch.float32).numpy()
        stem = name.removesuffix(".weight")
        if is_v4_fp4(name):
            codes, scale, values = quantize_fp4_ue8m0(weight)
            quantized[name], quantized[f"{stem}.scale"] = codes, scale
            dequantized[name] = torch.from_numpy(values)
        elif is_v4_fp8(name):
            codes, scale, values = quantize_fp8_ue8m0(weight)
            quantized[name], quantized[f"{stem}.scale"] = codes, scale
            dequantized[name] = torch.from_numpy(values)
        elif name.endswith(("attn_sink", "gate.bias", ".ape")) or name.split(".")[-1].startswith("hc_") \
                or name.startswith("hc_head_"):
            quantized[name] = torch.from_numpy(weight)
            dequantized[name] = torch.from_numpy(weight)
        else:
            as_bf16 = torch.from_numpy(weight).to(torch.bfloat16)
            quantized[name] = as_bf16
            dequantized[name] = as_bf16.to(torch.float32)
    q_dir = out_root / "deepseek-v4-fp8-fp4"
    if q_dir.exists():
        shutil.rmtree(q_dir)
    q_dir.mkdir(parents=True)
    save_file(quantized, str(q_dir / "model.safetensors"), metadata={"format": "pt"})
    write_json(q_dir / "config.json", deepseek_v4_checkpoint_config(quantized=True))
    with tempfile.TemporaryDirectory() as tmp:
        ref_dir = Path(tmp)
        save_file(dequantized, str(ref_dir / "model.safetensors"), metadata={"format": "pt"})
        write_json(ref_dir / "config.json", deepseek_v4_checkpoint_config(quantized=False))
        q_logits = load_v4_logits(ref_dir, input_ids)
    save_npy(q_dir / "input_ids.npy", input_ids)
    save_npy(q_dir / "logits.npy", q_logits)
    report["deepseek-v4"] = {
        "max_abs_logit": float(np.abs(logits).max()),
        "reload_max_abs_diff": reload_diff,
        "checkpoint_names_reload_max_abs_diff": names_diff,
        "fp8_fp4_vs_fp32_max_abs_diff": float(np.abs(q_logits - logits).max()),
        "dtypes": sorted({str(t.dtype) for t in quantized.values()}),
    }
    print(f"  deepseek-v4: reload diff {reload_diff}, checkpoint-names diff {names_diff}")
    if reload_diff != 0.0 or names_diff != 0.0:
        raise RuntimeError("deepseek-v4: a saved checkpoint does not reproduce the logits")


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def make_base_fixture(spec: Spec, out_root: Path, report: dict) -> PreTrainedModel:
    """Checkpoint, inputs and logits of one base model; checks that the checkpoint reloads exactly."""
    model = build_model(spec)
    out_dir = out_root / spec.name
    save_hf(model, out_dir)
    input_ids = make_input_ids(spec.seed, 2, 7)
    logits = torch_logits(model, input_ids)
    save_npy(out_dir / "input_ids.npy", input_ids)
    save_npy(out_dir / "logits.npy", logits)
    # The saved checkpoint must reload to the same logits.
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, attn_implementation="eager", dtype=torch.float32)
    reload_diff = float(np.abs(torch_logits(reloaded.eval(), input_ids) - logits).max())
    if reload_diff != 0.0:
        raise RuntimeError(f"{spec.name}: reloaded checkpoint differs by {reload_diff}")
    report[spec.name] = {
        "max_abs_logit": float(np.abs(logits).max()),
        "routing_margin": routing_margin(model, input_ids, spec.family),
    }
    print(f"  {spec.name}: margin {report[spec.name]['routing_margin']:.3g}")
    return model


def make_sliding_window_logits(spec: Spec, model: PreTrainedModel, out_root: Path, report: dict) -> None:
    """Logits of the same weights and inputs with a 4-token sliding attention window (shorter than
    the 7-token inputs), saved beside the base fixture as ``logits-sliding-window-4.npy``."""
    out_dir = out_root / spec.name
    input_ids = np.load(out_dir / "input_ids.npy")
    model.config.sliding_window = 4
    try:
        logits = torch_logits(model, input_ids)
    finally:
        model.config.sliding_window = None
    full = np.load(out_dir / "logits.npy")
    if np.abs(logits - full).max() == 0.0:
        raise RuntimeError(f"{spec.name}: the sliding window changed nothing")
    save_npy(out_dir / "logits-sliding-window-4.npy", logits)
    report[f"{spec.name}-sliding-window-4"] = {"max_abs_logit": float(np.abs(logits).max())}


def make_sharded_fixture(spec: Spec, model: PreTrainedModel, out_root: Path, report: dict) -> None:
    """The same weights as ``spec`` saved in exactly three shards plus the index."""
    out_dir = out_root / f"{spec.name}-sharded"
    total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    size = total // 3
    while True:
        save_hf(model, out_dir, max_shard_size=size)
        shards = sorted(out_dir.glob("model-*.safetensors"))
        if len(shards) == 3:
            break
        if len(shards) < 3:
            raise RuntimeError(f"{spec.name}: cannot split into exactly three shards")
        size += 4096
    src = out_root / spec.name
    shutil.copyfile(src / "input_ids.npy", out_dir / "input_ids.npy")
    shutil.copyfile(src / "logits.npy", out_dir / "logits.npy")
    report[out_dir.name] = {"max_shard_size": size, "shards": [s.name for s in shards]}


def make_bf16_fixture(spec: Spec, model: PreTrainedModel, out_root: Path, report: dict) -> None:
    """The model with bf16-rounded weights: the checkpoint stores bfloat16, the reference runs the
    same (exactly representable) values in float32."""
    out_dir = out_root / f"{spec.name}-bf16"
    with torch.no_grad():
        rounded = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    ref = build_model(spec)
    with torch.no_grad():
        ref.load_state_dict({k: v.to(torch.float32) for k, v in rounded.items()}, strict=False)
        for name, buf in ref.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.copy_(rounded[name].to(torch.float32))
    bf16 = build_model(spec).to(torch.bfloat16)
    bf16.load_state_dict(rounded, strict=False)
    save_hf(bf16, out_dir)
    input_ids = make_input_ids(spec.seed, 2, 7)
    save_npy(out_dir / "input_ids.npy", input_ids)
    logits = torch_logits(ref, input_ids)
    save_npy(out_dir / "logits.npy", logits)
    report[out_dir.name] = {"max_abs_logit": float(np.abs(logits).max()),
                            "routing_margin": routing_margin(ref, input_ids, spec.family)}


def sha256_tree(root: Path) -> dict[str, str]:
    """SHA-256 of every generated file, to compare two runs."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "README.md"
    }


def main() -> int:
    """Generate every fixture; ``--report`` writes diffs, margins, op histograms and hashes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--skip-onnx", action="store_true", help="only write the Hugging Face fixtures")
    parser.add_argument("--only-v4", action="store_true", help="only write the DeepSeek-V4 fixtures")
    parser.add_argument("--report", type=Path, help="write a JSON summary (diffs, margins, ops) here")
    args = parser.parse_args()
    out_root: Path = args.out
    out_root.mkdir(parents=True, exist_ok=True)
    report: dict = {"versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "onnx": onnx.__version__}}

    if args.only_v4:
        print("[hf] deepseek-v4")
        make_v4_fixtures(out_root, report)
        if args.report:
            args.report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return 0

    models: dict[str, PreTrainedModel] = {}
    for spec in BASE_SPECS:
        print(f"[hf] {spec.name}")
        models[spec.name] = make_base_fixture(spec, out_root, report)
    by_name = {spec.name: spec for spec in BASE_SPECS}
    print("[hf] qwen3-moe-sharded, mixtral-bf16, deepseek-v3-fp8")
    make_sharded_fixture(by_name["qwen3-moe"], models["qwen3-moe"], out_root, report)
    make_sliding_window_logits(by_name["mixtral"], models["mixtral"], out_root, report)
    make_bf16_fixture(by_name["mixtral"], models["mixtral"], out_root, report)
    make_fp8_fixture(out_root, report)
    print("[hf] deepseek-v4")
    make_v4_fixtures(out_root, report)

    if not args.skip_onnx:
        moe_layer = {"mixtral": 0, "qwen2-moe": 0, "qwen3-moe": 0, "deepseek-v3": 1}
        for spec in BASE_SPECS:
            print(f"[onnx] {spec.name}")
            export_model_onnx(spec, models[spec.name], out_root, report)
            export_moe_block(spec, models[spec.name], moe_layer[spec.name], out_root, report)
        print("[onnx] mixtral-ort-fused")
        export_ort_fused(by_name["mixtral"], models["mixtral"], out_root, report)

    report["sha256"] = sha256_tree(out_root)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
