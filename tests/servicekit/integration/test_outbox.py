"""The outbox against real Postgres and RabbitMQ: fast path with batched marks, relay, refused rows."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import EVENTS_EXCHANGE, FeedbackSubmitted, RetrainRequested
from servicekit.db import AsyncpgPool, outbox_table
from servicekit.messagesql import MessageSql
from servicekit.messaging import EVENTS, make_broker
from servicekit.outbox import Outbox
from tests.harness import create_vhost, delete_vhost


@pytest.fixture
async def setting(infra):
    suffix = uuid.uuid4().hex[:8]
    vhost = f"{infra.vhost}-outbox-{suffix}"
    create_vhost(vhost)
    url = infra.broker_url.rsplit("/", 1)[0] + "/" + vhost
    engine = create_async_engine(infra.database_url)
    schema = f"outbox_test_{suffix}"
    metadata = sa.MetaData(schema=schema)
    table = outbox_table(metadata)
    async with engine.begin() as conn:
        await conn.execute(sa.schema.CreateSchema(schema))
        await conn.run_sync(metadata.create_all)
    db = AsyncpgPool(infra.database_url, what="the test's pool", max_size=4)
    await db.open()
    broker = make_broker(url, prefetch=4, app_id="outbox-test")
    await broker.connect()
    await broker.declare_exchange(EVENTS)
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    try:
        yield Outbox(db, MessageSql(schema), broker), engine, table, channel
    finally:
        await db.close()
        await connection.close()
        await broker.stop()
        async with engine.begin() as conn:
            await conn.execute(sa.schema.DropSchema(schema, cascade=True))
        await engine.dispose()
        delete_vhost(vhost)


async def bound_queue(channel, routing_key: str) -> aio_pika.abc.AbstractQueue:
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key=routing_key)
    return queue


def feedback() -> FeedbackSubmitted:
    return FeedbackSubmitted.create(correlation_id="run-1", feedback_id=uuid.uuid4().hex, run_id="run-1", rating=1,
                                    submitted_by="tester")


def retrain() -> RetrainRequested:
    return RetrainRequested.create(correlation_id="req-1", request_id=uuid.uuid4().hex, requested_by="tester")


async def unpublished(engine, table) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(table.c.message_type).where(table.c.published_at.is_(None)))
        return [r.message_type for r in rows]


async def test_relay_parks_an_unroutable_row_and_publishes_the_rows_behind_it(setting):
    outbox, engine, table, channel = setting
    queue = await bound_queue(channel, RetrainRequested.routing_key)  # nobody listens to feedback here
    first, second = feedback(), retrain()
    async with outbox.db.pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, first, second)

    assert await outbox.relay_once(min_age_s=0) == 1
    message = await queue.get(timeout=5)
    assert message.message_id == second.envelope.message_id
    assert await unpublished(engine, table) == ["FeedbackSubmitted"], "the refused row stays, unpublished"

    # Parked: an immediate pass does not hammer the broker with it again.
    assert await outbox.relay_once(min_age_s=0) == 0

    # Once someone listens and its back-off has passed, it goes out.
    late = await bound_queue(channel, FeedbackSubmitted.routing_key)
    outbox._parked.clear()  # noqa: SLF001 - skip the wait instead of sleeping through the back-off
    assert await outbox.relay_once(min_age_s=0) == 1
    assert (await late.get(timeout=5)).message_id == first.envelope.message_id
    assert await unpublished(engine, table) == []


async def test_fast_path_publishes_after_commit_and_marks_rows_sent(setting):
    outbox, engine, table, channel = setting
    queue = await bound_queue(channel, RetrainRequested.routing_key)
    message = retrain()
    async with outbox.db.pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, message)
        await outbox.add(conn, message)  # staged twice, e.g. by a retried handler: one row
    await outbox.publish_now(message)
    assert (await queue.get(timeout=5)).message_id == message.envelope.message_id
    assert await unpublished(engine, table) == []
    with pytest.raises(aio_pika.exceptions.QueueEmpty):
        await asyncio.sleep(0.2)
        await queue.get(timeout=1)


async def test_with_the_background_task_running_published_rows_are_marked_in_a_batch(setting):
    outbox, engine, table, channel = setting
    queue = await bound_queue(channel, RetrainRequested.routing_key)
    messages = [retrain() for _ in range(3)]
    async with outbox.db.pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, *messages)
    background = asyncio.create_task(outbox.run_relay())
    try:
        await wait_for(lambda: outbox._marking)  # noqa: SLF001
        await outbox.publish_now(*messages[:2])
        await outbox.publish_now(messages[2])
        received = {(await queue.get(timeout=5)).message_id for _ in messages}
        assert received == {m.envelope.message_id for m in messages}
        async with asyncio.timeout(10):  # marked by the background task, shortly after
            while await unpublished(engine, table):
                await asyncio.sleep(0.05)
    finally:
        background.cancel()
        await asyncio.gather(background, return_exceptions=True)


async def test_a_refused_message_does_not_hold_back_the_others_of_the_same_call(setting):
    outbox, engine, table, channel = setting
    queue = await bound_queue(channel, RetrainRequested.routing_key)  # nobody listens to feedback here
    refused, accepted = feedback(), retrain()
    async with outbox.db.pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, refused, accepted)
    await outbox.publish_now(refused, accepted)
    assert (await queue.get(timeout=5)).message_id == accepted.envelope.message_id
    assert await unpublished(engine, table) == ["FeedbackSubmitted"], "left to the relay"


async def test_marks_still_pending_when_the_background_task_stops_are_written(setting):
    outbox, engine, table, channel = setting
    await bound_queue(channel, RetrainRequested.routing_key)
    message = retrain()
    async with outbox.db.pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, message)
    outbox.mark_interval_s = 3600  # nothing flushes on its own while the task runs
    background = asyncio.create_task(outbox._run_marks())  # noqa: SLF001 - the marks without the relay
    await wait_for(lambda: outbox._marking)  # noqa: SLF001
    await outbox.publish_now(message)
    assert await unpublished(engine, table) == ["RetrainRequested"], "the mark waits for its batch"
    background.cancel()
    await asyncio.gather(background, return_exceptions=True)
    assert await unpublished(engine, table) == []


async def wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_the_backlog_counts_unpublished_rows_and_the_age_of_the_oldest(setting):
    from prometheus_client import CollectorRegistry

    from servicekit.metrics import outbox_gauges

    outbox, engine, table, channel = setting
    assert await outbox.backlog() == (0, 0.0)
    queue = await bound_queue(channel, RetrainRequested.routing_key)
    async with outbox.db.pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, feedback(), retrain())  # nobody listens to feedback here: it stays
    async with engine.begin() as conn:  # the unroutable one has waited a minute
        await conn.execute(table.update().where(table.c.message_type == "FeedbackSubmitted")
                           .values(created_at=sa.func.now() - sa.text("interval '60 seconds'")))
    pending, oldest = await outbox.backlog()
    assert pending == 2 and 59 < oldest < 120
    assert await outbox.relay_once(min_age_s=0) == 1 and (await queue.get(timeout=5))
    registry = CollectorRegistry()
    gauges = outbox_gauges(registry, "svc")
    task = asyncio.create_task(outbox.run_backlog_gauges(*gauges, interval_s=0.05))
    try:
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
    assert registry.get_sample_value("agentloop_outbox_pending_messages", {"service": "svc"}) == 1
    assert 59 < registry.get_sample_value("agentloop_outbox_oldest_pending_age_seconds", {"service": "svc"}) < 120
