"""OpenAI chat JSONL: `{"messages": [...], "tools": [...], "hints": [...]?}` per line.

Accepts OpenAI's call shape (`function.arguments` as a JSON string) and ours, the legacy
`function_call` / `role: "function"` pair, and content-part lists (text parts only)."""

from __future__ import annotations

from typing import Any

from ..domain.corpus import ImportedItem, MalformedRecordError, hints_of
from .openai_shapes import ToolTurns, assistant, text_of, tools_of


class OpenAIMessagesImporter:
    format = "openai"

    def accepts(self, record: dict[str, Any]) -> bool:
        return isinstance(record.get("messages"), list)

    def convert(self, record: dict[str, Any]) -> ImportedItem:
        turns = ToolTurns()
        messages: list[dict[str, Any]] = []
        for m in record["messages"]:
            if not isinstance(m, dict):
                raise MalformedRecordError("a message must be an object")
            role = m.get("role")
            content = text_of(m.get("content"))
            if role in ("system", "developer", "user"):
                messages.append({"role": "system" if role == "developer" else role, "content": content or ""})
            elif role == "assistant":
                raw_calls = m.get("tool_calls") or ([m["function_call"]] if m.get("function_call") else [])
                messages.append(assistant(content, turns.calls(raw_calls) if raw_calls else None))
            elif role in ("tool", "function"):
                messages.append(turns.result(content, m.get("tool_call_id"), m.get("name")))
            else:
                raise MalformedRecordError(f"unknown role {role!r}")
        tools = tools_of(record.get("tools") or record.get("functions"))
        return ImportedItem(messages, tools, origin=_origin(record), hints=hints_of(record))


def _origin(record: dict[str, Any]) -> str | None:
    value = record.get("id")
    return str(value) if value is not None else None
