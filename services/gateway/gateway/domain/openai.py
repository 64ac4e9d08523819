"""OpenAI's chat completions request, as `POST /v1/chat/completions` takes it, and its translation
into a run: one model turn, the client's tools only (client-side, as OpenAI's API works).

What is refused and what is ignored (docs/openai.md says the same to users):
- an argument OpenAI does not know is refused (400 "Unrecognized request argument", as OpenAI does);
- arguments whose effect we cannot give are refused when they ask for it (400 `unsupported_value`):
  `top_p` below 1, non-zero `frequency_penalty` / `presence_penalty`, `logprobs`, a `logit_bias`,
  `modalities` other than text, non-text content parts, `n` above 1 with `stream`;
- `response_format` `json_object` / `json_schema` makes the answer JSON (of the schema), decoded
  under a grammar where the engine has one (llama.cpp; Ollama's `format` when no tool is offered);
- `seed` is taken and ignored (OpenAI: best effort, determinism not guaranteed; greedy decoding at
  temperature 0 is deterministic here anyway), so are `store` and `service_tier` (OpenAI's own
  storage and billing tiers).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import AnswerFormat, ChatMessage, ToolCall, ToolChoice, ToolSpec

from .errors import InvalidRequestError
from .requests import RunSubmission, StrictRunOptions

MAX_N = 8  # choices per request: each is a run on the runners


class UnsupportedValueError(InvalidRequestError):
    """An OpenAI argument whose effect this gateway cannot give (OpenAI's `unsupported_value`)."""


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(description="a JSON object, as a string")


class MessageToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    """One message as OpenAI's SDKs send it (fields they add that change nothing are ignored)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=128)
    tool_calls: list[MessageToolCall] | None = Field(default=None, max_length=64)
    tool_call_id: str | None = Field(default=None, max_length=128)


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    json_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's `POST /v1/chat/completions` body; unknown arguments are refused, as OpenAI does."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=128,
                       description="`production`, `candidate`, `previous` or a registry version (GET /v1/models)")
    messages: list[Message] = Field(min_length=1, max_length=1000)
    tools: list[ToolSpec] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    response_format: ResponseFormat | None = None
    user: str | None = Field(default=None, max_length=256)
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logprobs: bool | None = None
    logit_bias: dict[str, float] | None = None
    modalities: list[str] | None = None
    store: bool | None = None
    service_tier: str | None = Field(default=None, max_length=32)

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def streamed(self) -> bool:
        return bool(self.stream)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def parallel(self) -> bool:
        return self.parallel_tool_calls is not False


def to_run(req: ChatCompletionRequest) -> RunSubmission:
    """The run that answers one choice of the completion; InvalidRequestError (OpenAI's
    `param` in its `field`) for what the schema cannot say."""
    _refuse_unsupported(req)
    options: dict[str, Any] = {"max_steps": 1, "server_tools": False, "model": req.model}
    if req.temperature is not None:
        options["temperature"] = req.temperature
    if (max_tokens := req.max_completion_tokens or req.max_tokens) is not None:
        options["max_tokens"] = max_tokens
    if req.tool_choice is not None:
        options["tool_choice"] = req.tool_choice
    if req.stop:
        options["stop"] = [req.stop] if isinstance(req.stop, str) else req.stop
    if (fmt := req.response_format) is not None and fmt.type != "text":
        schema = fmt.json_schema.json_schema if fmt.type == "json_schema" and fmt.json_schema else None
        if fmt.type == "json_schema" and fmt.json_schema is None:
            raise InvalidRequestError(("response_format", "json_schema"), "json_schema needs its `json_schema`")
        options["response_format"] = AnswerFormat(type=fmt.type, json_schema=schema)
    metadata = dict(req.metadata or {})
    if req.user:
        metadata["openai.user"] = req.user
    return RunSubmission(messages=conversation(req.messages), tools=req.tools or [],
                         options=StrictRunOptions(**options), metadata=metadata)


def conversation(messages: list[Message]) -> list[ChatMessage]:
    """OpenAI messages as the runner's: text parts joined, `developer` as `system`, each tool
    call's arguments decoded, and every tool message answering a call made before it."""
    out: list[ChatMessage] = []
    open_calls: set[str] = set()
    for i, m in enumerate(messages):
        text = _text(m.content, i)
        if m.role == "tool":
            if not m.tool_call_id:
                raise InvalidRequestError(("messages", i, "tool_call_id"), "a tool message needs the id of the call "
                                          "it answers")
            if m.tool_call_id not in open_calls:
                raise InvalidRequestError(("messages", i, "tool_call_id"), f"{m.tool_call_id!r} answers no tool call "
                                          "of an earlier assistant message (or one answered already)")
            open_calls.discard(m.tool_call_id)
            out.append(ChatMessage(role="tool", content=text or "", tool_call_id=m.tool_call_id, name=m.name))
            continue
        calls = None
        if m.tool_calls:
            if m.role != "assistant":
                raise InvalidRequestError(("messages", i, "tool_calls"), "only assistant messages carry tool calls")
            calls = [ToolCall(id=c.id, name=c.function.name, arguments=_arguments(c, i, j))
                     for j, c in enumerate(m.tool_calls)]
            open_calls |= {c.id for c in calls}
        elif text is None and m.role != "assistant":
            raise InvalidRequestError(("messages", i, "content"), f"a {m.role} message needs content")
        role = "system" if m.role == "developer" else m.role
        out.append(ChatMessage(role=role, content=text, tool_calls=calls, name=m.name))
    return out


def _text(content: str | list[ContentPart] | None, i: int) -> str | None:
    if content is None or isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise UnsupportedValueError(("messages", i, "content", j, "type"),
                                        f"only text content parts are supported, not {part.type!r}")
        texts.append(part.text)
    return "\n".join(texts)


def _arguments(call: MessageToolCall, i: int, j: int) -> dict[str, Any]:
    loc = ("messages", i, "tool_calls", j, "function", "arguments")
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(loc, f"not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(arguments, dict):
        raise InvalidRequestError(loc, "must be a JSON object")
    return arguments


def _refuse_unsupported(req: ChatCompletionRequest) -> None:
    if req.top_p is not None and req.top_p < 1:
        raise UnsupportedValueError("top_p", "nucleus sampling is not supported: leave top_p out (or 1)")
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(req, name):
            raise UnsupportedValueError(name, "repetition penalties are not supported: leave it out (or 0)")
    if req.logprobs:
        raise UnsupportedValueError("logprobs", "log probabilities are not returned")
    if req.logit_bias:
        raise UnsupportedValueError("logit_bias", "logit bias is not supported")
    if req.modalities and set(req.modalities) != {"text"}:
        raise UnsupportedValueError("modalities", "only text output")
    if req.streamed and req.choices > 1:
        raise UnsupportedValueError("n", "n above 1 is not streamed: ask without stream, or once per choice")
