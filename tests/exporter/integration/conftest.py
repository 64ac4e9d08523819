"""Fixtures for the exporter's integration tests: the real service as a process on a vhost and a
database of this package's own (the session's `stack` would otherwise consume these events, and
alias state is per database), the session's SeaweedFS with a bucket of its own, a client that
publishes commands and taps the events exchange, and a registry connection."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from minio import Minio

from contracts import EVENTS_EXCHANGE, Contract
from servicekit.db import asyncpg_dsn
from tests.harness import (
    RABBIT_HOST,
    IsolatedEnv,
    ServiceProcess,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    migrate,
)


@dataclass(frozen=True)
class ExporterEnv:
    env: dict[str, str]
    broker_url: str
    dsn: str
    bucket: str


@pytest.fixture(scope="package")
def exporter_env(infra: IsolatedEnv, session_tmp: Path) -> Iterator[ExporterEnv]:
    suffix = uuid.uuid4().hex[:8]
    vhost, database = f"{infra.vhost}-exporter-{suffix}", f"{infra.database}_exporter_{suffix}"
    broker_url = f"amqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    bucket = f"ex-{suffix}-{infra.suffix}"
    create_vhost(vhost)
    create_database(database)
    try:
        migrate(database_url)
        Minio(infra.s3.endpoint, access_key=infra.s3.access_key, secret_key=infra.s3.secret_key,
              secure=False).make_bucket(bucket)
        env = {**infra.env, "BROKER__URL": broker_url, "DATABASE__URL": database_url, "S3__BUCKET": bucket,
               "EXPORT__WORK_DIR": str(session_tmp / f"exporter-work-{suffix}"),
               "EXPORT__POLL_INTERVAL_S": "1", "EXPORT__LEASE_TTL_S": "20", "EXPORT__HEARTBEAT_S": "2",
               "EXPORT__RETRY_DELAY_S": "1", "BROKER__DELIVERY_LIMIT": "3",
               # A shorter ladder and parity run keep the slow test's CPU down (the defaults are 3 quants, 16 tokens).
               "EXPORT__QUANTS": '["Q4_K_M", "Q8_0"]', "EXPORT__PARITY_TOKENS": "8"}
        yield ExporterEnv(env, broker_url, asyncpg_dsn(database_url), bucket)
    finally:
        delete_vhost(vhost)
        drop_database(database)


@pytest.fixture(scope="package")
def exporter(exporter_env: ExporterEnv, session_tmp: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("exporter", {**exporter_env.env, "INSTANCE_ID": "exporter-test"},
                          session_tmp / "exporter-logs")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="package")
def s3(infra: IsolatedEnv) -> Minio:
    return Minio(infra.s3.endpoint, access_key=infra.s3.access_key, secret_key=infra.s3.secret_key, secure=False)


class Bus:
    """Publishes contracts to the events exchange; collects what a tap queue receives; reads DLQs."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, exchange: aio_pika.abc.AbstractExchange) -> None:
        self.channel = channel
        self.exchange = exchange
        self.received: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, message: Contract) -> None:
        await self.exchange.publish(
            aio_pika.Message(json.dumps(message.model_dump(mode="json")).encode(),
                             message_id=message.envelope.message_id, correlation_id=message.envelope.correlation_id,
                             content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=message.routing_key, mandatory=True,
        )

    async def tap(self, *routing_keys: str) -> None:
        queue = await self.channel.declare_queue(f"test-tap-{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True)
        for key in routing_keys:
            await queue.bind(self.exchange, routing_key=key)

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            self.received.append((msg.routing_key or "", json.loads(msg.body)))

        await queue.consume(on_message, no_ack=True)

    def of(self, routing_key: str, **match: Any) -> list[dict[str, Any]]:
        return [body for key, body in self.received
                if key == routing_key and all(body.get(k) == v for k, v in match.items())]

    async def dead_letters(self, queue_name: str) -> list[dict[str, Any]]:
        """Drain the DLQ of a work queue (the bodies)."""
        queue = await self.channel.get_queue(queue_name + ".dlq", ensure=True)
        out = []
        while (msg := await queue.get(no_ack=True, fail=False)) is not None:
            out.append(json.loads(msg.body))
        return out


@pytest.fixture(scope="package")
async def bus(exporter_env: ExporterEnv, exporter: ServiceProcess) -> AsyncIterator[Bus]:
    connection = await aio_pika.connect_robust(exporter_env.broker_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)
    b = Bus(channel, exchange)
    await b.tap("export.#", "model.deployed.v1")
    try:
        yield b
    finally:
        await connection.close()


@pytest.fixture
async def registry_conn(exporter_env: ExporterEnv) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(exporter_env.dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def eventually(predicate, timeout: float = 30.0, what: str = "condition") -> Any:  # noqa: ANN001
    """Poll a (sync or async) predicate without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)
