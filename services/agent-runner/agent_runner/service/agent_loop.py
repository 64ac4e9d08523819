"""The tool-calling loop of one run: render → generate → parse → validate → execute → repeat.

Bounded by the request's options: model turns (`max_steps`), tokens per turn (`max_tokens`)
and wall time (`timeout_s`). Every model turn, call and result becomes a TrajectoryStep, the
training signal of the learning loop; invalid calls are recorded with their error and the
model is shown that error as the tool result, so it can correct itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from contracts import (
    AgentRunRequested,
    AgentRunStep,
    ChatMessage,
    Decoding,
    RunOutcome,
    ToolCall,
    ToolSpec,
    TrajectoryStep,
    Usage,
)
from modelkit.chat_format import STOP_STRINGS, ParsedCall, parse_output, render_prompt
from screening.policy import ToolScreen, excerpt
from servicekit.text import storable

from .. import groupthink
from ..domain import (
    SchemaValidators,
    ToolConstraint,
    ToolError,
    Toolset,
    VisibleText,
    raw_call_block,
    refused,
    tool_call_of,
    turn_constraint,
)
from ..metrics import RunnerMetrics
from ..ports import Engine, StepSink, Tool

logger = logging.getLogger("agent_runner.loop")

Clock = Callable[[], float]


@dataclass
class RunResult:
    outcome: RunOutcome
    answer: str | None
    messages: list[ChatMessage]
    tools: list[ToolSpec]
    steps: list[TrajectoryStep]
    usage: Usage
    client_tool_calls: list[ToolCall] = field(default_factory=list)
    confidence: float | None = None  # GroupThink: the lowest agreement of the run's model turns
    screening: list[dict[str, Any]] = field(default_factory=list)  # inputs the screen fired on (contract)


class StepStream:
    """Numbers, times and sends the live steps of one run; batches token text.

    A run that does not ask for streaming (`options.stream`, false for REST runs) sends no
    steps at all: nobody listens to them, and each would cost a confirmed publish here and a
    delivery at the gateway. Its outcome still goes to the reply queue (`StepSink.final`)."""

    def __init__(self, request: AgentRunRequested, sink: StepSink, clock: Clock, *,
                 flush_chars: int, flush_ms: float) -> None:
        self.request = request
        self.sink = sink
        self.live = request.options.stream
        self.clock = clock
        self.start = clock()
        self.flush_chars = flush_chars
        self.flush_s = flush_ms / 1000
        self._index = 0
        self._buffer: list[str] = []
        self._buffered = 0
        self._last_flush = self.start

    def elapsed_ms(self) -> float:
        return (self.clock() - self.start) * 1000

    async def record(self, run: _Run, **fields: Any) -> TrajectoryStep:
        """A tool call or tool result: the trajectory step, built once, and its live step."""
        step = run.add(**fields)
        await self.emit(step.kind, tool_call=step.tool_call, tool_result=step.tool_result, is_error=not step.valid,
                        text=step.text)
        return step

    async def emit(self, kind: str, **fields: Any) -> None:
        if not self.live:
            return
        step = AgentRunStep.create(
            correlation_id=self.request.run_id,
            causation=self.request,
            run_id=self.request.run_id,
            index=self._index,
            kind=kind,
            elapsed_ms=round(self.elapsed_ms(), 3),
            **fields,
        )
        self._index += 1
        await self.sink.step(step)

    async def text(self, chunk: str) -> None:
        if not chunk:
            return
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= self.flush_chars or self.clock() - self._last_flush >= self.flush_s:
            await self.flush_text()

    async def flush_text(self) -> None:
        self._last_flush = self.clock()
        if self._buffer:
            text, self._buffer, self._buffered = "".join(self._buffer), [], 0
            await self.emit("token", text=text)


@dataclass(frozen=True)
class _ToolOutcome:
    result: Any
    error: str | None
    duration_ms: float


@dataclass
class _Run:
    """What a run has produced so far (kept when the wall-time bound cuts it short)."""

    messages: list[ChatMessage]
    toolset: Toolset
    steps: list[TrajectoryStep] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    partial: list[str] = field(default_factory=list)  # text of the model turn in progress
    partial_started_ms: float = 0.0
    constraint: ToolConstraint | None = None  # the model turn's tool_choice (and tools)
    screening: list[dict[str, Any]] = field(default_factory=list)  # the request's inputs the screen fired on

    def add(self, **fields: Any) -> TrajectoryStep:
        step = TrajectoryStep(index=len(self.steps), **fields)
        self.steps.append(step)
        return step

    def result(self, outcome: RunOutcome, answer: str | None = None,
               client_calls: list[ToolCall] | None = None) -> RunResult:
        return RunResult(outcome, answer, self.messages, self.toolset.specs, self.steps, self.usage,
                         client_calls or [], screening=self.screening)


class AgentLoop:
    def __init__(self, *, server_tools: Mapping[str, Tool], metrics: RunnerMetrics, token_flush_chars: int = 32,
                 token_flush_ms: float = 50.0, clock: Clock = time.perf_counter,
                 groupthink_max_samples: int = 8, constrained: Literal["auto", "off"] = "auto",
                 tool_screen: ToolScreen | None = None) -> None:
        self.server_tools = dict(server_tools)
        self.tool_screen = tool_screen  # prompt-injection screening of tool output (SCREENING__TOOL)
        self.constrained = constrained  # the engine setting; a run's options.constrained overrides it
        self.groupthink_max_samples = groupthink_max_samples
        self.server_specs: dict[str, ToolSpec] = {name: tool.spec for name, tool in self.server_tools.items()}
        self.validators = SchemaValidators()
        for name, spec in self.server_specs.items():  # checked once, here: a broken plugin stops start-up
            self.validators.pin(name, spec.function.parameters)
        self.metrics = metrics
        self.flush_chars = token_flush_chars
        self.flush_ms = token_flush_ms
        self.clock = clock

    def toolset(self, request: AgentRunRequested) -> Toolset:
        """Raises InvalidToolSchemaError for a request tool whose schema is not JSON Schema."""
        return Toolset(request.tools, self.server_specs, offer_server_tools=request.options.server_tools,
                       validators=self.validators)

    async def run(self, request: AgentRunRequested, engine: Engine, sink: StepSink) -> RunResult:
        stream = StepStream(request, sink, self.clock, flush_chars=self.flush_chars, flush_ms=self.flush_ms)
        messages, screened = self._screened_client_results(request.messages)
        run = _Run(messages=messages, toolset=self.toolset(request), screening=[*request.screening, *screened])
        groupthink.check_samples(request.options.groupthink, self.groupthink_max_samples)
        self._constrain(request, run)  # a tool_choice that cannot hold fails the run before it starts
        await stream.emit("started", text=engine.model_version)
        bound = asyncio.timeout(request.options.timeout_s)
        try:
            async with bound:
                result = await self._turns(request, engine, run, stream)
        except TimeoutError:
            if not bound.expired():
                raise  # some inner timeout, not the run's wall-time bound
            if run.partial:
                run.add(kind="model", text="".join(run.partial), valid=False, error="cut off by timeout_s",
                        started_ms=run.partial_started_ms,
                        duration_ms=stream.elapsed_ms() - run.partial_started_ms)
            run.add(kind="error", error=f"run exceeded timeout_s={request.options.timeout_s}",
                    started_ms=stream.elapsed_ms())
            result = run.result("timeout")
        result.usage.total_ms = round(stream.elapsed_ms(), 3)
        result.confidence = groupthink.confidence(result.steps)
        await stream.emit("final", text=result.answer, is_error=result.outcome not in ("answered", "client_tool_call"))
        return result

    def _screened_client_results(self, messages) -> tuple[list[ChatMessage], list[dict[str, Any]]]:
        """The conversation as the model reads it: tool results the client sent are tool output
        too, screened like the server tools' (a quarantined one is fenced in the trajectory's
        messages), and what the screen fired on (`AgentRunFinished.screening`)."""
        out = list(messages)
        screened: list[dict[str, Any]] = []
        if self.tool_screen is None:
            return out, screened
        for i, message in enumerate(out):
            if message.role == "tool" and message.content:
                content, record = self.tool_screen.check(message.content)
                if record is not None:
                    self.metrics.tool_screened(message.name or "client", record)
                    out[i] = message.model_copy(update={"content": content})
                    screened.append({"source": "tool", "loc": f"messages.{i}.content", **record,
                                     "excerpt": excerpt(message.content)})
        return out, screened

    async def _turns(self, request: AgentRunRequested, engine: Engine, run: _Run, stream: StepStream) -> RunResult:
        options = request.options
        tools = [spec.model_dump() for spec in run.toolset.specs]
        for turn in range(1, options.max_steps + 1):
            prompt = render_prompt([m.model_dump(exclude_none=True) for m in run.messages], tools)
            self._constrain(request, run)
            output = await self._model_turn(prompt, engine, request, run, stream)
            parsed = parse_output(output)
            if not parsed.calls:
                run.messages.append(ChatMessage(role="assistant", content=parsed.text))
                run.add(kind="final", text=parsed.text, started_ms=stream.elapsed_ms())
                return run.result("answered", parsed.text)
            client_calls = await self._tool_calls(turn, parsed.text, parsed.calls, run, stream)
            if client_calls:
                return run.result("client_tool_call", parsed.text or None, client_calls)
        run.add(kind="error", error=f"no final answer within max_steps={options.max_steps}",
                started_ms=stream.elapsed_ms())
        return run.result("max_steps")

    @staticmethod
    def _constrain(request: AgentRunRequested, run: _Run) -> None:
        """The next model turn's tool_choice (see domain.turn_constraint); raises ToolChoiceError."""
        tools = [spec.model_dump() for spec in run.toolset.specs]
        called = any(s.kind == "tool_call" and s.valid for s in run.steps)
        answer = request.options.response_format
        run.constraint = turn_constraint(tools, request.options.tool_choice, called=called,
                                         answer_schema=answer.answer_schema() if answer is not None else None)

    async def _model_turn(self, prompt: str, engine: Engine, request: AgentRunRequested, run: _Run,
                          stream: StepStream) -> str:
        options = request.options
        if options.groupthink is not None:
            return await self._groupthink_turn(prompt, engine, request, run, stream)
        visible = VisibleText()
        run.partial = []
        run.partial_started_ms = started_ms = stream.elapsed_ms()
        t0 = self.clock()
        prompt_tokens = completion_tokens = None
        chunks = 0
        last = None
        first_token_s = None
        # Decoded under the grammar unless the run or the engine setting turns it off; a turn
        # decoded freely still has its calls checked against tool_choice (domain.refused).
        constrained = (options.constrained or self.constrained) == "auto"
        generation = engine.generate(prompt, max_tokens=options.max_tokens, temperature=options.temperature,
                                     stop=(*STOP_STRINGS, *options.stop),
                                     constraint=run.constraint if constrained else None)
        async with contextlib.aclosing(generation):  # closing stops the engine if the run is cut short
            async for chunk in generation:
                chunks += 1
                if first_token_s is None and chunk.text:
                    first_token_s = self.clock() - t0
                run.partial.append(chunk.text)
                if chunk.prompt_tokens is not None:
                    prompt_tokens = chunk.prompt_tokens
                if chunk.completion_tokens is not None:
                    completion_tokens = chunk.completion_tokens
                last = chunk  # the last one says how the turn was decoded
                if options.stream:
                    await stream.text(visible.feed(chunk.text))
        if options.stream:
            await stream.text(visible.flush())
            await stream.flush_text()
        seconds = self.clock() - t0
        output, run.partial = "".join(run.partial), []
        prompt_tokens = prompt_tokens or 0
        completion_tokens = completion_tokens if completion_tokens is not None else chunks
        run.usage.prompt_tokens += prompt_tokens
        run.usage.completion_tokens += completion_tokens
        run.usage.engine_ms = round(run.usage.engine_ms + seconds * 1000, 3)
        decoding = Decoding(constrained=bool(last and last.constrained),
                            unconstrained_tools=list(last.unconstrained_tools) if last else [])
        run.add(kind="model", text=output, started_ms=started_ms, duration_ms=round(seconds * 1000, 3),
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, decoding=decoding)
        self.metrics.model_turn(engine.name, seconds, prompt_tokens, completion_tokens, first_token_s)
        self.metrics.decoded(engine.name, decoding.constrained, len(decoding.unconstrained_tools))
        return output

    async def _groupthink_turn(self, prompt: str, engine: Engine, request: AgentRunRequested, run: _Run,
                               stream: StepStream) -> str:
        """N samples of the turn (batched on llama.cpp), the majority kept (see agent_runner/groupthink.py).

        Nothing streams while the samples decode; the winner's visible text is sent after the vote.
        The step's completion tokens (and the run's usage) count every sample: that is what it cost."""
        options = request.options
        assert options.groupthink is not None
        run.partial = []
        started_ms = stream.elapsed_ms()
        t0 = self.clock()
        # every sample decodes under the grammar greedy decoding would use
        constraint = run.constraint if (options.constrained or self.constrained) == "auto" else None
        samples = await groupthink.draw(engine, prompt, n=options.groupthink.samples, max_tokens=options.max_tokens,
                                        temperature=options.groupthink.temperature,
                                        stop=(*STOP_STRINGS, *options.stop),
                                        constraint=constraint)
        result = groupthink.vote(samples)
        seconds = self.clock() - t0
        output = result.winner.text
        if options.stream:
            visible = VisibleText()
            await stream.text(visible.feed(output))
            await stream.text(visible.flush())
            await stream.flush_text()
        prompt_tokens = result.winner.prompt_tokens
        completion_tokens = sum(s.completion_tokens for s in samples)
        decoding = Decoding(constrained=result.winner.constrained,
                            unconstrained_tools=list(result.winner.unconstrained_tools),
                            samples=len(samples), agreement=round(result.agreement, 4))
        run.usage.prompt_tokens += prompt_tokens
        run.usage.completion_tokens += completion_tokens
        run.usage.engine_ms = round(run.usage.engine_ms + seconds * 1000, 3)
        run.add(kind="model", text=output, started_ms=started_ms, duration_ms=round(seconds * 1000, 3),
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                decoding=decoding)
        self.metrics.model_turn(engine.name, seconds, prompt_tokens, completion_tokens, first_token_s=seconds)
        self.metrics.decoded(engine.name, decoding.constrained, len(decoding.unconstrained_tools))
        self.metrics.groupthink_turn(engine.name, result.agreement)
        return output

    async def _tool_calls(self, turn: int, text: str, calls: list[ParsedCall], run: _Run,
                          stream: StepStream) -> list[ToolCall]:
        """Validate and run the calls of one model turn; returns the client-side calls."""
        assistant_calls: list[ToolCall] = []
        unparsed: list[str] = []  # malformed blocks stay in the transcript as the model wrote them
        results: list[ChatMessage | None] = []  # per call, in call order; None: filled by a server-side run
        server_calls: list[tuple[int, ToolCall]] = []
        client_calls: list[ToolCall] = []
        for i, parsed in enumerate(calls, start=1):
            call_id = f"call_{turn}_{i}"
            problem = run.toolset.validate(parsed) or refused(run.constraint, parsed)
            call = tool_call_of(parsed, call_id) if parsed.arguments is not None and parsed.name else None
            if call is not None:
                assistant_calls.append(call)
            else:
                unparsed.append(raw_call_block(parsed))
            if problem is not None:
                reason, error = problem
                self.metrics.invalid_tool_calls.labels(reason=reason).inc()
                self.metrics.tool_calls.labels(tool=_tool_label(parsed, run.toolset), outcome="invalid").inc()
                await stream.record(run, kind="tool_call", tool_call=call, text=None if call else parsed.raw,
                                    valid=False, error=f"{reason}: {error}", started_ms=stream.elapsed_ms())
                results.append(self._error_result(call_id, parsed.name, error))
                await stream.emit("tool_result", tool_result={"error": error}, is_error=True)
                continue
            assert call is not None  # validated calls always parsed
            await stream.record(run, kind="tool_call", tool_call=call, started_ms=stream.elapsed_ms())
            if not run.toolset.is_server_side(call.name):
                self.metrics.tool_calls.labels(tool=call.name, outcome="client").inc()
                client_calls.append(call)
                continue
            server_calls.append((len(results), call))
            results.append(None)
        # Parallel calls: the server-side ones of a turn run concurrently; their results are
        # recorded and shown to the model in call order, whichever finishes first.
        started_ms = stream.elapsed_ms()
        outcomes = await asyncio.gather(*(self._execute(call) for _, call in server_calls))
        for (slot, call), outcome in zip(server_calls, outcomes, strict=True):
            results[slot] = await self._record_result(call, outcome, run, stream, started_ms)
        content = "\n".join(part for part in [text, *unparsed] if part) or None
        run.messages.append(ChatMessage(role="assistant", content=content, tool_calls=assistant_calls or None))
        run.messages.extend(r for r in results if r is not None)
        return client_calls

    async def _execute(self, call: ToolCall) -> _ToolOutcome:
        """Run one server-side tool; never raises (a failure is the result the model sees)."""
        tool = self.server_tools[call.name]
        t0 = self.clock()
        error: str | None = None
        result: Any = None
        try:
            result = await tool.run(call.arguments)
            json.dumps(result)  # a tool must return JSON-able data
        except ToolError as exc:
            error = str(exc) or type(exc).__name__
        except (TypeError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a broken plugin must not end the run: the model sees the failure
            logger.warning("tool %s raised", call.name, exc_info=True)
            error = f"tool failed: {type(exc).__name__}: {exc}"
        # A tool's output is kept as it came, except what storage cannot hold (NUL, lone surrogates).
        return _ToolOutcome(result=None if error else storable(result), error=storable(error),
                            duration_ms=round((self.clock() - t0) * 1000, 3))

    async def _record_result(self, call: ToolCall, outcome: _ToolOutcome, run: _Run, stream: StepStream,
                             started_ms: float) -> ChatMessage:
        error, result, duration_ms = outcome.error, outcome.result, outcome.duration_ms
        self.metrics.tool_calls.labels(tool=call.name, outcome="error" if error else "ok").inc()
        if error is not None:
            await stream.record(run, kind="tool_result", tool_call=call, tool_result={"error": error}, valid=False,
                                error=error, started_ms=started_ms, duration_ms=duration_ms)
            return self._error_result(call.id, call.name, error)
        content = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
        screening = None
        if self.tool_screen is not None:
            content, screening = self.tool_screen.check(content)
            if screening is not None:
                self.metrics.tool_screened(call.name, screening)
        await stream.record(run, kind="tool_result", tool_call=call, tool_result=result, started_ms=started_ms,
                            duration_ms=duration_ms, screening=screening)
        return ChatMessage(role="tool", tool_call_id=call.id, name=call.name, content=content)

    @staticmethod
    def _error_result(call_id: str, name: str | None, error: str) -> ChatMessage:
        return ChatMessage(role="tool", tool_call_id=call_id, name=name or "tool_call", content=f"error: {error}")


def _tool_label(call: ParsedCall, toolset: Toolset) -> str:
    """Metric label: the tool's name when it is one we offer, else a fixed value (bounded cardinality)."""
    return call.name if call.name in toolset.tools else "unknown"
