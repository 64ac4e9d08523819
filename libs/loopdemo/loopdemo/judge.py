"""Judging a run against its task, and the feedback a user would give on it.

What the model did is read from the run the gateway returns (`GET /v1/runs/{id}` shape): its
`tool_call` steps hold every call the model wrote — the valid ones (client-side: they end the
run), the ones the runner rejected but could decode (schema violation, unknown tool: judged
like any other call) and the blocks it could not parse (malformed: no call). The calls are
judged by evalkit's AST checker (the BFCL rules, the same checker the evaluator's gate uses).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evalkit import ast_checker

from modelkit.chat_format import TOOL_INSTRUCTIONS

from .tasks import NO_TOOL_ANSWER, Task

Calls = list[dict[str, Any]]  # [{"name", "arguments", "error"}]; error set for a malformed block


@dataclass(frozen=True)
class Response:
    """What the model did on one run."""

    calls: Calls = field(default_factory=list)  # every block written, in order
    invalid: int = 0  # blocks the runner rejected: malformed JSON, unknown tool, schema violation
    answer: str | None = None
    outcome: str | None = None
    status: str | None = None
    model_version: str | None = None
    error: str | None = None
    agreement: float | None = None  # GroupThink: the lowest agreement of the run's model turns

    @property
    def valid_calls(self) -> bool | None:
        """None when the model wrote no call; else whether every call parsed and fit its schema."""
        return None if not self.calls else self.invalid == 0


def response_of(run: Mapping[str, Any]) -> Response:
    """Read a finished run (the gateway's RunView as JSON)."""
    calls: Calls = []
    invalid = 0
    steps = run.get("steps") or []
    for step in steps:
        if step.get("kind") != "tool_call":
            continue
        call = step.get("tool_call")
        if not step.get("valid", True):
            invalid += 1
        if isinstance(call, dict) and call.get("name") and isinstance(call.get("arguments"), dict):
            calls.append({"name": call["name"], "arguments": call["arguments"], "error": None})
        else:
            calls.append({"name": None, "arguments": None, "error": step.get("error") or "malformed tool call"})
    if not steps:  # a run index without steps: the client-side calls are all there is
        for call in run.get("client_tool_calls") or []:
            calls.append({"name": call.get("name"), "arguments": call.get("arguments") or {}, "error": None})
    agreements = [d["agreement"] for step in steps if step.get("kind") == "model"
                  and isinstance(d := step.get("decoding"), dict) and isinstance(d.get("agreement"), int | float)]
    error = run.get("error") or None
    return Response(
        calls=calls, invalid=invalid, answer=run.get("answer"), outcome=run.get("outcome"),
        status=run.get("status"), model_version=run.get("model_version"),
        error=(error.get("reason") if isinstance(error, dict) else str(error)) if error else None,
        agreement=min(agreements) if agreements else None,
    )


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str = ""  # the checker's code when not correct (wrong_function, value_not_accepted, ...)
    detail: str = ""


Checker = Callable[[Task, Calls], Verdict]


def check(task: Task, calls: Calls) -> Verdict:
    verdict = ast_checker.check(task.line(), calls)
    return Verdict(verdict.ok, "" if verdict.ok else verdict.code, verdict.detail)


def feedback_for(task: Task, verdict: Verdict, response: Response | None = None) -> dict[str, Any]:
    """The body of POST /v1/runs/{id}/feedback a user would send: accept a correct run,
    otherwise rate it down and give the right call (or, where no tool fits, a plain answer).

    A run the checker passes is still corrected when the model wrote a call the runner
    rejected: BFCL counts a malformed block on an irrelevance task as "no call", but a user saw
    a broken tool call (and the log-miner files the run as a failure, teaching nothing). Nor does
    a user accept a "no call" answer that only parrots the prompt's tool instructions (the base
    model's habit; under constrained decoding it comes out as text): accepted, it would be
    trained on as the right answer."""
    if verdict.correct and (response is None or response.invalid == 0) and not (
            task.expect == "no_call" and response is not None and parrots_instructions(response.answer)):
        return {"rating": 1}
    reason = verdict.reason or "invalid tool call"
    if task.expect == "no_call":
        # `corrected_tool_calls: []` says "no call was right": the example is the request and a
        # text answer, without the call the model made (which would otherwise be kept).
        return {"rating": -1, "corrected_answer": NO_TOOL_ANSWER, "corrected_tool_calls": [],
                "comment": f"no tool fits ({reason})"}
    calls = [{"name": c["name"], "arguments": c["arguments"]} for c in task.reference_calls()]
    return {"rating": -1, "corrected_tool_calls": calls, "comment": f"wrong call ({reason})"}


def parrots_instructions(answer: str | None) -> bool:
    """The answer repeats the tool-calling instructions (or their markup) instead of answering."""
    text = (answer or "").lower()
    return "tool_call" in text or TOOL_INSTRUCTIONS.splitlines()[0].lower() in text


def describe(calls: Calls) -> str:
    return "; ".join(
        f"{c['name']}({json.dumps(c['arguments'], sort_keys=True)})" if c.get("error") is None else "(malformed)"
        for c in calls
    ) or "(no call)"
