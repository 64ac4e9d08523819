"""The Gemma turn format with tool calls — the single definition used for serving, training
and the exported Modelfile. The bundled GGUF has no chat template, so the project owns it.

    <start_of_turn>user
    {system}\n\n{tool instructions}\n\n{user text}<end_of_turn>
    <start_of_turn>model
    <tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call><end_of_turn>
    <start_of_turn>user
    <tool_result name="calculator">391</tool_result><end_of_turn>
    <start_of_turn>model
    17*23 is 391.<end_of_turn>

Gemma has only `user` and `model` roles: system text and tool results travel in user turns.
BOS is not part of the text; the engine or tokenizer adds it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

START = "<start_of_turn>"
END = "<end_of_turn>"
END_OF_TURN_ID = 106
STOP_STRINGS = (END, "<eos>")
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

TOOL_INSTRUCTIONS = (
    "You can call tools. To call one, answer with only\n"
    '<tool_call>{"name": "<tool name>", "arguments": {<arguments as JSON>}}</tool_call>\n'
    "(one block per call). After the results come back, answer the user. "
    "If no tool fits, answer directly.\nTools:\n"
)

Message = dict[str, Any]  # OpenAI-style: role, content, tool_calls, tool_call_id, name


@dataclass(frozen=True)
class Segment:
    text: str
    trainable: bool  # True for the model's own output (loss is computed on these only)


def tool_block(tools: Sequence[dict[str, Any]]) -> str:
    lines = [json.dumps(t.get("function", t), separators=(",", ":"), sort_keys=True) for t in tools]
    return TOOL_INSTRUCTIONS + "\n".join(lines)


def format_tool_calls(calls: Iterable[dict[str, Any]]) -> str:
    return "".join(
        TOOL_CALL_OPEN
        + json.dumps({"name": c["name"], "arguments": c.get("arguments", {})}, separators=(", ", ": "))
        + TOOL_CALL_CLOSE
        for c in calls
    )


def canonical_schema(schema: Any) -> Any:
    """The schema with every `properties` mapping in name order, recursively. Key order is not
    data: storage (Postgres JSONB) and clients reorder keys, so the grammar (modelkit.tool_grammar)
    decodes and the training text (`canonical_arguments`) writes arguments in one order that
    depends only on the schema's names."""
    if isinstance(schema, Mapping):
        return {k: ({p: canonical_schema(v[p]) for p in sorted(v)} if k == "properties" and isinstance(v, Mapping)
                    else canonical_schema(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [canonical_schema(v) for v in schema]
    return schema


def canonical_arguments(schema: Any, value: Any) -> Any:
    """`value` with its keys in the order the grammar writes them (llama.cpp's converter on the
    `canonical_schema`): required properties by name, then optional ones by name, then keys the
    schema does not name; nested objects and array items likewise."""
    if not isinstance(schema, Mapping):
        return value
    props = schema.get("properties")
    if isinstance(value, dict) and isinstance(props, Mapping):
        required = set(schema.get("required") or [])
        order = sorted(k for k in props if k in required) + sorted(k for k in props if k not in required)
        keys = [k for k in order if k in value] + [k for k in value if k not in props]
        return {k: canonical_arguments(props.get(k), value[k]) for k in keys}
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [canonical_arguments(schema["items"], v) for v in value]
    return value


def _tool_result(msg: Message) -> str:
    content = msg.get("content")
    text = content if isinstance(content, str) else json.dumps(content)
    name = msg.get("name") or "tool"
    return f'<tool_result name="{name}">{text}</tool_result>'


def _assistant_text(msg: Message, schemas: Mapping[str, Any]) -> str:
    calls = msg.get("tool_calls") or []
    text = (msg.get("content") or "").strip()
    if calls:
        parsed = [_call_dict(c) for c in calls]
        parsed = [{**c, "arguments": canonical_arguments(schemas.get(c["name"]), c["arguments"])} for c in parsed]
        return (text + "\n" if text else "") + format_tool_calls(parsed)
    return text


def _call_dict(call: Any) -> dict[str, Any]:
    """Accept our ToolCall shape and OpenAI's {'function': {'name', 'arguments': str}} shape."""
    if hasattr(call, "model_dump"):
        call = call.model_dump()
    if "function" in call:
        fn = call["function"]
        args = fn.get("arguments", {})
        return {"name": fn["name"], "arguments": json.loads(args) if isinstance(args, str) else args}
    return {"name": call["name"], "arguments": call.get("arguments", {})}


def render_segments(messages: Sequence[Message], tools: Sequence[dict[str, Any]] = ()) -> list[Segment]:
    """The conversation as text segments; model turns (content + end marker) are trainable."""
    segments: list[Segment] = []
    pending_user: list[str] = []
    system_parts = [m.get("content") or "" for m in messages if m["role"] == "system"]
    preamble = "\n\n".join(p for p in [*system_parts, tool_block(tools) if tools else ""] if p)
    schemas = {fn.get("name"): fn.get("parameters") for fn in (t.get("function", t) for t in tools)}
    first_user = True

    def flush_user() -> None:
        nonlocal first_user
        if not pending_user:
            return
        body = "\n".join(pending_user)
        if first_user and preamble:
            body = preamble + "\n\n" + body
        first_user = False
        segments.append(Segment(f"{START}user\n{body}{END}\n", False))
        pending_user.clear()

    for msg in messages:
        role = msg["role"]
        if role == "system":
            continue
        if role == "user":
            pending_user.append(msg.get("content") or "")
        elif role == "tool":
            pending_user.append(_tool_result(msg))
        elif role == "assistant":
            if first_user and not pending_user and preamble:
                pending_user.append("")
            flush_user()
            segments.append(Segment(f"{START}model\n", False))
            segments.append(Segment(f"{_assistant_text(msg, schemas)}{END}", True))
            segments.append(Segment("\n", False))
        else:
            raise ValueError(f"unknown role {role!r}")
    flush_user()
    return segments


def render_prompt(messages: Sequence[Message], tools: Sequence[dict[str, Any]] = ()) -> str:
    """Text to send to the engine: the conversation plus the opening of the model's turn."""
    return "".join(s.text for s in render_segments(messages, tools)) + f"{START}model\n"


@dataclass(frozen=True)
class ParsedCall:
    name: str | None
    arguments: dict[str, Any] | None
    raw: str
    error: str | None  # None when the block parsed into {"name": str, "arguments": object}


@dataclass(frozen=True)
class ParsedOutput:
    text: str  # the output with tool-call blocks removed
    calls: list[ParsedCall]


_CALL_RE = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CALL_CLOSE) + r"|$)", re.S)


def parse_output(output: str) -> ParsedOutput:
    """Split model output into plain text and tool calls. Malformed calls are kept with an error."""
    for stop in STOP_STRINGS:
        output = output.split(stop, 1)[0]
    calls: list[ParsedCall] = []
    for match in _CALL_RE.finditer(output):
        raw = match.group(1).strip()
        calls.append(_parse_call(raw))
    text = _CALL_RE.sub("", output).strip()
    return ParsedOutput(text=text, calls=calls)


def _parse_call(raw: str) -> ParsedCall:
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ParsedCall(None, None, raw, f"invalid JSON: {exc.msg} at {exc.pos}")
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        return ParsedCall(None, None, raw, 'expected {"name": string, "arguments": object}')
    args = doc.get("arguments", {})
    if isinstance(args, str):  # some models emit arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return ParsedCall(doc["name"], None, raw, "arguments is a string that is not JSON")
    if not isinstance(args, dict):
        return ParsedCall(doc["name"], None, raw, "arguments must be an object")
    return ParsedCall(doc["name"], args, raw, None)
