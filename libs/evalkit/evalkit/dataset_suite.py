"""A BFCL-format suite from a log-miner dataset's validation split: the task the loop just trained for.

Each line of a dataset's `val.jsonl` (`{"messages", "tools", "meta"}`, the log-miner's SFT
format) that offers tools and has a known answer becomes one BFCL item:

- `question`: the conversation up to the model's first turn after the last user message;
- `function`: the offered tools (OpenAI format → BFCL functions, JSON Schema kept);
- the answer is that turn, as the dataset teaches it (logged, or corrected by feedback):
  - calls → `ground_truth` (each argument's logged value is its one acceptable value),
    `expect: ast_match`;
  - a plain text answer → `expect: no_call`;
- `category`, inferred as BFCL would file it (`suites.infer_category`): no call → irrelevance;
  one call → simple (one tool offered) / multiple (several offered); several calls → parallel
  (all of one function) / parallel_multiple (across functions).

Skipped, and counted by reason: no tools offered (`no_tools`), no answer after the last user
message or an answer with neither calls nor text (`no_answer`), a call of a tool the example does
not offer or with arguments that are not an object (`unknown_call`), and repeats of an item
already taken (`duplicate`: a weighted source repeats its examples, and a repeat must not
count twice).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .suites import AST, Suite, SuiteError, infer_category, logged_answer, normalize_item

DATASET_SUITE = "dataset-val"  # the suite's name where the evaluator builds it

NO_TOOLS = "no_tools"
NO_ANSWER = "no_answer"
UNKNOWN_CALL = "unknown_call"
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class DatasetItems:
    items: list[dict[str, Any]]
    read: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {"read": self.read, "items": len(self.items), "skipped": dict(sorted(self.skipped.items())),
                "categories": dict(sorted(Counter(i["category"] for i in self.items).items()))}


def bfcl_items(lines: Iterable[Mapping[str, Any]], prefix: str = DATASET_SUITE) -> DatasetItems:
    """The BFCL items of these dataset lines (see the module's docstring), in line order."""
    items: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    seen: set[str] = set()
    read = 0
    for n, line in enumerate(lines, start=1):
        read += 1
        if not line.get("tools"):
            skipped[NO_TOOLS] += 1
            continue
        try:
            logged = logged_answer(line)
        except (ValueError, KeyError, TypeError, AttributeError):
            skipped[UNKNOWN_CALL] += 1
            continue
        if logged is None or not (logged.calls or logged.text):
            skipped[NO_ANSWER] += 1
            continue
        truth = logged.calls or None
        raw = {"id": f"{prefix}-{n}" + (f"-{logged.origin}" if logged.origin else ""),
               "category": infer_category(truth, logged.functions), "question": [logged.question],
               "function": logged.functions, "ground_truth": truth, "expect": "ast_match" if truth else "no_call"}
        try:
            item = normalize_item(raw, f"val.jsonl line {n}")
        except SuiteError:  # a call of a tool the example does not offer, or unusable arguments
            skipped[UNKNOWN_CALL] += 1
            continue
        item["id"] = item["id"][:200]
        fingerprint = _fingerprint(item)
        if fingerprint in seen:
            skipped[DUPLICATE] += 1
            continue
        seen.add(fingerprint)
        items.append(item)
    return DatasetItems(items, read, skipped)


def _fingerprint(item: Mapping[str, Any]) -> str:
    doc = [item["question"], item["function"], item["ground_truth"], item["expect"]]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def dataset_suite(lines: Iterable[Mapping[str, Any]], *, name: str = DATASET_SUITE, primary: bool = True,
                  source: str | None = None) -> tuple[Suite, DatasetItems]:
    """An `ast` suite of the BFCL items of these lines (primary by default)."""
    built = bfcl_items(lines, prefix=name)
    return Suite(name=name, kind=AST, items=tuple(built.items), primary=primary, source=source), built


def suite_jsonl(suite: Suite, **header: Any) -> bytes:
    """The suite as a file: its header line (name, kind, primary and `header`), then its items: any
    BFCL-format reader takes it (`python -m evalkit check`, `load_suite`)."""
    head = {"name": suite.name, "kind": suite.kind, "primary": suite.primary, **header}
    lines = [{"suite": head}, *suite.items]
    return "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode()
