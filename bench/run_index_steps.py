"""What the gateway's copy of a run's steps costs: outcome writes with and without the steps.

The gateway's run index keeps each finished run's steps (for `GET /v1/runs/{id}` and the
WebSocket's last frame); the runner keeps them too, in its trajectory row. This measures the
gateway's side of that copy on the migrated schema of an isolated database: N runs are created,
then finished through `AsyncpgRunStore.finish` (the one writer, as the events path calls it,
`--concurrency` callers at a time), once with a realistic trajectory's steps and once with none.
It reports wall time, this process's CPU and Postgres's CPU per write, and the bytes stored.

    .venv/bin/python -m bench.run_index_steps [--runs 2000] [--concurrency 16] [--steps 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

from bench.agent_overhead import servers_cpu
from contracts import AgentRunRequested, ChatMessage, Principal, RunOptions, ToolCall, TrajectoryStep, deterministic_id
from gateway.adapters.run_index import AsyncpgRunStore
from gateway.domain import NewRun, RunFinish
from tests.harness import migrated_database


def trajectory(n: int) -> list[dict]:
    """A BFCL-like run: model turns with calls and results, then the answer (~200 bytes a step)."""
    steps: list[TrajectoryStep] = []
    for i in range(n - 1):
        call = ToolCall(id=f"call_{i}_1", name="get_weather", arguments={"city": "Oslo", "unit": "celsius"})
        kind = ("model", "tool_call", "tool_result")[i % 3]
        steps.append(TrajectoryStep(index=i, kind=kind, text='<tool_call>{"name": "get_weather"}</tool_call>'
                                    if kind == "model" else None, tool_call=call if kind != "model" else None,
                                    tool_result={"temperature": 7, "sky": "overcast"} if kind == "tool_result" else None,
                                    started_ms=12.5 * i, duration_ms=40.0, prompt_tokens=180, completion_tokens=24))
    steps.append(TrajectoryStep(index=n - 1, kind="final", text="It is 7 °C and overcast in Oslo."))
    return [s.model_dump(mode="json") for s in steps]


async def measure(database_url: str, runs: int, concurrency: int, steps: list[dict]) -> dict:
    store = AsyncpgRunStore(database_url, max_size=4)
    await store.open()
    try:
        now = datetime.now(UTC)
        ids = [f"run-{uuid.uuid4().hex}" for _ in range(runs)]
        for run_id in ids:
            msg = AgentRunRequested.create(
                correlation_id=run_id, message_id=deterministic_id("run-requested", run_id), run_id=run_id,
                messages=[ChatMessage(role="user", content="Weather in Oslo?")], tools=[], options=RunOptions(),
                principal=Principal(subject="bench", role="user"), reply_to="gateway.replies.bench",
            )
            await store.create(NewRun(run_id=run_id, subject="bench", created_at=now, request={}), msg)
        queue = list(ids)
        cpu0, pg0, t0 = time.process_time(), servers_cpu()["postgres"], time.perf_counter()

        async def caller() -> None:
            while queue:
                run_id = queue.pop()
                finish = RunFinish(run_id=run_id, status="completed", completed_at=now, outcome="answered",
                                   answer="It is 7 °C.", steps=steps, usage={"prompt_tokens": 900},
                                   model_version="bench@1", engine="scripted")
                await store.finish(finish, message_id=deterministic_id("run-finished", run_id),
                                   message_type="AgentRunFinished")

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        wall, cpu, pg = time.perf_counter() - t0, time.process_time() - cpu0, servers_cpu()["postgres"] - pg0
        stored = await store.pool.fetchval(
            "SELECT avg(pg_column_size(steps)) FROM gateway.runs WHERE run_id = ANY($1::text[])", ids)
        return {"steps": len(steps), "runs": runs, "writes_per_s": round(runs / wall),
                "client_cpu_ms_per_write": round(cpu * 1000 / runs, 3),
                "postgres_cpu_ms_per_write": round(pg * 1000 / runs, 3),
                "steps_bytes_stored": round(float(stored or 0))}
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--steps", type=int, default=7)
    args = parser.parse_args()
    with migrated_database("steps") as url:
        for steps in (trajectory(args.steps), [], trajectory(args.steps), []):  # twice each, interleaved
            print(json.dumps(asyncio.run(measure(url, args.runs, args.concurrency, steps))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
