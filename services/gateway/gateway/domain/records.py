"""The records the use cases exchange with their ports (runs, feedback, audit, API keys), and the
model registry's score rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .identities import Identity, Role

RunStatus = Literal["queued", "completed", "failed", "refused"]  # refused: blocked by screening, never run


@dataclass(slots=True)
class RunRecord:
    """One row of the run index."""

    run_id: str
    subject: str
    status: RunStatus
    created_at: datetime
    outcome: str | None = None
    answer: str | None = None
    steps: list[dict[str, Any]] | None = None
    client_tool_calls: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None
    model_version: str | None = None
    engine: str | None = None
    error_code: str | None = None
    error: str | None = None
    completed_at: datetime | None = None
    screening: list[dict[str, Any]] = field(default_factory=list)  # messages the screen fired on (gateway's)

    def visible_to(self, who: Identity) -> bool:
        """Users see their own runs; operators and admins see all."""
        return who.role >= Role.OPERATOR or self.subject == who.subject

    @property
    def finished(self) -> bool:
        return self.status != "queued"


@dataclass(frozen=True, slots=True)
class TaggedRun:
    """A run as a listing shows it: its record and the client's tags (`metadata`)."""

    run: RunRecord
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class NewRun:
    run_id: str
    subject: str
    created_at: datetime
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunFinish:
    """What the run index records when a run ends (from AgentRunCompleted or AgentRunFailed)."""

    run_id: str
    status: RunStatus
    completed_at: datetime
    outcome: str | None = None
    answer: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    client_tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    model_version: str | None = None
    engine: str | None = None
    error_code: str | None = None
    error: str | None = None
    screening: list[dict[str, Any]] = field(default_factory=list)  # the runner's record of the request's


@dataclass(frozen=True, slots=True)
class NewFeedback:
    feedback_id: str
    run_id: str
    subject: str
    rating: int
    corrected_answer: str | None
    corrected_tool_calls: list[dict[str, Any]] | None
    comment: str | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    subject: str
    role: str
    action: str
    outcome: Literal["ok", "denied", "unauthenticated", "error"]
    target: str | None = None
    client_ip: str | None = None
    details: dict[str, Any] | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    key_id: str
    secret_hash: str
    role: Role
    name: str
    revoked: bool = False


# --------------------------------------------------------------------------- model registry

def primary_score(metrics: dict[str, Any]) -> float | None:
    """The one number to show for a version: its gate score where the registry recorded one."""
    for key in ("primary_score", "score", "accuracy"):
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    scores = metrics.get("scores")
    if isinstance(scores, dict) and scores:
        first = next(iter(scores.values()))
        if isinstance(first, dict):
            first = first.get("score")
        if isinstance(first, int | float) and not isinstance(first, bool):
            return float(first)
    return None
