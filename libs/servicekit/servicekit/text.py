"""What text may reach storage: one rule for HTTP bodies, query strings, path parameters and broker
messages (issue 12).

Postgres `text` and `jsonb` cannot hold a NUL character, and a lone UTF-16 surrogate is not
Unicode at all: either one in a request used to come back as a 500 from the database. Both are
refused at the edge, naming where they are. JSON too deeply nested is refused too: Python's
parser would recurse until it fails, and no request of ours nests that deep.

The scan of a body is cheap where nothing is wrong (one regex over the bytes, a bracket count);
only a body that may hold such a character is decoded and walked to name the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 64  # arrays/objects inside each other; JSON Schemas of real tools stay far below
NUL = "\x00"
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})|\x00")
_SURROGATE = re.compile("[\ud800-\udfff]")
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings skipped whole, brackets one by one

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Unstorable:
    loc: Loc
    reason: str

    @property
    def field(self) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.loc).lstrip(".")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored, or None."""
    if NUL in value:
        return "contains a NUL character (\\u0000), which cannot be stored; remove it"
    if (m := _SURROGATE.search(value)) is not None:
        return f"contains a lone UTF-16 surrogate (\\u{ord(m.group()):04x}), which is not valid Unicode"
    return None


def storable(value: Any) -> Any:
    """`value` (text or decoded JSON) with each NUL written as the six characters `\\u0000` and
    each lone surrogate as U+FFFD: for text that must be kept, such as a tool's output."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value.replace(NUL, "\\u0000")) if text_problem(value) else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def unstorable_value(value: Any, loc: Loc = ()) -> Unstorable | None:
    """The first string (or object key) in decoded JSON that cannot be stored."""
    for where, text in _strings(value, loc):
        if (reason := text_problem(text)) is not None:
            return Unstorable(where, reason)
    return None


def unstorable_json(body: bytes, *, max_depth: int = MAX_DEPTH) -> Unstorable | None:
    """The first problem in a JSON body, or None (also None for a body that is not JSON: the
    parser that follows says what is wrong with it)."""
    if body.count(b"[") + body.count(b"{") > max_depth and (depth := _depth(body)) > max_depth:
        return Unstorable((), f"nests arrays and objects {depth} deep; at most {max_depth} are accepted")
    if _SUSPECT.search(body) is None:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return unstorable_value(value)


def _depth(body: bytes) -> int:
    depth = deepest = 0
    for m in _TOKENS.finditer(body):
        token = m.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _strings(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    stack: list[tuple[Loc, Any]] = [(loc, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if isinstance(key, str):
                    yield (*where, key), key
                stack.append(((*where, key), child))
        elif isinstance(item, list):
            stack.extend(((*where, i), child) for i, child in reversed(list(enumerate(item))))
