"""Screening of what a client sends (issue 12): user and system messages go through the shared
screener (libs/screening) before anything is stored or published. Tool messages a client sends
are tool output: the runner screens those, with every other tool result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from screening import Screener, Verdict
from screening.policy import ScreeningSettings, excerpt

from .errors import InvalidRequestError
from .requests import RunSubmission


def screened_record(loc: tuple[str | int, ...], source: str, verdict: Verdict, text: str, action: str) -> dict[str, Any]:
    """What the run keeps of a message the screen fired on (`AgentRunRequested.screening`)."""
    return {"source": source, "loc": ".".join(map(str, loc)), **verdict.to_doc(), "action": action,
            "excerpt": excerpt(text)}


class InjectionBlockedError(InvalidRequestError):
    """A message screened as a prompt injection where the policy blocks (a 422 naming it)."""

    def __init__(self, loc: tuple[str | int, ...], source: str, verdict: Verdict, text: str = "") -> None:
        self.source = source
        self.verdict = verdict
        self.record = screened_record(loc, source, verdict, text, "blocked")
        self.run_id: str | None = None  # the refused run recorded for it, once it is
        fired = ", ".join(verdict.rules) if verdict.rules else f"classifier score {verdict.score:.2f}"
        super().__init__(loc, f"refused: the {source} message reads as a prompt injection "
                              f"({verdict.category}; {fired})")

    @property
    def ctx(self) -> dict:
        return {"category": self.verdict.category, "source": self.source, "rules": list(self.verdict.rules),
                "score": round(self.verdict.score, 4), **({"run_id": self.run_id} if self.run_id else {})}


@dataclass(frozen=True)
class Screened:
    """A message that fired and was let through (`flag`)."""

    loc: tuple[str | int, ...]
    source: str
    verdict: Verdict
    text: str

    def record(self) -> dict[str, Any]:
        return screened_record(self.loc, self.source, self.verdict, self.text, "flagged")


class InputScreen:
    def __init__(self, screener: Screener, settings: ScreeningSettings) -> None:
        self.screener = screener
        self.actions = {"user": settings.user, "system": settings.system}

    def check(self, body: RunSubmission) -> list[Screened]:
        """The messages that fired and were let through; raises InjectionBlockedError for the first
        one the policy blocks."""
        flagged: list[Screened] = []
        for loc, source, text in _inputs(body):
            action = self.actions.get(source, "off")
            if action == "off" or not text:
                continue
            verdict = self.screener.screen(text)
            if not verdict.flagged:
                continue
            if action == "block":
                raise InjectionBlockedError(loc, source, verdict, text)
            flagged.append(Screened(loc, source, verdict, text))
        return flagged


def _inputs(body: RunSubmission):
    if body.instruction is not None:
        yield ("instruction",), "user", body.instruction
        return
    for i, message in enumerate(body.messages or []):
        if message.role in ("user", "system"):
            yield ("messages", i, "content"), message.role, message.content or ""
