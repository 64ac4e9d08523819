"""Tool parameter schemas: checked against the JSON Schema metaschema once per distinct schema.

The gateway refuses a request whose tool schema is not JSON Schema (a 422 naming the tool);
the runner validates every call against the same schemas. Both keep the validators here.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


class InvalidToolSchemaError(Exception):
    """A tool's parameters schema is not valid JSON Schema. `reason` is jsonschema's message,
    with the place in the schema where it is not at the top."""

    def __init__(self, tool: str, reason: str) -> None:
        super().__init__(f"tool {tool!r}: {reason}")
        self.tool = tool
        self.reason = reason


class SchemaValidators:
    """Validators of tool parameter schemas, built once per distinct schema.

    Checking a schema against the metaschema walks the whole metaschema: per run it cost more
    CPU than everything else a zero-cost run does. Pinned schemas (a service's own tools,
    checked at start-up) stay; the requests' schemas are kept in a bounded LRU by content hash.
    Invalid schemas are not kept: they are refused again, at the same cost, each time.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._pinned: dict[bytes, Draft202012Validator] = {}
        self._recent: OrderedDict[bytes, Draft202012Validator] = OrderedDict()

    def pin(self, name: str, schema: Mapping[str, Any]) -> Draft202012Validator:
        """Check and keep for good (raises InvalidToolSchemaError)."""
        key = _schema_key(schema)
        if key not in self._pinned:
            validator = self._recent.pop(key, None)
            self._pinned[key] = validator if validator is not None else _build(name, schema)
        return self._pinned[key]

    def get(self, name: str, schema: Mapping[str, Any]) -> Draft202012Validator:
        """The validator of `schema`; raises InvalidToolSchemaError when it is not JSON Schema."""
        key = _schema_key(schema)
        if (validator := self._pinned.get(key)) is not None:
            return validator
        if (validator := self._recent.get(key)) is not None:
            self._recent.move_to_end(key)
            return validator
        validator = self._recent[key] = _build(name, schema)
        if len(self._recent) > self.size:
            self._recent.popitem(last=False)
        return validator

    def __len__(self) -> int:
        return len(self._pinned) + len(self._recent)


def _schema_key(schema: Mapping[str, Any]) -> bytes:
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _build(name: str, schema: Mapping[str, Any]) -> Draft202012Validator:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.path)
        raise InvalidToolSchemaError(name, f"at {where}: {exc.message}" if where else exc.message) from exc
    return Draft202012Validator(schema)
