"""ShareGPT: `{"conversations": [{"from": ..., "value": ...}], "system"?, "tools"?}`.

`from`: human/user → user; gpt/assistant/model/chatgpt/bard → assistant; system → system;
function_call/tool_call → the assistant's call(s) (value: JSON object or list of
`{"name", "arguments"}`; merged into a directly preceding assistant text turn);
observation/function_response/tool/ipython → a tool result for the pending call.
`tools` may be a list or a JSON string of functions (the glaive / LLaMA-Factory layout)."""

from __future__ import annotations

import json
from typing import Any

from ..domain.corpus import ImportedItem, MalformedRecordError, hints_of
from .openai_shapes import ToolTurns, assistant, tools_of

USER = {"human", "user"}
ASSISTANT = {"gpt", "assistant", "model", "chatgpt", "bard"}
CALL = {"function_call", "tool_call"}
RESULT = {"observation", "function_response", "tool", "ipython"}


class ShareGPTImporter:
    format = "sharegpt"

    def accepts(self, record: dict[str, Any]) -> bool:
        return isinstance(record.get("conversations"), list)

    def convert(self, record: dict[str, Any]) -> ImportedItem:
        turns = ToolTurns()
        messages: list[dict[str, Any]] = []
        if isinstance(record.get("system"), str) and record["system"].strip():
            messages.append({"role": "system", "content": record["system"]})
        for turn in record["conversations"]:
            if not isinstance(turn, dict):
                raise MalformedRecordError("a conversation turn must be an object")
            who = str(turn.get("from", "")).lower()
            value = turn.get("value")
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            if who == "system":
                messages.append({"role": "system", "content": text})
            elif who in USER:
                messages.append({"role": "user", "content": text})
            elif who in ASSISTANT:
                messages.append(assistant(text))
            elif who in CALL:
                calls = turns.calls(_calls(value))
                last = messages[-1] if messages else None
                if last and last["role"] == "assistant" and not last.get("tool_calls"):
                    last["tool_calls"] = calls
                else:
                    messages.append(assistant(None, calls))
            elif who in RESULT:
                messages.append(turns.result(text))
            else:
                raise MalformedRecordError(f"unknown speaker {who!r}")
        return ImportedItem(messages, tools_of(record.get("tools")), origin=_origin(record), hints=hints_of(record))


def _calls(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise MalformedRecordError("function_call value is not JSON") from None
    return value if isinstance(value, list) else [value]


def _origin(record: dict[str, Any]) -> str | None:
    value = record.get("id")
    return str(value) if value is not None else None
