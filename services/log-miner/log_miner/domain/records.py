"""What the miner keeps about a run and about feedback on it (the stored shape of the contracts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts import ChatMessage, ToolCall, ToolSpec, TrajectoryStep


@dataclass(frozen=True)
class Run:
    run_id: str
    outcome: str  # contracts.RunOutcome
    messages: list[ChatMessage]
    tools: list[ToolSpec]
    steps: list[TrajectoryStep]
    model_version: str
    engine: str = ""
    subject: str | None = None
    logged_at: datetime | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    confidence: float | None = None  # GroupThink: the lowest agreement of the run's model turns
    session_id: str | None = None  # the client's `session_id` tag: the runs of one conversation (conversations.py)
    screening: list[dict[str, Any]] = field(default_factory=list)  # inputs the screen fired on (contract's)


@dataclass(frozen=True)
class Feedback:
    feedback_id: str
    run_id: str
    rating: int  # -1, 0 (neutral: counts as unrated), 1
    corrected_answer: str | None = None
    corrected_tool_calls: list[ToolCall] | None = None
    comment: str | None = None
    submitted_by: str = ""
    submitted_at: datetime | None = None

    @property
    def says_no_call(self) -> bool:
        """`corrected_tool_calls: []`: the right answer makes no call."""
        return self.corrected_tool_calls is not None and not self.corrected_tool_calls

    @property
    def is_correction(self) -> bool:
        return self.corrected_tool_calls is not None or bool((self.corrected_answer or "").strip())


@dataclass(frozen=True)
class RunWithFeedback:
    run: Run
    feedback: list[Feedback] = field(default_factory=list)  # oldest first
    earlier_runs: tuple[str, ...] = ()  # the conversation's runs before this one, oldest first (conversations.py)
