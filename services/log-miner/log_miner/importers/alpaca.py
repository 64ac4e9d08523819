"""Alpaca: `{"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}`.

The user turn is the instruction, followed by the input (a blank line between) when there is
one. Optional `hints` / `steps` (a list of strings) are step hints for reasoning data."""

from __future__ import annotations

from typing import Any

from ..domain.corpus import ImportedItem, MalformedRecordError, hints_of


class AlpacaImporter:
    format = "alpaca"

    def accepts(self, record: dict[str, Any]) -> bool:
        return "instruction" in record and "output" in record

    def convert(self, record: dict[str, Any]) -> ImportedItem:
        instruction, extra, output = record.get("instruction"), record.get("input") or "", record.get("output")
        if not isinstance(instruction, str) or not isinstance(output, str) or not isinstance(extra, str):
            raise MalformedRecordError("instruction, input and output must be strings")
        messages: list[dict[str, Any]] = []
        if isinstance(record.get("system"), str) and record["system"].strip():
            messages.append({"role": "system", "content": record["system"]})
        for pair in record.get("history") or []:
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise MalformedRecordError("history must be a list of [user, assistant] pairs")
            messages += [{"role": "user", "content": str(pair[0])}, {"role": "assistant", "content": str(pair[1])}]
        user = instruction.strip() + ("\n\n" + extra.strip() if extra.strip() else "")
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output.strip() or None}]
        origin = str(record["id"]) if record.get("id") is not None else None
        return ImportedItem(messages, [], origin=origin, hints=hints_of(record))
