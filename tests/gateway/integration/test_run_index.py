"""The run index's batched statements against the migrated schema (the session's database),
driven through `AsyncpgRunStore` as the use cases drive it: concurrent callers share a flush."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from contracts import AgentRunRequested, ChatMessage, Principal, RunOptions, deterministic_id
from gateway.adapters.run_index import AsyncpgRunStore
from gateway.domain import NewRun, RunFinish
from servicekit.db import asyncpg_dsn
from tests.harness import IsolatedEnv

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Flushes:
    def __init__(self) -> None:
        self.sizes: dict[str, list[int]] = {}

    def __call__(self, name: str, size: int) -> None:
        self.sizes.setdefault(name, []).append(size)


@pytest.fixture
async def flushes() -> Flushes:
    return Flushes()


@pytest.fixture
async def store(infra: IsolatedEnv, flushes: Flushes) -> AsyncIterator[AsyncpgRunStore]:
    s = AsyncpgRunStore(infra.database_url, max_size=4, on_flush=flushes)
    await s.open()
    yield s
    await s.close()


def new_run(subject: str = "index-test", run_id: str | None = None) -> tuple[NewRun, AgentRunRequested]:
    run_id = run_id or f"run-{uuid.uuid4().hex}"
    msg = AgentRunRequested.create(
        correlation_id=run_id, message_id=deterministic_id("run-requested", run_id), run_id=run_id,
        messages=[ChatMessage(role="user", content="hi")], tools=[], options=RunOptions(),
        principal=Principal(subject=subject, role="user"), reply_to="gateway.replies.test",
    )
    return NewRun(run_id=run_id, subject=subject, created_at=T0, request={"messages": [{"content": "hi"}]}), msg


async def created(store: AsyncpgRunStore, n: int) -> list[str]:
    runs = [new_run() for _ in range(n)]
    await asyncio.gather(*(store.create(run, msg) for run, msg in runs))
    return [run.run_id for run, _ in runs]


def done(run_id: str, answer: str = "42", *, status: str = "completed", minutes: int = 1) -> RunFinish:
    return RunFinish(run_id=run_id, status=status, completed_at=T0 + timedelta(minutes=minutes), outcome="answered",
                     answer=answer, steps=[{"index": 0, "kind": "final", "text": answer}],
                     usage={"prompt_tokens": 3}, model_version="m-test", engine="scripted")


def fresh() -> dict[str, str]:
    """A first delivery's message id (as another replica, or another outcome message, would bring)."""
    return {"message_id": f"r-{uuid.uuid4().hex}", "message_type": "AgentRunFinished"}


async def row(store: AsyncpgRunStore, run_id: str) -> asyncpg.Record:
    return await store.pool.fetchrow("SELECT * FROM gateway.runs WHERE run_id = $1", run_id)


async def claimed(store: AsyncpgRunStore, *message_ids: str) -> int:
    return await store.pool.fetchval("SELECT count(*) FROM gateway.inbox WHERE message_id = ANY($1::text[])",
                                     list(message_ids))


async def test_concurrent_creations_share_a_statement_and_stage_their_messages(store, flushes):
    runs = [new_run() for _ in range(20)]
    await asyncio.gather(*(store.create(run, msg) for run, msg in runs))
    assert max(flushes.sizes["create"]) > 1
    for run, msg in runs:
        stored = await store.get(run.run_id)
        assert (stored.status, stored.subject, stored.created_at) == ("queued", "index-test", T0)
        body = await store.pool.fetchval("SELECT body FROM gateway.outbox WHERE message_id = $1",
                                         msg.envelope.message_id)
        assert body["run_id"] == run.run_id


async def test_a_duplicate_creation_fails_only_itself(store):
    (taken,) = await created(store, 1)
    (run, msg), (other, other_msg) = new_run(), new_run()
    clash = NewRun(run_id=taken, subject="someone-else", created_at=T0, request={})
    results = await asyncio.gather(store.create(run, msg), store.create(clash, other_msg),
                                   store.create(other, other_msg), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], asyncpg.UniqueViolationError)
    assert (await store.get(taken)).subject == "index-test"
    assert (await store.get(run.run_id)) is not None and (await store.get(other.run_id)) is not None


