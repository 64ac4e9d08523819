"""The floor under issue 2's overhead targets: the least work the mandated design can do per run.

Agent Loop's messaging rules (ARCHITECTURE §3, issue 2) put, on every run's critical path, at least:
an HTTP request into a gateway, one persistent message to a quorum queue published with confirms,
a consumer that writes the run to Postgres in a committed transaction, and a reply back to the
gateway. This benchmark builds exactly that skeleton and nothing else — no auth, no validation, no
JSON schemas, no inbox or outbox, no trajectory, no log-miner — to measure what the hardware and
the three servers cost before any of Agent Loop's own code runs:

    client (bench.http_load, this process) ──HTTP──▶ skeleton gateway (raw ASGI on uvicorn, process 2)
        ──persistent + confirmed publish──▶ quorum queue ──▶ skeleton worker (process 3)
        ──INSERT + COMMIT (asyncpg)──▶ Postgres;  worker ──reply (transient)──▶ gateway's own queue

Modes: `mq` (the client publishes and awaits the reply itself: broker + worker only), `mq+pg` (the
same plus the worker's commit), `http+mq+pg` (the whole skeleton above). Levels are numbers of
concurrent clients; each level runs `--seconds`. Reports runs/s and latency p50/p95/p99.

    .venv/bin/python -m bench.messaging_floor [--modes mq,mq+pg,http+mq+pg] [--levels 1,16,64] [--seconds 10]

It runs on an isolated vhost and database (created and dropped here), like the test harness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import aio_pika

from bench.http_load import drive, http_caller, skeleton_app
from tests.harness import free_port, port_open, scratch_vhost_and_database, wait_until

QUEUE = "floor.requests"


async def declare_request_queue(channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractQueue:
    return await channel.declare_queue(
        QUEUE, durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 5}
    )


class Requester:
    """Publishes persistent, confirmed requests and matches replies on its own exclusive queue."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.pending: dict[str, asyncio.Future] = {}

    async def start(self) -> None:
        self.connection = await aio_pika.connect(self.amqp_url)
        self.publish_channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        consume_channel = await self.connection.channel()
        await consume_channel.set_qos(prefetch_count=256)
        await declare_request_queue(self.publish_channel)
        self.reply_queue = await consume_channel.declare_queue(exclusive=True, auto_delete=True)
        await self.reply_queue.consume(self._on_reply, no_ack=True)

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self.pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message.body)

    async def call(self, body: bytes) -> bytes:
        run_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self.pending[run_id] = future
        await self.publish_channel.default_exchange.publish(
            aio_pika.Message(
                body, message_id=run_id, correlation_id=run_id, reply_to=self.reply_queue.name,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json",
            ),
            routing_key=QUEUE, mandatory=True,
        )  # returns once the broker confirmed: the message is on disk in the quorum queue
        return await future

    async def close(self) -> None:
        await self.connection.close()


# ------------------------------------------------------------------ process: worker
async def run_worker(amqp_url: str, dsn: str | None) -> None:
    import asyncpg

    pool = None
    if dsn:
        pool = await asyncpg.create_pool(dsn, min_size=4, max_size=16)
        await pool.execute("CREATE TABLE IF NOT EXISTS floor_runs (id text PRIMARY KEY, body jsonb, at timestamptz DEFAULT now())")
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=64)
    queue = await declare_request_queue(channel)

    async def on_request(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if pool is not None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO floor_runs (id, body) VALUES ($1, $2::jsonb)",
                                   message.message_id, message.body.decode())
        await channel.default_exchange.publish(
            aio_pika.Message(b'{"answer":"ok"}', correlation_id=message.correlation_id),
            routing_key=message.reply_to,
        )
        await message.ack()

    await queue.consume(on_request)
    print("READY", flush=True)
    await asyncio.Future()


# ------------------------------------------------------------------ process: skeleton gateway
def gateway_app(amqp_url: str):
    requester = Requester(amqp_url)
    return skeleton_app(requester.call, startup=requester.start, shutdown=requester.close)


def run_gateway(amqp_url: str, port: int) -> None:
    import uvicorn

    uvicorn.run(gateway_app(amqp_url), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, lifespan="on")


# ------------------------------------------------------------------ driver
BODY = json.dumps({"instruction": "What is 17*23?", "options": {"max_steps": 1}}).encode()


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.messaging_floor", *args],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])


async def measure(mode: str, amqp_url: str, dsn: str, levels: list[int], seconds: float) -> list[dict]:
    worker = spawn("--worker", amqp_url, *(["--dsn", dsn] if "pg" in mode else []))
    gateway = None
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "READY", "worker did not start"
        if mode.startswith("http"):
            port = free_port()
            gateway = spawn("--gateway", amqp_url, "--port", str(port))
            wait_until(lambda: port_open(port), timeout=30, what="skeleton gateway")
            call, close = http_caller(port)
            await drive(call, 4, 1.0, BODY)  # warm-up
            results = [await drive(call, n, seconds, BODY) for n in levels]
            await close()
            return results
        requester = Requester(amqp_url)
        await requester.start()
        try:
            await drive(requester.call, 4, 1.0, BODY)  # warm-up
            return [await drive(requester.call, n, seconds, BODY) for n in levels]
        finally:
            await requester.close()
    finally:
        for proc in (worker, gateway):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="mq,mq+pg,http+mq+pg")
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--gateway", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(run_worker(args.worker, args.dsn))
        return 0
    if args.gateway:
        run_gateway(args.gateway, args.port)
        return 0

    levels = [int(x) for x in args.levels.split(",")]
    print(f"load average at start: {os.getloadavg()}", flush=True)
    print("| mode | clients | runs/s | p50 ms | p95 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|", flush=True)
    with scratch_vhost_and_database("floor") as (amqp_url, dsn):
        for mode in args.modes.split(","):
            for r in asyncio.run(measure(mode, amqp_url, dsn, levels, args.seconds)):
                print(f"| {mode} | {r['clients']} | {r['runs_per_s']:.0f} | {r['p50_ms']:.2f} | "
                      f"{r['p95_ms']:.2f} | {r['p99_ms']:.2f} |", flush=True)
    print(f"load average at end: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
