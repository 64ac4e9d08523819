"""Rules of a run that need no I/O: which tools a run may call, validating a call, and what
part of the model's output a client may see while it streams."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator

from contracts import ToolCall, ToolChoice, ToolSpec, tool_choice_name
from modelkit.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, ParsedCall
from modelkit.tool_grammar import ToolChoiceError, ToolConstraint  # noqa: F401 - ToolChoiceError: the run's error
# The schema check lives in servicekit: the gateway refuses invalid schemas with the same rule.
from servicekit.toolschema import InvalidToolSchemaError, SchemaValidators  # noqa: F401


class ToolError(Exception):
    """A tool could not do what was asked; the message is shown to the model as the result."""


class PromptTooLongError(Exception):
    """The rendered conversation does not fit the engine's context window."""


class TooManySamplesError(Exception):
    """A GroupThink run asked for more samples per turn than this runner allows."""


class RunCancelledError(Exception):
    """The run's requester cancelled it (AgentRunCancelRequested) while this runner ran it."""


class ModelNotServedError(Exception):
    """A run asked (`options.model`) for a model this runner cannot serve: unknown to the registry,
    an engine that cannot switch models, extra models turned off, or too little memory to load it."""


InvalidReason = Literal["invalid_json", "unknown_tool", "schema_violation", "not_allowed"]


def turn_constraint(tools: Sequence[Mapping[str, Any]], choice: ToolChoice, *, called: bool,
                    answer_schema: Mapping[str, Any] | None = None) -> ToolConstraint | None:
    """What one model turn may say under the run's tool_choice (None when no tool is offered, the
    choice asks for none and the answer may be any text). `none` holds for every turn; `required`
    and a named tool hold until the run has made a valid call, then turns are `auto`: a choice that
    held for every turn would never let the run answer (the OpenAI Agents SDK resets tool_choice the
    same way). `answer_schema` (response_format) makes a text answer JSON of that schema.
    Raises ToolChoiceError for a choice that cannot hold."""
    name = tool_choice_name(choice)
    if not tools and choice in ("auto", "none"):
        return None if answer_schema is None else ToolConstraint((), "none", answer_schema=answer_schema)
    if called and choice != "none":
        return ToolConstraint(tuple(tools), "auto", answer_schema=answer_schema)
    if name is not None:
        return ToolConstraint(tuple(tools), name=name, answer_schema=answer_schema)
    return ToolConstraint(tuple(tools), choice, answer_schema=answer_schema)  # type: ignore[arg-type] - a mode


@dataclass(frozen=True)
class OfferedTool:
    spec: ToolSpec
    server_side: bool
    validator: Draft202012Validator


class Toolset:
    """The tools of one run: the request's tools plus, when asked for, the runner's own.

    A request tool whose name the runner implements runs server-side; any other is the
    client's (its call ends the turn, as in the OpenAI API)."""

    def __init__(self, request_tools: Iterable[ToolSpec], server_specs: Mapping[str, ToolSpec], *,
                 offer_server_tools: bool, validators: SchemaValidators | None = None) -> None:
        validators = validators if validators is not None else SchemaValidators()
        offered: dict[str, ToolSpec] = dict(server_specs) if offer_server_tools else {}
        for spec in request_tools:
            offered[spec.function.name] = spec
        self.tools: dict[str, OfferedTool] = {
            name: OfferedTool(spec, name in server_specs, validators.get(name, spec.function.parameters))
            for name, spec in offered.items()
        }

    @property
    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self.tools.values()]

    def is_server_side(self, name: str) -> bool:
        return self.tools[name].server_side

    def validate(self, call: ParsedCall) -> tuple[InvalidReason, str] | None:
        """None when the call can run; else why not, in words the model can act on."""
        if call.error is not None or call.name is None or call.arguments is None:
            return "invalid_json", call.error or "the tool call is not valid JSON"
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return "unknown_tool", f"unknown tool {call.name!r}; available tools: {known}"
        errors = sorted(tool.validator.iter_errors(call.arguments), key=lambda e: list(e.absolute_path))
        if errors:
            detail = "; ".join(_describe(e) for e in errors[:3])
            return "schema_violation", f"arguments do not match the schema of {call.name!r}: {detail}"
        return None


def refused(constraint: ToolConstraint | None, call: ParsedCall) -> tuple[InvalidReason, str] | None:
    """A call the turn's tool_choice forbids (only possible where the turn decoded freely)."""
    reason = constraint.refusal(call.name) if constraint is not None else None
    return ("not_allowed", reason) if reason is not None else None


def _describe(error: Any) -> str:
    where = "/".join(map(str, error.absolute_path))
    return f"{where}: {error.message}" if where else error.message


def tool_call_of(call: ParsedCall, call_id: str) -> ToolCall:
    return ToolCall(id=call_id, name=call.name or "", arguments=call.arguments or {})


def raw_call_block(call: ParsedCall) -> str:
    return f"{TOOL_CALL_OPEN}{call.raw}{TOOL_CALL_CLOSE}"


class VisibleText:
    """Filters streamed model output down to what a client should see as text: tool-call
    blocks are withheld (they are streamed as structured tool_call steps instead).

    Text that might be the start of `<tool_call>` is held back until it is decided."""

    def __init__(self) -> None:
        self._pending = ""
        self._in_call = False

    def feed(self, chunk: str) -> str:
        self._pending += chunk
        out: list[str] = []
        while self._pending:
            if self._in_call:
                end = self._pending.find(TOOL_CALL_CLOSE)
                if end < 0:
                    # keep only what could be the start of the closing tag
                    self._pending = self._pending[-(len(TOOL_CALL_CLOSE) - 1):]
                    break
                self._pending = self._pending[end + len(TOOL_CALL_CLOSE):]
                self._in_call = False
                continue
            start = self._pending.find(TOOL_CALL_OPEN)
            if start >= 0:
                out.append(self._pending[:start])
                self._pending = self._pending[start + len(TOOL_CALL_OPEN):]
                self._in_call = True
                continue
            keep = _partial_suffix(self._pending, TOOL_CALL_OPEN)
            out.append(self._pending[: len(self._pending) - keep])
            self._pending = self._pending[len(self._pending) - keep:]
            break
        return "".join(out)

    def flush(self) -> str:
        """End of the turn: text held back as a possible tag start was plain text after all."""
        rest, self._pending = ("" if self._in_call else self._pending), ""
        return rest


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class EngineError(Exception):
    """The engine could not generate (server unreachable, crashed, refused). Worth a retry."""


class ModelLoadError(Exception):
    """A deployed model version could not be made ready to serve (download, checksum, load, warm-up)."""


class RegistryUnavailableError(Exception):
    """The model registry could not be read (database down, schema missing)."""
