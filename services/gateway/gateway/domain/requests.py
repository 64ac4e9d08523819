"""What a client may send: request bodies and the rules a run request must satisfy beyond its shape."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from contracts import ChatMessage, DatasetOptions, LoraOptions, RunOptions, ToolSpec, tool_choice_name
from servicekit.toolschema import InvalidToolSchemaError, SchemaValidators

from .errors import InvalidRequestError


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
    metadata: dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=512)]] = Field(
        default_factory=dict, max_length=16, description="the client's tags, stored with the run")

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
        answer = body.options.response_format
        if answer is not None and answer.json_schema is not None:
            try:
                self.validators.get("response_format", answer.json_schema)
            except InvalidToolSchemaError as exc:
                raise InvalidRequestError(("options", "response_format", "json_schema"),
                                          f"not a valid JSON Schema: {exc.reason}") from None
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


class CanarySubmission(BaseModel):
    """`POST /v1/registry/canary`: a share of live runs on a version (decision 0020)."""

    model_config = ConfigDict(extra="forbid")

    model_version: str = Field(min_length=1, max_length=200, description="a registered version (not production)")
    share: float = Field(gt=0, le=100, description="per cent of live runs, by hash of the run id; \"10%\" reads as 10")
    mode: Literal["canary", "ab"] = Field(
        default="canary", description="canary: the judge promotes or rolls back; ab: a fixed split and a report")
    min_samples: int = Field(default=30, ge=1, le=1_000_000, description="finished runs per arm before a verdict")
    max_duration_s: int = Field(default=3600, ge=10, le=30 * 86400, description="the judge's time limit")
    reason: str = Field(default="", max_length=2000)

    @field_validator("share", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().endswith("%"):
            return value.strip()[:-1].strip()
        return value


class CanaryStopSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


class RetrainSubmission(BaseModel):
    """Operator overrides for a retrain; everything optional."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
    dataset: StrictDatasetOptions | None = None
    training: StrictLoraOptions | None = None
    base_model: str | None = None


class ScreenItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=65536)
    source: Literal["user", "system", "tool"] = "user"


class ScreenSubmission(BaseModel):
    """Texts to screen for prompt injection (an operator measuring a corpus, or checking one)."""

    model_config = ConfigDict(extra="forbid")

    items: list[ScreenItem] = Field(min_length=1, max_length=256)


class ScreenMark(BaseModel):
    """An operator's verdict on a text: `benign` marks a false positive, `malicious` a miss."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=65536)
    label: Literal["benign", "malicious"]
    source: Literal["user", "system", "tool"] = "user"
    note: str | None = Field(default=None, max_length=2000)


class ScreenMarkSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    marks: list[ScreenMark] = Field(min_length=1, max_length=1000)


class ApiKeySubmission(BaseModel):
    """An admin's new API key: its role and its owner (the subject of its tokens)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "operator", "admin"]
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
