"""Run use cases at the service layer, with fakes of the gateway's own ports."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from contracts import (
    AgentRunCompleted,
    AgentRunFinished,
    AgentRunRequested,
    AgentRunStep,
    ChatMessage,
    FeedbackSubmitted,
    TrajectoryStep,
    Usage,
    deterministic_id,
)
from gateway.domain import (
    FeedbackSubmission,
    Identity,
    RateLimitedError,
    Role,
    RunNotFinishedError,
    RunNotFoundError,
    RunRecord,
    RunSubmission,
)
from gateway.metrics import build as build_metrics
from gateway.service.replies import ReplyRouter
from gateway.service.runs import RunService, outcome_key

from .fakes import FakeLimiter, FakePublisher, FakeRunStore

ALICE = Identity("alice", Role.USER)
BOB = Identity("bob", Role.USER)
OPS = Identity("olga", Role.OPERATOR)


def make(limiter: FakeLimiter | None = None):
    store, publisher, replies = FakeRunStore(), FakePublisher(), ReplyRouter()
    svc = RunService(store, publisher, limiter or FakeLimiter(), replies, build_metrics(CollectorRegistry()),
                     reply_to="gateway.replies.test", max_wait_s=30, wait_grace_s=1)
    return svc, store, publisher


def completed(run_id: str, answer: str = "42") -> AgentRunCompleted:
    return AgentRunCompleted.create(
        correlation_id=run_id, message_id=deterministic_id("run-completed", run_id), run_id=run_id,
        outcome="answered", answer=answer, steps=[TrajectoryStep(index=0, kind="final", text=answer)],
        usage=Usage(engine_ms=3.0), model_version="m1", engine="scripted",
    )


def finished(run_id: str, answer: str = "42", *, message_id: str | None = None) -> AgentRunFinished:
    return AgentRunFinished.create(
        correlation_id=run_id, message_id=message_id or deterministic_id("run-finished", run_id), run_id=run_id,
        status="completed", outcome="answered", answer=answer, messages=[ChatMessage(role="user", content="hi")],
        steps=[TrajectoryStep(index=0, kind="final", text=answer)], usage=Usage(engine_ms=3.0), model_version="m1",
        engine="scripted", subject="alice",
    )


def step(run_id: str, index: int, kind: str = "token", text: str = "x") -> AgentRunStep:
    return AgentRunStep.create(correlation_id=run_id, run_id=run_id, index=index, kind=kind, text=text)


# --------------------------------------------------------------------------- requests


def test_a_run_request_needs_an_instruction_or_messages_and_names_the_field():
    with pytest.raises(ValidationError) as info:
        RunSubmission.model_validate({})
    assert info.value.errors()[0]["loc"] == ("messages",)
    with pytest.raises(ValidationError) as info:
        RunSubmission.model_validate({"instruction": "a", "messages": [{"role": "user", "content": "b"}]})
    assert info.value.errors()[0]["loc"] == ("messages",)


def test_an_empty_instruction_is_reported_on_the_instruction_alone():
    with pytest.raises(ValidationError) as info:
        RunSubmission.model_validate({"instruction": ""})
    assert [e["loc"] for e in info.value.errors()] == [("instruction",)]


def test_an_instruction_becomes_one_user_message():
    body = RunSubmission(instruction="hi")
    assert [(m.role, m.content) for m in body.conversation()] == [("user", "hi")]


# --------------------------------------------------------------------------- submit


async def test_submitting_stores_the_run_and_publishes_the_request_once():
    svc, store, publisher = make()
    run = await svc.submit(ALICE, RunSubmission(instruction="hi", options={"max_steps": 2}))
    assert run.status == "queued" and store.runs[run.run_id].subject == "alice"
    [msg] = publisher.published
    assert isinstance(msg, AgentRunRequested) and store.outbox == [msg]
    assert msg.envelope.message_id == deterministic_id("run-requested", run.run_id)
    assert msg.envelope.correlation_id == run.run_id
    assert msg.reply_to == "gateway.replies.test"
    assert (msg.principal.subject, msg.principal.role) == ("alice", "user")
    assert msg.options.max_steps == 2 and msg.options.stream is False  # nobody listens to REST steps


async def test_submissions_are_rate_limited_per_subject():
    svc, _, publisher = make(FakeLimiter(allowed=1))
    await svc.submit(ALICE, RunSubmission(instruction="1"))
    with pytest.raises(RateLimitedError):
        await svc.submit(ALICE, RunSubmission(instruction="2"))
    await svc.submit(BOB, RunSubmission(instruction="3"))
    assert len(publisher.published) == 2


async def test_waiting_returns_the_outcome_the_reply_queue_delivers():
    svc, store, publisher = make()
    loop = asyncio.get_running_loop()
    publisher.on_publish = lambda msg: loop.create_task(svc.record_outcome(finished(msg.run_id), source="reply"))
    run = await svc.submit_and_wait(ALICE, RunSubmission(instruction="6*7"), timeout_s=5)
    assert (run.status, run.answer, run.model_version) == ("completed", "42", "m1")
    assert run.usage["engine_ms"] == 3.0
    assert store.runs[run.run_id].status == "completed"  # the index is updated before the waiter wakes


async def test_a_legacy_outcome_on_the_reply_queue_still_wakes_the_waiter():
    svc, _, publisher = make()
    loop = asyncio.get_running_loop()
    publisher.on_publish = lambda msg: loop.create_task(svc.record_outcome(completed(msg.run_id), source="reply"))
    run = await svc.submit_and_wait(ALICE, RunSubmission(instruction="6*7"), timeout_s=5)
    assert (run.status, run.answer) == ("completed", "42")


async def test_a_waiter_whose_reply_was_lost_is_woken_by_the_recorded_outcome():
    svc, store, publisher = make()
    loop = asyncio.get_running_loop()
    publisher.on_publish = lambda msg: loop.create_task(svc.record_outcome(finished(msg.run_id), source="events"))
    run = await svc.submit_and_wait(ALICE, RunSubmission(instruction="6*7"), timeout_s=5)
    assert (run.status, run.answer) == ("completed", "42")
    assert store.runs[run.run_id].status == "completed"


async def test_a_wait_that_times_out_returns_the_run_still_queued():
    svc, _, _ = make()
    run = await svc.submit_and_wait(ALICE, RunSubmission(instruction="slow"), timeout_s=0.05)
    assert run.status == "queued"
    assert len(svc.replies) == 0  # the listener is gone


def test_the_wait_timeout_defaults_to_the_run_budget_and_is_capped():
    svc, _, _ = make()
    assert svc.wait_timeout(RunSubmission(instruction="x", options={"timeout_s": 10}), None) == 11
    assert svc.wait_timeout(RunSubmission(instruction="x"), 600) == 30


async def test_a_stream_yields_steps_in_order_then_the_outcome():
    svc, _, publisher = make()
    async with svc.stream(ALICE, RunSubmission(instruction="hi")) as stream:
        assert publisher.published[0].options.stream is True
        for i in range(3):
            svc.forward_step(step(stream.run_id, i))
        await svc.record_outcome(finished(stream.run_id), source="reply")
        events = [await stream.next() for _ in range(4)]
    assert [e.index for e in events[:3]] == [0, 1, 2]
    assert isinstance(events[3], RunRecord) and events[3].status == "completed"


async def test_an_outcome_from_the_events_queue_never_overtakes_a_streams_steps():
    svc, _, _ = make()
    async with svc.stream(ALICE, RunSubmission(instruction="hi")) as stream:
        await svc.record_outcome(finished(stream.run_id), source="events")
        svc.forward_step(step(stream.run_id, 0))
        await svc.record_outcome(finished(stream.run_id), source="reply")
        first, second = await stream.next(), await stream.next()
    assert isinstance(first, AgentRunStep) and isinstance(second, RunRecord)


async def test_steps_of_runs_nobody_watches_are_dropped():
    svc, _, _ = make()
    assert svc.replies.step(step("unknown", 0)) == 0


# --------------------------------------------------------------------------- outcomes


async def test_an_outcome_is_recorded_once_however_often_it_arrives():
    svc, store, _ = make()
    run = await svc.submit(ALICE, RunSubmission(instruction="hi"))
    msg = finished(run.run_id, answer="first")
    await svc.record_outcome(msg, source="events")
    await svc.record_outcome(msg, source="events")
    await svc.record_outcome(finished(run.run_id, answer="second"), source="reply")  # same message id
    other = finished(run.run_id, answer="other", message_id="another-delivery")
    await svc.record_outcome(other, source="reply")  # another message with the run's outcome: not written again
    await svc.record_outcome(completed(run.run_id, answer="legacy"), source="reply")
    assert store.runs[run.run_id].answer == "first"
    assert store.inbox == {outcome_key(run.run_id)}  # one claim per run


async def test_a_failed_run_records_its_error():
    svc, store, _ = make()
    run = await svc.submit(ALICE, RunSubmission(instruction="hi"))
    failed = AgentRunFinished.create(correlation_id=run.run_id, run_id=run.run_id, status="failed", outcome="error",
                                     messages=[ChatMessage(role="user", content="hi")], model_version="m1",
                                     engine="scripted", error_code="engine_down", error="engine unreachable")
    await svc.record_outcome(failed, source="reply")
    rec = store.runs[run.run_id]
    assert (rec.status, rec.error_code, rec.error) == ("failed", "engine_down", "engine unreachable")


# --------------------------------------------------------------------------- reading and feedback


async def test_users_read_their_own_runs_and_nobody_elses():
    svc, _, _ = make()
    run = await svc.submit(ALICE, RunSubmission(instruction="hi"))
    assert (await svc.get(ALICE, run.run_id)).run_id == run.run_id
    assert (await svc.get(OPS, run.run_id)).run_id == run.run_id
    with pytest.raises(RunNotFoundError):
        await svc.get(BOB, run.run_id)
    with pytest.raises(RunNotFoundError):
        await svc.get(ALICE, "no-such-run")


async def test_feedback_on_a_finished_run_is_stored_and_published():
    svc, store, publisher = make()
    run = await svc.submit(ALICE, RunSubmission(instruction="hi"))
    await svc.record_outcome(finished(run.run_id), source="reply")
    body = FeedbackSubmission(rating=-1, corrected_answer="43",
                              corrected_tool_calls=[{"name": "calculator", "arguments": {"expr": "6*7+1"}}])
    feedback_id = await svc.add_feedback(ALICE, run.run_id, body)
    msg = publisher.published[-1]
    assert isinstance(msg, FeedbackSubmitted) and msg.feedback_id == feedback_id
    assert (msg.rating, msg.corrected_answer, msg.submitted_by) == (-1, "43", "alice")
    assert msg.corrected_tool_calls[0].name == "calculator"
    assert store.feedback[0].corrected_tool_calls[0]["arguments"] == {"expr": "6*7+1"}


async def test_feedback_on_an_unfinished_run_is_a_conflict():
    svc, _, _ = make()
    run = await svc.submit(ALICE, RunSubmission(instruction="hi"))
    with pytest.raises(RunNotFinishedError):
        await svc.add_feedback(ALICE, run.run_id, FeedbackSubmission(rating=1))


async def test_feedback_on_someone_elses_run_is_not_found():
    svc, _, _ = make()
    run = await svc.submit(ALICE, RunSubmission(instruction="hi"))
    await svc.record_outcome(finished(run.run_id), source="reply")
    with pytest.raises(RunNotFoundError):
        await svc.add_feedback(BOB, run.run_id, FeedbackSubmission(rating=1))


async def test_the_reply_and_the_events_queue_bring_one_message_and_it_is_written_once():
    svc, store, _ = make()
    run = await svc.submit(ALICE, RunSubmission(instruction="hi"))
    written: list[bool] = []
    real_finish = store.finish

    async def spy(finish, *, message_id: str, message_type: str):
        record = await real_finish(finish, message_id=message_id, message_type=message_type)
        written.append(record is not None)
        return record

    store.finish = spy
    msg = finished(run.run_id)
    await svc.record_outcome(msg, source="reply")
    await svc.record_outcome(msg, source="events")
    assert written == [True, False] and store.inbox == {outcome_key(run.run_id)}
    assert store.runs[run.run_id].status == "completed"


async def test_runs_are_listed_by_their_tags_own_runs_for_users_everyones_for_operators():
    from gateway.domain import Identity, Role, RunSubmission

    svc = make()[0]
    alice, bob, op = Identity("alice", Role.USER), Identity("bob", Role.USER), Identity("op", Role.OPERATOR)
    a1 = await svc.submit(alice, RunSubmission(instruction="one", metadata={"session": "s1", "app": "x"}))
    await svc.submit(alice, RunSubmission(instruction="two", metadata={"session": "s2"}))
    b1 = await svc.submit(bob, RunSubmission(instruction="three", metadata={"session": "s1"}))
    assert [t.run.run_id for t in await svc.list(alice, {"session": "s1"}, 10)] == [a1.run_id]
    assert [t.run.run_id for t in await svc.list(op, {"session": "s1"}, 10)] == [b1.run_id, a1.run_id]
    assert (await svc.list(alice, {"session": "s1", "app": "x"}, 10))[0].metadata == {"session": "s1", "app": "x"}
    assert len(await svc.list(alice, {}, 1)) == 1
