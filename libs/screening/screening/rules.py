"""The rules pack: named patterns with a category each, kept as data (`rules.json`).

A rule is a regular expression matched case-insensitively against the normalised text and each
decoded view (`normalize`), or a `signal` raised by normalisation itself (Unicode tags, zalgo,
confusables). A hit in a decoded view counts as `encoded_payload`, whatever the rule's category:
the payload was disguised. Every rule carries examples it must and must not match; the test suite
checks them all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .normalize import Normalized

CATEGORIES = ("instruction_override", "role_play", "prompt_extraction", "exfiltration", "tool_hijacking",
              "code_execution", "encoded_payload")


@dataclass(frozen=True)
class Rule:
    name: str
    category: str
    pattern: re.Pattern[str] | None
    signal: str | None
    match: tuple[str, ...]
    no_match: tuple[str, ...]
    # Words one of which any match must contain (derived from the pattern's leading alternation):
    # a text holding none of them is not searched, which keeps 60 rules under a millisecond.
    needs: tuple[str, ...] = ()

    def search(self, text: str, lowered: str) -> bool:
        if self.needs and not any(word in lowered for word in self.needs):
            return False
        assert self.pattern is not None
        return self.pattern.search(text) is not None


@dataclass(frozen=True)
class RuleHit:
    rule: str
    category: str
    via: str  # "text", or the decoded view it matched in ("base64", "tags", ...), or "signal"


@dataclass(frozen=True)
class RulePack:
    version: str
    rules: tuple[Rule, ...]

    def hits(self, normalized: Normalized) -> list[RuleHit]:
        found: list[RuleHit] = []
        views = [(via, text, text.lower()) for via, text in (("text", normalized.text), *normalized.views)]
        for rule in self.rules:
            if rule.signal is not None:
                if rule.signal in normalized.hidden:
                    found.append(RuleHit(rule.name, rule.category, "signal"))
                continue
            for via, text, lowered in views:
                if rule.search(text, lowered):
                    found.append(RuleHit(rule.name, rule.category if via == "text" else "encoded_payload", via))
                    break
        return found


def load_rules(path: Path | None = None) -> RulePack:
    raw = path.read_text() if path else resources.files(__package__).joinpath("rules.json").read_text()
    doc = json.loads(raw)
    rules = []
    for r in doc["rules"]:
        if r["category"] not in CATEGORIES:
            raise ValueError(f"rule {r['name']}: unknown category {r['category']!r}")
        pattern = re.compile(r["pattern"], re.IGNORECASE | re.MULTILINE) if r.get("pattern") else None
        if (pattern is None) == (r.get("signal") is None):
            raise ValueError(f"rule {r['name']}: give a pattern or a signal, not both or neither")
        rules.append(Rule(r["name"], r["category"], pattern, r.get("signal"), tuple(r.get("match", ())),
                          tuple(r.get("no_match", ())),
                          tuple(r["needs"]) if "needs" in r else leading_words(r.get("pattern") or "")))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ValueError("rule names must be unique")
    return RulePack(doc["version"], tuple(rules))


_LEAD = re.compile(r"^(?:\\b|\^\\s\*|\(\^\|\\n\)\\s\*)?\(((?:[a-z' ]+\|)*[a-z' ]+)\)(?:\\b|\\s)")


def leading_words(pattern: str) -> tuple[str, ...]:
    """The words of a pattern's leading alternation, `\\b(ignore|disregard)\\b...` → (ignore,
    disregard), when every alternative is a plain word or phrase; () when it is anything else."""
    m = _LEAD.match(pattern)
    return tuple(m.group(1).split("|")) if m else ()