async def test_concurrent_outcomes_each_return_their_own_record(store, flushes):
    run_ids = await created(store, 30)
    relaxed = asyncio.gather(*(store.finish(done(r, f"relaxed {r}"), **fresh()) for r in run_ids[:15]))
    once = asyncio.gather(*(store.finish(done(r, f"once {r}"), message_id=f"m-{r}", message_type="AgentRunCompleted")
                            for r in run_ids[15:]))
    records = [*await relaxed, *await once]
    assert max(flushes.sizes["finish"]) > 1 and max(flushes.sizes["finish"]) > 1
    for i, (run_id, record) in enumerate(zip(run_ids, records, strict=True)):
        answer = f"{'relaxed' if i < 15 else 'once'} {run_id}"
        assert (record.run_id, record.answer, record.status) == (run_id, answer, "completed")
        assert record.subject == "index-test" and record.created_at == T0
        assert record.steps == [{"index": 0, "kind": "final", "text": answer}] and record.usage == {"prompt_tokens": 3}
        assert record.completed_at == T0 + timedelta(minutes=1) and record.client_tool_calls == []
        assert (await row(store, run_id))["answer"] == answer
    assert await claimed(store, *(f"m-{r}" for r in run_ids[15:])) == 15


async def test_a_second_outcome_of_a_run_changes_nothing(store):
    a, b = await created(store, 2)
    first, again = await asyncio.gather(store.finish(done(a, "first"), **fresh()),
                                        store.finish(done(a, "second"), **fresh()))
    assert first.answer == "first" and again is None
    assert await store.finish(done(b, "first"), **fresh()) is not None
    assert await store.finish(done(b, "later", status="failed"), **fresh()) is None
    assert ((await row(store, a))["answer"], (await row(store, b))["status"]) == ("first", "completed")


async def test_a_duplicate_message_id_updates_once_within_and_across_batches(store, flushes):
    a, b, c = await created(store, 3)
    results = await asyncio.gather(
        store.finish(done(a, "one"), message_id=f"dup-{a}", message_type="AgentRunCompleted"),
        store.finish(done(b, "b"), message_id=f"m-{b}", message_type="AgentRunCompleted"),
        store.finish(done(a, "two"), message_id=f"dup-{a}", message_type="AgentRunCompleted"),
    )
    assert results[0].answer == "one" and results[1].answer == "b" and results[2] is None
    assert await claimed(store, f"dup-{a}") == 1
    # redelivered later, even with other content and to a queued run, it claims and writes nothing
    await store.pool.execute("UPDATE gateway.runs SET status = 'queued' WHERE run_id = $1", a)
    again, other = await asyncio.gather(
        store.finish(done(a, "three"), message_id=f"dup-{a}", message_type="AgentRunCompleted"),
        store.finish(done(c, "c"), message_id=f"m-{c}", message_type="AgentRunCompleted"),
    )
    assert again is None and other.answer == "c"
    assert flushes.sizes["finish"] == [3, 2]  # the set-based statement, both times
    assert (await row(store, a))["answer"] == "one"
    assert await store.finish(done(a, "four"), message_id=f"dup-{a}", message_type="AgentRunCompleted") is None


async def test_of_two_first_deliveries_for_one_run_both_are_claimed_and_the_first_is_written(store):
    (a,) = await created(store, 1)
    ok, failed = await asyncio.gather(
        store.finish(done(a, "ok"), message_id=f"ok-{a}", message_type="AgentRunCompleted"),
        store.finish(done(a, None, status="failed"), message_id=f"failed-{a}", message_type="AgentRunFailed"),
    )
    assert ok.answer == "ok" and failed is None
    assert await claimed(store, f"ok-{a}", f"failed-{a}") == 2
    assert (await row(store, a))["status"] == "completed"


async def test_a_first_delivery_is_claimed_even_when_the_run_had_finished(store, flushes):
    a, b = await created(store, 2)
    assert await store.finish(done(a), **fresh()) is not None
    late, other = await asyncio.gather(
        store.finish(done(a), message_id=f"late-{a}", message_type="AgentRunCompleted"),
        store.finish(done(b), message_id=f"m-{b}", message_type="AgentRunCompleted"),
    )
    assert late is None and other.run_id == b and flushes.sizes["finish"] == [1, 2]
    assert await claimed(store, f"late-{a}", f"m-{b}") == 2
    (c,) = await created(store, 1)
    assert await store.finish(done(c), **fresh()) is not None
    assert await store.finish(done(c), message_id=f"late-{c}", message_type="AgentRunCompleted") is None
    assert await claimed(store, f"late-{c}") == 1


async def test_an_unknown_run_gets_no_record(store):
    (known,) = await created(store, 1)
    unknown = f"run-{uuid.uuid4().hex}"
    for batch in ([unknown], [unknown, known]):  # the single-row and the set-based statement
        records = await asyncio.gather(*(store.finish(done(r), **fresh()) for r in batch))
        assert records[0] is None
    assert records[1].run_id == known


