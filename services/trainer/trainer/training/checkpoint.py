"""Training checkpoints on local disk (the service uploads the directory to S3).

Layout of `<checkpoint_dir>/step-000020/`:

    adapter_config.json, adapter_model.safetensors   the LoRA weights (peft format)
    training_state.pt     optimizer, scheduler, RNG states, step, total_steps, data fingerprint,
                          options, loss history
    state.json            step, total_steps, fingerprint, data position (readable without torch)

A checkpoint is written under a temporary name and renamed into place, so a process killed while
writing leaves no half checkpoint that `latest()` could pick.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^step-(\d{6,})$")
STATE_FILE = "training_state.pt"
SUMMARY_FILE = "state.json"


class ResumeMismatchError(RuntimeError):
    """The checkpoint was made for other data or options; resuming would not continue that run."""


@dataclass(frozen=True)
class TrainingState:
    step: int
    total_steps: int
    fingerprint: str
    options: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    tokens_seen: int
    loss_history: list[float]
    data_position: dict[str, int]  # informative: the schedule derives it from `step`


def checkpoint_path(checkpoint_dir: Path, step: int) -> Path:
    return checkpoint_dir / f"step-{step:06d}"


def latest(checkpoint_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, if any."""
    if not checkpoint_dir.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in checkpoint_dir.iterdir()
        if (m := _NAME.match(p.name)) and (p / STATE_FILE).exists() and (p / SUMMARY_FILE).exists()
    ]
    return max(found)[1] if found else None


def write(checkpoint_dir: Path, state: TrainingState, save_adapter: Any, keep: int) -> Path:
    """Write a checkpoint; `save_adapter(path)` writes the peft adapter files into `path`."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(checkpoint_dir, state.step)
    staging = checkpoint_dir / f".tmp-{final.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_adapter(staging)
    torch.save(state.__dict__, staging / STATE_FILE)
    (staging / SUMMARY_FILE).write_text(
        json.dumps(
            {
                "step": state.step,
                "total_steps": state.total_steps,
                "fingerprint": state.fingerprint,
                "data_position": state.data_position,
            }
        )
    )
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    _prune(checkpoint_dir, keep)
    return final


def read(path: Path) -> TrainingState:
    # weights_only: a checkpoint comes back from shared storage; never unpickle arbitrary objects
    return TrainingState(**torch.load(path / STATE_FILE, weights_only=True))


def _prune(checkpoint_dir: Path, keep: int) -> None:
    steps = sorted(
        (int(m.group(1)), p) for p in checkpoint_dir.iterdir() if (m := _NAME.match(p.name))
    )
    for _, p in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
