"""What consuming one message costs a service, layer by layer (CPU per message).

Every service consumes and publishes through FastStream on aio-pika, and a run of the agent
path is four publishes and four consumes (see `bench/design_floor.py`). This benchmark fills a
quorum queue with N copies of a real contract (`InteractionLogged`, as the runner publishes
it), then lets one consumer variant drain it and reports the consumer's CPU per message:

- `aio-pika`: a bare aio-pika consumer that acks (the floor under FastStream);
- `faststream-dict`: a FastStream subscriber taking the decoded JSON body, no middlewares;
- `faststream-contract`: the same, the handler typed with the contract (pydantic decode);
- `service`: the broker exactly as the services build it (`servicekit.messaging.make_broker`
  with FailurePolicy and FastStream's Prometheus middleware), contract-typed handler;
- `publish-aio-pika` / `publish-service`: the other direction, CPU per persistent publish with
  publisher confirms, 16 in flight (bare aio-pika / the services' FastStream broker).

    .venv/bin/python -m bench.consume_cost [--messages 3000] [--variants aio-pika,service,...]

Runs each variant in its own process on an isolated vhost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika

from tests.harness import scratch_vhost_and_database

QUEUE = "consume-cost"
VARIANTS = ("aio-pika", "faststream-dict", "faststream-contract", "service", "publish-aio-pika", "publish-service")


def sample_message() -> "object":
    from contracts import ChatMessage, InteractionLogged, TrajectoryStep, Usage

    return InteractionLogged.create(
        correlation_id="run-1", run_id="run-1", outcome="answered",
        messages=[ChatMessage(role="user", content="ping"), ChatMessage(role="assistant", content="pong")],
        tools=[], steps=[TrajectoryStep(index=0, kind="final", text="pong")], usage=Usage(total_ms=0.1),
        model_version="m", engine="scripted", subject="bench",
    )


async def fill(url: str, n: int) -> None:
    from servicekit.messaging import amqp_properties, json_body

    msg = sample_message()
    body = json_body(msg)
    props = amqp_properties(msg)
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    await asyncio.gather(*(
        channel.default_exchange.publish(
            aio_pika.Message(body, message_id=uuid.uuid4().hex, headers=props["headers"],
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json"),
            routing_key=QUEUE)
        for _ in range(n)))
    await connection.close()


async def publish_cost(variant: str, url: str, n: int, in_flight: int = 16) -> float:
    """CPU seconds to publish n persistent messages with confirms, `in_flight` at a time."""
    from servicekit.messaging import amqp_properties, json_body

    msg = sample_message()
    body = json_body(msg)
    gate = asyncio.Semaphore(in_flight)
    if variant == "publish-aio-pika":
        connection = await aio_pika.connect(url)
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})

        async def one() -> None:
            async with gate:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, message_id=uuid.uuid4().hex, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                     content_type="application/json"), routing_key=QUEUE)
    else:
        from servicekit.messaging import make_broker

        broker = make_broker(url, prefetch=16, app_id="bench")
        await broker.start()
        props = amqp_properties(msg) | {"mandatory": True}

        async def one() -> None:
            async with gate:
                await broker.publish(body, queue=QUEUE, **(props | {"message_id": uuid.uuid4().hex}))

        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    cpu0 = time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu = time.process_time() - cpu0
    await connection.close()
    if variant != "publish-aio-pika":
        await broker.stop()
    return cpu


async def drain(variant: str, url: str, n: int, prefetch: int) -> float:
    """Consume n messages; returns CPU seconds spent from the first delivery to the last ack."""
    done = asyncio.Event()
    seen = 0
    cpu0: list[float] = []

    def tick() -> None:
        nonlocal seen
        if not cpu0:
            cpu0.append(time.process_time())
        seen += 1
        if seen >= n:
            done.set()

    if variant == "aio-pika":
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            json.loads(message.body)
            tick()
            await message.ack()

        await queue.consume(on_message)
        await done.wait()
        cpu = time.process_time() - cpu0[0]
        await connection.close()
        return cpu

    from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitQueue

    from contracts import InteractionLogged

    queue = RabbitQueue(QUEUE, durable=True, queue_type=QueueType.QUORUM)
    if variant == "service":
        from prometheus_client import CollectorRegistry

        from servicekit.messaging import make_broker
        from servicekit.metrics import message_metrics_middleware

        broker = make_broker(url, prefetch=prefetch, app_id="bench",
                             middlewares=(message_metrics_middleware(CollectorRegistry(), "bench"),))
    else:
        broker = RabbitBroker(url, default_channel=Channel(prefetch_count=prefetch), logger=None)

    if variant == "faststream-dict":
        @broker.subscriber(queue, no_reply=True)
        async def on_dict(body: dict) -> None:
            tick()
    else:
        @broker.subscriber(queue, no_reply=True)
        async def on_contract(msg: InteractionLogged) -> None:
            tick()

    await broker.start()
    await done.wait()
    cpu = time.process_time() - cpu0[0]
    await broker.stop()
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--prefetch", type=int, default=16)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--drain", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain:
        import logging

        logging.basicConfig(level=logging.WARNING)
        if args.drain.startswith("publish"):
            cpu = asyncio.run(publish_cost(args.drain, args.url, args.messages))
        else:
            cpu = asyncio.run(drain(args.drain, args.url, args.messages, args.prefetch))
        print(json.dumps({"cpu_s": cpu}))
        return 0

    print(f"load average at start: {os.getloadavg()}")
    print("| variant | messages | CPU µs per message |\n|---|---:|---:|")
    for variant in args.variants.split(","):
        with scratch_vhost_and_database("consume", database=False) as (url, _):
            if not variant.startswith("publish"):
                asyncio.run(fill(url, args.messages))
            out = subprocess.run([sys.executable, "-m", "bench.consume_cost", "--drain", variant, "--url", url,
                                  "--messages", str(args.messages), "--prefetch", str(args.prefetch)],
                                 capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=True)
            cpu = json.loads(out.stdout.strip().splitlines()[-1])["cpu_s"]
            print(f"| {variant} | {args.messages} | {cpu / args.messages * 1e6:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
