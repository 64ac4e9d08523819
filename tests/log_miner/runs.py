"""Runs and feedback shaped the way the agent-runner and the gateway record them
(messages, TrajectoryStep valid/error, call ids `call_<turn>_<n>`), for unit and integration tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

from contracts import (
    AgentRunFinished,
    ChatMessage,
    FeedbackSubmitted,
    FunctionSpec,
    RetrainRequested,
    ToolCall,
    ToolSpec,
    TrajectoryStep,
    deterministic_id,
)

CALCULATOR = ToolSpec(function=FunctionSpec(
    name="calculator", description="Evaluate an arithmetic expression, e.g. 17*23 or sqrt(2)/3.",
    parameters={"type": "object", "properties": {"expression": {"type": "string", "minLength": 1}},
                "required": ["expression"]},
))
WEATHER = ToolSpec(function=FunctionSpec(
    name="get_weather", description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"},
                                                 "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"], "additionalProperties": False},
))


def rid(prefix: str = "run") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _block(name: str, args: dict[str, Any]) -> str:
    return '<tool_call>{"name": "%s", "arguments": %s}</tool_call>' % (name, json.dumps(args))


class Trajectory:
    """Builds AgentRunFinished (the event the log-miner consumes) the way AgentLoop appends
    messages and steps."""

    def __init__(self, user: str, *, tools: list[ToolSpec] | None = None, system: str | None = None,
                 run_id: str | None = None, model_version: str = "gemma-test@v1",
                 confidence: float | None = None) -> None:
        self.run_id = run_id or rid()
        self.confidence = confidence  # GroupThink: the lowest agreement of the run's model turns
        self.tools = [CALCULATOR] if tools is None else tools
        self.model_version = model_version
        self.messages: list[ChatMessage] = ([ChatMessage(role="system", content=system)] if system else [])
        self.messages.append(ChatMessage(role="user", content=user))
        self.steps: list[TrajectoryStep] = []
        self.turn = 0

    def _step(self, **fields: Any) -> None:
        self.steps.append(TrajectoryStep(index=len(self.steps), **fields))

    def call(self, name: str, args: dict[str, Any], result: Any = None, *, invalid: str | None = None,
             tool_error: str | None = None, screening: dict[str, Any] | None = None) -> Trajectory:
        """One model turn with one call: valid (result), invalid (reason: unknown_tool /
        schema_violation) or a valid call whose tool failed."""
        self.turn += 1
        call = ToolCall(id=f"call_{self.turn}_1", name=name, arguments=args)
        self._step(kind="model", text=_block(name, args))
        self.messages.append(ChatMessage(role="assistant", tool_calls=[call]))
        if invalid:
            error = f"{invalid}: arguments do not match"
            self._step(kind="tool_call", tool_call=call, valid=False, error=error)
            self.messages.append(ChatMessage(role="tool", tool_call_id=call.id, name=name, content=f"error: {error}"))
        elif tool_error:
            self._step(kind="tool_call", tool_call=call)
            self._step(kind="tool_result", tool_call=call, tool_result={"error": tool_error}, valid=False,
                       error=tool_error)
            self.messages.append(ChatMessage(role="tool", tool_call_id=call.id, name=name,
                                             content=f"error: {tool_error}"))
        else:
            self._step(kind="tool_call", tool_call=call)
            self._step(kind="tool_result", tool_call=call, tool_result=result, screening=screening)
            content = result if isinstance(result, str) else json.dumps(result)
            self.messages.append(ChatMessage(role="tool", tool_call_id=call.id, name=name, content=content))
        return self

    def malformed(self, raw: str = '{"name": "calculator", "arguments": {expression: 17*23}}') -> Trajectory:
        """A model turn whose tool-call block is not JSON (kept in the content as written)."""
        self.turn += 1
        block = f"<tool_call>{raw}</tool_call>"
        self._step(kind="model", text=block)
        self._step(kind="tool_call", text=raw, valid=False, error="invalid_json: Expecting property name at 1")
        self.messages.append(ChatMessage(role="assistant", content=block))
        self.messages.append(ChatMessage(role="tool", tool_call_id=f"call_{self.turn}_1", name="tool_call",
                                         content="error: Expecting property name at 1"))
        return self

    def answer(self, text: str) -> AgentRunFinished:
        self._step(kind="model", text=text)
        self.messages.append(ChatMessage(role="assistant", content=text))
        self._step(kind="final", text=text)
        return self.logged("answered")

    def client_call(self, name: str, args: dict[str, Any]) -> AgentRunFinished:
        return self.client_calls((name, args))

    def client_calls(self, *calls: tuple[str, dict[str, Any]]) -> AgentRunFinished:
        """One model turn with one or more client-side calls (parallel calls: returned together)."""
        self.turn += 1
        made = [ToolCall(id=f"call_{self.turn}_{n}", name=name, arguments=args)
                for n, (name, args) in enumerate(calls, start=1)]
        self._step(kind="model", text="".join(_block(c.name, c.arguments) for c in made))
        for call in made:
            self._step(kind="tool_call", tool_call=call)
        self.messages.append(ChatMessage(role="assistant", tool_calls=made))
        return self.logged("client_tool_call")

    def parallel(self, *calls: tuple[str, dict[str, Any], Any]) -> Trajectory:
        """One model turn with several server-side calls, each with its result."""
        self.turn += 1
        made = [ToolCall(id=f"call_{self.turn}_{n}", name=name, arguments=args)
                for n, (name, args, _) in enumerate(calls, start=1)]
        self._step(kind="model", text="".join(_block(c.name, c.arguments) for c in made))
        self.messages.append(ChatMessage(role="assistant", tool_calls=made))
        for call, (_, _, result) in zip(made, calls, strict=True):
            self._step(kind="tool_call", tool_call=call)
            self._step(kind="tool_result", tool_call=call, tool_result=result)
            content = result if isinstance(result, str) else json.dumps(result)
            self.messages.append(ChatMessage(role="tool", tool_call_id=call.id, name=call.name, content=content))
        return self

    def end(self, outcome: str, error: str = "stopped") -> AgentRunFinished:
        self._step(kind="error", error=error)
        return self.logged(outcome)

    def logged(self, outcome: str) -> AgentRunFinished:
        return AgentRunFinished.create(
            correlation_id=self.run_id, message_id=deterministic_id("run-finished", self.run_id),
            run_id=self.run_id, status="failed" if outcome == "error" else "completed", outcome=outcome,
            messages=self.messages, tools=self.tools, steps=self.steps, model_version=self.model_version,
            engine="scripted", subject="tester", confidence=self.confidence,
        )


def feedback(run_id: str, rating: int, *, calls: list[tuple[str, dict[str, Any]]] | None = None,
             answer: str | None = None, feedback_id: str | None = None) -> FeedbackSubmitted:
    feedback_id = feedback_id or rid("fb")
    # calls=[]: "no call was right" (kept as an empty list, as the gateway passes it on)
    tool_calls = ([ToolCall(id=f"call_{i}", name=n, arguments=a) for i, (n, a) in enumerate(calls)]
                  if calls is not None else None)
    return FeedbackSubmitted.create(
        correlation_id=run_id, message_id=deterministic_id("feedback-submitted", feedback_id),
        feedback_id=feedback_id, run_id=run_id, rating=rating, corrected_answer=answer,
        corrected_tool_calls=tool_calls, submitted_by="reviewer",
    )


def retrain(sources: list[str] | None = None, **dataset: Any) -> RetrainRequested:
    request_id = rid("rq")
    return RetrainRequested.create(
        correlation_id=request_id, message_id=deterministic_id("retrain-requested", request_id),
        request_id=request_id, requested_by="operator-test", reason="test",
        dataset={"sources": sources or ["mined"], **dataset}, training={"max_steps": 3},
    )
