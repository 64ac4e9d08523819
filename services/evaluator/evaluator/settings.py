"""Settings of the evaluator, composed from the shared fragments.

Environment (nested with `__`), beyond the shared BROKER/DATABASE/S3/HTTP/LOG/INSTANCE_ID:

| variable | default | meaning |
|---|---|---|
| EVAL__SUITES | the package's suites/ directory | suite files or directories, comma-separated (docs/suites.md) |
| EVAL__THRESHOLD | (suite header, else 0) | absolute bar of the primary suite, overrides the header |
| EVAL__TOLERANCE | (suite header, else 0.02) | score points a suite may lose vs production |
| EVAL__LATENCY_TOLERANCE | (suite header, else 0.5) | relative growth of p95 latency allowed vs production |
| EVAL__CATEGORY_TOLERANCE | (suite header, else the suite's tolerance) | score points a category of an item suite may lose vs production |
| EVAL__MIN_CATEGORY_ITEMS | 10 | a category with fewer items is reported, not gated |
| EVAL__PRIMARY | (the suites' own primary) | the primary suite: a configured ast/regression suite's name, or `candidate_dataset`: the BFCL suite `dataset-val` built from the candidate's dataset's validation split (docs/suites.md), the configured suites running beside it |
| EVAL__MAX_ITEMS | 50 | at most this many items per suite (sampled by the suite's seed) |
| EVAL__MAX_TOKENS | 128 | new tokens per answer (calls are short) |
| EVAL__N_CTX | 4096 | llama.cpp context: room for the tool schemas of an item |
| EVAL__N_THREADS | (cores - 1) | llama.cpp threads |
| EVAL__WORK_DIR | ~/.cache/agentloop/evaluator | downloaded GGUFs (by sha256) |
| EVAL__LOG_EVERY | 10 | a progress log line every N items |
| EVAL__LEASE_TTL_S / EVAL__HEARTBEAT_S | 60 / 15 | an evaluation whose lease is this old is taken over |
| EVAL__POLL_INTERVAL_S | 5 | how often an idle instance looks for queued evaluations |
| EVAL__MAX_ATTEMPTS | 3 | evaluation attempts (crashes, Postgres/S3 trouble) before it fails |
| EVAL__RETRY_DELAY_S | 10 | a failed attempt waits this long before the next |
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from servicekit.settings import HttpSettings, LeaseSettings, S3Settings, ServiceSettings

SHIPPED_SUITES = Path(__file__).resolve().parent / "suites"


def _default_work_dir() -> Path:
    return Path(os.environ.get("AGENTLOOP_MODEL_CACHE", Path.home() / ".cache" / "agentloop")) / "evaluator"


class EvalSettings(LeaseSettings):
    env_prefix = "EVAL"

    suites: str = str(SHIPPED_SUITES)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    tolerance: float | None = Field(default=None, ge=0.0)
    latency_tolerance: float | None = Field(default=None, ge=0.0)
    category_tolerance: float | None = Field(default=None, ge=0.0)
    min_category_items: int = Field(default=10, ge=1)
    primary: str | None = None  # a suite name, or "candidate_dataset"
    max_items: int | None = Field(default=50, ge=1)
    max_tokens: int = Field(default=128, ge=1, le=4096)
    constrained: Literal["auto", "off"] = Field(
        default="auto", description="decode calls under the tools' grammar, as the runner does (ENGINE__CONSTRAINED)")
    n_ctx: int = Field(default=4096, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    work_dir: Path = Field(default_factory=_default_work_dir)
    log_every: int = Field(default=10, ge=1)

    @property
    def suite_paths(self) -> list[str]:
        return [p.strip() for p in self.suites.split(",") if p.strip()]

    @field_validator("primary")
    @classmethod
    def _primary_named(cls, value: str | None) -> str | None:
        return (value or "").strip() or None  # EVAL__PRIMARY= (empty) means the suites decide



class EvaluatorSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8104)
    s3: S3Settings  # S3__ACCESS_KEY / S3__SECRET_KEY have no defaults
    eval: EvalSettings = Field(default_factory=EvalSettings)
