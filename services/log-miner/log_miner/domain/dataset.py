"""Assembling a dataset from candidate examples: validate, deduplicate, weight and mix, split.

- Dedupe key: sha256 over the conversation with text normalised (lower case, whitespace
  collapsed) and calls canonical (name + arguments with sorted keys; call ids ignored; the
  calls of one turn in sorted order), plus the sorted names of the offered tools. The first
  example with a key is kept, later ones are counted as duplicates and their run/feedback ids
  are merged into the kept example's lineage.
- Weights (`DatasetOptions.weights`, keyed by the source as written in `sources`, or by its
  format such as "bfcl"; default 1.0) multiply a source's share: 0.25 keeps a deterministic
  quarter of its examples, 2.0 repeats each twice, 1.5 repeats a deterministic half. Copies
  share their key, so they land in the same split.
- `max_examples` caps the total after the source weights; every source shrinks in proportion.
- Split: an example is in validation when its key, read as a fraction in [0, 1), is below
  `val_fraction`: deterministic, stable when the dataset grows, and no leak of an example
  into both splits.
- Shape weights (`DatasetOptions.shape_weights` over `shapes.DEFAULT_SHAPE_WEIGHTS`), after
  the split and on the train split only: each train example is repeated by the weight of its
  shape (times the `corrected` weight for a feedback correction), the fraction again taken in
  key order. Validation stays one copy per selected example, so it measures the data as it is,
  and no copy can reach it. These copies come on top of `max_examples`.
- Step hints (`meta.hints`, optional): with placement "assistant" they are written as a
  numbered list at the start of the first assistant turn, so the model learns to lay out its
  steps; with "meta" (default) they only travel in `meta`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .corpus import SourceSpecError, parse_source
from .examples import KIND_CORRECTED, Example
from .shapes import shape_weights as effective_shape_weights
from .shapes import weight_of_shape
from .validation import Limits, invalid_reason

DUPLICATE = "duplicate"


def _norm(text: Any) -> str:
    return " ".join(str(text or "").lower().split())


def dedupe_key(example: Example) -> str:
    turns = []
    for m in example.messages:
        turn: list[Any] = [m.get("role"), _norm(m.get("content"))]
        if m.get("tool_calls"):
            turn.append(sorted(
                json.dumps({"name": c.get("name"), "arguments": c.get("arguments")}, sort_keys=True)
                for c in m["tool_calls"]
            ))
        if m.get("role") == "tool":
            turn.append(m.get("name"))
        turns.append(turn)
    tools = sorted(str((t.get("function") or t).get("name")) for t in example.tools)
    return hashlib.sha256(json.dumps([turns, tools], ensure_ascii=False).encode()).hexdigest()


def key_fraction(key: str) -> float:
    return int(key[:15], 16) / float(16**15)


def split_of(key: str, val_fraction: float) -> str:
    return "val" if key_fraction(key) < val_fraction else "train"


def source_format(source: str) -> str:
    """"bfcl:/x.jsonl" -> "bfcl"; "mined" -> "mined"; "s3://b/k" or a bare path -> "auto"."""
    try:
        return parse_source(source).format
    except SourceSpecError:
        return "unknown"


def weight_of(source: str, weights: Mapping[str, float]) -> float:
    w = weights.get(source, weights.get(source_format(source), 1.0))
    if w < 0:
        raise ValueError(f"weight of {source!r} is negative ({w})")
    return float(w)


@dataclass
class SourceReport:
    source: str
    weight: float = 1.0
    read: int = 0  # candidates offered (mined: runs that teach something; corpora: records)
    malformed: int = 0  # corpus records that could not be converted at all
    invalid: Counter = field(default_factory=Counter)
    duplicates: int = 0
    kept: int = 0  # valid and unique
    selected: int = 0  # after weighting and the cap (copies included)
    by_kind: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "format": source_format(self.source), "weight": self.weight, "read": self.read,
            "malformed": self.malformed, "invalid": dict(sorted(self.invalid.items())),
            "duplicates": self.duplicates, "kept": self.kept, "selected": self.selected,
            "by_kind": dict(sorted(self.by_kind.items())),
        }


@dataclass
class ShapeReport:
    """Shapes of the examples, in the train split before and after the shape weights, and in val."""

    weights: dict[str, float] = field(default_factory=dict)
    train_before: Counter = field(default_factory=Counter)
    train_after: Counter = field(default_factory=Counter)
    val: Counter = field(default_factory=Counter)
    corrected: Counter = field(default_factory=Counter)  # feedback corrections in each of the three

    def as_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights), "train_before": dict(sorted(self.train_before.items())),
            "train_after": dict(sorted(self.train_after.items())), "val": dict(sorted(self.val.items())),
            "corrected": {k: self.corrected[k] for k in ("train_before", "train_after", "val")},
        }


@dataclass
class Assembly:
    train: list[Example]
    val: list[Example]
    sources: list[SourceReport]
    shapes: ShapeReport = field(default_factory=ShapeReport)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.sources)

    @property
    def invalid(self) -> Counter:
        total: Counter = Counter()
        for s in self.sources:
            total.update(s.invalid)
            if s.malformed:
                total["malformed"] += s.malformed
        return total

    @property
    def examples(self) -> list[Example]:
        return [*self.train, *self.val]

    def run_ids(self) -> list[str]:
        return sorted({r for e in self.examples for r in e.run_ids})

    def feedback_ids(self) -> list[str]:
        return sorted({f for e in self.examples for f in e.feedback_ids})

    def counts(self) -> dict[str, int]:
        return {
            "train": len(self.train), "val": len(self.val), "total": len(self.train) + len(self.val),
            "read": sum(s.read for s in self.sources), "duplicates": self.duplicates,
            "invalid": sum(self.invalid.values()), "runs": len(self.run_ids()),
            "feedback": len(self.feedback_ids()),
        }


def with_hints_in_answer(example: Example) -> Example:
    if not example.hints:
        return example
    steps = "\n".join(f"{n}. {h}" for n, h in enumerate(example.hints, start=1))
    messages = [dict(m) for m in example.messages]
    for m in messages:
        if m["role"] == "assistant":
            m["content"] = steps + ("\n\n" + m["content"] if m.get("content") else "")
            break
    return dataclasses.replace(example, messages=messages)


def _merge(kept: Example, dup: Example) -> Example:
    def union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
        return a + tuple(x for x in b if x not in a)

    return dataclasses.replace(
        kept, run_ids=union(kept.run_ids, dup.run_ids), feedback_ids=union(kept.feedback_ids, dup.feedback_ids),
        model_versions=union(kept.model_versions, dup.model_versions),
    )


def weighted(keyed: Sequence[tuple[str, Example]], weight: float) -> list[tuple[str, Example]]:
    """floor(weight) copies of each, plus the fractional part of them in key order."""
    ordered = sorted(keyed, key=lambda ke: ke[0])
    whole, frac = int(weight), weight - int(weight)
    out = [ke for ke in ordered for _ in range(whole)]
    out += ordered[: round(frac * len(ordered))]
    return out


def _cap(groups: list[list[tuple[str, Example]]], max_examples: int | None) -> list[list[tuple[str, Example]]]:
    total = sum(len(g) for g in groups)
    if max_examples is None or total <= max_examples:
        return groups
    shares = [len(g) * max_examples / total for g in groups]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(len(groups)), key=lambda i: shares[i] - counts[i], reverse=True)
    for i in by_remainder[: max_examples - sum(counts)]:
        counts[i] += 1
    # Take a spread of each weighted group (it is in key order, copies adjacent): its head.
    return [sorted(g, key=lambda ke: ke[0])[:n] for g, n in zip(groups, counts, strict=True)]


def weighted_by_shape(train: Sequence[tuple[str, Example]], weights: Mapping[str, float],
                      report: ShapeReport) -> list[Example]:
    """The train split with each (shape, corrected) group repeated by its weight."""
    groups: dict[tuple[str, bool], list[tuple[str, Example]]] = {}
    for key, example in train:
        groups.setdefault((example.shape, example.kind == KIND_CORRECTED), []).append((key, example))
    out: list[Example] = []
    for (shape, corrected), group in groups.items():
        copies = weighted(group, weight_of_shape(shape, corrected, weights))
        report.train_before[shape] += len(group)
        report.train_after[shape] += len(copies)
        if corrected:
            report.corrected["train_before"] += len(group)
            report.corrected["train_after"] += len(copies)
        out += [example for _, example in copies]
    return out


def assemble(candidates: Iterable[Example], reports: Sequence[SourceReport], *, limits: Limits,
             val_fraction: float, weights: Mapping[str, float], max_examples: int | None,
             hints_placement: str = "meta", shape_weights: Mapping[str, float] | None = None) -> Assembly:
    """Raises ValueError on a negative source weight."""
    shapes = ShapeReport(weights=effective_shape_weights(shape_weights or {}))
    by_source = {r.source: r for r in reports}
    kept: dict[str, Example] = {}
    owner: dict[str, str] = {}
    for example in candidates:
        report = by_source[example.source]
        if hints_placement == "assistant":
            example = with_hints_in_answer(example)
        reason = invalid_reason(example, limits)
        if reason is not None:
            report.invalid[reason] += 1
            continue
        key = dedupe_key(example)
        if key in kept:
            report.duplicates += 1
            kept[key] = _merge(kept[key], example)
            continue
        kept[key] = example
        owner[key] = example.source
    groups: list[list[tuple[str, Example]]] = []
    for report in reports:
        mine = [(k, e) for k, e in kept.items() if owner[k] == report.source]
        report.kept = len(mine)
        report.weight = weight_of(report.source, weights)
        groups.append(weighted(mine, report.weight))
    groups = _cap(groups, max_examples)
    train: list[tuple[str, Example]] = []
    val: list[Example] = []
    for report, group in zip(reports, groups, strict=True):
        report.selected = len(group)
        for key, example in group:
            report.by_kind[example.kind] += 1
            if split_of(key, val_fraction) == "val":
                val.append(example)
                shapes.val[example.shape] += 1
                shapes.corrected["val"] += example.kind == KIND_CORRECTED
            else:
                train.append((key, example))
    return Assembly(weighted_by_shape(train, shapes.weights, shapes), val, list(reports), shapes)


def to_jsonl(examples: Iterable[Example]) -> bytes:
    return "".join(json.dumps(e.line(), ensure_ascii=False) + "\n" for e in examples).encode()
