"""OpenAI-style shapes found in corpora, normalised to the unified example format:
tools in OpenAI function format (or bare functions), calls in our `{id, name, arguments}`
shape or OpenAI's `{id, type, function: {name, arguments: "<json>"}}`."""

from __future__ import annotations

import json
from typing import Any

from ..domain.corpus import MalformedRecordError


def text_of(content: Any) -> str | None:
    """String content, or the text parts of OpenAI's content-part list."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text"]
        return "".join(parts)
    raise MalformedRecordError(f"content is neither text nor content parts: {type(content).__name__}")


def tools_of(raw: Any) -> list[dict[str, Any]]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):  # ShareGPT corpora often carry the tools as a JSON string
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise MalformedRecordError(f"tools is a string that is not JSON: {exc.msg}") from None
    if not isinstance(raw, list):
        raise MalformedRecordError("tools must be a list")
    tools = []
    for t in raw:
        if not isinstance(t, dict):
            raise MalformedRecordError("a tool must be an object")
        fn = t.get("function", t)
        if not isinstance(fn, dict) or not fn.get("name"):
            raise MalformedRecordError("a tool has no name")
        spec = {"name": fn["name"], "description": fn.get("description") or "",
                "parameters": fn.get("parameters") or {"type": "object", "properties": {}}}
        tools.append({"type": "function", "function": spec})
    return tools


def call_of(raw: Any, default_id: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise MalformedRecordError("a tool call must be an object")
    fn = raw.get("function") if isinstance(raw.get("function"), dict) else raw
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedRecordError("a tool call has no name")
    args = fn.get("arguments", fn.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            args = args  # kept as is: validation reports invalid_arguments
    call_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else default_id
    return {"id": call_id, "name": name, "arguments": args}


class ToolTurns:
    """Pairs tool results with the calls they answer when a corpus leaves ids or names out."""

    def __init__(self) -> None:
        self.count = 0
        self.pending: list[dict[str, Any]] = []

    def calls(self, raw_calls: list[Any]) -> list[dict[str, Any]]:
        out = []
        for raw in raw_calls:
            self.count += 1
            out.append(call_of(raw, f"call_{self.count}"))
        self.pending = list(out)
        return out

    def result(self, content: str | None, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
        match = next((c for c in self.pending if c["id"] == call_id), None) if call_id else None
        if match is None and self.pending and not call_id:
            match = self.pending[0]
        if match is not None:
            self.pending.remove(match)
        return {
            "role": "tool",
            "tool_call_id": call_id or (match["id"] if match else ""),
            "name": name or (match["name"] if match else "tool"),
            "content": content if isinstance(content, str) else json.dumps(content, ensure_ascii=False),
        }


def assistant(content: str | None, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content if content else None}
    if calls:
        msg["tool_calls"] = calls
    return msg
