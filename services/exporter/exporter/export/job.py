"""The job file (`job.json`) given to `python -m exporter.export.run --config job.json`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ExportJobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adapter_dir: Path = Field(description="local peft adapter (adapter_config.json inside)")
    base_model: str = Field(description="'bundled', the bundled version string, a .gguf file or an HF checkpoint dir")
    out_dir: Path = Field(description="where the GGUF files and the Modelfile are written")
    version: str
    quants: list[str] = Field(default_factory=lambda: ["Q4_K_M", "Q5_K_M", "Q8_0"], min_length=1)
    parity_prompts: list[str] | None = None
    parity_tokens: int = Field(default=16, ge=1)
    model_cache_dir: Path | None = Field(default=None, description="GGUF → HF conversion cache")
