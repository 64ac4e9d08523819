"""Run use cases: submit (fire-and-forget, wait, stream), read, record outcomes, feedback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from contracts import (
    AgentRunCancelRequested,
    AgentRunCompleted,
    AgentRunFailed,
    AgentRunFinished,
    AgentRunRequested,
    AgentRunStep,
    FeedbackSubmitted,
    Principal,
    ToolCall,
    deterministic_id,
    new_id,
    utcnow,
)
from servicekit.logs import log_fields

from ..domain import (
    AuditEntry,
    FeedbackSubmission,
    Identity,
    NewFeedback,
    NewRun,
    RateLimitedError,
    RunFinish,
    RunNotFinishedError,
    RunNotFoundError,
    RunRecord,
    Role,
    RunRules,
    RunSubmission,
    TaggedRun,
)
from ..domain.screening import InjectionBlockedError, InputScreen
from ..metrics import Metrics
from ..ports import AuditLog, Publisher, RateLimiter, RunStore
from .replies import ReplyRouter, RunWatch, StreamClosed

logger = logging.getLogger("gateway.runs")

RunOutcomeMessage = AgentRunFinished | AgentRunCompleted | AgentRunFailed
SubmitMode = Literal["async", "wait", "stream"]


@dataclass(frozen=True)
class Admission:
    """A request that passed its rules, its screening and the caller's rate (`RunService.admit`):
    the messages screening fired on and let through (policy `flag`) go with each of its runs."""

    screening: tuple[dict[str, Any], ...] = ()


def finish_of(msg: RunOutcomeMessage) -> RunFinish:
    """What the run index records for an outcome message (the same for every delivery of it).
    AgentRunFinished is the event the index is written from; the legacy outcomes still arrive on
    the reply queue from runners that publish them (decision 0016)."""
    if isinstance(msg, AgentRunFailed):
        return RunFinish(run_id=msg.run_id, status="failed", completed_at=msg.envelope.occurred_at, outcome="error",
                         model_version=msg.model_version, error_code=msg.error_code, error=msg.reason)
    failed = isinstance(msg, AgentRunFinished) and msg.status == "failed"
    return RunFinish(
        run_id=msg.run_id,
        status="failed" if failed else "completed",
        completed_at=msg.envelope.occurred_at,
        outcome=msg.outcome,
        answer=msg.answer,
        steps=[] if failed else [s.model_dump(mode="json") for s in msg.steps],
        client_tool_calls=[c.model_dump(mode="json") for c in msg.client_tool_calls],
        usage={} if failed else msg.usage.model_dump(mode="json"),
        model_version=msg.model_version,
        engine=None if failed else msg.engine,
        error_code=msg.error_code if failed else None,
        error=msg.error if failed else None,
        screening=list(msg.screening),
    )


def outcome_key(run_id: str) -> str:
    """The inbox key of a run's outcome: one per run, whatever message brings it."""
    return deterministic_id("run-outcome", run_id)


def finished_record(run: NewRun, finish: RunFinish) -> RunRecord:
    return RunRecord(
        run_id=run.run_id,
        subject=run.subject,
        status=finish.status,
        created_at=run.created_at,
        outcome=finish.outcome,
        answer=finish.answer,
        steps=finish.steps,
        client_tool_calls=finish.client_tool_calls,
        usage=finish.usage,
        model_version=finish.model_version,
        engine=finish.engine,
        error_code=finish.error_code,
        error=finish.error,
        completed_at=finish.completed_at,
        screening=finish.screening or list(run.request.get("screening", [])),
    )


def queued_record(run: NewRun) -> RunRecord:
    return RunRecord(run_id=run.run_id, subject=run.subject, status="queued", created_at=run.created_at,
                     screening=list(run.request.get("screening", [])))


class RunStream:
    """A submitted run's events as they arrive: `AgentRunStep`s, then the finished record.
    `next()` returns None once the stream was closed from outside (the client left)."""

    def __init__(self, run: NewRun, watch: RunWatch) -> None:
        self.run = run
        self._watch = watch

    @property
    def run_id(self) -> str:
        return self.run.run_id

    async def next(self) -> AgentRunStep | RunRecord | None:
        event = await self._watch.next()
        if isinstance(event, StreamClosed):
            return None
        if isinstance(event, RunFinish):
            return finished_record(self.run, event)
        return event

    def close(self) -> None:
        self._watch.close()


