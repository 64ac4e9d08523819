"""The label queue: the logged runs that most need a human label, most needed first.

A run waits for a label while no feedback is on record for it, and is worth a human's time when

- its GroupThink samples disagreed (confidence < 1), or
- its primary taxonomy label is a failure (whatever its confidence).

Order:
1. runs with a confidence, lowest first: where the samples split, the model does not know, and a
   correction there teaches most (a unanimous failure, confidence 1.0, comes after every split);
2. then the failed runs without a confidence (greedy decoding), by failure class in
   `FAILURE_ORDER`: mistakes in the model's own calls first, which a corrected call fixes, then
   runs that stopped for other reasons (step bound, a failing tool, the wall clock, the engine),
   then runs whose tool output the injection screen fired on (a human tells a real injection from
   a false positive; the run is held back from training meanwhile);
3. within each, the newest first (they show the model that serves now).

The adapter writes this order in SQL; `candidate` turns a stored run into what the queue lists.
"""

from __future__ import annotations

from contracts.learning import LabelCandidate

from .records import Run
from .taxonomy import Label

FAILURE_ORDER: tuple[str, ...] = tuple(label.value for label in (
    Label.INVALID_JSON, Label.UNKNOWN_TOOL, Label.SCHEMA_VIOLATION, Label.MAX_STEPS, Label.TOOL_ERROR,
    Label.TIMEOUT, Label.RUN_ERROR, Label.INJECTION_FLAGGED,
))
# Every failure label but missed_call and negative_feedback: those need feedback on the run, and
# a run with feedback has its label already.

INSTRUCTION_CHARS = 500


def candidate(run: Run, label: str, labels: tuple[str, ...]) -> LabelCandidate:
    users = [m.content for m in run.messages if m.role == "user" and m.content]
    instruction = users[-1] if users else ""
    if len(instruction) > INSTRUCTION_CHARS:
        instruction = instruction[: INSTRUCTION_CHARS - 1] + "…"
    calls = [{"name": s.tool_call.name, "arguments": dict(s.tool_call.arguments)}
             for s in run.steps if s.kind == "tool_call" and s.tool_call is not None]
    answers = [m.content for m in run.messages if m.role == "assistant" and m.content and not m.tool_calls]
    return LabelCandidate(
        run_id=run.run_id, reason="low_confidence" if run.confidence is not None and run.confidence < 1 else "failed",
        confidence=run.confidence, label=label, labels=list(labels), outcome=run.outcome,
        model_version=run.model_version, instruction=instruction, tools=[t.function.name for t in run.tools],
        calls=calls, answer=answers[-1] if answers and run.outcome == "answered" else None, subject=run.subject,
        logged_at=run.logged_at,
    )
