"""The floor of the agent path's *message choreography* on the mandated stack (FastStream on RabbitMQ).

`bench/messaging_floor.py` measures the least a run could cost: one request, one reply. A real
run of Agent Loop's design sends more messages, because other services need to hear about it:

    client ──HTTP──▶ gateway ──request (persistent, confirmed, quorum)──▶ runner
    runner ──reply (transient, confirmed)──▶ the gateway instance's own queue   → HTTP answer
    runner ──run completed (persistent, confirmed, quorum)──▶ gateway events queue (durable outcome)
    runner ──interaction logged (persistent, confirmed, quorum)──▶ log-miner queue

i.e. 4 publishes and 4 consumes per run, plus (with `--pg`) the design's commits: the gateway's run
row, the runner's record, the gateway's durable outcome, the log-miner's row. With `--one-event`
(decision 0016) the runner publishes one `run finished` that both the gateway's outcome queue and
the log-miner's queue are bound to: 3 publishes and 4 consumes per run. This benchmark runs
exactly that choreography with FastStream brokers built by `servicekit.messaging.make_broker`
(the services' settings: confirms, persistent messages, quorum queues, prefetch 16) and handlers
that do nothing else: no auth, no contracts, no run loop, no classification. What it sustains is
the most the real services can reach on this machine while they keep the design's messages.

    .venv/bin/python -m bench.design_floor [--levels 1,16,64] [--seconds 10] [--pg] [--one-event]

It runs on an isolated vhost and database (created and dropped here), and then, in the same run,
the bare aio-pika round trip (`bench.messaging_floor`'s `mq` mode) the issue-10 targets are ratios to.
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

from bench.http_load import drive, http_caller, skeleton_app
from bench.messaging_floor import measure as bare_round_trip
from tests.harness import free_port, port_open, scratch_vhost_and_database, wait_until

ROOT = Path(__file__).resolve().parents[1]
RUNS, OUTCOMES, LOGGED, EXCHANGE = "floor.runs", "floor.gateway.outcomes", "floor.miner.logged", "floor.events"
TABLE = "CREATE TABLE IF NOT EXISTS floor_rows (id text PRIMARY KEY, kind text, body jsonb)"


ONE_EVENT = os.environ.get("FLOOR_ONE_EVENT") == "1"  # set by the driver for its child processes


def topology():
    from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

    def quorum(name: str, key: str) -> RabbitQueue:
        return RabbitQueue(name, durable=True, queue_type=QueueType.QUORUM, routing_key=key)

    exchange = RabbitExchange(EXCHANGE, type=ExchangeType.TOPIC, durable=True)
    outcome_key, logged_key = ("run.finished", "run.finished") if ONE_EVENT else ("run.completed", "interaction.logged")
    return exchange, quorum(RUNS, "run.requested"), quorum(OUTCOMES, outcome_key), quorum(LOGGED, logged_key)


async def open_pool(dsn: str | None):
    if not dsn:
        return None
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=16)
    await pool.execute(TABLE)
    return pool


async def commit(pool, row_id: str, kind: str, body: bytes) -> None:
    if pool is not None:
        await pool.execute("INSERT INTO floor_rows (id, kind, body) VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING",
                           row_id, kind, body.decode())


def broker_for(url: str, name: str):
    from servicekit.messaging import make_broker

    return make_broker(url, prefetch=16, app_id=name)


# ------------------------------------------------------------------ process: runner
async def run_runner(url: str, dsn: str | None) -> None:
    exchange, runs, _, _ = topology()
    broker = broker_for(url, "floor-runner")
    pool = await open_pool(dsn)

    @broker.subscriber(runs, exchange, no_reply=True)
    async def on_request(body: dict) -> None:
        raw = broker.context.get_local("message")
        run_id = body["run_id"]
        await commit(pool, run_id, "trajectory", raw.body)
        done = json.dumps({"run_id": run_id, "answer": "pong"}).encode()
        await broker.publish(done, queue=raw.reply_to, correlation_id=run_id, persist=False)
        if ONE_EVENT:
            finished = json.dumps({"run_id": run_id, "answer": "pong", "request": body}).encode()
            await broker.publish(finished, exchange=exchange, routing_key="run.finished", message_id=f"f-{run_id}",
                                 persist=True)
            return
        await asyncio.gather(
            broker.publish(done, exchange=exchange, routing_key="run.completed", message_id=f"c-{run_id}", persist=True),
            broker.publish(raw.body, exchange=exchange, routing_key="interaction.logged", message_id=f"l-{run_id}",
                           persist=True),
        )

    await serve(broker)


async def serve(broker) -> None:
    """Consume until killed; tell the parent process once consuming."""
    await broker.start()
    print("READY", flush=True)
    await asyncio.Future()


# ------------------------------------------------------------------ process: log-miner
async def run_miner(url: str, dsn: str | None) -> None:
    exchange, _, _, logged = topology()
    broker = broker_for(url, "floor-miner")
    pool = await open_pool(dsn)

    @broker.subscriber(logged, exchange, no_reply=True)
    async def on_logged(body: dict) -> None:
        await commit(pool, "m-" + body["run_id"], "mined", json.dumps(body).encode())

    await serve(broker)


# ------------------------------------------------------------------ process: gateway
def gateway_app(url: str, dsn: str | None):
    from faststream.rabbit import RabbitQueue

    exchange, runs, outcomes, _ = topology()
    instance = uuid.uuid4().hex[:8]
    reply_queue = RabbitQueue(f"floor.replies.{instance}", durable=False, exclusive=True, auto_delete=True)
    broker = broker_for(url, "floor-gateway")
    waiting: dict[str, asyncio.Future] = {}
    state: dict = {}

    @broker.subscriber(reply_queue, no_reply=True)
    async def on_reply(body: dict) -> None:
        future = waiting.pop(body["run_id"], None)
        if future is not None and not future.done():
            future.set_result(body)

    @broker.subscriber(outcomes, exchange, no_reply=True)
    async def on_outcome(body: dict) -> None:
        await commit(state.get("pool"), "o-" + body["run_id"], "outcome", json.dumps(body).encode())

    async def startup() -> None:
        state["pool"] = await open_pool(dsn)
        await broker.start()

    async def handle(body: bytes) -> bytes:
        run_id = uuid.uuid4().hex
        request = json.dumps({"run_id": run_id, "request": json.loads(body)}).encode()
        await commit(state.get("pool"), run_id, "run", request)
        future = waiting[run_id] = asyncio.get_running_loop().create_future()
        await broker.publish(request, exchange=exchange, routing_key="run.requested", message_id=run_id,
                             reply_to=reply_queue.name, persist=True, mandatory=True)
        return json.dumps(await future).encode()

    return skeleton_app(handle, startup=startup, shutdown=broker.stop)


def run_gateway(url: str, dsn: str | None, port: int) -> None:
    import uvicorn

    uvicorn.run(gateway_app(url, dsn), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="on")


# ------------------------------------------------------------------ driver
BODY = json.dumps({"instruction": "ping", "options": {"max_steps": 1}}).encode()


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.design_floor", *args], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)


async def measure(port: int, levels: list[int], seconds: float) -> list[dict]:
    call, close = http_caller(port)
    try:
        await drive(call, 4, 1.0, BODY)  # warm-up
        return [await drive(call, n, seconds, BODY) for n in levels]
    finally:
        await close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pg", action="store_true", help="add the design's four commits per run")
    parser.add_argument("--one-event", action="store_true", help="one run-finished event for gateway and log-miner")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare aio-pika round trip")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        import logging

        logging.basicConfig(level=logging.WARNING)
    if args.role == "runner":
        asyncio.run(run_runner(args.url, args.dsn))
        return 0
    if args.role == "miner":
        asyncio.run(run_miner(args.url, args.dsn))
        return 0
    if args.role == "gateway":
        run_gateway(args.url, args.dsn, args.port)
        return 0

    procs: list[subprocess.Popen] = []
    if args.one_event:
        os.environ["FLOOR_ONE_EVENT"] = "1"
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with scratch_vhost_and_database("design") as (url, dsn):
        dsn_args = ["--dsn", dsn] if args.pg else []
        try:
            for role in ("runner", "miner"):
                proc = spawn("--role", role, "--url", url, *dsn_args)
                procs.append(proc)
                assert proc.stdout is not None and proc.stdout.readline().strip() == "READY", f"{role} did not start"
            port = free_port()
            procs.append(spawn("--role", "gateway", "--url", url, "--port", str(port), *dsn_args))
            wait_until(lambda: port_open(port), timeout=30, what="floor gateway")
            levels = [int(x) for x in args.levels.split(",")]
            results = asyncio.run(measure(port, levels, args.seconds))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)
        bare = [] if args.no_bare else asyncio.run(bare_round_trip("mq", url, dsn, levels, args.seconds))
    design = "one event" if args.one_event else "four messages"
    print(f"| design | pg | clients | runs/s | p50 ms | p95 ms | p99 ms |{' ÷ bare runs/s | ÷ bare p50 |' if bare else ''}")
    print(f"|---|---|---:|---:|---:|---:|---:|{'---:|---:|' if bare else ''}")
    for r, b in zip(results, bare or [None] * len(results), strict=True):
        ratios = f" {r['runs_per_s'] / b['runs_per_s']:.2f} | {r['p50_ms'] / b['p50_ms']:.1f} |" if b else ""
        print(f"| {design} | {'yes' if args.pg else 'no'} | {r['clients']} | {r['runs_per_s']:.0f} | {r['p50_ms']:.2f} "
              f"| {r['p95_ms']:.2f} | {r['p99_ms']:.2f} |{ratios}", flush=True)
    for b in bare:
        print(f"| bare aio-pika round trip | no | {b['clients']} | {b['runs_per_s']:.0f} | {b['p50_ms']:.2f} "
              f"| {b['p95_ms']:.2f} | {b['p99_ms']:.2f} |{' | |' if bare else ''}", flush=True)
    print(f"load average at end: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
