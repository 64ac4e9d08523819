"""The job file (`job.json`) given to `python -m trainer.training.run --config job.json`."""

from __future__ import annotations

from pathlib import Path

from contracts.learning import LoraOptions
from pydantic import BaseModel, ConfigDict, Field


class TrainingJobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train_path: Path = Field(description="local JSONL: one {messages, tools} conversation per line")
    val_path: Path | None = Field(
        default=None, description="local JSONL; eval loss is reported when given"
    )
    base_model: str = Field(
        description="a .gguf file (converted once, cached) or an HF checkpoint directory"
    )
    output_dir: Path = Field(description="where the final peft adapter is written")
    checkpoint_dir: Path = Field(description="where step-NNNNNN/ checkpoints are written")
    options: LoraOptions = Field(default_factory=LoraOptions)
    resume: bool = Field(
        default=True,
        description="continue from the latest checkpoint in checkpoint_dir if there is one",
    )
    keep_checkpoints: int = Field(default=2, ge=1, description="older checkpoints are deleted")
    num_threads: int | None = Field(
        default=None, ge=1, description="torch CPU threads; default: usable cores"
    )
    model_cache_dir: Path | None = Field(
        default=None, description="GGUF conversion cache; default AGENTLOOP_MODEL_CACHE"
    )
