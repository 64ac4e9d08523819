"""The batched AgentRunFinished path (asyncpg) against a migrated database of its own, next to
the SQLAlchemy store of the feedback path: concurrent deliveries share one transaction, each
message is taken in once, feedback and runs meet in either order, a bad run fails alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from faststream.rabbit import RabbitBroker
from prometheus_client import CollectorRegistry

from contracts import AgentRunFinished
from log_miner import SCHEMA
from log_miner.adapters.asyncpg_interactions import AsyncpgInteractionLog
from log_miner.adapters.postgres_store import PostgresMinerStore
from log_miner.metrics import MinerMetrics
from log_miner.domain.taxonomy import classify
from log_miner.service import RecordRuns
from log_miner.service.record import feedback_of, run_of
from servicekit.db import AsyncpgPool, make_engine
from servicekit.messagesql import MessageSql
from servicekit.outbox import Outbox
from tests.harness import migrated_database
from tests.log_miner.runs import WEATHER, Trajectory, feedback


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with migrated_database("agentloop_test_batch") as url:
        yield url


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url.replace("+asyncpg", ""), autocommit=True) as conn:
        yield conn


@dataclass
class Miner:
    record: RecordRuns
    store: PostgresMinerStore
    metrics: MinerMetrics


@pytest.fixture
async def miner(database_url: str) -> AsyncIterator[Miner]:
    engine = make_engine(database_url, pool_size=2)
    log = AsyncpgInteractionLog(database_url)
    await log.open()
    pool = AsyncpgPool(database_url, what="the test's pool", max_size=2)
    await pool.open()
    store = PostgresMinerStore(engine, Outbox(pool, MessageSql(SCHEMA), RabbitBroker()))  # the broker stays unused
    metrics = MinerMetrics(CollectorRegistry())
    record = RecordRuns(store, log, metrics, include_unrated=True)
    try:
        yield Miner(record, store, metrics)
    finally:
        await record.close()
        await log.close()
        await engine.dispose()
        await pool.close()


def batch_sizes(metrics: MinerMetrics) -> tuple[float, float]:
    """(transactions, logged runs written) from the batch-size histogram."""
    samples = {s.name: s.value for s in metrics.interaction_batch_size.collect()[0].samples}
    return samples["log_miner_interaction_batch_size_count"], samples["log_miner_interaction_batch_size_sum"]


def model() -> str:
    """A model version of the test's own: the counts of one test are not another's."""
    return f"batch-test-{uuid.uuid4().hex[:8]}@v1"


def counts(db, model_version: str) -> dict[str, int]:
    return dict(db.execute("SELECT label, runs FROM log_miner.taxonomy_counts WHERE model_version = %s",
                           (model_version,)).fetchall())


def labels(db, *runs: AgentRunFinished) -> dict[str, tuple[str, str | None]]:
    rows = db.execute("SELECT run_id, label, example_kind FROM log_miner.interactions WHERE run_id = ANY(%s)",
                      ([r.run_id for r in runs],)).fetchall()
    return {run_id: (label, kind) for run_id, label, kind in rows}


def claimed(db, *runs: AgentRunFinished) -> int:
    return db.execute("SELECT count(*) FROM log_miner.inbox WHERE message_id = ANY(%s)",
                      ([r.envelope.message_id for r in runs],)).fetchone()[0]


async def test_concurrent_runs_are_written_in_one_transaction_as_the_store_reads_them(miner, db):
    mv = model()
    ok = [Trajectory("What is 17*23?", model_version=mv).call("calculator", {"expression": "17*23"}, 391)
          .answer("17*23 is 391.") for _ in range(4)]
    failing = (Trajectory("1/0?", model_version=mv).call("calculator", {"expression": "1/0"},
                                                         tool_error="division by zero").answer("?"))
    wrong = (Trajectory("What is 6*7?", model_version=mv).malformed()
             .call("calculator", {"expr": "6*7"}, invalid="schema_violation").end("max_steps"))
    runs = [*ok, failing, wrong]
    assert await asyncio.gather(*(miner.record.interaction(r) for r in runs)) == [True] * len(runs)
    assert batch_sizes(miner.metrics) == (1, len(runs))
    assert labels(db, *runs) == {**{r.run_id: ("valid_call", "success") for r in ok},
                                 failing.run_id: ("tool_error", None), wrong.run_id: ("invalid_json", None)}
    assert counts(db, mv) == {"valid_call": 4, "tool_error": 1, "invalid_json": 1}
    assert claimed(db, *runs) == len(runs)
    async with miner.store.transaction() as tx:
        stored = await tx.stored_run(failing.run_id)
    assert stored is not None
    assert (stored.run.messages, stored.run.tools, stored.run.steps) == (failing.messages, failing.tools, failing.steps)
    assert (stored.run.subject, stored.run.engine, stored.run.logged_at) == ("tester", "scripted",
                                                                             failing.envelope.occurred_at)
    assert stored.run.usage == failing.usage.model_dump(mode="json")
    assert stored.labels == tuple(label.value for label in classify(run_of(failing), []).labels)


async def test_a_message_delivered_twice_in_a_batch_and_once_more_later_is_taken_in_once(miner, db):
    mv = model()
    first, second = (Trajectory("Hi", model_version=mv).answer("Hello") for _ in range(2))
    assert await asyncio.gather(miner.record.interaction(first), miner.record.interaction(first),
                                miner.record.interaction(second)) == [True, False, True]
    assert await asyncio.gather(miner.record.interaction(second), miner.record.interaction(first)) == [False, False]
    assert counts(db, mv) == {"direct_answer": 2}
    assert claimed(db, first, second) == 2


async def test_a_run_resent_under_another_message_id_is_stored_and_counted_once(miner, db):
    mv = model()
    logged = Trajectory("Hi", model_version=mv).answer("Hello")
    again = logged.model_copy(update={"envelope": logged.envelope.model_copy(update={"message_id": uuid.uuid4().hex})})
    later = logged.model_copy(update={"envelope": logged.envelope.model_copy(update={"message_id": uuid.uuid4().hex})})
    assert await asyncio.gather(miner.record.interaction(logged), miner.record.interaction(again)) == [True, True]
    assert await miner.record.interaction(later) is True
    assert counts(db, mv) == {"direct_answer": 1}
    assert claimed(db, logged, again, later) == 3


async def test_feedback_before_or_after_its_run_classifies_it(miner, db):
    mv = model()
    rejected = Trajectory("Capital of France?", model_version=mv).answer("Lyon")
    missed = Trajectory("Weather in Oslo?", tools=[WEATHER], model_version=mv).answer("It is probably sunny.")
    corrected_later = Trajectory("What is 6*7?", model_version=mv).answer("About 40.")
    await miner.record.feedback(feedback(rejected.run_id, -1))
    await miner.record.feedback(feedback(missed.run_id, -1, calls=[("get_weather", {"city": "Oslo"})]))
    await asyncio.gather(*(miner.record.interaction(r) for r in (rejected, missed, corrected_later)))
    await miner.record.feedback(feedback(corrected_later.run_id, -1, calls=[("calculator", {"expression": "6*7"})]))
    assert labels(db, rejected, missed, corrected_later) == {
        rejected.run_id: ("negative_feedback", None), missed.run_id: ("missed_call", "corrected"),
        corrected_later.run_id: ("missed_call", "corrected"),
    }
    assert counts(db, mv) == {"negative_feedback": 1, "missed_call": 2, "direct_answer": 0}


async def test_a_batch_waits_for_feedback_in_flight_on_its_run_and_sees_it(miner, db):
    logged = Trajectory("Capital of France?", model_version=model()).answer("Lyon")
    fb = feedback(logged.run_id, -1)
    async with miner.store.transaction() as tx:  # the feedback path, holding the run's lock
        await tx.claim(fb.envelope.message_id, fb.envelope.message_type)
        await tx.lock_run(logged.run_id)
        taking = asyncio.create_task(miner.record.interaction(logged))
        deadline = time.monotonic() + 10
        while not db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0]:
            assert time.monotonic() < deadline, "the batch never waited for the run's lock"
            assert not taking.done(), "the batch did not wait for the run's lock"
            await asyncio.sleep(0.02)
        await tx.insert_feedback(fb.envelope.message_id, feedback_of(fb))
    assert await taking is True
    assert labels(db, logged) == {logged.run_id: ("negative_feedback", None)}


async def test_a_run_postgres_rejects_fails_only_its_own_delivery(miner, db):
    mv = model()
    good = [Trajectory("Hi", model_version=mv).answer("Hello") for _ in range(3)]
    bad = Trajectory("Hi", model_version=mv).answer("nul \x00 byte")  # jsonb takes no \u0000
    results = await asyncio.gather(*(miner.record.interaction(r) for r in (good[0], bad, *good[1:])),
                                   return_exceptions=True)
    assert results[0] is True and results[2:] == [True, True]
    assert isinstance(results[1], Exception)
    assert labels(db, *good, bad) == {r.run_id: ("direct_answer", "success") for r in good}
    assert counts(db, mv) == {"direct_answer": 3}
    assert claimed(db, bad) == 0  # not claimed: its redelivery is a first delivery


async def test_a_clients_tool_loop_is_one_conversation_mined_once_from_its_last_run(miner, db):
    """Completion 1 ends in a client call; completion 2 sends it back (with the gateway's ids) and
    its result and gets the answer: one conversation, one example naming both runs."""
    from contracts import ChatMessage, ToolCall
    from log_miner.domain.examples import MiningRules, mine_run

    mv = model()
    first = Trajectory("Weather in Lisbon?", tools=[WEATHER], model_version=mv).client_call("get_weather",
                                                                                             {"city": "Lisbon"})
    follow = Trajectory("Weather in Lisbon?", tools=[WEATHER], model_version=mv)
    call = ToolCall(id="call_c0ffee000001_1", name="get_weather", arguments={"city": "Lisbon"})
    follow.messages += [ChatMessage(role="assistant", content="", tool_calls=[call]),
                        ChatMessage(role="tool", tool_call_id=call.id, content='{"temp_c": 21}')]
    second = follow.answer("It is 21 C in Lisbon.")
    other = Trajectory("Weather in Oslo?", tools=[WEATHER], model_version=mv).client_call("get_weather",
                                                                                           {"city": "Oslo"})
    assert await miner.record.interaction(first) and await miner.record.interaction(other)
    assert await miner.record.interaction(second)
    rows = dict((r[0], r[1:]) for r in db.execute(
        "SELECT run_id, continues, conversation_id FROM log_miner.interactions WHERE run_id = ANY(%s)",
        ([first.run_id, second.run_id, other.run_id],)).fetchall())
    assert rows == {first.run_id: (None, first.run_id), second.run_id: (first.run_id, first.run_id),
                    other.run_id: (None, other.run_id)}
    mined = {item.run.run_id: item async for page in miner.store.mined_runs(None, batch=100) for item in page}
    assert first.run_id not in mined  # continued: mined from its conversation's last run
    item = mined[second.run_id]
    assert item.earlier_runs == (first.run_id,)
    example = mine_run(item, MiningRules()).example
    assert example is not None and example.run_ids == (first.run_id, second.run_id)
    assert [m["role"] for m in example.messages] == ["user", "assistant", "tool", "assistant"]


async def test_runs_tagged_with_one_session_id_are_one_conversation_even_when_their_messages_differ(miner, db):
    mv = model()
    session = f"sess-{uuid.uuid4().hex[:8]}"

    def tagged(msg):
        return msg.model_copy(update={"metadata": {"session_id": session}})

    first = tagged(Trajectory("Weather in Lisbon?", tools=[WEATHER], model_version=mv).client_call(
        "get_weather", {"city": "Lisbon"}))
    # the client rewrote its history (a summary instead of the turns): no prefix match, the tag links it
    second = tagged(Trajectory("Earlier: Lisbon is 21 C. Is that warm?", tools=[WEATHER], model_version=mv)
                    .answer("Yes, 21 C is warm."))
    untagged = Trajectory("Earlier: Lisbon is 21 C. Is that warm?", tools=[WEATHER], model_version=mv).answer("Yes.")
    for msg in (first, second, untagged):
        assert await miner.record.interaction(msg)
    rows = dict((r[0], r[1:]) for r in db.execute(
        "SELECT run_id, continues, conversation_id, session_id FROM log_miner.interactions WHERE run_id = ANY(%s)",
        ([first.run_id, second.run_id, untagged.run_id],)).fetchall())
    assert rows == {first.run_id: (None, first.run_id, session), second.run_id: (first.run_id, first.run_id, session),
                    untagged.run_id: (None, untagged.run_id, None)}
