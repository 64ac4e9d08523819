"""A dataset line in OpenAI's chat fine-tuning shape, for the tools that load that (OpenAI
fine-tuning, TRL's `SFTTrainer`, `datasets.load_dataset("json", ...)`). No I/O.

Ours (examples.py) keeps calls as `{"id", "name", "arguments": {...}}`; OpenAI's as
`{"id", "type": "function", "function": {"name", "arguments": "<JSON string>"}}`. Tool messages keep
`tool_call_id` and `content`; `tools` stays beside `messages`; `meta` (lineage) is dropped, and
`parallel_tool_calls` is set when a turn makes several calls. The log-miner's OpenAI importer
(`importers/openai_messages.py`) reads this shape back.
"""

from __future__ import annotations

import json
from typing import Any


def openai_call(call: dict[str, Any]) -> dict[str, Any]:
    return {"id": call["id"], "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments") or {})}}


def openai_message(m: dict[str, Any]) -> dict[str, Any]:
    role = m["role"]
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        if m.get("content") or not m.get("tool_calls"):
            out["content"] = m.get("content") or ""
        if m.get("tool_calls"):
            out["tool_calls"] = [openai_call(c) for c in m["tool_calls"]]
        return out
    if role == "tool":
        return {"role": "tool", "tool_call_id": m.get("tool_call_id") or "", "content": m.get("content") or ""}
    return {"role": role, "content": m.get("content") or ""}


def openai_line(line: dict[str, Any]) -> dict[str, Any]:
    """One line of our train.jsonl / val.jsonl as an OpenAI fine-tuning line."""
    out: dict[str, Any] = {"messages": [openai_message(m) for m in line["messages"]]}
    if line.get("tools"):
        out["tools"] = line["tools"]
        if any(len(m.get("tool_calls") or []) > 1 for m in line["messages"]):
            out["parallel_tool_calls"] = True
    return out
