"""merge LoRA → F16 GGUF → parity → quantize → Modelfile → sha256, as one linear recipe.

Everything is written into a private staging directory inside `out_dir` and moved into `out_dir`
only when every stage passed, so a failed export leaves nothing half-written behind.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from ..llama import load_llama
from . import gguf_io
from .modelfile import modelfile_text
from .parity import ParityError, check_f16_parity, check_quant, default_parity_prompts
from .quantize import check_quant_names, quantize

log = logging.getLogger("modelkit.export")

DEFAULT_QUANTS = ("Q4_K_M", "Q5_K_M", "Q8_0")
MODELFILE_NAME = "Modelfile"
QUANT_CHECK_PROMPTS = 4  # a spread of the parity prompts: each quant must load and complete them

# Rough share of the total time of each stage (measured on the 270M model), for progress reports.
_STAGE_WEIGHTS = {
    "merge": 0.15,
    "gguf": 0.15,
    "parity": 0.25,
    "quantize": 0.3,
    "quant_check": 0.1,
    "modelfile": 0.01,
    "sha256": 0.04,
}


@dataclass
class ExportResult:
    version: str
    f16_path: Path
    quant_paths: dict[str, Path]  # e.g. {"Q4_K_M": ..., "Q5_K_M": ..., "Q8_0": ...}
    modelfile_path: Path
    sha256: dict[str, str]  # file name -> hex digest, every file written
    parity: dict[str, Any]  # prompts, tokens compared, mismatches, tokenizer_identical, quant_loads
    stage_seconds: dict[str, float]  # merge, gguf, parity, quantize, quant_check, modelfile, sha256


def file_stem(version: str) -> str:
    """A file-name-safe form of a model version (`gemma3-270m@base` → `gemma3-270m-base`)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", version).strip("-.")
    if not stem:
        raise ValueError(f"model version {version!r} gives no usable file name")
    return stem


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def merge_adapter(base_hf_dir: Path, adapter_dir: Path) -> Any:
    """The base HF model with the peft LoRA adapter merged into its weights, in fp32."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} is not a peft adapter (no adapter_config.json)")
    if not (Path(base_hf_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{base_hf_dir} is not an HF checkpoint (no config.json)")
    base = AutoModelForCausalLM.from_pretrained(base_hf_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.eval()
    return merged


def export_adapter(
    base_hf_dir: Path,
    adapter_dir: Path,
    out_dir: Path,
    *,
    version: str,
    base_gguf: Path,
    quants: Sequence[str] = DEFAULT_QUANTS,
    parity_prompts: Sequence[str] | None = None,
    parity_tokens: int = 16,
    progress: Callable[[str, float], None] | None = None,
) -> ExportResult:
    """Export a LoRA adapter as GGUF files ready to serve, or raise before anything ships.

    `progress(stage, fraction)` is called as each stage starts (fraction of the whole export done
    so far, 0..1) and once with ("done", 1.0). Raises `ParityError` when the F16 GGUF does not
    reproduce the merged model (or a quantized file does not load and complete), `GGUFConversionError`
    when the merged weights do not fit the base GGUF, `ValueError`/`FileNotFoundError` for bad input.
    """
    from transformers import AutoTokenizer

    quants = tuple(quants)
    check_quant_names(quants)
    prompts = list(default_parity_prompts() if parity_prompts is None else parity_prompts)
    if not prompts:
        raise ValueError("parity needs at least one prompt")
    if parity_tokens < 1:
        raise ValueError("parity_tokens must be at least 1")
    stem = file_stem(version)
    base_gguf = Path(base_gguf)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    seconds: dict[str, float] = {}
    done = 0.0

    def stage(name: str) -> _Stage:
        nonlocal done
        if progress is not None:
            progress(name, round(done, 4))
        done += _STAGE_WEIGHTS[name]
        log.info("export %s: %s", version, name)
        return _Stage(name, seconds, version)

    try:
        with stage("merge"):
            base = gguf_io.read_gguf(base_gguf)
            model = merge_adapter(base_hf_dir, adapter_dir)
            tokenizer = AutoTokenizer.from_pretrained(base_hf_dir)

        f16 = staging / f"{stem}.F16.gguf"
        with stage("gguf"):
            gguf_io.write_f16_gguf(model.state_dict(), base, f16, name=version)

        with stage("parity"):
            max_prompt = max(len(tokenizer(p)["input_ids"]) for p in prompts)
            n_ctx = max(512, max_prompt + parity_tokens + 8)
            # Default threads (cores - 1): with every core, ggml's barrier spin-waits make decoding
            # crawl as soon as another process wants a core (the machines are shared).
            llm = load_llama(f16, n_ctx=n_ctx)
            try:
                parity = check_f16_parity(model, tokenizer, llm, prompts, parity_tokens)
            finally:
                llm.close()
        del model
        gc.collect()

        quant_paths: dict[str, Path] = {}
        with stage("quantize"):
            for quant in quants:
                started = time.monotonic()
                quant_paths[quant] = staging / f"{stem}.{quant}.gguf"
                quantize(f16, quant_paths[quant], quant)
                seconds[f"quantize_{quant}"] = round(time.monotonic() - started, 3)
                log.info(
                    "export %s: %s written in %.1f s", version, quant, seconds[f"quantize_{quant}"]
                )

        with stage("quant_check"):
            picks = list(range(0, len(prompts), max(1, len(prompts) // QUANT_CHECK_PROMPTS)))
            reference = [parity["per_prompt"][i]["tokens"] for i in picks]
            parity["quant_loads"] = {
                quant: check_quant(
                    path, [prompts[i] for i in picks], parity_tokens, reference, n_ctx=n_ctx
                )
                for quant, path in quant_paths.items()
            }

        with stage("modelfile"):
            served = quant_paths[quants[0]] if quants else f16
            modelfile = staging / MODELFILE_NAME
            modelfile.write_text(modelfile_text(served.name), encoding="utf-8")

        written = [f16, *quant_paths.values(), modelfile]
        with stage("sha256"):
            digests = {path.name: sha256_file(path) for path in written}

        for path in written:  # same filesystem: each move is a rename
            path.replace(out_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if progress is not None:
        progress("done", 1.0)
    log.info("export %s done: %s", version, seconds)
    return ExportResult(
        version=version,
        f16_path=out_dir / f16.name,
        quant_paths={q: out_dir / p.name for q, p in quant_paths.items()},
        modelfile_path=out_dir / MODELFILE_NAME,
        sha256=digests,
        parity=parity,
        stage_seconds=seconds,
    )


class _Stage:
    """Times a stage into `seconds[name]`."""

    def __init__(self, name: str, seconds: dict[str, float], version: str) -> None:
        self.name, self.seconds, self.version = name, seconds, version

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds[self.name] = round(time.monotonic() - self.started, 3)
        log.info("export %s: %s took %.1f s", self.version, self.name, self.seconds[self.name])


__all__ = ["DEFAULT_QUANTS", "ExportResult", "ParityError", "export_adapter", "merge_adapter"]
