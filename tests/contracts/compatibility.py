"""Backward compatibility of a contract's JSON schema against its committed snapshot.

Breaking: a removed field, a field whose type (or constraint, enum, format) changed, a newly
required field, a removed nested model. Compatible: an added optional field, a new nested
model, edited titles, descriptions, examples and defaults.
"""

from __future__ import annotations

from typing import Any

# Documentation-only keys: changing them never breaks a producer or a consumer.
_COSMETIC = frozenset({"title", "description", "default", "examples"})


def signature(schema: Any) -> Any:
    """The schema with cosmetic keys removed, recursively: what a value must look like."""
    if isinstance(schema, dict):
        return {k: signature(v) for k, v in sorted(schema.items()) if k not in _COSMETIC}
    if isinstance(schema, list):
        return [signature(v) for v in schema]
    return schema


def _object_changes(where: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changes: list[str] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_prop in old_props.items():
        if name not in new_props:
            changes.append(f"{where}.{name}: field removed")
        elif signature(old_prop) != signature(new_props[name]):
            changes.append(
                f"{where}.{name}: type changed from {signature(old_prop)} to {signature(new_props[name])}"
            )
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        changes.append(f"{where}.{name}: newly required")
    rest_old = {k: v for k, v in old.items() if k not in {"properties", "required", "$defs"}}
    rest_new = {k: v for k, v in new.items() if k not in {"properties", "required", "$defs"}}
    if signature(rest_old) != signature(rest_new):
        changes.append(f"{where}: schema changed from {signature(rest_old)} to {signature(rest_new)}")
    return changes


def breaking_changes(old: dict[str, Any], new: dict[str, Any], name: str = "") -> list[str]:
    """Every incompatible difference between an old and a new model JSON schema."""
    changes = _object_changes(name or old.get("title", "root"), old, new)
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})
    for def_name, old_def in old_defs.items():
        if def_name not in new_defs:
            changes.append(f"$defs.{def_name}: nested model removed")
        else:
            changes.extend(_object_changes(f"$defs.{def_name}", old_def, new_defs[def_name]))
    return changes
