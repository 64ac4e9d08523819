"""Settings of the trainer, composed from the shared fragments.

Environment (nested with `__`), beyond the shared BROKER/DATABASE/S3/HTTP/LOG/INSTANCE_ID:

| variable | default | meaning |
|---|---|---|
| TRAINING__WORK_DIR | ~/.cache/agentloop/trainer | per-job scratch: data, checkpoints, adapter, the recipe's stderr |
| TRAINING__LEASE_TTL_S | 60 | a job whose lease is this old without a heartbeat is taken over |
| TRAINING__HEARTBEAT_S | 15 | lease heartbeat interval (must be well below the TTL) |
| TRAINING__POLL_INTERVAL_S | 5 | how often an idle instance looks for runnable jobs |
| TRAINING__MAX_ATTEMPTS | 3 | training processes started for a job before a crash fails it |
| TRAINING__RETRY_DELAY_S | 10 | a crashed job waits this long before it is claimed again |
| TRAINING__PROGRESS_INTERVAL_S | 1 | at most one TrainingProgress per interval (the last step always) |
| TRAINING__NICE | 10 | niceness of the training process (0: none) |
| TRAINING__NUM_THREADS | (cores) | torch threads of the training process |
| TRAINING__KEEP_CHECKPOINTS | 2 | local checkpoints the recipe keeps (S3 keeps the latest recorded) |
| TRAINING__MODEL_CACHE_DIR | AGENTLOOP_MODEL_CACHE | where GGUF bases are converted to HF checkpoints once |
| TRAINING__PYTHON | this interpreter | interpreter that runs `-m trainer.training.run` |
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pydantic import Field

from servicekit.settings import HttpSettings, LeaseSettings, S3Settings, ServiceSettings


def _default_work_dir() -> Path:
    return Path(os.environ.get("AGENTLOOP_MODEL_CACHE", Path.home() / ".cache" / "agentloop")) / "trainer"


class TrainingSettings(LeaseSettings):
    env_prefix = "TRAINING"

    work_dir: Path = Field(default_factory=_default_work_dir)
    progress_interval_s: float = Field(default=1.0, ge=0)
    nice: int = Field(default=10, ge=0, le=19)
    num_threads: int | None = Field(default=None, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    model_cache_dir: Path | None = None
    python: str = sys.executable



class TrainerSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8103)
    s3: S3Settings  # S3__ACCESS_KEY / S3__SECRET_KEY have no defaults
    training: TrainingSettings = Field(default_factory=TrainingSettings)