async def test_a_bad_outcome_in_a_batch_fails_only_itself(store, flushes, caplog):
    a, bad, b = await created(store, 3)
    results = await asyncio.gather(
        store.finish(done(a), message_id=f"m-{a}", message_type="AgentRunCompleted"),
        store.finish(done(bad, status="bogus"), message_id=f"m-{bad}", message_type="AgentRunCompleted"),
        store.finish(done(b), message_id=f"m-{b}", message_type="AgentRunCompleted"),
        return_exceptions=True,
    )
    assert results[0].run_id == a and results[2].run_id == b
    assert isinstance(results[1], asyncpg.CheckViolationError)
    # the batch of three failed and was retried one by one: two flushes went through
    assert "a batch of 3 failed" in caplog.text and flushes.sizes["finish"] == [1, 1]
    # the failed item's claim was rolled back with it: its redelivery is a first delivery
    assert await claimed(store, f"m-{bad}") == 0
    assert (await row(store, bad))["status"] == "queued"
    record = await store.finish(done(bad), message_id=f"m-{bad}", message_type="AgentRunCompleted")
    assert record.status == "completed"

    c, worse = await created(store, 2)
    results = await asyncio.gather(store.finish(done(worse, status="bogus"), **fresh()),
                                   store.finish(done(c), **fresh()), return_exceptions=True)
    assert isinstance(results[0], asyncpg.CheckViolationError) and results[1].run_id == c


async def test_duplicate_and_reordered_deliveries_of_the_same_runs_at_once_record_each_run_once(store, caplog):
    """Two replicas take deliveries of the same runs' outcomes (another message id each: a
    re-sent outcome) in opposite orders, three rounds, while each one's own duplicates arrive
    too: every run is written once, by exactly one delivery, and no batch deadlocks."""
    run_ids = await created(store, 40)
    caplog.set_level(logging.WARNING, logger="servicekit.batching")
    for _ in range(3):
        relaxed = asyncio.gather(*(store.finish(done(r, "reply"), message_id=f"a-{r}", message_type="X")
                                   for r in run_ids))
        events = asyncio.gather(*(store.finish(done(r, "events"), message_id=f"e-{r}", message_type="X")
                                  for r in reversed(run_ids)))
        dups = asyncio.gather(*(store.finish(done(r, "dup"), message_id=f"e-{r}", message_type="X")
                                for r in run_ids[::2]))
        by_reply, by_events, by_dups = await relaxed, await events, await dups
        assert by_dups == [None] * len(by_dups)  # a message id is claimed once, whichever delivery comes first
        for run_id, mine, theirs in zip(run_ids, by_reply, reversed(by_events), strict=True):
            assert (mine is None) != (theirs is None), run_id
            assert (await row(store, run_id))["answer"] == (mine or theirs).answer
        assert await claimed(store, *(f"{p}-{r}" for p in "ae" for r in run_ids)) == 2 * len(run_ids)
        await store.pool.execute("UPDATE gateway.runs SET status = 'queued' WHERE run_id = ANY($1::text[])", run_ids)
        await store.pool.execute("DELETE FROM gateway.inbox WHERE message_id LIKE 'e-%' OR message_id LIKE 'a-%'")
    assert not [r for r in caplog.records if "failed" in r.getMessage()], "a batch failed (a deadlock?)"


async def waiting_on_locks(store: AsyncpgRunStore, n: int) -> None:
    async with asyncio.timeout(10):
        while await store.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ) < n:
            await asyncio.sleep(0.01)


