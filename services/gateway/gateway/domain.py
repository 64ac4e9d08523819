"""Rules and entities of the gateway, no I/O: roles, what a run request must contain, the
records the use cases exchange with their ports, and the domain errors (mapped to HTTP in
`api/errors.py`, the one place that knows about status codes)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from contracts import ChatMessage, DatasetOptions, LoraOptions, RunOptions, ToolSpec, tool_choice_name
from servicekit.toolschema import InvalidToolSchemaError, SchemaValidators

# --------------------------------------------------------------------------- identities


class Role(enum.IntEnum):
    """Ordered: a role may do everything the roles below it may do."""

    USER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, value: object) -> Role:
        """The role named by a claim or a database row; ValueError for anything else."""
        if not isinstance(value, str):
            raise ValueError(f"role must be a string, not {type(value).__name__}")
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown role {value!r}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, from a verified access token."""

    subject: str
    role: Role
    token_id: str = ""
    expires_at: float = 0.0

    def allows(self, required: Role) -> bool:
        return self.role >= required


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One RSA key of the keyring; `created` (epoch seconds) decides which one is newest."""

    kid: str
    private_key: RSAPrivateKey
    created: float


# --------------------------------------------------------------------------- errors


class GatewayError(Exception):
    """Base of the gateway's domain errors."""


class AuthenticationError(GatewayError):
    """The caller could not be identified. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


class PermissionDeniedError(GatewayError):
    def __init__(self, required: Role, actual: Role) -> None:
        super().__init__(f"requires role {required.label}, token has {actual.label}")
        self.required = required
        self.actual = actual


class RunNotFoundError(GatewayError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} not found")
        self.run_id = run_id


class RunNotFinishedError(GatewayError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} has not finished yet")
        self.run_id = run_id


class RateLimitedError(GatewayError):
    def __init__(self, limit: str, retry_after_s: int) -> None:
        super().__init__(f"rate limit {limit} exceeded; retry in {retry_after_s}s")
        self.limit = limit
        self.retry_after_s = retry_after_s


class InvalidRequestError(GatewayError):
    """A request broke a rule that is not expressible in its schema; `loc` names the culprit
    as pydantic does: `("tools", 0, "function", "parameters")` (a plain field name also works)."""

    def __init__(self, loc: str | tuple[str | int, ...], message: str) -> None:
        self.loc: tuple[str | int, ...] = (loc,) if isinstance(loc, str) else tuple(loc)
        super().__init__(f"{self.field}: {message}")
        self.message = message

    @property
    def field(self) -> str:
        """The loc as one name: `tools[0].function.parameters`."""
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.loc).lstrip(".")


class ModelNotFoundError(GatewayError):
    def __init__(self, version: str) -> None:
        super().__init__(f"model version {version} is not registered")
        self.version = version


class ModelCommandConflictError(GatewayError):
    """A promotion or rollback the registry's current state rules out (nothing was sent)."""


# --------------------------------------------------------------------------- requests


class StrictRunOptions(RunOptions):
    """Client-facing options: contracts read messages tolerantly, but a client's typo in an
    option name must be a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class StrictDatasetOptions(DatasetOptions):
    model_config = ConfigDict(extra="forbid")


class StrictLoraOptions(LoraOptions):
    model_config = ConfigDict(extra="forbid")


class RunSubmission(BaseModel):
    """A run as a client asks for it: an instruction or a conversation, tools, options."""

    model_config = ConfigDict(extra="forbid")

    instruction: str | None = Field(default=None, min_length=1, description="shorthand for one user message")
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, validate_default=True)
    tools: list[ToolSpec] = Field(default_factory=list, max_length=128)
    options: StrictRunOptions = Field(default_factory=StrictRunOptions)

    @field_validator("messages", mode="after")
    @classmethod
    def _instruction_xor_messages(cls, messages: list[ChatMessage] | None, info: ValidationInfo):
        if "instruction" not in info.data:  # the instruction itself was invalid: that error suffices
            return messages
        instruction = info.data["instruction"]
        if messages is None and instruction is None:
            raise ValueError("give either `instruction` or `messages`")
        if messages is not None and instruction is not None:
            raise ValueError("give `instruction` or `messages`, not both")
        return messages

    def conversation(self) -> list[ChatMessage]:
        if self.messages is not None:
            return self.messages
        return [ChatMessage(role="user", content=self.instruction)]


class RunRules:
    """What a run request must satisfy beyond its shape, checked before anything is stored or
    published: every tool's parameters are JSON Schema (checked once per distinct schema, the
    runner's rule), a named `tool_choice` is one of the request's tools (to force one of the
    runner's own tools, the client lists it in `tools`), and GroupThink asks for no more samples
    than this gateway allows (each sample is a sequence decoded on the runner)."""

    def __init__(self, *, groupthink_max_samples: int = 8, validators: SchemaValidators | None = None) -> None:
        self.groupthink_max_samples = groupthink_max_samples
        self.validators = validators if validators is not None else SchemaValidators()

    def check(self, body: RunSubmission) -> None:
        """Raises InvalidRequestError naming the first field that breaks a rule."""
        for i, tool in enumerate(body.tools):
            try:
                self.validators.get(tool.function.name, tool.function.parameters)
            except InvalidToolSchemaError as exc:
                raise InvalidRequestError(("tools", i, "function", "parameters"),
                                          f"not a valid JSON Schema: {exc.reason}") from None
        forced = tool_choice_name(body.options.tool_choice)
        if forced is not None and forced not in {t.function.name for t in body.tools}:
            offered = ", ".join(repr(t.function.name) for t in body.tools) or "none"
            raise InvalidRequestError(
                ("options", "tool_choice"),
                f"tool_choice names {forced!r}, which is not among the request's tools ({offered}); "
                "to force one of the runner's own tools, list it in `tools`",
            )
        groupthink = body.options.groupthink
        if groupthink is not None and groupthink.samples > self.groupthink_max_samples:
            raise InvalidRequestError(
                ("options", "groupthink", "samples"),
                f"at most {self.groupthink_max_samples} GroupThink samples per turn on this gateway, "
                f"got {groupthink.samples}",
            )


class CorrectedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class FeedbackSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal[-1, 0, 1]
    corrected_answer: str | None = Field(default=None, max_length=100_000)
    corrected_tool_calls: list[CorrectedToolCall] | None = Field(default=None, max_length=64)
    comment: str | None = Field(default=None, max_length=10_000)


class PromoteSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
    quantization: str | None = Field(default=None, min_length=1, max_length=32,
                                     description="which exported GGUF to serve; default: the evaluated one")


class RollbackSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


class RetrainSubmission(BaseModel):
    """Operator overrides for a retrain; everything optional."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
    dataset: StrictDatasetOptions | None = None
    training: StrictLoraOptions | None = None
    base_model: str | None = None


# --------------------------------------------------------------------------- records


RunStatus = Literal["queued", "completed", "failed"]


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

    def visible_to(self, who: Identity) -> bool:
        """Users see their own runs; operators and admins see all."""
        return who.role >= Role.OPERATOR or self.subject == who.subject

    @property
    def finished(self) -> bool:
        return self.status != "queued"


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
