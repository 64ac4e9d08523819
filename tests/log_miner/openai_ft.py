"""OpenAI's chat fine-tuning line, as its fine-tuning guide describes it (chat messages with tool
calls, `tools` beside them), as a JSON Schema for the tests of the dataset export."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator

_TEXT = {"type": "string"}
_CALL = {"type": "object", "required": ["id", "type", "function"], "additionalProperties": False, "properties": {
    "id": _TEXT, "type": {"const": "function"},
    "function": {"type": "object", "required": ["name", "arguments"], "additionalProperties": False,
                 "properties": {"name": _TEXT, "arguments": _TEXT}}}}
_MESSAGE = {"oneOf": [
    {"type": "object", "required": ["role", "content"], "additionalProperties": False,
     "properties": {"role": {"enum": ["system", "developer", "user"]}, "content": _TEXT, "name": _TEXT}},
    {"type": "object", "required": ["role"], "additionalProperties": False,
     "anyOf": [{"required": ["content"]}, {"required": ["tool_calls"]}],
     "properties": {"role": {"const": "assistant"}, "content": {"type": ["string", "null"]},
                    "tool_calls": {"type": "array", "minItems": 1, "items": _CALL}, "weight": {"enum": [0, 1]}}},
    {"type": "object", "required": ["role", "tool_call_id", "content"], "additionalProperties": False,
     "properties": {"role": {"const": "tool"}, "tool_call_id": _TEXT, "content": _TEXT}},
]}
_TOOL = {"type": "object", "required": ["type", "function"], "properties": {
    "type": {"const": "function"},
    "function": {"type": "object", "required": ["name"],
                 "properties": {"name": _TEXT, "description": _TEXT, "parameters": {"type": "object"}}}}}
LINE_SCHEMA = {"type": "object", "required": ["messages"], "additionalProperties": False, "properties": {
    "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
    "tools": {"type": "array", "items": _TOOL}, "parallel_tool_calls": {"type": "boolean"}}}

VALIDATOR = Draft202012Validator(LINE_SCHEMA)


def problems(line: dict) -> list[str]:
    """What keeps `line` from being an OpenAI fine-tuning line (arguments must be JSON objects too)."""
    found = [e.message for e in VALIDATOR.iter_errors(line)]
    for m in line.get("messages", []):
        for c in m.get("tool_calls") or []:
            if not isinstance(json.loads(c["function"]["arguments"]), dict):
                found.append(f"arguments of {c['id']} is not a JSON object")
    return found
