"""External corpora: source specs, raw records, and what an importer hands back.

A source in `DatasetOptions.sources` is `mined`, or `<format>:<location>` with format one of
`openai`, `sharegpt`, `alpaca`, `bfcl`, or a bare location (`s3://bucket/key`, `/abs/path`)
whose format is detected from its first record. Locations are absolute local paths (on the
log-miner's host) or `s3://bucket/key`. Files are JSON Lines, or one JSON array.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("openai", "sharegpt", "alpaca", "bfcl")


class SourceSpecError(ValueError):
    """A source entry the miner cannot understand (unknown format, relative path)."""


class CorpusUnavailableError(Exception):
    """A corpus file that does not exist or may not be read; retrying will not help."""


class MalformedRecordError(ValueError):
    """A corpus record that cannot be converted into a conversation."""


@dataclass(frozen=True)
class SourceSpec:
    raw: str  # as written in DatasetOptions.sources (the key of weights and meta.source)
    format: str  # mined | openai | sharegpt | alpaca | bfcl | auto
    location: str = ""


def parse_source(raw: str) -> SourceSpec:
    text = raw.strip()
    if text == "mined":
        return SourceSpec(raw, "mined")
    head, sep, rest = text.partition(":")
    if sep and head in FORMATS:
        fmt, location = head, rest
    elif sep and head and head != "s3" and "/" not in head:
        raise SourceSpecError(f"unknown corpus format {head!r} in {raw!r} (known: mined, {', '.join(FORMATS)})")
    else:
        fmt, location = "auto", text
    if not (location.startswith("s3://") or location.startswith("/")):
        raise SourceSpecError(f"corpus location must be an absolute path or s3://bucket/key: {raw!r}")
    return SourceSpec(raw, fmt, location)


@dataclass(frozen=True)
class ImportedItem:
    """One conversation from a corpus, already in the unified message shape."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    origin: str | None = None
    hints: tuple[str, ...] = ()


def parse_records(data: bytes) -> Iterator[tuple[int, Any]]:
    """(line number, decoded JSON or None when the line is not JSON) for JSONL; a JSON array
    yields (index + 1, item)."""
    text = data.decode("utf-8-sig", errors="replace")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            yield 1, None
            return
        yield from enumerate(items, start=1)
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError:
            yield n, None


def hints_of(record: dict[str, Any]) -> tuple[str, ...]:
    """Optional step hints: `hints` (or Alpaca-style `steps`, or `meta.hints`): a list of strings."""
    raw = record.get("hints") or record.get("steps") or (record.get("meta") or {}).get("hints") or ()
    if isinstance(raw, str):
        raw = [raw]
    return tuple(str(h).strip() for h in raw if str(h).strip())
