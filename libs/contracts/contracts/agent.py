"""Agent execution messages: requests, streamed steps, outcomes, logged interactions."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .envelope import Contract


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ChatMessage(BaseModel):
    """One turn, OpenAI-style. `tool_calls` on assistant turns, `tool_call_id` on tool turns."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolSpec(BaseModel):
    """A tool in OpenAI function format. Tools the runner does not implement are client-side."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(BaseModel):
    """OpenAI's `{"type": "function", "function": {"name": ...}}`: the model must call this tool."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


def tool_choice_name(choice: ToolChoice) -> str | None:
    """The tool a named choice forces; None for the modes."""
    return choice.function.name if isinstance(choice, NamedToolChoice) else None


class GroupThinkOptions(BaseModel):
    """Sample N answers of each model turn together and keep the majority (see docs/groupthink)."""

    model_config = ConfigDict(extra="ignore")

    samples: int = Field(ge=2, le=64, description="answers sampled per model turn; the gateway caps it lower")
    temperature: float = Field(default=0.7, gt=0.0, le=2.0)


class AnswerFormat(BaseModel):
    """OpenAI's `response_format`: the text answer is JSON, any object (`json_object`) or one of
    `json_schema`; decoded under a grammar where the engine has one."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["json_object", "json_schema"]
    json_schema: dict[str, Any] | None = Field(default=None, description="the answer's JSON Schema (json_schema)")

    def answer_schema(self) -> dict[str, Any]:
        return self.json_schema if self.type == "json_schema" and self.json_schema else {"type": "object"}


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    max_steps: int = Field(default=6, ge=1, le=32)
    max_tokens: int = Field(default=256, ge=1, le=8192, description="per model turn")
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    server_tools: bool = Field(default=True, description="offer the runner's own tools")
    stream: bool = True
    tool_choice: ToolChoice = Field(
        default="auto", description="auto: text or calls; none: text only; required: calls only; or one named tool"
    )
    constrained: Literal["auto", "off"] | None = Field(
        default=None, description="grammar-constrained decoding of tool calls; default: the engine's setting"
    )
    groupthink: GroupThinkOptions | None = None
    model: str | None = Field(
        default=None, max_length=128, description="registry version or alias to serve the run; default: production"
    )
    stop: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=4, description="more strings that end a model turn (OpenAI's `stop`)"
    )
    response_format: AnswerFormat | None = Field(default=None, description="a JSON answer (OpenAI's response_format)")


class Principal(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subject: str
    role: Literal["user", "operator", "admin"]


SCREENED_INPUTS = ("messages of the request the prompt-injection screen fired on and that were let through: "
                   "`source` (user, system, tool), `loc` (messages.N.content), the verdict (category, rules, "
                   "score) and `action` (flagged; quarantined: a client's tool result the model read fenced)")


class AgentRunRequested(Contract):
    routing_key: ClassVar[str] = "agent.run.requested.v1"

    run_id: str
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolSpec] = Field(default_factory=list)
    options: RunOptions = Field(default_factory=RunOptions)
    principal: Principal
    reply_to: str | None = Field(default=None, description="queue of the gateway instance")
    metadata: dict[str, str] = Field(default_factory=dict, description="the client's tags (`session_id` links "
                                                                       "the runs of one conversation)")
    screening: list[dict[str, Any]] = Field(default_factory=list, description=SCREENED_INPUTS)


class AgentRunCancelRequested(Contract):
    """The requester is gone (a client dropped its stream of the run): the runner running it stops
    the model turn, frees its engine and records the run as failed (`error_code` `cancelled`). A
    notification to every runner (each instance's own queue); a runner not running the run ignores it."""

    routing_key: ClassVar[str] = "agent.run.cancel.v1"
    requires_subscriber: ClassVar[bool] = False

    run_id: str
    reason: str = Field(default="", max_length=500)


StepKind = Literal["started", "token", "tool_call", "tool_result", "final", "error"]


class AgentRunStep(Contract):
    """Streamed to the requesting gateway's reply queue while a run executes."""

    routing_key: ClassVar[str] = "agent.run.step.v1"

    run_id: str
    index: int
    kind: StepKind
    text: str | None = None
    tool_call: ToolCall | None = None
    tool_result: Any = None
    is_error: bool = False
    elapsed_ms: float = 0.0


class Decoding(BaseModel):
    """How a model turn was decoded (on `model` steps)."""

    model_config = ConfigDict(extra="ignore")

    constrained: bool = False
    unconstrained_tools: list[str] = Field(
        default_factory=list, description="offered tools whose schema the grammar could not express (decoded freely)"
    )
    samples: int = 1
    agreement: float | None = Field(default=None, description="GroupThink: share of samples that gave the winner")


class TrajectoryStep(BaseModel):
    """One recorded step of a run: a model turn, a tool call, or a tool result."""

    model_config = ConfigDict(extra="ignore")

    index: int
    kind: Literal["model", "tool_call", "tool_result", "final", "error"]
    text: str | None = None
    tool_call: ToolCall | None = None
    tool_result: Any = None
    valid: bool = True
    error: str | None = Field(default=None, description="why a call was invalid or a tool failed")
    started_ms: float = 0.0
    duration_ms: float = 0.0
    decoding: Decoding | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    screening: dict[str, Any] | None = Field(
        default=None, description="tool results the prompt-injection screen fired on: its verdict (category, "
        "rules, score) and the action taken (quarantined: the model read it fenced as data; flagged)")


class Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_ms: float = 0.0
    total_ms: float = 0.0


RunOutcome = Literal["answered", "client_tool_call", "max_steps", "timeout", "error"]


class AgentRunCompleted(Contract):
    routing_key: ClassVar[str] = "agent.run.completed.v1"
    # Replaced by AgentRunFinished (decision 0016): still published while consumers switch, and
    # then nothing may be bound to it any more, so it goes out without `mandatory` (decision 0010).
    requires_subscriber: ClassVar[bool] = False

    run_id: str
    outcome: RunOutcome
    answer: str | None = None
    client_tool_calls: list[ToolCall] = Field(default_factory=list)
    steps: list[TrajectoryStep] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model_version: str
    engine: str
    confidence: float | None = Field(
        default=None, description="GroupThink runs: the lowest agreement of any model turn (1.0 = unanimous)"
    )
    screening: list[dict[str, Any]] = Field(default_factory=list, description=SCREENED_INPUTS)


class AgentRunFailed(Contract):
    routing_key: ClassVar[str] = "agent.run.failed.v1"
    # Replaced by AgentRunFinished (decision 0016): still published while consumers switch, and
    # then nothing may be bound to it any more, so it goes out without `mandatory` (decision 0010).
    requires_subscriber: ClassVar[bool] = False

    run_id: str
    error_code: str
    reason: str
    model_version: str | None = None


class InteractionLogged(Contract):
    """The whole trajectory of a finished run: the raw material of the learning loop."""

    routing_key: ClassVar[str] = "interaction.logged.v1"
    # Replaced by AgentRunFinished (decision 0016): still published while consumers switch, and
    # then nothing may be bound to it any more, so it goes out without `mandatory` (decision 0010).
    requires_subscriber: ClassVar[bool] = False

    run_id: str
    outcome: RunOutcome
    messages: list[ChatMessage]
    tools: list[ToolSpec] = Field(default_factory=list)
    steps: list[TrajectoryStep] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model_version: str
    engine: str
    confidence: float | None = Field(
        default=None, description="GroupThink runs: the lowest agreement of any model turn (1.0 = unanimous)"
    )
    subject: str | None = None
    screening: list[dict[str, Any]] = Field(default_factory=list, description=SCREENED_INPUTS)


class AgentRunFinished(Contract):
    """A recorded run: its outcome and its whole trajectory, published once. The gateway's run
    index and the log-miner each read it from a queue of their own (one publish, two queues).
    It replaces AgentRunCompleted, AgentRunFailed and InteractionLogged, which the runner still
    publishes beside it while consumers switch (decision 0016)."""

    routing_key: ClassVar[str] = "agent.run.finished.v1"

    run_id: str
    status: Literal["completed", "failed"] = Field(description="failed: the run could not execute (error_code)")
    outcome: RunOutcome
    answer: str | None = None
    client_tool_calls: list[ToolCall] = Field(default_factory=list)
    messages: list[ChatMessage] = Field(min_length=1, description="the conversation as the model ended it")
    tools: list[ToolSpec] = Field(default_factory=list)
    steps: list[TrajectoryStep] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model_version: str
    engine: str
    confidence: float | None = Field(
        default=None, description="GroupThink runs: the lowest agreement of any model turn (1.0 = unanimous)"
    )
    subject: str | None = Field(default=None, description="who asked for the run")
    error_code: str | None = Field(default=None, description="failed runs: why (prompt_too_long, ...)")
    error: str | None = Field(default=None, description="failed runs: the reason in words")
    metadata: dict[str, str] = Field(default_factory=dict, description="the request's tags, as the client gave them")
    screening: list[dict[str, Any]] = Field(default_factory=list, description=SCREENED_INPUTS + " (the gateway's "
                                            "flags on user and system messages, the runner's on tool messages)")


class FeedbackSubmitted(Contract):
    routing_key: ClassVar[str] = "feedback.submitted.v1"

    feedback_id: str
    run_id: str
    rating: Literal[-1, 0, 1]
    corrected_answer: str | None = None
    corrected_tool_calls: list[ToolCall] | None = None
    comment: str | None = None
    submitted_by: str
