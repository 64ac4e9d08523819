"""The GroupThink confidence column (migration log_miner_0003) and the label queue's order, on a
migrated database of this module's own: runs come in through the batched AgentRunFinished path,
feedback through the store's path, and the queue is read with the store's statement."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from faststream.rabbit import RabbitBroker
from prometheus_client import CollectorRegistry

from contracts import AgentRunFinished
from log_miner import SCHEMA
from log_miner.adapters.asyncpg_interactions import AsyncpgInteractionLog
from log_miner.adapters.postgres_store import PostgresMinerStore
from log_miner.metrics import MinerMetrics
from log_miner.service import RecordRuns
from servicekit.db import AsyncpgPool, make_engine
from servicekit.messagesql import MessageSql
from servicekit.outbox import Outbox
from tests.harness import PYTHON, ROOT, migrated_database
from tests.log_miner.runs import WEATHER, Trajectory, feedback


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with migrated_database("agentloop_test_labels") as url:
        yield url


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url.replace("+asyncpg", ""), autocommit=True) as conn:
        yield conn


@pytest.fixture
async def miner(database_url: str) -> AsyncIterator[tuple[RecordRuns, PostgresMinerStore]]:
    engine = make_engine(database_url, pool_size=2)
    log = AsyncpgInteractionLog(database_url)
    await log.open()
    pool = AsyncpgPool(database_url, what="the test's pool", max_size=2)
    await pool.open()
    store = PostgresMinerStore(engine, Outbox(pool, MessageSql(SCHEMA), RabbitBroker()))  # the broker stays unused
    record = RecordRuns(store, log, MinerMetrics(CollectorRegistry()), include_unrated=True)
    try:
        yield record, store
    finally:
        await record.close()
        await log.close()
        await engine.dispose()
        await pool.close()


def model() -> str:
    return f"labels-test-{uuid.uuid4().hex[:8]}@v1"


def run(mv: str, confidence: float | None, how: str, question: str = "Weather in Oslo?") -> AgentRunFinished:
    t = Trajectory(question, tools=[WEATHER], model_version=mv, confidence=confidence)
    if how == "success":
        return t.call("get_weather", {"city": "Oslo"}, {"temp": 3}).answer("3 degrees.")
    if how == "direct_answer":
        return t.answer("I do not know.")
    if how == "invalid_json":
        return t.malformed().end("max_steps")
    if how == "schema_violation":
        return t.call("get_weather", {"town": "Oslo"}, invalid="schema_violation").end("max_steps")
    if how == "max_steps":
        return t.call("get_weather", {"city": "Oslo"}, {"temp": 3}).end("max_steps")
    if how == "timeout":
        return t.end("timeout")
    raise ValueError(how)


async def test_the_confidence_is_stored_with_the_run_and_null_for_greedy_runs(miner, db):
    record, _ = miner
    mv = model()
    voted, greedy = run(mv, 0.6, "success"), run(mv, None, "success")
    assert await asyncio.gather(record.interaction(voted), record.interaction(greedy)) == [True, True]
    stored = dict(db.execute("SELECT run_id, confidence FROM log_miner.interactions WHERE model_version = %s",
                             (mv,)).fetchall())
    assert stored == {voted.run_id: pytest.approx(0.6), greedy.run_id: None}


async def test_the_queue_lists_unlabelled_runs_lowest_confidence_first_then_failures_by_class(miner, db):
    record, store = miner
    mv = model()
    named = {
        "split_04": run(mv, 0.4, "success"),
        "split_06": run(mv, 0.6, "direct_answer"),
        "unanimous_ok": run(mv, 1.0, "success"),  # not listed: sure and fine
        "unanimous_failed": run(mv, 1.0, "invalid_json"),
        "split_rated": run(mv, 0.2, "success"),  # not listed: feedback is on record
        "greedy_ok": run(mv, None, "success"),  # not listed
        "timeout": run(mv, None, "timeout"),
        "schema": run(mv, None, "schema_violation"),
        "json_old": run(mv, None, "invalid_json"),
        "max_steps": run(mv, None, "max_steps"),
        "json_new": run(mv, None, "invalid_json"),
    }
    for logged in named.values():  # one at a time: each its own transaction, so received_at orders them
        assert await record.interaction(logged)
    await record.feedback(feedback(named["split_rated"].run_id, 1))

    queue = await store.label_queue(50, mv)
    order = {logged.run_id: name for name, logged in named.items()}
    assert [order[c.run_id] for c in queue.runs] == [
        "split_04", "split_06", "unanimous_failed", "json_new", "json_old", "schema", "max_steps", "timeout"]
    assert queue.waiting == 8
    first = queue.runs[0]
    assert (first.reason, first.confidence, first.label, first.model_version) == ("low_confidence", 0.4,
                                                                                    "valid_call", mv)
    assert first.instruction == "Weather in Oslo?" and first.tools == ["get_weather"]
    assert first.calls == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert first.answer == "3 degrees." and first.logged_at == named["split_04"].envelope.occurred_at
    assert {c.reason for c in queue.runs[2:]} == {"failed"}

    head = await store.label_queue(2, mv)
    assert [c.run_id for c in head.runs] == [c.run_id for c in queue.runs[:2]] and head.waiting == 8

    # A label takes a run out of the queue, whichever way the feedback arrives.
    await record.feedback(feedback(named["split_04"].run_id, -1, calls=[("get_weather", {"city": "Oslo"})]))
    early = run(mv, 0.1, "success")
    await record.feedback(feedback(early.run_id, 1))  # before its run
    assert await record.interaction(early)
    after = await store.label_queue(50, mv)
    assert [order.get(c.run_id) for c in after.runs][:2] == ["split_06", "unanimous_failed"]
    assert after.waiting == 7


async def test_the_queue_of_all_versions_and_of_an_unknown_one(miner):
    record, store = miner
    mv = model()
    assert await record.interaction(run(mv, 0.5, "success"))
    everything = await store.label_queue(500)
    assert mv in {c.model_version for c in everything.runs}
    assert (await store.label_queue(10, "no-such-version@v0")).runs == []


def test_the_confidence_migration_goes_down_and_up_again(database_url, db):
    import os
    import subprocess

    env = {**os.environ, "DATABASE__URL": database_url}

    def alembic(*args: str) -> None:
        subprocess.run([PYTHON, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), *args], cwd=ROOT, env=env,
                       check=True, capture_output=True, timeout=120)

    def columns() -> set[str]:
        return {r[0] for r in db.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                         "'log_miner' AND table_name = 'interactions'").fetchall()}

    alembic("downgrade", "log_miner_0002")
    assert "confidence" not in columns()
    alembic("upgrade", "heads")
    assert "confidence" in columns()
