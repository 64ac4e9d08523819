"""BFCL question files (`{id, category, question, function, ground_truth, expect}` per line,
as in shared/eval/bfcl-dev; see its RULES.md).

- messages: the question's turns, flattened;
- tools: the offered functions as OpenAI tools, BFCL's types mapped to JSON Schema
  (dict→object, float→number, tuple→array, any→string), names kept (dots included);
- the answer: one assistant turn whose calls are the ground truth (parallel ground truth →
  several calls), each parameter given its first acceptable value; a parameter whose
  acceptable values include "" is omitted, unless the function's schema requires it (BFCL's
  checker demands required parameters first, so the first non-"" value is sent); dict values
  and lists of dicts take the first acceptable value of each key the same way;
- `expect: no_call` (irrelevance) or no ground truth: a plain answer that declines to call and
  names the offered tools (`examples.no_call_answer`), with the tools still offered.
"""

from __future__ import annotations

from typing import Any

from ..domain.corpus import ImportedItem, MalformedRecordError, hints_of
from ..domain.examples import no_call_answer

_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}
_OMIT = object()


def json_schema(schema: Any) -> Any:
    """BFCL's Python-flavoured types → JSON Schema types, at every depth."""
    if isinstance(schema, dict):
        out = {k: json_schema(v) for k, v in schema.items()}
        if isinstance(out.get("type"), str):
            out["type"] = _TYPES.get(out["type"], out["type"])
        return out
    if isinstance(schema, list):
        return [json_schema(v) for v in schema]
    return schema


def _value(value: Any) -> Any:
    """An acceptable value, with nested acceptable-value lists resolved."""
    if isinstance(value, dict):
        return _resolve_dict(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [_resolve_dict(v) for v in value]
    return value


def _resolve_dict(value: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, acceptable in value.items():
        if not isinstance(acceptable, list):  # a literal nested value, compared as is upstream
            out[key] = acceptable
            continue
        chosen = first_acceptable(acceptable, required=False)
        if chosen is not _OMIT:
            out[key] = chosen
    return out


def first_acceptable(acceptable: list[Any], *, required: bool) -> Any:
    if not acceptable or ("" in acceptable and not required):
        return _OMIT
    for value in acceptable:
        if value != "":
            return _value(value)
    return ""


def _arguments(params: dict[str, Any], required: set[str]) -> dict[str, Any]:
    args = {}
    for name, acceptable in params.items():
        if not isinstance(acceptable, list):
            raise MalformedRecordError(f"acceptable values of {name!r} are not a list")
        value = first_acceptable(acceptable, required=name in required)
        if value is not _OMIT:
            args[name] = value
    return args


class BfclImporter:
    format = "bfcl"

    def accepts(self, record: dict[str, Any]) -> bool:
        return "question" in record and "function" in record

    def convert(self, record: dict[str, Any]) -> ImportedItem:
        question, functions = record.get("question"), record.get("function")
        if not isinstance(question, list) or not isinstance(functions, list):
            raise MalformedRecordError("question and function must be lists")
        messages: list[dict[str, Any]] = []
        for turn in question:
            for m in turn if isinstance(turn, list) else [turn]:
                if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
                    raise MalformedRecordError("a question message needs role system/user/assistant")
                messages.append({"role": m["role"], "content": m.get("content") or ""})
        tools, required = [], {}
        for fn in functions:
            if not isinstance(fn, dict) or not fn.get("name"):
                raise MalformedRecordError("a function has no name")
            params = json_schema(fn.get("parameters") or {"type": "object", "properties": {}})
            required[fn["name"]] = set(params.get("required") or [])
            tools.append({"type": "function", "function": {
                "name": fn["name"], "description": fn.get("description") or "", "parameters": params}})
        truth = record.get("ground_truth")
        if record.get("expect") == "no_call" or not truth:
            messages.append({"role": "assistant", "content": no_call_answer([t["function"]["name"] for t in tools])})
        else:
            calls = []
            for n, call in enumerate(truth, start=1):
                if not isinstance(call, dict) or len(call) != 1:
                    raise MalformedRecordError("a ground-truth call must be {function_name: {param: [values]}}")
                (name, params), = call.items()
                if not isinstance(params, dict):
                    raise MalformedRecordError(f"ground truth of {name!r} is not an object")
                calls.append({"id": f"call_{n}", "name": name,
                              "arguments": _arguments(params, required.get(name, set()))})
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        origin = str(record["id"]) if record.get("id") is not None else None
        return ImportedItem(messages, tools, origin=origin, hints=hints_of(record))
