"""Settings of the log-miner, composed from the shared fragments.

Environment (nested with `__`), beyond the shared BROKER/DATABASE/S3/HTTP/LOG:

| variable | default | meaning |
|---|---|---|
| MINING__INCLUDE_UNRATED | true | successful runs nobody rated count as examples (false: only runs rated +1) |
| MINING__MAX_CHARS | 16000 | longest example, in rendered characters (chat format, tools included) |
| MINING__MAX_MESSAGES | 64 | most turns in one example |
| MINING__HINTS_PLACEMENT | meta | step hints: `meta` (kept in meta only) or `assistant` (numbered at the start of the first answer) |
| MINING__DEFAULT_BASE_MODEL | bundled | base_model of TrainingRequested when the request names none |
| MINING__CORPUS_ROOTS | "" | comma-separated directories local corpora must lie under; empty: any absolute path |
| MINING__MAX_CORPUS_BYTES | 536870912 | largest corpus file read |
| MINING__PROGRESS_EVERY | 500 | log progress every N runs / records |
| POLICY__ENABLED | true | the miner asks for training on its own |
| POLICY__MIN_NEW_EXAMPLES | 200 | ... when this many example-yielding runs arrived since the last dataset |
| POLICY__FAILURE_RATE | 0.5 | ... or when this share of the runs in the window failed |
| POLICY__WINDOW_S | 3600 | the failure-rate window |
| POLICY__MIN_WINDOW_RUNS | 20 | fewer runs in the window: no failure-rate decision |
| POLICY__MIN_EXAMPLES | 20 | the failure-rate trigger needs this many examples to train on |
| POLICY__COOLDOWN_S | 3600 | no policy build sooner than this after the last one |
| POLICY__DEBOUNCE_S | 5 | evaluate once per burst of arrivals |
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from servicekit.settings import HttpSettings, S3Settings, ServiceSettings


class MiningSettings(BaseModel):
    include_unrated: bool = True
    max_chars: int = Field(default=16_000, ge=100)
    max_messages: int = Field(default=64, ge=2)
    hints_placement: Literal["meta", "assistant"] = "meta"
    default_base_model: str = "bundled"
    corpus_roots: str = ""
    max_corpus_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    progress_every: int = Field(default=500, ge=1)


class PolicySettings(BaseModel):
    enabled: bool = True
    min_new_examples: int = Field(default=200, ge=1)
    failure_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    window_s: float = Field(default=3600.0, gt=0)
    min_window_runs: int = Field(default=20, ge=1)
    min_examples: int = Field(default=20, ge=1)
    cooldown_s: float = Field(default=3600.0, ge=0)
    debounce_s: float = Field(default=5.0, ge=0)


class CanarySettings(BaseModel):
    """`CANARY__*`: the canary judge (decision 0020, log_miner.domain.canary)."""

    judge_interval_s: float = Field(default=15.0, gt=0, description="seconds between two judgements")
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="one-sided significance of every test")
    margin: float = Field(default=0.05, ge=0, lt=1, description="non-inferiority margin on the valid-call ratio")
    latency_tolerance: float = Field(default=1.5, ge=1, description="the candidate's median run time may be at "
                                                                   "most this times production's")


class LogMinerSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8102)
    s3: S3Settings  # S3__ACCESS_KEY / S3__SECRET_KEY have no defaults
    mining: MiningSettings = MiningSettings()
    policy: PolicySettings = PolicySettings()
    canary: CanarySettings = CanarySettings()
