"""Use case: execute a requested run exactly once and record it.

The inbox is checked before the (expensive) run, but the claim that counts is the one in the
final transaction, together with the trajectory row and the outbox messages. A runner killed
mid-run never acks, so the message comes back and the run executes again from the start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from contracts import (
    BY_TYPE,
    AgentRunCompleted,
    AgentRunFailed,
    AgentRunFinished,
    AgentRunRequested,
    Contract,
    InteractionLogged,
    TrajectoryStep,
    Usage,
    deterministic_id,
    utcnow,
)
from servicekit.logs import log_fields

from ..domain import (
    EngineError,
    InvalidToolSchemaError,
    ModelNotServedError,
    PromptTooLongError,
    RunCancelledError,
    ToolChoiceError,
    TooManySamplesError,
)
from ..metrics import RunnerMetrics
from ..model_slot import ModelSlot
from ..ports import Engine, RunRecord, RunStore, StepSink
from .agent_loop import AgentLoop, RunResult
from .served_models import ServedModels

logger = logging.getLogger("agent_runner.service")

SinkFactory = Callable[[str | None], StepSink]
EARLY_CANCELS_KEPT = 10_000
EARLY_CANCEL_TTL_S = 900.0  # longer than a run waits in the queue for any requester still waiting


def completed_id(run_id: str) -> str:
    return deterministic_id("run-completed", run_id)


def failed_id(run_id: str) -> str:
    return deterministic_id("run-failed", run_id)


def logged_id(run_id: str) -> str:
    return deterministic_id("interaction-logged", run_id)


def finished_id(run_id: str) -> str:
    return deterministic_id("run-finished", run_id)


class RunAgent:
    def __init__(self, *, loop: AgentLoop, store: RunStore, sinks: SinkFactory, slot: ModelSlot | None = None,
                 metrics: RunnerMetrics, max_attempts: int, legacy_events: bool = True,
                 models: ServedModels | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.loop = loop
        self.legacy_events = legacy_events
        if (slot is None) == (models is None):
            raise ValueError("give the slot (production only) or the served models, not both")
        self.models = models or ServedModels(slot)  # type: ignore[arg-type]
        self.slot = self.models.slot  # the one the models lease production from
        self._clock = clock
        self.store = store
        self.sinks = sinks
        self.metrics = metrics
        self.max_attempts = max_attempts
        self._in_flight: dict[str, asyncio.Event] = {}
        self._running: dict[str, asyncio.Task] = {}  # run id -> the agent loop running it here
        self._cancelled: dict[str, str] = {}  # run id -> why its requester cancelled it
        # Cancels of runs no runner had taken yet: every instance hears every cancel, so whichever
        # takes the run later refuses it. Bounded by count and age; a runner started after the
        # cancel does not know it (the run then runs to its end, bounded by max_tokens/timeout_s).
        self._cancelled_early: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def cancel(self, run_id: str, reason: str) -> bool:
        """Stop a run this instance is running (its requester is gone): the model turn ends, the
        engine is free, the run is recorded as failed with `cancelled`. False when it is not running
        here: then it is remembered, and refused if it reaches this instance later."""
        reason = reason or "the requester cancelled the run"
        task = self._running.get(run_id)
        if task is None or task.done():
            self._remember_cancel(run_id, reason)
            return False
        self._cancelled[run_id] = reason
        task.cancel()
        return True

    def _remember_cancel(self, run_id: str, reason: str) -> None:
        now = self._clock()
        early = self._cancelled_early
        early[run_id] = (now, reason)
        early.move_to_end(run_id)
        while early and (len(early) > EARLY_CANCELS_KEPT or now - next(iter(early.values()))[0] > EARLY_CANCEL_TTL_S):
            early.popitem(last=False)

    def _cancelled_before_start(self, run_id: str) -> str | None:
        found = self._cancelled_early.pop(run_id, None)
        if found is None or self._clock() - found[0] > EARLY_CANCEL_TTL_S:
            return None
        return found[1]

    async def _cancellable(self, run_id: str, work) -> RunResult:
        """`work` as a task `cancel` can stop; our own shutdown still cancels it as before."""
        task = asyncio.ensure_future(work)
        self._running[run_id] = task
        try:
            return await task
        except asyncio.CancelledError:
            reason = self._cancelled.get(run_id)
            current = asyncio.current_task()
            if reason is None or (current is not None and current.cancelling()):
                raise  # the service is stopping: the run is not the client's to end
            raise RunCancelledError(reason) from None
        finally:
            self._running.pop(run_id, None)
            self._cancelled.pop(run_id, None)

    async def __call__(self, request: AgentRunRequested, *, attempt: int = 1) -> None:
        message_id = request.envelope.message_id
        # A second delivery of a message this process is running waits for the first instead
        # of running it again (replicas still may: the inbox claim at the end decides).
        while (running := self._in_flight.get(message_id)) is not None:
            await running.wait()
        self._in_flight[message_id] = done = asyncio.Event()
        try:
            await self._handle(request, attempt)
        finally:
            del self._in_flight[message_id]
            done.set()

    async def _handle(self, request: AgentRunRequested, attempt: int) -> None:
        message_id = request.envelope.message_id
        fields = log_fields(run_id=request.run_id, message_id=message_id, attempt=attempt)
        sink = self.sinks(request.reply_to)
        if await self.store.is_processed(message_id):
            logger.info("run already recorded; not running it again", extra=fields)
            await self._resend_final(request, sink)
            return
        started_at = utcnow()
        t0 = time.perf_counter()
        error: tuple[str, str] | None = None
        result: RunResult | None = None
        # The run keeps the engine it leased even if the slot is swapped meanwhile; the lease
        # keeps a replaced engine open until this run is done with it. A model this runner cannot
        # serve fails the run (recorded against the production engine, which did not run it).
        if (reason := self._cancelled_before_start(request.run_id)) is not None:
            lease, error = self.slot.lease(), ("cancelled", f"{reason} (before the run started)")
        else:
            try:
                lease = await self.models.lease(request.options.model, run_id=request.run_id)
            except ModelNotServedError as exc:
                lease, error = self.slot.lease(), (_code(exc), str(exc))
        with lease as engine:
            if error is None:
                try:
                    result = await self._cancellable(request.run_id, self.loop.run(request, engine, sink))
                except (PromptTooLongError, InvalidToolSchemaError, TooManySamplesError, ToolChoiceError,
                        RunCancelledError) as exc:
                    error = (_code(exc), str(exc))
                except EngineError as exc:
                    if attempt < self.max_attempts:
                        raise  # transient: the message is redelivered and the run tried again
                    error = ("engine_unavailable", f"{exc} (gave up after {attempt} attempts)")
        seconds = time.perf_counter() - t0
        finished, row = self._outcome(request, engine, result, error, started_at, seconds, attempt)
        events = [*self._legacy(request, finished), finished] if self.legacy_events else [finished]
        recorded = await self.store.record(RunRecord(message_id, request.envelope.message_type, row, tuple(events)))
        if not recorded:
            logger.info("run recorded meanwhile by another delivery; dropping this result", extra=fields)
            return
        # The commit is the durability point: the requester gets its answer before the events
        # go out (their confirms cost a round trip; the relay covers a crash in between). With
        # the legacy events on, the reply is the legacy outcome, which every gateway reads.
        await sink.final(events[0])
        await self.store.publish(*events)
        outcome = row["outcome"]
        self.metrics.run_finished(outcome, seconds)
        logger.info("run %s: %s in %.2fs", request.run_id, outcome, seconds, extra=fields)

    def _outcome(self, request: AgentRunRequested, engine: Engine, result: RunResult | None,
                 error: tuple[str, str] | None, started_at, seconds: float,
                 attempt: int) -> tuple[AgentRunFinished, dict]:
        """The run's one outcome event, and its trajectory row (built from the event)."""
        run_id = request.run_id
        if result is None:
            assert error is not None
            code, reason = error
            finished = AgentRunFinished.create(
                correlation_id=run_id, message_id=finished_id(run_id), causation=request, run_id=run_id,
                status="failed", outcome="error", messages=list(request.messages), tools=list(request.tools),
                steps=[TrajectoryStep(index=0, kind="error", error=f"{code}: {reason}")],
                usage=Usage(total_ms=round(seconds * 1000, 3)), model_version=engine.model_version,
                engine=engine.name, subject=request.principal.subject, error_code=code, error=reason,
                metadata=request.metadata, screening=request.screening,
            )
        else:
            finished = AgentRunFinished.create(
                correlation_id=run_id, message_id=finished_id(run_id), causation=request, run_id=run_id,
                status="completed", outcome=result.outcome, answer=result.answer,
                client_tool_calls=result.client_tool_calls, messages=result.messages, tools=result.tools,
                steps=result.steps, usage=result.usage, model_version=engine.model_version, engine=engine.name,
                confidence=result.confidence, subject=request.principal.subject, metadata=request.metadata,
                screening=result.screening,
            )
        row = {
            "run_id": run_id,
            "subject": finished.subject,
            "outcome": finished.outcome,
            "answer": finished.answer,
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in finished.messages],
            "tools": [t.model_dump(mode="json") for t in finished.tools],
            "steps": [s.model_dump(mode="json") for s in finished.steps],
            "options": request.options.model_dump(mode="json"),
            "usage": finished.usage.model_dump(mode="json"),
            "model_version": finished.model_version,
            "engine": finished.engine,
            "error": f"{error[0]}: {error[1]}" if error else None,
            "attempt": attempt,
            "started_at": started_at,
        }
        return finished, row

    @staticmethod
    def _legacy(request: AgentRunRequested, f: AgentRunFinished) -> tuple[Contract, InteractionLogged]:
        """The events AgentRunFinished replaces, for consumers that have not switched yet."""
        run_id = f.run_id
        terminal: Contract
        if f.status == "failed":
            terminal = AgentRunFailed.create(
                correlation_id=run_id, message_id=failed_id(run_id), causation=request, run_id=run_id,
                error_code=f.error_code or "error", reason=f.error or "", model_version=f.model_version,
            )
        else:
            terminal = AgentRunCompleted.create(
                correlation_id=run_id, message_id=completed_id(run_id), causation=request, run_id=run_id,
                outcome=f.outcome, answer=f.answer, client_tool_calls=f.client_tool_calls, steps=f.steps,
                usage=f.usage, model_version=f.model_version, engine=f.engine, confidence=f.confidence,
                screening=f.screening,
            )
        logged = InteractionLogged.create(
            correlation_id=run_id, message_id=logged_id(run_id), causation=request, run_id=run_id,
            outcome=f.outcome, messages=f.messages, tools=f.tools, steps=f.steps, usage=f.usage,
            model_version=f.model_version, engine=f.engine, subject=f.subject, confidence=f.confidence,
            screening=f.screening,
        )
        return terminal, logged

    async def _resend_final(self, request: AgentRunRequested, sink: StepSink) -> None:
        """A redelivered request whose run is recorded: the requester may have missed the result
        (crash between commit and reply), so send the recorded one again. Same message id."""
        if request.reply_to is None:
            return
        run_id = request.run_id
        ids = (completed_id(run_id), failed_id(run_id)) if self.legacy_events else (finished_id(run_id),)
        body = None
        for outcome_id in ids:
            if (body := await self.store.stored_outcome(run_id, outcome_id)) is not None:
                break
        if body is not None:
            await sink.final(BY_TYPE[body["envelope"]["message_type"]].model_validate(body))


def _code(exc: Exception) -> str:
    return {PromptTooLongError: "prompt_too_long", InvalidToolSchemaError: "invalid_tool_schema",
            TooManySamplesError: "groupthink_too_many_samples", ToolChoiceError: "invalid_tool_choice",
            ModelNotServedError: "model_not_served", RunCancelledError: "cancelled"}[type(exc)]
