"""One verdict per text: the rules and the classifier read the normalised text and its decoded
views; either one flags it (`mode="both"`, the shipped setting), or only one of them is used.

The category is the first firing rule's; a text only the classifier flags is `learned`. Long
texts (tool output: web pages, files) are read in windows of `WINDOW` characters, up to
`MAX_SCREENED` of them, the highest score counting.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from .classifier import MAX_CHARS, Classifier
from .normalize import normalize
from .rules import RuleHit, RulePack, load_rules

Mode = Literal["both", "rules", "classifier"]
WINDOW = MAX_CHARS
MAX_SCREENED = 64 * 1024  # characters of one text that are screened


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    category: str | None  # the first rule's category; `learned` when only the classifier fired
    score: float  # the classifier's P(malicious), the highest over the text's views and windows
    rules: tuple[str, ...]  # the rules that fired
    fired_by: tuple[str, ...]  # "rules", "classifier"
    hidden: tuple[str, ...] = field(default=())  # what normalisation found hidden (tags, zalgo, ...)
    ms: float = 0.0

    def to_doc(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "category": self.category, "score": round(self.score, 4),
                "rules": list(self.rules), "fired_by": list(self.fired_by), "hidden": list(self.hidden),
                "ms": round(self.ms, 3)}


class Screener:
    def __init__(self, rules: RulePack | None, classifier: Classifier | None, *, mode: Mode = "both",
                 threshold: float | None = None) -> None:
        if mode in ("both", "rules") and rules is None:
            raise ValueError(f"mode {mode!r} needs the rules pack")
        if mode in ("both", "classifier") and classifier is None:
            raise ValueError(f"mode {mode!r} needs the classifier")
        self.rules = rules
        self.classifier = classifier
        self.mode = mode
        self.threshold = threshold if threshold is not None else (classifier.threshold if classifier else 1.0)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "threshold": self.threshold,
                "rules_version": self.rules.version if self.rules else None,
                "rules": len(self.rules.rules) if self.rules else 0,
                "classifier": (self.classifier.manifest.get("version") if self.classifier else None),
                "classifier_data_sha256": (self.classifier.manifest.get("data_sha256") if self.classifier else None)}

    def screen(self, text: str) -> Verdict:
        t0 = time.perf_counter()
        text = text[:MAX_SCREENED]
        normalized = normalize(text)
        hits: list[RuleHit] = self.rules.hits(normalized) if self.rules and self.mode != "classifier" else []
        score = 0.0
        if self.classifier is not None and self.mode != "rules":
            pieces = [t[i:i + WINDOW] for t in normalized.texts() for i in range(0, max(len(t), 1), WINDOW)]
            score = float(self.classifier.scores(pieces).max())
        learned = self.mode != "rules" and score >= self.threshold
        fired_by = (("rules",) if hits else ()) + (("classifier",) if learned else ())
        category = hits[0].category if hits else ("learned" if learned else None)
        return Verdict(bool(fired_by), category, score, tuple(h.rule for h in hits), fired_by, normalized.hidden,
                       (time.perf_counter() - t0) * 1000)


@functools.cache
def default_screener(mode: Mode = "both") -> Screener:
    """The shipped rules pack and classifier (loaded once per process)."""
    return Screener(load_rules(), Classifier.load(), mode=mode)