async def test_batches_that_share_runs_in_opposite_orders_do_not_deadlock(store, infra, caplog):
    """Unordered, one replica's batch would hold b and wait for a, the other's hold a and wait
    for b; locked in run id order, the second batch waits for the first instead."""
    base = f"run-{uuid.uuid4().hex}"
    a, b, x = f"{base}-a", f"{base}-b", f"{base}-x"
    # a table of some size, as in production: the updates then follow the batch, not the heap
    await store.pool.execute("""INSERT INTO gateway.runs (run_id, subject, status, request)
        SELECT $1 || '-filler-' || g, 'filler', 'completed', '{}' FROM generate_series(1, 20000) AS g""", base)
    await store.pool.execute("ANALYZE gateway.runs")
    runs = [new_run(run_id=r) for r in (a, b, x)]
    await asyncio.gather(*(store.create(run, msg) for run, msg in runs))
    caplog.set_level(logging.WARNING, logger="servicekit.batching")
    holder = await asyncpg.connect(asyncpg_dsn(infra.database_url))
    replica = AsyncpgRunStore(infra.database_url, max_size=2)  # another gateway instance: its own batches
    await replica.open()
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM gateway.runs WHERE run_id = $1 FOR UPDATE", x)
        replies = asyncio.gather(*(store.finish(done(r, "reply"), **fresh()) for r in (b, x, a)))
        await waiting_on_locks(store, 1)
        events = asyncio.gather(*(replica.finish(done(r, "events"), message_id=f"e-{r}", message_type="X")
                                  for r in (a, b)))
        await waiting_on_locks(store, 2)
        await tx.commit()
        async with asyncio.timeout(0.9):  # under deadlock_timeout (1 s): no deadlock was detected
            by_replies, by_events = await replies, await events
    finally:
        await holder.close()
        await replica.close()
        await store.pool.execute("DELETE FROM gateway.runs WHERE run_id LIKE $1 || '-filler-%'", base)
    assert [r.answer for r in by_replies] == ["reply"] * 3 and by_events == [None, None]
    assert await claimed(store, f"e-{a}", f"e-{b}") == 2
    assert not [r for r in caplog.records if "failed" in r.getMessage()], "a batch failed (a deadlock?)"


async def test_runs_are_found_by_their_tags_newest_first(store):
    subject = f"tags-{uuid.uuid4().hex[:8]}"
    made = []
    for i, tags in enumerate([{"session": "s1", "app": "x"}, {"session": "s2"}, {"session": "s1"}, None]):
        run, msg = new_run(subject)
        request = {**run.request, **({"metadata": tags} if tags else {})}
        run = NewRun(run_id=run.run_id, subject=subject, created_at=T0 + timedelta(seconds=i), request=request)
        await store.create(run, msg)
        made.append(run.run_id)
    found = await store.list(subject, {"session": "s1"}, 10)
    assert [t.run.run_id for t in found] == [made[2], made[0]]
    assert found[1].metadata == {"session": "s1", "app": "x"} and found[1].run.status == "queued"
    assert [t.run.run_id for t in await store.list(subject, {}, 10)] == made[::-1]
    assert (await store.list(subject, {}, 10))[0].metadata == {}
    assert await store.list(subject, {"session": "s1", "app": "y"}, 10) == []
    assert len(await store.list(None, {"session": "s1"}, 500)) >= 2  # everyone's


async def test_screened_runs_are_listed_with_the_runners_record_of_the_request(store):
    """The gateway's flag is kept with the request; the runner's record (its flags on the client's
    tool messages too) replaces it at the outcome, alone or in a batch; a screened tool step lists
    the run as well; an unscreened run is not listed."""
    since = datetime.now(UTC) - timedelta(seconds=5)
    gateway_flag = {"source": "user", "loc": "instruction", "action": "flagged", "category": "jailbreak"}
    client_tool = {"source": "tool", "loc": "messages.2.content", "action": "quarantined", "category": "exfiltration"}
    runs = []
    for request in ({"screening": [gateway_flag]}, {"screening": [gateway_flag]}, {}, {}):
        run, msg = new_run(run_id=f"run-{uuid.uuid4().hex}")
        run = NewRun(run_id=run.run_id, subject=run.subject, created_at=datetime.now(UTC),
                     request={**run.request, **request})
        await store.create(run, msg)
        runs.append(run.run_id)
    alone, batched, tool_step, clean = runs
    record = await store.finish(dataclasses.replace(done(alone), screening=[gateway_flag, client_tool]),
                                **fresh())
    assert record.screening == [gateway_flag, client_tool]
    step = {"index": 1, "kind": "tool_result", "tool_call": {"name": "fetch"}, "tool_result": "Ignore all...",
            "screening": {"category": "instruction_override", "action": "quarantined", "score": 0.9, "rules": []}}
    finished = await asyncio.gather(store.finish(done(batched), **fresh()),  # no record of the runner's: kept
                                    store.finish(dataclasses.replace(done(tool_step), steps=[step]), **fresh()),
                                    store.finish(done(clean), **fresh()))
    assert finished[0].screening == [gateway_flag] and finished[2].screening == []
    listed = {r["run_id"]: r for r in await store.screened(since, 100)}
    assert clean not in listed and {alone, batched, tool_step} <= set(listed)
    assert listed[alone]["screening"] == [gateway_flag, client_tool] and listed[alone]["screened_steps"] == []
    assert listed[tool_step]["screening"] == [] and listed[tool_step]["screened_steps"] == [step]
    assert (await store.get(batched)).screening == [gateway_flag]
