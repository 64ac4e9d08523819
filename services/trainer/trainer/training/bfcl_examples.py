"""Training examples from BFCL question files (test and benchmark data for the recipe).

Each BFCL item (see shared/eval/bfcl-dev/RULES.md) becomes one conversation in the training
JSONL format: the question's messages, the offered functions as OpenAI tools, and one assistant
turn whose tool calls are the ground truth — the first acceptable value of each parameter, and
parameters that may be omitted (acceptable values include "") left out.

Narrow on purpose: the log miner's BFCL importer should absorb this once it exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


def _json_schema(schema: Any) -> Any:
    """BFCL's Python-flavoured types → JSON Schema types (dict→object, float→number, ...)."""
    if isinstance(schema, dict):
        out = {k: _json_schema(v) for k, v in schema.items()}
        if isinstance(out.get("type"), str):
            out["type"] = _TYPE_MAP.get(out["type"], out["type"])
        return out
    if isinstance(schema, list):
        return [_json_schema(v) for v in schema]
    return schema


def _first_value(acceptable: list[Any]) -> Any:
    value = acceptable[0]
    if isinstance(value, dict):  # dict params: {key: [acceptable...]} → {key: first acceptable}
        return {k: _first_value(v) for k, v in value.items() if v and "" not in v}
    return value


def example_from_item(item: dict[str, Any]) -> dict[str, Any] | None:
    """One training record, or None when the item has no ground truth (irrelevance)."""
    calls = item.get("ground_truth")
    if not calls:
        return None
    messages = [dict(m) for turn in item["question"] for m in turn]
    tool_calls = []
    for n, call in enumerate(calls):
        ((name, params),) = call.items()
        args = {p: _first_value(vals) for p, vals in params.items() if vals and "" not in vals}
        tool_calls.append(
            {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        )
    messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
    tools = [
        {
            "type": "function",
            "function": {**fn, "parameters": _json_schema(fn.get("parameters", {}))},
        }
        for fn in item["function"]
    ]
    return {"messages": messages, "tools": tools}


def examples_from_file(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and (record := example_from_item(json.loads(line))) is not None:
                yield record


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
            n += 1
    return n
