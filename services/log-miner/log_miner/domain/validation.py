"""What every example must satisfy before it goes into a dataset; a failure names one reason.

Reasons (counted per reason in the manifest under `dropped.invalid`):

| reason | meaning |
|---|---|
| `no_messages` | nothing to train on |
| `bad_role` | a role other than system/user/assistant/tool, or a system turn after the start |
| `empty_turn` | a user/tool turn with no text, or an assistant turn with neither text nor calls |
| `no_assistant_turn` | nothing for the loss (the trainer learns on assistant turns only) |
| `last_turn_not_assistant` | the example must end with the model's turn |
| `invalid_tool_spec` | a tool is not an OpenAI function spec, a name repeats, or its parameters are not JSON Schema |
| `invalid_arguments` | a call's arguments are not a JSON object, or it has no name |
| `unknown_tool` | a call names a tool the example does not offer |
| `schema_violation` | a call's arguments do not match its tool's JSON Schema |
| `duplicate_call_id` | two calls share an id |
| `orphan_tool_result` | a tool turn answers no earlier call |
| `missing_tool_result` | a call (not in the last turn) got no result before the next assistant turn |
| `too_long` | the rendered conversation (chat format, tools included) exceeds `max_chars` |
| `too_many_messages` | more than `max_messages` turns |
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import ValidationError

from contracts import ToolSpec
from modelkit.chat_format import render_segments

from .examples import Example

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Limits:
    max_chars: int = 16_000  # rendered characters; ~4 characters per Gemma token on English text
    max_messages: int = 64


@lru_cache(maxsize=4096)
def _validator(schema_json: str) -> Draft202012Validator | None:
    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return None
    return Draft202012Validator(schema)


def _tool_validators(tools: Sequence[dict[str, Any]]) -> dict[str, Draft202012Validator] | None:
    out: dict[str, Draft202012Validator] = {}
    for raw in tools:
        try:
            spec = ToolSpec.model_validate(raw)
        except ValidationError:
            return None
        name = spec.function.name
        validator = _validator(json.dumps(spec.function.parameters, sort_keys=True))
        if validator is None or name in out:
            return None
        out[name] = validator
    return out


def invalid_reason(example: Example, limits: Limits = Limits()) -> str | None:
    """None for a valid example, else the first rule it breaks."""
    messages = example.messages
    if not messages:
        return "no_messages"
    if len(messages) > limits.max_messages:
        return "too_many_messages"
    validators = _tool_validators(example.tools)
    if validators is None:
        return "invalid_tool_spec"
    reason = _turns_reason(messages, validators)
    if reason is not None:
        return reason
    rendered = sum(len(s.text) for s in render_segments(messages, example.tools))
    if rendered > limits.max_chars:
        return "too_long"
    return None


def _turns_reason(messages: Sequence[dict[str, Any]], validators: dict[str, Draft202012Validator]) -> str | None:
    open_calls: set[str] = set()  # calls of the latest assistant turn still waiting for results
    answered: set[str] = set()
    seen_ids: set[str] = set()
    seen_non_system = False
    has_assistant = False
    for msg in messages:
        role = msg.get("role")
        if role not in ROLES or (role == "system" and seen_non_system):
            return "bad_role"
        content = msg.get("content")
        if content is not None and not isinstance(content, str):
            return "bad_role"
        text = (content or "").strip()
        if role != "system":
            seen_non_system = True
        if role in ("system", "user", "tool") and not text:
            return "empty_turn"
        if role == "tool":
            if msg.get("tool_call_id") not in open_calls:
                return "orphan_tool_result"
            answered.add(msg["tool_call_id"])
            continue
        if role != "assistant":
            continue
        if open_calls - answered:
            return "missing_tool_result"
        calls = msg.get("tool_calls") or []
        if not text and not calls:
            return "empty_turn"
        has_assistant = True
        open_calls, answered = set(), set()
        for call in calls:
            reason = _call_reason(call, validators)
            if reason is not None:
                return reason
            if call["id"] in seen_ids:
                return "duplicate_call_id"
            seen_ids.add(call["id"])
            open_calls.add(call["id"])
    if not has_assistant:
        return "no_assistant_turn"
    if messages[-1].get("role") != "assistant":
        return "last_turn_not_assistant"
    return None


def _call_reason(call: Any, validators: dict[str, Draft202012Validator]) -> str | None:
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call.get("name"):
        return "invalid_arguments"
    if not isinstance(call.get("id"), str) or not call["id"]:
        return "invalid_arguments"
    arguments = call.get("arguments")
    if not isinstance(arguments, dict):
        return "invalid_arguments"
    validator = validators.get(call["name"])
    if validator is None:
        return "unknown_tool"
    if next(validator.iter_errors(arguments), None) is not None:
        return "schema_violation"
    return None
