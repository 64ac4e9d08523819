"""Prompt-injection screening (issue 12): normalisation, a rules pack as data, a learned classifier,
and the verdict they give together. Used by the gateway (user and system input) and the runner
(tool output, before it re-enters the prompt)."""

from .normalize import Normalized, normalize
from .rules import Rule, RuleHit, RulePack, load_rules
from .screen import Screener, Verdict, default_screener

__all__ = ["Normalized", "Rule", "RuleHit", "RulePack", "Screener", "Verdict", "default_screener", "load_rules",
           "normalize"]