class RunService:
    def __init__(
        self,
        store: RunStore,
        publisher: Publisher,
        limiter: RateLimiter,
        replies: ReplyRouter,
        metrics: Metrics,
        *,
        reply_to: str,
        max_wait_s: float = 600.0,
        wait_grace_s: float = 5.0,
        rules: RunRules | None = None,
        screen: InputScreen | None = None,
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.limiter = limiter
        self.replies = replies
        self.metrics = metrics
        self.reply_to = reply_to
        self.max_wait_s = max_wait_s
        self.wait_grace_s = wait_grace_s
        self.rules = rules if rules is not None else RunRules()
        self.screen = screen
        self.audit = audit
        self._clock = clock
        self._submitted = {mode: metrics.runs_submitted.labels(mode=mode) for mode in ("async", "wait", "stream")}
        self._cancels: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ submit

    async def submit(self, who: Identity, body: RunSubmission) -> RunRecord:
        """Accept a run and return at once (status queued)."""
        run = await self._submit(who, body, mode="async")
        return queued_record(run)

    async def submit_and_wait(self, who: Identity, body: RunSubmission, timeout_s: float | None = None, *,
                              admitted: Admission | None = None) -> RunRecord:
        """Accept a run and wait for its outcome; on timeout the run is returned still queued.
        `admitted`: the caller has admitted it already (`admit(..., runs=n)` for n runs of one body)."""
        if admitted is None:
            admitted = await self.admit(who, body)
        run, msg = self._prepare(who, body, stream=False, screening=admitted.screening)
        wait_s = self.wait_timeout(body, timeout_s)
        with self.replies.watch(run.run_id, steps=False) as watch:
            await self._persist_and_publish(run, msg, "wait")
            try:
                async with asyncio.timeout(wait_s):
                    event = await watch.next()
            except TimeoutError:
                return queued_record(run)
        assert isinstance(event, RunFinish)
        return finished_record(run, event)

    @contextlib.asynccontextmanager
    async def stream(self, who: Identity, body: RunSubmission, *,
                     admitted: Admission | None = None) -> AsyncIterator[RunStream]:
        """Accept a run and listen to its steps while the block runs (`admitted`: `admit` passed it already)."""
        if admitted is None:
            admitted = await self.admit(who, body)
        run, msg = self._prepare(who, body, stream=True, screening=admitted.screening)
        with self.replies.watch(run.run_id, steps=True) as watch:
            await self._persist_and_publish(run, msg, "stream")
            yield RunStream(run, watch)

    def wait_timeout(self, body: RunSubmission, requested_s: float | None) -> float:
        """The client's timeout, or the run's own time budget plus a grace; never over the cap."""
        wanted = requested_s if requested_s is not None else body.options.timeout_s + self.wait_grace_s
        return min(wanted, self.max_wait_s)

    async def _submit(self, who: Identity, body: RunSubmission, mode: SubmitMode) -> NewRun:
        admitted = await self.admit(who, body)
        run, msg = self._prepare(who, body, stream=mode == "stream", screening=admitted.screening)
        await self._persist_and_publish(run, msg, mode)
        return run

    async def admit(self, who: Identity, body: RunSubmission, *, runs: int = 1) -> Admission:
        """The request's rules first (InvalidRequestError: nothing stored, nothing published, no
        rate spent, as for a request that fails its schema), then screening of its user and system
        messages (a refusal counts against the rate, is recorded as a `refused` run and audited),
        then the caller's rate, once per run the body will be submitted as."""
        self.rules.check(body)
        screening = await self._screen(who, body) if self.screen is not None else ()
        for _ in range(runs):
            await self._check_rate(who)
        return Admission(screening)

    async def _screen(self, who: Identity, body: RunSubmission) -> tuple[dict[str, Any], ...]:
        assert self.screen is not None
        try:
            flagged = self.screen.check(body)
        except InjectionBlockedError as exc:
            await self._check_rate(who)  # a refusal is recorded as a run: it counts as one
            run, _ = self._prepare(who, body, stream=False, screening=(exc.record,))
            exc.run_id = run.run_id  # the refusal names the run it recorded (GET /v1/runs/{id}: refused)
            await self.store.refuse(run, "prompt_injection", str(exc))
            self.metrics.screened.labels(source=exc.source, action="blocked", category=exc.verdict.category).inc()
            logger.warning("run request refused: %s", exc, extra=log_fields(subject=who.subject, **exc.ctx))
            if self.audit is not None:
                await self.audit.record(AuditEntry(
                    subject=who.subject, role=who.role.label, action="runs.screened", outcome="refused",
                    target=run.run_id, details={"field": exc.field, **exc.ctx}))
            raise
        for item in flagged:
            self.metrics.screened.labels(source=item.source, action="flagged", category=item.verdict.category).inc()
            logger.info("run request flagged by screening (%s at %s); let through", item.verdict.category,
                        ".".join(map(str, item.loc)), extra=log_fields(subject=who.subject))
        return tuple(item.record() for item in flagged)

    async def _check_rate(self, who: Identity) -> None:
        retry_after = await self.limiter.hit("runs", who.subject)
        if retry_after is not None:
            raise RateLimitedError("runs", retry_after)

    def _prepare(self, who: Identity, body: RunSubmission, *, stream: bool,
                 screening: tuple[dict[str, Any], ...] = ()) -> tuple[NewRun, AgentRunRequested]:
        run_id = new_id()
        # Only a WebSocket listens to steps: REST runs ask the runner not to stream them.
        options = body.options if body.options.stream == stream else body.options.model_copy(update={"stream": stream})
        msg = AgentRunRequested.create(
            correlation_id=run_id,
            message_id=deterministic_id("run-requested", run_id),
            run_id=run_id,
            messages=body.conversation(),
            tools=body.tools,
            options=options,
            principal=Principal(subject=who.subject, role=who.role.label),
            reply_to=self.reply_to,
            metadata=body.metadata,
            screening=list(screening),
        )
        request = {
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in msg.messages],
            "tools": [t.model_dump(mode="json") for t in msg.tools],
            "options": options.model_dump(mode="json"),
            **({"metadata": body.metadata} if body.metadata else {}),
            **({"screening": list(screening)} if screening else {}),  # what `GET /v1/ops/screen/flagged` lists
        }
        return NewRun(run_id=run_id, subject=who.subject, created_at=self._clock(), request=request), msg

    async def _persist_and_publish(self, run: NewRun, msg: AgentRunRequested, mode: SubmitMode) -> None:
        await self.store.create(run, msg)
        await self.publisher.publish_now(msg)
        self._submitted[mode].inc()

    def cancel_soon(self, run_id: str, reason: str) -> None:
        """Ask the runner running `run_id` to stop it (its requester is gone), without waiting: a
        notification, not staged (a lost one only lets the turn run to its end, as before)."""
        msg = AgentRunCancelRequested.create(correlation_id=run_id, run_id=run_id, reason=reason,
                                             message_id=deterministic_id("run-cancel", run_id))
        task = asyncio.get_running_loop().create_task(self.publisher.publish_now(msg))
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    # ------------------------------------------------------------------ read

    async def get(self, who: Identity, run_id: str) -> RunRecord:
        run = await self.store.get(run_id)
        if run is None or not run.visible_to(who):  # another user's run does not exist for you
            raise RunNotFoundError(run_id)
        return run

    async def list(self, who: Identity, metadata: dict[str, str], limit: int) -> list[TaggedRun]:
        """Runs newest first whose tags include every `metadata` pair: the caller's own, or with an
        operator's role everyone's."""
        return await self.store.list(None if who.role >= Role.OPERATOR else who.subject, metadata, limit)

    # ------------------------------------------------------------------ outcomes

    async def record_outcome(self, msg: RunOutcomeMessage, *, source: Literal["reply", "events"]) -> None:
        """Record a run's outcome in the index, then wake this instance's listeners.

        One writer, one claim per run: the inbox key is the run's outcome (`outcome_key`), not the
        message's id, and is claimed in the same statement that updates the run if it is still
        queued. Whichever outcome message reaches the gateway first — the reply or AgentRunFinished
        on the events queue, or a legacy AgentRunCompleted / AgentRunFailed on the reply queue
        from a runner that still sends them — writes it; every later one, and every redelivery,
        changes nothing and writes nothing. From the reply queue the outcome is written before
        the listeners wake, so a client that got its answer reads the same state back (and may
        give feedback). From the events queue only listeners that want no steps are woken (a
        stream waits for the reply queue, which keeps the outcome behind the run's steps; see
        `ReplyRouter.outcome`)."""
        finish = finish_of(msg)
        try:
            record = await self.store.finish(finish, message_id=outcome_key(msg.run_id),
                                             message_type=msg.envelope.message_type)
            if record is not None:
                self.metrics.run_latency.labels(status=record.status).observe(
                    max(0.0, time.time() - record.created_at.timestamp())
                )
        finally:
            self.replies.outcome(finish, streams=source == "reply")

    def forward_step(self, step: AgentRunStep) -> None:
        self.replies.step(step)

    # ------------------------------------------------------------------ feedback

    async def add_feedback(self, who: Identity, run_id: str, body: FeedbackSubmission) -> str:
        run = await self.store.get(run_id)
        if run is None or not run.visible_to(who):
            raise RunNotFoundError(run_id)
        if not run.finished:
            raise RunNotFinishedError(run_id)
        feedback_id = new_id()
        calls = None
        if body.corrected_tool_calls is not None:
            calls = [
                ToolCall(id=c.id or f"call_{i}", name=c.name, arguments=c.arguments)
                for i, c in enumerate(body.corrected_tool_calls)
            ]
        msg = FeedbackSubmitted.create(
            correlation_id=run_id,
            message_id=deterministic_id("feedback-submitted", feedback_id),
            feedback_id=feedback_id,
            run_id=run_id,
            rating=body.rating,
            corrected_answer=body.corrected_answer,
            corrected_tool_calls=calls,
            comment=body.comment,
            submitted_by=who.subject,
        )
        feedback = NewFeedback(
            feedback_id=feedback_id,
            run_id=run_id,
            subject=who.subject,
            rating=body.rating,
            corrected_answer=body.corrected_answer,
            corrected_tool_calls=[c.model_dump(mode="json") for c in calls] if calls is not None else None,
            comment=body.comment,
        )
        await self.store.add_feedback(feedback, msg)
        await self.publisher.publish_now(msg)
        return feedback_id
