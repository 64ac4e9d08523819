"""Failure taxonomy: every run gets all the labels that apply and one primary label.

Rules (they read what the runner records: `TrajectoryStep.valid/error`, the run's outcome,
and the feedback on the run):

| label | applies when |
|---|---|
| `timeout` | the run's outcome is `timeout` (wall-time bound hit) |
| `run_error` | the outcome is `error` (engine unavailable, prompt too long, bad tool schema) |
| `invalid_json` | a `tool_call` step is invalid with reason `invalid_json` (or has no parsed call) |
| `unknown_tool` | a `tool_call` step is invalid with reason `unknown_tool` |
| `schema_violation` | a `tool_call` step is invalid with reason `schema_violation` |
| `tool_error` | a `tool_result` step is invalid: a valid call whose tool failed |
| `max_steps` | the outcome is `max_steps` (no final answer within the step bound) |
| `injection_flagged` | the prompt-injection screen fired on a tool result (`TrajectoryStep.screening`: quarantined or flagged) or on a message of the request it let through (`AgentRunFinished.screening`: a user or system message flagged by the gateway, a client's tool message): the run is held back from training (a correction in its feedback still makes an example) and the label queue lists it for review |
| `missed_call` | tools were offered, the model made no call at all, and feedback on the run gives corrected tool calls: a call was needed and the model did not make one |
| `negative_feedback` | some feedback on the run rates it -1 |
| `valid_call` | the run finished (`answered` / `client_tool_call`) and made at least one valid call |
| `direct_answer` | the run answered without any tool call (and nothing above says it should have called) |

The primary label is the first that applies in that order: mechanical failures first (the
most specific), then what feedback reveals, then the two successes. A run is a failure when
its primary label is not a success. Feedback can arrive after the run: the run is then
classified again and its counts move to the new label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .records import Feedback, Run


class Label(StrEnum):
    TIMEOUT = "timeout"
    RUN_ERROR = "run_error"
    INVALID_JSON = "invalid_json"
    UNKNOWN_TOOL = "unknown_tool"
    SCHEMA_VIOLATION = "schema_violation"
    TOOL_ERROR = "tool_error"
    MAX_STEPS = "max_steps"
    INJECTION_FLAGGED = "injection_flagged"
    MISSED_CALL = "missed_call"
    NEGATIVE_FEEDBACK = "negative_feedback"
    VALID_CALL = "valid_call"
    DIRECT_ANSWER = "direct_answer"


PRECEDENCE: tuple[Label, ...] = tuple(Label)  # declaration order above is the precedence
SUCCESS = frozenset({Label.VALID_CALL, Label.DIRECT_ANSWER})
FINISHED_OUTCOMES = frozenset({"answered", "client_tool_call"})

_INVALID_REASONS = {Label.INVALID_JSON.value, Label.UNKNOWN_TOOL.value, Label.SCHEMA_VIOLATION.value}


@dataclass(frozen=True)
class Classification:
    label: Label
    labels: tuple[Label, ...]

    @property
    def failed(self) -> bool:
        return self.label not in SUCCESS


def invalid_call_reason(error: str | None, has_call: bool) -> Label:
    """The runner records invalid calls with `error="<reason>: <detail>"`."""
    prefix = (error or "").split(":", 1)[0].strip()
    if prefix in _INVALID_REASONS:
        return Label(prefix)
    return Label.SCHEMA_VIOLATION if has_call else Label.INVALID_JSON


def classify(run: Run, feedback: Sequence[Feedback] = ()) -> Classification:
    found: set[Label] = set()
    calls = [s for s in run.steps if s.kind == "tool_call"]
    if run.outcome == "timeout":
        found.add(Label.TIMEOUT)
    elif run.outcome == "error":
        found.add(Label.RUN_ERROR)
    elif run.outcome == "max_steps":
        found.add(Label.MAX_STEPS)
    for step in calls:
        if not step.valid:
            found.add(invalid_call_reason(step.error, step.tool_call is not None))
    if any(s.kind == "tool_result" and not s.valid for s in run.steps):
        found.add(Label.TOOL_ERROR)
    if run.screening or any(s.screening for s in run.steps):
        found.add(Label.INJECTION_FLAGGED)
    if run.tools and not calls and any(f.corrected_tool_calls for f in feedback):
        found.add(Label.MISSED_CALL)
    if any(f.rating < 0 for f in feedback):
        found.add(Label.NEGATIVE_FEEDBACK)
    if run.outcome in FINISHED_OUTCOMES:
        if any(s.valid for s in calls):
            found.add(Label.VALID_CALL)
        elif not calls and run.outcome == "answered":
            found.add(Label.DIRECT_ANSWER)
    labels = tuple(label for label in PRECEDENCE if label in found)
    if not labels:
        # A finished run whose every call was invalid still has a mechanical label above;
        # reaching here means an outcome the runner does not produce today.
        labels = (Label.RUN_ERROR,)
    return Classification(labels[0], labels)
