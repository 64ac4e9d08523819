"""Subprocess entry point: `python -m exporter.export.run --config job.json`.

Resolves the base (the bundled GGUF, a .gguf file or an HF checkpoint directory; a GGUF is
converted once to HF weights by `modelkit.hf_base`) and runs `modelkit.export.export_adapter`:
merge the LoRA, F16 GGUF, parity check, quant ladder, Modelfile. stdout carries only JSON lines:

    {"event": "stage", "name": "resolve_base", "done": false}
    {"event": "stage", "name": "resolve_base", "done": true, "seconds": 1.2}
    {"event": "stage", "name": "quantize", "fraction": 0.55}   (each stage export_adapter starts)
    {"event": "completed", "result": {"version", "f16_path", "quant_paths", "modelfile_path",
                                      "sha256", "parity", "stage_seconds"}}
  or
    {"event": "failed", "reason": "ParityError: ...", "details": {...}, "permanent": true}  (exit 1)

A failure the process can name is permanent (retrying the same adapter gives the same answer);
a process that dies without a `failed` line (killed, out of memory) is retried by the service.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from servicekit.worker_process import emit, event_stream

from ..domain import BUNDLED_NAMES
from .job import ExportJobSpec


def resolve_base(name: str, cache_dir: Path | None) -> tuple[Path, Path]:
    """(HF checkpoint dir, GGUF) of a job's base model: the export writes its GGUF with the base
    GGUF's metadata and tokenizer, so the base must be a GGUF (the bundled one, or a file)."""
    from modelkit.hf_base import resolve_base_model

    if name in BUNDLED_NAMES:
        from modelkit.base_model import bundled_gguf_path

        gguf = bundled_gguf_path()
    else:
        gguf = Path(name)
        if not gguf.is_absolute() or not gguf.is_file() or gguf.suffix != ".gguf":
            raise FileNotFoundError(
                f"unknown base model {name!r}: expected 'bundled' or an absolute path to a .gguf file on this host"
            )
    return resolve_base_model(gguf, cache_dir), gguf


class StageReporter:
    """The `progress(stage, fraction)` callback of export_adapter: each call is a `stage` line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, stage: str, fraction: float | None = None) -> None:
        emit(self.stream, "stage", name=str(stage), fraction=fraction)


def _plain(value: Any) -> Any:
    """JSON-ready: paths and other objects as text."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return {str(k): _plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [_plain(v) for v in value]
        return str(value)


def result_doc(result: Any) -> dict[str, Any]:
    return {
        "version": result.version,
        "f16_path": str(result.f16_path) if result.f16_path else None,
        "quant_paths": {str(k): str(v) for k, v in result.quant_paths.items()},
        "modelfile_path": str(result.modelfile_path) if result.modelfile_path else None,
        "sha256": {str(k): str(v) for k, v in (result.sha256 or {}).items()},
        "parity": _plain(dict(result.parity or {})),
        "stage_seconds": {str(k): float(v) for k, v in (result.stage_seconds or {}).items()},
    }


def export_job(job: ExportJobSpec, stream: TextIO) -> dict[str, Any]:
    emit(stream, "stage", name="resolve_base", done=False)
    began = time.monotonic()
    base_hf, base_gguf = resolve_base(job.base_model, job.model_cache_dir)
    resolve_s = time.monotonic() - began
    emit(stream, "stage", name="resolve_base", done=True, seconds=round(resolve_s, 3), base=str(base_hf))
    from modelkit.export import export_adapter  # torch/transformers/gguf only after the config is valid

    job.out_dir.mkdir(parents=True, exist_ok=True)
    result = export_adapter(
        base_hf, job.adapter_dir, job.out_dir, version=job.version, base_gguf=base_gguf, quants=tuple(job.quants),
        parity_prompts=job.parity_prompts, parity_tokens=job.parity_tokens, progress=StageReporter(stream),
    )
    doc = result_doc(result)
    doc["stage_seconds"].setdefault("resolve_base", round(resolve_s, 3))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporter.export.run")
    parser.add_argument("--config", required=True, type=Path, help="job.json (ExportJobSpec)")
    args = parser.parse_args(argv)
    stream = event_stream()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        job = ExportJobSpec.model_validate(json.loads(args.config.read_text()))
        doc = export_job(job, stream)
    except Exception as exc:  # the process boundary: every failure becomes one event and exit 1
        traceback.print_exc(file=sys.stderr)
        details = _plain(getattr(exc, "details", None) or {})  # ParityError says where outputs diverged
        emit(stream, "failed", reason=f"{type(exc).__name__}: {exc}", details=details,
             permanent=not isinstance(exc, MemoryError))
        return 1
    emit(stream, "completed", result=doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
