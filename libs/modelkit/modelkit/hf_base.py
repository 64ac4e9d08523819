"""The trainable form of a base model: an HF checkpoint directory, or a GGUF file converted once
into one and cached — and the conventions that relate the two (the export relies on them).

Loading the bundled Gemma 3 270M straight from GGUF costs ~100 s on a 2-core CPU (tokenizer ~35 s:
the 262k-piece vocab is rebuilt from GGUF metadata; model ~65 s: dequantisation). Every training
subprocess would pay that again, so the first load saves the result with `save_pretrained` (fp32
safetensors + tokenizer.json) and later loads take seconds.

Norm convention (checked by tests/trainer/integration/test_base_weights.py): Gemma's RMSNorm
computes `x * (1 + w)`, and llama.cpp's converter stores `w + 1` in GGUF. transformers' GGUF loader
(`Gemma2TensorProcessor`, used for gemma3) subtracts 1 from every tensor whose name contains
`norm.weight` (attn/ffn/post norms, q_norm, k_norm, the final norm), so

    GGUF value == HF value + 1     for every *norm.weight tensor.

The merged-LoRA → GGUF export adds the 1 back; norms are not LoRA targets, so a merged model's
norms equal the base ones.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# HF module name fragment → GGUF tensor name fragment for the per-layer norms of gemma3.
GGUF_NORM_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
}
GGUF_NORM_SHIFT = 1.0  # GGUF norm weight = HF norm weight + GGUF_NORM_SHIFT

_MARKER = "agentloop-converted.json"


def default_cache_dir() -> Path:
    return Path(os.environ.get("AGENTLOOP_MODEL_CACHE", Path.home() / ".cache" / "agentloop"))


def resolve_base_model(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """An HF checkpoint directory for `path`: itself, or the cached conversion of a GGUF file."""
    src = Path(path)
    if src.is_dir():
        return src
    if src.suffix != ".gguf" or not src.is_file():
        raise FileNotFoundError(
            f"base model {src} is neither an HF checkpoint directory nor a .gguf file"
        )
    stat = src.stat()
    key = f"{src.stem}-{stat.st_size}-{stat.st_mtime_ns}"
    target = Path(cache_dir or default_cache_dir()) / "hf" / key
    if (target / _MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        _convert_gguf(src, staging)
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared by the services
        (staging / _MARKER).write_text(json.dumps({"source": str(src), "size": stat.st_size}))
        try:
            staging.rename(target)  # atomic: a concurrent converter either wins or finds ours
        except OSError:
            if not (target / _MARKER).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    # The weights are dequantised now; a leftover GGUF quantization_config would make the saved
    # checkpoint ask for the GGUF file again on load.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def gguf_tensors(path: str | os.PathLike[str], wanted: Callable[[str], bool]) -> dict[str, Any]:
    """Dequantised numpy arrays of the GGUF tensors whose names pass `wanted`."""
    from .export.gguf_io import read_tensors

    return read_tensors(path, wanted)
