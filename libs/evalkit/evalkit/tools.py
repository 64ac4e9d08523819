"""Offered functions as the runner offers tools, and schema validation of a model's call.

BFCL items describe functions in a Python-flavoured JSON-Schema dialect (`dict`, `float`, `tuple`,
`any`). The runner (and the trainer, and therefore the model) sees OpenAI-format tools with JSON
Schema: `{"type": "function", "function": {name, description, parameters}}`. Evaluation renders
prompts with the same tools, so the model is measured in the format it is served and trained in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

_TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


def json_schema(schema: Any) -> Any:
    """BFCL types -> JSON Schema types, recursively (dict→object, float→number, tuple→array, any→string)."""
    if isinstance(schema, Mapping):
        out = {k: json_schema(v) for k, v in schema.items()}
        if isinstance(out.get("type"), str):
            out["type"] = _TYPE_MAP.get(out["type"], out["type"])
        return out
    if isinstance(schema, list):
        return [json_schema(v) for v in schema]
    return schema


def tool_specs(functions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """An item's `function` list as the runner's tool list (ToolSpec.model_dump() shape)."""
    return [
        {
            "type": "function",
            "function": {
                "name": f["name"],
                "description": f.get("description", ""),
                "parameters": json_schema(f.get("parameters") or {"type": "object", "properties": {}}),
            },
        }
        for f in functions
    ]


def function_of(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """A tool in either shape (OpenAI tool or bare function) -> the function."""
    return tool.get("function", tool) if isinstance(tool.get("function"), Mapping) else tool


@lru_cache(maxsize=4096)
def _validator(schema_json: str) -> Any:
    import json

    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return None  # a schema JSON Schema cannot read: only the tool name is checked
    return Draft202012Validator(schema)


def schema_problem(tools: Sequence[Mapping[str, Any]], name: str | None, arguments: Any) -> str | None:
    """None when `name` is an offered tool and `arguments` validate against its parameters."""
    import json

    for tool in tools:
        fn = function_of(tool)
        if fn.get("name") != name:
            continue
        validator = _validator(json.dumps(json_schema(fn.get("parameters") or {}), sort_keys=True))
        if validator is None:
            return None
        error = next(iter(validator.iter_errors(arguments)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{name}: {where + ': ' if where else ''}{error.message}"[:300]
    return f"{name!r} is not an offered tool"
