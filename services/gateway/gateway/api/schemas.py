"""Response bodies (request bodies are the domain's submissions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from modelregistry import Canary, ModelVersion

from ..domain import AuditEntry, RunRecord, RunStatus, TaggedRun, primary_score


class RunError(BaseModel):
    code: str | None = None
    reason: str | None = None


class RunView(BaseModel):
    run_id: str
    status: RunStatus
    outcome: str | None = None
    answer: str | None = None
    steps: list[dict[str, Any]] = []
    client_tool_calls: list[dict[str, Any]] = []
    usage: dict[str, Any] | None = None
    model_version: str | None = None
    engine: str | None = None
    error: RunError | None = None
    created_at: datetime
    completed_at: datetime | None = None
    screening: list[dict[str, Any]] = Field(
        default=[], description="messages of the request the prompt-injection screen fired on (flagged or blocked); "
        "tool results it fired on carry theirs on their step")

    @classmethod
    def of(cls, run: RunRecord) -> RunView:
        return cls(
            run_id=run.run_id,
            status=run.status,
            outcome=run.outcome,
            answer=run.answer,
            steps=run.steps or [],
            client_tool_calls=run.client_tool_calls or [],
            usage=run.usage,
            model_version=run.model_version,
            engine=run.engine,
            error=RunError(code=run.error_code, reason=run.error) if run.status in ("failed", "refused") else None,
            created_at=run.created_at,
            completed_at=run.completed_at,
            screening=run.screening,
        )


class TaggedRunView(RunView):
    metadata: dict[str, str] = {}


class RunList(BaseModel):
    runs: list[TaggedRunView]

    @classmethod
    def of(cls, runs: list[TaggedRun]) -> RunList:
        return cls(runs=[TaggedRunView(**RunView.of(t.run).model_dump(), metadata=t.metadata) for t in runs])


class RunLinks(BaseModel):
    self: str
    stream: str
    feedback: str


class RunAccepted(BaseModel):
    run_id: str
    status: RunStatus = "queued"
    links: RunLinks

    @classmethod
    def of(cls, run_id: str) -> RunAccepted:
        base = f"/v1/runs/{run_id}"
        return cls(run_id=run_id, links=RunLinks(self=base, stream="/v1/runs/stream", feedback=f"{base}/feedback"))


class FeedbackAccepted(BaseModel):
    feedback_id: str
    run_id: str


class TokenRequest(BaseModel):
    api_key: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class RetrainAccepted(BaseModel):
    request_id: str
    status: str = "accepted"


class AuditView(BaseModel):
    at: datetime | None
    subject: str
    role: str
    action: str
    target: str | None
    outcome: str
    client_ip: str | None
    details: dict[str, Any] | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditView:
        return cls(at=entry.at, subject=entry.subject, role=entry.role, action=entry.action, target=entry.target,
                   outcome=entry.outcome, client_ip=entry.client_ip, details=entry.details)


class ModelFileView(BaseModel):
    kind: str
    quantization: str | None
    uri: str
    sha256: str
    size_bytes: int


class ModelView(BaseModel):
    version: str
    status: str
    aliases: list[str]
    base_model: str
    quantization: str | None
    primary_score: float | None
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    job_id: str | None
    dataset_id: str | None
    adapter_uri: str | None
    evaluation_id: str | None
    files: list[ModelFileView]
    created_at: datetime

    @classmethod
    def of(cls, v: ModelVersion) -> ModelView:
        return cls(
            version=v.version, status=v.status, aliases=v.aliases, base_model=v.base_model,
            quantization=v.quantization, primary_score=primary_score(v.metrics), metrics=v.metrics,
            lineage=v.lineage, job_id=v.job_id, dataset_id=v.dataset_id, adapter_uri=v.adapter_uri,
            evaluation_id=v.evaluation_id,
            files=[ModelFileView(kind=f.kind, quantization=f.quantization, uri=f.uri, sha256=f.sha256,
                                 size_bytes=f.size_bytes) for f in v.files],
            created_at=v.created_at,
        )


class ModelList(BaseModel):
    aliases: dict[str, str]
    versions: list[ModelView]


class ModelCommandAccepted(BaseModel):
    request_id: str
    action: str
    model_version: str  # production once the command is carried out
    status: str  # accepted (sent), done (waited: production moved), pending (waited: not yet)
    production: str | None  # production now (as last read)
    aliases: dict[str, str] | None = None


class ApiKeyCreated(BaseModel):
    """The new key, shown this once: only a hash of its secret is stored."""

    key: str
    key_id: str
    name: str
    role: str


class ApiKeyView(BaseModel):
    key_id: str
    name: str
    role: str
    created_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ScreenVerdict(BaseModel):
    flagged: bool
    category: str | None = Field(description="the first firing rule's category; `learned` for the classifier alone")
    score: float = Field(description="the classifier's P(injection), highest over the text's views and windows")
    rules: list[str] = Field(description="the rules that fired")
    fired_by: list[str] = Field(description="`rules`, `classifier`, both or neither")
    hidden: list[str] = Field(description="what normalisation found hidden: tags, invisible, zalgo, confusables")
    ms: float
    source: str


class ScreenFlag(BaseModel):
    source: str = Field(description="user, system (the gateway screened it) or tool (the runner did)")
    loc: str | None = Field(default=None, description="the request's message: `messages.N.content`, `instruction`")
    step: int | None = Field(default=None, description="the trajectory step of a screened tool result")
    tool: str | None = None
    action: str = Field(default="", description="blocked, flagged or quarantined")
    category: str | None = None
    score: float = 0.0
    rules: list[str] = []
    fired_by: list[str] = []
    excerpt: str = Field(default="", description="the start of the screened text")


class FlaggedRun(BaseModel):
    run_id: str
    subject: str
    status: RunStatus
    created_at: datetime
    model_version: str | None = None
    flags: list[ScreenFlag]


class FlaggedRuns(BaseModel):
    runs: list[FlaggedRun]


class ScreenVerdicts(BaseModel):
    verdicts: list[ScreenVerdict]


class CanaryView(BaseModel):
    """A canary as the registry records it, with the judge's report (decision 0020)."""

    canary_id: str
    model_version: str
    production_version: str
    share_pct: float
    mode: str  # canary | ab
    status: str  # running, promoted, rolled_back, stopped, superseded
    min_samples: int
    max_duration_s: int
    started_by: str
    started_at: datetime
    ended_by: str | None = None
    ended_at: datetime | None = None
    reason: str = ""
    report: dict[str, Any] | None = Field(default=None, description="the judge's tallies, tests and decision")
    report_unavailable: str | None = Field(default=None, description="why there is no report, when there is none")

    @classmethod
    def of(cls, canary: Canary, report: dict[str, Any] | None = None, missing: str | None = None) -> CanaryView:
        return cls(canary_id=canary.canary_id, model_version=canary.version,
                   production_version=canary.production_version, share_pct=canary.share_pct, mode=canary.mode,
                   status=canary.status, min_samples=canary.min_samples, max_duration_s=canary.max_duration_s,
                   started_by=canary.started_by, started_at=canary.started_at, ended_by=canary.ended_by,
                   ended_at=canary.ended_at, reason=canary.reason, report=report, report_unavailable=missing)


class CanaryAccepted(BaseModel):
    request_id: str
    canary_id: str
    status: str  # accepted (sent); with ?wait=true: done (the registry shows it) or pending
    canary: CanaryView | None = None
